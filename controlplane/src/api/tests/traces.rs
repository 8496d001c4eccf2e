//! Traces of admin calls under exactly what `main` installs ([`telemetry::subscriber`] and
//! [`telemetry::tracer_provider`]), exported to memory: every store query an admin call makes
//! is a span nested under the call's server span, on REST and gRPC, with or without a caller's
//! `traceparent`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hyper::Method;
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use serde_json::json;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use super::*;
use crate::telemetry::{self, LogOutput, Metrics};

/// Spans as the provider exports them.
#[derive(Debug, Clone, Default)]
struct Exported(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Exported {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.0.lock().unwrap().extend(batch);
        std::future::ready(Ok(()))
    }
}

/// Runs `test` on a multi-threaded runtime, as `main` serves, with `subscriber` installed as
/// `main` installs it: `try_init`, the global default plus the `log` bridge (which is what lost
/// spans before: see `telemetry::never_cached`). No other test of this binary installs one;
/// their spans, if any, land in this exporter under traces of their own.
fn on_runtime_with<F: std::future::Future<Output = ()>>(
    subscriber: impl tracing::Subscriber + Send + Sync + 'static,
    test: F,
) {
    tracing_subscriber::util::SubscriberInitExt::try_init(subscriber).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(test);
}

/// For each admin span named `call`: the store spans under it, and the store spans of its trace
/// that are not under it. Other tests of this binary run at the same time and their spans land
/// in the same exporter, so a name may have several admin spans.
fn store_spans_of(spans: &[SpanData], call: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let admins: Vec<&SpanData> = spans.iter().filter(|s| s.name == call).collect();
    assert!(!admins.is_empty(), "an admin span named {call:?}");
    admins
        .into_iter()
        .map(|admin| store_spans_under(spans, &admin.span_context))
        .collect()
}

fn store_spans_under(
    spans: &[SpanData],
    admin: &opentelemetry::trace::SpanContext,
) -> (Vec<String>, Vec<String>) {
    let trace: TraceId = admin.trace_id();
    let by_id: HashMap<SpanId, &SpanData> = spans
        .iter()
        .filter(|s| s.span_context.trace_id() == trace)
        .map(|s| (s.span_context.span_id(), s))
        .collect();
    let under_admin = |span: &SpanData| {
        let mut parent = span.parent_span_id;
        while parent != admin.span_id() {
            match by_id.get(&parent) {
                Some(up) => parent = up.parent_span_id,
                None => return false,
            }
        }
        true
    };
    let (mut under, mut astray) = (Vec::new(), Vec::new());
    for span in by_id.values().filter(|s| s.name.starts_with("store.")) {
        if under_admin(span) {
            under.push(span.name.to_string());
        } else {
            astray.push(span.name.to_string());
        }
    }
    under.sort();
    (under, astray)
}

/// A REST call: method, path, token, extra headers, body.
type Call<'a> = (
    Method,
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    Option<Value>,
);

fn with_traceparent<T>(mut request: tonic::Request<T>) -> tonic::Request<T> {
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    request
        .metadata_mut()
        .insert("traceparent", parent.parse().unwrap());
    request
}

#[test]
fn the_store_queries_of_an_admin_call_are_children_of_its_span() {
    let exported = Exported::default();
    let provider = telemetry::tracer_provider(exported.clone(), 1.0, "test");
    let log = LogOutput {
        json: false,
        ansi: false,
        filter: EnvFilter::new("info"),
        writer: BoxMakeWriter::new(std::io::sink),
    };
    let metrics = Arc::new(Metrics::default());
    let subscriber =
        telemetry::subscriber(log, &metrics, Some(provider.tracer("gateway-controlplane")));
    let (flushing, running) = (provider.clone(), exported.clone());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_running = Arc::clone(&seen);
    on_runtime_with(subscriber, async move {
        let server = TestServer::start().await;
        let viewer = server.token("reader", "viewer").await;
        let parent = [(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )];
        let other_parent = [(
            "traceparent",
            "00-5bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )];
        // Multi-query calls, REST; a viewer's token is looked up in the store as well.
        let calls: [Call<'_>; 5] = [
            (
                Method::POST,
                "/v1/apply",
                ROOT,
                &[],
                Some(json!({"upstreams": [upstream("web")]})),
            ),
            (
                Method::GET,
                "/v1/upstreams/web/health",
                &viewer,
                &parent,
                None,
            ),
            (Method::GET, "/v1/status", &viewer, &[], None),
            (
                Method::DELETE,
                "/v1/upstreams/web",
                ROOT,
                &other_parent,
                None,
            ),
            (
                Method::POST,
                "/v1/rollback",
                ROOT,
                &[],
                Some(json!({"to": 1})),
            ),
        ];
        for (method, path, token, headers, body) in calls {
            let reply = server
                .send(method.clone(), path, Some(token), headers, body)
                .await;
            assert!(reply.status.is_success(), "{method} {path}: {reply:?}");
        }
        // gRPC, with and without a caller's trace.
        let mut admin = server.grpc(Some(&viewer)).await;
        let get = gateway_proto::v1::GetRequest { name: "web".into() };
        admin
            .get_upstream_health(with_traceparent(tonic::Request::new(get)))
            .await
            .unwrap();
        admin
            .get_status(gateway_proto::v1::GetStatusRequest::default())
            .await
            .unwrap();
        // While the server still runs: a span kept open by something long-lived would be
        // closed (and exported) by the shutdown, and so go unnoticed after it.
        let _ = flushing.force_flush();
        *seen_running.lock().unwrap() = running.0.lock().unwrap().clone();
    });
    let spans = seen.lock().unwrap().clone();
    let expected: [(&str, &[&str]); 7] = [
        ("POST /v1/apply", &["store.head_version", "store.mutate"]),
        (
            "GET /v1/upstreams/{name}/health",
            &[
                "store.dataplanes",
                "store.get",
                "store.token_by_sha256",
                "store.upstream_health",
            ],
        ),
        (
            "GET /v1/status",
            &["store.dataplanes", "store.token_by_sha256"],
        ),
        (
            "DELETE /v1/upstreams/{name}",
            &["store.head_version", "store.mutate"],
        ),
        (
            "POST /v1/rollback",
            &["store.head_version", "store.mutate", "store.version"],
        ),
        (
            "gateway.v1.AdminService/GetUpstreamHealth",
            &[
                "store.dataplanes",
                "store.get",
                "store.token_by_sha256",
                "store.upstream_health",
            ],
        ),
        (
            "gateway.v1.AdminService/GetStatus",
            &["store.dataplanes", "store.token_by_sha256"],
        ),
    ];
    let mut wrong = Vec::new();
    for (call, names) in expected {
        // Every admin span of this name keeps its trace's store spans under it, and one (this
        // test's call) has all those the call makes. The refresh after a commit may find the
        // poller was first: `store.latest` is optional.
        let found = store_spans_of(&spans, call);
        let complete = found
            .iter()
            .any(|(under, _)| names.iter().all(|n| under.iter().any(|u| u == n)));
        let astray: Vec<&Vec<String>> = found
            .iter()
            .map(|(_, astray)| astray)
            .filter(|astray| !astray.is_empty())
            .collect();
        if !complete || !astray.is_empty() {
            wrong.push(format!(
                "{call}: expected {names:?} under it; found under each {:?}, astray {astray:?}",
                found.iter().map(|(under, _)| under).collect::<Vec<_>>()
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
