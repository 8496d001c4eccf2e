//! Active health checking: which targets pass their upstream's checks.
//!
//! Each target of an upstream with a health-check policy is probed by its own task (see
//! [`probe`]): an HTTP request, a TCP connect or a gRPC `grpc.health.v1.Health/Check`, every
//! interval plus a random jitter. `unhealthy_threshold` failures in a row make a target fail its
//! checks, `healthy_threshold` successes in a row make it pass again; each transition records a
//! reason ("timeout", "status 500", "connection refused") and its time in the target's carried
//! [`TargetState`](crate::state::TargetState), which the table's target shares. The proxy never waits on a probe. Targets
//! start passing, so a new upstream serves at once.
//!
//! [`HealthChecks`] lives outside the tables: one probe per (upstream, target, policy) per data
//! plane. A new table that keeps the three keeps the probe; probes of targets that are gone, or
//! whose policy changed, stop.

mod probe;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::Method;
use tokio::task::JoinHandle;

use crate::table::RouteTable;

/// Used when a policy says 0.
pub const DEFAULT_JITTER_PERCENT: u32 = 10;

/// A compiled `HealthCheckPolicy`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthPolicy {
    pub name: String,
    pub check: Check,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// Each interval is lengthened by a random 0 to this percent.
    pub jitter_percent: u32,
}

/// What one check does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Check {
    Http(HttpCheck),
    /// Passes when a TCP connection opens within the timeout.
    Tcp,
    /// Passes when `grpc.health.v1.Health/Check` answers SERVING for `service` ("" is the
    /// whole server).
    Grpc {
        service: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpCheck {
    pub method: Method,
    pub path: String,
    /// The Host header; `None` sends the target's address.
    pub host: Option<String>,
    /// Inclusive ranges of healthy statuses; empty means 200-399.
    pub expected_statuses: Vec<(u16, u16)>,
}

impl HttpCheck {
    pub fn is_healthy_status(&self, status: u16) -> bool {
        if self.expected_statuses.is_empty() {
            (200..=399).contains(&status)
        } else {
            self.expected_statuses
                .iter()
                .any(|&(from, to)| (from..=to).contains(&status))
        }
    }
}

impl HealthPolicy {
    /// The wait before the next check: the interval plus up to `jitter_percent` of it.
    pub fn next_delay(&self) -> Duration {
        self.interval + self.jitter(self.interval)
    }

    /// A random part of `base`: up to `jitter_percent` of it.
    fn jitter(&self, base: Duration) -> Duration {
        let most = base.as_micros() * u128::from(self.jitter_percent) / 100;
        let most = u64::try_from(most).unwrap_or(u64::MAX);
        Duration::from_micros(fastrand::u64(0..=most))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ProbeKey {
    upstream: String,
    address: String,
    policy: HealthPolicy,
}

/// The running probes, by what they probe.
#[derive(Debug, Default)]
pub struct HealthChecks {
    probes: Mutex<HashMap<ProbeKey, JoinHandle<()>>>,
}

impl HealthChecks {
    /// Starts probes for the table's newly checked targets and stops those of targets no longer
    /// checked. Runs after the table has adopted its carried state (the probes write it), and
    /// inside a Tokio runtime.
    pub fn adopt(&self, table: &RouteTable) {
        let mut probes = self.probes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut kept = HashMap::with_capacity(probes.len());
        for upstream in table.upstreams() {
            let Some(policy) = &upstream.health_check else {
                // No longer checked: whatever the last probe found no longer holds.
                for target in &upstream.targets {
                    target.state.record_check(true, "health checking disabled");
                }
                continue;
            };
            for target in &upstream.targets {
                let key = ProbeKey {
                    upstream: upstream.name.clone(),
                    address: target.address.clone(),
                    policy: policy.clone(),
                };
                let probe = probes.remove(&key).unwrap_or_else(|| {
                    tokio::spawn(probe::run(
                        target.authority.clone(),
                        target.origin.clone(),
                        policy.clone(),
                        Arc::clone(&target.state),
                    ))
                });
                kept.insert(key, probe);
            }
        }
        for (_, stale) in probes.drain() {
            stale.abort();
        }
        *probes = kept;
    }
}

impl Drop for HealthChecks {
    fn drop(&mut self) {
        let probes = self
            .probes
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for (_, probe) in probes.drain() {
            probe.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter_percent: u32) -> HealthPolicy {
        HealthPolicy {
            name: "hc".into(),
            check: Check::Tcp,
            interval: Duration::from_millis(1000),
            timeout: Duration::from_millis(100),
            healthy_threshold: 1,
            unhealthy_threshold: 1,
            jitter_percent,
        }
    }

    #[test]
    fn delays_are_the_interval_plus_at_most_the_jitter() {
        let jittered = policy(10);
        let delays: Vec<Duration> = (0..200).map(|_| jittered.next_delay()).collect();
        assert!(delays.iter().all(|d| *d >= Duration::from_millis(1000)));
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(1100)));
        assert!(
            delays.iter().any(|d| *d != delays[0]),
            "checks spread out rather than run in lockstep"
        );
        assert_eq!(policy(0).next_delay(), Duration::from_millis(1000));
    }

    #[test]
    fn http_statuses_default_to_2xx_and_3xx() {
        let mut check = HttpCheck {
            method: Method::GET,
            path: "/healthz".into(),
            host: None,
            expected_statuses: vec![],
        };
        assert!(check.is_healthy_status(200) && check.is_healthy_status(399));
        assert!(!check.is_healthy_status(404) && !check.is_healthy_status(199));
        check.expected_statuses = vec![(204, 204), (500, 503)];
        assert!(check.is_healthy_status(204) && check.is_healthy_status(502));
        assert!(!check.is_healthy_status(200));
    }
}
