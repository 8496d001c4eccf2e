//! One pick of each balancing policy at 3, 100 and 1,000 targets, through the table's real
//! `UpstreamPool::pick` (health and in-flight reads included).
//!
//! `cargo bench -p gateway-dataplane --bench balance`
//!
//! The allocation profiler shows a pick allocates nothing; `build_maglev` is the cost of one
//! maglev table (once per config that changes the upstream).

use divan::Bencher;
use gateway_dataplane::table::{RouteTable, Tried, compile};
use gateway_proto::v1::{
    Config, HashOn, LoadBalancingPolicy, Route, RouteMatch, Target, Upstream, hash_on,
    route_match::Path,
};
use http::Method;

const TARGETS: &[usize] = &[3, 100, 1000];

#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

fn table(policy: LoadBalancingPolicy, n: usize) -> RouteTable {
    let hashing = matches!(
        policy,
        LoadBalancingPolicy::RingHash | LoadBalancingPolicy::Maglev
    );
    let upstream = Upstream {
        name: "bench".into(),
        targets: (0..n)
            .map(|i| Target {
                address: format!("10.0.{}.{}:8080", i / 250, i % 250),
                weight: 1 + (i % 3) as u32,
            })
            .collect(),
        load_balancing: policy as i32,
        hash_on: hashing.then_some(HashOn {
            source: Some(hash_on::Source::Path(true)),
        }),
        ..Default::default()
    };
    let route = Route {
        name: "bench".into(),
        r#match: Some(RouteMatch {
            path: Some(Path::Prefix("/".into())),
            ..Default::default()
        }),
        upstream: "bench".into(),
        ..Default::default()
    };
    let config = Config {
        upstreams: vec![upstream],
        routes: vec![route],
        health_checks: vec![],
        certificates: vec![],
    };
    match compile(&config) {
        Ok(table) => table,
        Err(errors) => panic!("the bench config compiles: {errors:?}"),
    }
}

fn pick(bencher: Bencher<'_, '_>, policy: LoadBalancingPolicy, n: usize) {
    let table = table(policy, n);
    let Some((_, pool)) = table.find("any", "/", &Method::GET) else {
        panic!("the bench route matches");
    };
    let keys: Vec<u64> = (0..1024u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .collect();
    let keyed = pool.hash_key.is_some();
    let tried = Tried::default();
    let mut turn = 0usize;
    bencher.bench_local(|| {
        turn = turn.wrapping_add(1);
        let key = keyed.then(|| keys[turn & 1023]);
        divan::black_box(pool.pick(divan::black_box(key), &tried).map(|(i, _)| i))
    });
}

#[divan::bench(args = TARGETS)]
fn round_robin(bencher: Bencher<'_, '_>, n: usize) {
    pick(bencher, LoadBalancingPolicy::RoundRobin, n);
}

#[divan::bench(args = TARGETS)]
fn random(bencher: Bencher<'_, '_>, n: usize) {
    pick(bencher, LoadBalancingPolicy::Random, n);
}

#[divan::bench(args = TARGETS)]
fn least_request(bencher: Bencher<'_, '_>, n: usize) {
    pick(bencher, LoadBalancingPolicy::LeastRequest, n);
}

#[divan::bench(args = TARGETS)]
fn ring_hash(bencher: Bencher<'_, '_>, n: usize) {
    pick(bencher, LoadBalancingPolicy::RingHash, n);
}

#[divan::bench(args = TARGETS)]
fn maglev(bencher: Bencher<'_, '_>, n: usize) {
    pick(bencher, LoadBalancingPolicy::Maglev, n);
}

#[divan::bench(args = TARGETS, sample_count = 10)]
fn build_maglev(n: usize) -> RouteTable {
    table(LoadBalancingPolicy::Maglev, n)
}
