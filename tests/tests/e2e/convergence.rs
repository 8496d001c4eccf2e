//! Config reaching every data plane, and data planes surviving their control plane.

use std::time::Duration;

use anyhow::ensure;
use gateway_tests::{
    ControlPlane, DataPlane, Gateway, TestDb, TestUpstream, eventually, u64_field,
};
use http::StatusCode;
use serde_json::Value;

use crate::{SOON, route_to};

/// `/config`'s boolean `key`, false when absent.
fn flag(config: &Value, key: &str) -> bool {
    config.get(key).and_then(Value::as_bool).unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_data_planes_converge_on_the_same_version() {
    let gw = Gateway::start(2).await;
    let upstream = TestUpstream::start("upstream-a").await;
    route_to(&gw.cp, "web", "web.local", "web", &[&upstream]).await;
    let version = gw.converge().await;
    let status = gw.cp.status().await;
    let hash = status["hash"].as_str().unwrap().to_owned();
    assert!(!hash.is_empty(), "{status}");

    // As each data plane sees it.
    for dp in &gw.dps {
        let config = dp.config().await.unwrap();
        assert_eq!(u64_field(&config, "version").unwrap(), version, "{config}");
        assert_eq!(config["hash"], hash.as_str(), "{config}");
        assert!(flag(&config, "connected"), "{config}");
        assert!(!flag(&config, "stale"), "{config}");
        let response = dp.get("web.local", "/").await.unwrap();
        assert_eq!(response.text(), "upstream-a");
    }

    // As the control plane sees them (the ACK may trail the data plane's own view a little).
    let dataplanes = eventually(SOON, || async {
        let items = gw.cp.dataplanes().await;
        for dp in &gw.dps {
            let item = items
                .iter()
                .find(|item| item["node_id"] == dp.node_id())
                .ok_or_else(|| anyhow::anyhow!("{} missing from {items:?}", dp.node_id()))?;
            ensure!(flag(item, "connected"), "{item}");
            ensure!(u64_field(item, "applied_version")? == version, "{item}");
            ensure!(item["applied_hash"] == hash.as_str(), "{item}");
        }
        Ok(items)
    })
    .await;
    assert_eq!(dataplanes.len(), 2, "{dataplanes:?}");
    let status = gw.cp.status().await;
    assert_eq!(
        status["data_planes"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );

    // And through the CLI.
    let out = gw.cp.ctl(&["dataplane", "list"]).await;
    out.assert_success();
    assert!(
        out.stdout.contains("dp-1") && out.stdout.contains("dp-2"),
        "{}",
        out.stdout
    );
    let out = gw.cp.ctl(&["dataplane", "list", "-o", "json"]).await;
    let listed = out.assert_success().json();
    let text = listed.to_string();
    assert!(text.contains("dp-1") && text.contains("dp-2"), "{text}");
    gw.cp.ctl(&["status"]).await.assert_success();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_plane_keeps_serving_while_the_control_plane_is_down() {
    let mut gw = Gateway::start(1).await;
    let (a, b) = (
        TestUpstream::start("upstream-a").await,
        TestUpstream::start("upstream-b").await,
    );
    route_to(&gw.cp, "site-a", "a.local", "pool-a", &[&a]).await;
    gw.converge().await;

    gw.cp.stop().await;
    for _ in 0..20 {
        let response = gw.dp().get("a.local", "/").await.unwrap();
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        assert_eq!(response.text(), "upstream-a");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eventually(SOON, || async {
        let config = gw.dp().config().await?;
        ensure!(!flag(&config, "connected"), "still connected: {config}");
        Ok(())
    })
    .await;
    assert_eq!(
        gw.dp().get("a.local", "/").await.unwrap().text(),
        "upstream-a"
    );

    // The control plane returns; a change made now reaches the data plane.
    gw.cp.restart().await;
    route_to(&gw.cp, "site-b", "b.local", "pool-b", &[&b]).await;
    let version = gw.converge().await;
    gw.dp()
        .wait_for_response(SOON, "b.local", "/", StatusCode::OK, Some("upstream-b"))
        .await;
    let config = gw.dp().config().await.unwrap();
    assert_eq!(u64_field(&config, "version").unwrap(), version);
    assert!(flag(&config, "connected"), "{config}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_plane_restarts_from_its_cache_while_the_control_plane_is_down() {
    let mut gw = Gateway::start(1).await;
    let a = TestUpstream::start("upstream-a").await;
    route_to(&gw.cp, "site-a", "a.local", "pool-a", &[&a]).await;
    let version = gw.converge().await;
    gw.dps[0].wait_for_cached(version).await;

    gw.cp.stop().await;
    let dp: &mut DataPlane = &mut gw.dps[0];
    dp.restart().await;
    dp.wait_for_response(SOON, "a.local", "/", StatusCode::OK, Some("upstream-a"))
        .await;
    let config = dp.config().await.unwrap();
    assert_eq!(u64_field(&config, "version").unwrap(), version, "{config}");
    assert!(
        flag(&config, "stale"),
        "serving from cache should be stale: {config}"
    );
    assert!(!flag(&config, "connected"), "{config}");

    // Back in touch with a control plane, it is no longer stale.
    gw.cp.restart().await;
    eventually(SOON, || async {
        let config = gw.dp().config().await?;
        ensure!(
            flag(&config, "connected") && !flag(&config, "stale"),
            "{config}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_plane_is_ready_only_once_it_has_a_config() {
    let db = TestDb::create().await;
    let mut cp = ControlPlane::start(&db).await;
    let upstream = TestUpstream::start("upstream-a").await;
    route_to(&cp, "web", "web.local", "web", &[&upstream]).await;
    cp.stop().await;

    // No control plane and nothing cached: alive, but not ready.
    let dp = DataPlane::start(cp.grpc_addr(), "dp-new").await;
    let readyz = dp.admin_get("/readyz").await.unwrap();
    assert_eq!(
        readyz.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        readyz.text()
    );
    let response = dp.get("web.local", "/").await.unwrap();
    assert!(
        response.status.is_server_error(),
        "without a config: {} {}",
        response.status,
        response.text()
    );

    cp.restart().await;
    eventually(SOON, || async {
        let readyz = dp.admin_get("/readyz").await?;
        ensure!(
            readyz.status == StatusCode::OK,
            "/readyz: {}",
            readyz.status
        );
        Ok(())
    })
    .await;
    dp.wait_for_response(SOON, "web.local", "/", StatusCode::OK, Some("upstream-a"))
        .await;
}
