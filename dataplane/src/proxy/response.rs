//! Response bodies as the proxy streams them to clients, carrying the request's [`Record`] until
//! the body ends: a request counts as in flight (to its route and its target) until then. (Its
//! traffic is counted once, by `observe::ObservedBody`, for `/metrics` and the traffic reports.)

use std::error::Error as StdError;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};

use super::ProxyBody;
use crate::retry::ActiveRequest;
use crate::state::InFlight;
use crate::table::{RouteEntry, UpstreamPool};

/// What a routed request holds until its response body ends or is dropped.
#[derive(Debug)]
pub struct Record {
    _request: ActiveRequest,
    _in_flight: Option<InFlight>,
}

impl Record {
    pub fn new(route: &RouteEntry, _upstream: &UpstreamPool) -> Record {
        Record {
            _request: route.state.load.start_request(),
            _in_flight: None,
        }
    }

    /// A target answered (with `_status`); the request stays in flight there until the body
    /// ends.
    pub fn answered(mut self, _status: StatusCode, in_flight: InFlight) -> Record {
        self._in_flight = Some(in_flight);
        self
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
        // The request is over (a failed body is over too).
        if let Poll::Ready(None | Some(Err(_))) = &frame {
            drop(this.record.take());
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
