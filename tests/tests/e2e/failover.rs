//! Failover with real processes: a control plane, two data planes and three real targets. A
//! target that dies under steady traffic costs the client nothing (retries go to another
//! target), both data planes see it go unhealthy and come back, and say so through REST and
//! `gatewayctl upstream health`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use gateway_tests::{ControlPlane, Gateway, TestUpstream, eventually, send_get};
use http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::{SOON, route_json, upstream_json};

/// Each data plane's view of `address` in `/v1/upstreams/{upstream}/health`: node id to the
/// target's health (`healthy`, `ejected`, `reason`, `since`).
async fn views(cp: &ControlPlane, upstream: &str, address: &str) -> Vec<(String, Value)> {
    let health = cp
        .get_json(&format!("/v1/upstreams/{upstream}/health"))
        .await;
    health["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["health"]["address"] == address)
        .map(|t| {
            (
                t["node_id"].as_str().unwrap_or_default().to_owned(),
                t["health"].clone(),
            )
        })
        .collect()
}

/// Waits until every one of `nodes` reports `address` with `healthy`, and returns the views.
async fn wait_health(
    cp: &ControlPlane,
    address: &str,
    nodes: &[&str],
    healthy: bool,
) -> Vec<(String, Value)> {
    eventually(SOON, || async {
        let views = views(cp, "web", address).await;
        for node in nodes {
            let view = views
                .iter()
                .find(|(n, _)| n == node)
                .with_context(|| format!("{node} has not reported {address}: {views:?}"))?;
            let is_healthy = view.1["healthy"].as_bool().unwrap_or(false);
            ensure!(is_healthy == healthy, "{node} sees {address} as {}", view.1);
        }
        Ok(views)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_dies_under_load_costs_no_request_and_both_data_planes_report_it() {
    let gw = Gateway::start(2).await;
    let (a, b, c) = (
        TestUpstream::start("a").await,
        TestUpstream::start("b").await,
        TestUpstream::start("c").await,
    );
    gw.cp
        .create(
            "health-checks",
            json!({
                "name": "hc",
                "http": { "path": "/healthz" },
                "interval_ms": 200,
                "timeout_ms": 200,
                "healthy_threshold": 1,
                "unhealthy_threshold": 2,
            }),
        )
        .await;
    let mut upstream = upstream_json(
        "web",
        &[(a.address(), 1), (b.address(), 1), (c.address(), 1)],
    );
    upstream["health_check"] = json!("hc");
    gw.cp.create("upstreams", upstream).await;
    let mut route = route_json("web", "web.local", "/", "web");
    route["retry"] = json!({ "attempts": 2, "budget_percent": 100 });
    gw.cp.create("routes", route).await;
    gw.converge().await;
    let nodes = ["dp-1", "dp-2"];
    for target in [&a, &b, &c] {
        wait_health(&gw.cp, &target.address(), &nodes, true).await;
    }

    // Steady traffic through the first data plane, a fresh connection per request.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let dp = gw.dp().addr();
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match send_get(dp, "web.local", "/").await {
                        Ok(r) if r.status == StatusCode::OK => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            failed
                                .lock()
                                .await
                                .push(format!("status {}: {}", r.status, r.text()))
                        }
                        Err(e) => failed.lock().await.push(format!("{e:#}")),
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (b_address, b_addr) = (b.address(), b.addr());
    b.kill();
    let views = wait_health(&gw.cp, &b_address, &nodes, false).await;
    for (node, view) in &views {
        let reason = view["reason"].as_str().unwrap_or_default();
        assert!(!reason.is_empty(), "{node} gives no reason: {view}");
        assert!(
            !view["since"].as_str().unwrap_or_default().is_empty(),
            "{node} gives no since: {view}"
        );
    }
    for target in [&a, &c] {
        wait_health(&gw.cp, &target.address(), &nodes, true).await;
    }
    let table = gw.cp.ctl(&["upstream", "health", "web"]).await;
    table.assert_success();
    for node in nodes {
        let line = table
            .stdout
            .lines()
            .find(|l| l.contains(&b_address) && l.contains(node))
            .unwrap_or_else(|| panic!("no line for {b_address} from {node}:\n{}", table.stdout));
        assert!(line.contains("unhealthy"), "{line}");
    }

    // It comes back on the same port and both data planes see it healthy again.
    let b = TestUpstream::start_at("b", b_addr).await;
    wait_health(&gw.cp, &b_address, &nodes, true).await;
    eventually(SOON, || async {
        ensure!(b.request_count() > 0, "no traffic to b since it came back");
        Ok(())
    })
    .await;

    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let failed = failed.lock().await.clone();
    let ok = ok.load(Ordering::Relaxed);
    println!("failover: requests ok {ok}, failed {}", failed.len());
    assert!(
        failed.is_empty(),
        "{} client-visible errors, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 100, "steady load: only {ok} requests");
}
