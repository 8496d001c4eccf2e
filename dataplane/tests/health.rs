//! Active health checks end to end: HTTP, TCP and gRPC probes against real targets, what they
//! do to traffic, and the reason and time they record.
#![allow(clippy::unwrap_used, reason = "test helpers: a failure should panic")]

mod support;

use std::time::{Duration, SystemTime};

use gateway_proto::v1::{
    AllUnhealthyPolicy, Config, GrpcHealthCheck, HttpHealthCheck, OutlierDetection, TcpHealthCheck,
    health_check_policy,
};
use http::StatusCode;
use support::{
    Harness, TestBackend, closed_address, eventually, grpc_health_target, health_of, health_policy,
    http_check, route, upstream,
};
use tonic_health::ServingStatus;

/// Far above any interval × threshold used here: only a hang fails.
const CEILING: Duration = Duration::from_secs(10);

fn config(addresses: &[String], check: health_check_policy::Check) -> Config {
    let mut web = upstream("web", addresses);
    web.health_check = "hc".into();
    Config {
        upstreams: vec![web],
        routes: vec![route("web", &[], "/", "web")],
        health_checks: vec![health_policy("hc", check)],
        certificates: vec![],
    }
}

#[tokio::test]
async fn an_http_check_takes_a_failing_target_out_and_brings_it_back() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let harness = Harness::start().await;
    let check = health_check_policy::Check::Http(HttpHealthCheck {
        path: "/healthz".into(),
        method: "HEAD".into(),
        host: "health.internal".into(),
        ..Default::default()
    });
    harness
        .apply(
            1,
            config(&[a.address.to_string(), b.address.to_string()], check),
        )
        .await;
    let b_address = b.address.to_string();

    b.health.store(500, std::sync::atomic::Ordering::Relaxed);
    let down = eventually(CEILING, "b fails its checks", || async {
        health_of(&harness.gateway, &b_address).filter(|h| !h.passing_checks)
    })
    .await;
    assert_eq!(down.reason, "status 500");
    assert!(!down.ejected);
    assert!(down.since <= SystemTime::now());
    assert_eq!(harness.backends(6).await, ["a"; 6], "no traffic to b");
    assert!(
        b.probes().iter().all(|p| p == "HEAD health.internal"),
        "the policy's method and Host: {:?}",
        b.probes()
    );

    b.health.store(200, std::sync::atomic::Ordering::Relaxed);
    let up = eventually(CEILING, "b passes again", || async {
        health_of(&harness.gateway, &b_address).filter(|h| h.passing_checks)
    })
    .await;
    assert_eq!(up.reason, "status 200");
    assert!(up.since > down.since);
    let mut seen = harness.backends(4).await;
    seen.sort();
    assert_eq!(seen, ["a", "a", "b", "b"]);
}

#[tokio::test]
async fn a_tcp_check_finds_a_closed_port() {
    let live = TestBackend::start("live").await;
    let dead = closed_address().await.to_string();
    let harness = Harness::start().await;
    let check = health_check_policy::Check::Tcp(TcpHealthCheck {});
    harness
        .apply(1, config(&[live.address.to_string(), dead.clone()], check))
        .await;
    let down = eventually(CEILING, "the closed port fails", || async {
        health_of(&harness.gateway, &dead).filter(|h| !h.passing_checks)
    })
    .await;
    assert_eq!(down.reason, "connection refused");
    assert!(
        health_of(&harness.gateway, &live.address.to_string())
            .unwrap()
            .passing_checks
    );
    let (status, headers, _) = harness.send("h", "/", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-backend"], "live");
}

#[tokio::test]
async fn a_grpc_check_follows_the_serving_status() {
    let (address, reporter) = grpc_health_target().await;
    let address = address.to_string();
    let harness = Harness::start().await;
    reporter
        .set_service_status("items", ServingStatus::Serving)
        .await;
    let check = health_check_policy::Check::Grpc(GrpcHealthCheck {
        service: "items".into(),
    });
    harness
        .apply(1, config(std::slice::from_ref(&address), check))
        .await;

    reporter
        .set_service_status("items", ServingStatus::NotServing)
        .await;
    let down = eventually(CEILING, "NOT_SERVING fails", || async {
        health_of(&harness.gateway, &address).filter(|h| !h.passing_checks)
    })
    .await;
    assert_eq!(down.reason, "grpc NOT_SERVING");

    reporter
        .set_service_status("items", ServingStatus::Serving)
        .await;
    let up = eventually(CEILING, "SERVING passes", || async {
        health_of(&harness.gateway, &address).filter(|h| h.passing_checks)
    })
    .await;
    assert_eq!(up.reason, "grpc SERVING");
}

#[tokio::test]
async fn probes_start_and_stop_with_their_targets() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let harness = Harness::start().await;
    let both = [a.address.to_string(), b.address.to_string()];
    harness.apply(1, config(&both, http_check())).await;
    eventually(CEILING, "b is probed", || async {
        (b.probes().len() >= 2).then_some(())
    })
    .await;

    // b leaves the upstream: its probe stops and it is no longer reported.
    harness.apply(2, config(&both[..1], http_check())).await;
    assert!(health_of(&harness.gateway, &both[1]).is_none());
    let after_removal = b.probes().len();
    let a_probes = a.probes().len();
    eventually(CEILING, "a is still probed", || async {
        (a.probes().len() >= a_probes + 3).then_some(())
    })
    .await;
    assert!(
        b.probes().len() <= after_removal + 1,
        "at most a check already under way finishes"
    );
}

#[tokio::test]
async fn an_unrelated_change_keeps_a_targets_health() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let harness = Harness::start().await;
    let both = [a.address.to_string(), b.address.to_string()];
    let config = config(&both, http_check());
    b.health.store(503, std::sync::atomic::Ordering::Relaxed);
    harness.apply(1, config.clone()).await;
    let down = eventually(CEILING, "b fails its checks", || async {
        health_of(&harness.gateway, &both[1]).filter(|h| !h.passing_checks)
    })
    .await;

    let mut changed = config;
    changed.routes[0].priority = 1;
    harness.apply(2, changed).await;
    assert_eq!(
        health_of(&harness.gateway, &both[1]),
        Some(down),
        "kept, reason and time too"
    );
    assert_eq!(harness.backends(4).await, ["a"; 4]);
}

#[tokio::test]
async fn a_target_failing_in_a_row_is_ejected_and_returns_after_the_ejection() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let harness = Harness::start().await;
    let mut web = upstream("web", &[a.address.to_string(), b.address.to_string()]);
    web.outlier_detection = Some(OutlierDetection {
        consecutive_5xx: 3,
        base_ejection_ms: 300,
        ..Default::default()
    });
    harness
        .apply(
            1,
            Config {
                upstreams: vec![web],
                routes: vec![route("web", &[], "/", "web")],
                health_checks: vec![],
                certificates: vec![],
            },
        )
        .await;
    let b_address = b.address.to_string();
    assert!(!health_of(&harness.gateway, &b_address).unwrap().ejected);

    b.fail_with.store(500, std::sync::atomic::Ordering::Relaxed);
    let ejected = eventually(CEILING, "b is ejected", || async {
        harness.send("h", "/", "").await;
        health_of(&harness.gateway, &b_address).filter(|h| h.ejected)
    })
    .await;
    assert_eq!(ejected.reason, "3 consecutive 5xx");
    assert!(
        ejected.passing_checks,
        "ejection is not an active-check verdict"
    );
    let served = b.requests();
    let (status, headers, _) = harness.send("h", "/", "").await;
    assert_eq!(
        (status, &headers["x-backend"]),
        (StatusCode::OK, &"a".parse().unwrap())
    );
    assert_eq!(b.requests(), served, "no traffic to an ejected target");

    b.fail_with.store(0, std::sync::atomic::Ordering::Relaxed);
    let returned = eventually(CEILING, "b returns after its ejection", || async {
        health_of(&harness.gateway, &b_address).filter(|h| !h.ejected)
    })
    .await;
    assert!(
        returned.reason.starts_with("ejection of"),
        "{}",
        returned.reason
    );
    eventually(CEILING, "b serves again", || async {
        let seen = harness.backends(4).await;
        seen.contains(&"b".to_string()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn with_every_target_down_fail_fast_answers_503_and_panic_uses_them_all() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let harness = Harness::start().await;
    let both = [a.address.to_string(), b.address.to_string()];
    a.health.store(500, std::sync::atomic::Ordering::Relaxed);
    b.health.store(500, std::sync::atomic::Ordering::Relaxed);
    let mut fail_fast = config(&both, http_check());
    fail_fast.health_checks[0].interval_ms = 400;
    fail_fast.health_checks[0].timeout_ms = 100;
    fail_fast.health_checks[0].unhealthy_threshold = 1;
    harness.apply(1, fail_fast.clone()).await;

    let (headers, body) = eventually(CEILING, "both fail and requests get 503", || async {
        let (status, headers, body) = harness.send("h", "/", "").await;
        (status == StatusCode::SERVICE_UNAVAILABLE).then_some((headers, body))
    })
    .await;
    assert_eq!(
        headers["retry-after"], "1",
        "interval 400 ms × 2 successes, in whole seconds"
    );
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body["error"], "no healthy targets");
    assert_eq!(body["retry_after_seconds"], 1);

    let mut panic = fail_fast;
    panic.upstreams[0].all_unhealthy = AllUnhealthyPolicy::Panic as i32;
    harness.apply(2, panic).await;
    assert!(health_of(&harness.gateway, &both[0]).is_some_and(|h| !h.passing_checks));
    let mut seen = harness.backends(4).await;
    seen.sort();
    assert_eq!(
        seen,
        ["a", "a", "b", "b"],
        "panic mode spreads over every target"
    );
}
