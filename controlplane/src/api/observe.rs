//! Every admin call, measured and traced: REST as an axum route layer, gRPC as a tower layer.
//!
//! Each call is counted by API, operation and outcome and timed; calls to `/v1/…` and to
//! `AdminService` also get a server span (`otel.kind = server`), continuing the caller's W3C
//! `traceparent`, under which the store's spans nest. Discovery streams are not admin calls and
//! are left alone; probes and scrapes are counted but not traced.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::telemetry::{AdminLabels, Metrics};

pub async fn rest(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let operation = format!("{method} {route}");
    let started = Instant::now();
    let response = if route.starts_with("/v1/") {
        let span = tracing::info_span!(
            "admin",
            otel.name = %operation,
            otel.kind = "server",
            http.request.method = %method,
            http.route = %route,
            http.response.status_code = tracing::field::Empty,
        );
        let _ = span.set_parent(caller_context(request.headers()));
        let response = next.run(request).instrument(span.clone()).await;
        span.record("http.response.status_code", response.status().as_u16());
        response
    } else {
        next.run(request).await
    };
    metrics.admin_call(
        AdminLabels {
            api: "rest",
            operation,
            outcome: response.status().as_str().to_owned(),
        },
        started.elapsed().as_secs_f64(),
    );
    response
}

fn caller_context(headers: &HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&Headers(headers))
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// gRPC: in front of every service of the server, outside authentication (so refusals count).
#[derive(Clone)]
pub struct GrpcObserveLayer {
    metrics: Arc<Metrics>,
}

impl GrpcObserveLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        GrpcObserveLayer { metrics }
    }
}

impl<S> tower::Layer<S> for GrpcObserveLayer {
    type Service = GrpcObserve<S>;
    fn layer(&self, inner: S) -> GrpcObserve<S> {
        GrpcObserve {
            metrics: Arc::clone(&self.metrics),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct GrpcObserve<S> {
    metrics: Arc<Metrics>,
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ResBody> tower::Service<axum::http::Request<B>> for GrpcObserve<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = Arc::clone(&self.metrics);
        // `/gateway.v1.AdminService/CreateRoute` → `AdminService/CreateRoute`.
        let path = request.uri().path();
        let Some(operation) = path
            .strip_prefix("/gateway.v1.")
            .filter(|op| op.starts_with("AdminService/"))
            .map(str::to_owned)
        else {
            return Box::pin(inner.call(request));
        };
        let (service, method) = operation.split_once('/').unwrap_or((&operation, ""));
        let span = tracing::info_span!(
            "admin",
            otel.name = %format_args!("gateway.v1.{operation}"),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %format_args!("gateway.v1.{service}"),
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        let _ = span.set_parent(caller_context(request.headers()));
        Box::pin(async move {
            let started = Instant::now();
            let result = inner.call(request).instrument(span.clone()).await;
            let outcome = match &result {
                // Errors come trailers-only: the status is in the headers; success has none.
                Ok(response) => {
                    let code = response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .unwrap_or(0);
                    span.record("rpc.grpc.status_code", code);
                    format!("{:?}", tonic::Code::from(code))
                }
                Err(_) => "transport_error".to_owned(),
            };
            metrics.admin_call(
                AdminLabels {
                    api: "grpc",
                    operation,
                    outcome,
                },
                started.elapsed().as_secs_f64(),
            );
            result
        })
    }
}
