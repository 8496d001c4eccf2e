//! The data plane's counters, and where each lives.
//!
//! Per-request counters sit in [`RouteStats`] and [`UpstreamStats`], which the table's routes and
//! upstreams point to: a request bumps a few relaxed atomics on handles it already holds, with no
//! lookup, no lock and no allocation. The handles are kept across tables by identity (route and
//! upstream name) in [`Metrics`], outside the tables, so a config change keeps the counts of what
//! it leaves alone; identities a table drops are forgotten, and their series go with them.
//!
//! Everything else (health, config, connections) is read when `/metrics` is scraped, see
//! [`super::exposition`].
//!
//! The same route counters feed the traffic reports sent to the control plane: the reporter
//! takes windows of them ([`Metrics::take_traffic`], see [`crate::traffic`]), so the request
//! path counts once for both.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gateway_proto::v1::TrafficCounters;
use http::Method;

use super::histogram::{Histogram, REQUEST_BUCKETS};
use crate::table::RouteTable;
use crate::traffic;

/// Method classes, the `method` label: the common methods, the rest as `other`, so a client
/// cannot create series by inventing methods.
pub const METHOD_CLASSES: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];

/// Status classes, the `status_class` label.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

pub fn method_class(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// Index into [`STATUS_CLASSES`]; anything outside 100-599 counts as 5xx.
pub fn status_class(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100 - 1),
        _ => 4,
    }
}

/// Why the gateway answered a request itself instead of relaying a target's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalReason {
    NoRoute,
    NotReady,
    /// A bug in the gateway.
    Internal,
    NoTargets,
    AllUnhealthy,
    BadRequest,
    ClientBody,
    ConnectFailed,
    ConnectTimeout,
    /// The TLS handshake with a target failed (often: its certificate did not verify).
    UpstreamTls,
    ResponseTimeout,
    PerTryTimeout,
    UpstreamFailed,
}

/// How many [`LocalReason`]s there are.
const LOCAL_REASONS: usize = 13;

impl LocalReason {
    pub const ALL: [LocalReason; LOCAL_REASONS] = [
        LocalReason::NoRoute,
        LocalReason::NotReady,
        LocalReason::Internal,
        LocalReason::NoTargets,
        LocalReason::AllUnhealthy,
        LocalReason::BadRequest,
        LocalReason::ClientBody,
        LocalReason::ConnectFailed,
        LocalReason::ConnectTimeout,
        LocalReason::UpstreamTls,
        LocalReason::ResponseTimeout,
        LocalReason::PerTryTimeout,
        LocalReason::UpstreamFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LocalReason::NoRoute => "no_route",
            LocalReason::NotReady => "not_ready",
            LocalReason::Internal => "internal",
            LocalReason::NoTargets => "no_targets",
            LocalReason::AllUnhealthy => "all_unhealthy",
            LocalReason::BadRequest => "bad_request",
            LocalReason::ClientBody => "client_body",
            LocalReason::ConnectFailed => "connect_failed",
            LocalReason::ConnectTimeout => "connect_timeout",
            LocalReason::UpstreamTls => "upstream_tls",
            LocalReason::ResponseTimeout => "response_timeout",
            LocalReason::PerTryTimeout => "per_try_timeout",
            LocalReason::UpstreamFailed => "upstream_failed",
        }
    }

    /// The status class of the response the gateway gives for it.
    pub fn status_class(self) -> usize {
        match self {
            LocalReason::NoRoute | LocalReason::BadRequest | LocalReason::ClientBody => 3,
            _ => 4,
        }
    }
}

/// Why a request was sent again, the `reason` label of `gateway_retries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    ConnectFailed,
    ConnectTimeout,
    PerTryTimeout,
    /// The connection was reset before the response.
    UpstreamFailed,
    /// The target answered with a status the route retries on (5xx).
    Status5xx,
}

/// How many [`RetryReason`]s there are.
const RETRY_REASONS: usize = 5;

impl RetryReason {
    pub const ALL: [RetryReason; RETRY_REASONS] = [
        RetryReason::ConnectFailed,
        RetryReason::ConnectTimeout,
        RetryReason::PerTryTimeout,
        RetryReason::UpstreamFailed,
        RetryReason::Status5xx,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RetryReason::ConnectFailed => "connect_failed",
            RetryReason::ConnectTimeout => "connect_timeout",
            RetryReason::PerTryTimeout => "per_try_timeout",
            RetryReason::UpstreamFailed => "upstream_failed",
            RetryReason::Status5xx => "5xx",
        }
    }

    /// Why an attempt that failed with `reason` is retried.
    pub fn of(reason: LocalReason) -> RetryReason {
        match reason {
            LocalReason::ConnectFailed | LocalReason::UpstreamTls => RetryReason::ConnectFailed,
            LocalReason::ConnectTimeout => RetryReason::ConnectTimeout,
            LocalReason::PerTryTimeout => RetryReason::PerTryTimeout,
            _ => RetryReason::UpstreamFailed,
        }
    }
}

fn counters<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

fn load<const N: usize>(counters: &[AtomicU64; N]) -> [u64; N] {
    std::array::from_fn(|i| counters[i].load(Ordering::Relaxed))
}

/// One route's counters (the route with the upstream it sends to).
#[derive(Debug)]
pub struct RouteStats {
    pub route: Box<str>,
    pub upstream: Box<str>,
    /// By method class, then status class.
    requests: [[AtomicU64; 5]; 8],
    /// Responses the gateway gave itself, by [`LocalReason`] (also counted in `requests`).
    local: [AtomicU64; LOCAL_REASONS],
    retries: [AtomicU64; RETRY_REASONS],
    duration: Histogram,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// The counts as of the last traffic report; only the reporter touches it.
    reported: Mutex<RouteCounts>,
}

/// A route's counters at one moment (or what changed between two moments).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteCounts {
    pub requests: [[u64; 5]; 8],
    pub local: [u64; LOCAL_REASONS],
    pub retries: [u64; RETRY_REASONS],
    pub duration: super::histogram::HistogramSnapshot,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl RouteStats {
    pub fn new(route: &str, upstream: &str) -> RouteStats {
        RouteStats {
            route: route.into(),
            upstream: upstream.into(),
            requests: std::array::from_fn(|_| counters()),
            local: counters(),
            retries: counters(),
            duration: Histogram::new(REQUEST_BUCKETS),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            reported: Mutex::default(),
        }
    }

    /// Records a finished request: its status, how long it took (until the last byte of the
    /// response) and what the gateway answered itself, if it did.
    pub fn record(
        &self,
        method: usize,
        status: u16,
        local: Option<LocalReason>,
        duration: Duration,
        bytes_out: u64,
    ) {
        if let Some(counter) = self
            .requests
            .get(method)
            .and_then(|by_status| by_status.get(status_class(status)))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(reason) = local {
            self.local[reason as usize].fetch_add(1, Ordering::Relaxed);
        }
        self.duration.observe(duration);
        if bytes_out != 0 {
            self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
        }
    }

    /// Request body bytes, added as they stream through.
    pub fn add_bytes_in(&self, bytes: u64) {
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn record_retry(&self, reason: RetryReason) {
        self.retries[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn bounds(&self) -> &'static [f64] {
        self.duration.bounds()
    }

    pub fn counts(&self) -> RouteCounts {
        RouteCounts {
            requests: std::array::from_fn(|m| load(&self.requests[m])),
            local: load(&self.local),
            retries: load(&self.retries),
            duration: self.duration.snapshot(),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
        }
    }

    /// What was counted since the previous call (since creation, the first time).
    pub fn take_window(&self) -> RouteCounts {
        let now = self.counts();
        let mut reported = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
        let window = now.since(&reported);
        *reported = now;
        window
    }
}

fn minus<const N: usize>(now: &[u64; N], earlier: &[u64; N]) -> [u64; N] {
    std::array::from_fn(|i| now[i].saturating_sub(earlier[i]))
}

impl RouteCounts {
    /// What happened between `earlier` and `self` (counters only grow).
    pub fn since(&self, earlier: &RouteCounts) -> RouteCounts {
        RouteCounts {
            requests: std::array::from_fn(|m| minus(&self.requests[m], &earlier.requests[m])),
            local: minus(&self.local, &earlier.local),
            retries: minus(&self.retries, &earlier.retries),
            duration: self.duration.since(&earlier.duration),
            bytes_in: self.bytes_in.saturating_sub(earlier.bytes_in),
            bytes_out: self.bytes_out.saturating_sub(earlier.bytes_out),
        }
    }

    /// Requests by status class, the class index 5 being responses the gateway gave itself
    /// (as the traffic report counts them: those are not in classes 0-4).
    pub fn report_classes(&self) -> [u64; 6] {
        let mut classes = [0u64; 6];
        for by_status in &self.requests {
            for (class, count) in by_status.iter().enumerate() {
                classes[class] += count;
            }
        }
        for reason in LocalReason::ALL {
            let count = self.local[reason as usize];
            let class = reason.status_class();
            classes[class] = classes[class].saturating_sub(count);
            classes[5] += count;
        }
        classes
    }
}

/// One upstream's counters: attempts at its targets and how long they took to answer.
#[derive(Debug)]
pub struct UpstreamStats {
    pub upstream: Box<str>,
    /// Attempts that reached a target (a connection was had, new or reused).
    sent: AtomicU64,
    /// Time to the response headers, per attempt.
    duration: Histogram,
}

impl UpstreamStats {
    pub fn new(upstream: &str) -> UpstreamStats {
        UpstreamStats {
            upstream: upstream.into(),
            sent: AtomicU64::new(0),
            duration: Histogram::new(REQUEST_BUCKETS),
        }
    }

    /// An attempt that reached the target ended (a response, or a failure after connecting).
    pub fn record_attempt(&self, duration: Duration) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.duration.observe(duration);
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub fn duration(&self) -> &Histogram {
        &self.duration
    }
}

/// Upstream connections to one target address, counted by the client's connector.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    pub opened: AtomicU64,
    pub active: AtomicI64,
}

/// Connection counters by target address (`host:port`). Looked up once per new connection.
#[derive(Debug, Default)]
pub struct ConnectionRegistry {
    by_address: Mutex<HashMap<String, Arc<ConnectionStats>>>,
}

impl ConnectionRegistry {
    pub fn for_address(&self, address: &str) -> Arc<ConnectionStats> {
        let mut map = self
            .by_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(stats) = map.get(address) {
            return Arc::clone(stats);
        }
        let stats = Arc::new(ConnectionStats::default());
        map.insert(address.to_string(), Arc::clone(&stats));
        stats
    }

    /// (opened, active) for `address`, zeros when never connected.
    pub fn counts(&self, address: &str) -> (u64, i64) {
        let map = self
            .by_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(address).map_or((0, 0), |s| {
            (
                s.opened.load(Ordering::Relaxed),
                s.active.load(Ordering::Relaxed),
            )
        })
    }
}

/// Process-wide gauges and counters.
#[derive(Debug, Default)]
pub struct ProcessStats {
    pub downstream_connections_active: AtomicI64,
    pub downstream_connections: AtomicU64,
    pub downstream_requests_active: AtomicI64,
    /// Snapshots from a control plane that failed validation (NACKed).
    pub config_rejected: AtomicU64,
    pub access_log_dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Registry {
    routes: HashMap<(Box<str>, Box<str>), Arc<RouteStats>>,
    upstreams: HashMap<Box<str>, Arc<UpstreamStats>>,
    /// Routes no longer configured, kept until a traffic report has taken their last counts.
    retired: Vec<Arc<RouteStats>>,
}

/// Retired routes whose traffic waits for a report, at most (without a control plane to
/// report to, the oldest are given up).
const MAX_RETIRED: usize = 4096;

/// Every counter of the data plane.
#[derive(Debug)]
pub struct Metrics {
    pub process: ProcessStats,
    pub connections: Arc<ConnectionRegistry>,
    /// Requests that matched no route, or came before any config (`route=""`).
    pub unrouted: Arc<RouteStats>,
    registry: Mutex<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            process: ProcessStats::default(),
            connections: Arc::default(),
            unrouted: Arc::new(RouteStats::new("", "")),
            registry: Mutex::default(),
        }
    }
}

impl Metrics {
    /// Gives `table`'s routes and upstreams the counters their identities had, creating those
    /// of new identities and forgetting those the table no longer has. Once per applied config.
    pub fn adopt(&self, table: &mut RouteTable) {
        let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        let mut kept = Registry::default();
        let (routes, upstreams) = table.parts_mut();
        for pool in upstreams.iter_mut() {
            let key: Box<str> = pool.name.as_str().into();
            let stats = registry
                .upstreams
                .remove(&key)
                .unwrap_or_else(|| Arc::new(UpstreamStats::new(&pool.name)));
            pool.stats = Arc::clone(&stats);
            kept.upstreams.insert(key, stats);
        }
        for route in routes.iter_mut() {
            let upstream = upstreams
                .get(route.upstream_index())
                .map_or("", |u| u.name.as_str());
            let key: (Box<str>, Box<str>) = (route.name.as_str().into(), upstream.into());
            let stats = match registry.routes.remove(&key) {
                Some(stats) => stats,
                None => Arc::new(RouteStats::new(&route.name, upstream)),
            };
            route.stats = Arc::clone(&stats);
            kept.routes.insert(key, stats);
        }
        kept.retired = std::mem::take(&mut registry.retired);
        kept.retired
            .extend(registry.routes.drain().map(|(_, stats)| stats));
        if kept.retired.len() > MAX_RETIRED {
            kept.retired.drain(..kept.retired.len() - MAX_RETIRED);
        }
        *registry = kept;
    }

    /// The traffic counted since the previous take, by route and by upstream (see
    /// [`crate::traffic`]); retired routes' last counts included, then forgotten.
    pub fn take_traffic(&self) -> (Vec<TrafficCounters>, Vec<TrafficCounters>) {
        let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        let mut routes = std::mem::take(&mut registry.retired);
        routes.extend(registry.routes.values().cloned());
        drop(registry);
        let windows: Vec<(&RouteStats, RouteCounts)> = routes
            .iter()
            .map(|stats| (stats.as_ref(), stats.take_window()))
            .collect();
        traffic::report(&windows, REQUEST_BUCKETS)
    }

    /// The routes' and upstreams' counters, sorted by name.
    pub fn stats(&self) -> (Vec<Arc<RouteStats>>, Vec<Arc<UpstreamStats>>) {
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        let mut routes: Vec<_> = registry.routes.values().cloned().collect();
        let mut upstreams: Vec<_> = registry.upstreams.values().cloned().collect();
        drop(registry);
        routes.sort_by(|a, b| (&a.route, &a.upstream).cmp(&(&b.route, &b.upstream)));
        upstreams.sort_by(|a, b| a.upstream.cmp(&b.upstream));
        (routes, upstreams)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_bounded() {
        assert_eq!(METHOD_CLASSES[method_class(&Method::GET)], "GET");
        let invented = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(METHOD_CLASSES[method_class(&invented)], "other");
        assert_eq!(STATUS_CLASSES[status_class(204)], "2xx");
        assert_eq!(STATUS_CLASSES[status_class(503)], "5xx");
        assert_eq!(STATUS_CLASSES[status_class(999)], "5xx");
        assert_eq!(STATUS_CLASSES[status_class(101)], "1xx");
    }

    #[test]
    fn report_classes_set_the_gateways_own_answers_apart() {
        let stats = RouteStats::new("web", "pool");
        let ms = Duration::from_millis(1);
        stats.record(0, 200, None, ms, 10);
        stats.record(0, 502, None, ms, 0);
        stats.record(2, 502, Some(LocalReason::ConnectFailed), ms, 0);
        stats.record(0, 503, Some(LocalReason::NoTargets), ms, 0);
        let counts = stats.counts();
        assert_eq!(counts.requests[0][4], 2);
        assert_eq!(counts.requests[2][4], 1);
        assert_eq!(counts.report_classes(), [0, 1, 0, 0, 1, 2]);
        assert_eq!(counts.bytes_out, 10);
        assert_eq!(counts.duration.count(), 4);
    }
}
