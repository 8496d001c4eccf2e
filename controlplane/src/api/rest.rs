//! REST admin API (axum). Bodies are the schema's JSON mapping; errors are problem+json
//! (RFC 9457) carrying the same reason codes as gRPC.

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use gateway_proto::v1::{Config, HealthCheckPolicy, Route, Upstream};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::api;
use crate::auth::{Authenticator, Principal};
use crate::error::ApiError;
use crate::page::{Page, PageRequest};
use crate::service::{ConfigService, Referenced};
use crate::store::Store;

/// Largest accepted request body; an apply of a 10,000-route config fits comfortably.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

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
        .route(
            "/v1/upstreams",
            get(list::<Upstream>).post(create::<Upstream>),
        )
        .route(
            "/v1/upstreams/{name}",
            get(fetch::<Upstream>)
                .put(replace::<Upstream>)
                .delete(delete::<Upstream>),
        )
        .route("/v1/routes", get(list::<Route>).post(create::<Route>))
        .route(
            "/v1/routes/{name}",
            get(fetch::<Route>)
                .put(replace::<Route>)
                .delete(delete::<Route>),
        )
        .route(
            "/v1/health-checks",
            get(list::<HealthCheckPolicy>).post(create::<HealthCheckPolicy>),
        )
        .route(
            "/v1/health-checks/{name}",
            get(fetch::<HealthCheckPolicy>)
                .put(replace::<HealthCheckPolicy>)
                .delete(delete::<HealthCheckPolicy>),
        )
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
        .fallback(|| async { ApiError::BadRequest("no such endpoint; see /v1/upstreams, /v1/routes, /v1/health-checks, /v1/dataplanes, /v1/status".into()).into_problem(StatusCode::NOT_FOUND) })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
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

async fn list<R: Referenced>(State(state): State<AppState>) -> Result<Response, ApiError> {
    let items = state.service.list::<R>().await?;
    Ok(Json(json!({ "items": items })).into_response())
}

async fn fetch<R: Referenced>(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.service.get::<R>(&name).await?).into_response())
}

async fn create<R: Referenced>(
    State(state): State<AppState>,
    Extension(by): Extension<Principal>,
    JsonBody(resource): JsonBody<R>,
) -> Result<Response, ApiError> {
    let (stored, version) = state.service.create(resource, &by).await?;
    Ok(written(StatusCode::CREATED, &stored, version))
}

async fn replace<R: Referenced>(
    State(state): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(name): Path<String>,
    JsonBody(mut resource): JsonBody<R>,
) -> Result<Response, ApiError> {
    name_from_path(&mut resource, &name)?;
    let (stored, version) = state.service.replace(resource, &by).await?;
    Ok(written(StatusCode::OK, &stored, version))
}

async fn delete<R: Referenced>(
    State(state): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let version = state.service.delete::<R>(&name, &by).await?;
    Ok(written(
        StatusCode::OK,
        &json!({ "version": version }),
        version,
    ))
}

async fn apply(
    State(state): State<AppState>,
    Extension(by): Extension<Principal>,
    JsonBody(config): JsonBody<Config>,
) -> Result<Response, ApiError> {
    let response = state.service.apply(config, &by).await?;
    let version = response.version;
    Ok(written(StatusCode::OK, &response, version))
}

async fn dataplanes(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(json!({ "items": state.service.dataplanes().await? })).into_response())
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

#[derive(serde::Deserialize)]
struct VersionsQuery {
    #[serde(default)]
    limit: u32,
}

async fn versions(
    State(state): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<VersionsQuery>,
) -> Result<Response, ApiError> {
    Ok(Json(json!({ "items": state.service.versions(query.limit).await? })).into_response())
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
    let response = state.service.rollback(request.to, &by).await?;
    let version = response.version;
    Ok(written(StatusCode::OK, &response, version))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    page_size: u32,
    #[serde(default)]
    page_token: String,
    #[serde(default)]
    actor: String,
}

async fn audit(
    State(state): State<AppState>,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let page = PageRequest::new("audit", query.page_size, &query.page_token)?;
    let page = state.service.audit(&page, Some(&query.actor)).await?;
    Ok(Json(list_body(page)).into_response())
}

/// `{"items": […], "next_page_token": "…"}`; the token is left out on the last page.
fn list_body<T: serde::Serialize>(page: Page<T>) -> serde_json::Value {
    let mut body = json!({ "items": page.items });
    if !page.next_page_token.is_empty() {
        body["next_page_token"] = json!(page.next_page_token);
    }
    body
}

async fn tokens(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(json!({ "items": state.service.tokens().await? })).into_response())
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

fn written(status: StatusCode, body: &impl serde::Serialize, version: u64) -> Response {
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert("x-config-version", HeaderValue::from(version));
    response
}

/// A JSON body in the schema's mapping: `application/json` only, unknown fields refused, and
/// every failure a problem+json that says what was wrong.
struct JsonBody<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "the request body must be JSON (Content-Type: application/json)".into(),
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim();
            mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")
        })
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotFound { .. }
            | ApiError::UnknownDataPlane(_)
            | ApiError::UnknownVersion(_)
            | ApiError::UnknownToken(_) => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists { .. } | ApiError::InUse { .. } | ApiError::TokenExists(_) => {
                StatusCode::CONFLICT
            }
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::PermissionDenied(_) => StatusCode::FORBIDDEN,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// RFC 9457 problem details with the field-level errors as an `errors` extension.
    fn into_problem(self, status: StatusCode) -> Response {
        let reason = self.reason();
        let mut body = json!({
            "type": format!("urn:gateway:problem:{}", reason.to_ascii_lowercase().replace('_', "-")),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": self.to_string(),
            "reason": reason,
            "errors": self.violations(),
        });
        if let ApiError::InUse { used_by, .. } = &self {
            body["used_by"] = json!(used_by);
        }
        let mut response = (status, Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(self, ApiError::Internal(_) | ApiError::Unavailable(_)) {
            tracing::error!(error = %self, "admin request failed");
        }
        let status = self.status();
        self.into_problem(status)
    }
}
