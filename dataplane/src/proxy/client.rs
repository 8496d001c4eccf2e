//! HTTP clients to upstream targets, with their keep-alive connection pools.
//!
//! One client per distinct connect timeout (the timeout belongs to the connector), created on
//! first use and kept across config changes so pooled connections survive a table swap. Lookups
//! are lock-free: the map is an `ArcSwap`, replaced (rarely) when a new timeout appears.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::UpstreamBody;

pub type HttpClient = Client<HttpConnector, UpstreamBody>;

/// How long an idle pooled connection to a target is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, Default)]
pub struct UpstreamClients {
    by_connect_timeout: ArcSwap<HashMap<Duration, HttpClient>>,
}

impl UpstreamClients {
    pub fn get(&self, connect_timeout: Duration) -> HttpClient {
        if let Some(client) = self.by_connect_timeout.load().get(&connect_timeout) {
            return client.clone();
        }
        let created = build(connect_timeout);
        let mut chosen = created.clone();
        self.by_connect_timeout.rcu(|clients| {
            let mut clients = HashMap::clone(clients);
            // Another request may have won the race; use its client, pool and all.
            chosen = clients
                .entry(connect_timeout)
                .or_insert_with(|| created.clone())
                .clone();
            Arc::new(clients)
        });
        chosen
    }
}

fn build(connect_timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(connector)
}
