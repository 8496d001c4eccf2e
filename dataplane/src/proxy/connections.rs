//! What ends a downstream connection besides its client: a drain, and on HTTP/2 the idle
//! timeout.
//!
//! hyper-util's `GracefulShutdown` only knows drains, and its connection trait is sealed, so
//! the server runs each connection in its own `select!` over the connection, the drain signal
//! and a coarse idle check ([`IdleCheck`]); [`Connections`] counts the connections a drain
//! waits for, as `GracefulShutdown` did (a `watch` channel: one receiver per connection, never polled) and signals the drain (a
//! flag and a `Notify`).
//!
//! HTTP/1.1 keep-alive connections are bounded by hyper's header read timeout already; an
//! HTTP/2 connection with no open stream has nothing bounding it but PING liveness, hence
//! `--idle-timeout`. Streams are counted per connection ([`Streams`]: one atomic add when the
//! service is called, one when the response body ends or is dropped) and the idle check reads
//! the count a few times per timeout, so no timer is reset per request.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::sync::{Notify, watch};

/// The connections of one listener, for a drain to signal and wait for.
pub struct Connections {
    /// Only counts: a drain waits until every connection has dropped its receiver.
    open: watch::Sender<()>,
    drain: Arc<Drain>,
}

/// Whether the drain has started, and the connections to wake when it does.
#[derive(Default)]
struct Drain {
    started: AtomicBool,
    notify: Notify,
}

/// Held by one connection for its whole life: it counts as open until this is dropped.
pub struct DrainSignal {
    _open: watch::Receiver<()>,
    drain: Arc<Drain>,
}

impl DrainSignal {
    /// Resolves once the drain starts.
    ///
    /// It is polled on every wake of its connection's task, so after registering the task's
    /// waker once it only reads a flag: a waiting `Notified` would take the `Notify`'s lock
    /// on each poll. A task's waker stays the same for its whole life.
    pub async fn started(&self) {
        let notified = self.drain.notify.notified();
        let mut notified = pin!(notified);
        // Registered before the flag is read, so a drain starting in between still wakes us.
        notified.as_mut().enable();
        let mut registered = false;
        std::future::poll_fn(|cx| {
            if self.drain.started.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            if !registered {
                registered = true;
                return notified.as_mut().poll(cx);
            }
            Poll::Pending
        })
        .await;
    }
}

impl Connections {
    pub fn new() -> Connections {
        Connections {
            open: watch::channel(()).0,
            drain: Arc::default(),
        }
    }

    /// Counts a connection just accepted (before any TLS handshake).
    pub fn open(&self) -> DrainSignal {
        DrainSignal {
            _open: self.open.subscribe(),
            drain: Arc::clone(&self.drain),
        }
    }

    /// Tells every connection to finish (HTTP/1.1 once idle, HTTP/2 with GOAWAY) and waits for
    /// them all, at most `timeout`.
    pub async fn drain(self, timeout: Duration) {
        self.drain.started.store(true, Ordering::Release);
        self.drain.notify.notify_waiters();
        if tokio::time::timeout(timeout, self.open.closed())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after {timeout:?}; closing them");
        }
    }
}

/// Streams of one connection: how many are open (low 32 bits) and how many were ever started
/// (high 32 bits, wrapping), in one word so each end of a stream is one atomic add.
#[derive(Debug, Default)]
pub struct Streams(AtomicU64);

const ONE_OPEN: u64 = 1;
const ONE_STARTED: u64 = 1 << 32;

impl Streams {
    /// A stream starts; it is open until the guard is dropped.
    pub fn start(self: &Arc<Self>) -> StreamGuard {
        self.0.fetch_add(ONE_STARTED + ONE_OPEN, Ordering::Relaxed);
        StreamGuard {
            streams: Arc::clone(self),
            open: true,
        }
    }

    /// (open, started) now.
    fn snapshot(&self) -> (u32, u32) {
        let word = self.0.load(Ordering::Relaxed);
        ((word & 0xffff_ffff) as u32, (word >> 32) as u32)
    }
}

/// One open stream; dropped when its response body ends or is dropped.
#[derive(Debug)]
pub struct StreamGuard {
    streams: Arc<Streams>,
    open: bool,
}

impl StreamGuard {
    /// The stream became a tunnel (WebSocket over HTTP/2), which outlives its response body
    /// and has its own idle timeout: the connection counts as busy from now on.
    pub fn keep_open(mut self) {
        self.open = false;
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.open {
            self.streams.0.fetch_sub(ONE_OPEN, Ordering::Relaxed);
        }
    }
}

/// How many checks one idle timeout spans: a connection is closed after between 1 and
/// 1 + 1/CHECKS timeouts without an open stream.
pub const CHECKS: u32 = 4;

/// Decides, from [`Streams`] read at every check (every timeout / [`CHECKS`]), when a
/// connection has had no open stream for a whole timeout: [`CHECKS`] periods in a row in which
/// no stream was open at either end and none started.
#[derive(Debug, Default)]
pub struct IdleCheck {
    last: (u32, u32),
    idle_periods: u32,
}

impl IdleCheck {
    /// The period between checks for `timeout`.
    pub fn period(timeout: Duration) -> Duration {
        (timeout / CHECKS).max(Duration::from_millis(1))
    }

    /// One check; true once the connection has been idle for the whole timeout.
    pub fn idle(&mut self, streams: &Streams) -> bool {
        let now = streams.snapshot();
        let (open, started) = now;
        if open == 0 && self.last == (0, started) {
            self.idle_periods += 1;
        } else {
            self.idle_periods = 0;
        }
        self.last = now;
        self.idle_periods >= CHECKS
    }
}

/// A response body that holds its stream's guard until it ends or is dropped.
#[derive(Debug)]
pub struct Counted<B> {
    inner: B,
    guard: Option<StreamGuard>,
}

impl<B> Counted<B> {
    pub fn new(inner: B, guard: Option<StreamGuard>) -> Counted<B> {
        Counted { inner, guard }
    }
}

impl<B: Body + Unpin> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full};

    use super::*;

    #[test]
    fn idle_after_checks_periods_without_a_stream() {
        let streams = Arc::new(Streams::default());
        let mut check = IdleCheck::default();
        for _ in 1..CHECKS {
            assert!(!check.idle(&streams));
        }
        assert!(check.idle(&streams), "a connection that never had a stream");
    }

    #[test]
    fn an_open_stream_or_a_started_one_restarts_the_count() {
        let streams = Arc::new(Streams::default());
        let mut check = IdleCheck::default();
        let guard = streams.start();
        for _ in 0..3 * CHECKS {
            assert!(!check.idle(&streams), "a stream is open");
        }
        drop(guard);
        // The stream was open at the last check: that period was not idle.
        for _ in 0..CHECKS {
            assert!(!check.idle(&streams));
        }
        assert!(check.idle(&streams));
        // A stream that starts and ends between two checks still counts.
        let mut check = IdleCheck::default();
        check.idle(&streams);
        check.idle(&streams);
        drop(streams.start());
        for _ in 0..CHECKS {
            assert!(!check.idle(&streams));
        }
        assert!(check.idle(&streams));
    }

    #[test]
    fn guards_count_open_streams() {
        let streams = Arc::new(Streams::default());
        let a = streams.start();
        let b = streams.start();
        assert_eq!(streams.snapshot(), (2, 2));
        drop(a);
        assert_eq!(streams.snapshot(), (1, 2));
        drop(b);
        assert_eq!(streams.snapshot(), (0, 2));
    }

    #[tokio::test]
    async fn a_counted_body_releases_its_stream_at_its_end_or_drop() {
        let streams = Arc::new(Streams::default());
        let body = Counted::new(
            Full::new(bytes::Bytes::from_static(b"x")),
            Some(streams.start()),
        );
        let mut body = std::pin::pin!(body);
        assert!(body.frame().await.is_some());
        assert_eq!(streams.snapshot().0, 1);
        assert!(body.frame().await.is_none());
        assert_eq!(streams.snapshot().0, 0);
        let body = Counted::new(Full::new(bytes::Bytes::new()), Some(streams.start()));
        assert_eq!(streams.snapshot().0, 1);
        drop(body);
        assert_eq!(streams.snapshot(), (0, 2));
    }
}
