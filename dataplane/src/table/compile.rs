//! `Config` (wire types) → [`RouteTable`] (runtime types). Pure: no I/O, no clock, no globals.
//!
//! The config has normally passed `gateway_proto::validate::validate_config` already; compile
//! still reports, rather than panics on, anything it cannot turn into a runtime value, and it
//! reports every problem at once so that a NACK lists them all.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gateway_proto::kind::{Kind, resource_ref};
use gateway_proto::v1::{
    self, AllUnhealthyPolicy, Config, FieldViolation, LoadBalancingPolicy, UpstreamProtocol,
    hash_on, health_check_policy, route_match,
};
use http::uri::Authority;
use http::{HeaderName, HeaderValue, Method};

use super::{
    AllUnhealthy, DEFAULT_CONNECT_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT, DEFAULT_RETRY_AFTER,
    HeaderEdits, Protocol, RouteEntry, RouteTable, Target, Transport, UpstreamPool,
};
use crate::balance::{Balancer, HashKey, Policy, Weighted};
use crate::dns::{Resolutions, dns_name};
use crate::health::{Check, DEFAULT_JITTER_PERCENT, HealthPolicy, HttpCheck};
use crate::outlier::{DEFAULT_MAX_EJECTED_PERCENT, DEFAULT_MAX_EJECTION, OutlierPolicy};
use crate::retry::{DEFAULT_BUDGET_PERCENT, RetryOn, RetryPolicy};
use crate::route::{MatchRule, PathMatch, RouteMatcher};
use crate::state::{TargetState, UpstreamState};
use crate::telemetry::{RouteStats, UpstreamStats};
use crate::tls::{self, CertificateTable};

/// Builds the runtime table for `config`, or returns every reason it cannot.
pub fn compile(config: &Config) -> Result<RouteTable, Vec<FieldViolation>> {
    compile_resolved(config, &Resolutions::new())
}

/// [`compile`], a DNS target standing for the addresses `resolutions` gives its name (when it
/// has any: else it stays as configured).
pub fn compile_resolved(
    config: &Config,
    resolutions: &Resolutions,
) -> Result<RouteTable, Vec<FieldViolation>> {
    let mut errors = Vec::new();
    let mut keys = HashMap::new();
    for certificate in &config.certificates {
        match tls::certified_key(certificate) {
            Ok(key) => {
                keys.insert(certificate.name.clone(), Arc::new(key));
            }
            Err((field, reason)) => {
                At::new(Kind::Certificate, &certificate.name, &mut errors).push(field, reason);
            }
        }
    }
    let certificates = CertificateTable::new(&config.certificates, keys);
    let client_certificates: HashMap<&str, &v1::Certificate> = config
        .certificates
        .iter()
        .map(|c| (c.name.as_str(), c))
        .collect();
    let policies: HashMap<&str, HealthPolicy> = config
        .health_checks
        .iter()
        .filter_map(|h| Some((h.name.as_str(), health_policy(h, &mut errors)?)))
        .collect();
    let upstreams: Vec<UpstreamPool> = config
        .upstreams
        .iter()
        .map(|u| upstream(u, &policies, resolutions, &client_certificates, &mut errors))
        .collect();
    let by_name: HashMap<&str, usize> = upstreams
        .iter()
        .enumerate()
        .map(|(i, u)| (u.name.as_str(), i))
        .collect();

    let mut routes = Vec::with_capacity(config.routes.len());
    let mut rules = Vec::with_capacity(config.routes.len());
    for route in &config.routes {
        let mut at = At::new(Kind::Route, &route.name, &mut errors);
        let Some(&upstream) = by_name.get(route.upstream.as_str()) else {
            at.push(
                "upstream",
                format!("upstream {:?} does not exist", route.upstream),
            );
            continue;
        };
        if let Some(rule) = match_rule(route, routes.len(), &mut at) {
            rules.push(rule);
            routes.push(RouteEntry {
                name: route.name.clone(),
                upstream,
                request_headers: header_edits(route.request_headers.as_ref(), &mut at),
                timeout: millis_or(route.timeout_ms, DEFAULT_RESPONSE_TIMEOUT),
                retry: retry_policy(route.retry.as_ref()),
                connect_timeout: (route.connect_timeout_ms > 0)
                    .then(|| Duration::from_millis(u64::from(route.connect_timeout_ms))),
                state: Arc::default(),
                stats: Arc::new(RouteStats::new(&route.name, &route.upstream)),
            });
        }
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(RouteTable {
        matcher: RouteMatcher::new(rules),
        routes,
        upstreams,
        health_checks: config
            .health_checks
            .iter()
            .map(|h| h.name.clone())
            .collect(),
        certificates,
    })
}

/// Scopes violations to one resource.
struct At<'a> {
    resource: String,
    errors: &'a mut Vec<FieldViolation>,
}

impl<'a> At<'a> {
    fn new(kind: Kind, name: &str, errors: &'a mut Vec<FieldViolation>) -> Self {
        At {
            resource: resource_ref(kind, name),
            errors,
        }
    }

    fn push(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(FieldViolation {
            resource: self.resource.clone(),
            field: field.into(),
            reason: reason.into(),
        });
    }
}

fn millis_or(ms: u32, default: Duration) -> Duration {
    if ms == 0 {
        default
    } else {
        Duration::from_millis(u64::from(ms))
    }
}

fn health_policy(
    policy: &v1::HealthCheckPolicy,
    errors: &mut Vec<FieldViolation>,
) -> Option<HealthPolicy> {
    let mut at = At::new(Kind::HealthCheck, &policy.name, errors);
    let check = match &policy.check {
        Some(health_check_policy::Check::Http(http)) => Check::Http(http_check(http, &mut at)?),
        Some(health_check_policy::Check::Tcp(_)) => Check::Tcp,
        Some(health_check_policy::Check::Grpc(grpc)) => Check::Grpc {
            service: grpc.service.clone(),
        },
        None => {
            at.push("check", "one of http, tcp or grpc is required");
            return None;
        }
    };
    Some(HealthPolicy {
        name: policy.name.clone(),
        check,
        interval: Duration::from_millis(u64::from(policy.interval_ms.max(1))),
        timeout: Duration::from_millis(u64::from(policy.timeout_ms.max(1))),
        healthy_threshold: policy.healthy_threshold.max(1),
        unhealthy_threshold: policy.unhealthy_threshold.max(1),
        jitter_percent: match policy.jitter_percent {
            0 => DEFAULT_JITTER_PERCENT,
            percent => percent.min(100),
        },
    })
}

fn http_check(http: &v1::HttpHealthCheck, at: &mut At<'_>) -> Option<HttpCheck> {
    let method = if http.method.is_empty() {
        Method::GET
    } else {
        match Method::from_bytes(http.method.as_bytes()) {
            Ok(method) => method,
            Err(_) => {
                at.push(
                    "http.method",
                    format!("{:?} is not a method name", http.method),
                );
                return None;
            }
        }
    };
    if http.path.parse::<http::uri::PathAndQuery>().is_err() {
        at.push("http.path", format!("{:?} is not a valid path", http.path));
        return None;
    }
    let status = |code: u32| u16::try_from(code).unwrap_or(u16::MAX);
    Some(HttpCheck {
        method,
        path: http.path.clone(),
        host: (!http.host.is_empty()).then(|| http.host.clone()),
        expected_statuses: http
            .expected_statuses
            .iter()
            .map(|r| (status(r.from), status(r.to)))
            .collect(),
    })
}

/// The protocol and TLS of an upstream. Two upstreams with the same settings get the same
/// fingerprint, and so share connection pools.
fn transport(
    upstream: &v1::Upstream,
    certificates: &HashMap<&str, &v1::Certificate>,
    at: &mut At<'_>,
) -> Transport {
    let protocol = match UpstreamProtocol::try_from(upstream.protocol) {
        Ok(UpstreamProtocol::Unspecified | UpstreamProtocol::Http1) => Protocol::Http1,
        Ok(UpstreamProtocol::Http2) => Protocol::Http2,
        Ok(UpstreamProtocol::Auto) => Protocol::Auto,
        Err(_) => {
            at.push(
                "protocol",
                format!("{} is not a known protocol", upstream.protocol),
            );
            Protocol::Http1
        }
    };
    let mut fingerprint = xxhash_rust::xxh3::Xxh3::new();
    fingerprint.update(&upstream.protocol.to_le_bytes());
    let tls = match upstream.tls.as_ref().filter(|t| t.enabled) {
        None => None,
        Some(settings) => {
            let client = if settings.client_certificate.is_empty() {
                None
            } else {
                let found = certificates
                    .get(settings.client_certificate.as_str())
                    .copied();
                if found.is_none() {
                    at.push(
                        "tls.client_certificate",
                        format!(
                            "certificate {:?} does not exist",
                            settings.client_certificate
                        ),
                    );
                }
                found
            };
            let alpn: &[&[u8]] = match protocol {
                Protocol::Http1 => &[b"http/1.1"],
                Protocol::Http2 => &[b"h2"],
                Protocol::Auto => &[b"h2", b"http/1.1"],
            };
            fingerprint.update(&prost::Message::encode_to_vec(settings));
            if let Some(client) = client {
                fingerprint.update(client.certificate_pem.as_bytes());
                fingerprint.update(client.private_key_pem.as_bytes());
            }
            match tls::upstream_tls(settings, alpn, client) {
                Ok(tls) => Some(Arc::new(tls)),
                Err((field, reason)) => {
                    at.push(field, reason);
                    None
                }
            }
        }
    };
    Transport {
        protocol,
        tls,
        fingerprint: fingerprint.digest(),
    }
}

fn upstream(
    upstream: &v1::Upstream,
    policies: &HashMap<&str, HealthPolicy>,
    resolutions: &Resolutions,
    certificates: &HashMap<&str, &v1::Certificate>,
    errors: &mut Vec<FieldViolation>,
) -> UpstreamPool {
    let mut at = At::new(Kind::Upstream, &upstream.name, errors);
    let transport = Arc::new(transport(upstream, certificates, &mut at));
    let health_check = if upstream.health_check.is_empty() {
        None
    } else {
        let policy = policies.get(upstream.health_check.as_str()).cloned();
        if policy.is_none() {
            at.push(
                "health_check",
                format!(
                    "health-check policy {:?} does not exist",
                    upstream.health_check
                ),
            );
        }
        policy
    };
    let mut targets: Vec<Target> = Vec::with_capacity(upstream.targets.len());
    for (i, target) in upstream.targets.iter().enumerate() {
        let origin = match target.address.parse::<Authority>() {
            Ok(authority) if authority.port_u16().is_some() => authority,
            _ => {
                at.push(
                    format!("targets[{i}].address"),
                    format!("{:?} is not a host:port address", target.address),
                );
                continue;
            }
        };
        let resolved = dns_name(&origin).and_then(|name| resolutions.get(name));
        let addresses: Vec<(String, Authority)> = match (resolved, origin.port_u16()) {
            // A DNS target: one target per address it resolves to.
            (Some(ips), Some(port)) => ips
                .iter()
                .filter_map(|&ip| {
                    let address = SocketAddr::new(ip, port).to_string();
                    let authority = address.parse().ok()?;
                    Some((address, authority))
                })
                .collect(),
            _ => vec![(target.address.clone(), origin.clone())],
        };
        for (address, authority) in addresses {
            // Two names (or a name and an address) may lead to the same place: one target.
            if targets.iter().any(|t| t.address == address) {
                continue;
            }
            targets.push(Target {
                state: Arc::new(TargetState::new(&upstream.name, &address)),
                address,
                authority,
                origin: origin.clone(),
                weight: target.weight,
            });
        }
    }
    if targets.is_empty() && upstream.targets.is_empty() {
        at.push("targets", "at least one target is required");
    }
    let policy = balancing_policy(upstream, &mut at);
    let hash_key = if policy.is_hashing() {
        hash_key(upstream, &mut at)
    } else {
        None
    };
    let weighted: Vec<Weighted<'_>> = targets
        .iter()
        .map(|t| Weighted {
            address: &t.address,
            weight: t.weight,
        })
        .collect();
    UpstreamPool {
        name: upstream.name.clone(),
        connect_timeout: millis_or(upstream.connect_timeout_ms, DEFAULT_CONNECT_TIMEOUT),
        all_unhealthy: all_unhealthy(upstream, health_check.as_ref(), &mut at),
        health_check,
        outlier: outlier_policy(upstream.outlier_detection.as_ref()),
        balancer: Balancer::new(policy, &weighted),
        hash_key,
        state: Arc::new(UpstreamState::default()),
        stats: Arc::new(UpstreamStats::new(&upstream.name)),
        targets,
        transport,
    }
}

fn retry_policy(retry: Option<&v1::RetryPolicy>) -> Option<RetryPolicy> {
    let retry = retry.filter(|r| r.attempts > 0)?;
    Some(RetryPolicy {
        attempts: retry.attempts,
        on: RetryOn::from_wire(&retry.on),
        per_try_timeout: (retry.per_try_timeout_ms > 0)
            .then(|| Duration::from_millis(u64::from(retry.per_try_timeout_ms))),
        budget_percent: match retry.budget_percent {
            0 => DEFAULT_BUDGET_PERCENT,
            percent => percent.min(100),
        },
    })
}

fn all_unhealthy(
    upstream: &v1::Upstream,
    health_check: Option<&HealthPolicy>,
    at: &mut At<'_>,
) -> AllUnhealthy {
    match AllUnhealthyPolicy::try_from(upstream.all_unhealthy) {
        Ok(AllUnhealthyPolicy::Panic) => AllUnhealthy::Panic,
        Ok(AllUnhealthyPolicy::Unspecified | AllUnhealthyPolicy::FailFast) => {
            AllUnhealthy::FailFast {
                retry_after: retry_after(upstream, health_check),
            }
        }
        Err(_) => {
            at.push(
                "all_unhealthy",
                format!("{} is not a known policy", upstream.all_unhealthy),
            );
            AllUnhealthy::FailFast {
                retry_after: DEFAULT_RETRY_AFTER,
            }
        }
    }
}

/// About when a target could be back: the checks it must pass, else the first ejection's end.
fn retry_after(upstream: &v1::Upstream, health_check: Option<&HealthPolicy>) -> Duration {
    let estimate = match (health_check, &upstream.outlier_detection) {
        (Some(policy), _) => policy.interval * policy.healthy_threshold,
        (None, Some(outlier)) if outlier.base_ejection_ms > 0 => {
            Duration::from_millis(u64::from(outlier.base_ejection_ms))
        }
        _ => DEFAULT_RETRY_AFTER,
    };
    // Whole seconds (the header's unit), at least one.
    Duration::from_secs(estimate.as_millis().div_ceil(1000).max(1) as u64)
}

fn outlier_policy(outlier: Option<&v1::OutlierDetection>) -> Option<OutlierPolicy> {
    let outlier = outlier?;
    if outlier.consecutive_5xx == 0 && outlier.consecutive_connect_failures == 0 {
        return None;
    }
    Some(OutlierPolicy {
        consecutive_5xx: outlier.consecutive_5xx,
        consecutive_connect_failures: outlier.consecutive_connect_failures,
        base_ejection: Duration::from_millis(u64::from(outlier.base_ejection_ms.max(1))),
        max_ejection: millis_or(outlier.max_ejection_ms, DEFAULT_MAX_EJECTION),
        max_ejected_percent: match outlier.max_ejected_percent {
            0 => DEFAULT_MAX_EJECTED_PERCENT,
            percent => percent.min(100),
        },
    })
}

fn balancing_policy(upstream: &v1::Upstream, at: &mut At<'_>) -> Policy {
    match LoadBalancingPolicy::try_from(upstream.load_balancing) {
        Ok(LoadBalancingPolicy::Unspecified | LoadBalancingPolicy::RoundRobin) => {
            Policy::RoundRobin
        }
        Ok(LoadBalancingPolicy::Random) => Policy::Random,
        Ok(LoadBalancingPolicy::LeastRequest) => Policy::LeastRequest,
        Ok(LoadBalancingPolicy::RingHash) => Policy::RingHash,
        Ok(LoadBalancingPolicy::Maglev) => Policy::Maglev,
        Err(_) => {
            at.push(
                "load_balancing",
                format!("{} is not a known policy", upstream.load_balancing),
            );
            Policy::RoundRobin
        }
    }
}

fn hash_key(upstream: &v1::Upstream, at: &mut At<'_>) -> Option<HashKey> {
    match upstream.hash_on.as_ref().and_then(|h| h.source.as_ref()) {
        Some(hash_on::Source::Header(name)) => match HeaderName::from_bytes(name.as_bytes()) {
            Ok(name) => Some(HashKey::Header(name)),
            Err(_) => {
                at.push(
                    "hash_on.header",
                    format!("{name:?} is not a valid header name"),
                );
                None
            }
        },
        Some(hash_on::Source::Cookie(name)) => Some(HashKey::Cookie(name.as_str().into())),
        Some(hash_on::Source::ClientIp(true)) => Some(HashKey::ClientIp),
        Some(hash_on::Source::Path(true)) => Some(HashKey::Path),
        Some(hash_on::Source::ClientIp(false) | hash_on::Source::Path(false)) | None => {
            at.push(
                "hash_on",
                "ring-hash and maglev need hash_on (header, cookie, client_ip or path)",
            );
            None
        }
    }
}

fn match_rule(route: &v1::Route, index: usize, at: &mut At<'_>) -> Option<MatchRule> {
    let Some(m) = &route.r#match else {
        at.push("match", "a match with a path (exact or prefix) is required");
        return None;
    };
    let path = match &m.path {
        Some(route_match::Path::Exact(p)) => PathMatch::Exact(p.clone()),
        Some(route_match::Path::Prefix(p)) => PathMatch::Prefix(p.clone()),
        None => {
            at.push("match.path", "a path (exact or prefix) is required");
            return None;
        }
    };
    let mut methods = Vec::with_capacity(m.methods.len());
    for (i, method) in m.methods.iter().enumerate() {
        match Method::from_bytes(method.as_bytes()) {
            Ok(method) => methods.push(method),
            Err(_) => at.push(
                format!("match.methods[{i}]"),
                format!("{method:?} is not a method name"),
            ),
        }
    }
    Some(MatchRule {
        // Validation demands lowercase; lowering again keeps matching right if it ever did not.
        hosts: m.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        path,
        methods,
        priority: route.priority,
        route: index,
    })
}

fn header_edits(rewrite: Option<&v1::HeaderRewrite>, at: &mut At<'_>) -> HeaderEdits {
    let Some(rewrite) = rewrite else {
        return HeaderEdits::default();
    };
    let mut edits = HeaderEdits::default();
    for (i, header) in rewrite.set.iter().enumerate() {
        let name = HeaderName::from_bytes(header.name.as_bytes());
        let value = HeaderValue::from_bytes(header.value.as_bytes());
        match (name, value) {
            (Ok(name), Ok(value)) => edits.set.push((name, value)),
            (Err(_), _) => at.push(
                format!("request_headers.set[{i}].name"),
                format!("{:?} is not a valid header name", header.name),
            ),
            (_, Err(_)) => at.push(
                format!("request_headers.set[{i}].value"),
                "is not a valid header value",
            ),
        }
    }
    for (i, name) in rewrite.remove.iter().enumerate() {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(name) => edits.remove.push(name),
            Err(_) => at.push(
                format!("request_headers.remove[{i}]"),
                format!("{name:?} is not a valid header name"),
            ),
        }
    }
    edits
}
