use super::*;

/// `(name, hosts, path, methods, priority)`; a path ending in `*` is a prefix.
type Spec = (
    &'static str,
    &'static [&'static str],
    &'static str,
    &'static [&'static str],
    i32,
);

fn matcher(specs: &[Spec]) -> (RouteMatcher, Vec<&'static str>) {
    let rules = specs
        .iter()
        .enumerate()
        .map(|(i, (_, hosts, path, methods, priority))| MatchRule {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            path: match path.strip_suffix('*') {
                Some(prefix) => PathMatch::Prefix(prefix.to_string()),
                None => PathMatch::Exact(path.to_string()),
            },
            methods: methods
                .iter()
                .map(|m| Method::from_bytes(m.as_bytes()).unwrap())
                .collect(),
            priority: *priority,
            route: i,
        });
    let names = specs.iter().map(|s| s.0).collect();
    (RouteMatcher::new(rules), names)
}

fn check(specs: &[Spec], cases: &[(&str, &str, &str, Option<&str>)]) {
    let (matcher, names) = matcher(specs);
    for (host, path, method, want) in cases {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let got = matcher
            .find(&normalize_host(host), path, &method)
            .map(|i| names[i]);
        assert_eq!(got, *want, "{method} {host}{path}");
    }
}

#[test]
fn host_tiers_exact_then_wildcard_then_any() {
    let specs: &[Spec] = &[
        ("exact", &["api.example.com"], "/*", &[], 0),
        ("wild", &["*.example.com"], "/*", &[], 0),
        ("wild-deep", &["*.b.example.com"], "/*", &[], 0),
        ("any", &[], "/*", &[], 0),
    ];
    check(
        specs,
        &[
            ("api.example.com", "/x", "GET", Some("exact")),
            ("API.Example.com:8080", "/x", "GET", Some("exact")),
            ("api.example.com.", "/x", "GET", Some("exact")),
            ("a.example.com", "/x", "GET", Some("wild")),
            ("a.b.example.com", "/x", "GET", Some("wild-deep")),
            ("a.c.example.com", "/x", "GET", Some("wild")),
            ("b.example.com", "/x", "GET", Some("wild")),
            ("example.com", "/x", "GET", Some("any")),
            ("other.org", "/x", "GET", Some("any")),
            ("[::1]:8080", "/x", "GET", Some("any")),
        ],
    );
}

#[test]
fn wildcard_does_not_match_its_own_suffix() {
    let specs: &[Spec] = &[("wild", &["*.example.com"], "/*", &[], 0)];
    check(
        specs,
        &[
            ("example.com", "/", "GET", None),
            (".example.com", "/", "GET", None),
            ("x.example.com", "/", "GET", Some("wild")),
            ("x.y.example.com", "/", "GET", Some("wild")),
            ("xexample.com", "/", "GET", None),
        ],
    );
}

#[test]
fn falls_through_to_the_next_host_tier_when_the_path_does_not_match() {
    let specs: &[Spec] = &[
        ("exact-api", &["a.example.com"], "/api/*", &[], 0),
        ("wild-static", &["*.example.com"], "/static/*", &[], 0),
        ("any-root", &[], "/*", &[], 0),
    ];
    check(
        specs,
        &[
            ("a.example.com", "/api/v1", "GET", Some("exact-api")),
            ("a.example.com", "/static/x.css", "GET", Some("wild-static")),
            ("a.example.com", "/other", "GET", Some("any-root")),
        ],
    );
}

#[test]
fn priority_then_longest_path_then_exact_over_prefix() {
    let specs: &[Spec] = &[
        ("root", &[], "/*", &[], 0),
        ("api", &[], "/api/*", &[], 0),
        ("api-v1", &[], "/api/v1*", &[], 0),
        ("api-exact", &[], "/api/v1", &[], 0),
        ("boosted", &[], "/b*", &[], 10),
        ("b-long", &[], "/b/long/*", &[], 0),
    ];
    check(
        specs,
        &[
            ("h", "/", "GET", Some("root")),
            ("h", "/api/x", "GET", Some("api")),
            ("h", "/api/v1", "GET", Some("api-exact")),
            ("h", "/api/v1/users", "GET", Some("api-v1")),
            ("h", "/api/v10", "GET", Some("api-v1")),
            ("h", "/apix", "GET", Some("root")),
            ("h", "/b/long/x", "GET", Some("boosted")),
        ],
    );
}

#[test]
fn methods_filter_and_specific_methods_win_ties() {
    let specs: &[Spec] = &[
        ("read", &[], "/items*", &["GET", "HEAD"], 0),
        ("write", &[], "/items*", &["POST"], 0),
        ("other", &[], "/items*", &[], 0),
        ("only-delete", &[], "/admin", &["DELETE"], 0),
    ];
    check(
        specs,
        &[
            ("h", "/items", "GET", Some("read")),
            ("h", "/items/1", "HEAD", Some("read")),
            ("h", "/items", "POST", Some("write")),
            ("h", "/items", "PUT", Some("other")),
            ("h", "/admin", "DELETE", Some("only-delete")),
            ("h", "/admin", "GET", None),
        ],
    );
}

#[test]
fn exact_path_does_not_match_longer_paths() {
    let specs: &[Spec] = &[("exact", &[], "/health", &[], 0)];
    check(
        specs,
        &[
            ("h", "/health", "GET", Some("exact")),
            ("h", "/health/", "GET", None),
            ("h", "/healthz", "GET", None),
            ("h", "/", "GET", None),
        ],
    );
}

#[test]
fn multi_byte_paths_do_not_split_characters() {
    let specs: &[Spec] = &[("ab", &[], "/é*", &[], 0), ("root", &[], "/*", &[], 0)];
    check(
        specs,
        &[
            ("h", "/éa", "GET", Some("ab")),
            ("h", "/e", "GET", Some("root")),
        ],
    );
}

#[test]
fn empty_matcher_finds_nothing() {
    check(&[], &[("h", "/", "GET", None)]);
}

#[test]
fn ten_thousand_routes_still_match_correctly() {
    let rules = (0..10_000).map(|i| MatchRule {
        hosts: vec![format!("h{}.example.com", i % 100)],
        path: PathMatch::Prefix(format!("/svc/{i}/")),
        methods: vec![],
        priority: 0,
        route: i,
    });
    let matcher = RouteMatcher::new(rules);
    assert_eq!(
        matcher.find("h42.example.com", "/svc/4242/x", &Method::GET),
        Some(4242)
    );
    assert_eq!(
        matcher.find("h43.example.com", "/svc/4242/x", &Method::GET),
        None
    );
}

#[test]
fn normalize_host_strips_port_case_and_trailing_dot() {
    for (raw, want) in [
        ("Example.COM", "example.com"),
        ("example.com:8080", "example.com"),
        ("example.com.", "example.com"),
        ("[::1]:80", "[::1]"),
        ("10.0.0.1:80", "10.0.0.1"),
        ("", ""),
    ] {
        assert_eq!(normalize_host(raw), want, "{raw}");
    }
}
