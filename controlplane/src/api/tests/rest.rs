//! REST semantics: pagination and label filters, PUT upserts, merge patches, ETags and
//! preconditions (no lost update under concurrent writers), dry runs.

use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::*;

fn names(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {body}"))
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Writes `count` upstreams `u00…` in one apply; every 3rd has team=a, every 2nd env=prod.
async fn seed(server: &TestServer, count: usize) {
    let upstreams: Vec<Value> = (0..count)
        .map(|i| {
            let mut labels = serde_json::Map::new();
            if i % 3 == 0 {
                labels.insert("team".into(), json!("a"));
            }
            if i % 2 == 0 {
                labels.insert("env".into(), json!("prod"));
            }
            let mut u = upstream(&format!("u{i:02}"));
            u["labels"] = Value::Object(labels);
            u
        })
        .collect();
    let reply = server
        .send(
            Method::POST,
            "/v1/apply",
            Some(ROOT),
            &[],
            Some(json!({ "upstreams": upstreams })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

/// Follows `next_page_token` from `path` to the end, returning each page's names.
async fn pages(server: &TestServer, path: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let url = match &token {
            None => path.to_owned(),
            Some(t) => format!("{path}&page_token={t}"),
        };
        let reply = server.call(Method::GET, &url, Some(ROOT)).await;
        assert_eq!(reply.status, StatusCode::OK, "{url}: {}", reply.body);
        pages.push(names(&reply.body));
        match reply.body["next_page_token"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => return pages,
        }
    }
}

#[tokio::test]
async fn lists_paginate_and_filter_by_labels() {
    let server = TestServer::start().await;
    seed(&server, 25).await;

    let all = pages(&server, "/v1/upstreams?page_size=10").await;
    assert_eq!(all.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
    let flat: Vec<String> = all.concat();
    let expected: Vec<String> = (0..25).map(|i| format!("u{i:02}")).collect();
    assert_eq!(flat, expected, "every item once, in name order");

    // The default page holds them all (100), with no token.
    let reply = server.call(Method::GET, "/v1/upstreams", Some(ROOT)).await;
    assert_eq!(names(&reply.body).len(), 25);
    assert!(reply.body.get("next_page_token").is_none());

    // Labels: AND of every selector, across pages.
    let both = pages(
        &server,
        "/v1/upstreams?label=team=a&label=env=prod&page_size=2",
    )
    .await;
    assert_eq!(both.concat(), ["u00", "u06", "u12", "u18", "u24"]);
    assert_eq!(both.len(), 3);
    let team = pages(&server, "/v1/upstreams?label=team=a&page_size=100").await;
    assert_eq!(team.concat().len(), 9);
    let none = pages(&server, "/v1/upstreams?label=team=nobody&page_size=5").await;
    assert_eq!(none, [Vec::<String>::new()]);

    // A page token continues where it left off even when the list changed in between.
    let first = server
        .call(Method::GET, "/v1/upstreams?page_size=10", Some(ROOT))
        .await;
    let token = first.body["next_page_token"].as_str().unwrap().to_owned();
    let created = server
        .send(
            Method::POST,
            "/v1/upstreams",
            Some(ROOT),
            &[],
            Some(upstream("u00a")),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let deleted = server
        .call(Method::DELETE, "/v1/upstreams/u10", Some(ROOT))
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    let second = server
        .call(
            Method::GET,
            &format!("/v1/upstreams?page_size=10&page_token={token}"),
            Some(ROOT),
        )
        .await;
    assert_eq!(names(&second.body)[0], "u11");

    // Bad input is a problem, never a silent default.
    for bad in [
        "/v1/upstreams?page_token=nonsense",
        "/v1/upstreams?page_size=ten",
        "/v1/upstreams?label=team",
        "/v1/upstreams?lable=team=a",
        &format!("/v1/routes?page_token={token}"),
    ] {
        let reply = server.call(Method::GET, bad, Some(ROOT)).await;
        reply.assert_problem(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    }
    // Too large a page is capped, not refused.
    let reply = server
        .call(Method::GET, "/v1/upstreams?page_size=5000", Some(ROOT))
        .await;
    assert_eq!(reply.status, StatusCode::OK);

    // The other lists paginate the same way.
    let versions = server
        .call(Method::GET, "/v1/versions?page_size=1", Some(ROOT))
        .await;
    assert_eq!(versions.body["items"].as_array().unwrap().len(), 1);
    assert!(versions.body["next_page_token"].is_string());
    let audit = server
        .call(Method::GET, "/v1/audit?page_size=2", Some(ROOT))
        .await;
    assert_eq!(audit.body["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn put_is_an_idempotent_upsert_with_etags() {
    let server = TestServer::start().await;
    let put = |body: Value| {
        server.send(
            Method::PUT,
            "/v1/upstreams/web",
            Some(ROOT),
            &[],
            Some(body),
        )
    };

    let created = put(upstream("web")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.header("location"), Some("/v1/upstreams/web"));
    let etag = created.header("etag").unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let version = created.header("x-config-version").unwrap().to_owned();

    // The same body again: 200, same ETag, no new version.
    let again = put(upstream("web")).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    assert_eq!(again.header("x-config-version"), Some(version.as_str()));

    // GET carries the same ETag; a change makes a new one.
    let fetched = server
        .call(Method::GET, "/v1/upstreams/web", Some(ROOT))
        .await;
    assert_eq!(fetched.header("etag"), Some(etag.as_str()));
    let mut changed = upstream("web");
    changed["connect_timeout_ms"] = json!(1500);
    let replaced = put(changed).await;
    assert_eq!(replaced.status, StatusCode::OK);
    assert_ne!(replaced.header("etag"), Some(etag.as_str()));

    // The name comes from the path; a different one in the body is refused.
    let body_without_name = json!({"targets": [{"address": "127.0.0.1:9001", "weight": 1}]});
    let reply = server
        .send(
            Method::PUT,
            "/v1/upstreams/other",
            Some(ROOT),
            &[],
            Some(body_without_name),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let reply = server
        .send(
            Method::PUT,
            "/v1/upstreams/web",
            Some(ROOT),
            &[],
            Some(upstream("other")),
        )
        .await;
    reply.assert_problem(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
}

#[tokio::test]
async fn preconditions_refuse_stale_writes_with_412() {
    let server = TestServer::start().await;
    let created = server
        .send(
            Method::POST,
            "/v1/upstreams",
            Some(ROOT),
            &[],
            Some(upstream("web")),
        )
        .await;
    let first = created.header("etag").unwrap().to_owned();
    let mut v2 = upstream("web");
    v2["connect_timeout_ms"] = json!(2000);
    let updated = server
        .send(
            Method::PUT,
            "/v1/upstreams/web",
            Some(ROOT),
            &[("if-match", &first)],
            Some(v2.clone()),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    let second = updated.header("etag").unwrap().to_owned();

    // Stale If-Match: 412 ABORTED, nothing written.
    let mut v3 = v2.clone();
    v3["connect_timeout_ms"] = json!(3000);
    let stale = server
        .send(
            Method::PUT,
            "/v1/upstreams/web",
            Some(ROOT),
            &[("if-match", &first)],
            Some(v3.clone()),
        )
        .await;
    stale.assert_problem(StatusCode::PRECONDITION_FAILED, "ABORTED");
    let fetched = server
        .call(Method::GET, "/v1/upstreams/web", Some(ROOT))
        .await;
    assert_eq!(fetched.body["connect_timeout_ms"], 2000);
    assert_eq!(fetched.header("etag"), Some(second.as_str()));

    // If-None-Match: * creates only; If-Match on a missing resource fails.
    let exists = server
        .send(
            Method::PUT,
            "/v1/upstreams/web",
            Some(ROOT),
            &[("if-none-match", "*")],
            Some(v3.clone()),
        )
        .await;
    exists.assert_problem(StatusCode::PRECONDITION_FAILED, "ABORTED");
    let missing = server
        .send(
            Method::PUT,
            "/v1/upstreams/nope",
            Some(ROOT),
            &[("if-match", "*")],
            Some(upstream("nope")),
        )
        .await;
    missing.assert_problem(StatusCode::PRECONDITION_FAILED, "ABORTED");
    let weak = server
        .send(
            Method::PUT,
            "/v1/upstreams/web",
            Some(ROOT),
            &[("if-match", &format!("W/{second}"))],
            Some(v3.clone()),
        )
        .await;
    weak.assert_problem(StatusCode::PRECONDITION_FAILED, "ABORTED");

    // Deletes too.
    let stale = server
        .send(
            Method::DELETE,
            "/v1/upstreams/web",
            Some(ROOT),
            &[("if-match", &first)],
            None,
        )
        .await;
    stale.assert_problem(StatusCode::PRECONDITION_FAILED, "ABORTED");
    let deleted = server
        .send(
            Method::DELETE,
            "/v1/upstreams/web",
            Some(ROOT),
            &[("if-match", &second)],
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
}

/// Two writers read the same version and write at once: exactly one wins, the other gets 412.
/// Then many writers in read-modify-write loops, each adding its own label with If-Match and
/// retrying on 412: every label survives.
#[tokio::test]
async fn concurrent_writers_never_lose_an_update() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let created = server
        .send(
            Method::POST,
            "/v1/upstreams",
            Some(ROOT),
            &[],
            Some(upstream("web")),
        )
        .await;
    let etag = created.header("etag").unwrap().to_owned();

    let race = |timeout: u32| {
        let server = server.clone();
        let etag = etag.clone();
        async move {
            let mut body = upstream("web");
            body["connect_timeout_ms"] = json!(timeout);
            server
                .send(
                    Method::PUT,
                    "/v1/upstreams/web",
                    Some(ROOT),
                    &[("if-match", &etag)],
                    Some(body),
                )
                .await
        }
    };
    let (a, b) = tokio::join!(race(1111), race(2222));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::PRECONDITION_FAILED]);
    let winner = if a.status == StatusCode::OK {
        1111
    } else {
        2222
    };
    let fetched = server
        .call(Method::GET, "/v1/upstreams/web", Some(ROOT))
        .await;
    assert_eq!(fetched.body["connect_timeout_ms"], winner);

    const WRITERS: usize = 6;
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            loop {
                let current = server
                    .call(Method::GET, "/v1/upstreams/web", Some(ROOT))
                    .await;
                let etag = current.header("etag").unwrap().to_owned();
                let mut body = current.body.clone();
                body["labels"][format!("writer-{writer}")] = json!("done");
                let reply = server
                    .send(
                        Method::PUT,
                        "/v1/upstreams/web",
                        Some(ROOT),
                        &[("if-match", &etag)],
                        Some(body),
                    )
                    .await;
                match reply.status {
                    StatusCode::OK => return conflicts,
                    StatusCode::PRECONDITION_FAILED => conflicts += 1,
                    other => panic!("unexpected {other}: {}", reply.body),
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let fetched = server
        .call(Method::GET, "/v1/upstreams/web", Some(ROOT))
        .await;
    let labels = fetched.body["labels"].as_object().unwrap();
    assert_eq!(labels.len(), WRITERS, "{labels:?}");
}

#[tokio::test]
async fn patch_is_a_json_merge_patch() {
    let server = TestServer::start().await;
    let mut web = upstream("web");
    web["labels"] = json!({"team": "web", "tier": "1"});
    server
        .send(Method::POST, "/v1/upstreams", Some(ROOT), &[], Some(web))
        .await;
    let merge = [("content-type", "application/merge-patch+json")];
    let patch = |body: Value, headers: Vec<(&'static str, String)>| {
        let server = &server;
        async move {
            let mut all: Vec<(&str, &str)> = merge.to_vec();
            all.extend(headers.iter().map(|(n, v)| (*n, v.as_str())));
            server
                .send(
                    Method::PATCH,
                    "/v1/upstreams/web",
                    Some(ROOT),
                    &all,
                    Some(body),
                )
                .await
        }
    };

    let patched = patch(
        json!({"labels": {"tier": null, "env": "prod"}, "connect_timeout_ms": 1200}),
        vec![],
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(
        patched.body["labels"],
        json!({"team": "web", "env": "prod"})
    );
    assert_eq!(patched.body["connect_timeout_ms"], 1200);
    assert_eq!(
        patched.body["targets"][0]["address"], "127.0.0.1:9001",
        "untouched"
    );
    let etag = patched.header("etag").unwrap().to_owned();

    // Lists are replaced whole.
    let patched = patch(
        json!({"targets": [{"address": "127.0.0.1:9002", "weight": 2}]}),
        vec![("if-match", etag.clone())],
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["targets"].as_array().unwrap().len(), 1);

    // Stale ETag, wrong media type, rename, invalid result, unknown field, missing resource.
    let stale = patch(json!({"connect_timeout_ms": 1}), vec![("if-match", etag)]).await;
    stale.assert_problem(StatusCode::PRECONDITION_FAILED, "ABORTED");
    let plain_json = server
        .send(
            Method::PATCH,
            "/v1/upstreams/web",
            Some(ROOT),
            &[],
            Some(json!({})),
        )
        .await;
    plain_json.assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "INVALID_ARGUMENT");
    assert_eq!(
        plain_json.header("accept-patch"),
        Some("application/merge-patch+json")
    );
    let rename = patch(json!({"name": "other"}), vec![]).await;
    rename.assert_problem(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    let invalid = patch(
        json!({"targets": [{"address": "nope", "weight": 1}]}),
        vec![],
    )
    .await;
    invalid.assert_problem(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    assert_eq!(
        invalid.body["errors"][0]["resource"], "upstream/web",
        "{}",
        invalid.body
    );
    let unknown = patch(json!({"tragets": []}), vec![]).await;
    unknown.assert_problem(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    let missing = server
        .send(
            Method::PATCH,
            "/v1/upstreams/nope",
            Some(ROOT),
            &merge,
            Some(json!({})),
        )
        .await;
    missing.assert_problem(StatusCode::NOT_FOUND, "NOT_FOUND");
}

async fn config_version(server: &TestServer) -> Value {
    let status = server.call(Method::GET, "/v1/status", Some(ROOT)).await;
    status.body["version"].clone()
}

#[tokio::test]
async fn validate_only_changes_nothing() {
    let server = TestServer::start().await;
    let before = config_version(&server).await;

    let dry = server
        .send(
            Method::POST,
            "/v1/upstreams?validate_only=true",
            Some(ROOT),
            &[],
            Some(upstream("web")),
        )
        .await;
    assert_eq!(dry.status, StatusCode::CREATED, "{}", dry.body);
    assert_eq!(dry.header("x-validate-only"), Some("true"));
    assert!(dry.header("x-config-version").is_none());
    assert!(dry.header("etag").is_some());
    let missing = server
        .call(Method::GET, "/v1/upstreams/web", Some(ROOT))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(config_version(&server).await, before);

    // A dry run checks everything: an invalid write is refused the same way.
    let route = json!({"name": "r", "match": {"prefix": "/"}, "upstream": "missing"});
    let refused = server
        .send(
            Method::POST,
            "/v1/routes?validate_only",
            Some(ROOT),
            &[],
            Some(route),
        )
        .await;
    refused.assert_problem(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");

    // Apply: the plan without the commit; then prune by selector, for real.
    let mut keep = upstream("keep");
    keep["labels"] = json!({"owner": "other"});
    let mut old = upstream("old");
    old["labels"] = json!({"owner": "ci"});
    let applied = server
        .send(
            Method::POST,
            "/v1/apply",
            Some(ROOT),
            &[],
            Some(json!({"upstreams": [keep, old]})),
        )
        .await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.body);
    let mut web = upstream("web");
    web["labels"] = json!({"owner": "ci"});
    let plan = server
        .send(
            Method::POST,
            "/v1/apply?validate_only=true&prune=true&selector=owner=ci",
            Some(ROOT),
            &[],
            Some(json!({"upstreams": [web]})),
        )
        .await;
    assert_eq!(plan.status, StatusCode::OK, "{}", plan.body);
    assert_eq!(plan.body["created"], json!(["upstream/web"]));
    assert_eq!(plan.body["deleted"], json!(["upstream/old"]));
    let listed = server.call(Method::GET, "/v1/upstreams", Some(ROOT)).await;
    assert_eq!(names(&listed.body), ["keep", "old"]);

    let pruned = server
        .send(
            Method::POST,
            "/v1/apply?prune=true&selector=owner=ci",
            Some(ROOT),
            &[],
            Some(json!({"upstreams": [web]})),
        )
        .await;
    assert_eq!(pruned.status, StatusCode::OK, "{}", pruned.body);
    assert_eq!(pruned.body["deleted"], json!(["upstream/old"]));
    let listed = server.call(Method::GET, "/v1/upstreams", Some(ROOT)).await;
    assert_eq!(names(&listed.body), ["keep", "web"]);

    let selector_alone = server
        .send(
            Method::POST,
            "/v1/apply?selector=owner=ci",
            Some(ROOT),
            &[],
            Some(json!({})),
        )
        .await;
    selector_alone.assert_problem(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
}

/// Found by the schemathesis pass (tests/fuzz): a path parameter that does not parse was axum's
/// plain-text 400, not the problem+json every other bad input gets.
#[tokio::test]
async fn a_path_parameter_that_does_not_parse_is_a_problem() {
    let server = TestServer::start().await;
    for bad in [
        "/v1/versions/-1",
        "/v1/versions/ten",
        "/v1/versions/99999999999999999999",
    ] {
        let reply = server.call(Method::GET, bad, Some(ROOT)).await;
        reply.assert_problem(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    }
}
