//! State that outlives runtime tables, kept by identity: a target by (upstream, address), an
//! upstream by name.
//!
//! A compiled table starts with fresh, detached state; [`CarriedState::adopt`] then gives every
//! target and upstream the state its identity had in the table before, so a config change that
//! leaves a target alone keeps its health, its requests in flight and its upstream's round-robin
//! position. Identities the new table drops are forgotten.
//!
//! The request path only reads and bumps atomics in these structures; the registry's lock is
//! taken once per applied config and by the reporters, never per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::table::RouteTable;

/// Bits of [`TargetState::unusable`].
const FAILING_CHECKS: u8 = 1;

/// One target's live state.
#[derive(Debug)]
pub struct TargetState {
    pub upstream: Box<str>,
    pub address: Box<str>,
    /// Zero when the target may take requests; otherwise why not, as bits. One load per pick.
    unusable: AtomicU8,
    in_flight: AtomicU64,
}

impl TargetState {
    pub fn new(upstream: &str, address: &str) -> TargetState {
        TargetState {
            upstream: upstream.into(),
            address: address.into(),
            unusable: AtomicU8::new(0),
            in_flight: AtomicU64::new(0),
        }
    }

    /// Healthy and not ejected.
    pub fn is_usable(&self) -> bool {
        self.unusable.load(Ordering::Relaxed) == 0
    }

    /// Passing active health checks (or not checked).
    pub fn is_passing_checks(&self) -> bool {
        self.unusable.load(Ordering::Relaxed) & FAILING_CHECKS == 0
    }

    /// Records the verdict of active health checking; returns whether it changed.
    pub fn set_passing_checks(&self, passing: bool) -> bool {
        let previous = if passing {
            self.unusable.fetch_and(!FAILING_CHECKS, Ordering::Relaxed)
        } else {
            self.unusable.fetch_or(FAILING_CHECKS, Ordering::Relaxed)
        };
        (previous & FAILING_CHECKS == 0) != passing
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
}

/// The registry of live state, by identity.
#[derive(Debug, Default)]
pub struct CarriedState {
    inner: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    targets: HashMap<(Box<str>, Box<str>), Arc<TargetState>>,
    upstreams: HashMap<Box<str>, Arc<UpstreamState>>,
}

impl CarriedState {
    /// Gives `table` the state of the identities it shares with earlier tables, registers its
    /// new ones, and forgets those it no longer has. Runs once per applied config.
    pub fn adopt(&self, table: &mut RouteTable) {
        let mut registry = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut kept = Registry::default();
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
            for target in &mut pool.targets {
                let key: (Box<str>, Box<str>) =
                    (pool.name.as_str().into(), target.address.as_str().into());
                let state = registry
                    .targets
                    .remove(&key)
                    .unwrap_or_else(|| Arc::clone(&target.state));
                target.state = Arc::clone(&state);
                kept.targets.insert(key, state);
            }
        }
        *registry = kept;
    }

    /// Every registered target's state.
    pub fn targets(&self) -> Vec<Arc<TargetState>> {
        let registry = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        registry.targets.values().cloned().collect()
    }
}
