//! Keep-alive pools of plain HTTP/1.1 connections to targets, one set per worker thread.
//!
//! Each proxy worker is a thread with a single-threaded runtime; its requests, the connections
//! they use and those connections' tasks all stay on it. So the pool lives in a thread-local:
//! taking and returning a connection is a hash lookup and a `Vec` push or pop, with no lock and
//! no hand-off to another thread. A request writes straight into its connection's
//! [`SendRequest`]; the connection's task (spawned on the same runtime) does the I/O.
//!
//! A connection is handed back ([`Lease::release`]) only when its response body was read to
//! the end, so it is idle and can carry the next request. The most recently used connection is
//! taken first (the others time out sooner, and the busy set stays small). Connections idle
//! longer than [`IDLE_TIMEOUT`] are closed: when their target's pool is next used, and by a
//! sweep every [`SWEEP_INTERVAL`] while the thread's pools hold any.
//!
//! Connections opened are counted per target address in the [`ConnectionRegistry`] (the
//! `gateway_upstream_connections_*` metrics), so reuse shows in `/metrics` as before. HTTP/2
//! and TLS upstreams go through [`super::client`] instead.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

use foldhash::fast::RandomState;
use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::ProxyError;
use super::body::UpstreamBody;
use super::client::{CountedStream, UPSTREAM_MAX_BUF};
use crate::table::{Protocol, UpstreamPool};
use crate::telemetry::ConnectionRegistry;

/// How long an idle pooled connection to a target is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How often a worker closes the connections idle past [`IDLE_TIMEOUT`].
const SWEEP_INTERVAL: Duration = Duration::from_secs(15);

type Sender = SendRequest<UpstreamBody>;

struct Idle {
    sender: Sender,
    since: Instant,
}

/// Idle connections by target address; foldhash, as the keys come from the config. The keys
/// are the authorities' text: `Authority`'s own `Hash` feeds the hasher a byte at a time (to
/// ignore case), which made up most of a pool lookup, and a target is always spelt the way
/// its config spells it.
type Pools = HashMap<Box<str>, Vec<Idle>, RandomState>;

thread_local! {
    /// This thread's idle connections.
    static IDLE: RefCell<Pools> = RefCell::new(Pools::default());
    /// Whether a sweep task is running for this thread's pools.
    static SWEEPING: Cell<bool> = const { Cell::new(false) };
}

/// Whether requests to `upstream` use these pools: plain HTTP/1.1 (no TLS, not h2c).
pub fn serves(upstream: &UpstreamPool, grpc: bool) -> bool {
    let transport = &upstream.transport;
    transport.tls.is_none()
        && match transport.protocol {
            Protocol::Http1 => true,
            Protocol::Http2 => false,
            Protocol::Auto => !grpc,
        }
}

/// A connection carrying one request; [`Lease::release`] hands it back once the response is
/// over, dropping it closes the connection.
#[derive(Debug)]
pub struct Lease {
    sender: Sender,
    target: Authority,
}

impl Lease {
    /// The response was read to its end: the connection is idle and can be reused.
    pub fn release(self) {
        if self.sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let key = self.target.as_str();
        IDLE.with_borrow_mut(|idle| {
            // Looked up by `&str` first, so only a target's first connection allocates a key.
            if !idle.contains_key(key) {
                idle.insert(key.into(), Vec::new());
            }
            if let Some(list) = idle.get_mut(key) {
                drop_timed_out(list, now);
                list.push(Idle {
                    sender: self.sender,
                    since: now,
                });
            }
        });
        start_sweeping();
    }
}

/// Sends `request` (origin-form URI, Host set) to `target` over an idle pooled connection, or a
/// new one opened within `connect_timeout`. A pooled connection the target closed meanwhile is
/// skipped, and a request it could not take is sent on the next one, so a stale connection
/// never costs a request.
pub async fn send(
    mut request: Request<UpstreamBody>,
    target: &Authority,
    connect_timeout: Duration,
    connections: &ConnectionRegistry,
) -> Result<(Response<Incoming>, Lease), ProxyError> {
    while let Some(mut sender) = take(target) {
        if sender.ready().await.is_err() {
            continue;
        }
        match sender.try_send_request(request).await {
            Ok(response) => return Ok((response, lease(sender, target))),
            Err(mut error) => match error.take_message() {
                // Never written: the connection was closing. Try the next one.
                Some(unsent) => request = unsent,
                None => return Err(ProxyError::UpstreamFailed(error.into_error().into())),
            },
        }
    }
    // Boxed: opening a connection is the rare path, and its future would otherwise make every
    // request's future (moved a few times per request) larger.
    let mut sender = Box::pin(connect(target, connect_timeout, connections)).await?;
    match sender.send_request(request).await {
        Ok(response) => Ok((response, lease(sender, target))),
        Err(error) => Err(ProxyError::UpstreamFailed(error.into())),
    }
}

fn lease(sender: Sender, target: &Authority) -> Lease {
    Lease {
        sender,
        target: target.clone(),
    }
}

/// The most recently idle connection to `target` that is still open. (Timed-out ones are
/// closed by [`expire`]; one the target closed meanwhile fails `ready` or gives the request
/// back, and the next is tried.)
fn take(target: &Authority) -> Option<Sender> {
    IDLE.with_borrow_mut(|idle| {
        let list = idle.get_mut(target.as_str())?;
        while let Some(entry) = list.pop() {
            if !entry.sender.is_closed() {
                return Some(entry.sender);
            }
        }
        None
    })
}

/// Drops the connections of `list` idle past the timeout. Runs on every release, so it must
/// not walk the list (hundreds of connections under high concurrency): the list is in the
/// order connections came back, so the timed-out ones are a prefix, found by binary search.
/// Closed ones are skipped by [`take`] and swept by [`expire`].
fn drop_timed_out(list: &mut Vec<Idle>, now: Instant) {
    let timed_out = list.partition_point(|entry| now.duration_since(entry.since) >= IDLE_TIMEOUT);
    if timed_out > 0 {
        list.drain(..timed_out);
    }
}

/// Drops the connections of `list` that are closed or idle past the timeout (the oldest are
/// first).
fn expire(list: &mut Vec<Idle>, now: Instant) {
    list.retain(|entry| {
        !entry.sender.is_closed() && now.duration_since(entry.since) < IDLE_TIMEOUT
    });
}

/// Starts this thread's sweep unless it runs; it stops once the pools are empty.
fn start_sweeping() {
    if SWEEPING.replace(true) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        SWEEPING.set(false);
        return;
    };
    runtime.spawn(async {
        loop {
            tokio::time::sleep(SWEEP_INTERVAL).await;
            let now = Instant::now();
            let empty = IDLE.with_borrow_mut(|idle| {
                idle.retain(|_, list| {
                    expire(list, now);
                    !list.is_empty()
                });
                idle.is_empty()
            });
            if empty {
                SWEEPING.set(false);
                return;
            }
        }
    });
}

/// Opens a counted TCP connection to `target` and starts its HTTP/1.1 connection task.
async fn connect(
    target: &Authority,
    connect_timeout: Duration,
    connections: &ConnectionRegistry,
) -> Result<Sender, ProxyError> {
    let tcp = match tokio::time::timeout(connect_timeout, TcpStream::connect(target.as_str())).await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(error)) => return Err(ProxyError::ConnectFailed(error.into())),
        Err(_) => {
            let timed_out = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
            return Err(ProxyError::ConnectTimeout(timed_out.into()));
        }
    };
    let _ = tcp.set_nodelay(true);
    let stats = connections.for_address(target.as_str());
    stats.opened.fetch_add(1, Ordering::Relaxed);
    stats.active.fetch_add(1, Ordering::Relaxed);
    let io = CountedStream::plain(TokioIo::new(tcp), stats);
    let (sender, connection) = http1::Builder::new()
        .max_buf_size(UPSTREAM_MAX_BUF)
        .handshake(io)
        .await
        .map_err(|error| ProxyError::ConnectFailed(error.into()))?;
    tokio::spawn(async move {
        // Upgrades (WebSocket) take the connection over once answered 101.
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use tokio::net::TcpListener;

    use super::*;

    /// An HTTP/1.1 server answering "ok"; `keep_alive: false` closes after each response.
    async fn upstream(keep_alive: bool) -> Authority {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .keep_alive(keep_alive)
                        .serve_connection(
                            TokioIo::new(stream),
                            service_fn(|_| async {
                                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok"))))
                            }),
                        ),
                );
            }
        });
        address.to_string().parse().unwrap()
    }

    fn request(target: &Authority) -> Request<UpstreamBody> {
        Request::builder()
            .uri("/")
            .header(http::header::HOST, target.as_str())
            .body(UpstreamBody::Empty)
            .unwrap()
    }

    /// Sends one request; `read` reads the body to its end and hands the connection back.
    async fn exchange(target: &Authority, connections: &ConnectionRegistry, read: bool) {
        let (response, lease) = send(request(target), target, Duration::from_secs(5), connections)
            .await
            .unwrap();
        if read {
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, "ok");
            lease.release();
        }
    }

    #[tokio::test]
    async fn a_connection_read_to_the_end_carries_the_next_requests() {
        let target = upstream(true).await;
        let connections = ConnectionRegistry::default();
        for _ in 0..5 {
            exchange(&target, &connections, true).await;
        }
        assert_eq!(connections.counts(target.as_str()).0, 1);
        // A response dropped before its end leaves its connection unusable: a new one opens.
        exchange(&target, &connections, false).await;
        exchange(&target, &connections, true).await;
        assert_eq!(connections.counts(target.as_str()).0, 2);
    }

    #[tokio::test]
    async fn a_release_drops_only_the_connections_idle_past_the_timeout() {
        let target = upstream(true).await;
        let connections = ConnectionRegistry::default();
        let mut leases = Vec::new();
        for _ in 0..3 {
            let (response, lease) = send(
                request(&target),
                &target,
                Duration::from_secs(5),
                &connections,
            )
            .await
            .unwrap();
            response.into_body().collect().await.unwrap();
            leases.push(lease);
        }
        leases.into_iter().for_each(Lease::release);
        IDLE.with_borrow_mut(|idle| {
            let list = idle.get_mut(target.as_str()).unwrap();
            assert_eq!(list.len(), 3);
            // The two oldest came back a full timeout before the newest.
            let newest = list[2].since + IDLE_TIMEOUT;
            list[2].since = newest;
            drop_timed_out(list, newest);
            assert_eq!(list.len(), 1);
            assert_eq!(list[0].since, newest);
        });
    }

    #[tokio::test]
    async fn connections_the_target_closes_are_not_reused() {
        let target = upstream(false).await;
        let connections = ConnectionRegistry::default();
        for _ in 0..3 {
            exchange(&target, &connections, true).await;
        }
        assert_eq!(connections.counts(target.as_str()).0, 3);
    }
}
