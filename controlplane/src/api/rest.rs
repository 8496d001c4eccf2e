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

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use gateway_proto::v1::{Config, HealthCheckPolicy, Route, Upstream};
use serde_json::json;

use self::extract::{JsonBody, MergePatch, Params, write_options};
use crate::api;
use crate::auth::{Authenticator, Principal};
use crate::error::ApiError;
use crate::page::Page;
use crate::service::{ApplyOptions, ConfigService, Referenced, Written};
use crate::store::Store;
use crate::write::WriteMode;

/// Largest accepted request body; an apply of a 10,000-route config fits comfortably.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Query parameters of every list.
const LIST: &[&str] = &["page_size", "page_token", "label"];

#[derive(Clone)]
struct AppState {
    service: ConfigService,
    store: Store,
}

pub fn router(service: ConfigService, store: Store, auth: Authenticator) -> Router {
    let state = AppState { service, store };
    let open = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready));
    let v1 = Router::new()
        .merge(resource_routes::<Upstream>())
        .merge(resource_routes::<Route>())
        .merge(resource_routes::<HealthCheckPolicy>())
        .route("/v1/apply", axum::routing::post(apply))
        .route("/v1/dataplanes", get(dataplanes))
        .route("/v1/dataplanes/{node_id}", get(dataplane))
        .route("/v1/upstreams/{name}/health", get(upstream_health))
        .route("/v1/traffic", get(traffic))
        .route("/v1/status", get(status))
        .route("/v1/versions", get(versions))
        .route("/v1/versions/{version}", get(version))
        .route("/v1/rollback", axum::routing::post(rollback))
        .route("/v1/audit", get(audit))
        .route("/v1/tokens", get(tokens).post(create_token))
        .route("/v1/tokens/{name}", axum::routing::delete(revoke_token))
        .layer(axum::middleware::from_fn_with_state(auth, api::auth::rest));
    open.merge(v1)
        .fallback(|| async {
            ApiError::BadRequest(
                "no such endpoint; see /v1/upstreams, /v1/routes, /v1/health-checks, /v1/dataplanes, /v1/status"
                    .into(),
            )
            .into_problem(StatusCode::NOT_FOUND)
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// `/v1/<kind>` and `/v1/<kind>/{name}` for one resource kind.
fn resource_routes<R: Referenced>() -> Router<AppState> {
    Router::new()
        .route(
            &format!("/v1/{}", R::PLURAL),
            get(list::<R>).post(create::<R>),
        )
        .route(
            &format!("/v1/{}/{{name}}", R::PLURAL),
            get(fetch::<R>)
                .put(put::<R>)
                .patch(patch::<R>)
                .delete(delete::<R>),
        )
}

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
    Path(name): Path<String>,
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
    Path(name): Path<String>,
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
    Path(name): Path<String>,
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
    Path(name): Path<String>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    params.allow(&["validate_only"])?;
    let options = write_options(&headers, &params)?;
    let version = state.service.delete::<R>(&name, &options, &by).await?;
    Ok(with_version(
        (StatusCode::OK, Json(json!({ "version": version }))).into_response(),
        version,
        options.validate_only,
    ))
}

/// `?validate_only`, `?prune` and `?selector=k=v` (repeatable): see `ApplyRequest`.
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

async fn dataplanes(State(state): State<AppState>, params: Params) -> Result<Response, ApiError> {
    params.allow(LIST)?;
    let page = params.page("dataplanes")?;
    let items = state
        .service
        .dataplanes_page(&page, &params.labels("label")?)
        .await?;
    Ok(Json(list_body(items)).into_response())
}

async fn dataplane(
    State(state): State<AppState>,
    Path(node_id): Path<String>,
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

async fn upstream_health(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.service.upstream_health(&name).await?).into_response())
}

async fn traffic(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(state.service.traffic().await?).into_response())
}

async fn status(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(state.service.status().await?).into_response())
}

/// `limit` is the older name of `page_size`.
async fn versions(State(state): State<AppState>, params: Params) -> Result<Response, ApiError> {
    params.allow(&["page_size", "page_token", "limit"])?;
    let size = match params.number("page_size")? {
        0 => params.number("limit")?,
        size => size,
    };
    let page = crate::page::PageRequest::new("versions", size, &params.string("page_token"))?;
    Ok(Json(list_body(state.service.versions(&page).await?)).into_response())
}

async fn version(
    State(state): State<AppState>,
    Path(version): Path<u64>,
) -> Result<Response, ApiError> {
    Ok(Json(state.service.version(version).await?).into_response())
}

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

async fn audit(State(state): State<AppState>, params: Params) -> Result<Response, ApiError> {
    params.allow(&["page_size", "page_token", "actor"])?;
    let page = params.page("audit")?;
    let actor = params.string("actor");
    let page = state.service.audit(&page, Some(&actor)).await?;
    Ok(Json(list_body(page)).into_response())
}

async fn tokens(State(state): State<AppState>, params: Params) -> Result<Response, ApiError> {
    params.allow(&["page_size", "page_token"])?;
    let page = params.page("tokens")?;
    Ok(Json(list_body(state.service.tokens(&page).await?)).into_response())
}

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

async fn revoke_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
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
