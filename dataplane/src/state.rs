//! State that outlives runtime tables, kept by identity: a target by (upstream, address), an
//! upstream or a route by name.
//!
//! A compiled table starts with fresh, detached state; [`CarriedState::adopt`] then gives every
//! target and upstream the state its identity had in the table before, so a config change that
//! leaves a target alone keeps its health, its requests in flight and its upstream's round-robin
//! position. Identities the new table drops are forgotten.
//!
//! The request path only reads and bumps atomics in these structures; the registry's lock is
//! taken once per applied config and by the reporters, a target's own lock only on a health
//! transition — never per request.
//!
//! Every health transition wakes [`CarriedState::changes`], which the health reporter waits on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use tokio::sync::Notify;

use crate::outlier::{self, OutlierCounters};
use crate::retry::RouteLoad;
use crate::table::RouteTable;

/// Bits of [`TargetState::unusable`].
const FAILING_CHECKS: u8 = 1;
const EJECTED: u8 = 2;

/// One target's live state.
#[derive(Debug)]
pub struct TargetState {
    pub upstream: Box<str>,
    pub address: Box<str>,
    /// Zero when the target may take requests; otherwise why not, as bits. One load per pick.
    unusable: AtomicU8,
    in_flight: AtomicU64,
    /// The last transition; held while `unusable` changes so the two agree.
    transition: Mutex<Transition>,
    changes: Arc<Notify>,
    /// Failure streaks and ejection history (see [`crate::outlier`]).
    pub(crate) outlier: OutlierCounters,
    /// Health-check results and ejections, for `/metrics`.
    pub counters: TargetCounters,
}

/// What happened to a target, counted for `/metrics`.
#[derive(Debug, Default)]
pub struct TargetCounters {
    pub checks_passed: AtomicU64,
    pub checks_failed: AtomicU64,
    pub ejections: AtomicU64,
}

impl TargetCounters {
    pub fn record_check(&self, passed: bool) {
        let counter = if passed {
            &self.checks_passed
        } else {
            &self.checks_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone)]
struct Transition {
    reason: String,
    since: SystemTime,
}

/// A target's health as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthStatus {
    pub passing_checks: bool,
    pub ejected: bool,
    /// Why it is in this state.
    pub reason: String,
    /// When it entered it.
    pub since: SystemTime,
}

impl TargetState {
    /// A state nothing reports on: for tables that are never put in service.
    pub fn new(upstream: &str, address: &str) -> TargetState {
        TargetState::reporting_to(upstream, address, Arc::default())
    }

    fn reporting_to(upstream: &str, address: &str, changes: Arc<Notify>) -> TargetState {
        TargetState {
            upstream: upstream.into(),
            address: address.into(),
            unusable: AtomicU8::new(0),
            in_flight: AtomicU64::new(0),
            transition: Mutex::new(Transition {
                reason: "added".into(),
                since: SystemTime::now(),
            }),
            changes,
            outlier: OutlierCounters::default(),
            counters: TargetCounters::default(),
        }
    }

    /// The health as reported: verdicts, and the reason and time of the last transition.
    pub fn health(&self) -> HealthStatus {
        let transition = self.transition();
        let unusable = self.unusable.load(Ordering::Relaxed);
        HealthStatus {
            passing_checks: unusable & FAILING_CHECKS == 0,
            ejected: unusable & EJECTED != 0,
            reason: transition.reason.clone(),
            since: transition.since,
        }
    }

    /// Records the verdict of active health checking; returns whether it changed.
    pub fn record_check(&self, passing: bool, reason: &str) -> bool {
        self.set(FAILING_CHECKS, !passing, reason)
    }

    /// Ejected by outlier detection.
    pub fn is_ejected(&self) -> bool {
        self.unusable.load(Ordering::Relaxed) & EJECTED != 0
    }

    /// Ejects or returns the target; returns whether that changed anything.
    pub(crate) fn set_ejected(&self, ejected: bool, reason: &str) -> bool {
        self.set(EJECTED, ejected, reason)
    }

    /// Sets or clears `bit`; on a change records why and when, and tells the reporter.
    fn set(&self, bit: u8, on: bool, reason: &str) -> bool {
        let mut transition = self.transition();
        let previous = if on {
            self.unusable.fetch_or(bit, Ordering::Relaxed)
        } else {
            self.unusable.fetch_and(!bit, Ordering::Relaxed)
        };
        let changed = (previous & bit != 0) != on;
        if changed {
            *transition = Transition {
                reason: reason.to_string(),
                since: SystemTime::now(),
            };
            drop(transition);
            self.changes.notify_one();
        }
        changed
    }

    fn transition(&self) -> MutexGuard<'_, Transition> {
        self.transition
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Healthy and not ejected.
    pub fn is_usable(&self) -> bool {
        self.unusable.load(Ordering::Relaxed) == 0
    }

    /// Passing active health checks (or not checked).
    pub fn is_passing_checks(&self) -> bool {
        self.unusable.load(Ordering::Relaxed) & FAILING_CHECKS == 0
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request to this target until the guard is dropped.
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }
}

/// A request in flight to a target; dropping it ends the request.
#[derive(Debug)]
pub struct InFlight(Arc<TargetState>);

impl InFlight {
    pub fn target(&self) -> &Arc<TargetState> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One upstream's live state.
#[derive(Debug, Default)]
pub struct UpstreamState {
    /// The round-robin position.
    pub cursor: Arc<AtomicUsize>,
    /// Held while deciding an ejection, so concurrent ones respect `max_ejected_percent`.
    pub(crate) ejecting: Mutex<()>,
}

/// One route's live state.
#[derive(Debug, Default)]
pub struct RouteState {
    /// Requests and retries in flight, for the retry budget.
    pub load: Arc<RouteLoad>,
}

/// The registry of live state, by identity.
#[derive(Debug, Default)]
pub struct CarriedState {
    inner: Mutex<Registry>,
    changes: Arc<Notify>,
}

#[derive(Debug, Default)]
struct Registry {
    targets: HashMap<(Box<str>, Box<str>), Watched>,
    upstreams: HashMap<Box<str>, Arc<UpstreamState>>,
    routes: HashMap<Box<str>, Arc<RouteState>>,
}

#[derive(Debug)]
struct Watched {
    state: Arc<TargetState>,
    /// Health checked or outlier-detected, so reported.
    watched: bool,
}

impl CarriedState {
    /// Gives `table` the state of the identities it shares with earlier tables, registers its
    /// new ones, and forgets those it no longer has. Runs once per applied config.
    pub fn adopt(&self, table: &mut RouteTable) {
        let mut registry = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut kept = Registry::default();
        for route in table.routes_mut() {
            let state = registry
                .routes
                .remove(route.name.as_str())
                .unwrap_or_else(|| Arc::clone(&route.state));
            route.state = Arc::clone(&state);
            kept.routes.insert(route.name.as_str().into(), state);
        }
        for pool in table.upstreams_mut() {
            let upstream = registry
                .upstreams
                .remove(pool.name.as_str())
                .unwrap_or_else(|| Arc::clone(&pool.state));
            if let Some(cursor) = pool.balancer.cursor_mut() {
                *cursor = Arc::clone(&upstream.cursor);
            }
            pool.state = Arc::clone(&upstream);
            kept.upstreams.insert(pool.name.as_str().into(), upstream);
            let watched = pool.is_watched();
            for target in &mut pool.targets {
                let key: (Box<str>, Box<str>) =
                    (pool.name.as_str().into(), target.address.as_str().into());
                let state = match registry.targets.remove(&key) {
                    Some(kept) => kept.state,
                    None => Arc::new(TargetState::reporting_to(
                        &pool.name,
                        &target.address,
                        Arc::clone(&self.changes),
                    )),
                };
                if pool.outlier.is_none() {
                    outlier::return_target(&state, "outlier detection disabled");
                }
                target.state = Arc::clone(&state);
                kept.targets.insert(key, Watched { state, watched });
            }
        }
        *registry = kept;
        drop(registry);
        // The set of reported targets may have changed.
        self.changes.notify_one();
    }

    /// The state of every target under health checking or outlier detection, by upstream and
    /// address.
    pub fn watched_targets(&self) -> Vec<Arc<TargetState>> {
        let registry = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut targets: Vec<Arc<TargetState>> = registry
            .targets
            .values()
            .filter(|t| t.watched)
            .map(|t| Arc::clone(&t.state))
            .collect();
        targets.sort_by(|a, b| (&a.upstream, &a.address).cmp(&(&b.upstream, &b.address)));
        targets
    }

    /// Woken on every health transition and every applied config.
    pub fn changes(&self) -> Arc<Notify> {
        Arc::clone(&self.changes)
    }
}
