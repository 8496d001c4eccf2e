//! The discovery protocol against an in-process fake control plane.
#![allow(clippy::unwrap_used, reason = "test helpers: a failure should panic")]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use gateway_dataplane::app::Gateway;
use gateway_dataplane::cache::{Generation, SnapshotCache};
use gateway_dataplane::discovery_client::{DiscoveryClient, NodeIdentity};
use gateway_proto::v1::{Config, DataPlaneMessage, Delta, Snapshot, data_plane_message::Kind};
use support::{Session, closed_address, fake_control_plane, route, snapshot, upstream};

fn identity() -> NodeIdentity {
    NodeIdentity {
        node_id: "dp-test".into(),
        labels: BTreeMap::from([("zone".into(), "a".into())]),
    }
}

fn config(upstream_name: &str) -> Config {
    Config {
        upstreams: vec![upstream(upstream_name, &["127.0.0.1:1".into()])],
        routes: vec![route("root", &[], "/", upstream_name)],
        health_checks: vec![],
        certificates: vec![],
    }
}

async fn next_session(sessions: &mut tokio::sync::mpsc::Receiver<Session>) -> Session {
    tokio::time::timeout(Duration::from_secs(10), sessions.recv())
        .await
        .expect("the data plane connects within 10 s")
        .unwrap()
}

fn kind(message: DataPlaneMessage) -> Kind {
    message.kind.expect("a message has a kind")
}

#[tokio::test]
async fn snapshots_are_acked_after_apply_and_bad_ones_nacked() {
    let (address, mut sessions) = fake_control_plane().await;
    let gateway = Gateway::new();
    let client = DiscoveryClient::new(&[address], identity(), gateway.clone(), None).unwrap();
    tokio::spawn(client.run());

    let mut session = next_session(&mut sessions).await;
    let Kind::Hello(hello) = kind(session.receive().await) else {
        panic!("the first message is Hello");
    };
    assert_eq!(hello.node_id, "dp-test");
    assert_eq!(hello.labels["zone"], "a");
    assert_eq!(hello.build_version, env!("CARGO_PKG_VERSION"));
    assert_eq!((hello.applied_version, hello.stale), (0, false));

    let good = snapshot(1, config("web"));
    session.send(good.clone()).await;
    let Kind::Ack(ack) = kind(session.receive().await) else {
        panic!("a valid snapshot is acked");
    };
    assert_eq!(
        (ack.version, ack.nonce.as_str(), &ack.hash),
        (1, "nonce-1", &good.hash)
    );
    let active = gateway.active().expect("applied before the ACK");
    assert_eq!((active.version, active.is_stale()), (1, false));
    assert!(gateway.is_connected());

    let mut tampered = snapshot(2, config("api"));
    tampered.hash = good.hash.clone();
    session.send(tampered).await;
    let Kind::Nack(nack) = kind(session.receive().await) else {
        panic!("a snapshot whose hash does not match is nacked");
    };
    assert_eq!((nack.version, nack.nonce.as_str()), (2, "nonce-2"));
    assert_eq!(nack.errors[0].resource, "snapshot");
    assert_eq!(nack.errors[0].field, "hash");

    let mut invalid = config("web");
    invalid.routes[0].upstream = "missing".into();
    session.send(snapshot(3, invalid)).await;
    let Kind::Nack(nack) = kind(session.receive().await) else {
        panic!("an invalid config is nacked");
    };
    assert_eq!(nack.version, 3);
    assert_eq!(nack.errors[0].resource, "route/root");
    assert_eq!(nack.errors[0].field, "upstream");

    assert_eq!(
        gateway.active().unwrap().version,
        1,
        "the old table keeps serving"
    );
}

#[tokio::test]
async fn starts_stale_from_the_cache_fails_over_and_reconnects() {
    let dir = std::env::temp_dir().join(format!(
        "gateway-dataplane-discovery-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let cache = SnapshotCache::new(&dir);
    let cached = snapshot(7, config("cached"));
    cache.store(&cached).unwrap();

    let gateway = Gateway::new();
    let restored = gateway
        .restore_from_cache(&cache)
        .await
        .expect("the cache applies");
    assert!(restored.is_stale());

    let (live, mut sessions) = fake_control_plane().await;
    let dead = format!("http://{}", closed_address().await);
    let client = DiscoveryClient::new(
        &[dead, live],
        identity(),
        gateway.clone(),
        Some(cache.clone()),
    )
    .unwrap();
    tokio::spawn(client.run());

    let mut session = next_session(&mut sessions).await;
    let Kind::Hello(hello) = kind(session.receive().await) else {
        panic!("the first message is Hello");
    };
    assert_eq!((hello.applied_version, hello.stale), (7, true));
    assert_eq!(hello.applied_hash, cached.hash);

    session.send(snapshot(8, config("fresh"))).await;
    assert!(matches!(kind(session.receive().await), Kind::Ack(_)));
    assert!(!gateway.active().unwrap().is_stale());

    // The control plane goes away; the data plane comes back and says what it holds.
    drop(session);
    let mut session = next_session(&mut sessions).await;
    let Kind::Hello(hello) = kind(session.receive().await) else {
        panic!("the first message is Hello");
    };
    assert_eq!((hello.applied_version, hello.stale), (8, false));
    assert_eq!(gateway.active().unwrap().version, 8, "served throughout");

    // The cache was written after the ACK: v8 current, v7 kept as the previous generation.
    assert_eq!(cache.load(Generation::Current).unwrap().unwrap().version, 8);
    assert_eq!(
        cache.load(Generation::Previous).unwrap().unwrap().version,
        7
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn deltas_apply_on_their_base_and_an_unknown_base_gets_hello_again() {
    let (address, mut sessions) = fake_control_plane().await;
    let gateway = Gateway::new();
    let client = DiscoveryClient::new(&[address], identity(), gateway.clone(), None).unwrap();
    tokio::spawn(client.run());
    let mut session = next_session(&mut sessions).await;
    assert!(matches!(kind(session.receive().await), Kind::Hello(_)));

    let base = snapshot(1, config("web"));
    session.send(base.clone()).await;
    assert!(matches!(kind(session.receive().await), Kind::Ack(_)));

    // v2 adds an upstream and points the route at it.
    let target = config("api");
    let (upserted, removed) = gateway_proto::delta::diff(base.config.as_ref().unwrap(), &target);
    let delta = |base_version: u64, base_hash: &str| Snapshot {
        delta: Some(Delta {
            base_version,
            base_hash: base_hash.into(),
            upserted: Some(upserted.clone()),
            removed: removed.clone(),
        }),
        config: None,
        ..snapshot(2, target.clone())
    };

    session.send(delta(9, "not-held")).await;
    let Kind::Hello(hello) = kind(session.receive().await) else {
        panic!("a delta from an unknown base is answered with Hello");
    };
    assert_eq!(
        (hello.applied_version, hello.applied_hash),
        (1, base.hash.clone())
    );
    assert_eq!(gateway.active().unwrap().version, 1);

    session.send(delta(1, &base.hash)).await;
    let Kind::Ack(ack) = kind(session.receive().await) else {
        panic!("a delta from the held config is applied");
    };
    assert_eq!(ack.version, 2);
    let active = gateway.active().unwrap();
    assert_eq!(active.hash, gateway_proto::hash::config_hash(&target));
    assert_eq!(active.table.upstream_names().collect::<Vec<_>>(), ["api"]);
    assert!(
        active.snapshot.delta.is_none(),
        "the whole config is kept as the next base"
    );
}
