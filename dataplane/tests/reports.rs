//! Health and traffic reports on the discovery stream, against an in-process fake control plane
//! and a proxy sharing the data plane's state.
#![allow(clippy::unwrap_used, reason = "test helpers: a failure should panic")]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use gateway_dataplane::discovery_client::{DiscoveryClient, NodeIdentity};
use gateway_proto::v1::{
    Config, HealthReport, OutlierDetection, TcpHealthCheck, TrafficReport,
    data_plane_message::Kind, health_check_policy,
};
use http::StatusCode;
use support::{
    Harness, Session, TestBackend, closed_address, fake_control_plane, health_policy, route,
    snapshot, upstream,
};

async fn next_session(sessions: &mut tokio::sync::mpsc::Receiver<Session>) -> Session {
    tokio::time::timeout(Duration::from_secs(10), sessions.recv())
        .await
        .expect("the data plane connects within 10 s")
        .unwrap()
}

fn health(kind: &Kind) -> Option<HealthReport> {
    match kind {
        Kind::Health(report) => Some(report.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn health_and_traffic_reports_arrive_on_the_stream() {
    let (address, mut sessions) = fake_control_plane().await;
    let harness = Harness::start().await;
    let identity = NodeIdentity {
        node_id: "dp-reports".into(),
        labels: BTreeMap::new(),
    };
    let client = DiscoveryClient::new(&[address], identity, harness.gateway.clone(), None)
        .unwrap()
        .with_traffic_interval(Duration::from_millis(200));
    tokio::spawn(client.run());

    let mut session = next_session(&mut sessions).await;
    assert!(matches!(session.receive().await.kind, Some(Kind::Hello(_))));
    let first = session.report(health).await;
    assert!(
        first.targets.is_empty(),
        "nothing is checked before a config"
    );

    let live = TestBackend::start("live").await;
    let dead = closed_address().await.to_string();
    let mut web = upstream("web", &[live.address.to_string(), dead.clone()]);
    web.health_check = "tcp".into();
    web.outlier_detection = Some(OutlierDetection {
        consecutive_5xx: 5,
        base_ejection_ms: 1000,
        ..Default::default()
    });
    let config = Config {
        upstreams: vec![web],
        routes: vec![route("web", &[], "/", "web")],
        health_checks: vec![health_policy(
            "tcp",
            health_check_policy::Check::Tcp(TcpHealthCheck {}),
        )],
        certificates: vec![],
    };
    session.send(snapshot(1, config)).await;
    assert!(matches!(session.receive().await.kind, Some(Kind::Ack(_))));

    // A transition is reported, with every watched target.
    let report = session
        .report(|kind| health(kind).filter(|r| r.targets.iter().any(|t| !t.healthy)))
        .await;
    assert_eq!(report.targets.len(), 2, "{report:?}");
    let down = report.targets.iter().find(|t| t.address == dead).unwrap();
    assert_eq!(down.upstream, "web");
    assert_eq!((down.healthy, down.ejected), (false, false));
    assert_eq!(down.reason, "connection refused");
    humantime::parse_rfc3339(&down.since).expect("since is RFC 3339");
    let up = report.targets.iter().find(|t| t.address != dead).unwrap();
    assert!(up.healthy && !up.ejected);

    // Traffic: deltas per route and upstream, summed over however many reports it takes.
    for _ in 0..5 {
        assert_eq!(harness.get("/").await.0, StatusCode::OK);
    }
    let mut seen = TrafficReport::default();
    let mut ok = 0;
    session
        .report(|kind| {
            let Kind::Traffic(report) = kind else {
                return None;
            };
            assert!(report.interval_ms > 0);
            if let Some(web) = report.routes.iter().find(|c| c.name == "web") {
                assert_eq!(web.status_classes.len(), 6);
                ok += web.status_classes[1];
                seen = report.clone();
            }
            (ok >= 5).then_some(())
        })
        .await;
    assert_eq!(ok, 5);
    let route = &seen.routes[0];
    assert!(
        route.bytes_out > 0
            && route.latency_p50_ms > 0.0
            && route.latency_p99_ms >= route.latency_p50_ms
    );
    assert_eq!(seen.upstreams[0].name, "web");

    // After a reconnect, the whole health view again.
    drop(session);
    let mut session = next_session(&mut sessions).await;
    assert!(matches!(session.receive().await.kind, Some(Kind::Hello(_))));
    let again = session.report(health).await;
    assert_eq!(again.targets.len(), 2);
    assert_eq!(
        again.targets.iter().find(|t| t.address == dead).unwrap(),
        down
    );
}
