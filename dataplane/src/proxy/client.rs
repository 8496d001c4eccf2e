//! HTTP clients to upstream targets, with their keep-alive connection pools.
//!
//! One client per distinct connect timeout (the timeout belongs to the connector), created on
//! first use and kept across config changes so pooled connections survive a table swap. Lookups
//! are lock-free: the map is an `ArcSwap`, replaced (rarely) when a new timeout appears.
//!
//! The connector counts connections per target address (opened, open now), so `/metrics` can
//! tell new connections from reused ones: reused = attempts − opened. Its cost is paid per new
//! connection, never per request.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::body::UpstreamBody;
use crate::telemetry::{ConnectionRegistry, ConnectionStats};

pub type HttpClient = Client<CountingConnector, UpstreamBody>;

/// How long an idle pooled connection to a target is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, Default)]
pub struct UpstreamClients {
    by_connect_timeout: ArcSwap<HashMap<Duration, HttpClient>>,
    connections: Arc<ConnectionRegistry>,
}

impl UpstreamClients {
    /// Clients whose connections are counted in `connections`.
    pub fn counting_in(connections: Arc<ConnectionRegistry>) -> UpstreamClients {
        UpstreamClients {
            by_connect_timeout: ArcSwap::default(),
            connections,
        }
    }

    pub fn get(&self, connect_timeout: Duration) -> HttpClient {
        if let Some(client) = self.by_connect_timeout.load().get(&connect_timeout) {
            return client.clone();
        }
        let created = build(connect_timeout, Arc::clone(&self.connections));
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

fn build(connect_timeout: Duration, connections: Arc<ConnectionRegistry>) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(CountingConnector {
            inner: connector,
            connections,
        })
}

/// `HttpConnector`, counting the connections it opens by target address.
#[derive(Debug, Clone)]
pub struct CountingConnector {
    inner: HttpConnector,
    connections: Arc<ConnectionRegistry>,
}

type Connecting = Pin<
    Box<
        dyn Future<Output = Result<CountedStream, Box<dyn std::error::Error + Send + Sync>>> + Send,
    >,
>;

impl tower_service::Service<Uri> for CountingConnector {
    type Response = CountedStream;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let address = uri.authority().map(|a| a.as_str().to_owned());
        let connecting = self.inner.call(uri);
        let connections = Arc::clone(&self.connections);
        Box::pin(async move {
            let stream = connecting.await?;
            let stats = address.map(|address| {
                let stats = connections.for_address(&address);
                stats.opened.fetch_add(1, Ordering::Relaxed);
                stats.active.fetch_add(1, Ordering::Relaxed);
                stats
            });
            Ok(CountedStream {
                inner: stream,
                stats,
            })
        })
    }
}

/// A connection to a target; counted as open until dropped.
#[derive(Debug)]
pub struct CountedStream {
    inner: TokioIo<TcpStream>,
    stats: Option<Arc<ConnectionStats>>,
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        if let Some(stats) = &self.stats {
            stats.active.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Connection for CountedStream {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}

impl Read for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl Write for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
}
