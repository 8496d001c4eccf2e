//! What the control plane tells about itself: `/metrics` (Prometheus text, on the REST listener)
//! and traces of admin calls, with each store query a child span, exported with OTLP over gRPC
//! when an endpoint is configured.
//!
//! Store latency comes from the store's own spans (`store.*`, one per public store method): a
//! small tracing layer times them, so one annotation gives both the child span and the histogram.
//! Convergence is measured per version, from the moment this replica published it (right after
//! its own commit, or when it heard of another replica's) to the ACK of the last data plane that
//! was connected then.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanExporter, Tracer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::Subscriber;
use tracing::span::{Attributes, Id};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Versions awaiting convergence; older ones are given up (a data plane that never ACKs).
const PENDING_VERSIONS: usize = 64;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdminLabels {
    /// `rest` or `grpc`.
    pub api: &'static str,
    /// `GET /v1/routes/{name}` or `AdminService/CreateRoute`.
    pub operation: String,
    /// The HTTP status code or the gRPC code name.
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    api: &'static str,
    operation: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    trigger: &'static str,
}

/// What made this replica publish a newer version.
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    /// A write on this replica.
    Commit,
    /// A Postgres notification from another replica.
    Notification,
    /// The periodic version check (a notification was missed or there is none).
    Poll,
    /// The listener reconnected and caught up.
    Resync,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Commit => "commit",
            Trigger::Notification => "notification",
            Trigger::Poll => "poll",
            Trigger::Resync => "resync",
        }
    }
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    // 0.5 ms … ~8 s
    exponential_buckets(0.0005, 2.0, 15)
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    admin_requests: Family<AdminLabels, Counter>,
    admin_duration: Family<OperationLabels, Histogram>,
    store_duration: Family<StoreLabels, Histogram>,
    snapshot_build: Histogram,
    snapshot_bytes: Gauge,
    published_version: Gauge,
    published: Family<TriggerLabels, Counter>,
    dataplanes_connected: Gauge,
    acks: Counter,
    nacks: Counter,
    convergence: Histogram,
    convergence_pending: Mutex<Convergence>,
}

#[derive(Debug, Default)]
struct Convergence {
    /// Streams open per node id (a node may briefly have two while it reconnects).
    connected: HashMap<String, usize>,
    /// Per version: when published, and who has yet to ACK it (or a newer one).
    pending: BTreeMap<u64, (Instant, HashSet<String>)>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let admin_requests = Family::<AdminLabels, Counter>::default();
        let admin_duration = Family::<OperationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(seconds_buckets())
        });
        let store_duration = Family::<StoreLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(seconds_buckets())
        });
        let snapshot_build = Histogram::new(seconds_buckets());
        let snapshot_bytes = Gauge::default();
        let published_version = Gauge::default();
        let published = Family::<TriggerLabels, Counter>::default();
        let dataplanes_connected = Gauge::default();
        let acks = Counter::default();
        let nacks = Counter::default();
        // 10 ms … ~160 s
        let convergence = Histogram::new(exponential_buckets(0.01, 2.0, 15));
        registry.register(
            "gateway_admin_requests",
            "Admin API calls, by API, operation and outcome (HTTP status or gRPC code).",
            admin_requests.clone(),
        );
        registry.register(
            "gateway_admin_request_duration_seconds",
            "Time to answer an admin API call.",
            admin_duration.clone(),
        );
        registry.register(
            "gateway_store_query_duration_seconds",
            "Time of a store operation (one transaction or query), by operation.",
            store_duration.clone(),
        );
        registry.register(
            "gateway_snapshot_build_duration_seconds",
            "Time to load and build the snapshot of a newly published version.",
            snapshot_build.clone(),
        );
        registry.register(
            "gateway_snapshot_bytes",
            "Encoded size of the published config (what a full snapshot carries).",
            snapshot_bytes.clone(),
        );
        registry.register(
            "gateway_published_config_version",
            "The config version this replica publishes to data planes.",
            published_version.clone(),
        );
        registry.register(
            "gateway_snapshot_publications",
            "Newer versions published, by what revealed them: commit (this replica), notification, poll or resync (catch-ups).",
            published.clone(),
        );
        registry.register(
            "gateway_dataplanes_connected",
            "Data planes with an open discovery stream to this replica.",
            dataplanes_connected.clone(),
        );
        registry.register(
            "gateway_dataplane_acks",
            "Snapshots data planes applied (ACKs).",
            acks.clone(),
        );
        registry.register(
            "gateway_dataplane_nacks",
            "Snapshots data planes rejected (NACKs).",
            nacks.clone(),
        );
        registry.register(
            "gateway_config_convergence_seconds",
            "Per version: time from its publication on this replica to the ACK of the last data plane connected then.",
            convergence.clone(),
        );
        Metrics {
            registry,
            admin_requests,
            admin_duration,
            store_duration,
            snapshot_build,
            snapshot_bytes,
            published_version,
            published,
            dataplanes_connected,
            acks,
            nacks,
            convergence,
            convergence_pending: Mutex::default(),
        }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Err(error) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
        {
            tracing::warn!(%error, "encoding /metrics failed");
        }
        text
    }

    pub fn admin_call(&self, labels: AdminLabels, seconds: f64) {
        self.admin_duration
            .get_or_create(&OperationLabels {
                api: labels.api,
                operation: labels.operation.clone(),
            })
            .observe(seconds);
        self.admin_requests.get_or_create(&labels).inc();
    }

    fn store_query(&self, operation: &'static str, seconds: f64) {
        self.store_duration
            .get_or_create(&StoreLabels { operation })
            .observe(seconds);
    }

    /// A newer version is published: `built_in` seconds to build, `bytes` encoded.
    pub fn published(&self, version: u64, trigger: Trigger, built_in: f64, bytes: usize) {
        self.snapshot_build.observe(built_in);
        self.snapshot_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.published_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        self.published
            .get_or_create(&TriggerLabels {
                trigger: trigger.as_str(),
            })
            .inc();
        let mut state = self.convergence();
        let waiting: HashSet<String> = state.connected.keys().cloned().collect();
        if waiting.is_empty() {
            return;
        }
        state.pending.insert(version, (Instant::now(), waiting));
        while state.pending.len() > PENDING_VERSIONS {
            state.pending.pop_first();
        }
    }

    pub fn dataplane_connected(&self, node_id: &str) {
        self.dataplanes_connected.inc();
        *self
            .convergence()
            .connected
            .entry(node_id.to_string())
            .or_default() += 1;
    }

    pub fn dataplane_disconnected(&self, node_id: &str) {
        self.dataplanes_connected.dec();
        let mut state = self.convergence();
        let gone = match state.connected.get_mut(node_id) {
            Some(streams) if *streams > 1 => {
                *streams -= 1;
                false
            }
            _ => {
                state.connected.remove(node_id);
                true
            }
        };
        if gone {
            // It will not ACK: the versions it held up converge without it.
            self.settle(&mut state, node_id, u64::MAX, false);
        }
    }

    pub fn acked(&self, node_id: &str, version: u64) {
        self.acks.inc();
        let mut state = self.convergence();
        self.settle(&mut state, node_id, version, true);
    }

    pub fn nacked(&self) {
        self.nacks.inc();
    }

    /// `node_id` holds `version`: it no longer holds up that version or older ones.
    fn settle(&self, state: &mut Convergence, node_id: &str, version: u64, observe: bool) {
        let mut converged = Vec::new();
        for (&pending, (since, waiting)) in state.pending.range_mut(..=version) {
            if waiting.remove(node_id) && waiting.is_empty() {
                converged.push((pending, since.elapsed().as_secs_f64()));
            }
        }
        for (pending, seconds) in converged {
            state.pending.remove(&pending);
            if observe {
                self.convergence.observe(seconds);
            }
        }
    }

    fn convergence(&self) -> std::sync::MutexGuard<'_, Convergence> {
        self.convergence_pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Spans batched to `exporter`; new traces sampled at `ratio`, continued ones as the caller
/// decided.
pub fn tracer_provider(
    exporter: impl SpanExporter + 'static,
    ratio: f64,
    service_name: &str,
) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build()
}

/// Where and how diagnostic logs go.
pub struct LogOutput {
    pub json: bool,
    pub ansi: bool,
    /// Which events and spans are logged (`RUST_LOG`); it does not limit what is traced.
    pub filter: EnvFilter,
    pub writer: BoxMakeWriter,
}

/// The process's subscriber: diagnostic logs, store timings into the metrics, and, with a
/// tracer, admin calls and their store queries as spans. `main` installs exactly this; the
/// tests below run admin calls under it with an in-memory exporter.
pub fn subscriber(
    log: LogOutput,
    metrics: &Arc<Metrics>,
    tracer: Option<Tracer>,
) -> impl Subscriber + Send + Sync + for<'a> LookupSpan<'a> {
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(log.ansi)
        .with_writer(log.writer);
    let fmt = if log.json {
        fmt.json().with_filter(log.filter).boxed()
    } else {
        fmt.with_filter(log.filter).boxed()
    };
    let store_timings = StoreTimings(Arc::clone(metrics))
        .with_filter(never_cached(|meta| meta.name().starts_with("store.")));
    // Admin calls and their store queries; not the diagnostic events.
    let otel = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(never_cached(|meta| {
                meta.is_span() && (meta.name() == "admin" || meta.name().starts_with("store."))
            }))
    });
    tracing_subscriber::registry()
        .with(fmt)
        .with(store_timings)
        .with(otel)
}

/// A per-layer filter whose "yes" is asked again at every span, never cached per callsite.
///
/// Per-layer filters keep each layer's verdict in a thread-local between the subscriber's
/// `enabled` and the `new_span` (or event) that follows it. Something may ask `enabled` without
/// following up: the `log` bridge (`LogTracer`, installed by `try_init`) answers sqlx's
/// `log_enabled!` check at the end of every query that way, and leaves that event's verdict
/// ("not for the span layers") behind. A callsite whose interest is cached as "always" skips
/// `enabled` and goes straight to `new_span`, which then takes the stale verdict: the next
/// `store.*` span on that thread was dropped from traces and store timings (a query followed
/// by another, as in most multi-query calls). Asking at each span resets the verdict first.
fn never_cached<S>(
    wanted: fn(&tracing::Metadata<'_>) -> bool,
) -> impl tracing_subscriber::layer::Filter<S> {
    tracing_subscriber::filter::dynamic_filter_fn(move |meta, _| wanted(meta)).with_callsite_filter(
        move |meta| {
            if wanted(meta) {
                tracing::subscriber::Interest::sometimes()
            } else {
                tracing::subscriber::Interest::never()
            }
        },
    )
}

/// Times spans named `store.*` into `gateway_store_query_duration_seconds`.
pub struct StoreTimings(pub Arc<Metrics>);

struct Started(Instant);

impl<S> Layer<S> for StoreTimings
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name().starts_with("store.")
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(Started(Instant::now()));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(operation) = span.metadata().name().strip_prefix("store.") else {
            return;
        };
        if let Some(Started(at)) = span.extensions().get::<Started>() {
            self.0.store_query(operation, at.elapsed().as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn a_version_converges_when_every_data_plane_connected_at_publication_has_acked() {
        let metrics = Metrics::default();
        metrics.dataplane_connected("a");
        metrics.dataplane_connected("b");
        metrics.published(2, Trigger::Commit, 0.001, 100);
        metrics.acked("a", 2);
        let text = metrics.render();
        assert_eq!(
            sample(&text, "gateway_config_convergence_seconds_count"),
            Some(0.0)
        );
        // b acknowledges a newer version: that settles 2 as well.
        metrics.published(3, Trigger::Poll, 0.001, 100);
        metrics.acked("b", 3);
        metrics.acked("a", 3);
        let text = metrics.render();
        assert_eq!(
            sample(&text, "gateway_config_convergence_seconds_count"),
            Some(2.0),
            "{text}"
        );
        assert_eq!(sample(&text, "gateway_dataplanes_connected"), Some(2.0));
        assert_eq!(sample(&text, "gateway_published_config_version"), Some(3.0));
        assert_eq!(
            sample(
                &text,
                r#"gateway_snapshot_publications_total{trigger="poll"}"#
            ),
            Some(1.0)
        );
        assert_eq!(sample(&text, "gateway_dataplane_acks_total"), Some(3.0));
    }

    #[test]
    fn a_data_plane_that_leaves_does_not_hold_a_version_up() {
        let metrics = Metrics::default();
        metrics.dataplane_connected("a");
        metrics.dataplane_connected("b");
        metrics.published(5, Trigger::Commit, 0.0, 1);
        metrics.acked("a", 5);
        metrics.dataplane_disconnected("b");
        assert!(metrics.convergence().pending.is_empty());
        assert_eq!(
            sample(&metrics.render(), "gateway_dataplanes_connected"),
            Some(1.0)
        );
    }
}
