//! The route matcher: which route a request (host, path, method) goes to.
//!
//! Hosts are tiers, tried in order until one holds a route that matches the path and method:
//! the exact host, then wildcard suffixes from the most specific (`*.a.example.com`) to the least
//! (`*.com`), then the routes without hosts. Inside a tier the highest priority wins, then the
//! longest path match, and an exact path beats a prefix of the same length.
//!
//! Invariant: the cost of a lookup does not depend on the number of routes. A tier is a hash map
//! of exact paths plus a hash map of prefixes probed only at the distinct prefix lengths present,
//! longest first; wildcard tiers are probed once per dot in the request's host.

use std::borrow::Cow;
use std::collections::HashMap;

use foldhash::fast::RandomState;

use http::Method;

/// How a route matches the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

/// One route as the matcher sees it; `route` is the caller's index for it.
#[derive(Debug, Clone)]
pub struct MatchRule {
    /// Lowercase exact hosts or `*.suffix` wildcards; empty matches any host.
    pub hosts: Vec<String>,
    pub path: PathMatch,
    /// Empty matches any method.
    pub methods: Vec<Method>,
    pub priority: i32,
    pub route: usize,
}

/// Hosts and paths to what they match. foldhash, not SipHash: a lookup hashes the request's
/// host and path on every request, and the keys come from the config, not from clients.
type Map<V> = HashMap<Box<str>, V, RandomState>;

/// An immutable index of [`MatchRule`]s.
#[derive(Debug, Default)]
pub struct RouteMatcher {
    exact_hosts: Map<PathTable>,
    /// Keyed by the suffix with its leading dot: `*.example.com` is stored as `.example.com`.
    wildcard_hosts: Map<PathTable>,
    any_host: PathTable,
}

impl RouteMatcher {
    pub fn new(rules: impl IntoIterator<Item = MatchRule>) -> Self {
        let mut matcher = RouteMatcher::default();
        for rule in rules {
            let candidate = Candidate {
                priority: rule.priority,
                methods: rule.methods.into_boxed_slice(),
                route: rule.route,
            };
            if rule.hosts.is_empty() {
                matcher.any_host.insert(&rule.path, candidate.clone());
            }
            for host in &rule.hosts {
                let table = match host.strip_prefix('*') {
                    Some(suffix) => matcher.wildcard_hosts.entry(suffix.into()).or_default(),
                    None => matcher.exact_hosts.entry(host.as_str().into()).or_default(),
                };
                table.insert(&rule.path, candidate.clone());
            }
        }
        for table in matcher
            .exact_hosts
            .values_mut()
            .chain(matcher.wildcard_hosts.values_mut())
            .chain(std::iter::once(&mut matcher.any_host))
        {
            table.finish();
        }
        matcher
    }

    /// The route for a request; `host` must already be normalized (see [`normalize_host`]).
    pub fn find(&self, host: &str, path: &str, method: &Method) -> Option<usize> {
        if let Some(table) = self.exact_hosts.get(host)
            && let Some(route) = table.find(path, method)
        {
            return Some(route);
        }
        if !self.wildcard_hosts.is_empty() {
            // Left to right gives the longest (most specific) suffix first; a dot at index 0
            // would leave nothing for the `*` to match.
            for (dot, _) in host.match_indices('.').filter(|(i, _)| *i > 0) {
                if let Some(table) = self.wildcard_hosts.get(&host[dot..])
                    && let Some(route) = table.find(path, method)
                {
                    return Some(route);
                }
            }
        }
        self.any_host.find(path, method)
    }
}

/// Lowercases a Host header value and strips its port and any trailing dot.
pub fn normalize_host(raw: &str) -> Cow<'_, str> {
    let host = if raw.starts_with('[') {
        // IPv6 literal: keep the brackets, drop what follows `]`.
        raw.find(']').map_or(raw, |end| &raw[..=end])
    } else {
        raw.split_once(':').map_or(raw, |(host, _port)| host)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

#[derive(Debug, Clone)]
struct Candidate {
    priority: i32,
    methods: Box<[Method]>,
    route: usize,
}

impl Candidate {
    fn accepts(&self, method: &Method) -> bool {
        self.methods.is_empty() || self.methods.contains(method)
    }
}

/// The routes of one host tier, by path.
#[derive(Debug, Default)]
struct PathTable {
    exact: Map<Vec<Candidate>>,
    prefixes: Map<Vec<Candidate>>,
    /// Distinct lengths (bytes) of the keys of `prefixes`, longest first.
    prefix_lengths: Vec<usize>,
    max_priority: i32,
}

/// How good a match is: higher priority, then longer path, then exact over prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    priority: i32,
    length: usize,
    exact: bool,
}

impl PathTable {
    fn insert(&mut self, path: &PathMatch, candidate: Candidate) {
        let (map, key) = match path {
            PathMatch::Exact(p) => (&mut self.exact, p),
            PathMatch::Prefix(p) => (&mut self.prefixes, p),
        };
        map.entry(key.as_str().into()).or_default().push(candidate);
    }

    fn finish(&mut self) {
        let mut lengths: Vec<usize> = self.prefixes.keys().map(|k| k.len()).collect();
        lengths.sort_unstable_by(|a, b| b.cmp(a));
        lengths.dedup();
        self.prefix_lengths = lengths;
        let mut max_priority = i32::MIN;
        for candidates in self.exact.values_mut().chain(self.prefixes.values_mut()) {
            // Best first: priority, then routes that name methods over catch-alls, then the
            // order of definition, so that equal rules always resolve the same way.
            candidates.sort_by(|a, b| {
                b.priority
                    .cmp(&a.priority)
                    .then_with(|| a.methods.is_empty().cmp(&b.methods.is_empty()))
                    .then_with(|| a.route.cmp(&b.route))
            });
            if let Some(first) = candidates.first() {
                max_priority = max_priority.max(first.priority);
            }
        }
        self.max_priority = max_priority;
    }

    fn find(&self, path: &str, method: &Method) -> Option<usize> {
        let mut best: Option<(Rank, usize)> = None;
        if let Some(candidates) = self.exact.get(path) {
            best = best_of(best, candidates, method, path.len(), true);
        }
        for &length in &self.prefix_lengths {
            // Later probes are shorter, so once the top priority is held nothing can win.
            if best.is_some_and(|(rank, _)| rank.priority >= self.max_priority) {
                break;
            }
            if let Some(prefix) = path.get(..length)
                && let Some(candidates) = self.prefixes.get(prefix)
            {
                best = best_of(best, candidates, method, length, false);
            }
        }
        best.map(|(_, route)| route)
    }
}

/// The better of `best` and the first of `candidates` that accepts `method`.
fn best_of(
    best: Option<(Rank, usize)>,
    candidates: &[Candidate],
    method: &Method,
    length: usize,
    exact: bool,
) -> Option<(Rank, usize)> {
    let Some(candidate) = candidates.iter().find(|c| c.accepts(method)) else {
        return best;
    };
    let rank = Rank {
        priority: candidate.priority,
        length,
        exact,
    };
    match best {
        Some((current, _)) if current >= rank => best,
        _ => Some((rank, candidate.route)),
    }
}

#[cfg(test)]
mod tests;
