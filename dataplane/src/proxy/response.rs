//! Response bodies as the proxy streams them to clients, carrying the request's [`Record`] until
//! the body ends: a request counts as in flight (to its route and its target) until then. (Its
//! traffic is counted once, by `observe::ObservedBody`, for `/metrics` and the traffic reports.)

use std::error::Error as StdError;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};

use super::ProxyBody;
use super::pool::Lease;
use crate::retry::ActiveRequest;
use crate::state::InFlight;
use crate::table::RouteEntry;

/// What a routed request holds until its response body ends or is dropped.
#[derive(Debug)]
pub struct Record {
    _request: ActiveRequest,
    _in_flight: Option<InFlight>,
    /// The pooled connection the response comes over, reusable once the body is read.
    connection: Option<Lease>,
}

impl Record {
    pub fn new(route: &RouteEntry) -> Record {
        Record {
            _request: route.state.load.start_request(),
            _in_flight: None,
            connection: None,
        }
    }

    /// A target answered over `connection` (a pooled one, when it may be reused); the request
    /// stays in flight there until the body ends.
    pub fn answered(mut self, in_flight: InFlight, connection: Option<Lease>) -> Record {
        self._in_flight = Some(in_flight);
        self.connection = connection;
        self
    }

    /// The body was read to its end: the connection can carry another request.
    fn finish(mut self) {
        if let Some(connection) = self.connection.take() {
            connection.release();
        }
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

impl Drop for ResponseBody {
    /// A server need not poll a body that is empty from the start (`Content-Length: 0`): one
    /// dropped at its end still hands its connection back; one dropped before closes it.
    fn drop(&mut self) {
        if let Some(record) = self.record.take()
            && self.inner.is_end_stream()
        {
            record.finish();
        }
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
        // The request is over (a failed body is over too, and its connection is not reused).
        match &frame {
            Poll::Ready(None) => {
                if let Some(record) = this.record.take() {
                    record.finish();
                }
            }
            Poll::Ready(Some(Err(_))) => drop(this.record.take()),
            _ => {}
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
