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
use super::{Downstream, Proxy, ProxyError, grpc, headers, source_chain, tunnel};
use crate::outlier::{self, Outcome};
use crate::retry::{self, ActiveRetry, RetryOn};
use crate::state::InFlight;
use crate::table::{RouteEntry, Target, Tried, UpstreamPool};
use crate::telemetry::RetryReason;

/// An upstream's answer, with the target's in-flight count held until the response ends.
pub type Answer = (Response<Incoming>, InFlight);

/// What the proxy knows of a request besides its route: who sent it, whether it is a gRPC
/// call, whether it asks for an upgrade.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub downstream: Downstream,
    pub grpc: bool,
    pub upgrade: bool,
}

impl Proxy {
    pub(super) async fn forward(
        &self,
        request: Request<Incoming>,
        call: Call,
        route: &RouteEntry,
        upstream: &UpstreamPool,
        exchange: &mut Exchange,
    ) -> Result<Answer, ProxyError> {
        let client = call.downstream.client;
        // A gRPC deadline shorter than the route's timeout wins.
        let total = match grpc::timeout(request.headers()) {
            Some(deadline) if call.grpc => deadline.min(route.timeout),
            _ => route.timeout,
        };
        let deadline = Instant::now() + total;
        let key = upstream
            .hash_key
            .as_ref()
            .and_then(|key| key.hash(request.uri(), request.headers(), client.ip()));
        let (mut parts, body) = request.into_parts();
        let idempotent = retry::is_idempotent(&parts.method);
        let meter = BodyMeter::new(route, upstream, exchange.bytes_in());
        let prepared = RequestBody::prepare(body, route.retry.is_some(), idempotent, meter);
        let mut body = match tokio::time::timeout_at(deadline, prepared).await {
            Ok(Ok(body)) => body,
            Ok(Err(error)) => return Err(ProxyError::ClientBody(error.into())),
            Err(_) => return Err(ProxyError::ResponseTimeout(total)),
        };
        rewrite(&mut parts, call, route);
        let connect_timeout = route.connect_timeout.unwrap_or(upstream.connect_timeout);
        let http = self.clients().get(upstream, connect_timeout, call.grpc);

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
                route.retry.is_none(),
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
            let result =
                match tokio::time::timeout(per_try.unwrap_or(remaining), http.request(request))
                    .await
                {
                    Ok(Ok(response)) => Ok((response, in_flight)),
                    Ok(Err(error)) => Err(ProxyError::from_client(error)),
                    Err(_) => Err(match per_try {
                        Some(per_try) => ProxyError::PerTryTimeout(per_try),
                        None => ProxyError::ResponseTimeout(total),
                    }),
                };
            exchange.attempt_done(
                &upstream.stats,
                sent.elapsed(),
                result.as_ref().map(|(response, _)| response.status()),
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
                    Ok((response, _)) => format!("status {}", response.status()),
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
        Ok((response, _)) => on.status(response.status().as_u16()),
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
        Ok((response, _)) if response.status().is_server_error() => Outcome::ServerError,
        Ok(_) => Outcome::Success,
        Err(
            ProxyError::ConnectFailed(_)
            | ProxyError::ConnectTimeout(_)
            | ProxyError::UpstreamTls(_),
        ) => Outcome::ConnectFailure,
        Err(_) => Outcome::ServerError,
    }
}

/// The client's request as every attempt sends it: hop-by-hop headers out (but `TE: trailers`
/// and an upgrade's `Upgrade` kept), forwarding headers and the route's edits in. The Host is
/// the client's unless the route rewrites it.
fn rewrite(parts: &mut Parts, call: Call, route: &RouteEntry) {
    let original_host = match parts.headers.get(header::HOST) {
        Some(host) => Some(host.clone()),
        None => parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    };
    let headers = &mut parts.headers;
    let upgrade = call
        .upgrade
        .then(|| tunnel::upgrade_headers(headers))
        .flatten();
    let trailers = headers::accepts_trailers(headers);
    headers::remove_hop_by_hop(headers);
    if trailers {
        // `TE: trailers` is what gRPC servers require; it says nothing about the connection.
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some((connection, protocol)) = upgrade {
        headers.insert(header::CONNECTION, connection);
        headers.insert(header::UPGRADE, protocol);
    }
    if let Some(host) = &original_host {
        headers.insert(header::HOST, host.clone());
    }
    headers::add_forwarding(
        headers,
        call.downstream.client.ip(),
        original_host.as_ref(),
        call.downstream.tls,
    );
    headers::apply_edits(headers, &route.request_headers);
}

/// One attempt's request to `target`. The headers are moved out when there is no other
/// attempt to come (`once`), else copied.
fn attempt_request(
    parts: &mut Parts,
    upstream: &UpstreamPool,
    target: &Target,
    body: UpstreamBody,
    once: bool,
) -> Result<Request<UpstreamBody>, ProxyError> {
    let scheme = if upstream.transport.tls.is_some() {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let uri = Uri::builder()
        .scheme(scheme)
        .authority(target.authority.clone())
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| ProxyError::BadRequest(e.into()))?;
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = http::Version::HTTP_11;
    *request.headers_mut() = if once {
        std::mem::take(&mut parts.headers)
    } else {
        parts.headers.clone()
    };
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
