//! DNS targets end to end: a name stands for each address it resolves to, and follows the
//! answers as they change, without a new config.
#![allow(clippy::unwrap_used, reason = "test helpers: a failure should panic")]

mod support;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway_dataplane::app::Gateway;
use gateway_dataplane::dns::{Lookup, LookupFuture, Resolved};
use gateway_proto::v1::{Config, OutlierDetection};
use support::{Harness, TestBackend, eventually, health_of, route, upstream};

/// A resolver whose answers the test sets; every answer has a TTL of 0 (kept for the minimum).
#[derive(Default)]
struct FakeDns {
    answers: Mutex<HashMap<String, Vec<IpAddr>>>,
    lookups: AtomicUsize,
}

impl FakeDns {
    fn set(&self, host: &str, addresses: &[&str]) {
        let addresses = addresses.iter().map(|a| a.parse().unwrap()).collect();
        self.answers.lock().unwrap().insert(host.into(), addresses);
    }

    fn fail(&self, host: &str) {
        self.answers.lock().unwrap().remove(host);
    }
}

impl Lookup for FakeDns {
    fn lookup<'a>(&'a self, host: &'a str) -> LookupFuture<'a> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let answer = self.answers.lock().unwrap().get(host).cloned();
        Box::pin(async move {
            answer
                .map(|addresses| Resolved {
                    addresses,
                    valid_for: Duration::ZERO,
                })
                .ok_or_else(|| format!("{host}: no such name"))
        })
    }
}

const CEILING: Duration = Duration::from_secs(15);

fn targets(gateway: &Gateway) -> Vec<String> {
    let active = gateway.active().unwrap();
    let pool = active.table.upstreams().next().unwrap();
    pool.targets.iter().map(|t| t.address.clone()).collect()
}

#[tokio::test]
async fn a_dns_target_follows_the_addresses_its_name_resolves_to() {
    let a = TestBackend::start("a").await;
    let port = a.address.port();
    let b = TestBackend::start_at("b", SocketAddr::from(([127, 0, 0, 2], port))).await;
    let (a_address, b_address) = (a.address.to_string(), b.address.to_string());
    let dns = Arc::new(FakeDns::default());
    dns.set("svc.test", &["127.0.0.1"]);
    let harness = Harness::with_gateway(Gateway::with_lookup(dns.clone())).await;
    let mut web = upstream("web", &[format!("svc.test:{port}")]);
    web.outlier_detection = Some(OutlierDetection {
        consecutive_5xx: 5,
        base_ejection_ms: 1000,
        ..Default::default()
    });
    let config = Config {
        upstreams: vec![web],
        routes: vec![route("web", &[], "/", "web")],
        health_checks: vec![],
        certificates: vec![],
    };
    harness.apply(1, config).await;

    eventually(CEILING, "the name is resolved", || async {
        (targets(&harness.gateway) == [a_address.clone()]).then_some(())
    })
    .await;
    assert_eq!(harness.backends(3).await, ["a"; 3]);
    assert!(
        health_of(&harness.gateway, &a_address).is_some(),
        "reported by address"
    );

    dns.set("svc.test", &["127.0.0.2", "127.0.0.1"]);
    eventually(
        CEILING,
        "a second address becomes a second target",
        || async {
            (targets(&harness.gateway) == [a_address.clone(), b_address.clone()]).then_some(())
        },
    )
    .await;
    let mut seen = harness.backends(4).await;
    seen.sort();
    assert_eq!(seen, ["a", "a", "b", "b"]);
    assert_eq!(
        harness.gateway.active().unwrap().version,
        1,
        "no new config"
    );

    dns.set("svc.test", &["127.0.0.2"]);
    eventually(
        CEILING,
        "a vanished address is no longer a target",
        || async { (targets(&harness.gateway) == [b_address.clone()]).then_some(()) },
    )
    .await;
    assert_eq!(harness.backends(3).await, ["b"; 3]);
    assert!(health_of(&harness.gateway, &a_address).is_none());

    // A failing DNS keeps the last answer.
    dns.fail("svc.test");
    let lookups = dns.lookups.load(Ordering::Relaxed);
    eventually(CEILING, "the name is looked up again", || async {
        (dns.lookups.load(Ordering::Relaxed) > lookups).then_some(())
    })
    .await;
    assert_eq!(targets(&harness.gateway), [b_address]);
    assert_eq!(harness.backends(2).await, ["b"; 2]);
}

#[tokio::test]
async fn an_unresolved_name_is_used_as_configured() {
    let a = TestBackend::start("a").await;
    let dns = Arc::new(FakeDns::default());
    let harness = Harness::with_gateway(Gateway::with_lookup(dns.clone())).await;
    // `localhost` has no answer from the fake: the connector resolves it per connection.
    let address = format!("localhost:{}", a.address.port());
    harness
        .apply(
            1,
            Config {
                upstreams: vec![upstream("web", std::slice::from_ref(&address))],
                routes: vec![route("web", &[], "/", "web")],
                health_checks: vec![],
                certificates: vec![],
            },
        )
        .await;
    assert_eq!(targets(&harness.gateway), [address]);
    assert_eq!(harness.backends(2).await, ["a"; 2]);
}
