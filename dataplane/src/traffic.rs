//! Traffic figures per route and per upstream, for the control plane's traffic view.
//!
//! They are windows of the metrics' own counters: there is one set of atomics per (route,
//! upstream), [`RouteStats`], which `/metrics` exposes as they are and the reporter reads as
//! deltas ([`RouteStats::take_window`]), so a request is counted once, for both. A report sums
//! the windows by route name (a route moved to another upstream has two counter sets) and by
//! upstream name (every route sending to it): requests by status class, bytes in and out, and
//! the p50 and p99 of the request duration.
//!
//! The percentiles come from the window of the `gateway_request_duration_seconds` histogram,
//! interpolated within its bucket as Prometheus' `histogram_quantile` does: as precise as that
//! histogram's buckets (1 ms to 60 s, 1-2.5-5 per decade), the precision the dashboards built on
//! `/metrics` have too.

use std::collections::BTreeMap;

use gateway_proto::v1::TrafficCounters;

use crate::telemetry::histogram::HistogramSnapshot;
use crate::telemetry::metrics::{RouteCounts, RouteStats};

/// Status classes in a report: 1xx to 5xx, then the answers the gateway gave itself.
pub const CLASSES: usize = 6;

/// One name's traffic in a report window, summed over its counter sets.
#[derive(Debug, Default)]
struct Window {
    classes: [u64; CLASSES],
    bytes_in: u64,
    bytes_out: u64,
    duration: HistogramSnapshot,
}

impl Window {
    fn add(&mut self, counts: &RouteCounts) {
        for (sum, add) in self.classes.iter_mut().zip(counts.report_classes()) {
            *sum += add;
        }
        self.bytes_in += counts.bytes_in;
        self.bytes_out += counts.bytes_out;
        let duration = &mut self.duration;
        if duration.counts.len() < counts.duration.counts.len() {
            duration.counts.resize(counts.duration.counts.len(), 0);
        }
        for (sum, add) in duration.counts.iter_mut().zip(&counts.duration.counts) {
            *sum += add;
        }
        duration.sum_seconds += counts.duration.sum_seconds;
    }

    /// As reported under `name`; `None` without requests.
    fn counters(self, name: &str, bounds: &[f64]) -> Option<TrafficCounters> {
        if self.classes.iter().all(|&c| c == 0) {
            return None;
        }
        Some(TrafficCounters {
            name: name.to_string(),
            status_classes: self.classes.to_vec(),
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            latency_p50_ms: self.duration.quantile(bounds, 0.50) * 1000.0,
            latency_p99_ms: self.duration.quantile(bounds, 0.99) * 1000.0,
        })
    }
}

/// The report of these windows (each route's counts since the previous report), by route and by
/// upstream, sorted by name, those without requests left out. `bounds` are the duration
/// histogram's.
pub fn report(
    windows: &[(&RouteStats, RouteCounts)],
    bounds: &[f64],
) -> (Vec<TrafficCounters>, Vec<TrafficCounters>) {
    let mut routes: BTreeMap<&str, Window> = BTreeMap::new();
    let mut upstreams: BTreeMap<&str, Window> = BTreeMap::new();
    for (stats, counts) in windows {
        if stats.route.is_empty() {
            // Requests that matched no route are in `/metrics` only.
            continue;
        }
        routes.entry(&stats.route).or_default().add(counts);
        if !stats.upstream.is_empty() {
            upstreams.entry(&stats.upstream).or_default().add(counts);
        }
    }
    let finish = |windows: BTreeMap<&str, Window>| {
        windows
            .into_iter()
            .filter_map(|(name, window)| window.counters(name, bounds))
            .collect()
    };
    (finish(routes), finish(upstreams))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::telemetry::LocalReason;
    use crate::telemetry::histogram::REQUEST_BUCKETS;

    fn take(stats: &[&RouteStats]) -> (Vec<TrafficCounters>, Vec<TrafficCounters>) {
        let windows: Vec<_> = stats.iter().map(|s| (*s, s.take_window())).collect();
        report(&windows, REQUEST_BUCKETS)
    }

    #[test]
    fn a_report_holds_the_window_of_the_metrics_counters() {
        let web = RouteStats::new("web", "pool");
        assert_eq!(take(&[&web]), (vec![], vec![]), "no traffic, no counters");
        for _ in 0..98 {
            web.record(0, 200, None, Duration::from_millis(20), 100);
        }
        web.record(0, 503, None, Duration::from_millis(20), 100);
        web.record(
            2,
            502,
            Some(LocalReason::ConnectFailed),
            Duration::from_secs(3),
            0,
        );
        web.add_bytes_in(1000);
        let (routes, upstreams) = take(&[&web]);
        let counters = &routes[0];
        assert_eq!(counters.name, "web");
        assert_eq!(counters.status_classes, [0, 98, 0, 0, 1, 1]);
        assert_eq!((counters.bytes_in, counters.bytes_out), (1000, 9900));
        assert!(
            (10.0..=25.0).contains(&counters.latency_p50_ms),
            "within the 20 ms bucket: {}",
            counters.latency_p50_ms
        );
        assert!(
            (10.0..=25.0).contains(&counters.latency_p99_ms),
            "p99 of 100 is the 99th"
        );
        assert_eq!(upstreams[0].name, "pool");
        assert_eq!(upstreams[0].status_classes, counters.status_classes);
        assert_eq!(
            take(&[&web]),
            (vec![], vec![]),
            "taken: windows start again"
        );
        assert_eq!(
            web.counts().report_classes(),
            [0, 98, 0, 0, 1, 1],
            "the metrics keep counting from zero"
        );

        web.record(0, 200, None, Duration::from_millis(900), 0);
        let (routes, _) = take(&[&web]);
        assert!(
            (500.0..=1000.0).contains(&routes[0].latency_p99_ms),
            "{}",
            routes[0].latency_p99_ms
        );
    }

    #[test]
    fn windows_add_up_by_route_and_by_upstream() {
        let web = RouteStats::new("web", "pool");
        let api = RouteStats::new("api", "pool");
        let moved = RouteStats::new("web", "other");
        let unrouted = RouteStats::new("", "");
        let ms = Duration::from_millis(1);
        web.record(0, 200, None, ms, 0);
        api.record(0, 404, None, ms, 0);
        moved.record(0, 200, None, ms, 0);
        unrouted.record(0, 404, Some(LocalReason::NoRoute), ms, 0);
        let (routes, upstreams) = take(&[&web, &api, &moved, &unrouted]);
        let names =
            |c: &[TrafficCounters]| -> Vec<String> { c.iter().map(|c| c.name.clone()).collect() };
        assert_eq!(names(&routes), ["api", "web"], "no route, no counters");
        assert_eq!(routes[1].status_classes, [0, 2, 0, 0, 0, 0]);
        assert_eq!(names(&upstreams), ["other", "pool"]);
        assert_eq!(upstreams[1].status_classes, [0, 1, 0, 1, 0, 0]);
    }
}
