//! Failover with real processes: a control plane, two data planes and three real targets. A
//! target that dies under steady traffic costs the client nothing (retries go to another
//! target), both data planes see it go unhealthy and come back, and say so through REST and
//! `gatewayctl upstream health`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::ensure;
use gateway_tests::{ControlPlane, Gateway, TestUpstream, eventually, send_get};
use http::StatusCode;
use serde_json::json;
use tokio::sync::Mutex;

use crate::{SOON, TargetView, health_check_json, route_json, upstream_json, wait_target};

/// Waits until both data planes see `address` of `web` as `healthy` (or not).
async fn wait_health(cp: &ControlPlane, address: &str, healthy: bool) -> Vec<TargetView> {
    let state = if healthy { "healthy" } else { "unhealthy" };
    wait_target(cp, "web", address, &NODES, state, |v| v.healthy == healthy).await
}

const NODES: [&str; 2] = ["dp-1", "dp-2"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_dies_under_load_costs_no_request_and_both_data_planes_report_it() {
    let gw = Gateway::start(2).await;
    let (a, b, c) = (
        TestUpstream::start("a").await,
        TestUpstream::start("b").await,
        TestUpstream::start("c").await,
    );
    let interval = Duration::from_millis(200);
    gw.cp
        .create(
            "health-checks",
            health_check_json("hc", interval, interval, 1, 2),
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
    for target in [&a, &b, &c] {
        wait_health(&gw.cp, &target.address(), true).await;
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
    for view in wait_health(&gw.cp, &b_address, false).await {
        assert!(!view.reason.is_empty(), "no reason: {view:?}");
    }
    for target in [&a, &c] {
        wait_health(&gw.cp, &target.address(), true).await;
    }
    let table = gw.cp.ctl(&["upstream", "health", "web"]).await;
    table.assert_success();
    for node in NODES {
        let line = table
            .stdout
            .lines()
            .find(|l| l.contains(&b_address) && l.contains(node))
            .unwrap_or_else(|| panic!("no line for {b_address} from {node}:\n{}", table.stdout));
        assert!(line.contains("unhealthy"), "{line}");
    }

    // It comes back on the same port and both data planes see it healthy again.
    let b = TestUpstream::start_at("b", b_addr).await;
    wait_health(&gw.cp, &b_address, true).await;
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
