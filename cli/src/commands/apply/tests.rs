use gateway_proto::v1::{
    Header, HeaderRewrite, HttpHealthCheck, LoadBalancingPolicy, RouteMatch, StatusRange, Target,
    route_match,
};

use super::*;

fn source(name: &str, text: &str) -> Source {
    Source {
        name: name.into(),
        text: text.into(),
    }
}

fn parse(text: &str) -> Result<Config, Vec<String>> {
    parse_sources(&[source("gateway.yaml", text)])
}

fn parse_err(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(config) => panic!("parsed: {config:?}"),
        Err(errors) => errors,
    }
}

const GOOD: &str = r#"
# A whole gateway in one file.
kind: HealthCheckPolicy
api_version: gateway/v1
name: hc
http:
  path: /healthz
  expected_statuses: [{from: 200, to: 299}]
interval_ms: 2000
timeout_ms: 1000
healthy_threshold: 2
unhealthy_threshold: 3
---
kind: Upstream
name: web
labels: {team: web, tier: "1"}
targets:
  - {address: "10.0.0.1:8080", weight: 3}
  - address: 10.0.0.2:8080
load_balancing: LOAD_BALANCING_POLICY_ROUND_ROBIN
health_check: hc
connect_timeout_ms: 2000
---
---
kind: Route
name: api
match:
  hosts: [api.example.com]
  prefix: /v1
  methods: [GET]
priority: 10
upstream: web
request_headers:
  set: [{name: x-env, value: prod}]
  remove: [x-debug]
timeout_ms: 5000
"#;

#[test]
fn a_good_file_becomes_one_config() {
    let config = parse(GOOD).unwrap();
    assert_eq!(
        config.health_checks,
        vec![HealthCheckPolicy {
            name: "hc".into(),
            labels: Default::default(),
            check: Some(gateway_proto::v1::health_check_policy::Check::Http(
                HttpHealthCheck {
                    path: "/healthz".into(),
                    expected_statuses: vec![StatusRange { from: 200, to: 299 }],
                    ..Default::default()
                }
            )),
            interval_ms: 2000,
            timeout_ms: 1000,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            jitter_percent: 0,
        }]
    );
    assert_eq!(
        config.upstreams,
        vec![Upstream {
            name: "web".into(),
            labels: [("team".into(), "web".into()), ("tier".into(), "1".into())].into(),
            targets: vec![
                Target {
                    address: "10.0.0.1:8080".into(),
                    weight: 3
                },
                Target {
                    address: "10.0.0.2:8080".into(),
                    weight: 1
                },
            ],
            load_balancing: LoadBalancingPolicy::RoundRobin as i32,
            health_check: "hc".into(),
            connect_timeout_ms: 2000,
            ..Default::default()
        }]
    );
    assert_eq!(
        config.routes,
        vec![Route {
            name: "api".into(),
            labels: Default::default(),
            r#match: Some(RouteMatch {
                hosts: vec!["api.example.com".into()],
                path: Some(route_match::Path::Prefix("/v1".into())),
                methods: vec!["GET".into()],
            }),
            priority: 10,
            upstream: "web".into(),
            request_headers: Some(HeaderRewrite {
                set: vec![Header {
                    name: "x-env".into(),
                    value: "prod".into()
                }],
                remove: vec!["x-debug".into()],
            }),
            timeout_ms: 5000,
            ..Default::default()
        }]
    );
}

#[test]
fn unknown_field_names_file_document_resource_and_field() {
    let errors = parse_err(
        "kind: Upstream\nname: web\ntargets: [{address: \"a:1\"}]\n---\n\
         kind: Route\nname: api\nmatch: {pathh: /v1}\nupstream: web\n",
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    let error = &errors[0];
    assert!(
        error.starts_with("gateway.yaml:7:9: document 2 (Route \"api\"): "),
        "{error}"
    );
    assert!(error.contains("unknown field \"pathh\""), "{error}");
    assert!(error.contains("): match: unknown field"), "{error}");
    assert!(!error.contains("loadBalancing"), "{error}");
}

/// The line and column are those of the offending key in the file, across documents.
#[test]
fn unknown_field_points_at_its_key_in_the_file() {
    let text = "\
kind: Upstream
name: web
targets:
  - address: 10.0.0.1:8080
---
# The API route.
kind: Route
api_version: gateway/v1
name: api
upstream: web
priority: 10
match:
  hosts: [api.example.com]
  pathprefix: /v1
";
    assert_eq!(
        parse_err(text),
        vec![
            "gateway.yaml:14:3: document 2 (Route \"api\"): match: unknown field \"pathprefix\" \
             (expected one of: hosts, methods, exact, prefix)"
        ]
    );
}

/// A value of the wrong type or range points at the value, however deep it is.
#[test]
fn bad_values_point_at_the_value() {
    let errors = parse_err(
        "kind: Upstream\nname: web\ntargets:\n  - address: a:1\n  - address: b:1\n    weight: heavy\n",
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .starts_with("gateway.yaml:6:13: document 1 (Upstream \"web\"): targets[1].weight: "),
        "{errors:?}"
    );
}

/// JSON is read by the same parser, so its errors carry positions too, from a file or stdin.
#[test]
fn json_errors_name_line_and_column() {
    let json = "{\n  \"kind\": \"Route\",\n  \"name\": \"api\",\n  \"match\": {\"prefix\": \"/\", \"hostz\": []}\n}\n";
    for name in ["gateway.json", "<stdin>"] {
        let errors = parse_sources(&[source(name, json)]).unwrap_err();
        assert_eq!(
            errors,
            vec![format!(
                "{name}:4:28: document 1 (Route \"api\"): match: unknown field \"hostz\" \
                 (expected one of: hosts, methods, exact, prefix; did you mean \"hosts\"?)"
            )]
        );
    }
}

#[test]
fn misspelt_top_level_field_suggests_the_right_one() {
    let errors = parse_err("kind: Upstream\nname: web\ntarget: []\n");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(
            "gateway.yaml:3:1: document 1 (Upstream \"web\"): unknown field \"target\""
        ),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].contains("did you mean \"targets\"?"),
        "{}",
        errors[0]
    );
}

#[test]
fn unknown_kind_is_named() {
    let errors = parse_err("kind: Upstream\nname: web\n---\nkind: Listener\nname: site\n");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("gateway.yaml:4:7: document 2: unknown kind \"Listener\""),
        "{}",
        errors[0]
    );
    for kind in ["Upstream", "Route", "HealthCheckPolicy", "Certificate"] {
        assert!(errors[0].contains(kind), "{}", errors[0]);
    }
}

#[test]
fn missing_kind_and_wrong_api_version_are_errors() {
    let errors = parse_err("name: web\n---\nkind: Route\napi_version: gateway/v2\nname: api\n");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("gateway.yaml:1:1: document 1: missing `kind`"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1]
            .starts_with("gateway.yaml:4:14: document 2 (Route \"api\"): unsupported api_version"),
        "{}",
        errors[1]
    );
}

#[test]
fn bad_yaml_names_file_and_document() {
    let errors = parse_err("kind: Upstream\nname: web\n---\nkind: Route\nname: [unclosed\n");

    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("gateway.yaml:5:7: document 2: invalid YAML: "),
        "{}",
        errors[0]
    );
    // The position is in the file, not in the document, and said once.
    assert!(!errors[0].contains("line 5"), "{}", errors[0]);
}

#[test]
fn a_document_that_is_not_a_mapping_is_an_error() {
    // A sequence is a list of documents (see below); its items must be mappings too.
    for (text, at) in [("just text\n", "1:1"), ("- 1\n", "1:3")] {
        let errors = parse_err(text);
        assert!(
            errors[0].starts_with(&format!(
                "gateway.yaml:{at}: document 1: expected a mapping"
            )),
            "{text:?}: {errors:?}"
        );
    }
}

#[test]
fn wrong_types_and_enum_names_are_reported_with_their_field() {
    let errors = parse_err(
        "kind: Upstream\nname: web\nload_balancing: ROUND_ROBIN\n---\n\
         kind: HealthCheckPolicy\nname: hc\ninterval_ms: 2s\n",
    );
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("gateway.yaml:3:17: document 1 (Upstream \"web\"): load_balancing: "),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].contains("unknown variant \"ROUND_ROBIN\" (expected one of: LOAD_BALANCING_POLICY_UNSPECIFIED, LOAD_BALANCING_POLICY_ROUND_ROBIN,"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1]
            .starts_with("gateway.yaml:7:14: document 2 (HealthCheckPolicy \"hc\"): interval_ms: "),
        "{}",
        errors[1]
    );
    assert!(
        errors[1].ends_with("(durations are whole milliseconds, e.g. 2000)"),
        "{}",
        errors[1]
    );
}

#[test]
fn every_error_of_every_file_is_reported() {
    let errors = parse_sources(&[
        source("a.yaml", "kind: Route\nname: api\nupstrem: web\n"),
        source("b.yaml", "kind: Nope\n---\nkind: Upstream\nname: web\n"),
    ])
    .unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("a.yaml:3:1: document 1 (Route \"api\")"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].starts_with("b.yaml:1:7: document 1: unknown kind"),
        "{}",
        errors[1]
    );
}

#[test]
fn duplicates_across_files_name_both_places() {
    let errors = parse_sources(&[
        source("a.yaml", "kind: Upstream\nname: web\n"),
        source(
            "b.yaml",
            "kind: Route\nname: web\n---\nkind: Upstream\nname: web\n",
        ),
    ])
    .unwrap_err();
    assert_eq!(
        errors,
        vec![
            "b.yaml:5:7: document 2 (Upstream \"web\"): Upstream \"web\" is already defined at a.yaml:2:7 (document 1)"
        ]
    );
}

#[test]
fn a_resource_needs_a_name() {
    let errors = parse_err("kind: Upstream\ntargets: []\n");
    assert_eq!(
        errors,
        vec!["gateway.yaml:1:1: document 1 (Upstream): missing `name`"]
    );
}

#[test]
fn empty_documents_are_skipped() {
    let config = parse("# nothing\n---\n---\nkind: Upstream\nname: web\n").unwrap();
    assert_eq!(config.upstreams.len(), 1);
    assert_eq!(parse("").unwrap().resource_count(), 0);
}

/// What `get -o yaml` prints is what `apply` reads, including strings that look like numbers
/// or booleans.
#[test]
fn yaml_output_round_trips_through_apply() {
    let config = parse(GOOD).unwrap();
    let mut route = config.routes[0].clone();
    route.labels = [
        ("version".into(), "010".into()),
        ("enabled".into(), "true".into()),
        ("empty".into(), String::new()),
        ("null".into(), "null".into()),
    ]
    .into();
    let mut text = output::yaml_resources(&config.upstreams).unwrap();
    text.push_str("---\n");
    text.push_str(&output::yaml_resources(&[route.clone(), config.routes[0].clone()]).unwrap());
    text.push_str("---\n");
    text.push_str(&output::yaml_resources(&config.health_checks).unwrap());
    // Two routes with the same name would be a duplicate: rename the second.
    let text = text.replacen("name: api", "name: api-2", 1);
    assert!(text.starts_with("kind: Upstream\n"), "{text}");
    let back = parse(&text).unwrap();
    assert_eq!(back.upstreams, config.upstreams, "{text}");
    route.name = "api-2".into();
    let mut original = config.routes[0].clone();
    original.name = "api".into();
    assert_eq!(back.routes, vec![route, original], "{text}");
    assert_eq!(back.health_checks, config.health_checks, "{text}");
}

#[test]
fn field_errors_read_well() {
    assert_eq!(
        field_error("unknown field `pathh`, expected one of `hosts`, `methods`, `exact`, `prefix`"),
        "unknown field \"pathh\" (expected one of: hosts, methods, exact, prefix)"
    );
    assert_eq!(
        field_error("unknown field `prefx`, expected one of `hosts`, `prefix`"),
        "unknown field \"prefx\" (expected one of: hosts, prefix; did you mean \"prefix\"?)"
    );
    assert_eq!(field_error("invalid type: `x`"), "invalid type: \"x\"");
}

#[test]
fn edit_distances() {
    assert_eq!(edit_distance("pathh", "path"), 1);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
}

#[test]
fn summary_counts_and_lists() {
    let response = ApplyResponse {
        version: 7,
        created: vec!["upstream/web".into()],
        updated: vec![],
        unchanged: vec!["route/api".into(), "health-check/hc".into()],
        deleted: vec!["route/old".into()],
    };
    assert_eq!(
        summary(&response, false),
        "  created upstream/web\n  deleted route/old\n  unchanged route/api\n  unchanged health-check/hc\n\
         applied version 7: created 1, updated 0, deleted 1, unchanged 2\n"
    );
    assert_eq!(
        summary(&response, true),
        "  would create upstream/web\n  would delete route/old\n  unchanged route/api\n  unchanged health-check/hc\n\
         dry run, nothing applied: would create 1, update 0, delete 1; 2 unchanged\n"
    );
    assert_eq!(
        touched(&response),
        ["upstream/web", "route/old", "route/api", "health-check/hc"]
    );
}

#[test]
fn several_problems_are_listed() {
    assert_eq!(problems(&["a: b".into()]), "a: b");
    assert_eq!(
        problems(&["a: b".into(), "c: d".into()]),
        "2 problems in the apply files, nothing was sent:\n  - a: b\n  - c: d"
    );
}

#[test]
fn only_a_missing_weight_defaults_to_one() {
    let config = parse(
        "kind: Upstream\nname: web\ntargets: [{address: \"a:1\"}, {address: \"b:1\", weight: 0}]\n",
    )
    .unwrap();
    let weights: Vec<u32> = config.upstreams[0]
        .targets
        .iter()
        .map(|t| t.weight)
        .collect();
    assert_eq!(weights, vec![1, 0]);
}

/// `export` prints health checks, then upstreams, then routes, each sorted by name, and what it
/// prints applies back to the same config.
#[test]
fn exported_config_is_ordered_and_round_trips_through_apply() {
    let mut config = parse(GOOD).unwrap();
    let mut second = config.routes[0].clone();
    second.name = "a-first".into();
    config.routes.push(second);
    let mut other = config.health_checks[0].clone();
    other.name = "another".into();
    config.health_checks.push(other);

    let text = output::yaml_config(&config).unwrap();
    let order: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("name: "))
        .collect();
    assert_eq!(order, ["another", "hc", "web", "a-first", "api"], "{text}");
    let kinds: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .collect();
    assert_eq!(
        kinds,
        [
            "HealthCheckPolicy",
            "HealthCheckPolicy",
            "Upstream",
            "Route",
            "Route"
        ],
        "{text}"
    );

    let mut back = parse(&text).unwrap();
    back.canonicalize();
    config.canonicalize();
    assert_eq!(back, config, "{text}");
    // Rendering is a function of the content, not of the order the lists came in.
    let mut shuffled = config.clone();
    shuffled.routes.reverse();
    shuffled.health_checks.reverse();
    assert_eq!(output::yaml_config(&shuffled).unwrap(), text);
}

#[test]
fn an_empty_config_exports_as_nothing() {
    assert_eq!(output::yaml_config(&Config::default()).unwrap(), "");
}

/// `list -o json` prints a JSON array of apply documents; applying it reads each item.
#[test]
fn a_json_array_of_documents_is_its_items() {
    let config = parse(
        r#"[{"kind": "Upstream", "name": "a", "targets": [{"address": "10.0.0.1:80"}]},
            {"kind": "Upstream", "api_version": "gateway/v1", "name": "b"}]"#,
    )
    .unwrap();
    let names: Vec<&str> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    let errors = parse_err(r#"[{"kind": "Upstream", "name": "a"}, {"kind": "Nope"}]"#);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("gateway.yaml:1:46: document 1: unknown kind"),
        "{errors:?}"
    );
}

/// `-f DIR` reads the YAML and JSON files in it, in name order, and nothing else.
#[test]
fn a_directory_gives_its_yaml_and_json_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("b.json"),
        r#"{"kind": "Upstream", "name": "b"}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("a.yaml"), "kind: Upstream\nname: a\n").unwrap();
    std::fs::write(dir.path().join("c.yml"), "kind: Upstream\nname: c\n").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not config").unwrap();
    let sources = read_sources(&[dir.path().to_owned()]).unwrap();
    let files: Vec<&str> = sources
        .iter()
        .map(|s| s.name.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(files, ["a.yaml", "b.json", "c.yml"]);
    let names: Vec<String> = parse_sources(&sources)
        .unwrap()
        .upstreams
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
}
