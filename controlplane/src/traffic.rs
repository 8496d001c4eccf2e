//! Summing the data planes' traffic reports into per-route and per-upstream rates.

use std::collections::BTreeMap;

use gateway_proto::v1::{Traffic, TrafficCounters, TrafficRate, TrafficReport};

/// Reports older than this no longer count: their data plane stopped reporting.
pub const TRAFFIC_MAX_AGE_MS: i64 = 15_000;

/// Index of the 5xx class in `TrafficCounters.status_classes`.
const CLASS_5XX: usize = 4;
/// Index of the requests the gateway answered itself (no route, no target, connect failure,
/// timeout): errors too, though no upstream sent a status.
const CLASS_GATEWAY: usize = 5;

/// Rates over each report's own interval, summed over data planes; p99 is the worst reported.
pub fn aggregate(reports: &[(i64, TrafficReport)]) -> Traffic {
    let mut routes = BTreeMap::new();
    let mut upstreams = BTreeMap::new();
    for (_, report) in reports {
        let seconds = (report.interval_ms.max(1) as f64) / 1000.0;
        for counters in &report.routes {
            add(&mut routes, counters, seconds);
        }
        for counters in &report.upstreams {
            add(&mut upstreams, counters, seconds);
        }
    }
    let newest = reports.iter().map(|(at, _)| *at).max().unwrap_or(0);
    Traffic {
        routes: routes.into_values().map(Sum::rate).collect(),
        upstreams: upstreams.into_values().map(Sum::rate).collect(),
        as_of: if newest == 0 {
            String::new()
        } else {
            crate::store::rfc3339(newest)
        },
    }
}

#[derive(Default)]
struct Sum {
    name: String,
    requests_per_second: f64,
    errors_per_second: f64,
    latency_p99_ms: f64,
    bytes_in_per_second: f64,
    bytes_out_per_second: f64,
}

impl Sum {
    fn rate(self) -> TrafficRate {
        TrafficRate {
            error_ratio: if self.requests_per_second > 0.0 {
                self.errors_per_second / self.requests_per_second
            } else {
                0.0
            },
            name: self.name,
            requests_per_second: self.requests_per_second,
            latency_p99_ms: self.latency_p99_ms,
            bytes_in_per_second: self.bytes_in_per_second.round() as u64,
            bytes_out_per_second: self.bytes_out_per_second.round() as u64,
        }
    }
}

fn add(sums: &mut BTreeMap<String, Sum>, counters: &TrafficCounters, seconds: f64) {
    let sum = sums.entry(counters.name.clone()).or_insert_with(|| Sum {
        name: counters.name.clone(),
        ..Default::default()
    });
    let requests: u64 = counters.status_classes.iter().sum();
    let errors = [CLASS_5XX, CLASS_GATEWAY]
        .iter()
        .filter_map(|&i| counters.status_classes.get(i))
        .sum::<u64>();
    sum.requests_per_second += requests as f64 / seconds;
    sum.errors_per_second += errors as f64 / seconds;
    sum.latency_p99_ms = sum.latency_p99_ms.max(counters.latency_p99_ms);
    sum.bytes_in_per_second += counters.bytes_in as f64 / seconds;
    sum.bytes_out_per_second += counters.bytes_out as f64 / seconds;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(name: &str, classes: [u64; 6], p99: f64) -> TrafficCounters {
        TrafficCounters {
            name: name.into(),
            status_classes: classes.to_vec(),
            bytes_in: 1000,
            bytes_out: 2000,
            latency_p50_ms: 1.0,
            latency_p99_ms: p99,
        }
    }

    #[test]
    fn rates_are_summed_over_data_planes() {
        let a = TrafficReport {
            interval_ms: 5000,
            routes: vec![counters("web", [0, 90, 0, 0, 5, 5], 12.0)],
            upstreams: vec![],
        };
        let b = TrafficReport {
            interval_ms: 5000,
            routes: vec![counters("web", [0, 100, 0, 0, 0, 0], 30.0)],
            upstreams: vec![],
        };
        let traffic = aggregate(&[(1, a), (2, b)]);
        let web = &traffic.routes[0];
        assert_eq!(web.name, "web");
        assert!((web.requests_per_second - 40.0).abs() < 1e-9);
        assert!((web.error_ratio - 0.05).abs() < 1e-9);
        assert_eq!(web.latency_p99_ms, 30.0);
        assert_eq!(web.bytes_out_per_second, 800);
    }

    #[test]
    fn no_reports_no_rates() {
        let traffic = aggregate(&[]);
        assert!(traffic.routes.is_empty() && traffic.as_of.is_empty());
    }
}
