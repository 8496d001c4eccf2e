//! What observing one request costs the data plane, each part against the same request path
//! with that observation off (the `off` benchmarks: what the proxy does when it is not
//! configured, one branch).
//!
//! `cargo bench -p gateway-dataplane --bench observe`
//!
//! - `request_id`: a client's `x-request-id` kept, or a new one generated and set. Always on.
//! - `metrics`: what a finished request records — its route's counters (method and status
//!   class), request-duration histogram, bytes in and out, and its upstream's attempt counter and
//!   histogram. Always on.
//! - `access_log`: on the request path, the record (clones of what the request holds) handed to
//!   the writer's channel; on the writer thread, the JSON line.
//! - `trace_context`: the caller's `traceparent` read when tracing is off (for the access log's
//!   trace id); with tracing on, the context extracted, a server span, a client span whose
//!   context is injected into the upstream request's headers, both ended (sampled, exported by
//!   the batch processor's thread to a collector that is not there).
//!
//! The allocation profiler counts what each allocates per request.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use divan::Bencher;
use gateway_dataplane::app::Gateway;
use gateway_dataplane::state::TargetState;
use gateway_dataplane::telemetry::access_log::format_line;
use gateway_dataplane::telemetry::otel::{ServerRequest, incoming_trace_id};
use gateway_dataplane::telemetry::{
    AccessLog, AccessLogTarget, AccessRecord, RouteStats, Tracing, TracingConfig, UpstreamStats,
    method_class,
};
use http::{HeaderMap, HeaderValue, Method, Uri, Version};

#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn request_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("shop.example.com"));
    headers.insert("user-agent", HeaderValue::from_static("bench/1"));
    headers.insert("accept", HeaderValue::from_static("*/*"));
    headers.insert("traceparent", HeaderValue::from_static(TRACEPARENT));
    headers.insert("tracestate", HeaderValue::from_static("vendor=value"));
    headers
}

mod request_id {
    use gateway_dataplane::telemetry::request_id::RequestIds;

    use super::*;

    #[divan::bench]
    fn kept(bencher: Bencher) {
        let ids = RequestIds::default();
        bencher
            .with_inputs(|| {
                let mut headers = request_headers();
                headers.insert("x-request-id", HeaderValue::from_static("client-id-1"));
                headers
            })
            .bench_local_refs(|headers| ids.ensure(headers));
    }

    #[divan::bench]
    fn generated(bencher: Bencher) {
        let ids = RequestIds::default();
        bencher
            .with_inputs(request_headers)
            .bench_local_refs(|headers| ids.ensure(headers));
    }
}

mod metrics {
    use super::*;

    /// The same inputs, nothing recorded.
    #[divan::bench]
    fn off(bencher: Bencher) {
        bencher.bench(|| {
            black_box((
                black_box(&Method::GET),
                black_box(200u16),
                black_box(Duration::from_micros(900)),
                black_box(1024u64),
            ))
        });
    }

    #[divan::bench]
    fn record(bencher: Bencher) {
        let route = RouteStats::new("shop", "shop-pool");
        let upstream = UpstreamStats::new("shop-pool");
        bencher.bench(|| {
            let (method, status) = (black_box(&Method::GET), black_box(200u16));
            route.add_bytes_in(black_box(512));
            upstream.record_attempt(black_box(Duration::from_micros(700)));
            route.record(
                method_class(method),
                status,
                None,
                black_box(Duration::from_micros(900)),
                black_box(1024),
            );
        });
    }
}

mod access_log {
    use super::*;

    /// What the proxy hands over: clones of what the request holds (the trace id was read
    /// when the request arrived).
    fn record(
        route: &Arc<RouteStats>,
        target: &Arc<TargetState>,
        uri: &Uri,
        trace_id: Option<opentelemetry::trace::TraceId>,
    ) -> AccessRecord {
        AccessRecord {
            time: SystemTime::now(),
            method: Method::GET,
            uri: uri.clone(),
            host: Some(HeaderValue::from_static("shop.example.com")),
            version: Version::HTTP_11,
            status: 200,
            bytes_in: 512,
            bytes_out: 1024,
            duration: Duration::from_micros(900),
            upstream_time: Some(Duration::from_micros(700)),
            target: Some(Arc::clone(target)),
            route: Some(Arc::clone(route)),
            request_id: HeaderValue::from_static("5f0c6a1e2b3d4c5e6f708192a3b4c5d6"),
            trace_id,
            retries: 0,
        }
    }

    /// Access log not configured: the proxy checks an `Option` and moves on.
    #[divan::bench]
    fn off(bencher: Bencher) {
        let log: Option<AccessLog> = None;
        bencher.bench(|| black_box(&log).is_some());
    }

    /// On the request path: the record, then a non-blocking send to the writer thread.
    #[divan::bench]
    fn send(bencher: Bencher) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let _entered = runtime.enter();
        let log = AccessLog::start(&AccessLogTarget::File("/dev/null".into()), Gateway::new())
            .expect("an access log to /dev/null");
        let route = Arc::new(RouteStats::new("shop", "shop-pool"));
        let target = Arc::new(TargetState::new("shop-pool", "10.0.0.7:8080"));
        let uri: Uri = "/items/7?color=blue".parse().expect("a URI");
        let trace_id = incoming_trace_id(&request_headers());
        bencher.bench(|| log.send(record(&route, &target, &uri, trace_id)));
    }

    /// On the writer thread: one JSON line.
    #[divan::bench]
    fn format(bencher: Bencher) {
        let route = Arc::new(RouteStats::new("shop", "shop-pool"));
        let target = Arc::new(TargetState::new("shop-pool", "10.0.0.7:8080"));
        let uri: Uri = "/items/7?color=blue".parse().expect("a URI");
        let record = record(&route, &target, &uri, incoming_trace_id(&request_headers()));
        let mut line = Vec::with_capacity(512);
        bencher.bench_local(|| format_line(black_box(&record), &mut line));
    }
}

mod trace_context {
    use super::*;

    /// Tracing off: only the caller's trace id, read for the access log.
    #[divan::bench]
    fn off(bencher: Bencher) {
        let headers = request_headers();
        bencher.bench(|| incoming_trace_id(black_box(&headers)));
    }

    /// Spans exported to a collector that is not there (the exporter's thread drops them).
    fn tracing() -> (tokio::runtime::Runtime, Tracing) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let tracing = {
            let _entered = runtime.enter();
            Tracing::start(&TracingConfig {
                endpoint: "http://127.0.0.1:9".into(),
                sample_ratio: 1.0,
                service_name: "bench".into(),
            })
            .expect("an OTLP exporter")
        };
        (runtime, tracing)
    }

    /// Tracing on, the caller's `traceparent`/`tracestate` parsed only.
    #[divan::bench]
    fn extract(bencher: Bencher) {
        let (_runtime, tracing) = tracing();
        let headers = request_headers();
        bencher.bench_local(|| tracing.extract(black_box(&headers)));
    }

    /// Tracing on: continue the caller's trace, one attempt, both spans ended.
    #[divan::bench]
    fn on(bencher: Bencher) {
        let (_runtime, tracing) = tracing();
        let headers = request_headers();
        let mut upstream = request_headers();
        bencher.bench_local(|| {
            let parent = tracing.extract(black_box(&headers));
            let mut trace = tracing.server_span(
                &parent,
                ServerRequest {
                    method: &Method::GET,
                    path: "/items/7",
                    host: "shop.example.com",
                    route: Some("shop"),
                    protocol: "1.1",
                    client: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    start: SystemTime::now(),
                },
            );
            tracing.start_attempt(&mut trace, &Method::GET, "10.0.0.7:8080", 0, &mut upstream);
            trace.end_attempt(Some(200), None);
            trace.finish(200, None);
        });
    }
}
