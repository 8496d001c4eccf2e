//! One target's probe loop: a check every interval (plus jitter); `healthy_threshold` successes
//! in a row make the target pass, `unhealthy_threshold` failures in a row make it fail. A check
//! opens its own connection, so it also proves the target accepts connections.
//!
//! A failed check says why in a few stable words ("timeout", "connection refused",
//! "status 500", "grpc NOT_SERVING"): operators read them in health reports.

use std::error::Error as StdError;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Uri, header};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpStream;
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::{Check, HealthPolicy, HttpCheck};
use crate::state::TargetState;

const USER_AGENT: &str = "gateway-dataplane health check";

/// Probes `target` until aborted; HTTP checks name `origin` in their Host unless the policy
/// says otherwise (a DNS target's name rather than one of its addresses).
pub async fn run(
    target: Authority,
    origin: Authority,
    policy: HealthPolicy,
    state: Arc<TargetState>,
) {
    let checker = match Checker::new(&target, &origin, &policy) {
        Ok(checker) => checker,
        Err(reason) => {
            tracing::warn!(upstream = %state.upstream, target = %target, health_check = %policy.name, %reason, "cannot check this target");
            state.record_check(false, &reason);
            return;
        }
    };
    // Probes started together (a new upstream) spread out over the first jitter.
    tokio::time::sleep(policy.jitter(policy.interval)).await;
    let (mut successes, mut failures) = (0u32, 0u32);
    loop {
        let result = checker.check(&policy).await;
        state.counters.record_check(result.is_ok());
        match result {
            Ok(note) => {
                (successes, failures) = (successes.saturating_add(1), 0);
                if successes >= policy.healthy_threshold && state.record_check(true, &note) {
                    tracing::info!(upstream = %state.upstream, target = %target, health_check = %policy.name, %note, "target passes its health checks");
                }
            }
            Err(reason) => {
                (successes, failures) = (0, failures.saturating_add(1));
                if failures >= policy.unhealthy_threshold && state.record_check(false, &reason) {
                    tracing::warn!(upstream = %state.upstream, target = %target, health_check = %policy.name, %reason, "target fails its health checks");
                }
            }
        }
        tokio::time::sleep(policy.next_delay()).await;
    }
}

/// What a probe needs for each check, built once.
enum Checker {
    Http {
        client: Client<HttpConnector, Empty<Bytes>>,
        uri: Uri,
        host: HeaderValue,
        check: HttpCheck,
    },
    Tcp {
        address: String,
    },
    Grpc {
        endpoint: Endpoint,
        service: String,
    },
}

impl Checker {
    fn new(
        target: &Authority,
        origin: &Authority,
        policy: &HealthPolicy,
    ) -> Result<Checker, String> {
        match &policy.check {
            Check::Http(check) => {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(policy.timeout));
                connector.set_nodelay(true);
                // One connection per check: a check also proves the target accepts them.
                let client = Client::builder(TokioExecutor::new())
                    .pool_max_idle_per_host(0)
                    .build(connector);
                let uri = Uri::builder()
                    .scheme(Scheme::HTTP)
                    .authority(target.clone())
                    .path_and_query(check.path.as_str())
                    .build()
                    .map_err(|e| format!("invalid check URI: {e}"))?;
                let host = check.host.as_deref().unwrap_or(origin.as_str());
                let host = HeaderValue::from_str(host).map_err(|e| format!("invalid Host: {e}"))?;
                Ok(Checker::Http {
                    client,
                    uri,
                    host,
                    check: check.clone(),
                })
            }
            Check::Tcp => Ok(Checker::Tcp {
                address: target.to_string(),
            }),
            Check::Grpc { service } => {
                let endpoint = Endpoint::from_shared(format!("http://{target}"))
                    .map_err(|e| format!("invalid gRPC endpoint: {e}"))?
                    .connect_timeout(policy.timeout)
                    .timeout(policy.timeout)
                    .tcp_nodelay(true);
                Ok(Checker::Grpc {
                    endpoint,
                    service: service.clone(),
                })
            }
        }
    }

    /// One check: what passed, or why it failed.
    async fn check(&self, policy: &HealthPolicy) -> Result<String, String> {
        match tokio::time::timeout(policy.timeout, self.attempt()).await {
            Ok(outcome) => outcome,
            Err(_) => Err("timeout".into()),
        }
    }

    async fn attempt(&self) -> Result<String, String> {
        match self {
            Checker::Http {
                client,
                uri,
                host,
                check,
            } => {
                let request = Request::builder()
                    .method(check.method.clone())
                    .uri(uri.clone())
                    .header(header::HOST, host.clone())
                    .header(header::USER_AGENT, USER_AGENT)
                    .body(Empty::new())
                    .map_err(|e| e.to_string())?;
                let response = client
                    .request(request)
                    .await
                    .map_err(|error| describe(&error))?;
                let status = response.status().as_u16();
                if check.is_healthy_status(status) {
                    Ok(format!("status {status}"))
                } else {
                    Err(format!("status {status}"))
                }
            }
            Checker::Tcp { address } => match TcpStream::connect(address.as_str()).await {
                Ok(_) => Ok("connected".into()),
                Err(error) => Err(describe_io(&error)),
            },
            Checker::Grpc { endpoint, service } => {
                let channel = endpoint.connect().await.map_err(|e| describe(&e))?;
                let request = HealthCheckRequest {
                    service: service.clone(),
                };
                let response = HealthClient::new(channel)
                    .check(request)
                    .await
                    .map_err(|status| describe_grpc(&status))?;
                match response.into_inner().status() {
                    ServingStatus::Serving => Ok("grpc SERVING".into()),
                    other => Err(format!("grpc {}", other.as_str_name())),
                }
            }
        }
    }
}

/// A client or transport error in a few stable words.
fn describe(error: &(dyn StdError + 'static)) -> String {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return describe_io(io);
        }
        if let Some(hyper) = e.downcast_ref::<hyper::Error>() {
            if hyper.is_incomplete_message() || hyper.is_closed() {
                return "connection closed before answering".into();
            }
            if hyper.is_timeout() {
                return "timeout".into();
            }
        }
        source = e.source();
    }
    error.to_string()
}

fn describe_io(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::ConnectionAborted => "connection aborted".into(),
        io::ErrorKind::TimedOut => "timeout".into(),
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => "unreachable".into(),
        _ => format!("connection failed: {error}"),
    }
}

fn describe_grpc(status: &tonic::Status) -> String {
    if let Some(source) = status.source() {
        return describe(source);
    }
    match status.code() {
        tonic::Code::Unimplemented => "grpc health service not implemented".into(),
        code => format!("grpc status {code:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_told_in_stable_words() {
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "os error 111");
        assert_eq!(describe(&refused), "connection refused");
        let timed_out = io::Error::new(io::ErrorKind::TimedOut, "slow");
        assert_eq!(describe_io(&timed_out), "timeout");
        assert_eq!(
            describe_grpc(&tonic::Status::unimplemented("no")),
            "grpc health service not implemented"
        );
        assert_eq!(
            describe_grpc(&tonic::Status::unavailable("down")),
            "grpc status Unavailable"
        );
    }
}
