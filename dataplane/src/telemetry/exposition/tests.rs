use std::time::Duration;

use gateway_proto::v1::{
    Config, OutlierDetection, Route, RouteMatch, Snapshot, Target, Upstream, route_match,
};

use super::*;
use crate::app::{ActiveConfig, ConfigSource, Gateway};
use crate::table::{RouteEntry, UpstreamPool};
use crate::telemetry::{LocalReason, RetryReason};

fn config(route: &str) -> Config {
    Config {
        upstreams: vec![Upstream {
            name: "pool".into(),
            targets: vec![
                Target {
                    address: "127.0.0.1:1".into(),
                    weight: 1,
                },
                Target {
                    address: "127.0.0.1:2".into(),
                    weight: 1,
                },
            ],
            outlier_detection: Some(OutlierDetection {
                consecutive_5xx: 3,
                base_ejection_ms: 1000,
                ..Default::default()
            }),
            ..Default::default()
        }],
        routes: vec![Route {
            name: route.into(),
            r#match: Some(RouteMatch {
                hosts: vec!["web.local".into()],
                path: Some(route_match::Path::Prefix("/".into())),
                ..Default::default()
            }),
            upstream: "pool".into(),
            ..Default::default()
        }],
        health_checks: vec![],
        certificates: vec![],
    }
}

async fn apply(gateway: &std::sync::Arc<Gateway>, version: u64, config: Config) {
    let snapshot = Snapshot {
        version,
        hash: gateway_proto::hash::config_hash(&config),
        config: Some(config),
        ..Default::default()
    };
    gateway
        .apply(snapshot, ConfigSource::ControlPlane)
        .await
        .unwrap();
}

/// A gateway with `config("web")` applied as `version`, and that config.
async fn started(version: u64) -> (std::sync::Arc<Gateway>, std::sync::Arc<ActiveConfig>) {
    let gateway = Gateway::new();
    apply(&gateway, version, config("web")).await;
    let active = gateway.active().unwrap();
    (gateway, active)
}

fn web_route(active: &ActiveConfig) -> (&RouteEntry, &UpstreamPool) {
    active
        .table
        .find("web.local", "/", &http::Method::GET)
        .unwrap()
}

/// The value of the sample whose line starts with `series` (name and labels, as written).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn traffic_health_and_config_are_exposed_with_bounded_labels() {
    let (gateway, active) = started(7).await;
    let (route, upstream) = web_route(&active);
    route
        .stats
        .record(0, 200, None, Duration::from_millis(3), 5);
    route.stats.record(
        2,
        502,
        Some(LocalReason::ConnectFailed),
        Duration::from_millis(1),
        0,
    );
    route.stats.record_retry(RetryReason::ConnectFailed);
    route.stats.add_bytes_in(11);
    upstream.stats.record_attempt(Duration::from_millis(2));
    gateway
        .metrics()
        .unrouted
        .record(7, 404, Some(LocalReason::NoRoute), Duration::ZERO, 0);
    upstream.targets[0].state.counters.record_check(false);

    let text = render(&gateway);
    let web = r#"route="web",upstream="pool""#;
    for (series, value) in [
        (
            format!(r#"gateway_requests_total{{{web},method="GET",status_class="2xx"}}"#),
            1.0,
        ),
        (
            format!(r#"gateway_requests_total{{{web},method="POST",status_class="5xx"}}"#),
            1.0,
        ),
        (
            r#"gateway_requests_total{route="",upstream="",method="other",status_class="4xx"}"#
                .to_string(),
            1.0,
        ),
        (
            format!(r#"gateway_local_responses_total{{{web},reason="connect_failed"}}"#),
            1.0,
        ),
        (
            format!(r#"gateway_retries_total{{{web},reason="connect_failed"}}"#),
            1.0,
        ),
        (
            format!(r#"gateway_request_duration_seconds_count{{{web}}}"#),
            2.0,
        ),
        (
            format!(r#"gateway_request_duration_seconds_bucket{{{web},le="0.005"}}"#),
            2.0,
        ),
        (
            format!(r#"gateway_request_body_bytes_total{{{web}}}"#),
            11.0,
        ),
        (
            format!(r#"gateway_response_body_bytes_total{{{web}}}"#),
            5.0,
        ),
        (
            r#"gateway_upstream_requests_total{upstream="pool"}"#.to_string(),
            1.0,
        ),
        (
            r#"gateway_upstream_request_duration_seconds_count{upstream="pool"}"#.to_string(),
            1.0,
        ),
        (
            r#"gateway_health_checks_total{upstream="pool",target="127.0.0.1:1",result="fail"}"#
                .to_string(),
            1.0,
        ),
        (
            r#"gateway_target_ejected{upstream="pool",target="127.0.0.1:2"}"#.to_string(),
            0.0,
        ),
        ("gateway_config_version".to_string(), 7.0),
        ("gateway_config_stale".to_string(), 0.0),
        ("gateway_control_plane_connected".to_string(), 0.0),
        ("gateway_config_rejected_total".to_string(), 0.0),
    ] {
        assert_eq!(sample(&text, &series), Some(value), "{series} in\n{text}");
    }
    assert!(
        sample(&text, "gateway_config_last_apply_success_timestamp_seconds").unwrap() > 1.6e9,
        "{text}"
    );
    assert!(text.contains("# TYPE gateway_request_duration_seconds histogram"));
    assert!(text.contains("# TYPE gateway_requests_total counter"));
}

#[tokio::test]
async fn a_routes_series_go_when_the_route_does_and_stay_when_it_stays() {
    let (gateway, active) = started(1).await;
    let (route, _) = web_route(&active);
    route.stats.record(0, 200, None, Duration::ZERO, 0);

    // Same route, new version: counts carry over.
    let mut next = config("web");
    next.upstreams[0].connect_timeout_ms = 1234;
    apply(&gateway, 2, next).await;
    let text = render(&gateway);
    assert!(text.contains(r#"route="web""#), "{text}");

    // Renamed: the old series are gone.
    apply(&gateway, 3, config("site")).await;
    let text = render(&gateway);
    assert!(!text.contains(r#"route="web""#), "{text}");
}

#[tokio::test]
async fn traffic_reports_are_windows_of_the_exposed_counters_and_keep_a_dropped_routes_last() {
    let (gateway, active) = started(1).await;
    let (route, _) = web_route(&active);
    route
        .stats
        .record(0, 200, None, Duration::from_millis(3), 5);
    let (routes, upstreams) = gateway.metrics().take_traffic();
    assert_eq!(routes.len(), 1);
    assert_eq!(
        (routes[0].name.as_str(), routes[0].status_classes.as_slice()),
        ("web", [0, 1, 0, 0, 0, 0].as_slice())
    );
    assert_eq!(upstreams[0].name, "pool");
    assert!(gateway.metrics().take_traffic().0.is_empty(), "taken");

    route
        .stats
        .record(0, 503, None, Duration::from_millis(3), 0);
    // Renamed before the next report: "web"'s last request is still reported, once.
    apply(&gateway, 2, config("site")).await;
    let text = render(&gateway);
    assert!(!text.contains(r#"route="web""#), "{text}");
    let (routes, _) = gateway.metrics().take_traffic();
    assert_eq!(routes.len(), 1);
    assert_eq!(
        (routes[0].name.as_str(), routes[0].status_classes.as_slice()),
        ("web", [0, 0, 0, 0, 1, 0].as_slice())
    );
    assert!(gateway.metrics().take_traffic().0.is_empty(), "forgotten");
}

#[test]
fn certificate_expiry_comes_from_the_not_after_of_each_certificate() {
    use gateway_proto::v1::Certificate;
    let config = Config {
        certificates: vec![
            Certificate {
                name: "site".into(),
                not_after: "2027-01-02T03:04:05Z".into(),
                ..Default::default()
            },
            // Written by a control plane that did not compute it: no series, no made-up date.
            Certificate {
                name: "old".into(),
                ..Default::default()
            },
        ],
        ..config("web")
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(vec![certificate_expiry(Some(&config))])));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
    assert_eq!(
        sample(
            &text,
            r#"gateway_certificate_expiry_timestamp_seconds{certificate="site"}"#
        ),
        Some(1_798_859_045.0),
        "{text}"
    );
    assert!(!text.contains(r#"certificate="old""#), "{text}");
}
