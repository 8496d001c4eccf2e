//! OpenTelemetry tracing of requests, exported with OTLP over gRPC. Off unless an endpoint is
//! configured; then the proxy holds a [`Tracing`] and pays for spans, otherwise one branch.
//!
//! Per request: a server span named `{method} {route}` (just `{method}` when no route matched)
//! and a client span per attempt at a target, with the HTTP semantic conventions' attributes. An
//! incoming W3C `traceparent` is continued: same trace id, a new span id for this hop, and
//! `tracestate` forwarded. The client span's context is what the target receives in
//! `traceparent`. Sampling is parent-based, with a ratio for new traces.

use std::time::SystemTime;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    SpanKind, Status, TraceContextExt, TraceId, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

/// How spans are exported and sampled.
#[derive(Debug, Clone)]
pub struct TracingConfig {
    /// OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`.
    pub endpoint: String,
    /// Fraction of new traces (no sampled parent) recorded, 0 to 1.
    pub sample_ratio: f64,
    pub service_name: String,
}

#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot set up the OTLP exporter for {endpoint}: {source}")]
pub struct TracingError {
    endpoint: String,
    #[source]
    source: opentelemetry_otlp::ExporterBuildError,
}

impl Tracing {
    /// Builds the exporter and the batch processor; call inside the Tokio runtime (the gRPC
    /// channel lives there). Nothing connects until the first batch is exported.
    pub fn start(config: &TracingConfig) -> Result<Tracing, TracingError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(config.endpoint.clone())
            .build()
            .map_err(|source| TracingError {
                endpoint: config.endpoint.clone(),
                source,
            })?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio.clamp(0.0, 1.0),
            ))))
            .with_resource(
                Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("gateway-dataplane");
        Ok(Tracing {
            provider,
            tracer,
            propagator: TraceContextPropagator::new(),
        })
    }

    /// Exports what is buffered; at exit.
    pub fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "flushing traces at exit failed");
        }
    }

    /// The caller's trace context from `traceparent`/`tracestate`, if any.
    pub fn extract(&self, headers: &HeaderMap) -> Context {
        self.propagator.extract(&Headers(headers))
    }

    /// Starts the server span of a request that began at `start`.
    pub fn server_span(&self, parent: &Context, request: ServerRequest<'_>) -> RequestTrace {
        let name = match request.route {
            Some(route) => format!("{} {route}", request.method),
            None => request.method.to_string(),
        };
        let mut attributes = vec![
            KeyValue::new("http.request.method", request.method.as_str().to_owned()),
            KeyValue::new("url.path", request.path.to_owned()),
            KeyValue::new("url.scheme", "http"),
            KeyValue::new("network.protocol.version", request.protocol),
            KeyValue::new("client.address", request.client.to_string()),
        ];
        if let Some(route) = request.route {
            attributes.push(KeyValue::new("http.route", route.to_owned()));
        }
        if let Some((host, port)) = split_host(request.host) {
            attributes.push(KeyValue::new("server.address", host.to_owned()));
            if let Some(port) = port {
                attributes.push(KeyValue::new("server.port", i64::from(port)));
            }
        }
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_start_time(request.start)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, parent);
        RequestTrace {
            server: parent.with_span(span),
            attempt: None,
        }
    }

    /// Starts a client span for an attempt at `target` (`host:port`) and puts its context in the
    /// upstream request's `traceparent` (and the caller's `tracestate`).
    pub fn start_attempt(
        &self,
        trace: &mut RequestTrace,
        method: &Method,
        target: &str,
        resend_count: u32,
        headers: &mut HeaderMap,
    ) {
        let mut attributes = vec![KeyValue::new(
            "http.request.method",
            method.as_str().to_owned(),
        )];
        if let Some((host, port)) = split_host(target) {
            attributes.push(KeyValue::new("server.address", host.to_owned()));
            if let Some(port) = port {
                attributes.push(KeyValue::new("server.port", i64::from(port)));
            }
        }
        if resend_count > 0 {
            attributes.push(KeyValue::new(
                "http.request.resend_count",
                i64::from(resend_count),
            ));
        }
        let span = self
            .tracer
            .span_builder(method.to_string())
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &trace.server);
        let attempt = trace.server.with_span(span);
        self.propagator
            .inject_context(&attempt, &mut HeadersMut(headers));
        trace.attempt = Some(attempt);
    }
}

/// What the server span describes.
#[derive(Debug)]
pub struct ServerRequest<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub host: &'a str,
    pub route: Option<&'a str>,
    pub protocol: &'static str,
    pub client: std::net::IpAddr,
    pub start: SystemTime,
}

/// A request's spans: the server span, and the client span of the attempt in progress.
#[derive(Debug)]
pub struct RequestTrace {
    server: Context,
    attempt: Option<Context>,
}

impl RequestTrace {
    pub fn trace_id(&self) -> TraceId {
        self.server.span().span_context().trace_id()
    }

    /// Ends the current attempt's span with the target's status, or with the error it met.
    pub fn end_attempt(&mut self, status: Option<u16>, error: Option<&'static str>) {
        let Some(attempt) = self.attempt.take() else {
            return;
        };
        let span = attempt.span();
        if let Some(status) = status {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            // Client spans: 4xx and 5xx are errors.
            if status >= 400 {
                span.set_status(Status::error(""));
                span.set_attribute(KeyValue::new("error.type", status.to_string()));
            }
        }
        if let Some(error) = error {
            span.set_status(Status::error(error));
            span.set_attribute(KeyValue::new("error.type", error));
        }
        span.end();
    }

    /// Ends the server span with the response's status (5xx is an error on the server side).
    pub fn finish(mut self, status: u16, error: Option<&'static str>) {
        self.end_attempt(None, None);
        let span = self.server.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if status >= 500 {
            span.set_status(Status::error(""));
            span.set_attribute(KeyValue::new(
                "error.type",
                error.map_or_else(|| status.to_string(), str::to_owned),
            ));
        }
        span.end();
    }
}

/// The trace id of an incoming `traceparent`, when tracing is off but the access log wants it.
pub fn incoming_trace_id(headers: &HeaderMap) -> Option<TraceId> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = value.split('-');
    let (_version, trace_id) = (parts.next()?, parts.next()?);
    let id = TraceId::from_hex(trace_id).ok()?;
    (trace_id.len() == 32 && id != TraceId::INVALID).then_some(id)
}

fn split_host(authority: &str) -> Option<(&str, Option<u16>)> {
    if authority.is_empty() {
        return None;
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            match port.parse() {
                Ok(port) => Some((host, Some(port))),
                Err(_) => Some((authority, None)),
            }
        }
        _ => Some((authority, None)),
    }
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incoming_trace_id_is_read_from_traceparent() {
        let mut headers = HeaderMap::new();
        assert_eq!(incoming_trace_id(&headers), None);
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert_eq!(
            incoming_trace_id(&headers).map(|t| t.to_string()),
            Some("4bf92f3577b34da6a3ce929d0e0e4736".into())
        );
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        );
        assert_eq!(incoming_trace_id(&headers), None);
    }

    #[test]
    fn an_incoming_trace_is_continued_and_passed_on_with_a_new_span_per_hop() {
        use opentelemetry::trace::SpanId;
        use opentelemetry_sdk::trace::InMemorySpanExporter;

        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let tracing = Tracing {
            tracer: provider.tracer("test"),
            provider,
            propagator: TraceContextPropagator::new(),
        };
        let mut incoming = HeaderMap::new();
        incoming.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        incoming.insert("tracestate", HeaderValue::from_static("vendor=x"));
        let parent = tracing.extract(&incoming);
        let mut trace = tracing.server_span(
            &parent,
            ServerRequest {
                method: &Method::GET,
                path: "/items",
                host: "shop.local:8080",
                route: Some("shop"),
                protocol: "1.1",
                client: [127, 0, 0, 1].into(),
                start: SystemTime::now(),
            },
        );
        let mut upstream = HeaderMap::new();
        tracing.start_attempt(&mut trace, &Method::GET, "10.0.0.1:80", 0, &mut upstream);
        trace.end_attempt(Some(200), None);
        trace.finish(200, None);

        let spans = exporter.get_finished_spans().unwrap();
        let server = spans
            .iter()
            .find(|s| s.span_kind == SpanKind::Server)
            .unwrap();
        let client = spans
            .iter()
            .find(|s| s.span_kind == SpanKind::Client)
            .unwrap();
        let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        assert_eq!(server.name, "GET shop");
        assert_eq!(server.span_context.trace_id(), trace_id);
        assert_eq!(
            server.parent_span_id,
            SpanId::from_hex("00f067aa0ba902b7").unwrap()
        );
        assert_eq!(client.span_context.trace_id(), trace_id);
        assert_eq!(client.parent_span_id, server.span_context.span_id());
        assert!(
            server
                .attributes
                .contains(&KeyValue::new("http.route", "shop"))
        );
        assert!(
            client
                .attributes
                .contains(&KeyValue::new("http.response.status_code", 200))
        );
        assert_eq!(
            upstream["traceparent"],
            format!("00-{trace_id}-{}-01", client.span_context.span_id()).as_str()
        );
        assert_eq!(upstream["tracestate"], "vendor=x");
    }

    #[test]
    fn hosts_split_into_address_and_port() {
        assert_eq!(split_host("a.local:8080"), Some(("a.local", Some(8080))));
        assert_eq!(split_host("a.local"), Some(("a.local", None)));
        assert_eq!(split_host("[::1]:80"), Some(("[::1]", Some(80))));
        assert_eq!(split_host(""), None);
    }
}
