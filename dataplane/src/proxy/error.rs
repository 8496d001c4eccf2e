//! The proxy's one error type, and the one place errors become responses.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{Either, Full};

use super::ProxyBody;
use super::client::TlsHandshakeError;
use super::grpc::{self, Code};
use crate::table::{DEFAULT_RETRY_AFTER, NoTarget, UpstreamPool};
use crate::telemetry::LocalReason;

pub type BoxError = Box<dyn StdError + Send + Sync>;

/// `Retry-After` before a data plane has its first config: it normally arrives within a second.
const NOT_READY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Which side of the proxy failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something the proxy cannot serve.
    Downstream,
    /// The target could not be reached or did not answer in time.
    Upstream,
    /// The proxy itself: no config yet, or a bug.
    Internal,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Downstream => "downstream",
            Side::Upstream => "upstream",
            Side::Internal => "internal",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route for host {host:?} path {path:?}")]
    NoRoute { host: String, path: String },
    #[error("no configuration has been applied yet")]
    NotReady,
    #[error("upstream {upstream:?} has no targets")]
    NoTargets { upstream: String },
    #[error("no target of upstream {upstream:?} is healthy")]
    AllUnhealthy {
        upstream: String,
        retry_after: Duration,
    },
    #[error("cannot build the upstream request: {0}")]
    BadRequest(#[source] BoxError),
    /// An HTTP/1.1 request whose framing two parsers could read differently (request
    /// smuggling): refused, and the connection closed.
    #[error("ambiguous request: {0}")]
    Malformed(&'static str),
    #[error("connecting to the target timed out")]
    ConnectTimeout(#[source] BoxError),
    #[error("connecting to the target failed")]
    ConnectFailed(#[source] BoxError),
    /// The TLS handshake with the target failed: most often its certificate did not verify.
    #[error("TLS with the target failed")]
    UpstreamTls(#[source] BoxError),
    #[error("no response headers within {0:?}")]
    ResponseTimeout(Duration),
    #[error("no response headers within the per-try timeout ({0:?})")]
    PerTryTimeout(Duration),
    #[error("reading the request body failed")]
    ClientBody(#[source] BoxError),
    /// A bug: a state the proxy should never reach.
    #[error("internal error: {0}")]
    Internal(&'static str),
    #[error("the target failed before answering")]
    UpstreamFailed(#[source] BoxError),
}

impl ProxyError {
    pub fn side(&self) -> Side {
        match self {
            ProxyError::NoRoute { .. }
            | ProxyError::BadRequest(_)
            | ProxyError::Malformed(_)
            | ProxyError::ClientBody(_) => Side::Downstream,
            ProxyError::NotReady | ProxyError::Internal(_) => Side::Internal,
            ProxyError::NoTargets { .. }
            | ProxyError::AllUnhealthy { .. }
            | ProxyError::ConnectTimeout(_)
            | ProxyError::ConnectFailed(_)
            | ProxyError::UpstreamTls(_)
            | ProxyError::ResponseTimeout(_)
            | ProxyError::PerTryTimeout(_)
            | ProxyError::UpstreamFailed(_) => Side::Upstream,
        }
    }

    /// What the metrics and the access log call this failure.
    pub fn local_reason(&self) -> LocalReason {
        match self {
            ProxyError::NoRoute { .. } => LocalReason::NoRoute,
            ProxyError::NotReady => LocalReason::NotReady,
            ProxyError::Internal(_) => LocalReason::Internal,
            ProxyError::NoTargets { .. } => LocalReason::NoTargets,
            ProxyError::AllUnhealthy { .. } => LocalReason::AllUnhealthy,
            ProxyError::BadRequest(_) | ProxyError::Malformed(_) => LocalReason::BadRequest,
            ProxyError::ClientBody(_) => LocalReason::ClientBody,
            ProxyError::ConnectTimeout(_) => LocalReason::ConnectTimeout,
            ProxyError::ConnectFailed(_) => LocalReason::ConnectFailed,
            ProxyError::UpstreamTls(_) => LocalReason::UpstreamTls,
            ProxyError::ResponseTimeout(_) => LocalReason::ResponseTimeout,
            ProxyError::PerTryTimeout(_) => LocalReason::PerTryTimeout,
            ProxyError::UpstreamFailed(_) => LocalReason::UpstreamFailed,
        }
    }

    pub fn no_target(upstream: &UpstreamPool, why: NoTarget) -> ProxyError {
        let upstream = upstream.name.clone();
        match why {
            NoTarget::Empty => ProxyError::NoTargets { upstream },
            NoTarget::AllUnhealthy { retry_after } => ProxyError::AllUnhealthy {
                upstream,
                retry_after,
            },
        }
    }

    /// Classifies a failure of the HTTP client.
    pub fn from_client(error: hyper_util::client::legacy::Error) -> ProxyError {
        if error.is_connect() {
            if is_tls_failure(&error) {
                ProxyError::UpstreamTls(error.into())
            } else if has_timed_out(&error) {
                ProxyError::ConnectTimeout(error.into())
            } else {
                ProxyError::ConnectFailed(error.into())
            }
        } else {
            ProxyError::UpstreamFailed(error.into())
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::BadRequest(_) | ProxyError::Malformed(_) | ProxyError::ClientBody(_) => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::NotReady
            | ProxyError::NoTargets { .. }
            | ProxyError::AllUnhealthy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::ConnectFailed(_)
            | ProxyError::UpstreamTls(_)
            | ProxyError::UpstreamFailed(_) => StatusCode::BAD_GATEWAY,
            ProxyError::ConnectTimeout(_)
            | ProxyError::ResponseTimeout(_)
            | ProxyError::PerTryTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The gRPC status of this error, for calls.
    fn grpc_code(&self) -> Code {
        match self {
            ProxyError::NoRoute { .. } => Code::Unimplemented,
            ProxyError::BadRequest(_) | ProxyError::Internal(_) => Code::Internal,
            ProxyError::Malformed(_) | ProxyError::ClientBody(_) => Code::InvalidArgument,
            ProxyError::NotReady
            | ProxyError::NoTargets { .. }
            | ProxyError::AllUnhealthy { .. }
            | ProxyError::ConnectFailed(_)
            | ProxyError::UpstreamTls(_)
            | ProxyError::UpstreamFailed(_) => Code::Unavailable,
            ProxyError::ConnectTimeout(_)
            | ProxyError::ResponseTimeout(_)
            | ProxyError::PerTryTimeout(_) => Code::DeadlineExceeded,
        }
    }

    /// The response for this error: a gRPC status for gRPC calls, JSON otherwise.
    pub fn into_response_for(self, grpc: bool) -> Response<ProxyBody> {
        if grpc {
            let message = match &self {
                ProxyError::NoRoute { .. } => "no route for this call".to_string(),
                ProxyError::NoTargets { .. } | ProxyError::AllUnhealthy { .. } => {
                    "no healthy targets".to_string()
                }
                other => other.to_string(),
            };
            return grpc::error_response(self.grpc_code(), &message);
        }
        self.into_response()
    }

    /// The response a client gets for this error. Causes stay in the logs: a client learns
    /// which kind of failure happened, not the addresses behind the gateway.
    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let body = match &self {
            ProxyError::NoRoute { host, path } => {
                serde_json::json!({ "error": "no route", "host": host, "path": path })
            }
            ProxyError::NotReady => serde_json::json!({
                "error": "not ready",
                "message": "this gateway has not received its configuration yet; retry shortly",
                "retry_after_seconds": NOT_READY_RETRY_AFTER.as_secs(),
            }),
            ProxyError::Internal(_) => serde_json::json!({ "error": "internal error" }),
            ProxyError::NoTargets { .. } => serde_json::json!({
                "error": "no targets",
                "message": "this service has no targets (none configured, or its host names resolve to no address); retry later",
                "retry_after_seconds": DEFAULT_RETRY_AFTER.as_secs(),
            }),
            ProxyError::AllUnhealthy { retry_after, .. } => serde_json::json!({
                "error": "no healthy targets",
                "message": "every target of this service is failing its health checks or ejected; retry later",
                "retry_after_seconds": retry_after.as_secs(),
            }),
            ProxyError::BadRequest(_) | ProxyError::ClientBody(_) => {
                serde_json::json!({ "error": "bad request" })
            }
            ProxyError::Malformed(reason) => {
                let mut response = json_response(
                    status,
                    &serde_json::json!({ "error": "bad request", "reason": reason }),
                );
                // The body's framing is in doubt: nothing more is read from this connection.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return response;
            }
            ProxyError::ConnectFailed(_)
            | ProxyError::UpstreamTls(_)
            | ProxyError::UpstreamFailed(_) => {
                serde_json::json!({ "error": "bad gateway" })
            }
            ProxyError::ConnectTimeout(_)
            | ProxyError::ResponseTimeout(_)
            | ProxyError::PerTryTimeout(_) => serde_json::json!({ "error": "gateway timeout" }),
        };
        let mut response = json_response(status, &body);
        if let Some(retry_after) = self.retry_after() {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs()),
            );
        }
        response
    }

    /// When a client may try again, for the 503s the gateway answers itself.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            ProxyError::NotReady => Some(NOT_READY_RETRY_AFTER),
            ProxyError::NoTargets { .. } => Some(DEFAULT_RETRY_AFTER),
            ProxyError::AllUnhealthy { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// A small JSON response produced by the gateway itself.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body.to_string()))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Whether a connect error came from the TLS handshake.
fn is_tls_failure(error: &(dyn StdError + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if e.downcast_ref::<TlsHandshakeError>().is_some() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Whether a connect error came from the connect timeout.
fn has_timed_out(error: &(dyn StdError + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_calls_get_grpc_statuses_with_http_200() {
        let cases = [
            (
                ProxyError::NoRoute {
                    host: "h".into(),
                    path: "/".into(),
                },
                "12",
            ),
            (
                ProxyError::NoTargets {
                    upstream: "u".into(),
                },
                "14",
            ),
            (ProxyError::ConnectFailed("refused".into()), "14"),
            (ProxyError::UpstreamTls("unknown issuer".into()), "14"),
            (ProxyError::ResponseTimeout(Duration::from_secs(1)), "4"),
        ];
        for (error, code) in cases {
            let response = error.into_response_for(true);
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()["grpc-status"], code);
        }
    }

    #[test]
    fn each_error_maps_to_its_status_and_side() {
        let cases = [
            (
                ProxyError::NoRoute {
                    host: "h".into(),
                    path: "/".into(),
                },
                404,
                Side::Downstream,
            ),
            (ProxyError::NotReady, 503, Side::Internal),
            (
                ProxyError::NoTargets {
                    upstream: "u".into(),
                },
                503,
                Side::Upstream,
            ),
            (
                ProxyError::AllUnhealthy {
                    upstream: "u".into(),
                    retry_after: Duration::from_secs(3),
                },
                503,
                Side::Upstream,
            ),
            (
                ProxyError::ConnectFailed("refused".into()),
                502,
                Side::Upstream,
            ),
            (
                ProxyError::ConnectTimeout("slow".into()),
                504,
                Side::Upstream,
            ),
            (
                ProxyError::ResponseTimeout(Duration::from_secs(1)),
                504,
                Side::Upstream,
            ),
            (
                ProxyError::UpstreamFailed("reset".into()),
                502,
                Side::Upstream,
            ),
            (
                ProxyError::PerTryTimeout(Duration::from_secs(1)),
                504,
                Side::Upstream,
            ),
            (
                ProxyError::ClientBody("aborted".into()),
                400,
                Side::Downstream,
            ),
        ];
        for (error, status, side) in cases {
            assert_eq!(error.side(), side, "{error}");
            assert_eq!(
                error.local_reason().status_class(),
                crate::telemetry::status_class(status),
                "{error}"
            );
            let response = error.into_response();
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
            assert_eq!(
                response.headers().contains_key(header::RETRY_AFTER),
                status == 503,
                "every 503 the gateway answers itself says when to retry, nothing else does"
            );
        }
    }

    #[test]
    fn all_unhealthy_says_when_to_retry() {
        let response = ProxyError::AllUnhealthy {
            upstream: "u".into(),
            retry_after: Duration::from_secs(3),
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }

    #[test]
    fn connect_timeouts_are_told_apart_from_refusals() {
        let timed_out = io::Error::new(io::ErrorKind::TimedOut, "connect timeout");
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        assert!(has_timed_out(&timed_out));
        assert!(!has_timed_out(&refused));
    }
}
