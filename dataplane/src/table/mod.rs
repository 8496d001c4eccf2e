//! The runtime table: everything the proxy needs to route a request, built from one config.
//!
//! A [`RouteTable`] is immutable once built ([`compile`]) and shared behind an `Arc`; a request
//! uses the table it loaded at its start until it ends, whatever is applied meanwhile.

mod compile;

use std::time::Duration;

use http::uri::Authority;
use http::{HeaderName, HeaderValue, Method};

use crate::balance::{BalanceCursors, RoundRobin};
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
    balancer: RoundRobin,
}

#[derive(Debug, Clone)]
pub struct Target {
    /// As configured: `host:port`.
    pub address: String,
    pub authority: Authority,
    pub weight: u32,
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
}

impl UpstreamPool {
    /// The next target in weighted round-robin order; `None` when there are no targets.
    pub fn next_target(&self) -> Option<&Target> {
        self.targets.get(self.balancer.next()?)
    }
}

#[cfg(test)]
mod tests;
