//! The runtime table: everything the proxy needs to route a request, built from one config.
//!
//! A [`RouteTable`] is immutable once built ([`compile`]) and shared behind an `Arc`; a request
//! uses the table it loaded at its start until it ends, whatever is applied meanwhile.

mod compile;

use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;
use http::{HeaderName, HeaderValue, Method};

use crate::balance::{Balancer, Candidates, HashKey};
use crate::health::HealthPolicy;
use crate::outlier::OutlierPolicy;
use crate::route::RouteMatcher;
use crate::state::{TargetState, UpstreamState};

pub use compile::compile;

/// Used when an upstream says 0.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Used when a route says 0.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct RouteTable {
    matcher: RouteMatcher,
    routes: Vec<RouteEntry>,
    upstreams: Vec<UpstreamPool>,
    health_checks: Vec<String>,
}

/// A route, ready to forward.
#[derive(Debug)]
pub struct RouteEntry {
    pub name: String,
    /// Index into the table's upstreams.
    upstream: usize,
    pub request_headers: HeaderEdits,
    /// Time allowed for the upstream's response headers.
    pub timeout: Duration,
}

/// Header edits applied to the request sent upstream, in order: set, then remove.
#[derive(Debug, Default, Clone)]
pub struct HeaderEdits {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

/// An upstream's targets and how to choose among them.
#[derive(Debug)]
pub struct UpstreamPool {
    pub name: String,
    pub targets: Vec<Target>,
    pub connect_timeout: Duration,
    /// Active health checking, if the upstream names a policy.
    pub health_check: Option<HealthPolicy>,
    /// Passive health checking, if a threshold is set.
    pub outlier: Option<OutlierPolicy>,
    pub(crate) balancer: Balancer,
    /// What consistent hashing hashes; `None` for the other policies.
    pub hash_key: Option<HashKey>,
    /// Carried from table to table (see [`crate::state`]).
    pub(crate) state: Arc<UpstreamState>,
}

#[derive(Debug, Clone)]
pub struct Target {
    /// As configured: `host:port`.
    pub address: String,
    pub authority: Authority,
    pub weight: u32,
    /// Health and load, carried from table to table (see [`crate::state`]).
    pub state: Arc<TargetState>,
}

impl Target {
    /// Healthy and not ejected.
    pub fn is_usable(&self) -> bool {
        self.state.is_usable()
    }
}

/// The targets a request has tried, by index; retries prefer the others.
#[derive(Debug, Default, Clone)]
pub struct Tried {
    /// Up to 64 targets are told apart exactly; beyond, indexes share bits, which at worst
    /// makes a retry avoid a target it has not tried.
    bits: u64,
}

impl Tried {
    pub fn insert(&mut self, index: usize) {
        self.bits |= 1 << (index % 64);
    }

    pub fn contains(&self, index: usize) -> bool {
        self.bits & (1 << (index % 64)) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }
}

impl RouteTable {
    /// The route and upstream for a request; `host` must be normalized.
    pub fn find(
        &self,
        host: &str,
        path: &str,
        method: &Method,
    ) -> Option<(&RouteEntry, &UpstreamPool)> {
        let route = &self.routes[self.matcher.find(host, path, method)?];
        Some((route, &self.upstreams[route.upstream]))
    }

    pub fn route_names(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().map(|r| r.name.as_str())
    }

    pub fn upstream_names(&self) -> impl Iterator<Item = &str> {
        self.upstreams.iter().map(|u| u.name.as_str())
    }

    pub fn health_check_names(&self) -> impl Iterator<Item = &str> {
        self.health_checks.iter().map(String::as_str)
    }

    pub fn upstreams(&self) -> impl Iterator<Item = &UpstreamPool> {
        self.upstreams.iter()
    }

    pub(crate) fn upstreams_mut(&mut self) -> impl Iterator<Item = &mut UpstreamPool> {
        self.upstreams.iter_mut()
    }
}

impl UpstreamPool {
    /// Whether its targets' health is watched (and so reported).
    pub fn is_watched(&self) -> bool {
        self.health_check.is_some() || self.outlier.is_some()
    }

    /// A usable target for a request with hash `key`: one it has not tried if there is one,
    /// else one it has. `None` when no target is usable.
    pub fn pick(&self, key: Option<u64>, tried: &Tried) -> Option<(usize, &Target)> {
        let fresh = View {
            targets: &self.targets,
            tried,
            avoid_tried: true,
        };
        let index = self.balancer.pick(&fresh, key).or_else(|| {
            if tried.is_empty() {
                return None;
            }
            let again = View {
                avoid_tried: false,
                ..fresh
            };
            self.balancer.pick(&again, key)
        })?;
        Some((index, &self.targets[index]))
    }
}

/// The pool's targets as one pick sees them.
struct View<'a> {
    targets: &'a [Target],
    tried: &'a Tried,
    avoid_tried: bool,
}

impl Candidates for View<'_> {
    fn len(&self) -> usize {
        self.targets.len()
    }

    fn usable(&self, index: usize) -> bool {
        self.targets[index].is_usable() && !(self.avoid_tried && self.tried.contains(index))
    }

    fn in_flight(&self, index: usize) -> u64 {
        self.targets[index].state.in_flight()
    }
}

#[cfg(test)]
mod tests;
