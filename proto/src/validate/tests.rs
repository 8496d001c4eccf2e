use super::*;
use crate::v1::{Header, HttpHealthCheck, RouteMatch, StatusRange, Target};

fn upstream(name: &str, targets: &[&str]) -> Upstream {
    Upstream {
        name: name.into(),
        targets: targets
            .iter()
            .map(|a| Target {
                address: (*a).into(),
                weight: 1,
            })
            .collect(),
        ..Default::default()
    }
}

fn route(name: &str, prefix: &str, upstream: &str) -> Route {
    Route {
        name: name.into(),
        r#match: Some(RouteMatch {
            path: Some(route_match::Path::Prefix(prefix.into())),
            ..Default::default()
        }),
        upstream: upstream.into(),
        ..Default::default()
    }
}

fn policy(name: &str) -> HealthCheckPolicy {
    HealthCheckPolicy {
        name: name.into(),
        check: Some(health_check_policy::Check::Http(HttpHealthCheck {
            path: "/healthz".into(),
            expected_statuses: vec![StatusRange { from: 200, to: 299 }],
            ..Default::default()
        })),
        interval_ms: 2000,
        timeout_ms: 1000,
        healthy_threshold: 2,
        unhealthy_threshold: 3,
        ..Default::default()
    }
}

fn valid() -> Config {
    let mut web = upstream(
        "web",
        &["127.0.0.1:9001", "backend.internal:80", "[::1]:8080"],
    );
    web.health_check = "hc".into();
    Config {
        upstreams: vec![web],
        routes: vec![route("web-root", "/", "web")],
        health_checks: vec![policy("hc")],
        certificates: vec![],
    }
}

/// (resource, field) pairs of every violation, for compact assertions.
fn violations(config: &Config) -> Vec<(String, String)> {
    match validate_config(config) {
        Ok(()) => vec![],
        Err(errors) => {
            for e in &errors {
                assert!(!e.reason.is_empty(), "every violation says why: {e:?}");
            }
            errors.into_iter().map(|e| (e.resource, e.field)).collect()
        }
    }
}

fn pair(resource: &str, field: &str) -> (String, String) {
    (resource.to_string(), field.to_string())
}

#[test]
fn a_valid_config_passes() {
    assert_eq!(violations(&valid()), vec![]);
}

#[test]
fn names_must_be_dns_labels() {
    for bad in ["", "Web", "-web", "web-", "web_1", "web.1", &"a".repeat(64)] {
        assert!(check_name(bad).is_err(), "{bad:?} accepted");
    }
    for good in ["web", "web-1", "1", &"a".repeat(63)] {
        assert!(check_name(good).is_ok(), "{good:?} refused");
    }
}

#[test]
fn host_port_parsing() {
    for good in ["127.0.0.1:80", "[::1]:8080", "example.com:443", "backend:1"] {
        assert!(check_host_port(good).is_ok(), "{good:?} refused");
    }
    for bad in [
        "127.0.0.1",
        "example.com:0",
        "example.com:70000",
        ":80",
        "exa mple:80",
        "[zz]:80",
    ] {
        assert!(check_host_port(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn every_error_is_reported_with_resource_and_field() {
    let mut config = valid();
    config.upstreams[0].targets[1].address = "nope".into();
    config.upstreams[0].targets[2].weight = 0;
    config.routes[0].upstream = "missing".into();
    config.health_checks[0].interval_ms = 0;
    assert_eq!(
        violations(&config),
        vec![
            pair("health-check/hc", "interval_ms"),
            pair("upstream/web", "targets[1].address"),
            pair("upstream/web", "targets[2].weight"),
            pair("route/web-root", "upstream"),
        ]
    );
}

#[test]
fn references_must_exist() {
    let mut config = valid();
    config.health_checks.clear();
    assert_eq!(
        violations(&config),
        vec![pair("upstream/web", "health_check")]
    );
}

#[test]
fn duplicate_names_and_targets_are_refused() {
    let mut config = valid();
    config.upstreams.push(upstream("web", &["127.0.0.1:1"]));
    config.upstreams[0].targets.push(Target {
        address: "127.0.0.1:9001".into(),
        weight: 2,
    });
    assert_eq!(
        violations(&config),
        vec![
            pair("upstream/web", "name"),
            pair("upstream/web", "targets[3].address")
        ]
    );
}

#[test]
fn two_routes_with_the_same_match_and_priority_are_refused() {
    let mut config = valid();
    config.routes.push(route("other", "/", "web"));
    assert_eq!(violations(&config), vec![pair("route/other", "match")]);
    config.routes[1].priority = 5;
    assert_eq!(violations(&config), vec![]);
}

#[test]
fn route_match_fields_are_checked() {
    let mut config = valid();
    let m = config.routes[0].r#match.as_mut().unwrap();
    m.hosts = vec![
        "api.example.com".into(),
        "*.example.com".into(),
        "Bad.Host".into(),
        "a b".into(),
    ];
    m.methods = vec!["GET".into(), "get".into()];
    m.path = Some(route_match::Path::Exact("no-slash".into()));
    assert_eq!(
        violations(&config),
        vec![
            pair("route/web-root", "match.hosts[2]"),
            pair("route/web-root", "match.hosts[3]"),
            pair("route/web-root", "match.exact"),
            pair("route/web-root", "match.methods[1]"),
        ]
    );
    config.routes[0].r#match = None;
    assert_eq!(violations(&config), vec![pair("route/web-root", "match")]);
}

#[test]
fn header_rewrites_are_checked() {
    let mut config = valid();
    config.routes[0].request_headers = Some(HeaderRewrite {
        set: vec![
            Header {
                name: "host".into(),
                value: "internal.example".into(),
            },
            Header {
                name: "x bad".into(),
                value: "v".into(),
            },
            Header {
                name: "x-ok".into(),
                value: "line\nbreak".into(),
            },
        ],
        remove: vec!["Host".into(), "x-debug".into()],
    });
    assert_eq!(
        violations(&config),
        vec![
            pair("route/web-root", "request_headers.set[1].name"),
            pair("route/web-root", "request_headers.set[2].value"),
            pair("route/web-root", "request_headers.remove[0]"),
        ]
    );
}

#[test]
fn health_check_fields_are_checked() {
    let mut config = valid();
    let policy = &mut config.health_checks[0];
    policy.timeout_ms = 5000;
    policy.unhealthy_threshold = 0;
    let Some(health_check_policy::Check::Http(http)) = policy.check.as_mut() else {
        unreachable!()
    };
    http.path = "healthz".into();
    http.method = "get".into();
    http.expected_statuses = vec![
        StatusRange { from: 300, to: 200 },
        StatusRange { from: 99, to: 200 },
    ];
    assert_eq!(
        violations(&config),
        vec![
            pair("health-check/hc", "http.path"),
            pair("health-check/hc", "http.method"),
            pair("health-check/hc", "http.expected_statuses[0]"),
            pair("health-check/hc", "http.expected_statuses[1]"),
            pair("health-check/hc", "timeout_ms"),
            pair("health-check/hc", "unhealthy_threshold"),
        ]
    );
    config.health_checks[0].check = None;
    assert!(violations(&config).contains(&pair("health-check/hc", "check")));
}

#[test]
fn hashing_policies_need_a_hash_key() {
    let mut config = valid();
    config.upstreams[0].load_balancing = LoadBalancingPolicy::Maglev as i32;
    assert_eq!(violations(&config), vec![pair("upstream/web", "hash_on")]);
    config.upstreams[0].hash_on = Some(crate::v1::HashOn {
        source: Some(hash_on::Source::Header("x user".into())),
    });
    assert_eq!(
        violations(&config),
        vec![pair("upstream/web", "hash_on.header")]
    );
    config.upstreams[0].hash_on = Some(crate::v1::HashOn {
        source: Some(hash_on::Source::ClientIp(true)),
    });
    assert_eq!(violations(&config), vec![]);
    config.upstreams[0].load_balancing = LoadBalancingPolicy::RoundRobin as i32;
    assert_eq!(violations(&config), vec![pair("upstream/web", "hash_on")]);
}

#[test]
fn retry_and_outlier_settings_are_checked() {
    let mut config = valid();
    config.routes[0].timeout_ms = 1000;
    config.routes[0].retry = Some(crate::v1::RetryPolicy {
        attempts: 11,
        on: vec![RetryOn::Status503 as i32, 0],
        per_try_timeout_ms: 2000,
        budget_percent: 150,
    });
    config.upstreams[0].outlier_detection = Some(crate::v1::OutlierDetection {
        consecutive_5xx: 3,
        max_ejected_percent: 101,
        ..Default::default()
    });
    assert_eq!(
        violations(&config),
        vec![
            pair("upstream/web", "outlier_detection.base_ejection_ms"),
            pair("upstream/web", "outlier_detection.max_ejected_percent"),
            pair("route/web-root", "retry.attempts"),
            pair("route/web-root", "retry.on[1]"),
            pair("route/web-root", "retry.per_try_timeout_ms"),
            pair("route/web-root", "retry.budget_percent"),
        ]
    );
}

#[test]
fn upstream_tls_and_protocol_are_checked() {
    let mut config = valid();
    config.upstreams[0].protocol = 9;
    config.upstreams[0].tls = Some(crate::v1::UpstreamTls {
        enabled: true,
        sni: "Not A Name".into(),
        ca_pem: "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n".into(),
        client_certificate: "missing".into(),
    });
    assert_eq!(
        violations(&config),
        vec![
            pair("upstream/web", "protocol"),
            pair("upstream/web", "tls.sni"),
            pair("upstream/web", "tls.ca_pem"),
            pair("upstream/web", "tls.client_certificate"),
        ]
    );
    config.upstreams[0].protocol = crate::v1::UpstreamProtocol::Http2 as i32;
    config.upstreams[0].tls = Some(crate::v1::UpstreamTls {
        enabled: false,
        sni: "api.internal".into(),
        ..Default::default()
    });
    assert_eq!(
        violations(&config),
        vec![pair("upstream/web", "tls.enabled")]
    );
    config.upstreams[0].tls = Some(crate::v1::UpstreamTls {
        enabled: true,
        sni: "api.internal".into(),
        ..Default::default()
    });
    assert_eq!(violations(&config), vec![]);
}

#[test]
fn certificates_need_pem_and_valid_unique_names() {
    let mut config = valid();
    config.certificates = vec![
        crate::v1::Certificate {
            name: "a".into(),
            certificate_pem: "not pem".into(),
            private_key_pem: String::new(),
            sni: vec!["api.example.com".into(), "*.*.bad".into()],
            ..Default::default()
        },
        crate::v1::Certificate {
            name: "b".into(),
            certificate_pem: String::new(),
            private_key_pem: "garbage".into(),
            sni: vec!["api.example.com".into()],
            ..Default::default()
        },
    ];
    assert_eq!(
        violations(&config),
        vec![
            pair("certificate/a", "certificate_pem"),
            pair("certificate/a", "private_key_pem"),
            pair("certificate/a", "sni[1]"),
            pair("certificate/b", "certificate_pem"),
            pair("certificate/b", "private_key_pem"),
            pair("certificate/b", "sni[0]"),
        ]
    );
}
