//! The runtime table: everything the proxy needs to route a request, built from one config.
//!
//! A [`RouteTable`] is immutable once built ([`compile`]) and shared behind an `Arc`; a request
//! uses the table it loaded at its start until it ends, whatever is applied meanwhile.

mod compile;

use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;
use http::{HeaderName, HeaderValue, Method};

use crate::balance::{Balancer, Candidates, HashKey, Seed};
use crate::health::HealthPolicy;
use crate::outlier::OutlierPolicy;
use crate::retry::RetryPolicy;
use crate::route::RouteMatcher;
use crate::state::{RouteState, TargetState, UpstreamState};
use crate::telemetry::{RouteStats, UpstreamStats};
use crate::tls::{CertificateTable, UpstreamTls};

pub use compile::{compile, compile_resolved};

/// Used when an upstream says 0.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Used when a route says 0.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// `Retry-After` when no target is healthy and nothing says when one could be back.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct RouteTable {
    matcher: RouteMatcher,
    routes: Vec<RouteEntry>,
    upstreams: Vec<UpstreamPool>,
    health_checks: Vec<String>,
    certificates: CertificateTable,
}

/// A route, ready to forward.
#[derive(Debug)]
pub struct RouteEntry {
    pub name: String,
    /// Index into the table's upstreams.
    upstream: usize,
    pub request_headers: HeaderEdits,
    /// Time allowed for the upstream's response headers, retries included.
    pub timeout: Duration,
    pub retry: Option<RetryPolicy>,
    /// Overrides the upstream's connect timeout.
    pub connect_timeout: Option<Duration>,
    /// Load, carried from table to table by route name.
    pub(crate) state: Arc<RouteState>,
    /// Counters, carried from table to table by name (see [`crate::telemetry::Metrics`]).
    pub stats: Arc<RouteStats>,
}

impl RouteEntry {
    /// Index of its upstream in the table.
    pub(crate) fn upstream_index(&self) -> usize {
        self.upstream
    }
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
    pub all_unhealthy: AllUnhealthy,
    pub(crate) balancer: Balancer,
    /// What consistent hashing hashes; `None` for the other policies.
    pub hash_key: Option<HashKey>,
    /// Carried from table to table (see [`crate::state`]).
    pub(crate) state: Arc<UpstreamState>,
    /// Counters, carried from table to table by name (see [`crate::telemetry::Metrics`]).
    pub stats: Arc<UpstreamStats>,
    /// How targets are spoken to: HTTP version and TLS.
    pub transport: Arc<Transport>,
}

/// The HTTP version spoken to an upstream's targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Http1,
    Http2,
    /// ALPN over TLS; over plain TCP, HTTP/1.1 except for gRPC calls (h2c).
    Auto,
}

/// How an upstream's targets are reached.
#[derive(Debug, Default)]
pub struct Transport {
    pub protocol: Protocol,
    pub tls: Option<Arc<UpstreamTls>>,
    /// Equal for equal settings: connection pools are shared by it, and survive a swap.
    pub fingerprint: u64,
}

#[derive(Debug, Clone)]
pub struct Target {
    /// As configured (`host:port`), or the `ip:port` a DNS target resolved to.
    pub address: String,
    /// Where connections go: `address` as an authority.
    pub authority: Authority,
    /// The target as configured: for a DNS target, its name (the Host health checks send).
    pub origin: Authority,
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

    /// The certificates the TLS listener serves.
    pub fn certificates(&self) -> &CertificateTable {
        &self.certificates
    }

    pub fn certificate_names(&self) -> Vec<&str> {
        let mut names = self.certificates.names();
        names.sort_unstable();
        names
    }

    pub fn upstreams(&self) -> impl Iterator<Item = &UpstreamPool> {
        self.upstreams.iter()
    }

    pub(crate) fn routes_mut(&mut self) -> impl Iterator<Item = &mut RouteEntry> {
        self.routes.iter_mut()
    }

    pub(crate) fn upstreams_mut(&mut self) -> impl Iterator<Item = &mut UpstreamPool> {
        self.upstreams.iter_mut()
    }

    pub(crate) fn parts_mut(&mut self) -> (&mut [RouteEntry], &mut [UpstreamPool]) {
        (&mut self.routes, &mut self.upstreams)
    }
}

impl UpstreamPool {
    /// Whether its targets' health is watched (and so reported).
    pub fn is_watched(&self) -> bool {
        self.health_check.is_some() || self.outlier.is_some()
    }

    /// A target for a request with hash `key`: a usable one it has not tried if there is one,
    /// else a usable one it has; with no usable target, what `all_unhealthy` says.
    pub fn pick(&self, key: Option<u64>, tried: &Tried) -> Result<(usize, &Target), NoTarget> {
        let seed = self.balancer.seed(key);
        let first = View {
            targets: &self.targets,
            tried,
            avoid_tried: true,
            ignore_health: false,
        };
        let index = self
            .pick_in(first, &seed)
            .or_else(|| match self.all_unhealthy {
                AllUnhealthy::Panic => self.pick_in(
                    View {
                        ignore_health: true,
                        ..first
                    },
                    &seed,
                ),
                AllUnhealthy::FailFast { .. } => None,
            })
            .ok_or(match self.all_unhealthy {
                _ if self.targets.is_empty() => NoTarget::Empty,
                AllUnhealthy::FailFast { retry_after } => NoTarget::AllUnhealthy { retry_after },
                AllUnhealthy::Panic => NoTarget::Empty,
            })?;
        Ok((index, &self.targets[index]))
    }

    /// Untried first, then tried.
    fn pick_in(&self, view: View<'_>, seed: &Seed) -> Option<usize> {
        self.balancer.pick_seeded(&view, seed).or_else(|| {
            if view.tried.is_empty() {
                return None;
            }
            let again = View {
                avoid_tried: false,
                ..view
            };
            self.balancer.pick_seeded(&again, seed)
        })
    }
}

/// What an upstream does when none of its targets is usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllUnhealthy {
    /// Answer 503 at once; clients may retry after about the time a target needs to recover.
    FailFast { retry_after: Duration },
    /// Ignore health and use every target.
    Panic,
}

/// Why a pick found nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoTarget {
    /// The upstream has no targets.
    Empty,
    AllUnhealthy {
        retry_after: Duration,
    },
}

/// The pool's targets as one pick sees them.
#[derive(Clone, Copy)]
struct View<'a> {
    targets: &'a [Target],
    tried: &'a Tried,
    avoid_tried: bool,
    /// Panic mode: every target is usable.
    ignore_health: bool,
}

impl Candidates for View<'_> {
    fn len(&self) -> usize {
        self.targets.len()
    }

    fn usable(&self, index: usize) -> bool {
        (self.ignore_health || self.targets[index].is_usable())
            && !(self.avoid_tried && self.tried.contains(index))
    }

    fn in_flight(&self, index: usize) -> u64 {
        self.targets[index].state.in_flight()
    }
}

#[cfg(test)]
mod tests;
