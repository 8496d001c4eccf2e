//! `/metrics`: every counter, gauge and histogram of the data plane in the Prometheus text format
//! (version 0.0.4), read when scraped.
//!
//! Names start with `gateway_`, durations are in seconds, counters end in `_total`. Labels are
//! bounded by the config, never by clients: route and upstream names, target addresses, method
//! and status classes, and fixed reason words. Series appear once they have something to count.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use gateway_proto::v1::Config;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::histogram::HistogramSnapshot;
use super::metrics::{LocalReason, METHOD_CLASSES, RetryReason, STATUS_CLASSES};
use crate::app::Gateway;

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Vec<(&'static str, String)>;

#[derive(Debug)]
enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram(&'static [f64], HistogramSnapshot),
}

#[derive(Debug)]
struct Family {
    /// Without the `_total` a counter gets when encoded.
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Labels, Value)>,
}

impl Family {
    fn new(name: &'static str, help: &'static str, kind: MetricType) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    fn with(mut self, labels: Labels, value: Value) -> Family {
        self.samples.push((labels, value));
        self
    }

    fn push(&mut self, labels: Labels, value: Value) {
        self.samples.push((labels, value));
    }

    /// A counter sample, left out while zero.
    fn count(&mut self, labels: Labels, value: u64) {
        if value != 0 {
            self.samples.push((labels, Value::Counter(value)));
        }
    }
}

/// Everything read at one scrape.
#[derive(Debug)]
struct Scrape(Vec<Family>);

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.0 {
            if family.samples.is_empty() {
                continue;
            }
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, None, family.kind)?;
            for (labels, value) in &family.samples {
                let mut sample = metric.encode_family(labels)?;
                match value {
                    Value::Counter(v) => sample.encode_counter::<NoLabelSet, _, u64>(v, None)?,
                    Value::Gauge(v) => sample.encode_gauge(v)?,
                    Value::Histogram(bounds, snapshot) => sample.encode_histogram::<NoLabelSet>(
                        snapshot.sum_seconds,
                        snapshot.count(),
                        &snapshot.buckets(bounds),
                        None,
                    )?,
                }
            }
        }
        Ok(())
    }
}

/// The whole exposition.
pub fn render(gateway: &Gateway) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(collect(gateway))));
    let mut text = String::new();
    match prometheus_client::encoding::prometheus_text::encode(&mut text, &registry) {
        Ok(()) => text,
        Err(error) => {
            tracing::warn!(%error, "encoding /metrics failed");
            String::new()
        }
    }
}

fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_string())).collect()
}

fn collect(gateway: &Gateway) -> Vec<Family> {
    use MetricType::{Counter, Gauge, Histogram};
    let metrics = gateway.metrics();
    let (routes, upstreams) = metrics.stats();

    let mut requests = Family::new(
        "gateway_requests",
        "Requests served, by route, upstream, method class and status class (route=\"\": no route matched).",
        Counter,
    );
    let mut local = Family::new(
        "gateway_local_responses",
        "Responses the gateway gave itself instead of relaying a target's, by reason.",
        Counter,
    );
    let mut retries = Family::new(
        "gateway_retries",
        "Requests sent again to another attempt, by reason.",
        Counter,
    );
    let mut duration = Family::new(
        "gateway_request_duration_seconds",
        "Time from the request's arrival to the last byte of the response.",
        Histogram,
    );
    let mut bytes_in = Family::new(
        "gateway_request_body_bytes",
        "Request body bytes received from clients.",
        Counter,
    );
    let mut bytes_out = Family::new(
        "gateway_response_body_bytes",
        "Response body bytes sent to clients.",
        Counter,
    );
    for stats in routes.iter().chain(std::iter::once(&metrics.unrouted)) {
        let counts = stats.counts();
        let base = [("route", &*stats.route), ("upstream", &*stats.upstream)];
        for (m, by_status) in counts.requests.iter().enumerate() {
            for (s, &count) in by_status.iter().enumerate() {
                let mut l = labels(base);
                l.push(("method", METHOD_CLASSES[m].to_string()));
                l.push(("status_class", STATUS_CLASSES[s].to_string()));
                requests.count(l, count);
            }
        }
        for reason in LocalReason::ALL {
            let mut l = labels(base);
            l.push(("reason", reason.as_str().to_string()));
            local.count(l, counts.local[reason as usize]);
        }
        for reason in RetryReason::ALL {
            let mut l = labels(base);
            l.push(("reason", reason.as_str().to_string()));
            retries.count(l, counts.retries[reason as usize]);
        }
        if counts.duration.count() != 0 {
            duration.push(
                labels(base),
                Value::Histogram(stats.bounds(), counts.duration),
            );
        }
        bytes_in.count(labels(base), counts.bytes_in);
        bytes_out.count(labels(base), counts.bytes_out);
    }

    let mut sent = Family::new(
        "gateway_upstream_requests",
        "Attempts that reached a target of the upstream (over a new or a reused connection).",
        Counter,
    );
    let mut upstream_duration = Family::new(
        "gateway_upstream_request_duration_seconds",
        "Time from sending an attempt to the target's response headers.",
        Histogram,
    );
    let mut opened = Family::new(
        "gateway_upstream_connections_opened",
        "Connections opened to the upstream's targets.",
        Counter,
    );
    let mut reused = Family::new(
        "gateway_upstream_connections_reused",
        "Attempts sent over an already open connection (attempts minus connections opened).",
        Counter,
    );
    let mut active_connections = Family::new(
        "gateway_upstream_connections_active",
        "Open connections to the upstream's targets (pooled idle ones included).",
        Gauge,
    );
    let active = gateway.active();
    for stats in &upstreams {
        let l = labels([("upstream", &*stats.upstream)]);
        let attempts = stats.sent();
        sent.push(l.clone(), Value::Counter(attempts));
        let snapshot = stats.duration().snapshot();
        if snapshot.count() != 0 {
            upstream_duration.push(
                l.clone(),
                Value::Histogram(stats.duration().bounds(), snapshot),
            );
        }
        // Connections belong to target addresses; an address in two upstreams counts in both.
        let (mut open_total, mut active_total) = (0u64, 0i64);
        if let Some(pool) = active
            .as_ref()
            .and_then(|a| a.table.upstreams().find(|u| *u.name == *stats.upstream))
        {
            for target in &pool.targets {
                let (o, a) = metrics.connections.counts(target.authority.as_str());
                open_total += o;
                active_total += a;
            }
        }
        opened.push(l.clone(), Value::Counter(open_total));
        reused.push(
            l.clone(),
            Value::Counter(attempts.saturating_sub(open_total)),
        );
        active_connections.push(l, Value::Gauge(active_total as f64));
    }

    let mut checks = Family::new(
        "gateway_health_checks",
        "Active health checks run against a target, by result.",
        Counter,
    );
    let mut healthy = Family::new(
        "gateway_target_healthy",
        "1 when the target passes its active health checks (or is not checked).",
        Gauge,
    );
    let mut ejected = Family::new(
        "gateway_target_ejected",
        "1 while outlier detection has ejected the target.",
        Gauge,
    );
    let mut ejections = Family::new(
        "gateway_outlier_ejections",
        "Times outlier detection ejected the target.",
        Counter,
    );
    for target in gateway.carried().watched_targets() {
        let base = [
            ("upstream", &*target.upstream),
            ("target", &*target.address),
        ];
        let counters = &target.counters;
        for (result, counter) in [
            ("pass", &counters.checks_passed),
            ("fail", &counters.checks_failed),
        ] {
            let mut l = labels(base);
            l.push(("result", result.to_string()));
            checks.count(l, counter.load(Ordering::Relaxed));
        }
        let health = target.health();
        healthy.push(labels(base), gauge(health.passing_checks));
        ejected.push(labels(base), gauge(health.ejected));
        ejections.push(
            labels(base),
            Value::Counter(counters.ejections.load(Ordering::Relaxed)),
        );
    }

    let process = &metrics.process;
    let relaxed = |v: &std::sync::atomic::AtomicI64| v.load(Ordering::Relaxed) as f64;
    let applied_at = active
        .as_ref()
        .and_then(|a| a.applied_at.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    let mut families = vec![
        requests,
        local,
        retries,
        duration,
        bytes_in,
        bytes_out,
        sent,
        upstream_duration,
        opened,
        reused,
        active_connections,
        checks,
        healthy,
        ejected,
        ejections,
    ];
    families.extend([
        Family::new(
            "gateway_downstream_connections_active",
            "Open client connections.",
            Gauge,
        )
        .with(
            Labels::new(),
            Value::Gauge(relaxed(&process.downstream_connections_active)),
        ),
        Family::new(
            "gateway_downstream_connections",
            "Client connections accepted.",
            Counter,
        )
        .with(
            Labels::new(),
            Value::Counter(process.downstream_connections.load(Ordering::Relaxed)),
        ),
        Family::new(
            "gateway_downstream_requests_active",
            "Requests in progress (until the last byte of the response).",
            Gauge,
        )
        .with(
            Labels::new(),
            Value::Gauge(relaxed(&process.downstream_requests_active)),
        ),
        Family::new(
            "gateway_config_version",
            "Version of the config in service (0: none yet).",
            Gauge,
        )
        .with(
            Labels::new(),
            Value::Gauge(active.as_ref().map_or(0.0, |a| a.version as f64)),
        ),
        Family::new(
            "gateway_config_last_apply_success_timestamp_seconds",
            "Unix time the config in service was applied (0: none yet).",
            Gauge,
        )
        .with(Labels::new(), Value::Gauge(applied_at)),
        Family::new(
            "gateway_config_rejected",
            "Snapshots from a control plane that were rejected (NACKed).",
            Counter,
        )
        .with(
            Labels::new(),
            Value::Counter(process.config_rejected.load(Ordering::Relaxed)),
        ),
        Family::new(
            "gateway_control_plane_connected",
            "1 while a discovery stream to a control plane is open.",
            Gauge,
        )
        .with(Labels::new(), gauge(gateway.is_connected())),
        Family::new(
            "gateway_config_stale",
            "1 while the config in service comes from the disk cache, unconfirmed by a control plane.",
            Gauge,
        )
        .with(
            Labels::new(),
            gauge(active.as_ref().is_some_and(|a| a.is_stale())),
        ),
        certificate_expiry(active.as_ref().map(|a| a.config())),
        Family::new(
            "gateway_draining",
            "1 once the process has begun draining.",
            Gauge,
        )
        .with(Labels::new(), gauge(gateway.is_draining())),
        Family::new(
            "gateway_access_log_dropped_lines",
            "Access-log lines dropped because the writer fell behind.",
            Counter,
        )
        .with(
            Labels::new(),
            Value::Counter(process.access_log_dropped.load(Ordering::Relaxed)),
        ),
        Family::new(
            "gateway_build_info",
            "The running build (always 1).",
            Gauge,
        )
        .with(
            labels([("version", env!("CARGO_PKG_VERSION"))]),
            Value::Gauge(1.0),
        ),
    ]);
    families
}

/// When each certificate in service expires, from the `not_after` the control plane computed
/// when it accepted the certificate (RFC 3339), so alerts need no access to the PEM.
fn certificate_expiry(config: Option<&Config>) -> Family {
    let mut family = Family::new(
        "gateway_certificate_expiry_timestamp_seconds",
        "Unix time the leaf certificate of each Certificate in service stops being valid.",
        MetricType::Gauge,
    );
    for certificate in config.map_or(&[][..], |c| &c.certificates[..]) {
        let Ok(not_after) = humantime::parse_rfc3339(&certificate.not_after) else {
            continue;
        };
        let seconds = not_after
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        family.push(
            labels([("certificate", certificate.name.as_str())]),
            Value::Gauge(seconds),
        );
    }
    family
}

fn gauge(on: bool) -> Value {
    Value::Gauge(if on { 1.0 } else { 0.0 })
}

#[cfg(test)]
mod tests;
