//! Data planes authenticate on the discovery stream with their own token (role `dataplane`),
//! kept apart from admin tokens.

use std::time::Duration;

use bytes::Bytes;
use gateway_tests::{ControlPlane, DataPlane, TestDb, eventually, send};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::SOON;

const BOOTSTRAP: &str = "e2e-bootstrap-token-0123456789abcdef";

async fn admin(cp: &ControlPlane, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", cp.rest_addr()))
        .header("authorization", format!("Bearer {BOOTSTRAP}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid request");
    let response = send(cp.rest_addr(), request)
        .await
        .expect("the REST API answers");
    (response.status, response.json().unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_plane_needs_a_dataplane_token_to_get_config() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start_with_args(&db, &["--bootstrap-token", BOOTSTRAP]).await;
    let upstream = json!({"name": "web", "targets": [{"address": "127.0.0.1:9", "weight": 1}]});
    let (status, _) = admin(&cp, Method::POST, "/v1/upstreams", upstream).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, created) = admin(
        &cp,
        Method::POST,
        "/v1/tokens",
        json!({"name": "dp", "role": "dataplane"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    let (status, viewer) = admin(
        &cp,
        Method::POST,
        "/v1/tokens",
        json!({"name": "ops", "role": "viewer"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{viewer}");
    let viewer = viewer["secret"].as_str().unwrap().to_owned();

    // With its token, from a file: it gets the config.
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{secret}\n")).unwrap();
    let authorized = DataPlane::start_with_args(
        &[cp.grpc_addr()],
        "dp-ok",
        &["--token-file", token_file.to_str().unwrap()],
    )
    .await;
    let status = admin(&cp, Method::GET, "/v1/status", json!({})).await.1;
    let version = gateway_tests::u64_field(&status, "version").unwrap();
    authorized.wait_for_version(version).await;

    // Without a token, or with an admin-side (viewer) token: refused, and it says why.
    let anonymous = DataPlane::start_with_args(&[cp.grpc_addr()], "dp-none", &[]).await;
    let wrong =
        DataPlane::start_with_args(&[cp.grpc_addr()], "dp-viewer", &["--token", &viewer]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for dp in [&anonymous, &wrong] {
        let config = dp.config().await.unwrap();
        assert_eq!(
            config["version"],
            0,
            "{} got config: {config}",
            dp.node_id()
        );
        assert_eq!(config["connected"], false, "{config}");
    }
    let listed = eventually(SOON, || async {
        let (status, listed) = admin(&cp, Method::GET, "/v1/dataplanes", json!({})).await;
        anyhow::ensure!(status == StatusCode::OK, "{status}");
        Ok(listed)
    })
    .await;
    let names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["node_id"].as_str())
        .collect();
    assert_eq!(
        names,
        vec!["dp-ok"],
        "only the authenticated data plane is registered"
    );
}
