//! HTTP/1.1 Upgrade (WebSocket): the handshake goes to the target like any request, keeping
//! its `Upgrade` headers; when the target answers 101, both connections are taken over from
//! hyper and bytes are copied both ways until either side closes or nothing moves for the idle
//! timeout. The tunnel holds no table: a config change never touches it.
//!
//! A WebSocket over HTTP/2 (extended CONNECT, RFC 8441) goes to the target as the HTTP/1.1
//! Upgrade it expects; its 101 becomes the 200 the HTTP/2 client expects, and the stream is
//! tunnelled the same way (WebSocket frames are the same on both).
//!
//! Once upgraded, a connection is no longer hyper's, so a graceful shutdown does not see it:
//! open tunnels are counted here, and a draining process waits for them ([`all_closed`]) up to
//! its drain timeout before it exits.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::state::InFlight;

/// How long an upgraded connection may stay silent both ways before it is closed.
pub const DEFAULT_TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Tunnels open in this process, and a wake-up for whoever waits for the last one to close.
static OPEN: AtomicUsize = AtomicUsize::new(0);
static LAST_CLOSED: Notify = Notify::const_new();

/// One open tunnel, counted until dropped (the copy ends, times out, or its runtime stops).
struct Open;

impl Open {
    fn start() -> Open {
        OPEN.fetch_add(1, Ordering::SeqCst);
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if OPEN.fetch_sub(1, Ordering::SeqCst) == 1 {
            LAST_CLOSED.notify_waiters();
        }
    }
}

/// How many tunnels are open in this process.
pub fn open_count() -> usize {
    OPEN.load(Ordering::SeqCst)
}

/// Resolves once no tunnel is open in this process (at once if none is).
pub async fn all_closed() {
    loop {
        let notified = LAST_CLOSED.notified();
        tokio::pin!(notified);
        // Registered before the check, so a close between the two is not missed.
        notified.as_mut().enable();
        if open_count() == 0 {
            return;
        }
        notified.await;
    }
}

/// Whether the client asks to switch protocols: HTTP/1.1 with `Connection: upgrade` and an
/// `Upgrade` header.
pub fn requested<B>(request: &Request<B>) -> bool {
    request.version() == http::Version::HTTP_11
        && request.headers().contains_key(header::UPGRADE)
        && request
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Turns an HTTP/2 extended CONNECT for `websocket` (RFC 8441 §4) into the HTTP/1.1 Upgrade a
/// target expects (RFC 6455 §4.1: `GET`, `Upgrade: websocket`, a fresh `Sec-WebSocket-Key`);
/// the other WebSocket headers (version, subprotocols, extensions) are the same in both.
/// Returns whether `request` was one.
pub fn websocket_over_h2_as_upgrade<B>(request: &mut Request<B>) -> bool {
    let is_websocket = request.method() == Method::CONNECT
        && request
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
    if !is_websocket {
        return false;
    }
    *request.method_mut() = Method::GET;
    let key = base64::engine::general_purpose::STANDARD.encode(fastrand::u128(..).to_le_bytes());
    let headers = request.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(key) = HeaderValue::from_str(&key) {
        headers.insert(header::SEC_WEBSOCKET_KEY, key);
    }
    true
}

/// The target's 101 as the answer to an extended CONNECT: 200, without the HTTP/1.1
/// handshake's headers (RFC 8441 §5).
pub fn accept_websocket_over_h2<B>(response: &mut Response<B>) {
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    for name in [
        header::CONNECTION,
        header::UPGRADE,
        header::SEC_WEBSOCKET_ACCEPT,
    ] {
        headers.remove(name);
    }
}

/// The `Connection` and `Upgrade` values to send upstream for an upgrade.
pub fn upgrade_headers(headers: &HeaderMap) -> Option<(HeaderValue, HeaderValue)> {
    let protocol = headers.get(header::UPGRADE)?.clone();
    Some((HeaderValue::from_static("upgrade"), protocol))
}

/// Copies bytes between the two upgraded connections in a task of its own; `in_flight` keeps
/// the target counted as busy while the tunnel is open.
pub fn spawn(
    downstream: OnUpgrade,
    upstream: OnUpgrade,
    idle_timeout: Duration,
    in_flight: InFlight,
    route: String,
) {
    let open = Open::start();
    tokio::spawn(async move {
        let _open = open;
        let (client, target) = match tokio::try_join!(downstream, upstream) {
            Ok(both) => both,
            Err(error) => {
                tracing::debug!(%route, %error, "upgrade did not complete");
                return;
            }
        };
        let activity = Activity::new();
        let mut client = Watched::new(TokioIo::new(client), &activity);
        let mut target = Watched::new(TokioIo::new(target), &activity);
        let copying = tokio::io::copy_bidirectional(&mut client, &mut target);
        tokio::pin!(copying);
        loop {
            let deadline = activity.last() + idle_timeout;
            tokio::select! {
                result = &mut copying => {
                    if let Err(error) = result {
                        tracing::debug!(%route, %error, "tunnel ended with an error");
                    }
                    break;
                }
                () = tokio::time::sleep_until(deadline) => {
                    if activity.last() + idle_timeout <= Instant::now() {
                        tracing::debug!(%route, ?idle_timeout, "tunnel idle; closing it");
                        break;
                    }
                }
            }
        }
        drop(in_flight);
    });
}

/// When bytes last moved through a tunnel, either way.
#[derive(Clone)]
struct Activity(std::sync::Arc<std::sync::Mutex<Instant>>);

impl Activity {
    fn new() -> Self {
        Activity(std::sync::Arc::new(std::sync::Mutex::new(Instant::now())))
    }

    fn touch(&self) {
        if let Ok(mut last) = self.0.lock() {
            *last = Instant::now();
        }
    }

    fn last(&self) -> Instant {
        self.0
            .lock()
            .map(|last| *last)
            .unwrap_or_else(|_| Instant::now())
    }
}

/// An I/O object that records activity on every successful read or write.
struct Watched<T> {
    inner: T,
    activity: Activity,
}

impl<T> Watched<T> {
    fn new(inner: T, activity: &Activity) -> Self {
        Watched {
            inner,
            activity: activity.clone(),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The only unit test that opens tunnels: the count is process-wide.
    #[tokio::test]
    async fn a_drain_waits_for_the_last_open_tunnel() {
        let (first, second) = (Open::start(), Open::start());
        assert_eq!(open_count(), 2);
        let waiting = tokio::spawn(all_closed());
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one tunnel is still open");
        drop(second);
        waiting.await.unwrap();
        assert_eq!(open_count(), 0);
        // Nothing open: it does not wait at all.
        all_closed().await;
    }

    #[test]
    fn only_http11_connection_upgrade_requests_are_upgrades() {
        let upgrade = Request::get("/ws")
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        assert!(requested(&upgrade));
        let no_connection = Request::get("/ws")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        assert!(!requested(&no_connection));
        let http2 = Request::get("/ws")
            .version(http::Version::HTTP_2)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        assert!(!requested(&http2));
    }
}
