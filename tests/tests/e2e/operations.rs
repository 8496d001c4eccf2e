//! What operators do after a change: wait for the fleet, roll back, and rely on the cache when
//! everything behind the data plane is down. Plus the quick-start path on the embedded store.

use std::time::Duration;

use gateway_tests::{
    CliOutput, ControlPlane, DataPlane, Gateway, SimDataPlane, TestUpstream, u64_field,
};
use http::StatusCode;

use crate::{SOON, route_to};

const APPLY_FILE: &str = "\
kind: Upstream
name: web
targets: [{address: 127.0.0.1:9, weight: 1}]
";

/// `gatewayctl apply -f <APPLY_FILE> --wait --timeout <timeout>`.
async fn apply_and_wait(cp: &ControlPlane, timeout: &str) -> CliOutput {
    let file = cp.write_file("gateway.yaml", APPLY_FILE);
    let file = file.to_str().expect("a UTF-8 temporary path");
    cp.ctl(&["apply", "-f", file, "--wait", "--timeout", timeout])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_wait_succeeds_once_every_data_plane_applied() {
    let gw = Gateway::start(2).await;
    apply_and_wait(&gw.cp, "20s").await.assert_success();
    let version = gw.cp.version().await;
    for dp in &gw.dps {
        // --wait returned, so each data plane has applied it already.
        assert_eq!(dp.applied_version().await.unwrap(), version);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_wait_fails_naming_a_data_plane_that_rejected_the_version() {
    let gw = Gateway::start(0).await;
    let mut sim = SimDataPlane::connect(gw.cp.grpc_addr(), "picky", None)
        .await
        .unwrap();
    let first = sim.next_snapshot(SOON).await.unwrap();
    sim.ack(&first).await.unwrap();
    // Rejects whatever comes next.
    let rejecter = tokio::spawn(async move {
        while let Ok(snapshot) = sim.next_snapshot(Duration::from_secs(30)).await {
            let violation = gateway_proto::v1::FieldViolation {
                resource: "upstream/web".into(),
                field: "targets".into(),
                reason: "no route to 127.0.0.1:9 here".into(),
            };
            sim.nack(&snapshot, vec![violation]).await.unwrap();
        }
    });
    let out = apply_and_wait(&gw.cp, "20s").await;
    assert!(!out.success(), "{out:?}");
    assert!(
        out.stderr.contains("picky") && out.stderr.contains("no route to 127.0.0.1:9 here"),
        "{out:?}"
    );
    rejecter.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_wait_times_out_naming_the_data_planes_behind() {
    let gw = Gateway::start(0).await;
    // Connected, takes the snapshot, never answers.
    let mut silent = SimDataPlane::connect(gw.cp.grpc_addr(), "silent", None)
        .await
        .unwrap();
    let first = silent.next_snapshot(SOON).await.unwrap();
    silent.ack(&first).await.unwrap();
    let out = apply_and_wait(&gw.cp, "2s").await;
    assert!(!out.success(), "{out:?}");
    assert!(out.stderr.contains("silent"), "{out:?}");
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_restores_an_earlier_version_as_a_new_one() {
    let gw = Gateway::start(1).await;
    let a = TestUpstream::start("a").await;
    let b = TestUpstream::start("b").await;
    route_to(&gw.cp, "web", "web.local", "web", &[&a]).await;
    let good = gw.converge().await;
    gw.cp
        .ctl(&["upstream", "replace", "web", "--target", &b.address()])
        .await
        .assert_success();
    gw.converge().await;
    gw.dp()
        .wait_for_response(SOON, "web.local", "/", StatusCode::OK, Some("b"))
        .await;

    let out = gw.cp.ctl(&["rollback", "--to", &good.to_string()]).await;
    out.assert_success();
    let version = gw.converge().await;
    assert!(version > good, "a rollback is a new version");
    gw.dp()
        .wait_for_response(SOON, "web.local", "/", StatusCode::OK, Some("a"))
        .await;
    let (then, now) = (
        gw.cp.get_json(&format!("/v1/versions/{good}")).await,
        gw.cp.get_json(&format!("/v1/versions/{version}")).await,
    );
    assert_eq!(then["hash"], now["hash"], "same content as version {good}");

    let history = gw.cp.ctl(&["history"]).await;
    history.assert_success();
    assert!(
        history.stdout.contains(&version.to_string()),
        "{}",
        history.stdout
    );
    let missing = gw.cp.ctl(&["rollback", "--to", "999"]).await;
    assert!(
        !missing.success() && missing.stderr.contains("999"),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_cache_falls_back_to_the_previous_generation() {
    let mut gw = Gateway::start(1).await;
    let a = TestUpstream::start("a").await;
    let b = TestUpstream::start("b").await;
    route_to(&gw.cp, "web", "web.local", "web", &[&a]).await;
    let first = gw.converge().await;
    gw.cp
        .ctl(&["upstream", "replace", "web", "--target", &b.address()])
        .await
        .assert_success();
    let second = gw.converge().await;
    // The newest generation is written after the ACK, and the older one moved aside before it.
    gw.dps[0].wait_for_cached(second).await;
    let cache = gw.dps[0].cache_dir();

    // Everything behind the data plane goes away, and its newest cache file is damaged.
    gw.cp.stop().await;
    gw.dps[0].stop().await;
    let current = cache.join("snapshot.pb");
    let mut bytes = std::fs::read(&current).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&current, bytes).unwrap();

    gw.dps[0].restart().await;
    let config = gw.dps[0].wait_for_version(first).await;
    assert_eq!(config["stale"], true, "{config}");
    gw.dps[0]
        .wait_for_response(SOON, "web.local", "/", StatusCode::OK, Some("a"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_start_on_the_embedded_store_survives_a_restart() {
    let mut cp = ControlPlane::start_embedded().await;
    let dp = DataPlane::start(cp.grpc_addr(), "local").await;
    let upstream = TestUpstream::start("hello").await;
    cp.ctl(&["upstream", "create", "web", "--target", &upstream.address()])
        .await
        .assert_success();
    cp.ctl(&[
        "route",
        "create",
        "web-root",
        "--path-prefix",
        "/",
        "--upstream",
        "web",
    ])
    .await
    .assert_success();
    dp.wait_for_response(SOON, "anything.local", "/", StatusCode::OK, Some("hello"))
        .await;
    let status = cp.ctl(&["status"]).await;
    status.assert_success();
    assert!(status.stdout.contains("1 of 1"), "{}", status.stdout);

    let before = cp.version().await;
    cp.restart().await;
    assert_eq!(cp.version().await, before, "the version survives a restart");
    assert_eq!(cp.names("routes").await, vec!["web-root".to_string()]);
    let history = cp.get_json("/v1/versions").await;
    assert_eq!(
        history["items"].as_array().map(Vec::len),
        Some(2),
        "{history}"
    );
    assert_eq!(u64_field(&history["items"][0], "version").unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_moves_from_the_embedded_store_to_postgres_exactly() {
    let embedded = ControlPlane::start_embedded().await;
    let file = embedded.write_file(
        "gateway.yaml",
        "kind: HealthCheckPolicy\nname: hc\ntcp: {}\ninterval_ms: 2000\ntimeout_ms: 500\nhealthy_threshold: 2\nunhealthy_threshold: 3\n\
         ---\nkind: Upstream\nname: web\nlabels: {team: web}\nhealth_check: hc\nload_balancing: LOAD_BALANCING_POLICY_MAGLEV\n\
         hash_on: {header: x-user}\ntargets: [{address: 127.0.0.1:9001, weight: 3}, {address: 127.0.0.1:9002, weight: 1}]\n\
         ---\nkind: Route\nname: api\nmatch: {hosts: [api.example.com, \"*.example.com\"], prefix: /v1, methods: [GET]}\n\
         priority: 10\nupstream: web\nretry: {attempts: 2, on: [RETRY_ON_STATUS_503]}\n\
         request_headers: {set: [{name: host, value: internal.example.com}], remove: [x-debug]}\n",
    );
    embedded
        .ctl(&["apply", "-f", file.to_str().unwrap()])
        .await
        .assert_success();
    let exported = embedded.ctl(&["export"]).await;
    exported.assert_success();

    let db = gateway_tests::TestDb::create().await;
    let postgres = ControlPlane::start(&db).await;
    let moved = postgres.write_file("export.yaml", &exported.stdout);
    postgres
        .ctl(&["apply", "-f", moved.to_str().unwrap()])
        .await
        .assert_success();
    assert_eq!(
        postgres.status().await["hash"],
        embedded.status().await["hash"],
        "same content hash"
    );
    let again = postgres.ctl(&["export"]).await;
    let body = |text: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(body(&again.stdout), body(&exported.stdout));
}
