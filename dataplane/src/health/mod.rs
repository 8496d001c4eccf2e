//! Active health checking: which targets may receive traffic.
//!
//! Each target of an upstream with a health-check policy is probed by its own task (see
//! [`probe`]). A probe writes the target's carried [`TargetState`], which the table's target
//! shares; the proxy never waits on a probe. Targets start healthy, so a new upstream serves at
//! once.
//!
//! [`HealthChecks`] lives outside the tables: when a new table keeps an (upstream, target,
//! policy) it keeps that target's probe; probes of targets that are gone are stopped.

mod probe;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::table::RouteTable;

/// A compiled `HttpHealthCheck`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthPolicy {
    pub name: String,
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// Inclusive ranges of healthy statuses; empty means 200-399.
    pub expected_statuses: Vec<(u16, u16)>,
}

impl HealthPolicy {
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

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ProbeKey {
    upstream: String,
    address: String,
    policy: HealthPolicy,
}

#[derive(Debug)]
struct Probe {
    task: JoinHandle<()>,
}

/// The running probes, by what they probe.
#[derive(Debug, Default)]
pub struct HealthChecks {
    probes: Mutex<HashMap<ProbeKey, Probe>>,
}

impl HealthChecks {
    /// Starts probes for the table's newly checked targets and stops those of targets no longer
    /// checked. Runs after the table has adopted its carried state (the probes write it), and
    /// inside a Tokio runtime.
    pub fn adopt(&self, table: &RouteTable) {
        let mut probes = self.probes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut kept = HashMap::with_capacity(probes.len());
        for upstream in table.upstreams() {
            let Some(policy) = upstream.health_check.clone() else {
                // No longer checked: whatever the last probe found no longer holds.
                for target in &upstream.targets {
                    target.state.set_passing_checks(true);
                }
                continue;
            };
            for target in &upstream.targets {
                let key = ProbeKey {
                    upstream: upstream.name.clone(),
                    address: target.address.clone(),
                    policy: policy.clone(),
                };
                let probe = probes.remove(&key).unwrap_or_else(|| Probe {
                    task: tokio::spawn(probe::run(
                        target.authority.clone(),
                        policy.clone(),
                        Arc::clone(&target.state),
                    )),
                });
                kept.insert(key, probe);
            }
        }
        for (_, stale) in probes.drain() {
            stale.task.abort();
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
            probe.task.abort();
        }
    }
}
