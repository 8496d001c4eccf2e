//! What this data plane tells the control plane about its targets and its traffic.
//!
//! - A [`HealthReport`] lists every target under active or passive health checking, whole:
//!   sent after every (re)connect and, debounced by [`HEALTH_DEBOUNCE`], after every transition
//!   or applied config, so the control plane never holds a partial view.
//! - A [`TrafficReport`] every [`TRAFFIC_INTERVAL`]: the deltas of the metrics' route counters
//!   since the previous one (see [`crate::traffic`]), for the routes and upstreams that had
//!   requests. While no stream is up, counts keep accumulating and
//!   the next report covers the whole gap (its `interval_ms` says how long).

use std::time::Duration;

use gateway_proto::v1::{HealthReport, TargetHealth, TrafficReport};
use tokio::time::Instant;

use crate::state::CarriedState;
use crate::telemetry::Metrics;

/// Transitions this close together go out in one report.
pub const HEALTH_DEBOUNCE: Duration = Duration::from_millis(200);
pub const TRAFFIC_INTERVAL: Duration = Duration::from_secs(5);

/// Every watched target's health, as it is now.
pub fn health_report(carried: &CarriedState) -> HealthReport {
    let targets = carried
        .watched_targets()
        .iter()
        .map(|target| {
            let health = target.health();
            TargetHealth {
                upstream: target.upstream.to_string(),
                address: target.address.to_string(),
                healthy: health.passing_checks,
                ejected: health.ejected,
                reason: health.reason,
                since: humantime::format_rfc3339_millis(health.since).to_string(),
            }
        })
        .collect();
    HealthReport { targets }
}

/// Takes the traffic counted since the previous report.
#[derive(Debug)]
pub struct TrafficTaker {
    since: Instant,
}

impl Default for TrafficTaker {
    fn default() -> Self {
        TrafficTaker {
            since: Instant::now(),
        }
    }
}

impl TrafficTaker {
    pub fn take(&mut self, metrics: &Metrics) -> TrafficReport {
        let now = Instant::now();
        let interval = now.duration_since(self.since);
        self.since = now;
        let (routes, upstreams) = metrics.take_traffic();
        TrafficReport {
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            routes,
            upstreams,
        }
    }
}
