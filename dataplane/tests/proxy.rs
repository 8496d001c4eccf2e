//! The proxy end to end: a real listener, real upstreams, configs applied as the control plane would.
#![allow(clippy::unwrap_used, reason = "test helpers: a failure should panic")]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use gateway_proto::v1::{Config, HashOn, Header, HeaderRewrite, LoadBalancingPolicy, hash_on};
use http::StatusCode;
use support::{Harness, TestBackend, backend, closed_address, route, upstream};

#[tokio::test]
async fn forwards_with_forwarding_headers_edits_and_round_robin() {
    let (a, b) = (backend("a").await, backend("b").await);
    let harness = Harness::start().await;
    let mut api = route("api", &["api.example.com"], "/", "api");
    api.request_headers = Some(HeaderRewrite {
        set: vec![Header {
            name: "host".into(),
            value: "api.internal".into(),
        }],
        remove: vec!["x-debug".into()],
    });
    harness
        .apply(
            1,
            Config {
                upstreams: vec![upstream("api", &[a.to_string(), b.to_string()])],
                routes: vec![api],
                health_checks: vec![],
                certificates: vec![],
            },
        )
        .await;

    let (status, headers, echo) = harness
        .send("API.example.com:8080", "/v1/items?x=1", "hello")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["uri"], "/v1/items?x=1");
    assert_eq!(echo["body"], "hello");
    let sent = &echo["headers"];
    assert_eq!(sent["host"], "api.internal");
    assert_eq!(sent["x-forwarded-host"], "API.example.com:8080");
    assert_eq!(sent["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(sent["x-forwarded-proto"], "http");
    assert_eq!(sent["via"], "1.1 gateway");
    assert!(sent.get("x-debug").is_none(), "removed by the route");
    assert!(sent.get("x-drop-me").is_none(), "listed in Connection");
    assert!(
        headers.get("x-hop").is_none(),
        "hop-by-hop on the way back too"
    );
    assert_eq!(headers["via"], "1.1 gateway");

    let mut seen = vec![headers["x-backend"].to_str().unwrap().to_string()];
    for _ in 0..3 {
        let (_, headers, _) = harness.send("api.example.com", "/", "").await;
        seen.push(headers["x-backend"].to_str().unwrap().to_string());
    }
    seen.sort();
    assert_eq!(seen, ["a", "a", "b", "b"]);
}

#[tokio::test]
async fn errors_become_404_502_504_and_503_before_any_config() {
    let live = backend("live").await;
    let dead = closed_address().await;
    let harness = Harness::start().await;

    let (status, _, body) = harness.send("x", "/", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "not ready");

    let mut slow = route("slow", &[], "/slow", "live");
    slow.timeout_ms = 200;
    harness
        .apply(
            1,
            Config {
                upstreams: vec![
                    upstream("live", &[live.to_string()]),
                    upstream("dead", &[dead.to_string()]),
                ],
                routes: vec![route("dead", &["dead.example.com"], "/", "dead"), slow],
                health_checks: vec![],
                certificates: vec![],
            },
        )
        .await;

    let (status, _, body) = harness.send("nowhere.example.com", "/x", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        serde_json::json!({"error": "no route", "host": "nowhere.example.com", "path": "/x"})
    );

    let (status, _, body) = harness.send("dead.example.com", "/", "").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["error"], "bad gateway");

    let started = std::time::Instant::now();
    let (status, _, _) = harness.send("any", "/slow", "").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_new_table_takes_effect_for_the_next_request() {
    let (a, b) = (backend("a").await, backend("b").await);
    let harness = Harness::start().await;
    let config = |address: SocketAddr| Config {
        upstreams: vec![upstream("web", &[address.to_string()])],
        routes: vec![route("web", &[], "/", "web")],
        health_checks: vec![],
        certificates: vec![],
    };
    harness.apply(1, config(a)).await;
    let (_, headers, _) = harness.send("h", "/", "").await;
    assert_eq!(headers["x-backend"], "a");
    harness.apply(2, config(b)).await;
    let (_, headers, _) = harness.send("h", "/", "").await;
    assert_eq!(headers["x-backend"], "b");
}

#[tokio::test]
async fn consistent_hashing_keeps_each_key_on_one_target() {
    let backends = [backend("a").await, backend("b").await, backend("c").await];
    let addresses: Vec<String> = backends.iter().map(ToString::to_string).collect();
    let harness = Harness::start().await;
    for (version, policy) in [
        (1, LoadBalancingPolicy::RingHash),
        (2, LoadBalancingPolicy::Maglev),
    ] {
        let mut web = upstream("web", &addresses);
        web.load_balancing = policy as i32;
        web.hash_on = Some(HashOn {
            source: Some(hash_on::Source::Header("x-user".into())),
        });
        harness
            .apply(
                version,
                Config {
                    upstreams: vec![web],
                    routes: vec![route("web", &[], "/", "web")],
                    health_checks: vec![],
                    certificates: vec![],
                },
            )
            .await;
        let mut seen = std::collections::BTreeSet::new();
        for user in 0..30 {
            let user = format!("user-{user}");
            let mut of_user = std::collections::BTreeSet::new();
            for _ in 0..3 {
                let (status, headers, _) =
                    harness.send_with("h", "/", "", &[("x-user", &user)]).await;
                assert_eq!(status, StatusCode::OK);
                of_user.insert(headers["x-backend"].to_str().unwrap().to_string());
            }
            assert_eq!(of_user.len(), 1, "{policy:?}: {user} went to {of_user:?}");
            seen.extend(of_user);
        }
        assert_eq!(seen.len(), 3, "{policy:?}: 30 keys reach every target");
        // Without the key: a random pick, never an error.
        let (status, _, _) = harness.send("h", "/", "").await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn random_and_least_request_reach_every_target() {
    let (a, b) = (backend("a").await, backend("b").await);
    let harness = Harness::start().await;
    for (version, policy) in [
        (1, LoadBalancingPolicy::Random),
        (2, LoadBalancingPolicy::LeastRequest),
    ] {
        let mut web = upstream("web", &[a.to_string(), b.to_string()]);
        web.load_balancing = policy as i32;
        harness
            .apply(
                version,
                Config {
                    upstreams: vec![web],
                    routes: vec![route("web", &[], "/", "web")],
                    health_checks: vec![],
                    certificates: vec![],
                },
            )
            .await;
        let seen: std::collections::BTreeSet<String> =
            harness.backends(40).await.into_iter().collect();
        assert_eq!(seen.len(), 2, "{policy:?}");
    }
}

#[tokio::test]
async fn traffic_is_counted_by_route_and_upstream_and_status_class() {
    let live = TestBackend::start("live").await;
    let dead = closed_address().await;
    let harness = Harness::start().await;
    harness
        .apply(
            1,
            Config {
                upstreams: vec![
                    upstream("live", &[live.address.to_string()]),
                    upstream("dead", &[dead.to_string()]),
                ],
                routes: vec![
                    route("dead", &["dead.example.com"], "/", "dead"),
                    route("live", &["h"], "/", "live"),
                ],
                health_checks: vec![],
                certificates: vec![],
            },
        )
        .await;
    harness.send("h", "/", "12345").await;
    harness.send("h", "/", "").await;
    live.fail_with
        .store(503, std::sync::atomic::Ordering::Relaxed);
    harness.send("h", "/", "").await;
    assert_eq!(
        harness.send("dead.example.com", "/", "").await.0,
        StatusCode::BAD_GATEWAY
    );
    harness.send("nowhere", "/nothing", "").await;

    let (routes, upstreams) = harness.gateway.metrics().take_traffic();
    let names: Vec<&str> = routes.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["dead", "live"],
        "only routes with traffic; no route, no counters"
    );
    assert_eq!(routes[1].status_classes, [0, 2, 0, 0, 1, 0]);
    assert_eq!(routes[1].bytes_in, 5);
    assert!(routes[1].bytes_out > 0);
    assert_eq!(
        routes[0].status_classes,
        [0, 0, 0, 0, 0, 1],
        "the gateway's own 502 has no upstream status"
    );
    assert_eq!(upstreams.len(), 2);
    assert_eq!(upstreams[1].status_classes, routes[1].status_classes);
    let (routes, _) = harness.gateway.metrics().take_traffic();
    assert!(routes.is_empty(), "taken: the next report starts from zero");
}
