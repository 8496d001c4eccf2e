//! Every change leaves one audit row naming its author, whichever API made it.

use gateway_proto::v1::{ListAuditRequest, ListVersionsRequest, Route, RouteMatch, route_match};
use hyper::{Method, StatusCode};

use super::*;

#[tokio::test]
async fn every_change_is_audited_with_its_author() {
    let server = TestServer::start().await;
    let ci = server.token("ci", "admin").await; // audited: CreateToken by bootstrap
    let viewer = server.token("grafana", "viewer").await;

    let created = server
        .send(
            Method::POST,
            "/v1/upstreams",
            Some(&ci),
            &[],
            Some(upstream("web")),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let version = created.header("x-config-version").unwrap().to_owned();
    // A refused write and a write that changes nothing leave no row.
    let refused = server
        .send(
            Method::POST,
            "/v1/upstreams",
            Some(&viewer),
            &[],
            Some(upstream("x")),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let same = server
        .send(
            Method::PUT,
            "/v1/upstreams/web",
            Some(&ci),
            &[],
            Some(upstream("web")),
        )
        .await;
    assert_eq!(same.status, StatusCode::OK, "{}", same.body);

    let mut grpc = server.grpc(Some(ROOT)).await;
    grpc.create_route(Route {
        name: "api".into(),
        upstream: "web".into(),
        r#match: Some(RouteMatch {
            path: Some(route_match::Path::Prefix("/".into())),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let revoked = server
        .call(Method::DELETE, "/v1/tokens/grafana", Some(&ci))
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);

    // Newest first, over REST (viewer tokens may read it; this one is revoked, so use ci).
    let audit = server.call(Method::GET, "/v1/audit", Some(&ci)).await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.body);
    let rows: Vec<String> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let changes: Vec<String> = e["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    format!(
                        "{} {}/{}",
                        c["op"].as_str().unwrap(),
                        c["kind"].as_str().unwrap(),
                        c["name"].as_str().unwrap()
                    )
                })
                .collect();
            format!(
                "{} {} {}",
                e["actor"].as_str().unwrap(),
                e["operation"].as_str().unwrap(),
                changes.join(",")
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            "ci RevokeToken delete token/grafana",
            "bootstrap CreateRoute create route/api",
            "ci CreateUpstream create upstream/web",
            "bootstrap CreateToken create token/grafana",
            "bootstrap CreateToken create token/ci",
        ]
    );
    assert_eq!(
        audit.body["items"][2]["version"].as_str(),
        Some(version.as_str())
    );
    assert_eq!(
        audit.body["items"][0]["version"],
        serde_json::Value::Null,
        "no config version"
    );

    // The versions name their authors too.
    let versions = grpc
        .list_versions(ListVersionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    let authors: Vec<&str> = versions.iter().map(|v| v.author.as_str()).collect();
    assert_eq!(authors, ["bootstrap", "ci"]);

    // Pages over gRPC, filtered by actor.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = grpc
            .list_audit(ListAuditRequest {
                page_size: 1,
                page_token: token,
                actor: "bootstrap".into(),
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.items.into_iter().map(|e| e.operation));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ["CreateRoute", "CreateToken", "CreateToken"]);
}
