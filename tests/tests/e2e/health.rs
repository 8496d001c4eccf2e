//! Health checking with real processes, set up and read as a user would (REST and gatewayctl):
//! how soon a broken target is found out and why, its return, passive ejection and its end, and
//! what an upstream with no usable target does in each mode.
//!
//! Time bounds here are correctness bounds with generous slack, not timing benchmarks.

use std::time::{Duration, SystemTime};

use anyhow::ensure;
use gateway_tests::{ControlPlane, DataPlane, Gateway, TestUpstream, eventually};
use http::StatusCode;
use serde_json::json;

use crate::{
    SOON, TargetView, health_check_json, route_json, target_views, upstream_json, wait_target,
};

const INTERVAL: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_millis(200);
const UNHEALTHY_THRESHOLD: u32 = 2;
/// The policies' default jitter lengthens each interval by up to this percent.
const JITTER_PERCENT: u32 = 10;
/// A noisy, shared machine may run a probe late by this much.
const SCHEDULING_SLACK: Duration = Duration::from_secs(2);
/// `since` is reported to the millisecond, rounded down.
const SINCE_PRECISION: Duration = Duration::from_millis(1);

/// The latest a data plane may see a target fail after it broke: `UNHEALTHY_THRESHOLD` failed
/// checks, one more for a check already under way at the break, each at most a jittered
/// interval plus the timeout.
fn detection_bound() -> Duration {
    let check = INTERVAL * (100 + JITTER_PERCENT) / 100 + TIMEOUT;
    check * (UNHEALTHY_THRESHOLD + 1) + SCHEDULING_SLACK
}

/// How long after `at` the transition of `view` happened; fails if it happened before.
fn elapsed_since(view: &TargetView, at: SystemTime) -> Duration {
    match view.since.duration_since(at) {
        Ok(elapsed) => elapsed,
        Err(early) if early.duration() <= SINCE_PRECISION => Duration::ZERO,
        Err(early) => panic!(
            "{view:?}: the transition is {:?} before the event",
            early.duration()
        ),
    }
}

/// Answers from `dp` for `count` requests to `host`: the bodies (the targets' names) and
/// statuses.
async fn bodies(dp: &DataPlane, host: &str, count: usize) -> Vec<(StatusCode, String)> {
    let mut seen = Vec::with_capacity(count);
    for _ in 0..count {
        let response = dp.get(host, "/").await.expect("a response from the proxy");
        seen.push((response.status, response.text()));
    }
    seen
}

/// Sends requests through `dp` until one is answered by `target`.
async fn wait_for_traffic_to(dp: &DataPlane, host: &str, target: &TestUpstream) {
    eventually(SOON, || async {
        let response = dp.get(host, "/").await?;
        ensure!(
            response.status == StatusCode::OK && response.text() == target.name(),
            "waiting for {} to take traffic, got {} {:?}",
            target.name(),
            response.status,
            response.text()
        );
        Ok(())
    })
    .await;
}

/// Runs `gatewayctl` with the words of `command`, expecting success; returns what it printed.
async fn ctl(cp: &ControlPlane, command: &str) -> String {
    let args: Vec<&str> = command.split_whitespace().collect();
    cp.ctl(&args).await.assert_success().stdout.clone()
}

/// A gateway with targets `a` and `b` in upstream `web` (created by `gatewayctl upstream
/// create` with `upstream_flags`, after the `before` commands), routed from `host`; returns
/// once both take traffic.
async fn two_targets(
    before: &[&str],
    upstream_flags: &str,
    host: &str,
) -> (Gateway, TestUpstream, TestUpstream) {
    let gw = Gateway::start(1).await;
    let (a, b) = (
        TestUpstream::start("a").await,
        TestUpstream::start("b").await,
    );
    for command in before {
        ctl(&gw.cp, command).await;
    }
    let (a_target, b_target) = (a.address(), b.address());
    ctl(
        &gw.cp,
        &format!("upstream create web --target {a_target} --target {b_target} {upstream_flags}"),
    )
    .await;
    ctl(
        &gw.cp,
        &format!("route create web --host {host} --path-prefix / --upstream web"),
    )
    .await;
    gw.converge().await;
    wait_for_traffic_to(gw.dp(), host, &a).await;
    wait_for_traffic_to(gw.dp(), host, &b).await;
    (gw, a, b)
}

/// The `gatewayctl upstream health` line of `address` as seen by `node`.
async fn ctl_health_line(cp: &ControlPlane, upstream: &str, address: &str, node: &str) -> String {
    let table = ctl(cp, &format!("upstream health {upstream}")).await;
    table
        .lines()
        .find(|l| l.contains(address) && l.contains(node))
        .unwrap_or_else(|| panic!("no line for {address} from {node}:\n{table}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_target_is_found_out_within_interval_times_threshold_with_the_reason() {
    let gw = Gateway::start(1).await;
    let (steady, refused, failing, slow) = (
        TestUpstream::start("steady").await,
        TestUpstream::start("refused").await,
        TestUpstream::start("failing").await,
        TestUpstream::start("slow").await,
    );
    gw.cp
        .create(
            "health-checks",
            health_check_json("hc", INTERVAL, TIMEOUT, 1, UNHEALTHY_THRESHOLD),
        )
        .await;
    let targets = [&steady, &refused, &failing, &slow];
    let mut upstream = upstream_json("web", &targets.map(|t| (t.address(), 1)));
    upstream["health_check"] = json!("hc");
    gw.cp.create("upstreams", upstream).await;
    gw.cp
        .create("routes", route_json("web", "detect.local", "/", "web"))
        .await;
    gw.converge().await;
    // Each target is reported, and its probe is running.
    for target in targets {
        wait_target(
            &gw.cp,
            "web",
            &target.address(),
            &["dp-1"],
            "healthy",
            |v| v.usable(),
        )
        .await;
    }
    eventually(SOON, || async {
        ensure!(
            targets.iter().all(|t| t.health_probe_count() > 0),
            "waiting for every target to be probed"
        );
        Ok(())
    })
    .await;

    let refused_address = refused.address();
    let broke_at = SystemTime::now();
    refused.kill();
    failing.set_health_status(500);
    slow.set_health_delay(Duration::from_secs(30));

    let bound = detection_bound();
    for (address, why) in [
        (refused_address, "connection refused"),
        (failing.address(), "status 500"),
        (slow.address(), "timeout"),
    ] {
        let views = wait_target(&gw.cp, "web", &address, &["dp-1"], "unhealthy", |v| {
            !v.healthy
        })
        .await;
        let view = &views[0];
        assert_eq!(view.reason, why, "{address}: {view:?}");
        let took = elapsed_since(view, broke_at);
        println!("{address} ({why}) found out {took:?} after it broke");
        assert!(
            took <= bound,
            "{address} ({why}) was found out {took:?} after it broke, more than {bound:?}"
        );
    }
    let views = target_views(&gw.cp, "web", &steady.address())
        .await
        .unwrap();
    assert!(views[0].usable(), "the steady target: {views:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_comes_back_is_healthy_again_and_takes_traffic() {
    let (gw, _a, b) = two_targets(
        &[
            "healthcheck create hc --http-path /healthz --interval 200ms --timeout 200ms \
           --healthy-threshold 2 --unhealthy-threshold 2",
        ],
        "--health-check hc",
        "back.local",
    )
    .await;
    let b_target = b.address();
    let b_addr = b.addr();
    b.kill();
    wait_target(&gw.cp, "web", &b_target, &["dp-1"], "unhealthy", |v| {
        !v.healthy
    })
    .await;
    let line = ctl_health_line(&gw.cp, "web", &b_target, "dp-1").await;
    assert!(
        line.contains("unhealthy") && line.contains("connection refused"),
        "{line}"
    );
    // An unrelated change forgets nothing: b stays out, with the same reason and since.
    let down = target_views(&gw.cp, "web", &b_target).await.unwrap();
    ctl(
        &gw.cp,
        "route create other --host other.local --path-prefix / --upstream web",
    )
    .await;
    gw.converge().await;
    let after = target_views(&gw.cp, "web", &b_target).await.unwrap();
    assert_eq!(
        (after[0].healthy, &after[0].reason, after[0].since),
        (down[0].healthy, &down[0].reason, down[0].since),
        "an unrelated route changed what dp-1 knows of b"
    );
    // Only a takes traffic now.
    for (status, body) in bodies(gw.dp(), "back.local", 6).await {
        assert_eq!((status, body.as_str()), (StatusCode::OK, "a"));
    }

    let back_at = SystemTime::now();
    let b = TestUpstream::start_at("b", b_addr).await;
    let views = wait_target(&gw.cp, "web", &b_target, &["dp-1"], "healthy", |v| {
        v.healthy
    })
    .await;
    assert_eq!(views[0].reason, "status 200", "{views:?}");
    elapsed_since(&views[0], back_at);
    let line = ctl_health_line(&gw.cp, "web", &b_target, "dp-1").await;
    assert!(
        line.contains(" healthy") && !line.contains("unhealthy"),
        "{line}"
    );
    wait_for_traffic_to(gw.dp(), "back.local", &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_answering_500s_is_ejected_then_returns_after_the_ejection_time() {
    // Long enough that the requests sent while b is out all fit in it.
    let ejection = Duration::from_secs(4);
    let (gw, _a, b) =
        two_targets(&[], "--eject-after-5xx 3 --ejection-time 4s", "eject.local").await;
    let b_target = b.address();

    // b fails its requests (its health checks would still pass: there are none).
    b.set_status(500);
    let answers = bodies(gw.dp(), "eject.local", 6).await;
    assert!(
        answers.contains(&(StatusCode::INTERNAL_SERVER_ERROR, "b".to_owned())),
        "the failing target's answers reach clients until it is ejected: {answers:?}"
    );
    let views = wait_target(&gw.cp, "web", &b_target, &["dp-1"], "ejected", |v| {
        v.ejected
    })
    .await;
    let ejected = views[0].clone();
    assert_eq!(ejected.reason, "3 consecutive 5xx", "{ejected:?}");
    let line = ctl_health_line(&gw.cp, "web", &b_target, "dp-1").await;
    assert!(
        line.contains("ejected") && line.contains("3 consecutive 5xx"),
        "{line}"
    );

    // While it is out, no request reaches it.
    let before = b.request_count();
    for (status, body) in bodies(gw.dp(), "eject.local", 10).await {
        assert_eq!((status, body.as_str()), (StatusCode::OK, "a"));
    }
    assert_eq!(
        b.request_count(),
        before,
        "requests reached an ejected target"
    );

    // Fixed, it returns once the ejection is over, and takes traffic again.
    b.set_status(200);
    let views = wait_target(&gw.cp, "web", &b_target, &["dp-1"], "back", |v| v.usable()).await;
    let returned = &views[0];
    assert!(returned.reason.contains("over"), "{returned:?}");
    let out_for = elapsed_since(returned, ejected.since);
    assert!(
        out_for + SINCE_PRECISION >= ejection,
        "ejected for {out_for:?}, less than the ejection time {ejection:?}"
    );
    wait_for_traffic_to(gw.dp(), "eject.local", &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_target_down_fail_fast_answers_503_and_panic_mode_uses_them_all() {
    let gw = Gateway::start(1).await;
    let targets = [
        TestUpstream::start("fast-1").await,
        TestUpstream::start("fast-2").await,
        TestUpstream::start("panic-1").await,
        TestUpstream::start("panic-2").await,
    ];
    for target in &targets {
        target.set_health_status(500);
    }
    let [fast_1, fast_2, panic_1, panic_2] = &targets;
    gw.cp
        .create(
            "health-checks",
            health_check_json("hc", INTERVAL, TIMEOUT, 1, 1),
        )
        .await;
    for (name, pair, mode) in [
        ("fast", [fast_1, fast_2], "ALL_UNHEALTHY_POLICY_FAIL_FAST"),
        ("panic", [panic_1, panic_2], "ALL_UNHEALTHY_POLICY_PANIC"),
    ] {
        let mut upstream = upstream_json(name, &pair.map(|t| (t.address(), 1)));
        upstream["health_check"] = json!("hc");
        upstream["all_unhealthy"] = json!(mode);
        gw.cp.create("upstreams", upstream).await;
        gw.cp
            .create(
                "routes",
                route_json(name, &format!("{name}.local"), "/", name),
            )
            .await;
    }
    gw.converge().await;
    for (upstream, target) in [
        ("fast", fast_1),
        ("fast", fast_2),
        ("panic", panic_1),
        ("panic", panic_2),
    ] {
        wait_target(
            &gw.cp,
            upstream,
            &target.address(),
            &["dp-1"],
            "unhealthy",
            |v| !v.healthy,
        )
        .await;
    }

    // Fail fast: the gateway answers itself, says why and when to come back.
    let response = gw.dp().get("fast.local", "/").await.unwrap();
    assert_eq!(
        response.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        response.text()
    );
    let retry_after: u64 = response
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in seconds: {:?}", response.headers));
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    let body = response.json().unwrap();
    assert_eq!(body["error"], "no healthy targets", "{body}");
    assert_eq!(body["retry_after_seconds"], retry_after, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("health")),
        "{body}"
    );
    assert_eq!(fast_1.request_count() + fast_2.request_count(), 0);

    // Panic mode: every target still gets requests, and answers them.
    let (before_1, before_2) = (panic_1.request_count(), panic_2.request_count());
    eventually(SOON, || async {
        let response = gw.dp().get("panic.local", "/").await?;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        ensure!(
            panic_1.request_count() > before_1 && panic_2.request_count() > before_2,
            "waiting for both unhealthy targets to get requests"
        );
        Ok(())
    })
    .await;
}
