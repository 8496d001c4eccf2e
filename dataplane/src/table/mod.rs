//! The runtime table: everything the proxy needs to route a request, built from one config.
//!
//! A [`RouteTable`] is immutable once built ([`compile`]) and shared behind an `Arc`; a request
//! uses the table it loaded at its start until it ends, whatever is applied meanwhile.

mod compile;

use std::time::Duration;

use http::uri::Authority;
use http::{HeaderName, HeaderValue, Method};

use crate::balance::{BalanceCursors, RoundRobin};
use crate::health::{HealthFlag, HealthPolicy};
use crate::route::RouteMatcher;

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

/// An upstream's targets and how to take turns among them.
#[derive(Debug)]
pub struct UpstreamPool {
    pub name: String,
    pub targets: Vec<Target>,
    pub connect_timeout: Duration,
    /// Active health checking, if the upstream names a policy.
    pub health_check: Option<HealthPolicy>,
    balancer: RoundRobin,
}

#[derive(Debug, Clone)]
pub struct Target {
    /// As configured: `host:port`.
    pub address: String,
    pub authority: Authority,
    pub weight: u32,
    /// Written by the target's health probe; always true without one.
    pub healthy: HealthFlag,
}

impl Target {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(std::sync::atomic::Ordering::Relaxed)
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

    /// Carries round-robin positions over from earlier tables (see [`BalanceCursors`]).
    pub fn adopt_cursors(&mut self, cursors: &BalanceCursors) {
        cursors.adopt(
            self.upstreams
                .iter_mut()
                .map(|u| (u.name.as_str(), &mut u.balancer)),
        );
    }

    pub(crate) fn upstreams_mut(&mut self) -> impl Iterator<Item = &mut UpstreamPool> {
        self.upstreams.iter_mut()
    }
}

impl UpstreamPool {
    /// The next healthy target in weighted round-robin order; `None` when none is healthy.
    ///
    /// When the turn falls on an unhealthy target, the next healthy one in list order takes it:
    /// one atomic increment per request whatever the health of the pool.
    pub fn next_target(&self) -> Option<&Target> {
        let turn = self.balancer.next()?;
        let count = self.targets.len();
        (0..count)
            .map(|offset| &self.targets[(turn + offset) % count])
            .find(|target| target.is_healthy())
    }
}

#[cfg(test)]
mod tests;
