//! REST admin API (axum). Bodies are the schema's JSON mapping; errors are problem+json
//! (RFC 9457) carrying the same reason codes as gRPC.
//!
//! Resources: `GET` lists paginate (`page_size`, `page_token` → `items`, `next_page_token`) and
//! filter by labels (`?label=k=v`, repeatable, all must match); `PUT` is an idempotent upsert (201
//! created, 200 replaced); `PATCH` takes a JSON merge patch; every single-resource answer carries
//! the resource's `ETag`, and `If-Match` (or `If-None-Match: *`) makes a write conditional, checked
//! in the transaction that writes (412 when stale). `?validate_only=true` on any write is a dry run.

mod extract;
mod problem;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use gateway_proto::v1::{Certificate, Config, DeleteResponse, HealthCheckPolicy, Route, Upstream};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::extract::{JsonBody, MergePatch, Params, PathParam, write_options};
use crate::api;
use crate::api::openapi;
use crate::auth::{Authenticator, Principal};
use crate::error::ApiError;
use crate::page::Page;
use crate::service::{ApplyOptions, ConfigService, Referenced, Written};
use crate::store::Store;
use crate::telemetry::{self, Metrics};
use crate::write::WriteMode;

/// Largest accepted request body; an apply of a 10,000-route config fits comfortably.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Query parameters of every list.
const LIST: &[&str] = &["page_size", "page_token", "label"];

#[derive(Clone)]
struct AppState {
    service: ConfigService,
    store: Store,
    metrics: Arc<Metrics>,
}

/// The REST app: the open routes (probes, the document, `/metrics`), and `/v1` behind
/// authentication.
pub fn router(
    service: ConfigService,
    store: Store,
    auth: Authenticator,
    metrics: Arc<Metrics>,
) -> Router {
    let state = AppState {
        service,
        store,
        metrics: Arc::clone(&metrics),
    };
    let (v1, v1_doc) = v1_routes().split_for_parts();
    let (open, open_doc) = open_routes().split_for_parts();
    let document = Arc::new(document_json(v1_doc, open_doc));
    let v1 = v1.layer(axum::middleware::from_fn_with_state(auth, api::auth::rest));
    open.merge(v1)
        .route(
            "/openapi.json",
            get(move || {
                let document = document.clone();
                async move {
                    ([(header::CONTENT_TYPE, "application/json")], (*document).clone())
                }
            }),
        )
        .route("/metrics", get(metrics_text))
        // Route layer: it sees the matched path (a bounded `operation` label); unknown paths
        // fall through to the fallback uncounted.
        .route_layer(axum::middleware::from_fn_with_state(
            metrics,
            api::observe::rest,
        ))
        .fallback(|| async {
            ApiError::BadRequest(
                "no such endpoint; see /v1/upstreams, /v1/routes, /v1/health-checks, /v1/certificates, /v1/dataplanes, /v1/status and /openapi.json"
                    .into(),
            )
            .into_problem(StatusCode::NOT_FOUND)
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Prometheus text: see [`crate::telemetry`].
async fn metrics_text(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, telemetry::CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

/// The OpenAPI document, pretty-printed, as `/openapi.json` serves it.
#[cfg(test)]
pub fn openapi_json() -> String {
    let (_, v1_doc) = v1_routes().split_for_parts();
    let (_, open_doc) = open_routes().split_for_parts();
    document_json(v1_doc, open_doc)
}

fn document_json(mut v1: utoipa::openapi::OpenApi, open: utoipa::openapi::OpenApi) -> String {
    v1.merge(open);
    let document = openapi::finish(v1);
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    text
}

fn open_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(ready))
}

/// Every `/v1` route with its description; the router and the document both come from here.
fn v1_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upstreams::list, upstreams::create))
        .routes(routes!(
            upstreams::fetch,
            upstreams::put,
            upstreams::patch,
            upstreams::delete
        ))
        .routes(routes!(routes::list, routes::create))
        .routes(routes!(
            routes::fetch,
            routes::put,
            routes::patch,
            routes::delete
        ))
        .routes(routes!(health_checks::list, health_checks::create))
        .routes(routes!(
            health_checks::fetch,
            health_checks::put,
            health_checks::patch,
            health_checks::delete
        ))
        .routes(routes!(certificates::list, certificates::create))
        .routes(routes!(
            certificates::fetch,
            certificates::put,
            certificates::patch,
            certificates::delete
        ))
        .routes(routes!(apply))
        .routes(routes!(dataplanes))
        .routes(routes!(dataplane))
        .routes(routes!(upstream_health))
        .routes(routes!(traffic))
        .routes(routes!(status))
        .routes(routes!(versions))
        .routes(routes!(version))
        .routes(routes!(rollback))
        .routes(routes!(audit))
        .routes(routes!(tokens, create_token))
        .routes(routes!(revoke_token))
}

/// The six operations of one resource kind, as thin described wrappers of the generic handlers
/// (`#[utoipa::path]` needs one function per path and kind).
macro_rules! resource_api {
    ($module:ident, $r:ty, $body:ty, $page:ty, $tag:literal,
     $collection:literal, $item:literal, $singular:literal, $plural:literal) => {
        mod $module {
            use super::*;

            /// List, in name order, one page at a time, optionally only those with given labels.
            #[utoipa::path(get, path = $collection, tag = $tag,
                operation_id = concat!("List", $plural),
                params(openapi::ListParams),
                responses((status = 200, description = "One page", body = $page),
                          openapi::ReadErrors))]
            pub(super) async fn list(
                state: State<AppState>,
                params: Params,
            ) -> Result<Response, ApiError> {
                super::list::<$r>(state, params).await
            }

            /// Create; 409 if one with this name exists.
            #[utoipa::path(post, path = $collection, tag = $tag,
                operation_id = concat!("Create", $singular),
                params(openapi::WriteQuery, openapi::Preconditions),
                request_body = $body,
                responses((status = 201, description = "Created (or would be, with validate_only)",
                           body = $body, headers(
                               ("ETag" = String, description = "The resource's ETag"),
                               ("Location" = String, description = "The resource's URL"),
                               ("x-config-version" = String, description = "The version the write produced"))),
                          openapi::WriteErrors))]
            pub(super) async fn create(
                state: State<AppState>,
                by: Extension<Principal>,
                headers: HeaderMap,
                params: Params,
                body: JsonBody<$r>,
            ) -> Result<Response, ApiError> {
                super::create::<$r>(state, by, headers, params, body).await
            }

            /// Read one, with its ETag.
            #[utoipa::path(get, path = $item, tag = $tag,
                operation_id = concat!("Get", $singular),
                params(("name" = String, Path, description = "The resource's name")),
                responses((status = 200, description = "The resource", body = $body,
                           headers(("ETag" = String, description = "The resource's ETag"))),
                          openapi::ReadErrors))]
            pub(super) async fn fetch(
                state: State<AppState>,
                name: PathParam<String>,
                params: Params,
            ) -> Result<Response, ApiError> {
                super::fetch::<$r>(state, name, params).await
            }

            /// Create or replace by name (idempotent). The body's name may be omitted.
            #[utoipa::path(put, path = $item, tag = $tag,
                operation_id = concat!("Upsert", $singular),
                params(("name" = String, Path, description = "The resource's name"),
                       openapi::WriteQuery, openapi::Preconditions),
                request_body = $body,
                responses((status = 200, description = "Replaced (or already exactly this)",
                           body = $body, headers(
                               ("ETag" = String, description = "The resource's ETag"),
                               ("x-config-version" = String, description = "The config version"))),
                          (status = 201, description = "Created", body = $body, headers(
                               ("ETag" = String, description = "The resource's ETag"),
                               ("Location" = String, description = "The resource's URL"),
                               ("x-config-version" = String, description = "The config version"))),
                          openapi::WriteErrors))]
            pub(super) async fn put(
                state: State<AppState>,
                by: Extension<Principal>,
                name: PathParam<String>,
                headers: HeaderMap,
                params: Params,
                body: JsonBody<$r>,
            ) -> Result<Response, ApiError> {
                super::put::<$r>(state, by, name, headers, params, body).await
            }

            /// Change some fields with a JSON merge patch, applied to the latest version.
            #[utoipa::path(patch, path = $item, tag = $tag,
                operation_id = concat!("Patch", $singular),
                params(("name" = String, Path, description = "The resource's name"),
                       openapi::WriteQuery, openapi::Preconditions),
                request_body(content = openapi::MergePatch,
                             content_type = "application/merge-patch+json"),
                responses((status = 200, description = "Patched", body = $body, headers(
                               ("ETag" = String, description = "The resource's ETag"),
                               ("x-config-version" = String, description = "The config version"))),
                          openapi::WriteErrors))]
            pub(super) async fn patch(
                state: State<AppState>,
                by: Extension<Principal>,
                name: PathParam<String>,
                headers: HeaderMap,
                params: Params,
                body: MergePatch,
            ) -> Result<Response, ApiError> {
                super::patch::<$r>(state, by, name, headers, params, body).await
            }

            /// Delete; 409 while other resources refer to it.
            #[utoipa::path(delete, path = $item, tag = $tag,
                operation_id = concat!("Delete", $singular),
                params(("name" = String, Path, description = "The resource's name"),
                       openapi::WriteQuery, openapi::Preconditions),
                responses((status = 200, description = "Deleted", body = openapi::body::DeleteResponse),
                          openapi::WriteErrors))]
            pub(super) async fn delete(
                state: State<AppState>,
                by: Extension<Principal>,
                name: PathParam<String>,
                headers: HeaderMap,
                params: Params,
            ) -> Result<Response, ApiError> {
                super::delete::<$r>(state, by, name, headers, params).await
            }
        }
    };
}

resource_api!(
    upstreams,
    Upstream,
    openapi::body::Upstream,
    openapi::page::UpstreamPage,
    "upstreams",
    "/v1/upstreams",
    "/v1/upstreams/{name}",
    "Upstream",
    "Upstreams"
);
resource_api!(
    routes,
    Route,
    openapi::body::Route,
    openapi::page::RoutePage,
    "routes",
    "/v1/routes",
    "/v1/routes/{name}",
    "Route",
    "Routes"
);
resource_api!(
    health_checks,
    HealthCheckPolicy,
    openapi::body::HealthCheckPolicy,
    openapi::page::HealthCheckPolicyPage,
    "health-checks",
    "/v1/health-checks",
    "/v1/health-checks/{name}",
    "HealthCheck",
    "HealthChecks"
);
resource_api!(
    certificates,
    Certificate,
    openapi::body::Certificate,
    openapi::page::CertificatePage,
    "certificates",
    "/v1/certificates",
    "/v1/certificates/{name}",
    "Certificate",
    "Certificates"
);

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "probes", operation_id = "Healthz", security(()),
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: 200 once the store answers and its schema is in place.
#[utoipa::path(get, path = "/readyz", tag = "probes", operation_id = "Readyz", security(()),
    responses((status = 200, description = "Ready", body = String, content_type = "text/plain"),
              (status = 503, description = "Not ready, and why", body = String, content_type = "text/plain")))]
async fn ready(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {error}\n"),
        )
            .into_response(),
    }
}

async fn list<R: Referenced>(
    State(state): State<AppState>,
    params: Params,
) -> Result<Response, ApiError> {
    params.allow(LIST)?;
    let page = params.page(R::PLURAL)?;
    let items = state
        .service
        .list::<R>(&page, &params.labels("label")?)
        .await?;
    Ok(Json(list_body(items)).into_response())
}

async fn fetch<R: Referenced>(
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
    params: Params,
) -> Result<Response, ApiError> {
    params.allow(&[])?;
    let (resource, etag) = state.service.get::<R>(&name).await?;
    let mut response = Json(resource).into_response();
    set_etag(&mut response, &etag);
    Ok(response)
}

async fn create<R: Referenced>(
    State(state): State<AppState>,
    Extension(by): Extension<Principal>,
    headers: HeaderMap,
    params: Params,
    JsonBody(resource): JsonBody<R>,
) -> Result<Response, ApiError> {
    params.allow(&["validate_only"])?;
    let options = write_options(&headers, &params)?;
    let written = state
        .service
        .write(resource, WriteMode::Create, &options, &by)
        .await?;
    Ok(written_response(
        StatusCode::CREATED,
        &written,
        options.validate_only,
    ))
}

/// Upsert by name: 201 when it created the resource, 200 when it replaced it (or it was already
/// exactly this).
async fn put<R: Referenced>(
    State(state): State<AppState>,
    Extension(by): Extension<Principal>,
    PathParam(name): PathParam<String>,
    headers: HeaderMap,
    params: Params,
    JsonBody(mut resource): JsonBody<R>,
) -> Result<Response, ApiError> {
    params.allow(&["validate_only"])?;
    let options = write_options(&headers, &params)?;
    name_from_path(&mut resource, &name)?;
    let written = state
        .service
        .write(resource, WriteMode::Upsert, &options, &by)
        .await?;
    let status = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(written_response(status, &written, options.validate_only))
}

async fn patch<R: Referenced>(
    State(state): State<AppState>,
    Extension(by): Extension<Principal>,
    PathParam(name): PathParam<String>,
    headers: HeaderMap,
    params: Params,
    MergePatch(patch): MergePatch,
) -> Result<Response, ApiError> {
    params.allow(&["validate_only"])?;
    let options = write_options(&headers, &params)?;
    let written = state
        .service
        .patch::<R>(&name, &patch, &options, &by)
        .await?;
    Ok(written_response(
        StatusCode::OK,
        &written,
        options.validate_only,
    ))
}

async fn delete<R: Referenced>(
    State(state): State<AppState>,
    Extension(by): Extension<Principal>,
    PathParam(name): PathParam<String>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    params.allow(&["validate_only"])?;
    let options = write_options(&headers, &params)?;
    let version = state.service.delete::<R>(&name, &options, &by).await?;
    Ok(with_version(
        (StatusCode::OK, Json(DeleteResponse { version })).into_response(),
        version,
        options.validate_only,
    ))
}

/// Create or replace every resource given, in one transaction; `prune` also deletes what the body
/// does not name.
#[utoipa::path(post, path = "/v1/apply", tag = "config", operation_id = "Apply",
    params(openapi::ApplyParams),
    request_body = openapi::body::Config,
    responses((status = 200, description = "Applied (or the plan, with validate_only)",
               body = openapi::body::ApplyResponse,
               headers(("x-config-version" = String, description = "The version the apply produced"))),
              openapi::WriteErrors))]
async fn apply(
    State(state): State<AppState>,
    Extension(by): Extension<Principal>,
    params: Params,
    JsonBody(config): JsonBody<Config>,
) -> Result<Response, ApiError> {
    params.allow(&["validate_only", "prune", "selector"])?;
    let options = ApplyOptions {
        validate_only: params.flag("validate_only")?,
        prune: params.flag("prune")?,
        selector: params.labels("selector")?,
    };
    if !options.prune && !options.selector.is_empty() {
        return Err(ApiError::BadRequest(
            "selector: only meaningful with prune=true".into(),
        ));
    }
    let response = state.service.apply(config, &options, &by).await?;
    let version = response.version;
    Ok(with_version(
        Json(response).into_response(),
        version,
        options.validate_only,
    ))
}

/// Data planes in node-id order, with the version each applied or rejected.
#[utoipa::path(get, path = "/v1/dataplanes", tag = "dataplanes", operation_id = "ListDataPlanes",
    params(openapi::ListParams),
    responses((status = 200, description = "One page", body = openapi::page::DataPlanePage),
              openapi::ReadErrors))]
async fn dataplanes(State(state): State<AppState>, params: Params) -> Result<Response, ApiError> {
    params.allow(LIST)?;
    let page = params.page("dataplanes")?;
    let items = state
        .service
        .dataplanes_page(&page, &params.labels("label")?)
        .await?;
    Ok(Json(list_body(items)).into_response())
}

/// One data plane, with every error of its last rejection.
#[utoipa::path(get, path = "/v1/dataplanes/{node_id}", tag = "dataplanes", operation_id = "GetDataPlane",
    params(("node_id" = String, Path, description = "The data plane's node id")),
    responses((status = 200, description = "The data plane", body = openapi::body::DataPlane),
              openapi::ReadErrors))]
async fn dataplane(
    State(state): State<AppState>,
    PathParam(node_id): PathParam<String>,
) -> Result<Response, ApiError> {
    let found = state
        .service
        .dataplanes()
        .await?
        .into_iter()
        .find(|d| d.node_id == node_id);
    match found {
        Some(dataplane) => Ok(Json(dataplane).into_response()),
        None => Err(ApiError::UnknownDataPlane(node_id)),
    }
}

/// Each target of an upstream as seen by each connected data plane.
#[utoipa::path(get, path = "/v1/upstreams/{name}/health", tag = "upstreams", operation_id = "GetUpstreamHealth",
    params(("name" = String, Path, description = "The upstream's name")),
    responses((status = 200, description = "Target health per data plane", body = openapi::body::UpstreamHealth),
              openapi::ReadErrors))]
async fn upstream_health(
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.service.upstream_health(&name).await?).into_response())
}

/// Recent request rates per route and upstream, summed over data planes.
#[utoipa::path(get, path = "/v1/traffic", tag = "status", operation_id = "GetTraffic",
    responses((status = 200, description = "Traffic", body = openapi::body::Traffic),
              openapi::ReadErrors))]
async fn traffic(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(state.service.traffic().await?).into_response())
}

/// The current config version and how far each data plane is.
#[utoipa::path(get, path = "/v1/status", tag = "status", operation_id = "GetStatus",
    responses((status = 200, description = "Status", body = openapi::body::Status),
              openapi::ReadErrors))]
async fn status(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(state.service.status().await?).into_response())
}

/// Config versions, newest first, with what each changed and who made it.
#[utoipa::path(get, path = "/v1/versions", tag = "history", operation_id = "ListVersions",
    params(openapi::VersionParams),
    responses((status = 200, description = "One page", body = openapi::page::ConfigVersionPage),
              openapi::ReadErrors))]
async fn versions(State(state): State<AppState>, params: Params) -> Result<Response, ApiError> {
    params.allow(&["page_size", "page_token", "limit"])?;
    let size = match params.number("page_size")? {
        0 => params.number("limit")?,
        size => size,
    };
    let page = crate::page::PageRequest::new("versions", size, &params.string("page_token"))?;
    Ok(Json(list_body(state.service.versions(&page).await?)).into_response())
}

/// One config version with its whole config.
#[utoipa::path(get, path = "/v1/versions/{version}", tag = "history", operation_id = "GetVersion",
    params(("version" = u64, Path, description = "The config version")),
    responses((status = 200, description = "The version", body = openapi::body::ConfigVersion),
              openapi::ReadErrors))]
async fn version(
    State(state): State<AppState>,
    PathParam(version): PathParam<u64>,
) -> Result<Response, ApiError> {
    Ok(Json(state.service.version(version).await?).into_response())
}

/// Make an earlier version's content current again, as a new version.
#[utoipa::path(post, path = "/v1/rollback", tag = "history", operation_id = "Rollback",
    request_body = openapi::body::RollbackRequest,
    responses((status = 200, description = "Rolled back (or would be, with validate_only)",
               body = openapi::body::ApplyResponse,
               headers(("x-config-version" = String, description = "The version the rollback produced"))),
              openapi::WriteErrors))]
async fn rollback(
    State(state): State<AppState>,
    Extension(by): Extension<Principal>,
    JsonBody(request): JsonBody<gateway_proto::v1::RollbackRequest>,
) -> Result<Response, ApiError> {
    let response = state
        .service
        .rollback(request.to, request.validate_only, &by)
        .await?;
    let version = response.version;
    Ok(with_version(
        Json(response).into_response(),
        version,
        request.validate_only,
    ))
}

/// Who changed what, newest first.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", operation_id = "ListAudit",
    params(openapi::AuditParams),
    responses((status = 200, description = "One page", body = openapi::page::AuditEntryPage),
              openapi::ReadErrors))]
async fn audit(State(state): State<AppState>, params: Params) -> Result<Response, ApiError> {
    params.allow(&["page_size", "page_token", "actor"])?;
    let page = params.page("audit")?;
    let actor = params.string("actor");
    let page = state.service.audit(&page, Some(&actor)).await?;
    Ok(Json(list_body(page)).into_response())
}

/// API tokens, without their secrets (admin only).
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", operation_id = "ListTokens",
    params(openapi::TokenListParams),
    responses((status = 200, description = "One page", body = openapi::page::TokenPage),
              openapi::ReadErrors))]
async fn tokens(State(state): State<AppState>, params: Params) -> Result<Response, ApiError> {
    params.allow(&["page_size", "page_token"])?;
    let page = params.page("tokens")?;
    Ok(Json(list_body(state.service.tokens(&page).await?)).into_response())
}

/// Create a token (admin only); the answer holds its secret, shown only this once.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", operation_id = "CreateToken",
    request_body = openapi::body::CreateTokenRequest,
    responses((status = 201, description = "Created", body = openapi::body::CreateTokenResponse),
              openapi::WriteErrors))]
async fn create_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    JsonBody(request): JsonBody<gateway_proto::v1::CreateTokenRequest>,
) -> Result<Response, ApiError> {
    let created = state
        .service
        .create_token(&request.name, &request.role, &principal)
        .await?;
    let mut response = (StatusCode::CREATED, Json(created)).into_response();
    // The body holds a secret.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Revoke a token (admin only): it stops working at once.
#[utoipa::path(delete, path = "/v1/tokens/{name}", tag = "tokens", operation_id = "RevokeToken",
    params(("name" = String, Path, description = "The token's name")),
    responses((status = 204, description = "Revoked"), openapi::WriteErrors))]
async fn revoke_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathParam(name): PathParam<String>,
) -> Result<Response, ApiError> {
    state.service.revoke_token(&name, &principal).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `{"items": […], "next_page_token": "…"}`; the token is left out on the last page.
fn list_body<T: serde::Serialize>(page: Page<T>) -> serde_json::Value {
    let mut body = json!({ "items": page.items });
    if !page.next_page_token.is_empty() {
        body["next_page_token"] = json!(page.next_page_token);
    }
    body
}

/// The name in a PUT body may be omitted; if given, it must agree with the path.
fn name_from_path<R: Referenced>(resource: &mut R, path_name: &str) -> Result<(), ApiError> {
    let mut value =
        serde_json::to_value(&*resource).map_err(|e| ApiError::Internal(e.to_string()))?;
    let body_name = value
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or_default()
        .to_string();
    if !body_name.is_empty() && body_name != path_name {
        return Err(ApiError::BadRequest(format!(
            "name: the body names {body_name:?} but the path names {path_name:?}"
        )));
    }
    value["name"] = json!(path_name);
    *resource = serde_json::from_value(value).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(())
}

/// The written resource with its ETag, `Location` when created, and the config version.
fn written_response<R: Referenced>(
    status: StatusCode,
    written: &Written<R>,
    validate_only: bool,
) -> Response {
    let mut response = (status, Json(&written.resource)).into_response();
    set_etag(&mut response, &written.etag);
    if status == StatusCode::CREATED {
        let location = format!("/v1/{}/{}", R::PLURAL, written.resource.name());
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
    }
    with_version(response, written.version, validate_only)
}

/// `x-config-version`: the version a write produced. A dry run says `x-validate-only: true`
/// instead, since it produced none.
fn with_version(mut response: Response, version: u64, validate_only: bool) -> Response {
    let headers = response.headers_mut();
    if validate_only {
        headers.insert("x-validate-only", HeaderValue::from_static("true"));
    } else {
        headers.insert("x-config-version", HeaderValue::from(version));
    }
    response
}

fn set_etag(response: &mut Response, etag: &str) {
    if let Ok(value) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
}
