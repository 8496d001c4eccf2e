//! The benchmark config: `routes` routes over `upstreams` upstreams, shared by
//! `bench-distribution` and `bench-config` (which `tests/bench/load.sh` applies), so both
//! benchmarks measure the same shape.
//!
//! Route `i` is `r<i>`: host `h<i / 100>.bench.test`, path prefix `/s<i % 100>/`, upstream
//! `u<i % upstreams>`. So 10,000 routes are 100 hosts of 100 prefixes each (two prefix lengths),
//! and 10 routes are one host of 10 prefixes: a lookup probes one host and at most two prefix
//! lengths in both, which is what "the last of 10,000 routes vs one of 10" compares.

#![allow(dead_code, reason = "each bench binary uses a different part")]

use gateway_proto::v1::{Config, Header, HeaderRewrite, Route, RouteMatch, Target, Upstream};

/// Where the requests for route `i` go: (Host header, path).
pub fn route_request(i: usize) -> (String, String) {
    (
        format!("h{}.bench.test", i / 100),
        format!("/s{}/x", i % 100),
    )
}

/// The whole config. `target(u)` is the address of upstream `u`'s only target.
pub fn config(routes: usize, upstreams: usize, target: impl Fn(usize) -> String) -> Config {
    let upstreams = upstreams.max(1);
    Config {
        upstreams: (0..upstreams)
            .map(|u| Upstream {
                name: upstream_name(u),
                targets: vec![Target {
                    address: target(u),
                    weight: 1,
                }],
                ..Default::default()
            })
            .collect(),
        routes: (0..routes).map(|i| route(i, upstreams, None)).collect(),
        health_checks: Vec::new(),
        certificates: vec![],
    }
}

/// Route `i`; `revision` sets an `x-bench-rev` request header, which is how benchmarks make a
/// one-route change.
pub fn route(i: usize, upstreams: usize, revision: Option<u64>) -> Route {
    let (host, _) = route_request(i);
    Route {
        name: format!("r{i:05}"),
        r#match: Some(RouteMatch {
            hosts: vec![host],
            path: Some(gateway_proto::v1::route_match::Path::Prefix(format!(
                "/s{}/",
                i % 100
            ))),
            methods: Vec::new(),
        }),
        upstream: upstream_name(i % upstreams.max(1)),
        request_headers: revision.map(|rev| HeaderRewrite {
            set: vec![Header {
                name: "x-bench-rev".into(),
                value: rev.to_string(),
            }],
            remove: Vec::new(),
        }),
        ..Default::default()
    }
}

/// Any host, any path, to the first upstream: what the throughput benchmarks hit.
pub fn catch_all() -> Route {
    Route {
        name: "catch-all".into(),
        r#match: Some(RouteMatch {
            hosts: Vec::new(),
            path: Some(gateway_proto::v1::route_match::Path::Prefix("/".into())),
            methods: Vec::new(),
        }),
        upstream: upstream_name(0),
        ..Default::default()
    }
}

fn upstream_name(u: usize) -> String {
    format!("u{u:04}")
}
