//! The listeners' side of the proxy: accepting, TLS, HTTP/1.1 and HTTP/2, limits, draining.
//!
//! One code path serves both listeners: the plain one speaks HTTP/1.1 and HTTP/2 with prior
//! knowledge (h2c), told apart by the connection preface; the TLS one does the same after a
//! handshake that offers ALPN `h2` and `http/1.1`. Every connection is watched for a graceful
//! shutdown ([`connections`](super::connections)): on a drain HTTP/1.1 connections close once
//! idle and HTTP/2 connections get GOAWAY and finish their streams; an HTTP/2 connection idle
//! for the idle timeout gets GOAWAY too. Reads pass through the head audit
//! ([`head_audit`](super::head_audit)) first.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Poll, ready};
use std::time::Duration;

use http::{HeaderValue, Method, Request, StatusCode, Version, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_rustls::TlsAcceptor;

use super::connections::{Connections, Counted, DrainSignal, IdleCheck, Streams};
use super::head_audit::{AuditVerdict, HeadAudit};
use super::worker_load::{HANDICAP, OpenOnWorker};
use super::{Downstream, Proxy, current_worker, headers, stop_requested};
use crate::app::Gateway;

/// Per-listener protocol limits: the defaults of the `gateway-dataplane` flags.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Time a client has to send a request's headers; on HTTP/1.1 it also bounds how long an
    /// idle keep-alive connection waits for its next request. Also bounds the TLS handshake.
    pub header_read_timeout: Duration,
    /// Largest request head (HTTP/1.1) or header list (HTTP/2), in bytes.
    pub max_header_bytes: usize,
    /// Most header fields in an HTTP/1.1 request.
    pub max_headers: usize,
    /// HTTP/2: streams a client may have open at once.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: flow-control windows, per stream and per connection.
    pub h2_stream_window: u32,
    pub h2_connection_window: u32,
    /// HTTP/2: a PING every interval; a connection whose peer does not answer within the
    /// timeout is closed.
    pub h2_keep_alive_interval: Duration,
    pub h2_keep_alive_timeout: Duration,
    /// HTTP/2: streams reset by the client before the server saw them (rapid reset,
    /// CVE-2023-44487) and streams the server had to reset for protocol errors, before the
    /// connection is closed with GOAWAY.
    pub h2_max_pending_accept_reset_streams: usize,
    pub h2_max_local_error_reset_streams: usize,
    /// HTTP/1.1: let a body on GET through instead of refusing it as ambiguous framing (400).
    pub allow_get_body: bool,
    /// HTTP/2: a connection without an open stream for this long gets GOAWAY and is closed
    /// (HTTP/1.1 keep-alive is bounded by `header_read_timeout`).
    pub idle_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            h2_max_concurrent_streams: 200,
            h2_stream_window: 1024 * 1024,
            h2_connection_window: 4 * 1024 * 1024,
            h2_keep_alive_interval: Duration::from_secs(20),
            h2_keep_alive_timeout: Duration::from_secs(20),
            h2_max_pending_accept_reset_streams: 20,
            h2_max_local_error_reset_streams: 256,
            allow_get_body: false,
            idle_timeout: Duration::from_secs(120),
        }
    }
}

impl ServerLimits {
    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .keep_alive(true)
            .max_headers(self.max_headers)
            // hyper's floor for its read buffer is 8 KiB.
            .max_buf_size(self.max_header_bytes.max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.h2_max_concurrent_streams)
            .max_header_list_size(u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX))
            .initial_stream_window_size(self.h2_stream_window)
            .initial_connection_window_size(self.h2_connection_window)
            .keep_alive_interval(self.h2_keep_alive_interval)
            .keep_alive_timeout(self.h2_keep_alive_timeout)
            .max_pending_accept_reset_streams(self.h2_max_pending_accept_reset_streams)
            .max_local_error_reset_streams(self.h2_max_local_error_reset_streams)
            // WebSocket over HTTP/2 (RFC 8441).
            .enable_connect_protocol();
        builder
    }
}

/// How long a draining server keeps idle keep-alive connections open, so that clients learn of
/// the drain from a `Connection: close` response instead of racing a close.
const IDLE_GRACE: Duration = Duration::from_secs(2);

/// Accepts connections until `shutdown` turns true, then drains. `tls` makes this the TLS
/// listener.
///
/// Once the gateway is draining, every HTTP/1.1 response carries `Connection: close`, so busy
/// clients reconnect (to a successor sharing the listening socket, or to another data plane)
/// without ever sending a request into a closing connection. After [`IDLE_GRACE`], connections
/// still idle are closed, HTTP/2 connections get GOAWAY, and those with a request in flight
/// finish it, for at most `drain_timeout`.
pub async fn serve_with(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    mut shutdown: watch::Receiver<bool>,
    drain_timeout: Duration,
    limits: &ServerLimits,
    tls: Option<TlsAcceptor>,
) {
    let connections = Connections::new();
    let builder = Arc::new(limits.builder());
    let handshake_timeout = limits.header_read_timeout;
    let allow_get_body = limits.allow_get_body;
    let worker = current_worker();
    loop {
        let handicap = proxy.load.is_ahead(worker);
        let (stream, client) = tokio::select! {
            accepted = accept(&listener, handicap) => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "accepting a proxy connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop_requested(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        let open = OpenConnection::start(&proxy, worker);
        let connection = Connection {
            proxy: Arc::clone(&proxy),
            builder: Arc::clone(&builder),
            drain: connections.open(),
            client,
            allow_get_body,
            idle_timeout: limits.idle_timeout,
        };
        match &tls {
            None => {
                tokio::spawn(async move {
                    let _open = open;
                    connection.serve(stream, false).await;
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _open = open;
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => connection.serve(stream, true).await,
                        Ok(Err(error)) => {
                            tracing::debug!(%client, %error, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%client, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    let grace = IDLE_GRACE.min(drain_timeout);
    tokio::time::sleep(grace).await;
    connections.drain(drain_timeout.saturating_sub(grace)).await;
}

/// The next connection; with a `handicap` (this worker holds more connections than another)
/// only after [`HANDICAP`], so that the other workers, woken for the same connection, get it.
async fn accept(listener: &TcpListener, handicap: bool) -> io::Result<(TcpStream, SocketAddr)> {
    if handicap {
        tokio::time::sleep(HANDICAP).await;
    }
    listener.accept().await
}

/// One accepted connection and what serving it needs.
struct Connection {
    proxy: Arc<Proxy>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    drain: DrainSignal,
    client: SocketAddr,
    allow_get_body: bool,
    idle_timeout: Duration,
}

impl Connection {
    async fn serve<I>(self, io: I, tls: bool)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            proxy,
            builder,
            drain,
            client,
            allow_get_body,
            idle_timeout,
        } = self;
        let verdict = Arc::new(AuditVerdict::default());
        let streams = Arc::new(Streams::default());
        let client_ip = headers::client_address(client.ip());
        let io = HeadAudit::new(io, Arc::clone(&verdict));
        let service = {
            let verdict = Arc::clone(&verdict);
            let streams = Arc::clone(&streams);
            service_fn(move |request: Request<Incoming>| {
                let proxy = Arc::clone(&proxy);
                let http1 = request.version() < Version::HTTP_2;
                let connect = request.method() == Method::CONNECT;
                // hyper calls the service in request order on HTTP/1.1: this is how the
                // audit's verdict finds its request.
                let refused = if http1 { verdict.next_request() } else { None };
                // HTTP/2 streams are counted for the idle timeout; created here, so a stream
                // reset before its response still ends its count.
                let stream = (!http1).then(|| streams.start());
                // Only HTTP/1.1 can turn the connection into a tunnel below hyper.
                let verdict = http1.then(|| Arc::clone(&verdict));
                let downstream = Downstream {
                    client,
                    client_ip: client_ip.clone(),
                    tls,
                    allow_get_body,
                    refused,
                };
                async move {
                    // Boxed once here: hyper moves the service's future into its dispatcher
                    // (HTTP/1.1) or a task (HTTP/2), and the request's whole state machine is
                    // kilobytes; a box is two words to move.
                    let mut response = Box::pin(proxy.handle_from(request, downstream)).await;
                    let status = response.status();
                    let mut stream = stream;
                    if http1 {
                        // HTTP/2 has no Connection header: its clients learn of the drain from
                        // GOAWAY.
                        if proxy.gateway.is_draining() {
                            response
                                .headers_mut()
                                .insert(header::CONNECTION, HeaderValue::from_static("close"));
                        }
                        if let Some(verdict) = verdict
                            && (status == StatusCode::SWITCHING_PROTOCOLS
                                || (connect && status.is_success()))
                        {
                            // The connection becomes a tunnel: its bytes are not HTTP any more.
                            verdict.tunnelled();
                        }
                    } else if connect
                        && status.is_success()
                        && let Some(tunnel) = stream.take()
                    {
                        tunnel.keep_open();
                    }
                    Ok::<_, Infallible>(response.map(|body| Counted::new(body, stream)))
                }
            })
        };
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        let mut connection = pin!(connection);
        let period = IdleCheck::period(idle_timeout);
        let mut checks = tokio::time::interval_at(Instant::now() + period, period);
        checks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut idle = IdleCheck::default();
        // Resolves once an HTTP/2 connection has been idle for `idle_timeout`. HTTP/1.1
        // connections have hyper's keep-alive timeout instead: for them it stays pending
        // without touching its timer, since it is polled on every wake of this task.
        let mut idle_for_too_long = std::future::poll_fn(|cx| {
            while !verdict.is_http1() {
                ready!(checks.poll_tick(cx));
                if verdict.is_http2() && idle.idle(&streams) {
                    return Poll::Ready(());
                }
            }
            Poll::Pending
        });
        let mut closing = false;
        let ended = loop {
            tokio::select! {
                // The connection first: it is what wakes this task nearly every time.
                biased;
                ended = connection.as_mut() => break ended,
                () = drain.started(), if !closing => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = &mut idle_for_too_long, if !closing => {
                    tracing::debug!(%client, ?idle_timeout, "idle HTTP/2 connection: GOAWAY");
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        };
        if let Err(error) = ended {
            tracing::debug!(%client, %error, "proxy connection ended with an error");
        }
    }
}

/// A client connection, counted as open until dropped.
struct OpenConnection {
    gateway: Arc<Gateway>,
    _on_worker: OpenOnWorker,
}

impl OpenConnection {
    fn start(proxy: &Proxy, worker: usize) -> OpenConnection {
        let process = &proxy.gateway.metrics().process;
        process
            .downstream_connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        process
            .downstream_connections_active
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        OpenConnection {
            gateway: Arc::clone(&proxy.gateway),
            _on_worker: proxy.load.opened(worker),
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.gateway
            .metrics()
            .process
            .downstream_connections_active
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// [`serve_with`] on a plain listener with the default limits.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown: watch::Receiver<bool>,
    drain_timeout: Duration,
) {
    serve_with(
        listener,
        proxy,
        shutdown,
        drain_timeout,
        &ServerLimits::default(),
        None,
    )
    .await;
}
