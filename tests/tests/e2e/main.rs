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
mod lifecycle;
mod observability;
mod operations;
mod protocols;
mod routing;
mod writes;

use std::time::Duration;

use gateway_tests::{ControlPlane, TestUpstream};
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
