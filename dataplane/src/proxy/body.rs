//! Request bodies as the proxy sends them upstream, and whether they can be sent again.
//!
//! Without a retry policy a body is streamed, never buffered. With one:
//! - no body, or a body of at most [`MAX_BUFFERED`] bytes, is read whole first and can be sent
//!   any number of times, whatever the method;
//! - a larger body is streamed; for an idempotent method it stays in a [`Reclaimable`] slot, so
//!   an attempt that never read it (a connect failure) leaves it for the next attempt; for other
//!   methods it is sent once.
//!
//! A [`BodyMeter`] counts the bytes received from the client and adds them to the route's
//! counters once, when the body is done with.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::table::RouteEntry;
use crate::telemetry::RouteStats;

/// Bodies up to this size are buffered when the route retries.
pub const MAX_BUFFERED: usize = 64 * 1024;

/// A client's request body, prepared for one or more attempts.
#[derive(Debug)]
pub enum RequestBody {
    Empty,
    Buffered {
        data: Bytes,
        trailers: Option<HeaderMap>,
    },
    /// Sent once.
    Streamed(Option<StreamedBody>),
    /// Sent until an attempt starts reading it.
    Reclaimable(Arc<Reclaimable>),
}

/// A body being streamed: what was read while trying to buffer it, then the rest.
#[derive(Debug)]
pub struct StreamedBody {
    prefix: Option<Bytes>,
    rest: Incoming,
    meter: BodyMeter,
}

/// Bytes received from the client, added to the route's counters (`/metrics` and the traffic
/// reports) and the request's access-log line when there is one, when dropped.
#[derive(Debug)]
pub struct BodyMeter {
    stats: Arc<RouteStats>,
    request: Option<Arc<AtomicU64>>,
    received: u64,
}

impl BodyMeter {
    pub fn new(route: &RouteEntry, request: Option<Arc<AtomicU64>>) -> BodyMeter {
        BodyMeter {
            stats: Arc::clone(&route.stats),
            request,
            received: 0,
        }
    }
}

impl Drop for BodyMeter {
    fn drop(&mut self) {
        if self.received > 0 {
            self.stats.add_bytes_in(self.received);
            if let Some(request) = &self.request {
                request.fetch_add(self.received, Ordering::Relaxed);
            }
        }
    }
}

/// A streamed body shared with the attempt sending it.
#[derive(Debug)]
pub struct Reclaimable {
    body: Mutex<StreamedBody>,
    read: AtomicBool,
}

impl RequestBody {
    /// Reads a small body whole when `retrying`; `idempotent` lets a large one be reclaimed.
    pub async fn prepare(
        body: Incoming,
        retrying: bool,
        idempotent: bool,
        mut meter: BodyMeter,
    ) -> Result<RequestBody, hyper::Error> {
        if body.is_end_stream() {
            return Ok(RequestBody::Empty);
        }
        if !retrying {
            return Ok(RequestBody::Streamed(Some(StreamedBody {
                prefix: None,
                rest: body,
                meter,
            })));
        }
        let large = |body: StreamedBody| {
            if idempotent {
                RequestBody::Reclaimable(Arc::new(Reclaimable {
                    body: Mutex::new(body),
                    read: AtomicBool::new(false),
                }))
            } else {
                RequestBody::Streamed(Some(body))
            }
        };
        if body
            .size_hint()
            .lower()
            .try_into()
            .map_or(true, |lower: usize| lower > MAX_BUFFERED)
        {
            return Ok(large(StreamedBody {
                prefix: None,
                rest: body,
                meter,
            }));
        }
        let mut body = body;
        let mut data = BytesMut::new();
        while let Some(frame) = body.frame().await {
            match frame?.into_data() {
                Ok(chunk) => {
                    data.extend_from_slice(&chunk);
                    meter.received += chunk.len() as u64;
                    if data.len() > MAX_BUFFERED {
                        return Ok(large(StreamedBody {
                            prefix: Some(data.freeze()),
                            rest: body,
                            meter,
                        }));
                    }
                }
                Err(frame) => {
                    return Ok(RequestBody::Buffered {
                        data: data.freeze(),
                        trailers: frame.into_trailers().ok(),
                    });
                }
            }
        }
        Ok(RequestBody::Buffered {
            data: data.freeze(),
            trailers: None,
        })
    }

    /// Whether another attempt can send this body.
    pub fn is_replayable(&self) -> bool {
        match self {
            RequestBody::Empty | RequestBody::Buffered { .. } => true,
            RequestBody::Streamed(body) => body.is_some(),
            RequestBody::Reclaimable(shared) => !shared.read.load(Ordering::Acquire),
        }
    }

    /// The body for the next attempt; `None` when it was already sent.
    pub fn for_attempt(&mut self) -> Option<UpstreamBody> {
        match self {
            RequestBody::Empty => Some(UpstreamBody::Empty),
            RequestBody::Buffered { data, trailers } => Some(UpstreamBody::Buffered {
                data: (!data.is_empty()).then(|| data.clone()),
                trailers: trailers.clone(),
            }),
            RequestBody::Streamed(body) => body.take().map(UpstreamBody::Streamed),
            RequestBody::Reclaimable(shared) => (!shared.read.load(Ordering::Acquire))
                .then(|| UpstreamBody::Reclaimable(Arc::clone(shared))),
        }
    }
}

/// The body of one attempt's request.
#[derive(Debug)]
pub enum UpstreamBody {
    Empty,
    Buffered {
        data: Option<Bytes>,
        trailers: Option<HeaderMap>,
    },
    Streamed(StreamedBody),
    Reclaimable(Arc<Reclaimable>),
}

impl StreamedBody {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        let frame = Pin::new(&mut self.rest).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &frame
            && let Some(data) = frame.data_ref()
        {
            self.meter.received += data.len() as u64;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + prefix);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + prefix);
        }
        hint
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpstreamBody::Empty => Poll::Ready(None),
            UpstreamBody::Buffered { data, trailers } => {
                if let Some(data) = data.take() {
                    Poll::Ready(Some(Ok(Frame::data(data))))
                } else {
                    Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
                }
            }
            UpstreamBody::Streamed(body) => body.poll_frame(cx),
            UpstreamBody::Reclaimable(shared) => {
                // From the first read on, the body belongs to this attempt.
                shared.read.store(true, Ordering::Release);
                shared
                    .body
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .poll_frame(cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Empty => true,
            UpstreamBody::Buffered { data, trailers } => data.is_none() && trailers.is_none(),
            UpstreamBody::Streamed(body) => body.is_end_stream(),
            UpstreamBody::Reclaimable(shared) => shared
                .body
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Empty => SizeHint::with_exact(0),
            UpstreamBody::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            UpstreamBody::Streamed(body) => body.size_hint(),
            UpstreamBody::Reclaimable(shared) => shared
                .body
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .size_hint(),
        }
    }
}
