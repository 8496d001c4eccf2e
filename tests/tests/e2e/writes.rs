//! Writes through the REST API and `gatewayctl`: accepted ones are stored, refused ones name
//! the field and change nothing.

use std::time::Duration;

use gateway_tests::{Gateway, TestUpstream, u64_field, violation_fields};
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{route_json, route_to, upstream_json};

/// Every name in the control plane and the version it and the data plane are at.
async fn snapshot_of_state(gw: &Gateway) -> (Vec<Vec<String>>, u64, u64) {
    let mut names = Vec::new();
    for kind in ["upstreams", "routes", "health-checks"] {
        names.push(gw.cp.names(kind).await);
    }
    let version = gw.cp.version().await;
    let applied = gw
        .dp()
        .applied_version()
        .await
        .expect("the data plane's /config");
    (names, version, applied)
}

fn assert_problem(response: &gateway_tests::HttpResponse, status: StatusCode) -> Value {
    assert_eq!(response.status, status, "{}", response.text());
    assert!(
        response
            .content_type()
            .starts_with("application/problem+json"),
        "content type {:?} for {}",
        response.content_type(),
        response.text()
    );
    let problem = response.json().expect("a problem+json body");
    assert_eq!(
        u64_field(&problem, "status").expect("a numeric status"),
        u64::from(status.as_u16()),
        "{problem}"
    );
    assert!(problem.get("title").is_some(), "no title: {problem}");
    problem
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_rest_writes_are_refused_and_change_nothing() {
    let gw = Gateway::start(1).await;
    let upstream = TestUpstream::start("upstream-a").await;
    route_to(&gw.cp, "web", "web.local", "web", &[&upstream]).await;
    gw.converge().await;
    let before = snapshot_of_state(&gw).await;

    // A route whose host is not lowercase.
    let response = gw
        .cp
        .rest(
            Method::POST,
            "/v1/routes",
            Some(&route_json("bad-host", "Web.LOCAL", "/", "web")),
        )
        .await;
    let problem = assert_problem(&response, StatusCode::BAD_REQUEST);
    assert!(
        violation_fields(&problem).contains(&"match.hosts[0]".to_owned()),
        "{problem}"
    );
    let errors = problem["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e["resource"] == "route/bad-host"),
        "{problem}"
    );

    // An upstream with two bad targets: every problem is reported, not just the first.
    let response = gw
        .cp
        .rest(
            Method::POST,
            "/v1/upstreams",
            Some(&upstream_json(
                "bad-targets",
                &[("127.0.0.1".into(), 1), ("127.0.0.1:80".into(), 0)],
            )),
        )
        .await;
    let problem = assert_problem(&response, StatusCode::BAD_REQUEST);
    let fields = violation_fields(&problem);
    assert!(
        fields.contains(&"targets[0].address".to_owned()),
        "{problem}"
    );
    assert!(
        fields.contains(&"targets[1].weight".to_owned()),
        "{problem}"
    );

    // A route to an upstream that does not exist.
    let response = gw
        .cp
        .rest(
            Method::POST,
            "/v1/routes",
            Some(&route_json("orphan", "orphan.local", "/", "missing")),
        )
        .await;
    let problem = assert_problem(&response, StatusCode::BAD_REQUEST);
    assert!(
        violation_fields(&problem).contains(&"upstream".to_owned()),
        "{problem}"
    );

    // A replacement that breaks an existing route.
    let response = gw
        .cp
        .rest(
            Method::PUT,
            "/v1/routes/web",
            Some(&route_json("web", "web.local", "no-slash", "web")),
        )
        .await;
    let problem = assert_problem(&response, StatusCode::BAD_REQUEST);
    assert!(
        violation_fields(&problem).contains(&"match.prefix".to_owned()),
        "{problem}"
    );

    // Not JSON, and not declared as JSON.
    let response = gw
        .cp
        .rest_raw(
            Method::POST,
            "/v1/upstreams",
            Some("application/json"),
            "{not json",
        )
        .await;
    assert_problem(&response, StatusCode::BAD_REQUEST);
    let response = gw
        .cp
        .rest_raw(
            Method::POST,
            "/v1/upstreams",
            Some("text/plain"),
            upstream_json("plain", &[("127.0.0.1:1".into(), 1)]).to_string(),
        )
        .await;
    assert_problem(&response, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Nothing changed: not the lists, not the version, not what the data plane runs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(snapshot_of_state(&gw).await, before);
    let response = gw.dp().get("web.local", "/").await.unwrap();
    assert_eq!(response.text(), "upstream-a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_cli_writes_are_refused_and_change_nothing() {
    let gw = Gateway::start(1).await;
    let upstream = TestUpstream::start("upstream-a").await;
    route_to(&gw.cp, "web", "web.local", "web", &[&upstream]).await;
    gw.converge().await;
    let before = snapshot_of_state(&gw).await;

    let out = gw
        .cp
        .ctl(&[
            "route",
            "create",
            "bad-host",
            "--host",
            "Web.LOCAL",
            "--path-prefix",
            "/",
            "--upstream",
            "web",
        ])
        .await;
    out.assert_refused();
    assert!(out.stderr.contains("match.hosts[0]"), "{}", out.stderr);

    let out = gw
        .cp
        .ctl(&[
            "upstream",
            "create",
            "bad-target",
            "--target",
            "not_a_host:80",
        ])
        .await;
    out.assert_refused();
    // Caught by the CLI (naming the flag) or by the control plane (naming the field).
    assert!(
        out.stderr.contains("--target") || out.stderr.contains("targets[0].address"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("not_a_host"), "{}", out.stderr);

    let out = gw
        .cp
        .ctl(&[
            "route",
            "create",
            "orphan",
            "--host",
            "orphan.local",
            "--path-prefix",
            "/",
            "--upstream",
            "missing",
        ])
        .await;
    out.assert_refused();
    assert!(out.stderr.contains("missing"), "{}", out.stderr);

    // Unknown resources and bad flags are refused too, without a panic.
    gw.cp
        .ctl(&["upstream", "get", "no-such-upstream"])
        .await
        .assert_refused();
    gw.cp
        .ctl(&["upstream", "create", "w", "--target", "127.0.0.1:80=abc"])
        .await
        .assert_refused();

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(snapshot_of_state(&gw).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_upstream_in_use_is_refused() {
    let gw = Gateway::start(1).await;
    let upstream = TestUpstream::start("upstream-a").await;
    route_to(&gw.cp, "uses-web", "web.local", "web", &[&upstream]).await;
    let version = gw.converge().await;

    let response = gw.cp.rest(Method::DELETE, "/v1/upstreams/web", None).await;
    let problem = assert_problem(&response, StatusCode::CONFLICT);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or("")
            .contains("uses-web"),
        "the refusal should name the route: {problem}"
    );

    let out = gw.cp.ctl(&["upstream", "delete", "web"]).await;
    out.assert_refused();
    assert!(out.stderr.contains("uses-web"), "{}", out.stderr);

    assert_eq!(gw.cp.names("upstreams").await, ["web"]);
    assert_eq!(gw.cp.version().await, version);
    let response = gw.dp().get("web.local", "/").await.unwrap();
    assert_eq!(response.text(), "upstream-a");

    // Once the route is gone the upstream can go too.
    gw.cp
        .ctl(&["route", "delete", "uses-web"])
        .await
        .assert_success();
    let response = gw.cp.rest(Method::DELETE, "/v1/upstreams/web", None).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let deleted_at = u64_field(&response.json().unwrap(), "version").unwrap();
    assert!(deleted_at > version, "delete returned version {deleted_at}");
    assert!(gw.cp.names("upstreams").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_resources_round_trip() {
    let gw = Gateway::start(0).await;
    let cp = &gw.cp;

    let created = cp
        .create(
            "upstreams",
            upstream_json(
                "web",
                &[("127.0.0.1:9001".into(), 1), ("127.0.0.1:9002".into(), 3)],
            ),
        )
        .await;
    assert_eq!(created["name"], "web");
    assert_eq!(created["targets"][1]["weight"], 3);

    let again = cp
        .rest(
            Method::POST,
            "/v1/upstreams",
            Some(&upstream_json("web", &[("127.0.0.1:9001".into(), 1)])),
        )
        .await;
    assert_problem(&again, StatusCode::CONFLICT);

    let fetched = cp.get_json("/v1/upstreams/web").await;
    assert_eq!(fetched["targets"], created["targets"]);

    let replaced = cp
        .rest(
            Method::PUT,
            "/v1/upstreams/web",
            Some(&upstream_json("web", &[("127.0.0.1:9003".into(), 2)])),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text());
    let fetched = cp.get_json("/v1/upstreams/web").await;
    assert_eq!(
        fetched["targets"],
        json!([{ "address": "127.0.0.1:9003", "weight": 2 }])
    );

    cp.create(
        "health-checks",
        json!({"name":"hc","http":{"path":"/healthz"},"interval_ms":1000,"timeout_ms":500,"healthy_threshold":1,"unhealthy_threshold":2}),
    )
    .await;
    cp.create("routes", route_json("r", "example.local", "/", "web"))
        .await;
    assert_eq!(cp.names("upstreams").await, ["web"]);
    assert_eq!(cp.names("routes").await, ["r"]);
    assert_eq!(cp.names("health-checks").await, ["hc"]);

    let missing = cp.rest(Method::GET, "/v1/routes/nope", None).await;
    assert_problem(&missing, StatusCode::NOT_FOUND);
    let missing = cp.rest(Method::DELETE, "/v1/routes/nope", None).await;
    assert_problem(&missing, StatusCode::NOT_FOUND);

    let version = cp.version().await;
    let deleted = cp.rest(Method::DELETE, "/v1/routes/r", None).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text());
    assert_eq!(
        u64_field(&deleted.json().unwrap(), "version").unwrap(),
        version + 1
    );
    assert!(cp.names("routes").await.is_empty());
    assert_eq!(cp.version().await, version + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_creates_lists_and_deletes() {
    let gw = Gateway::start(1).await;
    let (a, b) = (
        TestUpstream::start("upstream-a").await,
        TestUpstream::start("upstream-b").await,
    );
    let weighted_b = format!("{}=3", b.address());
    gw.cp
        .ctl(&[
            "upstream",
            "create",
            "web",
            "--target",
            &a.address(),
            "--target",
            &weighted_b,
        ])
        .await
        .assert_success();
    gw.cp
        .ctl(&[
            "healthcheck",
            "create",
            "hc",
            "--http-path",
            "/healthz",
            "--interval",
            "1s",
            "--timeout",
            "500ms",
            "--healthy-threshold",
            "1",
            "--unhealthy-threshold",
            "2",
        ])
        .await
        .assert_success();
    gw.cp
        .ctl(&[
            "route",
            "create",
            "cli-route",
            "--host",
            "cli.local",
            "--path-prefix",
            "/",
            "--upstream",
            "web",
        ])
        .await
        .assert_success();

    let web = gw.cp.ctl(&["upstream", "get", "web", "-o", "json"]).await;
    let web = web.assert_success().json();
    let targets = web["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2, "{web}");
    assert_eq!(targets[0]["address"], a.address());
    assert_eq!(u64_field(&targets[0], "weight").unwrap(), 1);
    assert_eq!(u64_field(&targets[1], "weight").unwrap(), 3);

    let hc = gw.cp.ctl(&["healthcheck", "get", "hc", "-o", "json"]).await;
    let hc = hc.assert_success().json();
    assert_eq!(u64_field(&hc, "interval_ms").unwrap(), 1000, "{hc}");
    assert_eq!(u64_field(&hc, "timeout_ms").unwrap(), 500, "{hc}");

    let table = gw.cp.ctl(&["route", "list"]).await;
    assert!(table.assert_success().stdout.contains("cli-route"));
    let yaml = gw.cp.ctl(&["upstream", "list", "-o", "yaml"]).await;
    assert!(yaml.assert_success().stdout.contains("web"));
    let listed = gw.cp.ctl(&["route", "list", "-o", "json"]).await;
    assert!(listed.assert_success().stdout.contains("cli.local"));

    // Weights reach the data plane: 1:3 round robin over eight requests.
    gw.converge().await;
    gw.dp()
        .wait_for_response(crate::SOON, "cli.local", "/", StatusCode::OK, None)
        .await;
    let mut to_b = 0;
    for _ in 0..8 {
        if gw.dp().get("cli.local", "/").await.unwrap().text() == "upstream-b" {
            to_b += 1;
        }
    }
    assert_eq!(to_b, 6, "upstream-b (weight 3) got {to_b} of 8 requests");

    gw.cp
        .ctl(&["route", "delete", "cli-route"])
        .await
        .assert_success();
    gw.cp
        .ctl(&["upstream", "delete", "web"])
        .await
        .assert_success();
    gw.cp
        .ctl(&["healthcheck", "delete", "hc"])
        .await
        .assert_success();
    for kind in ["upstreams", "routes", "health-checks"] {
        assert!(gw.cp.names(kind).await.is_empty(), "{kind} left behind");
    }
}
