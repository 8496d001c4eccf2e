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
    /// An ETag precondition (If-Match, If-None-Match, `etag`) did not hold: REST 412, gRPC
    /// ABORTED. Nothing was written.
    #[error("{resource}: precondition failed: {reason}")]
    PreconditionFailed { resource: String, reason: String },
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
            ApiError::PreconditionFailed { .. } => "ABORTED",
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

impl ApiError {
    /// The gRPC status code; its name is [`ApiError::reason`].
    pub fn code(&self) -> tonic::Code {
        match self.reason() {
            "INVALID_ARGUMENT" => tonic::Code::InvalidArgument,
            "NOT_FOUND" => tonic::Code::NotFound,
            "ALREADY_EXISTS" => tonic::Code::AlreadyExists,
            "FAILED_PRECONDITION" => tonic::Code::FailedPrecondition,
            "ABORTED" => tonic::Code::Aborted,
            "UNAUTHENTICATED" => tonic::Code::Unauthenticated,
            "PERMISSION_DENIED" => tonic::Code::PermissionDenied,
            "UNAVAILABLE" => tonic::Code::Unavailable,
            _ => tonic::Code::Internal,
        }
    }
}

/// The status carries the reason as `google.rpc.ErrorInfo` and every field-level problem as a
/// `google.rpc.BadRequest` violation (`field` is `<kind>/<name>.<field path>`), the gRPC
/// counterparts of problem+json's `reason` and `errors`.
impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        use tonic_types::{ErrorDetails, StatusExt};
        let mut details = ErrorDetails::new();
        details.set_error_info(
            error.reason(),
            ERROR_DOMAIN,
            std::collections::HashMap::new(),
        );
        for v in error.violations() {
            let field = match (v.resource.is_empty(), v.field.is_empty()) {
                (true, _) => v.field.clone(),
                (false, true) => v.resource.clone(),
                (false, false) => format!("{}.{}", v.resource, v.field),
            };
            details.add_bad_request_violation(field, v.reason.clone());
        }
        tonic::Status::with_error_details(error.code(), error.to_string(), details)
    }
}

/// `google.rpc.ErrorInfo.domain` of every error this API returns.
const ERROR_DOMAIN: &str = "gateway.v1";
