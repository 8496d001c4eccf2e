//! Errors as RFC 9457 problem details: one `IntoResponse` for every REST failure, with the same
//! reason codes as the gRPC status codes and the field-level errors as an `errors` extension.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ApiError;

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
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::PermissionDenied(_) => StatusCode::FORBIDDEN,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// RFC 9457 problem details with the field-level errors as an `errors` extension.
    pub fn into_problem(self, status: StatusCode) -> Response {
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
        if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            // RFC 5789: say which patch format PATCH takes.
            response.headers_mut().insert(
                "accept-patch",
                HeaderValue::from_static(super::extract::MERGE_PATCH),
            );
        }
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
