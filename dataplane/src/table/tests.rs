use gateway_proto::v1::{
    AllUnhealthyPolicy, Config, HashOn, Header, HeaderRewrite, HttpHealthCheck,
    LoadBalancingPolicy, Route, RouteMatch, Target as WireTarget, Upstream, hash_on,
    route_match::Path,
};
use http::Method;

use super::*;

fn upstream(name: &str, targets: &[(&str, u32)]) -> Upstream {
    Upstream {
        name: name.into(),
        targets: targets
            .iter()
            .map(|(address, weight)| WireTarget {
                address: (*address).into(),
                weight: *weight,
            })
            .collect(),
        ..Default::default()
    }
}

fn route(name: &str, hosts: &[&str], path: Path, upstream: &str) -> Route {
    Route {
        name: name.into(),
        r#match: Some(RouteMatch {
            hosts: hosts.iter().map(|h| (*h).into()).collect(),
            path: Some(path),
            methods: vec![],
        }),
        upstream: upstream.into(),
        ..Default::default()
    }
}

fn sample() -> Config {
    let mut api = route("api", &["api.example.com"], Path::Prefix("/".into()), "api");
    api.timeout_ms = 1500;
    api.request_headers = Some(HeaderRewrite {
        set: vec![Header {
            name: "host".into(),
            value: "api.internal".into(),
        }],
        remove: vec!["x-debug".into()],
    });
    Config {
        upstreams: vec![
            upstream("api", &[("10.0.0.1:80", 1), ("10.0.0.2:80", 1)]),
            upstream("web", &[("web.internal:8080", 1)]),
        ],
        routes: vec![api, route("web", &[], Path::Prefix("/".into()), "web")],
        health_checks: vec![],
        certificates: vec![],
    }
}

#[test]
fn compiled_table_routes_to_upstreams_with_defaults_and_edits() {
    let table = compile(&sample()).unwrap();
    let (route, upstream) = table.find("api.example.com", "/x", &Method::GET).unwrap();
    assert_eq!(route.name, "api");
    assert_eq!(route.timeout, Duration::from_millis(1500));
    assert_eq!(route.request_headers.set[0].0, http::header::HOST);
    assert_eq!(route.request_headers.remove[0], "x-debug");
    assert_eq!(upstream.name, "api");
    assert_eq!(upstream.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    let picks: Vec<&str> = (0..4).map(|_| next(upstream)).collect();
    assert_eq!(
        picks,
        ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.1:80", "10.0.0.2:80"]
    );

    let (route, upstream) = table.find("other", "/", &Method::POST).unwrap();
    assert_eq!(route.name, "web");
    assert_eq!(route.timeout, DEFAULT_RESPONSE_TIMEOUT);
    assert_eq!(upstream.targets[0].authority.port_u16(), Some(8080));
    assert_eq!(table.route_names().collect::<Vec<_>>(), ["api", "web"]);
}

#[test]
fn compile_reports_every_problem() {
    let mut config = sample();
    config
        .routes
        .push(route("dangling", &[], Path::Exact("/x".into()), "missing"));
    config.routes.push(Route {
        name: "no-match".into(),
        upstream: "web".into(),
        ..Default::default()
    });
    config
        .upstreams
        .push(upstream("bad", &[("not an address", 1)]));
    let errors = compile(&config).unwrap_err();
    let fields: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e.resource.as_str(), e.field.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("upstream/bad", "targets[0].address"),
            ("route/dangling", "upstream"),
            ("route/no-match", "match"),
        ]
    );
}

#[test]
fn empty_config_compiles_to_an_empty_table() {
    let table = compile(&Config::default()).unwrap();
    assert!(table.find("h", "/", &Method::GET).is_none());
}

/// The next target without a request key or earlier tries.
fn next(pool: &UpstreamPool) -> &str {
    pool.pick(None, &Tried::default())
        .unwrap()
        .1
        .address
        .as_str()
}

#[test]
fn round_robin_position_survives_an_unrelated_change() {
    let carried = crate::state::CarriedState::default();
    let mut first = compile(&sample()).unwrap();
    carried.adopt(&mut first);
    let (_, api) = first.find("api.example.com", "/", &Method::GET).unwrap();
    assert_eq!(next(api), "10.0.0.1:80");

    let mut changed = sample();
    changed.routes[1].priority = 5;
    let mut second = compile(&changed).unwrap();
    carried.adopt(&mut second);
    let (_, api) = second.find("api.example.com", "/", &Method::GET).unwrap();
    assert_eq!(next(api), "10.0.0.2:80");
    assert!(
        Arc::ptr_eq(&api.targets[0].state, &first.upstreams[0].targets[0].state),
        "a kept target keeps its state"
    );
}

#[test]
fn requests_in_flight_and_health_survive_an_unrelated_change() {
    let carried = crate::state::CarriedState::default();
    let mut first = compile(&sample()).unwrap();
    carried.adopt(&mut first);
    let (_, api) = first.find("api.example.com", "/", &Method::GET).unwrap();
    let in_flight = api.targets[1].state.start_request();
    api.targets[0].state.record_check(false, "status 500");
    let health = api.targets[0].state.health();

    let mut changed = sample();
    changed.routes[1].priority = 5;
    changed.upstreams[1].targets[0].weight = 2;
    let mut second = compile(&changed).unwrap();
    carried.adopt(&mut second);
    let (_, api) = second.find("api.example.com", "/", &Method::GET).unwrap();
    assert_eq!(api.targets[1].state.in_flight(), 1);
    assert_eq!(
        api.targets[0].state.health(),
        health,
        "reason and since too"
    );
    assert_eq!(next(api), "10.0.0.2:80");
    drop(in_flight);
    assert_eq!(api.targets[1].state.in_flight(), 0, "ends in the new table");

    // A target that leaves and comes back starts afresh.
    let mut without = sample();
    without.upstreams[0].targets.remove(0);
    carried.adopt(&mut compile(&without).unwrap());
    let mut third = compile(&changed).unwrap();
    carried.adopt(&mut third);
    let (_, api) = third.find("api.example.com", "/", &Method::GET).unwrap();
    assert!(api.targets[0].is_usable());
}

#[test]
fn unusable_targets_are_skipped_and_none_usable_means_none() {
    let table = compile(&sample()).unwrap();
    let (_, api) = table.find("api.example.com", "/", &Method::GET).unwrap();
    api.targets[0].state.record_check(false, "status 500");
    for _ in 0..4 {
        assert_eq!(next(api), "10.0.0.2:80");
    }
    api.targets[1].state.record_check(false, "timeout");
    assert_eq!(
        api.pick(None, &Tried::default()).unwrap_err(),
        NoTarget::AllUnhealthy {
            retry_after: DEFAULT_RETRY_AFTER
        }
    );
}

#[test]
fn in_panic_mode_all_unhealthy_means_any_target() {
    let mut config = sample();
    config.upstreams[0].all_unhealthy = AllUnhealthyPolicy::Panic as i32;
    let table = compile(&config).unwrap();
    let (_, api) = table.find("api.example.com", "/", &Method::GET).unwrap();
    api.targets[0].state.record_check(false, "timeout");
    assert_eq!(
        next(api),
        "10.0.0.2:80",
        "the healthy one while there is one"
    );
    api.targets[1].state.record_check(false, "timeout");
    let mut seen: Vec<&str> = (0..4).map(|_| next(api)).collect();
    seen.sort();
    assert_eq!(
        seen,
        ["10.0.0.1:80", "10.0.0.1:80", "10.0.0.2:80", "10.0.0.2:80"]
    );
    let mut tried = Tried::default();
    tried.insert(0);
    assert_eq!(
        api.pick(None, &tried).unwrap().0,
        1,
        "a retry still avoids the tried one"
    );
}

#[test]
fn retry_after_is_when_a_target_could_be_back() {
    use gateway_proto::v1::{HealthCheckPolicy, OutlierDetection, health_check_policy};
    let retry_after = |config: &Config| {
        let table = compile(config).unwrap();
        match table.upstreams().next().unwrap().all_unhealthy {
            AllUnhealthy::FailFast { retry_after } => retry_after,
            AllUnhealthy::Panic => panic!("fail fast is the default"),
        }
    };
    let mut config = sample();
    assert_eq!(retry_after(&config), DEFAULT_RETRY_AFTER);
    config.upstreams[0].outlier_detection = Some(OutlierDetection {
        consecutive_5xx: 5,
        base_ejection_ms: 30_000,
        ..Default::default()
    });
    assert_eq!(retry_after(&config), Duration::from_secs(30));
    config.health_checks.push(HealthCheckPolicy {
        name: "hc".into(),
        check: Some(health_check_policy::Check::Http(HttpHealthCheck {
            path: "/".into(),
            ..Default::default()
        })),
        interval_ms: 700,
        timeout_ms: 100,
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        ..Default::default()
    });
    config.upstreams[0].health_check = "hc".into();
    assert_eq!(
        retry_after(&config),
        Duration::from_secs(2),
        "1.4 s rounds up"
    );
}

#[test]
fn a_retry_avoids_tried_targets_while_others_are_usable() {
    let mut config = sample();
    config.upstreams[0].targets.push(WireTarget {
        address: "10.0.0.3:80".into(),
        weight: 1,
    });
    for policy in [
        LoadBalancingPolicy::RoundRobin,
        LoadBalancingPolicy::Random,
        LoadBalancingPolicy::LeastRequest,
        LoadBalancingPolicy::RingHash,
        LoadBalancingPolicy::Maglev,
    ] {
        config.upstreams[0].load_balancing = policy as i32;
        config.upstreams[0].hash_on = matches!(
            policy,
            LoadBalancingPolicy::RingHash | LoadBalancingPolicy::Maglev
        )
        .then(|| HashOn {
            source: Some(hash_on::Source::Path(true)),
        });
        let table = compile(&config).unwrap();
        let (_, api) = table.find("api.example.com", "/", &Method::GET).unwrap();
        for key in [None, Some(42)] {
            let mut tried = Tried::default();
            let mut seen = Vec::new();
            for _ in 0..3 {
                let (index, _) = api.pick(key, &tried).unwrap();
                tried.insert(index);
                seen.push(index);
            }
            seen.sort();
            assert_eq!(seen, [0, 1, 2], "{policy:?}: each try a new target");
            assert!(api.pick(key, &tried).is_ok(), "then tried ones again");
        }
    }
}

#[test]
fn hashing_policies_compile_with_their_key() {
    let mut config = sample();
    config.upstreams[0].load_balancing = LoadBalancingPolicy::Maglev as i32;
    config.upstreams[0].hash_on = Some(HashOn {
        source: Some(hash_on::Source::Cookie("session".into())),
    });
    let table = compile(&config).unwrap();
    let (_, api) = table.find("api.example.com", "/", &Method::GET).unwrap();
    assert_eq!(api.balancer.policy(), crate::balance::Policy::Maglev);
    assert_eq!(
        api.hash_key,
        Some(crate::balance::HashKey::Cookie("session".into()))
    );

    config.upstreams[0].hash_on = None;
    let errors = compile(&config).unwrap_err();
    assert_eq!(errors[0].field, "hash_on");
}

#[test]
fn health_check_policies_compile_with_defaults() {
    use crate::health::{Check, HttpCheck};
    use gateway_proto::v1::{
        GrpcHealthCheck, HealthCheckPolicy, TcpHealthCheck, health_check_policy,
    };

    let policy = |name: &str, check| HealthCheckPolicy {
        name: name.into(),
        check: Some(check),
        interval_ms: 1000,
        timeout_ms: 200,
        healthy_threshold: 2,
        unhealthy_threshold: 3,
        ..Default::default()
    };
    let mut config = sample();
    config.health_checks = vec![
        policy(
            "http",
            health_check_policy::Check::Http(HttpHealthCheck {
                path: "/healthz".into(),
                ..Default::default()
            }),
        ),
        policy("tcp", health_check_policy::Check::Tcp(TcpHealthCheck {})),
        policy(
            "grpc",
            health_check_policy::Check::Grpc(GrpcHealthCheck {
                service: "api.v1.Items".into(),
            }),
        ),
    ];
    let mut checks = Vec::new();
    for name in ["http", "tcp", "grpc"] {
        config.upstreams[0].health_check = name.into();
        let table = compile(&config).unwrap();
        let (_, api) = table.find("api.example.com", "/", &Method::GET).unwrap();
        let policy = api.health_check.clone().unwrap();
        assert_eq!(policy.interval, Duration::from_secs(1));
        assert_eq!(policy.timeout, Duration::from_millis(200));
        assert_eq!(
            (policy.healthy_threshold, policy.unhealthy_threshold),
            (2, 3)
        );
        assert_eq!(policy.jitter_percent, 10, "0 means 10");
        checks.push(policy.check);
    }
    assert_eq!(
        checks,
        [
            Check::Http(HttpCheck {
                method: Method::GET,
                path: "/healthz".into(),
                host: None,
                expected_statuses: vec![],
            }),
            Check::Tcp,
            Check::Grpc {
                service: "api.v1.Items".into()
            },
        ]
    );
}

#[test]
fn retry_policies_and_connect_timeouts_compile_with_defaults() {
    use crate::retry::RetryOn;
    use gateway_proto::v1::{RetryOn as WireRetryOn, RetryPolicy as WirePolicy};

    let mut config = sample();
    config.routes[0].retry = Some(WirePolicy {
        attempts: 2,
        on: vec![WireRetryOn::Status503 as i32],
        per_try_timeout_ms: 300,
        budget_percent: 0,
    });
    config.routes[0].connect_timeout_ms = 250;
    config.routes[1].retry = Some(WirePolicy::default());
    let table = compile(&config).unwrap();
    let (api, _) = table.find("api.example.com", "/", &Method::GET).unwrap();
    let retry = api.retry.as_ref().unwrap();
    assert_eq!(retry.attempts, 2);
    assert!(retry.on.status(503) && !retry.on.connect_failure());
    assert_eq!(retry.per_try_timeout, Some(Duration::from_millis(300)));
    assert_eq!(retry.budget_percent, 20, "0 means 20");
    assert_eq!(api.connect_timeout, Some(Duration::from_millis(250)));

    let (web, _) = table.find("other", "/", &Method::GET).unwrap();
    assert!(
        web.retry.is_none(),
        "0 attempts: no retry policy, so no buffering"
    );
    assert_eq!(web.connect_timeout, None, "0 keeps the upstream's");
    assert_eq!(RetryOn::from_wire(&[]), RetryOn::DEFAULT);
}

#[test]
fn a_resolved_dns_target_becomes_one_target_per_address() {
    let mut config = sample();
    config.upstreams[1].targets = vec![
        WireTarget {
            address: "web.internal:8080".into(),
            weight: 3,
        },
        WireTarget {
            address: "10.0.0.9:8080".into(),
            weight: 1,
        },
    ];
    let resolutions = crate::dns::Resolutions::from([(
        "web.internal".to_string(),
        vec![
            "10.0.0.9".parse().unwrap(),
            "10.0.0.7".parse().unwrap(),
            "fd00::1".parse().unwrap(),
        ],
    )]);
    let table = compile_resolved(&config, &resolutions).unwrap();
    let (_, web) = table.find("other", "/", &Method::GET).unwrap();
    let targets: Vec<(&str, u32, &str)> = web
        .targets
        .iter()
        .map(|t| (t.address.as_str(), t.weight, t.origin.as_str()))
        .collect();
    assert_eq!(
        targets,
        [
            ("10.0.0.9:8080", 3, "web.internal:8080"),
            ("10.0.0.7:8080", 3, "web.internal:8080"),
            ("[fd00::1]:8080", 3, "web.internal:8080"),
        ],
        "each address with the name's weight; an address listed twice is one target"
    );
    assert_eq!(web.targets[2].authority.as_str(), "[fd00::1]:8080");

    let unresolved = compile(&config).unwrap();
    let (_, web) = unresolved.find("other", "/", &Method::GET).unwrap();
    assert_eq!(
        web.targets[0].address, "web.internal:8080",
        "as configured until resolved"
    );
}
