//! The one error type of the control plane's API. REST turns it into problem+json and gRPC into a
//! `tonic::Status`, with the same stable reason codes, so every client sees the same failure.

use gateway_proto::kind::{Kind, resource_ref};
use gateway_proto::v1::FieldViolation;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid config: {}", describe_violations(.0))]
    Invalid(Vec<FieldViolation>),
    #[error("{} not found", resource_ref(*kind, name))]
    NotFound { kind: Kind, name: String },
    #[error("data plane {0:?} has never connected")]
    UnknownDataPlane(String),
    #[error("config version {0} does not exist")]
    UnknownVersion(u64),
    #[error("{} already exists", resource_ref(*kind, name))]
    AlreadyExists { kind: Kind, name: String },
    #[error("{} is in use by {}", resource_ref(*kind, name), used_by.join(", "))]
    InUse {
        kind: Kind,
        name: String,
        used_by: Vec<String>,
    },
    #[error("token {0:?} already exists")]
    TokenExists(String),
    #[error("token {0:?} not found")]
    UnknownToken(String),
    #[error("{0}")]
    BadRequest(String),
    /// No valid token: REST 401, gRPC UNAUTHENTICATED.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid token whose role does not allow the call: REST 403, gRPC PERMISSION_DENIED.
    #[error("{0}")]
    PermissionDenied(String),
    /// REST only: the body is not `application/json`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// Stable reason code shared by REST (`type`) and gRPC (status code name).
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::Invalid(_) | ApiError::BadRequest(_) | ApiError::UnsupportedMediaType(_) => {
                "INVALID_ARGUMENT"
            }
            ApiError::NotFound { .. }
            | ApiError::UnknownDataPlane(_)
            | ApiError::UnknownVersion(_)
            | ApiError::UnknownToken(_) => "NOT_FOUND",
            ApiError::AlreadyExists { .. } | ApiError::TokenExists(_) => "ALREADY_EXISTS",
            ApiError::Unauthenticated(_) => "UNAUTHENTICATED",
            ApiError::PermissionDenied(_) => "PERMISSION_DENIED",
            ApiError::InUse { .. } => "FAILED_PRECONDITION",
            ApiError::Unavailable(_) => "UNAVAILABLE",
            ApiError::Internal(_) => "INTERNAL",
        }
    }

    pub fn violations(&self) -> &[FieldViolation] {
        match self {
            ApiError::Invalid(v) => v,
            _ => &[],
        }
    }

    pub fn not_found(kind: Kind, name: &str) -> Self {
        ApiError::NotFound {
            kind,
            name: name.to_string(),
        }
    }
}

/// One violation per line, so CLI users read them as a list.
fn describe_violations(violations: &[FieldViolation]) -> String {
    let mut out = format!("{} problem(s)", violations.len());
    for v in violations {
        out.push_str(&format!("\n  - {} {}: {}", v.resource, v.field, v.reason));
    }
    out
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => ApiError::Unavailable(error.to_string()),
            _ => ApiError::Internal(format!("store: {error}")),
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        let message = error.to_string();
        match error {
            ApiError::Invalid(_) | ApiError::BadRequest(_) | ApiError::UnsupportedMediaType(_) => {
                tonic::Status::invalid_argument(message)
            }
            ApiError::NotFound { .. }
            | ApiError::UnknownDataPlane(_)
            | ApiError::UnknownVersion(_)
            | ApiError::UnknownToken(_) => tonic::Status::not_found(message),
            ApiError::AlreadyExists { .. } | ApiError::TokenExists(_) => {
                tonic::Status::already_exists(message)
            }
            ApiError::Unauthenticated(_) => tonic::Status::unauthenticated(message),
            ApiError::PermissionDenied(_) => tonic::Status::permission_denied(message),
            ApiError::InUse { .. } => tonic::Status::failed_precondition(message),
            ApiError::Unavailable(_) => tonic::Status::unavailable(message),
            ApiError::Internal(_) => tonic::Status::internal(message),
        }
    }
}
