//! Response bodies as the proxy streams them to clients, carrying the request's [`Record`] until
//! the body ends: a request counts as in flight (to its route and its target) until then, and
//! its traffic (status class, bytes out, latency) is counted then, once.

use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use super::ProxyBody;
use crate::retry::ActiveRequest;
use crate::state::{InFlight, RouteState, UpstreamState};
use crate::table::{RouteEntry, UpstreamPool};
use crate::traffic::{self, Exchange, GATEWAY_CLASS};

/// What a routed request holds until its response body ends or is dropped.
#[derive(Debug)]
pub struct Record {
    _request: ActiveRequest,
    _in_flight: Option<InFlight>,
    route: Arc<RouteState>,
    upstream: Arc<UpstreamState>,
    started: Instant,
    class: usize,
    bytes_out: u64,
}

impl Record {
    pub fn new(route: &RouteEntry, upstream: &UpstreamPool) -> Record {
        Record {
            _request: route.state.load.start_request(),
            _in_flight: None,
            route: Arc::clone(&route.state),
            upstream: Arc::clone(&upstream.state),
            started: Instant::now(),
            class: GATEWAY_CLASS,
            bytes_out: 0,
        }
    }

    /// A target answered with `status`; the request stays in flight there until the body ends.
    pub fn answered(mut self, status: StatusCode, in_flight: InFlight) -> Record {
        self.class = traffic::class_of(status);
        self._in_flight = Some(in_flight);
        self
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let exchange = Exchange {
            class: self.class,
            bytes_in: 0,
            bytes_out: self.bytes_out,
            latency: self.started.elapsed(),
        };
        self.route.traffic.record(&exchange);
        self.upstream.traffic.record(&exchange);
    }
}

#[derive(Debug)]
pub struct ResponseBody {
    inner: ProxyBody,
    record: Option<Record>,
}

impl ResponseBody {
    /// A response outside any route (no config yet, no route).
    pub fn unrouted(response: Response<ProxyBody>) -> Response<ResponseBody> {
        response.map(|inner| ResponseBody {
            inner,
            record: None,
        })
    }

    pub fn recorded(response: Response<ProxyBody>, record: Record) -> Response<ResponseBody> {
        response.map(|inner| ResponseBody {
            inner,
            record: Some(record),
        })
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        match &frame {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(record), Some(data)) = (&mut this.record, frame.data_ref()) {
                    record.bytes_out += data.remaining() as u64;
                }
            }
            // The request is over (a failed body is over too).
            Poll::Ready(None | Some(Err(_))) => drop(this.record.take()),
            Poll::Pending => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
