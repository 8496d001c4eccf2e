//! HTTP clients to upstream targets, with their keep-alive connection pools.
//!
//! One client per distinct transport: connect timeout, HTTP version and TLS settings (the
//! upstream's [`Transport`] fingerprint). Clients are created on first use and kept across
//! config changes, so pooled connections survive a table swap that leaves an upstream's
//! transport alone. Lookups are lock-free: the map is an `ArcSwap`, replaced (rarely) when a new
//! transport appears.
//!
//! The connector counts connections per target address (opened, open now), so `/metrics` can
//! tell new connections from reused ones: reused = attempts − opened. Its cost is paid per new
//! connection, never per request.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
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
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::body::UpstreamBody;
use crate::table::{Protocol, Transport, UpstreamPool};
use crate::telemetry::{ConnectionRegistry, ConnectionStats};
use crate::tls::UpstreamTls;

pub type HttpClient = Client<Connector, UpstreamBody>;

/// Largest read buffer an upstream HTTP/1.1 connection may grow to. hyper's default (~400 KiB)
/// stays allocated on every pooled connection once a large body has passed through it, so 1 MiB
/// bodies left the data plane holding ~140 MB; bodies stream in chunks of this size instead.
pub(super) const UPSTREAM_MAX_BUF: usize = 64 * 1024;

/// What tells two clients apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ClientKey {
    connect_timeout: Duration,
    transport: u64,
    http2: bool,
}

#[derive(Debug, Default)]
pub struct UpstreamClients {
    /// Behind an `Arc`: a client is a few hundred bytes, and a request holds its upstream's for
    /// the whole exchange.
    clients: ArcSwap<HashMap<ClientKey, Arc<HttpClient>>>,
    connections: Arc<ConnectionRegistry>,
}

impl UpstreamClients {
    /// Clients whose connections are counted in `connections`.
    pub fn counting_in(connections: Arc<ConnectionRegistry>) -> UpstreamClients {
        UpstreamClients {
            clients: ArcSwap::default(),
            connections,
        }
    }

    /// The client for `upstream` with connections opened within `connect_timeout`; `grpc`
    /// calls to an `auto` upstream over plain TCP go as h2c.
    pub fn get(
        &self,
        upstream: &UpstreamPool,
        connect_timeout: Duration,
        grpc: bool,
    ) -> Arc<HttpClient> {
        let transport = &upstream.transport;
        let http2 = match transport.protocol {
            Protocol::Http1 => false,
            Protocol::Http2 => true,
            Protocol::Auto => grpc && transport.tls.is_none(),
        };
        let key = ClientKey {
            connect_timeout,
            transport: transport.fingerprint,
            http2,
        };
        if let Some(client) = self.clients.load().get(&key) {
            return Arc::clone(client);
        }
        let created = Arc::new(build(
            connect_timeout,
            transport,
            http2,
            Arc::clone(&self.connections),
        ));
        let mut chosen = Arc::clone(&created);
        self.clients.rcu(|clients| {
            let mut clients = HashMap::clone(clients);
            // Another request may have won the race; use its client, pool and all.
            chosen = Arc::clone(clients.entry(key).or_insert_with(|| Arc::clone(&created)));
            Arc::new(clients)
        });
        chosen
    }
}

fn build(
    connect_timeout: Duration,
    transport: &Transport,
    http2: bool,
    connections: Arc<ConnectionRegistry>,
) -> HttpClient {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    // The scheme is https for TLS upstreams; the connector below does the TLS.
    http.enforce_http(false);
    let connector = Connector {
        http,
        tls: transport.tls.clone(),
        handshake_timeout: connect_timeout,
        connections,
    };
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(super::pool::IDLE_TIMEOUT)
        .http1_max_buf_size(UPSTREAM_MAX_BUF)
        .http2_only(http2)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .http2_keep_alive_timeout(Duration::from_secs(20));
    builder.build(connector)
}

/// TCP, then TLS when the upstream asks for it; counts the connections it opens by target.
#[derive(Clone)]
pub struct Connector {
    http: HttpConnector,
    tls: Option<Arc<UpstreamTls>>,
    handshake_timeout: Duration,
    connections: Arc<ConnectionRegistry>,
}

/// The TLS handshake with a target failed; the source says why (for instance an unknown
/// issuer), and the proxy logs it.
#[derive(Debug)]
pub struct TlsHandshakeError(io::Error);

impl fmt::Display for TlsHandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TLS handshake with the target failed")
    }
}

impl StdError for TlsHandshakeError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.0)
    }
}

type BoxError = Box<dyn StdError + Send + Sync>;

impl tower_service::Service<Uri> for Connector {
    type Response = CountedStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<CountedStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.http.call(uri.clone());
        let tls = self.tls.clone();
        let timeout = self.handshake_timeout;
        let connections = Arc::clone(&self.connections);
        Box::pin(async move {
            let tcp = connecting.await?;
            let stats = uri.authority().map(|address| {
                let stats = connections.for_address(address.as_str());
                stats.opened.fetch_add(1, Ordering::Relaxed);
                stats.active.fetch_add(1, Ordering::Relaxed);
                stats
            });
            let counted = |inner| CountedStream { inner, stats };
            let Some(tls) = tls else {
                return Ok(counted(Stream::Plain(tcp)));
            };
            let server_name = match &tls.server_name {
                Some(name) => name.clone(),
                None => {
                    let host = uri.host().unwrap_or_default();
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    ServerName::try_from(host.to_string())
                        .map_err(|e| TlsHandshakeError(io::Error::other(e)))?
                }
            };
            let connector = TlsConnector::from(Arc::clone(&tls.config));
            let handshake = connector.connect(server_name, tcp.into_inner());
            match tokio::time::timeout(timeout, handshake).await {
                Ok(Ok(stream)) => Ok(counted(Stream::Tls(Box::new(TokioIo::new(stream))))),
                Ok(Err(error)) => Err(TlsHandshakeError(error).into()),
                Err(_) => {
                    Err(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out").into())
                }
            }
        })
    }
}

/// A connection to a target, plain or TLS.
pub enum Stream {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Stream::Plain(tcp) => tcp.connected(),
            Stream::Tls(tls) => {
                let (tcp, session) = tls.inner().get_ref();
                let connected = tcp.connected();
                if session.alpn_protocol() == Some(b"h2") {
                    connected.negotiated_h2()
                } else {
                    connected
                }
            }
        }
    }
}

impl Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
}

/// A connection to a target; counted as open until dropped.
pub struct CountedStream {
    inner: Stream,
    stats: Option<Arc<ConnectionStats>>,
}

impl CountedStream {
    /// A plain TCP connection, already counted as opened and active in `stats`.
    pub(super) fn plain(tcp: TokioIo<TcpStream>, stats: Arc<ConnectionStats>) -> CountedStream {
        CountedStream {
            inner: Stream::Plain(tcp),
            stats: Some(stats),
        }
    }
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
