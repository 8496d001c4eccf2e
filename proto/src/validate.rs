//! The one validation of a configuration, used by the control plane before every write and by
//! the data plane before every apply.
//!
//! It never stops at the first problem: it returns every violation, each naming the resource
//! (`route/web-root`), the field (`match.hosts[1]`) and the reason, so an operator can fix a
//! file in one pass and a NACK says exactly what was wrong.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::kind::{Kind, resource_ref};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::v1::{
    AllUnhealthyPolicy, Certificate, Config, FieldViolation, HeaderRewrite, HealthCheckPolicy,
    HttpHealthCheck, LoadBalancingPolicy, RetryOn, Route, Upstream, UpstreamProtocol, UpstreamTls,
    hash_on, health_check_policy, route_match,
};

/// Largest accepted millisecond duration (one day): larger values are almost always unit mistakes.
const MAX_DURATION_MS: u32 = 86_400_000;

/// Validates a whole configuration: every resource, every reference, and route uniqueness.
pub fn validate_config(config: &Config) -> Result<(), Vec<FieldViolation>> {
    let mut errors = Errors::default();
    let health_checks = unique_names(&mut errors, Kind::HealthCheck, &config.health_checks, |h| {
        &h.name
    });
    let upstreams = unique_names(&mut errors, Kind::Upstream, &config.upstreams, |u| &u.name);
    unique_names(&mut errors, Kind::Route, &config.routes, |r| &r.name);
    let certificates = unique_names(&mut errors, Kind::Certificate, &config.certificates, |c| {
        &c.name
    });

    let mut served_names: HashMap<&str, &str> = HashMap::new();
    for cert in &config.certificates {
        let mut at = errors.at(Kind::Certificate, &cert.name);
        certificate(&mut at, cert);
        for (i, name) in cert.sni.iter().enumerate() {
            match served_names.get(name.as_str()) {
                Some(other) => at.push(
                    format!("sni[{i}]"),
                    format!("{name:?} is already served by certificate {other:?}"),
                ),
                None => {
                    served_names.insert(name, &cert.name);
                }
            }
        }
    }

    for policy in &config.health_checks {
        health_check(&mut errors.at(Kind::HealthCheck, &policy.name), policy);
    }
    for upstream in &config.upstreams {
        let mut at = errors.at(Kind::Upstream, &upstream.name);
        self::upstream(&mut at, upstream);
        transport(&mut at, upstream, &certificates);
        if !upstream.health_check.is_empty()
            && !health_checks.contains(upstream.health_check.as_str())
        {
            at.push(
                "health_check",
                format!(
                    "health-check policy {:?} does not exist",
                    upstream.health_check
                ),
            );
        }
    }
    let mut seen_matches: HashMap<MatchKey, &str> = HashMap::new();
    for route in &config.routes {
        let mut at = errors.at(Kind::Route, &route.name);
        self::route(&mut at, route);
        if !route.upstream.is_empty() && !upstreams.contains(route.upstream.as_str()) {
            at.push(
                "upstream",
                format!("upstream {:?} does not exist", route.upstream),
            );
        }
        if let Some(key) = MatchKey::of(route) {
            if let Some(first) = seen_matches.get(&key) {
                at.push(
                    "match",
                    format!(
                        "route {first:?} has the same match and priority {}; one of them would never be used",
                        route.priority
                    ),
                );
            } else {
                seen_matches.insert(key, &route.name);
            }
        }
    }
    errors.into_result()
}

/// Collects violations; `at` scopes them to one resource.
#[derive(Default)]
struct Errors(Vec<FieldViolation>);

impl Errors {
    fn at(&mut self, kind: Kind, name: &str) -> At<'_> {
        At {
            errors: &mut self.0,
            resource: resource_ref(kind, name),
        }
    }

    fn into_result(self) -> Result<(), Vec<FieldViolation>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

struct At<'a> {
    errors: &'a mut Vec<FieldViolation>,
    resource: String,
}

impl At<'_> {
    fn push(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(FieldViolation {
            resource: self.resource.clone(),
            field: field.into(),
            reason: reason.into(),
        });
    }
}

fn unique_names<'a, T>(
    errors: &mut Errors,
    kind: Kind,
    items: &'a [T],
    name: impl Fn(&'a T) -> &'a String,
) -> HashSet<&'a str> {
    let mut seen = HashSet::new();
    for item in items {
        let item_name = name(item);
        let mut at = errors.at(kind, item_name);
        if let Err(reason) = check_name(item_name) {
            at.push("name", reason);
        } else if !seen.insert(item_name.as_str()) {
            at.push("name", format!("another {kind} is named {item_name:?}"));
        }
    }
    seen
}

/// Names are DNS labels (RFC 1123): they appear in URLs, metrics labels and file names.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 63 {
        return Err(format!("{name:?} is longer than 63 characters"));
    }
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid_chars || name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "{name:?} must be lowercase letters, digits and '-', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

fn labels(at: &mut At<'_>, labels: &std::collections::BTreeMap<String, String>) {
    for (key, value) in labels {
        let key_ok = !key.is_empty()
            && key.len() <= 63
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
        if !key_ok {
            at.push(
                format!("labels.{key}"),
                "label keys are 1 to 63 characters of letters, digits, '-', '_', '.' and '/'",
            );
        }
        if value.len() > 63 || value.chars().any(char::is_control) {
            at.push(
                format!("labels.{key}"),
                "label values are at most 63 characters, without control characters",
            );
        }
    }
}

fn duration(at: &mut At<'_>, field: &str, value: u32, required: bool) {
    if required && value == 0 {
        at.push(field, "must be greater than 0");
    } else if value > MAX_DURATION_MS {
        at.push(field, format!("{value} ms is more than a day"));
    }
}

fn upstream(at: &mut At<'_>, upstream: &Upstream) {
    labels(at, &upstream.labels);
    if upstream.targets.is_empty() {
        at.push("targets", "at least one target is required");
    }
    let mut addresses = HashSet::new();
    for (i, target) in upstream.targets.iter().enumerate() {
        if let Err(reason) = check_host_port(&target.address) {
            at.push(format!("targets[{i}].address"), reason);
        } else if !addresses.insert(target.address.as_str()) {
            at.push(
                format!("targets[{i}].address"),
                format!("{:?} is listed more than once", target.address),
            );
        }
        if target.weight == 0 {
            at.push(format!("targets[{i}].weight"), "must be greater than 0");
        } else if target.weight > 10_000 {
            at.push(format!("targets[{i}].weight"), "must be at most 10000");
        }
    }
    duration(at, "connect_timeout_ms", upstream.connect_timeout_ms, false);
    balancing(at, upstream);
}

/// The protocol and TLS settings of an upstream; `certificates` are the names that exist.
fn transport(at: &mut At<'_>, upstream: &Upstream, certificates: &HashSet<&str>) {
    if UpstreamProtocol::try_from(upstream.protocol).is_err() {
        at.push(
            "protocol",
            format!("{} is not a known protocol", upstream.protocol),
        );
    }
    let Some(tls) = &upstream.tls else { return };
    upstream_tls(at, tls);
    if !tls.client_certificate.is_empty() && !certificates.contains(tls.client_certificate.as_str())
    {
        at.push(
            "tls.client_certificate",
            format!("certificate {:?} does not exist", tls.client_certificate),
        );
    }
}

fn upstream_tls(at: &mut At<'_>, tls: &UpstreamTls) {
    if !tls.enabled {
        if !tls.sni.is_empty() || !tls.ca_pem.is_empty() || !tls.client_certificate.is_empty() {
            at.push(
                "tls.enabled",
                "sni, ca_pem and client_certificate only apply with enabled: true",
            );
        }
        return;
    }
    if !tls.sni.is_empty() {
        let ip = tls.sni.parse::<IpAddr>().is_ok();
        if !ip && (!is_dns_name(&tls.sni) || tls.sni.bytes().any(|b| b.is_ascii_uppercase())) {
            at.push(
                "tls.sni",
                format!(
                    "{:?} must be a lowercase DNS name or an IP address",
                    tls.sni
                ),
            );
        }
    }
    if !tls.ca_pem.is_empty()
        && let Err(reason) = pem_certificates(&tls.ca_pem)
    {
        at.push("tls.ca_pem", reason);
    }
}

/// The certificates of a PEM bundle; an error when there is none or one is malformed.
pub fn pem_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not valid PEM: {e}"))?;
    if certificates.is_empty() {
        return Err("holds no PEM CERTIFICATE block".into());
    }
    Ok(certificates)
}

/// The private key of a PEM document (PKCS#8, PKCS#1 or SEC1). The error never quotes the key.
pub fn pem_private_key(pem: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            "holds no PEM PRIVATE KEY block (PKCS#8, PKCS#1 or SEC1)".to_string()
        }
        other => format!("is not a valid PEM private key: {other}"),
    })
}

/// What can be checked of a certificate without cryptography (the control plane checks the
/// rest at write time: that the key matches, that the leaf has not expired).
fn certificate(at: &mut At<'_>, cert: &Certificate) {
    labels(at, &cert.labels);
    if cert.certificate_pem.trim().is_empty() {
        at.push("certificate_pem", "a PEM certificate chain is required");
    } else if let Err(reason) = pem_certificates(&cert.certificate_pem) {
        at.push("certificate_pem", reason);
    }
    if cert.private_key_pem.trim().is_empty() {
        at.push("private_key_pem", "a PEM private key is required");
    } else if let Err(reason) = pem_private_key(&cert.private_key_pem) {
        at.push("private_key_pem", reason);
    }
    for (i, name) in cert.sni.iter().enumerate() {
        if let Err(reason) = check_host_pattern(name) {
            at.push(format!("sni[{i}]"), reason);
        }
    }
}

/// Parses `host:port` where host is an IPv4 address, a bracketed IPv6 address or a DNS name.
pub fn check_host_port(address: &str) -> Result<(), String> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("{address:?} is not host:port"));
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => {
            return Err(format!(
                "{address:?}: port must be a number from 1 to 65535"
            ));
        }
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6
            .parse::<std::net::Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| format!("{address:?}: {v6:?} is not an IPv6 address"));
    }
    if host.parse::<IpAddr>().is_ok() || is_dns_name(host) {
        Ok(())
    } else {
        Err(format!(
            "{address:?}: {host:?} is neither an IP address nor a DNS name"
        ))
    }
}

fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn health_check(at: &mut At<'_>, policy: &HealthCheckPolicy) {
    labels(at, &policy.labels);
    match &policy.check {
        None => at.push("check", "one of http, tcp or grpc is required"),
        Some(health_check_policy::Check::Http(http)) => http_check(at, http),
        Some(health_check_policy::Check::Tcp(_)) => {}
        Some(health_check_policy::Check::Grpc(grpc)) => {
            if grpc.service.chars().any(|c| c.is_control() || c == ' ') {
                at.push(
                    "grpc.service",
                    "must not contain spaces or control characters",
                );
            }
        }
    }
    duration(at, "interval_ms", policy.interval_ms, true);
    duration(at, "timeout_ms", policy.timeout_ms, true);
    if policy.timeout_ms > policy.interval_ms && policy.interval_ms > 0 {
        at.push("timeout_ms", "must not be longer than interval_ms");
    }
    for (field, value) in [
        ("healthy_threshold", policy.healthy_threshold),
        ("unhealthy_threshold", policy.unhealthy_threshold),
    ] {
        if value == 0 {
            at.push(field, "must be greater than 0");
        } else if value > 100 {
            at.push(field, "must be at most 100");
        }
    }
    percent(at, "jitter_percent", policy.jitter_percent);
}

fn http_check(at: &mut At<'_>, http: &HttpHealthCheck) {
    if !http.path.starts_with('/') {
        at.push("http.path", format!("{:?} must start with '/'", http.path));
    } else if http.path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        at.push("http.path", "must not contain spaces or control characters");
    }
    if !http.method.is_empty() && !http.method.bytes().all(|b| b.is_ascii_uppercase()) {
        at.push(
            "http.method",
            format!(
                "{:?} must be an upper-case method name such as GET",
                http.method
            ),
        );
    }
    if !http.host.is_empty() && check_host_port_or_host(&http.host).is_err() {
        at.push("http.host", format!("{:?} is not a valid host", http.host));
    }
    for (i, range) in http.expected_statuses.iter().enumerate() {
        if !(100..=599).contains(&range.from) || !(100..=599).contains(&range.to) {
            at.push(
                format!("http.expected_statuses[{i}]"),
                "status codes are 100 to 599",
            );
        } else if range.from > range.to {
            at.push(
                format!("http.expected_statuses[{i}]"),
                format!("from ({}) is greater than to ({})", range.from, range.to),
            );
        }
    }
}

fn percent(at: &mut At<'_>, field: &str, value: u32) {
    if value > 100 {
        at.push(field, format!("{value} is more than 100 percent"));
    }
}

fn balancing(at: &mut At<'_>, upstream: &Upstream) {
    let policy = LoadBalancingPolicy::try_from(upstream.load_balancing);
    let hashing = matches!(
        policy,
        Ok(LoadBalancingPolicy::RingHash | LoadBalancingPolicy::Maglev)
    );
    if policy.is_err() {
        at.push(
            "load_balancing",
            format!("{} is not a known policy", upstream.load_balancing),
        );
    }
    if AllUnhealthyPolicy::try_from(upstream.all_unhealthy).is_err() {
        at.push(
            "all_unhealthy",
            format!("{} is not a known policy", upstream.all_unhealthy),
        );
    }
    match upstream.hash_on.as_ref().and_then(|h| h.source.as_ref()) {
        None if hashing => at.push(
            "hash_on",
            "ring-hash and maglev need hash_on (header, cookie, client_ip or path)",
        ),
        None => {}
        Some(_) if !hashing => at.push(
            "hash_on",
            "only ring-hash and maglev hash; set load_balancing to one of them",
        ),
        Some(hash_on::Source::Header(name)) if !is_header_name(name) => {
            at.push(
                "hash_on.header",
                format!("{name:?} is not a valid header name"),
            );
        }
        Some(hash_on::Source::Cookie(name)) if name.is_empty() || !is_header_name(name) => {
            at.push(
                "hash_on.cookie",
                format!("{name:?} is not a valid cookie name"),
            );
        }
        Some(hash_on::Source::ClientIp(false) | hash_on::Source::Path(false)) => {
            at.push("hash_on", "client_ip and path must be true when set");
        }
        Some(_) => {}
    }
    if let Some(outlier) = &upstream.outlier_detection {
        let enabled = outlier.consecutive_5xx > 0 || outlier.consecutive_connect_failures > 0;
        if enabled && outlier.base_ejection_ms == 0 {
            at.push(
                "outlier_detection.base_ejection_ms",
                "must be greater than 0 when ejection is enabled",
            );
        }
        duration(
            at,
            "outlier_detection.base_ejection_ms",
            outlier.base_ejection_ms,
            false,
        );
        duration(
            at,
            "outlier_detection.max_ejection_ms",
            outlier.max_ejection_ms,
            false,
        );
        if outlier.max_ejection_ms != 0 && outlier.max_ejection_ms < outlier.base_ejection_ms {
            at.push(
                "outlier_detection.max_ejection_ms",
                "must not be shorter than base_ejection_ms",
            );
        }
        percent(
            at,
            "outlier_detection.max_ejected_percent",
            outlier.max_ejected_percent,
        );
    }
}

fn retry(at: &mut At<'_>, route: &Route) {
    let Some(retry) = &route.retry else { return };
    if retry.attempts > 10 {
        at.push("retry.attempts", "must be at most 10");
    }
    for (i, on) in retry.on.iter().enumerate() {
        if matches!(RetryOn::try_from(*on), Err(_) | Ok(RetryOn::Unspecified)) {
            at.push(
                format!("retry.on[{i}]"),
                format!("{on} is not a retry condition"),
            );
        }
    }
    duration(
        at,
        "retry.per_try_timeout_ms",
        retry.per_try_timeout_ms,
        false,
    );
    if route.timeout_ms != 0 && retry.per_try_timeout_ms > route.timeout_ms {
        at.push(
            "retry.per_try_timeout_ms",
            "must not be longer than timeout_ms",
        );
    }
    percent(at, "retry.budget_percent", retry.budget_percent);
}

fn route(at: &mut At<'_>, route: &Route) {
    labels(at, &route.labels);
    if route.upstream.is_empty() {
        at.push("upstream", "an upstream is required");
    }
    duration(at, "timeout_ms", route.timeout_ms, false);
    duration(at, "connect_timeout_ms", route.connect_timeout_ms, false);
    retry(at, route);
    if let Some(rewrite) = &route.request_headers {
        header_rewrite(at, rewrite);
    }
    let Some(m) = &route.r#match else {
        at.push("match", "a match with a path (exact or prefix) is required");
        return;
    };
    for (i, host) in m.hosts.iter().enumerate() {
        if let Err(reason) = check_host_pattern(host) {
            at.push(format!("match.hosts[{i}]"), reason);
        }
    }
    match &m.path {
        None => at.push("match.path", "a path (exact or prefix) is required"),
        Some(route_match::Path::Exact(p)) => path(at, "match.exact", p),
        Some(route_match::Path::Prefix(p)) => path(at, "match.prefix", p),
    }
    for (i, method) in m.methods.iter().enumerate() {
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            at.push(
                format!("match.methods[{i}]"),
                format!("{method:?} must be an upper-case method name such as GET"),
            );
        }
    }
}

fn path(at: &mut At<'_>, field: &str, path: &str) {
    if !path.starts_with('/') {
        at.push(field, format!("{path:?} must start with '/'"));
    } else if path
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'?' || b == b'#')
    {
        at.push(
            field,
            "must not contain spaces, control characters, '?' or '#'",
        );
    }
}

/// A host a route matches: `api.example.com` or `*.example.com` (lowercase, no port).
pub fn check_host_pattern(host: &str) -> Result<(), String> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("{host:?} must be lowercase"));
    }
    if !is_dns_name(name) {
        return Err(format!(
            "{host:?} must be a host name such as api.example.com or a wildcard such as *.example.com"
        ));
    }
    Ok(())
}

fn header_rewrite(at: &mut At<'_>, rewrite: &HeaderRewrite) {
    let mut set_names = HashSet::new();
    for (i, header) in rewrite.set.iter().enumerate() {
        let field = format!("request_headers.set[{i}]");
        if !is_header_name(&header.name) {
            at.push(
                format!("{field}.name"),
                format!("{:?} is not a valid header name", header.name),
            );
        } else if !set_names.insert(header.name.to_ascii_lowercase()) {
            at.push(
                format!("{field}.name"),
                format!("{:?} is set more than once", header.name),
            );
        }
        if header
            .value
            .bytes()
            .any(|b| (b.is_ascii_control() && b != b'\t') || b == 0x7f)
        {
            at.push(
                format!("{field}.value"),
                "must not contain control characters",
            );
        }
        if header.name.eq_ignore_ascii_case("host")
            && check_host_port_or_host(&header.value).is_err()
        {
            at.push(
                format!("{field}.value"),
                format!("{:?} is not a valid host", header.value),
            );
        }
    }
    for (i, name) in rewrite.remove.iter().enumerate() {
        if !is_header_name(name) {
            at.push(
                format!("request_headers.remove[{i}]"),
                format!("{name:?} is not a valid header name"),
            );
        } else if name.eq_ignore_ascii_case("host") {
            at.push(
                format!("request_headers.remove[{i}]"),
                "the Host header cannot be removed; set it instead",
            );
        }
    }
}

fn check_host_port_or_host(value: &str) -> Result<(), String> {
    if is_dns_name(value) || value.parse::<IpAddr>().is_ok() {
        Ok(())
    } else {
        check_host_port(value)
    }
}

/// RFC 9110 token characters.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// What makes two routes indistinguishable: same hosts, path, methods and priority.
#[derive(PartialEq, Eq, Hash)]
struct MatchKey {
    hosts: Vec<String>,
    path: (bool, String),
    methods: Vec<String>,
    priority: i32,
}

impl MatchKey {
    fn of(route: &Route) -> Option<Self> {
        let m = route.r#match.as_ref()?;
        let path = match m.path.as_ref()? {
            route_match::Path::Exact(p) => (true, p.clone()),
            route_match::Path::Prefix(p) => (false, p.clone()),
        };
        let mut hosts = m.hosts.clone();
        hosts.sort();
        hosts.dedup();
        let mut methods = m.methods.clone();
        methods.sort();
        methods.dedup();
        Some(MatchKey {
            hosts,
            path,
            methods,
            priority: route.priority,
        })
    }
}

#[cfg(test)]
mod tests;
