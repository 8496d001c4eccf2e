//! The same semantics over gRPC: pagination, ETags (ABORTED when stale), dry runs, and errors
//! carrying `google.rpc.BadRequest` field violations.

use std::collections::BTreeMap;

use gateway_proto::v1::config_resource::Kind as OneOf;
use gateway_proto::v1::{
    ApplyRequest, Config, ConfigResource, DeleteRequest, GetResourceRequest, ListRequest,
    RollbackRequest, Route, RouteMatch, Upstream, WriteMode, WriteResourceRequest, route_match,
};
use tonic::Code;
use tonic_types::StatusExt;

use super::*;

fn web(timeout: u32) -> Upstream {
    Upstream {
        connect_timeout_ms: timeout,
        ..serde_json::from_value(upstream("web")).unwrap()
    }
}

fn write(
    resource: Upstream,
    mode: WriteMode,
    etag: &str,
    validate_only: bool,
) -> WriteResourceRequest {
    WriteResourceRequest {
        resource: Some(ConfigResource {
            kind: Some(OneOf::Upstream(resource)),
        }),
        mode: mode as i32,
        etag: etag.into(),
        validate_only,
    }
}

async fn get_web(
    client: &mut Admin,
) -> Result<tonic::Response<gateway_proto::v1::GetResourceResponse>, tonic::Status> {
    client
        .get_resource(GetResourceRequest {
            kind: "upstream".into(),
            name: "web".into(),
        })
        .await
}

#[tokio::test]
async fn lists_paginate() {
    let server = TestServer::start().await;
    let mut client = server.grpc(Some(ROOT)).await;
    let upstreams = (0..7)
        .map(|i| {
            let mut u = web(0);
            u.name = format!("u{i}");
            if i % 2 == 0 {
                u.labels.insert("even".into(), "yes".into());
            }
            u
        })
        .collect();
    client
        .apply(ApplyRequest {
            config: Some(Config {
                upstreams,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut request = ListRequest {
        page_size: 3,
        labels: BTreeMap::from([("even".into(), "yes".into())]),
        ..Default::default()
    };
    loop {
        let page = client
            .list_upstreams(request.clone())
            .await
            .unwrap()
            .into_inner();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.into_iter().map(|u| u.name));
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert_eq!(seen, ["u0", "u2", "u4", "u6"]);

    let status = client
        .list_routes(ListRequest {
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn etags_dry_runs_and_aborted() {
    let server = TestServer::start().await;
    let mut client = server.grpc(Some(ROOT)).await;

    // A dry run reports what would happen and writes nothing.
    let dry = client
        .write_resource(write(web(1000), WriteMode::Create, "", true))
        .await
        .unwrap()
        .into_inner();
    assert!(dry.created && dry.changed);
    let missing = get_web(&mut client).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let created = client
        .write_resource(write(web(1000), WriteMode::Upsert, "", false))
        .await
        .unwrap()
        .into_inner();
    assert!(created.created);
    assert_eq!(created.etag, dry.etag, "the dry run predicted the ETag");
    let got = get_web(&mut client).await.unwrap().into_inner();
    assert_eq!(got.etag, created.etag);

    let updated = client
        .write_resource(write(web(2000), WriteMode::Replace, &got.etag, false))
        .await
        .unwrap()
        .into_inner();
    assert!(!updated.created && updated.changed);
    assert_eq!(updated.version, created.version + 1);

    // Stale ETags: ABORTED, for writes and deletes alike.
    let stale = client
        .write_resource(write(web(3000), WriteMode::Replace, &got.etag, false))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    let stale = client
        .delete_upstream(DeleteRequest {
            name: "web".into(),
            etag: got.etag.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);

    // Create is create-only; a dry-run delete leaves it in place.
    let exists = client
        .write_resource(write(web(1), WriteMode::Create, "", false))
        .await
        .unwrap_err();
    assert_eq!(exists.code(), Code::AlreadyExists);
    let deleted = client
        .delete_upstream(DeleteRequest {
            name: "web".into(),
            etag: updated.etag.clone(),
            validate_only: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.version, updated.version + 1);
    client
        .get_upstream(gateway_proto::v1::GetRequest { name: "web".into() })
        .await
        .unwrap();

    // Dry-run rollback and apply commit nothing.
    let plan = client
        .rollback(RollbackRequest {
            to: created.version,
            validate_only: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(plan.updated, ["upstream/web"]);
    let after = get_web(&mut client).await.unwrap().into_inner();
    assert_eq!(after.etag, updated.etag);
}

#[tokio::test]
async fn errors_carry_field_violations() {
    let server = TestServer::start().await;
    let mut client = server.grpc(Some(ROOT)).await;
    let status = client
        .create_route(Route {
            name: "api".into(),
            upstream: "missing".into(),
            r#match: Some(RouteMatch {
                path: Some(route_match::Path::Prefix("no-slash".into())),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let bad_request = status
        .get_details_bad_request()
        .expect("BadRequest details");
    let fields: Vec<&str> = bad_request
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert!(fields.contains(&"route/api.upstream"), "{fields:?}");
    assert!(fields.contains(&"route/api.match.prefix"), "{fields:?}");
    let info = status.get_details_error_info().expect("ErrorInfo details");
    assert_eq!(info.reason, "INVALID_ARGUMENT");

    let unknown_kind = client
        .get_resource(GetResourceRequest {
            kind: "routes".into(),
            name: "api".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown_kind.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn server_info_names_the_build() {
    let server = TestServer::start().await;
    let viewer = server.token("v", "viewer").await;
    let info = server
        .grpc(Some(&viewer))
        .await
        .get_server_info(gateway_proto::v1::GetServerInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.store, "postgres");
}

/// `CreateUpstream(Upstream)` and friends take the bare resource, so their precondition and dry
/// run ride in request metadata (`etag`, `validate-only`) and the answer's metadata carries the
/// new `etag` and `x-config-version`.
#[tokio::test]
async fn per_kind_writes_take_etag_and_validate_only_metadata() {
    let server = TestServer::start().await;
    let mut client = server.grpc(Some(ROOT)).await;
    let with = |resource: Upstream, pairs: &[(&'static str, &str)]| {
        let mut request = tonic::Request::new(resource);
        for (key, value) in pairs {
            request.metadata_mut().insert(*key, value.parse().unwrap());
        }
        request
    };
    let meta = |response: &tonic::metadata::MetadataMap, key: &str| {
        response.get(key).map(|v| v.to_str().unwrap().to_owned())
    };

    // A dry-run create answers as the create would and writes nothing.
    let dry = client
        .create_upstream(with(web(1000), &[("validate-only", "true")]))
        .await
        .unwrap();
    assert_eq!(
        meta(dry.metadata(), "validate-only").as_deref(),
        Some("true")
    );
    let predicted = meta(dry.metadata(), "etag").expect("a dry run names the ETag");
    let missing = client
        .get_upstream(gateway_proto::v1::GetRequest { name: "web".into() })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let created = client.create_upstream(with(web(1000), &[])).await.unwrap();
    let etag = meta(created.metadata(), "etag").unwrap();
    assert_eq!(etag, predicted, "the dry run predicted the ETag");
    let version: u64 = meta(created.metadata(), "x-config-version")
        .unwrap()
        .parse()
        .unwrap();
    let got = get_web(&mut client).await.unwrap().into_inner();
    assert_eq!(got.etag, etag, "the same ETag as GetResource");

    // Replace with the current ETag writes; with the now stale one it is ABORTED.
    let replaced = client
        .replace_upstream(with(web(2000), &[("etag", &etag)]))
        .await
        .unwrap();
    assert_eq!(
        meta(replaced.metadata(), "x-config-version"),
        Some((version + 1).to_string())
    );
    assert_eq!(replaced.get_ref().connect_timeout_ms, 2000);
    let stale = client
        .replace_upstream(with(web(3000), &[("etag", &etag)]))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");

    // A dry-run replace changes nothing; a bad flag is refused, naming it.
    client
        .replace_upstream(with(web(4000), &[("validate-only", "1")]))
        .await
        .unwrap();
    let bad = client
        .replace_upstream(with(web(5000), &[("validate-only", "yes")]))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("validate-only"), "{}", bad.message());
    let after = client
        .get_upstream(gateway_proto::v1::GetRequest { name: "web".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.connect_timeout_ms, 2000);
}
