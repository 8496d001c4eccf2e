//! Sending a request upstream: attempts, timeouts and retries.
//!
//! One request is one or more attempts, each to a target the request has not tried while there
//! is one. Each attempt waits at most the per-try timeout and what is left of the route's total
//! timeout (which covers every attempt until response headers); its connection opens within the
//! route's connect timeout, else the upstream's. Each attempt's outcome feeds outlier detection.
//! When to try again is [`crate::retry`]'s rule; the last attempt's response or error is the
//! answer.

use http::request::Parts;
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, header};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::body::{BodyMeter, RequestBody, UpstreamBody};
use super::observe::Exchange;
use super::pool::{self, Lease};
use super::{Downstream, Proxy, ProxyError, grpc, headers, source_chain};
use crate::outlier::{self, Outcome};
use crate::retry::{self, ActiveRetry, RetryOn};
use crate::state::InFlight;
use crate::table::{RouteEntry, Target, Tried, UpstreamPool};
use crate::telemetry::RetryReason;

/// An upstream's answer, with what it holds until the response ends.
pub struct Answer {
    pub response: Response<Incoming>,
    /// The target's in-flight count.
    pub in_flight: InFlight,
    /// The pooled plain HTTP/1.1 connection it came over, handed back once the body is read.
    pub connection: Option<Lease>,
}

/// What the proxy knows of a request besides its route: who sent it, whether it is a gRPC
/// call, whether it asks for an upgrade.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub downstream: &'a Downstream,
    pub grpc: bool,
    pub upgrade: bool,
}

impl Proxy {
    pub(super) async fn forward(
        &self,
        request: Request<Incoming>,
        call: Call<'_>,
        route: &RouteEntry,
        upstream: &UpstreamPool,
        exchange: &mut Exchange,
    ) -> Result<Answer, ProxyError> {
        let client = call.downstream.client;
        // A gRPC deadline shorter than the route's timeout wins.
        let total = match call.grpc.then(|| grpc::timeout(request.headers())) {
            Some(Some(deadline)) => deadline.min(route.timeout),
            _ => route.timeout,
        };
        let deadline = Instant::now() + total;
        let key = upstream
            .hash_key
            .as_ref()
            .and_then(|key| key.hash(request.uri(), request.headers(), client.ip()));
        let (mut parts, body) = request.into_parts();
        let idempotent = retry::is_idempotent(&parts.method);
        let meter = BodyMeter::new(route, exchange.bytes_in());
        let prepared = RequestBody::prepare(body, route.retry.is_some(), idempotent, meter);
        let mut body = match tokio::time::timeout_at(deadline, prepared).await {
            Ok(Ok(body)) => body,
            Ok(Err(error)) => return Err(ProxyError::ClientBody(error.into())),
            Err(_) => return Err(ProxyError::ResponseTimeout(total)),
        };
        let forwarding = headers::Forwarding {
            client: &call.downstream.client_ip,
            tls: call.downstream.tls,
            upgrade: call.upgrade,
        };
        headers::rewrite_request(
            &mut parts.headers,
            &parts.uri,
            forwarding,
            &route.request_headers,
        );
        let connect_timeout = route.connect_timeout.unwrap_or(upstream.connect_timeout);
        // Plain HTTP/1.1 goes over this worker's own pools; HTTP/2 and TLS over hyper's client.
        let http = (!pool::serves(upstream, call.grpc))
            .then(|| self.clients().get(upstream, connect_timeout, call.grpc));

        let mut tried = Tried::default();
        let mut retries = 0;
        let mut last: Option<Result<Answer, ProxyError>> = None;
        let mut _retry: Option<ActiveRetry> = None;
        loop {
            let (index, target) = match upstream.pick(key, &tried) {
                Ok(picked) => picked,
                // Nothing left to retry on: the previous attempt's answer stands.
                Err(why) => return last.unwrap_or(Err(ProxyError::no_target(upstream, why))),
            };
            tried.insert(index);
            let Some(attempt_body) = body.for_attempt() else {
                // Retries check `is_replayable` first; the first attempt always has its body.
                return last.unwrap_or(Err(ProxyError::Internal("the request body is spent")));
            };
            let mut request = attempt_request(
                &mut parts,
                upstream,
                target,
                attempt_body,
                Form {
                    once: route.retry.is_none(),
                    origin: http.is_none(),
                },
            )?;
            exchange.attempt(&self.observers, &target.state, &mut request);
            let sent = Instant::now();
            let remaining = deadline.saturating_duration_since(Instant::now());
            let per_try = route
                .retry
                .as_ref()
                .and_then(|r| r.per_try_timeout)
                .filter(|&per_try| per_try < remaining);
            let in_flight = target.state.start_request();
            let sending = async {
                match &http {
                    Some(client) => client
                        .request(request)
                        .await
                        .map(|response| (response, None))
                        .map_err(ProxyError::from_client),
                    None => {
                        let connections = &self.gateway.metrics().connections;
                        pool::send(request, &target.authority, connect_timeout, connections)
                            .await
                            .map(|(response, lease)| (response, Some(lease)))
                    }
                }
            };
            let result = match tokio::time::timeout(per_try.unwrap_or(remaining), sending).await {
                Ok(Ok((response, connection))) => Ok(Answer {
                    response,
                    in_flight,
                    connection,
                }),
                Ok(Err(error)) => Err(error),
                Err(_) => Err(match per_try {
                    Some(per_try) => ProxyError::PerTryTimeout(per_try),
                    None => ProxyError::ResponseTimeout(total),
                }),
            };
            exchange.attempt_done(
                &upstream.stats,
                sent.elapsed(),
                result.as_ref().map(|answer| answer.response.status()),
            );
            outlier::observe(upstream, &target.state, outcome(&result));
            _retry = None;

            let Some(policy) = &route.retry else {
                return result.inspect_err(|e| log_failure(e, route, upstream, target));
            };
            let worth_retrying = retries < policy.attempts
                && condition_met(policy.on, &result)
                && body.is_replayable()
                && Instant::now() < deadline;
            if !worth_retrying {
                return result.inspect_err(|e| log_failure(e, route, upstream, target));
            }
            let Some(guard) = route.state.load.try_start_retry(policy.budget_percent) else {
                tracing::debug!(route = %route.name, upstream = %upstream.name, "retry budget spent; not retrying");
                return result.inspect_err(|e| log_failure(e, route, upstream, target));
            };
            retries += 1;
            exchange.retrying(match &result {
                Ok(_) => RetryReason::Status5xx,
                Err(error) => RetryReason::of(error.local_reason()),
            });
            tracing::debug!(
                route = %route.name,
                upstream = %upstream.name,
                target = %target.address,
                retry = retries,
                cause = %match &result {
                    Ok(answer) => format!("status {}", answer.response.status()),
                    Err(error) => error.to_string(),
                },
                "retrying on another target"
            );
            _retry = Some(guard);
            last = Some(result);
        }
    }
}

/// Whether the policy retries what `result` shows.
fn condition_met(on: RetryOn, result: &Result<Answer, ProxyError>) -> bool {
    match result {
        Ok(answer) => on.status(answer.response.status().as_u16()),
        Err(
            ProxyError::ConnectFailed(_)
            | ProxyError::ConnectTimeout(_)
            | ProxyError::UpstreamTls(_),
        ) => on.connect_failure(),
        Err(ProxyError::UpstreamFailed(_)) => on.reset(),
        Err(ProxyError::PerTryTimeout(_)) => on.per_try_timeout(),
        Err(_) => false,
    }
}

/// How an attempt ended, for outlier detection.
fn outcome(result: &Result<Answer, ProxyError>) -> Outcome {
    match result {
        Ok(answer) if answer.response.status().is_server_error() => Outcome::ServerError,
        Ok(_) => Outcome::Success,
        Err(
            ProxyError::ConnectFailed(_)
            | ProxyError::ConnectTimeout(_)
            | ProxyError::UpstreamTls(_),
        ) => Outcome::ConnectFailure,
        Err(_) => Outcome::ServerError,
    }
}

/// How an attempt's request is put together.
#[derive(Debug, Clone, Copy)]
struct Form {
    /// No other attempt is to come: the headers are moved out, not copied.
    once: bool,
    /// Written straight to a connection to the target: an origin-form URI (`/path?query`) and
    /// a Host header, the target's when the client sent none. Otherwise hyper's client picks
    /// the connection from an absolute URI.
    origin: bool,
}

/// One attempt's request to `target`.
fn attempt_request(
    parts: &mut Parts,
    upstream: &UpstreamPool,
    target: &Target,
    body: UpstreamBody,
    form: Form,
) -> Result<Request<UpstreamBody>, ProxyError> {
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let uri = if form.origin {
        Uri::from(path_and_query)
    } else {
        let scheme = if upstream.transport.tls.is_some() {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        Uri::builder()
            .scheme(scheme)
            .authority(target.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| ProxyError::BadRequest(e.into()))?
    };
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = http::Version::HTTP_11;
    *request.headers_mut() = if form.once {
        std::mem::take(&mut parts.headers)
    } else {
        parts.headers.clone()
    };
    if form.origin && !request.headers().contains_key(header::HOST) {
        let host = HeaderValue::from_str(target.authority.as_str())
            .map_err(|e| ProxyError::BadRequest(e.into()))?;
        request.headers_mut().insert(header::HOST, host);
    }
    Ok(request)
}

fn log_failure(error: &ProxyError, route: &RouteEntry, upstream: &UpstreamPool, target: &Target) {
    let cause = std::error::Error::source(error)
        .map(source_chain)
        .unwrap_or_default();
    tracing::warn!(
        route = %route.name,
        upstream = %upstream.name,
        target = %target.address,
        side = %error.side(),
        cause = %cause,
        "{error}"
    );
}
