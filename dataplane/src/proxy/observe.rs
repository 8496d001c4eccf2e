//! The request's last phase: what it leaves behind in metrics, the access log and traces.
//!
//! An [`Exchange`] follows a request through [`super::Proxy::handle`], collecting what the
//! phases learn (route, target, upstream time, the gateway's own answer). The response body
//! carries it ([`ObservedBody`]) and, when the body ends or is dropped, records it once: a few
//! relaxed atomic adds on the route's and upstream's pre-resolved counters. The access log and
//! tracing cost nothing unless configured: their per-request state is one boxed
//! [`RequestFacts`], allocated only when one of them is on.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::{ProxyError, ResponseBody};
use crate::app::Gateway;
use crate::state::TargetState;
use crate::telemetry::otel::{self, RequestTrace, ServerRequest};
use crate::telemetry::request_id::{RequestIds, X_REQUEST_ID};
use crate::telemetry::{
    AccessLog, AccessRecord, LocalReason, RouteStats, Tracing, UpstreamStats, method_class,
};

/// What the proxy does besides proxying: request ids always; access log and tracing if on.
#[derive(Debug, Default)]
pub struct Observers {
    pub request_ids: RequestIds,
    pub access_log: Option<AccessLog>,
    pub tracing: Option<Arc<Tracing>>,
}

/// What the access log and tracing need from the request head, kept only when one is on.
#[derive(Debug)]
struct RequestFacts {
    time: SystemTime,
    method: Method,
    uri: Uri,
    host: Option<HeaderValue>,
    version: Version,
    client: SocketAddr,
    request_id: HeaderValue,
    /// Request body bytes, counted by [`CountedBody`] as they pass.
    bytes_in: Arc<AtomicU64>,
    /// The caller's trace context (tracing on).
    parent: Option<opentelemetry::Context>,
    /// The trace id of an incoming `traceparent` (tracing off).
    incoming_trace: Option<opentelemetry::trace::TraceId>,
}

/// One request as it goes through the proxy.
#[derive(Debug)]
pub struct Exchange {
    active: ActiveRequest,
    started: Instant,
    method: usize,
    request_id: HeaderValue,
    route: Option<Arc<RouteStats>>,
    target: Option<Arc<TargetState>>,
    upstream_time: Option<Duration>,
    local: Option<LocalReason>,
    retries: u32,
    facts: Option<Box<RequestFacts>>,
    trace: Option<RequestTrace>,
}

impl Exchange {
    /// The request has arrived: give it its id, note what the log and spans will need.
    pub fn begin(
        gateway: &Arc<Gateway>,
        observers: &Observers,
        request: &mut Request<Incoming>,
        client: SocketAddr,
    ) -> Exchange {
        let started = Instant::now();
        let active = ActiveRequest::start(gateway);
        let request_id = observers.request_ids.ensure(request.headers_mut());
        let facts = (observers.access_log.is_some() || observers.tracing.is_some()).then(|| {
            let parent = observers
                .tracing
                .as_ref()
                .map(|t| t.extract(request.headers()));
            let incoming_trace = match parent {
                Some(_) => None,
                None => otel::incoming_trace_id(request.headers()),
            };
            Box::new(RequestFacts {
                time: SystemTime::now(),
                method: request.method().clone(),
                uri: request.uri().clone(),
                host: request.headers().get(header::HOST).cloned(),
                version: request.version(),
                client,
                request_id: request_id.clone(),
                bytes_in: Arc::default(),
                parent,
                incoming_trace,
            })
        });
        Exchange {
            active,
            started,
            method: method_class(request.method()),
            request_id,
            route: None,
            target: None,
            upstream_time: None,
            local: None,
            retries: 0,
            facts,
            trace: None,
        }
    }

    /// The request matched `route`: its counters, and the server span named after it.
    pub fn routed(&mut self, route: &Arc<RouteStats>, observers: &Observers) {
        self.route = Some(Arc::clone(route));
        self.start_server_span(observers, Some(&route.route));
    }

    fn start_server_span(&mut self, observers: &Observers, route: Option<&str>) {
        let (Some(tracing), Some(facts)) = (&observers.tracing, &self.facts) else {
            return;
        };
        let Some(parent) = &facts.parent else { return };
        let host = facts
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| facts.host.as_ref().and_then(|h| h.to_str().ok()))
            .unwrap_or("");
        self.trace = Some(tracing.server_span(
            parent,
            ServerRequest {
                method: &facts.method,
                path: facts.uri.path(),
                host,
                route,
                protocol: protocol_version(facts.version),
                client: facts.client.ip(),
                start: facts.time,
            },
        ));
    }

    /// Where the request body's bytes are counted for the access log, when it is on.
    pub fn bytes_in(&self) -> Option<Arc<AtomicU64>> {
        self.facts.as_ref().map(|f| Arc::clone(&f.bytes_in))
    }

    /// An attempt at `target` is about to be sent: its client span, propagated in `headers`.
    pub fn attempt<B>(
        &mut self,
        observers: &Observers,
        target: &Arc<TargetState>,
        request: &mut Request<B>,
    ) {
        self.target = Some(Arc::clone(target));
        if let (Some(tracing), Some(trace)) = (&observers.tracing, &mut self.trace) {
            let method = request.method().clone();
            tracing.start_attempt(
                trace,
                &method,
                &target.address,
                self.retries,
                request.headers_mut(),
            );
        }
    }

    /// The attempt ended after `elapsed`, with the target's status or an error.
    pub fn attempt_done(
        &mut self,
        upstream: &UpstreamStats,
        elapsed: Duration,
        result: Result<StatusCode, &ProxyError>,
    ) {
        let reached = !matches!(
            result,
            Err(ProxyError::ConnectFailed(_) | ProxyError::ConnectTimeout(_))
        );
        if reached {
            upstream.record_attempt(elapsed);
            self.upstream_time = Some(elapsed);
        }
        if let Some(trace) = &mut self.trace {
            match result {
                Ok(status) => trace.end_attempt(Some(status.as_u16()), None),
                Err(error) => trace.end_attempt(None, Some(error.local_reason().as_str())),
            }
        }
    }

    /// The request is being sent again (`reason` is why the previous attempt failed).
    pub fn retrying(&mut self, reason: crate::telemetry::RetryReason) {
        self.retries += 1;
        if let Some(route) = &self.route {
            route.record_retry(reason);
        }
    }

    /// The gateway answers the request itself, because of `error`.
    pub fn failed(&mut self, error: &ProxyError) {
        self.local = Some(error.local_reason());
    }

    /// Turns the response into the one sent to the client: with the request id, and with a body
    /// that records the request once it is over.
    pub fn respond(
        mut self,
        observers: &Observers,
        response: Response<ResponseBody>,
    ) -> Response<ObservedBody> {
        if self.trace.is_none() && self.route.is_none() {
            // Unrouted (or no config yet): a span all the same, named after the method only.
            self.start_server_span(observers, None);
        }
        let (mut parts, body) = response.into_parts();
        parts.headers.insert(X_REQUEST_ID, self.request_id.clone());
        let status = parts.status.as_u16();
        let completion = Completion {
            exchange: self,
            status,
            bytes_out: 0,
            access_log: observers.access_log.clone(),
        };
        Response::from_parts(
            parts,
            ObservedBody {
                inner: body,
                completion: Some(completion),
            },
        )
    }
}

/// Counts a request as in progress until dropped (also when the client goes away mid-request).
#[derive(Debug)]
struct ActiveRequest(Arc<Gateway>);

impl ActiveRequest {
    fn start(gateway: &Arc<Gateway>) -> ActiveRequest {
        gateway
            .metrics()
            .process
            .downstream_requests_active
            .fetch_add(1, Ordering::Relaxed);
        ActiveRequest(Arc::clone(gateway))
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0
            .metrics()
            .process
            .downstream_requests_active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        _ => "1.1",
    }
}

/// The response body sent to the client; records the request when it ends or is dropped.
#[derive(Debug)]
pub struct ObservedBody {
    inner: ResponseBody,
    completion: Option<Completion>,
}

impl ObservedBody {
    /// Records now (the body is over).
    fn complete(&mut self) {
        if let Some(completion) = self.completion.take() {
            completion.record();
        }
    }
}

impl Body for ObservedBody {
    type Data = Bytes;
    type Error = <ResponseBody as Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(completion)) = (frame.data_ref(), &mut self.completion) {
                    completion.bytes_out += data.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.complete();
                }
            }
            Poll::Ready(None) => self.complete(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        // Not streamed to the end: a HEAD or 304 response, or the client went away.
        self.complete();
    }
}

/// Everything to record once the response is over.
#[derive(Debug)]
struct Completion {
    exchange: Exchange,
    status: u16,
    bytes_out: u64,
    access_log: Option<AccessLog>,
}

impl Completion {
    fn record(self) {
        let Completion {
            exchange,
            status,
            bytes_out,
            access_log,
        } = self;
        let duration = exchange.started.elapsed();
        let metrics = exchange.active.0.metrics();
        let route = exchange.route.as_ref().unwrap_or(&metrics.unrouted);
        route.record(exchange.method, status, exchange.local, duration, bytes_out);

        let trace_id = match (&exchange.trace, &exchange.facts) {
            (Some(trace), _) => Some(trace.trace_id()),
            (None, Some(facts)) => facts.incoming_trace,
            (None, None) => None,
        };
        if let Some(trace) = exchange.trace {
            trace.finish(status, exchange.local.map(LocalReason::as_str));
        }
        if let (Some(log), Some(facts)) = (access_log, exchange.facts) {
            let facts = *facts;
            log.send(AccessRecord {
                time: facts.time,
                method: facts.method,
                uri: facts.uri,
                host: facts.host,
                version: facts.version,
                status,
                bytes_in: facts.bytes_in.load(Ordering::Relaxed),
                bytes_out,
                duration,
                upstream_time: exchange.upstream_time,
                target: exchange.target,
                route: exchange.route,
                request_id: facts.request_id,
                trace_id,
                retries: exchange.retries,
            });
        }
    }
}
