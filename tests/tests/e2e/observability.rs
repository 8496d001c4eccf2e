//! What operators see: `/metrics` on both planes after real traffic (including an ejection),
//! request ids, the access log, traces exported to an OTLP collector, and `gatewayctl top`.

use std::time::Duration;

use bytes::Bytes;
use gateway_tests::{
    ControlPlane, DataPlane, Gateway, OtlpCollector, TestDb, TestUpstream, dead_address,
    eventually, send,
};
use http::{Request, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::{SOON, route_json};

/// Reports are sent every 5 s and spans exported in batches every 5 s.
const REPORTED: Duration = Duration::from_secs(20);

/// The value of the sample `series` (name and labels exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

fn at_least(text: &str, series: &str, minimum: f64) {
    let value = sample(text, series);
    assert!(
        value.is_some_and(|v| v >= minimum),
        "{series} = {value:?}, expected at least {minimum}, in\n{text}"
    );
}

async fn dp_metrics(dp: &DataPlane) -> String {
    let response = dp
        .admin_get("/metrics")
        .await
        .expect("the data plane's /metrics");
    assert_eq!(response.status, StatusCode::OK);
    assert!(
        response
            .content_type()
            .starts_with("text/plain; version=0.0.4")
    );
    response.text()
}

async fn cp_metrics(cp: &ControlPlane) -> String {
    let response = gateway_tests::send_get(cp.rest_addr(), "localhost", "/metrics")
        .await
        .expect("the control plane's /metrics");
    assert_eq!(response.status, StatusCode::OK);
    response.text()
}

async fn get(dp: &DataPlane, path: &str, headers: &[(&str, &str)]) -> gateway_tests::HttpResponse {
    let mut request = Request::get(path).header(header::HOST, "obs.local");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::new()))
        .expect("a valid request");
    send(dp.addr(), request).await.expect("a response")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_traffic_failures_and_an_ejection_with_bounded_labels() {
    let gw = Gateway::start(1).await;
    let good = TestUpstream::start("good").await;
    let dead = dead_address();
    gw.cp
        .create(
            "upstreams",
            json!({
                "name": "pool",
                "targets": [
                    { "address": good.address(), "weight": 1 },
                    { "address": dead, "weight": 1 },
                ],
                "outlier_detection": {
                    "consecutive_connect_failures": 1,
                    "base_ejection_ms": 60000,
                },
            }),
        )
        .await;
    let mut route = route_json("shop", "obs.local", "/", "pool");
    route["retry"] = json!({ "attempts": 1, "budget_percent": 100 });
    gw.cp.create("routes", route).await;
    let version = gw.converge().await;

    // Round robin over a live and a dead target: the dead one fails once (the request is
    // retried on the live one), and is ejected.
    let mut statuses = Vec::new();
    for i in 0..10 {
        let response = get(gw.dp(), &format!("/items/{i}"), &[]).await;
        assert!(
            response
                .header("x-request-id")
                .is_some_and(|id| id.len() == 32),
            "a generated request id: {:?}",
            response.headers
        );
        statuses.push(response.status.as_u16());
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    // A client's request id is kept, sent upstream and returned.
    let response = get(gw.dp(), "/kept", &[("x-request-id", "client-id-1")]).await;
    assert_eq!(response.header("x-request-id"), Some("client-id-1"));
    assert_eq!(
        good.last_request().unwrap().header("x-request-id"),
        Some("client-id-1")
    );
    // No route: counted under route="".
    let mut no_route = Request::get("/").header(header::HOST, "nowhere.local");
    no_route = no_route.header("x-request-id", "r");
    let response = send(
        gw.dp().addr(),
        no_route.body(Full::new(Bytes::new())).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.status, StatusCode::NOT_FOUND);

    let text = dp_metrics(gw.dp()).await;
    let shop = r#"route="shop",upstream="pool""#;
    at_least(
        &text,
        &format!(r#"gateway_requests_total{{{shop},method="GET",status_class="2xx"}}"#),
        10.0,
    );
    at_least(
        &text,
        &format!(r#"gateway_retries_total{{{shop},reason="connect_failed"}}"#),
        1.0,
    );
    at_least(
        &text,
        r#"gateway_local_responses_total{route="",upstream="",reason="no_route"}"#,
        1.0,
    );
    at_least(
        &text,
        r#"gateway_requests_total{route="",upstream="",method="GET",status_class="4xx"}"#,
        1.0,
    );
    at_least(
        &text,
        &format!(r#"gateway_request_duration_seconds_count{{{shop}}}"#),
        11.0,
    );
    at_least(
        &text,
        &format!(r#"gateway_response_body_bytes_total{{{shop}}}"#),
        40.0,
    );
    at_least(
        &text,
        r#"gateway_upstream_requests_total{upstream="pool"}"#,
        10.0,
    );
    at_least(
        &text,
        r#"gateway_upstream_request_duration_seconds_count{upstream="pool"}"#,
        10.0,
    );
    at_least(
        &text,
        r#"gateway_upstream_connections_opened_total{upstream="pool"}"#,
        1.0,
    );
    // The test client opens a connection per request; the proxy reuses its pooled ones.
    at_least(
        &text,
        r#"gateway_upstream_connections_reused_total{upstream="pool"}"#,
        5.0,
    );
    let ejected = format!(r#"upstream="pool",target="{dead}""#);
    assert_eq!(
        sample(
            &text,
            &format!("gateway_outlier_ejections_total{{{ejected}}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("gateway_target_ejected{{{ejected}}}")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "gateway_config_version"),
        Some(version as f64)
    );
    assert_eq!(sample(&text, "gateway_control_plane_connected"), Some(1.0));
    assert_eq!(sample(&text, "gateway_config_stale"), Some(0.0));
    at_least(
        &text,
        "gateway_config_last_apply_success_timestamp_seconds",
        1.6e9,
    );
    assert_eq!(sample(&text, "gateway_config_rejected_total"), Some(0.0));
    at_least(&text, "gateway_downstream_connections_total", 12.0);
    // Labels come from the config, never from requests.
    assert!(
        !text.contains("/items/"),
        "a raw path leaked into a label:\n{text}"
    );
    assert!(
        !text.contains("nowhere.local"),
        "a host leaked into a label:\n{text}"
    );

    let text = cp_metrics(&gw.cp).await;
    at_least(
        &text,
        r#"gateway_admin_requests_total{api="rest",operation="POST /v1/upstreams",outcome="201"}"#,
        1.0,
    );
    at_least(
        &text,
        r#"gateway_store_query_duration_seconds_count{operation="mutate"}"#,
        2.0,
    );
    assert_eq!(
        sample(&text, "gateway_dataplanes_connected"),
        Some(1.0),
        "{text}"
    );
    at_least(&text, "gateway_config_convergence_seconds_count", 1.0);
    at_least(&text, "gateway_dataplane_acks_total", 2.0);
    assert_eq!(
        sample(&text, "gateway_published_config_version"),
        Some(version as f64)
    );
    // Usually right after the commit; Postgres's notification or the poller may reveal the
    // version first, so every trigger counts.
    let published: f64 = text
        .lines()
        .filter_map(|line| line.strip_prefix("gateway_snapshot_publications_total{"))
        .filter_map(|rest| rest.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert!(
        published >= 1.0,
        "no snapshot publication counted in\n{text}"
    );
    at_least(&text, "gateway_snapshot_bytes", 10.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_and_traces_follow_a_request_across_the_hop() {
    let collector = OtlpCollector::start().await;
    let db = TestDb::create().await;
    let cp = ControlPlane::start_with_args(&db, &["--otlp-endpoint", &collector.endpoint()]).await;
    let logs = tempfile::tempdir().unwrap();
    let access_log = logs.path().join("access.log");
    let dp = DataPlane::start_with_args(
        &[cp.grpc_addr()],
        "dp-traced",
        &[
            "--access-log",
            access_log.to_str().unwrap(),
            "--otlp-endpoint",
            &collector.endpoint(),
        ],
    )
    .await;
    let gw = Gateway {
        cp,
        dps: vec![dp],
        db,
    };
    let upstream = TestUpstream::start("traced").await;
    crate::route_to(&gw.cp, "shop", "obs.local", "pool", &[&upstream]).await;
    gw.converge().await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let response = get(
        gw.dp(),
        "/items/7?token=secret",
        &[
            ("traceparent", &format!("00-{trace_id}-{caller_span}-01")),
            ("tracestate", "vendor=x"),
            ("x-request-id", "e2e-trace-1"),
        ],
    )
    .await;
    assert_eq!(response.status, StatusCode::OK);

    // The target sees the same trace, with this hop's span as parent, and the caller's state.
    let seen = upstream.last_request().unwrap();
    let forwarded = seen.header("traceparent").unwrap().to_owned();
    let parts: Vec<&str> = forwarded.split('-').collect();
    assert_eq!(parts[1], trace_id, "{forwarded}");
    assert_ne!(parts[2], caller_span, "a new span id per hop: {forwarded}");
    assert_eq!(seen.header("tracestate"), Some("vendor=x"));

    // One JSON line, with every field.
    let line: Value = eventually(SOON, || {
        let access_log = access_log.clone();
        async move {
            let text = std::fs::read_to_string(&access_log)?;
            let line = text
                .lines()
                .find(|l| l.contains("e2e-trace-1"))
                .ok_or_else(|| anyhow::anyhow!("no line yet in {text:?}"))?;
            Ok(serde_json::from_str(line)?)
        }
    })
    .await;
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["authority"], "obs.local", "{line}");
    assert_eq!(line["path"], "/items/7", "the query is not logged: {line}");
    assert_eq!(line["protocol"], "HTTP/1.1", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["bytes_in"], 0, "{line}");
    assert_eq!(line["bytes_out"], "traced".len(), "{line}");
    assert!(line["duration_ms"].as_f64().unwrap() > 0.0, "{line}");
    assert!(line["upstream_ms"].as_f64().unwrap() > 0.0, "{line}");
    assert!(
        line["duration_ms"].as_f64() >= line["upstream_ms"].as_f64(),
        "{line}"
    );
    assert_eq!(line["upstream_target"], upstream.address(), "{line}");
    assert_eq!(line["route"], "shop", "{line}");
    assert_eq!(line["upstream"], "pool", "{line}");
    assert_eq!(line["trace_id"], trace_id, "{line}");
    assert_eq!(line["retries"], 0, "{line}");
    assert!(line["time"].as_str().unwrap().ends_with('Z'), "{line}");

    // The server span continues the caller's trace; the client span is its child and is what
    // the target was told about.
    let (server, client) = eventually(REPORTED, || {
        let spans = collector.spans();
        async move {
            let in_trace: Vec<_> = spans
                .into_iter()
                .filter(|s| s.trace_id == trace_id && s.service == "gateway-dataplane")
                .collect();
            let server = in_trace.iter().find(|s| s.kind == 2).cloned();
            let client = in_trace.iter().find(|s| s.kind == 3).cloned();
            match (server, client) {
                (Some(server), Some(client)) => Ok((server, client)),
                _ => anyhow::bail!("spans so far: {in_trace:?}"),
            }
        }
    })
    .await;
    assert_eq!(server.name, "GET shop");
    assert_eq!(server.parent_span_id, caller_span);
    assert_eq!(server.attribute("http.route"), Some("shop"));
    assert_eq!(server.attribute("http.request.method"), Some("GET"));
    assert_eq!(server.attribute("http.response.status_code"), Some("200"));
    assert_eq!(server.attribute("url.path"), Some("/items/7"));
    assert_eq!(client.parent_span_id, server.span_id);
    assert_eq!(
        client.span_id, parts[2],
        "the target's parent is the client span"
    );
    assert_eq!(client.attribute("http.response.status_code"), Some("200"));

    // The control plane traced the admin calls, with their store queries as children: the
    // write transaction among them.
    let spans = eventually(REPORTED, || {
        let spans = collector.spans();
        async move {
            let admin = spans
                .iter()
                .find(|s| s.service == "gateway-controlplane" && s.name == "POST /v1/routes")
                .ok_or_else(|| anyhow::anyhow!("no admin span yet"))?;
            anyhow::ensure!(
                spans
                    .iter()
                    .any(|s| s.name == "store.mutate" && s.parent_span_id == admin.span_id),
                "no store span under {admin:?}"
            );
            Ok(spans)
        }
    })
    .await;
    let admin = spans.iter().find(|s| s.name == "POST /v1/routes").unwrap();
    assert_eq!(admin.kind, 2);
    assert_eq!(admin.attribute("http.response.status_code"), Some("201"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_shows_the_traffic_the_data_planes_report() {
    let gw = Gateway::start(1).await;
    let upstream = TestUpstream::start("busy").await;
    crate::route_to(&gw.cp, "busy-route", "obs.local", "busy-pool", &[&upstream]).await;
    gw.converge().await;

    let text = eventually(REPORTED, || async {
        for _ in 0..20 {
            let response = get(gw.dp(), "/", &[]).await;
            anyhow::ensure!(response.status == StatusCode::OK, "{}", response.text());
        }
        let out = gw.cp.ctl(&["top", "--once"]).await;
        anyhow::ensure!(out.success(), "top failed: {}", out.stderr);
        let rate = out
            .stdout
            .lines()
            .find(|l| l.starts_with("busy-route"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|rps| rps.parse::<f64>().ok())
            .unwrap_or(0.0);
        anyhow::ensure!(rate > 0.0, "no rate for busy-route yet:\n{}", out.stdout);
        Ok(out.stdout)
    })
    .await;
    assert!(text.contains("busy-pool"), "{text}");
    assert!(text.contains("traffic as of"), "{text}");

    let out = gw.cp.ctl(&["top", "--once", "-o", "json"]).await;
    out.assert_success();
    let traffic = out.json();
    let route = traffic["routes"]
        .as_array()
        .and_then(|routes| routes.iter().find(|r| r["name"] == "busy-route"))
        .unwrap_or_else(|| panic!("{traffic}"));
    assert!(
        route["requests_per_second"]
            .as_f64()
            .or_else(|| route["requestsPerSecond"].as_f64())
            .is_some_and(|r| r > 0.0),
        "{traffic}"
    );
}
