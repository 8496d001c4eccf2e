//! Config distribution operators can trust: deltas, NACKs made visible, replica failover, and
//! replicas that catch up on what they missed.

use std::time::Duration;

use gateway_proto::delta;
use gateway_proto::hash::config_hash;
use gateway_proto::v1::{Config, FieldViolation};
use gateway_tests::{
    ControlPlane, DataPlane, Gateway, SimDataPlane, TestDb, TestUpstream, eventually, u64_field,
};
use http::Method;

use crate::{SOON, route_json, route_to, upstream_json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_data_plane_gets_a_delta_that_equals_the_full_snapshot() {
    let gw = Gateway::start(0).await;
    let upstream = TestUpstream::start("a").await;
    route_to(&gw.cp, "web", "web.local", "web", &[&upstream]).await;

    // A fresh data plane gets the whole config.
    let mut sim = SimDataPlane::connect(gw.cp.grpc_addr(), "sim-1", None)
        .await
        .unwrap();
    let first = sim.next_snapshot(SOON).await.unwrap();
    assert!(
        first.delta.is_none(),
        "a data plane holding nothing gets a full snapshot"
    );
    let base = first.config.clone().unwrap();
    assert_eq!(config_hash(&base), first.hash);
    sim.ack(&first).await.unwrap();
    drop(sim);

    // While it is away: one route added, one changed.
    gw.cp
        .create("routes", route_json("api", "api.local", "/", "web"))
        .await;
    let changed = gw
        .cp
        .rest(
            Method::PUT,
            "/v1/routes/web",
            Some(&route_json("web", "web.local", "/v2", "web")),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.text());

    // Back, saying what it holds: it gets only what changed.
    let held = Some((first.version, first.hash.clone()));
    let mut sim = SimDataPlane::connect(gw.cp.grpc_addr(), "sim-1", held)
        .await
        .unwrap();
    let update = sim.next_snapshot(SOON).await.unwrap();
    let d = update
        .delta
        .clone()
        .expect("a data plane holding a known version gets a delta");
    assert_eq!(
        (d.base_version, d.base_hash.as_str()),
        (first.version, first.hash.as_str())
    );
    assert!(update.config.is_none());
    let routes: Vec<&str> = d
        .upserted
        .as_ref()
        .unwrap()
        .routes
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        routes,
        vec!["api", "web"],
        "only the changed routes are sent"
    );
    assert!(
        d.upserted.as_ref().unwrap().upstreams.is_empty(),
        "the unchanged upstream is not sent"
    );
    let via_delta = delta::apply(&base, &d).unwrap();

    // A data plane that held nothing gets the full snapshot of the same version: identical.
    let mut fresh = SimDataPlane::connect(gw.cp.grpc_addr(), "sim-2", None)
        .await
        .unwrap();
    let full = fresh.next_snapshot(SOON).await.unwrap();
    assert_eq!(full.version, update.version);
    let mut via_full: Config = full.config.unwrap();
    via_full.canonicalize();
    assert_eq!(
        via_delta, via_full,
        "delta and full snapshot give the same config"
    );
    assert_eq!(config_hash(&via_delta), update.hash);

    // Holding the current version: nothing is sent.
    let mut current = SimDataPlane::connect(
        gw.cp.grpc_addr(),
        "sim-3",
        Some((full.version, full.hash.clone())),
    )
    .await
    .unwrap();
    assert!(
        current
            .next_snapshot(Duration::from_millis(700))
            .await
            .is_err(),
        "nothing to send"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_is_visible_in_status_and_the_version_is_not_resent() {
    let gw = Gateway::start(0).await;
    let upstream = TestUpstream::start("a").await;
    route_to(&gw.cp, "web", "web.local", "web", &[&upstream]).await;
    let mut sim = SimDataPlane::connect(gw.cp.grpc_addr(), "picky", None)
        .await
        .unwrap();
    let snapshot = sim.next_snapshot(SOON).await.unwrap();
    let violation = FieldViolation {
        resource: "route/web".into(),
        field: "match.prefix".into(),
        reason: "unsupported here".into(),
    };
    sim.nack(&snapshot, vec![violation]).await.unwrap();

    let item = eventually(SOON, || async {
        let items = gw.cp.dataplanes().await;
        let item = items
            .into_iter()
            .find(|i| i["node_id"] == "picky")
            .ok_or_else(|| anyhow::anyhow!("not listed"))?;
        anyhow::ensure!(
            u64_field(&item, "rejected_version")? == snapshot.version,
            "{item}"
        );
        Ok(item)
    })
    .await;
    assert_eq!(
        item["rejection_errors"][0]["reason"], "unsupported here",
        "{item}"
    );
    let status = gw.cp.ctl(&["status"]).await;
    status.assert_success();
    assert!(status.stdout.contains("picky"), "{}", status.stdout);
    assert!(
        status.stdout.contains("unsupported here"),
        "{}",
        status.stdout
    );

    // The rejected version is not offered again; the next version is.
    assert!(
        sim.next_snapshot(Duration::from_millis(700)).await.is_err(),
        "rejected version re-sent"
    );
    gw.cp
        .create("routes", route_json("api", "api.local", "/", "web"))
        .await;
    let next = sim.next_snapshot(SOON).await.unwrap();
    assert!(next.version > snapshot.version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_planes_fail_over_between_replicas_without_losing_writes() {
    let db = TestDb::create().await;
    let mut first = ControlPlane::start(&db).await;
    let second = ControlPlane::start(&db).await;
    let dp = DataPlane::start_with(&[first.grpc_addr(), second.grpc_addr()], "dp-1").await;
    let a = TestUpstream::start("a").await;
    let b = TestUpstream::start("b").await;
    route_to(&first, "web", "web.local", "web", &[&a]).await;
    let before = first.version().await;
    dp.wait_for_version(before).await;

    first.stop().await;
    // Written through the surviving replica; the data plane moves over and applies it.
    let replaced = second
        .rest(
            Method::PUT,
            "/v1/upstreams/web",
            Some(&upstream_json("web", &[(b.address(), 1)])),
        )
        .await;
    assert_eq!(replaced.status, 200, "{}", replaced.text());
    let after = second.version().await;
    assert!(
        after > before,
        "versions never go backwards: {before} then {after}"
    );
    dp.wait_for_version(after).await;
    dp.wait_for_response(SOON, "web.local", "/", http::StatusCode::OK, Some("b"))
        .await;

    // The restarted replica serves the same version with the same content.
    first.restart().await;
    let (s1, s2) = (first.status().await, second.status().await);
    assert_eq!(u64_field(&s1, "version").unwrap(), after);
    assert_eq!(s1["hash"], s2["hash"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_notification_connection_was_cut_catches_up() {
    let db = TestDb::create().await;
    // No polling backstop worth the name: only LISTEN/NOTIFY and its reconnect can catch up.
    let listener = ControlPlane::start_with_args(&db, &["--poll-interval", "1h"]).await;
    let writer = ControlPlane::start(&db).await;

    // Cut the listener's connection, then write through the other replica.
    let admin = sqlx::PgPool::connect(db.admin_url()).await.unwrap();
    let cut = sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'LISTEN%'",
    )
    .bind(db.name())
    .fetch_all(&admin)
    .await
    .unwrap();
    assert!(!cut.is_empty(), "found the listening connections");
    writer
        .create(
            "upstreams",
            upstream_json("web", &[("127.0.0.1:9".into(), 1)]),
        )
        .await;
    let version = writer.version().await;

    eventually(SOON, || async {
        let seen = listener.version().await;
        anyhow::ensure!(
            seen == version,
            "listener replica at {seen}, writer at {version}"
        );
        Ok(())
    })
    .await;
    let names = listener.names("upstreams").await;
    assert_eq!(names, vec!["web".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_over_the_size_limit_is_an_explicit_error() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start_with_args(&db, &["--max-snapshot-bytes", "2048"]).await;
    let routes: Vec<_> = (0..200)
        .map(|i| route_json(&format!("r{i}"), "big.local", &format!("/p{i}"), "web"))
        .collect();
    let config = serde_json::json!({
        "upstreams": [upstream_json("web", &[("127.0.0.1:9".into(), 1)])],
        "routes": routes,
    });
    let applied = cp.rest(Method::POST, "/v1/apply", Some(&config)).await;
    assert_eq!(applied.status, 200, "{}", applied.text());

    let mut sim = SimDataPlane::connect(cp.grpc_addr(), "small", None)
        .await
        .unwrap();
    let error = sim.next_snapshot(SOON).await.unwrap_err().to_string();
    assert!(error.contains("message limit"), "{error}");
    assert!(error.contains("--max-snapshot-bytes"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_of_100_data_planes_converges_while_the_admin_api_answers() {
    let gw = Gateway::start(0).await;
    let upstream = TestUpstream::start("a").await;
    route_to(&gw.cp, "web", "web.local", "web", &[&upstream]).await;
    let version = gw.cp.version().await;
    let grpc = gw.cp.grpc_addr();
    let storm = futures::future::join_all((0..100).map(|i| async move {
        let mut sim = SimDataPlane::connect(grpc, &format!("storm-{i}"), None).await?;
        let snapshot = sim.next_snapshot(SOON).await?;
        sim.ack(&snapshot).await?;
        anyhow::Ok((sim, snapshot.version))
    }));
    // The admin API keeps answering while the storm is served.
    let admin = async {
        for _ in 0..10 {
            let listed = gw.cp.rest(Method::GET, "/v1/routes", None).await;
            assert_eq!(listed.status, 200);
        }
    };
    let (results, ()) = tokio::join!(storm, admin);
    let sims: Vec<_> = results.into_iter().map(|r| r.unwrap()).collect();
    assert!(sims.iter().all(|(_, v)| *v == version));
    eventually(SOON, || async {
        let applied = gw
            .cp
            .dataplanes()
            .await
            .iter()
            .filter(|d| u64_field(d, "applied_version").unwrap_or(0) == version)
            .count();
        anyhow::ensure!(applied == 100, "{applied} of 100 recorded as applied");
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_gracefully_hands_its_data_planes_to_the_other_at_once() {
    let db = TestDb::create().await;
    let mut first = ControlPlane::start(&db).await;
    let second = ControlPlane::start(&db).await;
    let dp = DataPlane::start_with(&[first.grpc_addr(), second.grpc_addr()], "dp-1").await;
    let a = TestUpstream::start("a").await;
    route_to(&first, "web", "web.local", "web", &[&a]).await;
    dp.wait_for_version(first.version().await).await;

    // SIGTERM: the replica closes its discovery streams and exits without waiting them out.
    first.signal("TERM");
    assert!(
        first.wait_exit(Duration::from_secs(4)).await,
        "the control plane did not exit promptly"
    );
    let b = TestUpstream::start("b").await;
    let replaced = second
        .rest(
            Method::PUT,
            "/v1/upstreams/web",
            Some(&upstream_json("web", &[(b.address(), 1)])),
        )
        .await;
    assert!(replaced.status.is_success(), "{}", replaced.text());
    dp.wait_for_version(second.version().await).await;
    dp.wait_for_response(SOON, "web.local", "/", http::StatusCode::OK, Some("b"))
        .await;
}
