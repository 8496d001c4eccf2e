//! `gatewayctl apply -f`: a whole multi-document file in one version, or nothing at all.

use gateway_tests::{Gateway, TestUpstream};
use http::StatusCode;

use crate::SOON;

fn gateway_yaml(target: &str) -> String {
    format!(
        "\
kind: HealthCheckPolicy
name: hc
http:
  path: /healthz
interval_ms: 1000
timeout_ms: 500
healthy_threshold: 1
unhealthy_threshold: 2
---
kind: Upstream
name: web
health_check: hc
targets:
  - address: {target}
    weight: 1
---
kind: Route
name: web-root
match:
  hosts: [apply.local]
  prefix: /
upstream: web
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_creates_a_whole_file_in_one_version() {
    let gw = Gateway::start(1).await;
    let upstream = TestUpstream::start("upstream-a").await;
    let before = gw.cp.version().await;

    let file = gw
        .cp
        .write_file("gateway.yaml", &gateway_yaml(&upstream.address()));
    let out = gw.cp.ctl(&["apply", "-f", file.to_str().unwrap()]).await;
    out.assert_success();

    assert_eq!(gw.cp.names("health-checks").await, ["hc"]);
    assert_eq!(gw.cp.names("upstreams").await, ["web"]);
    assert_eq!(gw.cp.names("routes").await, ["web-root"]);
    assert_eq!(gw.cp.version().await, before + 1, "one apply, one version");
    let web = gw.cp.get_json("/v1/upstreams/web").await;
    assert_eq!(web["health_check"], "hc");

    gw.converge().await;
    gw.dp()
        .wait_for_response(SOON, "apply.local", "/", StatusCode::OK, Some("upstream-a"))
        .await;

    // Applying the same file again changes nothing, and says so without failing.
    let version = gw.cp.version().await;
    gw.cp
        .ctl(&["apply", "-f", file.to_str().unwrap()])
        .await
        .assert_success();
    assert_eq!(gw.cp.version().await, version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_changes_nothing() {
    let gw = Gateway::start(1).await;
    let upstream = TestUpstream::start("upstream-a").await;
    let file = gw
        .cp
        .write_file("gateway.yaml", &gateway_yaml(&upstream.address()));
    gw.cp
        .ctl(&["apply", "-f", file.to_str().unwrap()])
        .await
        .assert_success();
    let version = gw.converge().await;

    // Valid documents alongside an invalid one: none of them is applied.
    let invalid = gw.cp.write_file(
        "invalid.yaml",
        &format!(
            "\
kind: Upstream
name: extra
targets:
  - address: {}
    weight: 1
---
kind: Route
name: broken
match:
  hosts: [Broken.Local]
  prefix: /
upstream: nowhere
",
            upstream.address()
        ),
    );
    let out = gw.cp.ctl(&["apply", "-f", invalid.to_str().unwrap()]).await;
    out.assert_refused();
    assert!(out.stderr.contains("match.hosts[0]"), "{}", out.stderr);
    assert!(out.stderr.contains("upstream"), "{}", out.stderr);

    // Not YAML at all, and a document of an unknown kind.
    let garbage = gw.cp.write_file("garbage.yaml", "kind: [unclosed\n  - {\n");
    gw.cp
        .ctl(&["apply", "-f", garbage.to_str().unwrap()])
        .await
        .assert_refused();
    let unknown = gw
        .cp
        .write_file("unknown.yaml", "kind: Teapot\nname: tea\n");
    gw.cp
        .ctl(&["apply", "-f", unknown.to_str().unwrap()])
        .await
        .assert_refused();
    gw.cp
        .ctl(&["apply", "-f", "/nonexistent/gateway.yaml"])
        .await
        .assert_refused();

    assert_eq!(gw.cp.names("upstreams").await, ["web"]);
    assert_eq!(gw.cp.names("routes").await, ["web-root"]);
    assert_eq!(gw.cp.version().await, version);
    assert_eq!(gw.dp().applied_version().await.unwrap(), version);
}
