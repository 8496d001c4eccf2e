//! End-to-end tests: a real control plane on a real Postgres database, real data planes, the
//! real `gatewayctl`, and small test upstreams. Run `cargo build --workspace --bins` first.
//!
//! Waits are "eventually, within a generous ceiling", never fixed sleeps that assert speed.

mod apply;
mod auth;
mod cli_output;
mod convergence;
mod distribution;
mod failover;
mod health;
mod lifecycle;
mod observability;
mod operations;
mod protocols;
mod routing;
mod writes;

use std::time::{Duration, SystemTime};

use anyhow::{Context, ensure};
use gateway_tests::{ControlPlane, TestUpstream, eventually};
use serde_json::{Value, json};

/// Ceiling for anything that should happen "soon" (a process reconnecting, a config arriving).
const SOON: Duration = Duration::from_secs(10);
/// Ceiling for a route change to reach a running data plane (the product promises under a second).
const ROUTE_CHANGE: Duration = Duration::from_secs(3);

fn upstream_json(name: &str, targets: &[(String, u32)]) -> Value {
    let targets: Vec<Value> = targets
        .iter()
        .map(|(address, weight)| json!({ "address": address, "weight": weight }))
        .collect();
    json!({ "name": name, "targets": targets })
}

/// An HTTP health-check policy probing the test upstreams' `/healthz`.
fn health_check_json(
    name: &str,
    interval: Duration,
    timeout: Duration,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
) -> Value {
    json!({
        "name": name,
        "http": { "path": gateway_tests::HEALTH_PATH },
        "interval_ms": interval.as_millis() as u64,
        "timeout_ms": timeout.as_millis() as u64,
        "healthy_threshold": healthy_threshold,
        "unhealthy_threshold": unhealthy_threshold,
    })
}

fn route_json(name: &str, host: &str, prefix: &str, upstream: &str) -> Value {
    json!({
        "name": name,
        "match": { "hosts": [host], "prefix": prefix },
        "upstream": upstream,
    })
}

/// Creates upstream `upstream` over `targets` (weight 1 each) and a route `route` sending
/// `host` (any path) to it.
async fn route_to(
    cp: &ControlPlane,
    route: &str,
    host: &str,
    upstream: &str,
    targets: &[&TestUpstream],
) {
    let targets: Vec<(String, u32)> = targets.iter().map(|t| (t.address(), 1)).collect();
    cp.create("upstreams", upstream_json(upstream, &targets))
        .await;
    cp.create("routes", route_json(route, host, "/", upstream))
        .await;
}

/// One data plane's view of one target, from `GET /v1/upstreams/{name}/health`.
#[derive(Debug, Clone)]
struct TargetView {
    node: String,
    /// Passing its active checks.
    healthy: bool,
    ejected: bool,
    reason: String,
    /// When the data plane saw the last transition.
    since: SystemTime,
}

impl TargetView {
    /// May take traffic: healthy and not ejected.
    fn usable(&self) -> bool {
        self.healthy && !self.ejected
    }
}

/// Every data plane's view of `address` of `upstream`.
async fn target_views(
    cp: &ControlPlane,
    upstream: &str,
    address: &str,
) -> anyhow::Result<Vec<TargetView>> {
    let health = cp
        .get_json(&format!("/v1/upstreams/{upstream}/health"))
        .await;
    health["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["health"]["address"] == address)
        .map(|t| {
            let view = &t["health"];
            let since = view["since"].as_str().unwrap_or_default();
            Ok(TargetView {
                node: t["node_id"].as_str().unwrap_or_default().to_owned(),
                healthy: view["healthy"].as_bool().unwrap_or(false),
                ejected: view["ejected"].as_bool().unwrap_or(false),
                reason: view["reason"].as_str().unwrap_or_default().to_owned(),
                since: humantime::parse_rfc3339(since)
                    .with_context(|| format!("since {since:?} in {t}"))?,
            })
        })
        .collect()
}

/// Waits until each of `nodes` reports `address` of `upstream` in a state `holds` accepts
/// (`state` says which, for the failure message); returns their views.
async fn wait_target(
    cp: &ControlPlane,
    upstream: &str,
    address: &str,
    nodes: &[&str],
    state: &str,
    holds: impl Fn(&TargetView) -> bool,
) -> Vec<TargetView> {
    eventually(SOON, || async {
        let views = target_views(cp, upstream, address).await?;
        for node in nodes {
            let view = views
                .iter()
                .find(|v| v.node == *node)
                .with_context(|| format!("{node} has not reported {address}: {views:?}"))?;
            ensure!(
                holds(view),
                "waiting for {node} to see {address} {state}: {view:?}"
            );
        }
        Ok(views)
    })
    .await
}
