//! Traffic through the data plane: balancing, forwarded headers, changes, and failures.

use std::collections::HashMap;
use std::time::Duration;

use gateway_tests::{Gateway, TestUpstream, dead_address};
use http::{Method, StatusCode};
use serde_json::json;

use crate::{ROUTE_CHANGE, SOON, health_check_json, route_json, route_to, upstream_json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_both_targets_in_turn() {
    let gw = Gateway::start(1).await;
    let (a, b) = (
        TestUpstream::start("upstream-a").await,
        TestUpstream::start("upstream-b").await,
    );
    route_to(&gw.cp, "web-root", "rr.local", "web", &[&a, &b]).await;
    gw.dp()
        .wait_for_response(SOON, "rr.local", "/", StatusCode::OK, None)
        .await;

    let mut bodies = Vec::new();
    for _ in 0..10 {
        let response = gw.dp().get("rr.local", "/items").await.unwrap();
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        bodies.push(response.text());
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for body in &bodies {
        *counts.entry(body.as_str()).or_default() += 1;
    }
    assert_eq!(counts.get("upstream-a"), Some(&5), "bodies: {bodies:?}");
    assert_eq!(counts.get("upstream-b"), Some(&5), "bodies: {bodies:?}");
    assert_eq!(a.last_request().unwrap().path, "/items");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_reach_the_upstream() {
    let gw = Gateway::start(1).await;
    let upstream = TestUpstream::start("upstream-a").await;
    route_to(&gw.cp, "fwd", "fwd.local", "web", &[&upstream]).await;
    gw.dp()
        .wait_for_response(SOON, "fwd.local", "/", StatusCode::OK, Some("upstream-a"))
        .await;

    let seen = upstream.last_request().unwrap();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("127.0.0.1"),
        "{seen:?}"
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"), "{seen:?}");
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some("fwd.local"),
        "{seen:?}"
    );
    assert!(seen.header("via").is_some(), "no Via header: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_changes_take_effect_without_a_restart() {
    let mut gw = Gateway::start(1).await;
    let (a, b) = (
        TestUpstream::start("upstream-a").await,
        TestUpstream::start("upstream-b").await,
    );
    route_to(&gw.cp, "site-a", "a.local", "pool-a", &[&a]).await;
    gw.dp()
        .wait_for_response(SOON, "a.local", "/", StatusCode::OK, Some("upstream-a"))
        .await;
    let pid = gw.dp().pid();

    // A new route.
    route_to(&gw.cp, "site-b", "b.local", "pool-b", &[&b]).await;
    gw.dp()
        .wait_for_response(
            ROUTE_CHANGE,
            "b.local",
            "/",
            StatusCode::OK,
            Some("upstream-b"),
        )
        .await;

    // A changed route.
    let response = gw
        .cp
        .rest(
            Method::PUT,
            "/v1/routes/site-a",
            Some(&route_json("site-a", "a.local", "/", "pool-b")),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    gw.dp()
        .wait_for_response(
            ROUTE_CHANGE,
            "a.local",
            "/",
            StatusCode::OK,
            Some("upstream-b"),
        )
        .await;

    // A deleted route.
    let response = gw.cp.rest(Method::DELETE, "/v1/routes/site-b", None).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    gw.dp()
        .wait_for_response(ROUTE_CHANGE, "b.local", "/", StatusCode::NOT_FOUND, None)
        .await;

    gw.dps[0].assert_running();
    assert_eq!(gw.dp().pid(), pid, "the data plane was restarted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_404_and_a_dead_target_is_502() {
    let gw = Gateway::start(1).await;
    let dead = dead_address();
    gw.cp
        .create("upstreams", upstream_json("dead", &[(dead, 1)]))
        .await;
    gw.cp
        .create("routes", route_json("to-dead", "dead.local", "/", "dead"))
        .await;
    gw.converge().await;

    let response = gw
        .dp()
        .wait_for_response(SOON, "dead.local", "/", StatusCode::BAD_GATEWAY, None)
        .await;
    assert!(!response.body.is_empty(), "502 without a body");

    let response = gw.dp().get("nowhere.local", "/").await.unwrap();
    assert_eq!(
        response.status,
        StatusCode::NOT_FOUND,
        "{}",
        response.text()
    );
    assert!(
        response.content_type().contains("json"),
        "404 content type {:?}",
        response.content_type()
    );
    response.json().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_times_out_with_504() {
    let gw = Gateway::start(1).await;
    let slow = TestUpstream::start("slow").await;
    slow.set_delay(Duration::from_secs(5));
    gw.cp
        .create("upstreams", upstream_json("slow", &[(slow.address(), 1)]))
        .await;
    let mut route = route_json("slow", "slow.local", "/", "slow");
    route["timeout_ms"] = json!(300);
    gw.cp.create("routes", route).await;
    gw.converge().await;

    let response = gw.dp().get("slow.local", "/").await.unwrap();
    assert_eq!(
        response.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        response.text()
    );
    assert_eq!(slow.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_target_gets_no_traffic_until_it_recovers() {
    let gw = Gateway::start(1).await;
    let (a, b) = (
        TestUpstream::start("upstream-a").await,
        TestUpstream::start("upstream-b").await,
    );
    let (interval, timeout) = (Duration::from_millis(200), Duration::from_millis(100));
    gw.cp
        .create(
            "health-checks",
            health_check_json("hc", interval, timeout, 1, 1),
        )
        .await;
    let mut upstream = upstream_json("web", &[(a.address(), 1), (b.address(), 1)]);
    upstream["health_check"] = json!("hc");
    gw.cp.create("upstreams", upstream).await;
    gw.cp
        .create("routes", route_json("web", "hc.local", "/", "web"))
        .await;
    b.set_health_status(500);
    gw.converge().await;

    // Once b is found unhealthy, every request goes to a.
    gateway_tests::eventually(SOON, || async {
        for _ in 0..6 {
            let body = gw.dp().get("hc.local", "/").await?.text();
            anyhow::ensure!(body == "upstream-a", "a request went to {body:?}");
        }
        Ok(())
    })
    .await;
    assert!(b.health_probe_count() > 0, "b was never probed");

    b.set_health_status(200);
    gateway_tests::eventually(SOON, || async {
        let body = gw.dp().get("hc.local", "/").await?.text();
        anyhow::ensure!(
            body == "upstream-b",
            "waiting for traffic to b, got {body:?}"
        );
        Ok(())
    })
    .await;
}
