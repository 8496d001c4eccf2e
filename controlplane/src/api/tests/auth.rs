//! Tokens and roles on both APIs: 401 without a valid token, 403 for the wrong role.

use gateway_proto::v1::discovery_service_client::DiscoveryServiceClient;
use gateway_proto::v1::{
    CreateTokenRequest, DataPlaneMessage, GetRequest, Hello, ListRequest, RevokeTokenRequest,
    Upstream, data_plane_message,
};
use hyper::{Method, StatusCode};
use tonic::Code;

use super::*;
use crate::auth::{AuthSettings, Authenticator};

#[tokio::test]
async fn rest_roles() {
    let server = TestServer::start().await;
    let viewer = server.token("ops-viewer", "viewer").await;
    let dataplane = server.token("dp", "dataplane").await;
    let admin = server.token("ci", "admin").await;

    // No token, a wrong token, a malformed header: 401 with a challenge.
    for token in [None, Some("gw_not-a-real-token")] {
        let reply = server.call(Method::GET, "/v1/upstreams", token).await;
        reply.assert_problem(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer realm=\"gateway\"")
        );
    }
    let reply = server
        .send(
            Method::GET,
            "/v1/upstreams",
            None,
            &[("authorization", "Basic eDp5")],
            None,
        )
        .await;
    reply.assert_problem(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");

    // Probes stay open.
    assert_eq!(
        server.call(Method::GET, "/healthz", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        server.call(Method::GET, "/readyz", None).await.status,
        StatusCode::OK
    );

    // Admin writes; viewer reads but may not write; a data-plane token may do neither.
    let created = server
        .send(
            Method::POST,
            "/v1/upstreams",
            Some(&admin),
            &[],
            Some(upstream("web")),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let read = server
        .call(Method::GET, "/v1/upstreams/web", Some(&viewer))
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    let write = server
        .send(
            Method::POST,
            "/v1/upstreams",
            Some(&viewer),
            &[],
            Some(upstream("b")),
        )
        .await;
    write.assert_problem(StatusCode::FORBIDDEN, "PERMISSION_DENIED");
    let delete = server
        .call(Method::DELETE, "/v1/upstreams/web", Some(&viewer))
        .await;
    delete.assert_problem(StatusCode::FORBIDDEN, "PERMISSION_DENIED");
    let read = server
        .call(Method::GET, "/v1/upstreams", Some(&dataplane))
        .await;
    read.assert_problem(StatusCode::FORBIDDEN, "PERMISSION_DENIED");
    // Tokens are for admins only, reading included.
    let list = server.call(Method::GET, "/v1/tokens", Some(&viewer)).await;
    list.assert_problem(StatusCode::FORBIDDEN, "PERMISSION_DENIED");

    // Listing never shows a secret or its hash.
    let list = server.call(Method::GET, "/v1/tokens", Some(&admin)).await;
    assert_eq!(list.status, StatusCode::OK);
    let text = list.body.to_string();
    assert!(
        !text.contains(&viewer) && !text.contains("sha256"),
        "{text}"
    );
    let names: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ci", "dp", "ops-viewer"]);
    assert_eq!(list.body["items"][0]["created_by"], "bootstrap");
    assert_eq!(list.body["items"][0]["role"], "admin");

    // A revoked token is refused at once.
    let revoke = server
        .call(Method::DELETE, "/v1/tokens/ops-viewer", Some(&admin))
        .await;
    assert_eq!(revoke.status, StatusCode::NO_CONTENT, "{}", revoke.body);
    let read = server
        .call(Method::GET, "/v1/upstreams", Some(&viewer))
        .await;
    read.assert_problem(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    let again = server
        .call(Method::DELETE, "/v1/tokens/ops-viewer", Some(&admin))
        .await;
    again.assert_problem(StatusCode::NOT_FOUND, "NOT_FOUND");

    // Bad names and roles are field errors; duplicates conflict.
    let bad = server
        .send(
            Method::POST,
            "/v1/tokens",
            Some(&admin),
            &[],
            Some(serde_json::json!({"name": "Bad Name", "role": "root"})),
        )
        .await;
    bad.assert_problem(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    let fields: Vec<&str> = bad.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "role"]);
    let duplicate = server
        .send(
            Method::POST,
            "/v1/tokens",
            Some(&admin),
            &[],
            Some(serde_json::json!({"name": "ci", "role": "viewer"})),
        )
        .await;
    duplicate.assert_problem(StatusCode::CONFLICT, "ALREADY_EXISTS");
}

#[tokio::test]
async fn grpc_roles() {
    let server = TestServer::start().await;
    let mut root = server.grpc(Some(ROOT)).await;
    let created = root
        .create_token(CreateTokenRequest {
            name: "viewer".into(),
            role: "viewer".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.token.as_ref().unwrap().created_by, "bootstrap");
    let viewer = created.secret;

    let mut anonymous = server.grpc(None).await;
    let status = anonymous
        .list_upstreams(ListRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    let mut as_viewer = server.grpc(Some(&viewer)).await;
    as_viewer
        .list_upstreams(ListRequest::default())
        .await
        .unwrap();
    let upstream = Upstream {
        name: "web".into(),
        ..serde_json::from_value(upstream("web")).unwrap()
    };
    let status = as_viewer
        .create_upstream(upstream.clone())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = as_viewer
        .list_tokens(ListRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    root.create_upstream(upstream).await.unwrap();
    let fetched = as_viewer
        .get_upstream(GetRequest { name: "web".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.name, "web");

    root.revoke_token(RevokeTokenRequest {
        name: "viewer".into(),
    })
    .await
    .unwrap();
    let status = as_viewer
        .list_upstreams(ListRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

/// Data planes hold their own tokens: an admin token cannot open the discovery stream, and a
/// data-plane token can.
#[tokio::test]
async fn discovery_needs_a_dataplane_token() {
    let server = TestServer::start().await;
    let dataplane = server.token("dp-1", "dataplane").await;
    let hello = || {
        tokio_stream::iter([DataPlaneMessage {
            kind: Some(data_plane_message::Kind::Hello(Hello {
                node_id: "dp-1".into(),
                ..Default::default()
            })),
        }])
    };
    for (token, expected) in [
        (None, Some(Code::Unauthenticated)),
        (Some(ROOT.to_owned()), Some(Code::PermissionDenied)),
        (Some(dataplane), None),
    ] {
        let mut client =
            DiscoveryServiceClient::with_interceptor(server.grpc_channel().await, Bearer(token));
        let result = client.stream(hello()).await;
        match expected {
            Some(code) => assert_eq!(result.unwrap_err().code(), code),
            None => {
                let mut inbound = result.unwrap().into_inner();
                let first = inbound.message().await.unwrap();
                assert!(first.is_some(), "a snapshot is offered");
            }
        }
    }
}

/// On loopback without configured auth, requests without a token work until the first admin
/// token exists; a presented token is always checked.
#[tokio::test]
async fn loopback_without_auth_is_open_until_the_first_admin_token() {
    let server = TestServer::with(config()).await;
    let reply = server.call(Method::GET, "/v1/upstreams", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let reply = server
        .call(Method::GET, "/v1/upstreams", Some("gw_wrong"))
        .await;
    reply.assert_problem(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    let mut discovery = DiscoveryServiceClient::new(server.grpc_channel().await);
    let hello = DataPlaneMessage {
        kind: Some(data_plane_message::Kind::Hello(Hello {
            node_id: "dp-1".into(),
            ..Default::default()
        })),
    };
    let mut stream = discovery
        .stream(tokio_stream::iter([hello]))
        .await
        .expect("data planes connect without a token too")
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());

    // A viewer token does not end the fallback; an admin token does.
    let created = server
        .send(
            Method::POST,
            "/v1/tokens",
            None,
            &[],
            Some(serde_json::json!({"name": "v", "role": "viewer"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["token"]["created_by"], "anonymous");
    assert_eq!(
        server.call(Method::GET, "/v1/upstreams", None).await.status,
        StatusCode::OK
    );
    let created = server
        .send(
            Method::POST,
            "/v1/tokens",
            None,
            &[],
            Some(serde_json::json!({"name": "me", "role": "admin"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let admin = created.body["secret"].as_str().unwrap().to_owned();
    let reply = server.call(Method::GET, "/v1/upstreams", None).await;
    reply.assert_problem(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    let mut anonymous = server.grpc(None).await;
    let status = anonymous
        .list_routes(ListRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let reply = server
        .call(Method::GET, "/v1/upstreams", Some(&admin))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn start_up_rules() {
    let scratch = postgres().await;
    let settings = |listen: &str, bootstrap: Option<&str>, insecure: bool| AuthSettings {
        bootstrap_token: bootstrap.map(str::to_owned),
        insecure_no_auth: insecure,
        listeners: vec![
            ("--rest-listen", "127.0.0.1:9080".parse().unwrap()),
            ("--grpc-listen", listen.parse().unwrap()),
        ],
    };
    let store = || scratch.store.clone();
    let refused = Authenticator::configure(store(), settings("0.0.0.0:9090", None, false))
        .await
        .err()
        .expect("a non-loopback listener without auth is refused");
    let message = refused.to_string();
    assert!(
        message.contains("--grpc-listen 0.0.0.0:9090") && !message.contains('\n'),
        "{message}"
    );
    Authenticator::configure(store(), settings("0.0.0.0:9090", None, true))
        .await
        .expect("--insecure-no-auth runs anywhere");
    Authenticator::configure(store(), settings("0.0.0.0:9090", Some(ROOT), false))
        .await
        .expect("a bootstrap token protects it");
    Authenticator::configure(store(), settings("[::1]:9090", None, false))
        .await
        .expect("loopback runs without auth");
    let weak = Authenticator::configure(store(), settings("0.0.0.0:9090", Some("secret"), false))
        .await
        .err()
        .expect("a short bootstrap token is refused");
    assert!(weak.to_string().contains("at least 32"), "{weak}");

    // An admin token in the store is configured auth.
    let principal = crate::auth::Principal::anonymous();
    scratch
        .store
        .create_token(
            "ci",
            crate::auth::Role::Admin,
            "00",
            &crate::store::Author::new(&principal, "CreateToken"),
        )
        .await
        .unwrap();
    Authenticator::configure(store(), settings("0.0.0.0:9090", None, false))
        .await
        .expect("an admin token in the store protects it");
}
