//! Retries and timeouts end to end: which failures are retried, where, within which time, and
//! with which bodies.
#![allow(clippy::unwrap_used, reason = "test helpers: a failure should panic")]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gateway_proto::v1::{self, Config, RetryPolicy, Route};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use support::{Harness, TestBackend, closed_address, eventually, route, upstream};

fn config(addresses: &[String], retry: Option<RetryPolicy>) -> Config {
    let mut web: Route = route("web", &[], "/", "web");
    web.retry = retry;
    Config {
        upstreams: vec![upstream("web", addresses)],
        routes: vec![web],
        health_checks: vec![],
        certificates: vec![],
    }
}

fn retry(attempts: u32, on: &[v1::RetryOn]) -> Option<RetryPolicy> {
    Some(RetryPolicy {
        attempts,
        on: on.iter().map(|&on| on as i32).collect(),
        ..Default::default()
    })
}

#[tokio::test]
async fn killing_one_of_three_targets_under_steady_traffic_is_invisible_to_clients() {
    let backends = [
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
    ];
    let addresses: Vec<String> = backends.iter().map(|b| b.address.to_string()).collect();
    let harness = Arc::new(Harness::start().await);
    // The default conditions: connect failures and resets.
    harness.apply(1, config(&addresses, retry(2, &[]))).await;

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for client in 0..4 {
        let (harness, stop, sent) = (harness.clone(), stop.clone(), sent.clone());
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                // GETs without a body, POSTs with a small (buffered) one.
                let (method, body) = if client % 2 == 0 {
                    (Method::GET, "")
                } else {
                    (Method::POST, "payload")
                };
                let (status, _, echo) = harness.request(method, "h", "/", body, &[]).await;
                if status != StatusCode::OK || echo["body"] != body {
                    failures.push((status, echo));
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }

    eventually(Duration::from_secs(20), "traffic flows", || async {
        (sent.load(Ordering::Relaxed) >= 100).then_some(())
    })
    .await;
    backends[1].kill();
    let at_kill = sent.load(Ordering::Relaxed);
    eventually(
        Duration::from_secs(30),
        "traffic goes on after the kill",
        || async { (sent.load(Ordering::Relaxed) >= at_kill + 400).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let failures = client.await.unwrap();
        assert!(failures.is_empty(), "clients saw errors: {failures:?}");
    }
    assert!(backends[1].requests() > 0, "b served before it died");
}

#[tokio::test]
async fn a_retry_goes_to_another_target() {
    let failing = TestBackend::start("failing").await;
    let healthy = TestBackend::start("healthy").await;
    failing.fail_with.store(503, Ordering::Relaxed);
    let harness = Harness::start().await;
    let addresses = [failing.address.to_string(), healthy.address.to_string()];
    harness
        .apply(1, config(&addresses, retry(1, &[v1::RetryOn::Status503])))
        .await;
    for _ in 0..10 {
        let (status, headers, _) = harness.get("/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["x-backend"], "healthy");
    }
    assert!(
        failing.requests() >= 5,
        "half the first attempts went to the failing target"
    );
}

#[tokio::test]
async fn failures_outside_the_conditions_are_not_retried() {
    let failing = TestBackend::start("failing").await;
    let healthy = TestBackend::start("healthy").await;
    failing.fail_with.store(502, Ordering::Relaxed);
    let harness = Harness::start().await;
    let addresses = [failing.address.to_string(), healthy.address.to_string()];
    // Only 503 is retried; a 502 reaches the client.
    harness
        .apply(1, config(&addresses, retry(3, &[v1::RetryOn::Status503])))
        .await;
    let mut statuses: Vec<u16> = Vec::new();
    for _ in 0..4 {
        statuses.push(harness.get("/").await.0.as_u16());
    }
    statuses.sort();
    assert_eq!(statuses, [200, 200, 502, 502]);

    // A dead target without a retry policy: the connect failure reaches the client as 502.
    let dead = closed_address().await.to_string();
    harness.apply(2, config(&[dead], None)).await;
    assert_eq!(harness.get("/").await.0, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn a_per_try_timeout_moves_on_and_the_total_timeout_bounds_all_tries() {
    let slow = TestBackend::start("slow").await;
    let fast = TestBackend::start("fast").await;
    slow.delay_ms.store(3000, Ordering::Relaxed);
    let harness = Harness::start().await;
    let addresses = [slow.address.to_string(), fast.address.to_string()];
    let mut policy = retry(2, &[]).unwrap();
    policy.per_try_timeout_ms = 200;
    let mut config = config(&addresses, Some(policy));
    config.routes[0].timeout_ms = 2000;
    harness.apply(1, config.clone()).await;
    for _ in 0..4 {
        let (status, headers, _) = harness.get("/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["x-backend"], "fast");
    }

    // Both slow: every try times out, and the route's total timeout ends the request.
    fast.delay_ms.store(3000, Ordering::Relaxed);
    config.routes[0].retry.as_mut().unwrap().attempts = 10;
    config.routes[0].timeout_ms = 500;
    harness.apply(2, config).await;
    let (status, _, body) = harness.get("/").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body["error"], "gateway timeout");
}

/// Sends `method` with a body of `size` bytes; the status and the echoed body length.
async fn send_body(harness: &Harness, method: Method, size: usize) -> (StatusCode, usize) {
    let request = Request::builder()
        .method(method)
        .uri(format!("http://{}/upload", harness.address))
        .body(Full::new(Bytes::from(vec![b'x'; size])))
        .unwrap();
    let response = harness.client.request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    (status, echo["body"].as_str().map_or(0, str::len))
}

#[tokio::test]
async fn bodies_are_retried_when_they_can_be_sent_again() {
    let live = TestBackend::start("live").await;
    let dead = closed_address().await.to_string();
    let harness = Harness::start().await;
    // Round robin over [dead, live]: odd requests try the dead target first.
    let addresses = [dead, live.address.to_string()];
    harness.apply(1, config(&addresses, retry(1, &[]))).await;
    let large = 100 * 1024;

    // A small body is buffered, so any method is retried.
    assert_eq!(
        send_body(&harness, Method::POST, 1000).await,
        (StatusCode::OK, 1000)
    );
    assert_eq!(harness.get("/").await.0, StatusCode::OK);
    // A large body is streamed: an idempotent PUT can take it to the next target, since the
    // failed connect never read it...
    assert_eq!(
        send_body(&harness, Method::PUT, large).await,
        (StatusCode::OK, large)
    );
    assert_eq!(harness.get("/").await.0, StatusCode::OK);
    // ...but a POST is sent once.
    assert_eq!(
        send_body(&harness, Method::POST, large).await.0,
        StatusCode::BAD_GATEWAY
    );
}
