//! The per-request work outside the network, and the snapshot compile:
//! - `route_match`: the last route of 10, 1,000 and 10,000 (`RouteTable::find`, host
//!   normalization included), in the shape of the load benchmark's config (route `i`: host
//!   `h<i / 100>.bench.test`, prefix `/s<i % 100>/`);
//! - `rewrite_request` / `rewrite_response`: the header rewrite of a typical browser request
//!   and of a typical response;
//! - `compile_10k_routes`: a snapshot of 10,000 routes over 1,000 upstreams into a table.
//!
//! `cargo bench -p gateway-dataplane --bench hot_path`
//!
//! The allocation profiler counts what each allocates: a route match allocates nothing.

use std::net::{IpAddr, Ipv4Addr};

use divan::Bencher;
use gateway_dataplane::proxy::headers::{self, Forwarding};
use gateway_dataplane::route::normalize_host;
use gateway_dataplane::table::{HeaderEdits, RouteTable, compile};
use gateway_proto::v1::{Config, Route, RouteMatch, Target, Upstream, route_match::Path};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};

#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

/// `routes` routes over `upstreams` upstreams, as `bench-config` writes them.
fn config(routes: usize, upstreams: usize) -> Config {
    Config {
        upstreams: (0..upstreams)
            .map(|u| Upstream {
                name: format!("u{u:04}"),
                targets: vec![Target {
                    address: format!("10.1.{}.{}:8080", u / 250, u % 250),
                    weight: 1,
                }],
                ..Default::default()
            })
            .collect(),
        routes: (0..routes)
            .map(|i| Route {
                name: format!("r{i:05}"),
                r#match: Some(RouteMatch {
                    hosts: vec![format!("h{}.bench.test", i / 100)],
                    path: Some(Path::Prefix(format!("/s{}/", i % 100))),
                    methods: Vec::new(),
                }),
                upstream: format!("u{:04}", i % upstreams),
                ..Default::default()
            })
            .collect(),
        health_checks: vec![],
        certificates: vec![],
    }
}

fn table(routes: usize, upstreams: usize) -> RouteTable {
    match compile(&config(routes, upstreams)) {
        Ok(table) => table,
        Err(errors) => panic!("the bench config compiles: {errors:?}"),
    }
}

#[divan::bench(args = [10, 1_000, 10_000])]
fn route_match(bencher: Bencher<'_, '_>, routes: usize) {
    let table = table(routes, routes.div_ceil(10));
    let last = routes - 1;
    // As a client writes it: mixed case and a port, which normalization removes.
    let host = format!("H{}.Bench.Test:8080", last / 100);
    let path = format!("/s{}/x", last % 100);
    assert!(
        table
            .find(&normalize_host(&host), &path, &Method::GET)
            .is_some()
    );
    bencher.bench_local(|| {
        let host = normalize_host(divan::black_box(&host));
        divan::black_box(table.find(&host, divan::black_box(&path), &Method::GET))
            .map(|(route, _)| route.name.len())
    });
}

/// What a browser sends, with one earlier proxy in front of the gateway.
fn request_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("host", "api.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101",
        ),
        ("accept", "application/json, text/plain, */*"),
        ("accept-language", "en-GB,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br"),
        ("connection", "keep-alive"),
        ("x-forwarded-for", "198.51.100.4"),
        ("cookie", "session=0123456789abcdef"),
    ] {
        headers.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    headers
}

#[divan::bench]
fn rewrite_request(bencher: Bencher<'_, '_>) {
    let uri = Uri::from_static("/v1/items?page=2");
    let edits = HeaderEdits {
        set: vec![(
            HeaderName::from_static("x-route"),
            HeaderValue::from_static("items"),
        )],
        remove: vec![HeaderName::from_static("cookie")],
    };
    let client = headers::client_address(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
    let forwarding = Forwarding {
        client: &client,
        tls: false,
        upgrade: false,
    };
    bencher
        .with_inputs(request_headers)
        .bench_local_values(|mut headers| {
            headers::rewrite_request(&mut headers, &uri, forwarding, &edits);
            headers
        });
}

#[divan::bench]
fn rewrite_response(bencher: Bencher<'_, '_>) {
    let response = || {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("content-type", "application/json"),
            ("content-length", "512"),
            ("date", "Fri, 04 Dec 2026 15:00:00 GMT"),
            ("cache-control", "no-store"),
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        headers
    };
    bencher
        .with_inputs(response)
        .bench_local_values(|mut headers| {
            headers::rewrite_response(&mut headers);
            headers
        });
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn compile_10k_routes(bencher: Bencher<'_, '_>) {
    let config = config(10_000, 1_000);
    bencher
        .bench_local(|| compile(divan::black_box(&config)).map(|table| table.upstreams().count()));
}
