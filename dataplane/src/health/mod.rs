//! Active health checking: which targets may receive traffic.
//!
//! Each target of an upstream with a health-check policy is probed by its own task (see
//! [`probe`]). A probe writes one `AtomicBool` that the target in the table reads; the proxy
//! never waits on a probe. Targets start healthy, so a new upstream serves at once.
//!
//! [`HealthChecks`] lives outside the tables, like the round-robin cursors: when a new table keeps
//! an (upstream, target, policy) it keeps that target's health and its probe; probes of targets
//! that are gone are stopped.

mod probe;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
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

/// A target's health, shared by the table that routes to it and the task that probes it.
pub type HealthFlag = Arc<AtomicBool>;

pub fn healthy_flag() -> HealthFlag {
    Arc::new(AtomicBool::new(true))
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ProbeKey {
    upstream: String,
    address: String,
    policy: HealthPolicy,
}

#[derive(Debug)]
struct Probe {
    healthy: HealthFlag,
    task: JoinHandle<()>,
}

/// The running probes, by what they probe.
#[derive(Debug, Default)]
pub struct HealthChecks {
    probes: Mutex<HashMap<ProbeKey, Probe>>,
}

impl HealthChecks {
    /// Gives the table's checked targets their health flags, starting probes for new targets
    /// and stopping those of targets no longer in it. Must run inside a Tokio runtime.
    pub fn adopt(&self, table: &mut RouteTable) {
        let mut probes = self.probes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut kept = HashMap::with_capacity(probes.len());
        for upstream in table.upstreams_mut() {
            let Some(policy) = upstream.health_check.clone() else {
                continue;
            };
            for target in &mut upstream.targets {
                let key = ProbeKey {
                    upstream: upstream.name.clone(),
                    address: target.address.clone(),
                    policy: policy.clone(),
                };
                let probe = probes.remove(&key).unwrap_or_else(|| {
                    let healthy = healthy_flag();
                    let task = tokio::spawn(probe::run(
                        key.upstream.clone(),
                        target.authority.clone(),
                        policy.clone(),
                        Arc::clone(&healthy),
                    ));
                    Probe { healthy, task }
                });
                target.healthy = Arc::clone(&probe.healthy);
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
