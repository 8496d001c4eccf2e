//! The HTTP/1.1 proxy: the request path.
//!
//! Life of a request: load the applied config once (it stays for the whole request) → normalize
//! the host and find the route → read the body whole only if the route retries and it is small
//! ([`body`]) → rewrite headers → attempts ([`forward`]): pick a target with the upstream's
//! balancer, send with the pooled client within the per-try and total timeouts, observe the
//! outcome, maybe retry elsewhere → stream the response back ([`response`]). Every failure is a
//! [`ProxyError`] and becomes a response in [`ProxyError::into_response`]. Last, when the
//! response body is over, the request is recorded (metrics, access log, spans: [`observe`]).

mod body;
mod client;
mod error;
mod forward;
pub mod headers;
pub mod observe;
mod response;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::Gateway;
use crate::route::normalize_host;
use observe::Exchange;

pub use body::MAX_BUFFERED;
pub use client::UpstreamClients;
pub use error::{ProxyError, Side, json_response};
pub use observe::{ObservedBody, Observers};
pub use response::{Record, ResponseBody};

/// Response bodies: streamed from a target, or a small body the gateway wrote itself.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// How long a client may take to send request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Proxy {
    gateway: Arc<Gateway>,
    clients: UpstreamClients,
    observers: Observers,
}

impl Proxy {
    /// A proxy with request ids, metrics, and neither access log nor tracing.
    pub fn new(gateway: Arc<Gateway>) -> Arc<Proxy> {
        Proxy::with_observers(gateway, Observers::default())
    }

    pub fn with_observers(gateway: Arc<Gateway>, observers: Observers) -> Arc<Proxy> {
        let connections = Arc::clone(&gateway.metrics().connections);
        Arc::new(Proxy {
            gateway,
            clients: UpstreamClients::counting_in(connections),
            observers,
        })
    }

    /// Serves one request; failures are already responses.
    pub async fn handle(
        &self,
        mut request: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<ObservedBody> {
        let mut exchange = Exchange::begin(&self.gateway, &self.observers, &mut request, client);
        let response = self.route(request, client, &mut exchange).await;
        exchange.respond(&self.observers, response)
    }

    async fn route(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
        exchange: &mut Exchange,
    ) -> Response<ResponseBody> {
        let Some(active) = self.gateway.active() else {
            exchange.failed(&ProxyError::NotReady);
            return ResponseBody::unrouted(ProxyError::NotReady.into_response());
        };
        let host = normalize_host(request_host(&request));
        let path = request.uri().path();
        let Some((route, upstream)) = active.table.find(&host, path, request.method()) else {
            let error = ProxyError::NoRoute {
                host: host.into_owned(),
                path: path.to_string(),
            };
            exchange.failed(&error);
            return ResponseBody::unrouted(error.into_response());
        };
        exchange.routed(&route.stats, &self.observers);
        let record = Record::new(route, upstream);
        match self
            .forward(request, client, route, upstream, exchange)
            .await
        {
            Ok((response, in_flight)) => {
                let record = record.answered(response.status(), in_flight);
                let mut response = response.map(Either::Left);
                headers::remove_hop_by_hop(response.headers_mut());
                headers::add_via(response.headers_mut());
                ResponseBody::recorded(response, record)
            }
            Err(error) => {
                exchange.failed(&error);
                ResponseBody::recorded(error.into_response(), record)
            }
        }
    }
}

/// The Host the client asked for: the authority of an absolute-form URI, else the Host header.
fn request_host<B>(request: &Request<B>) -> &str {
    request
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("")
}

/// `a: b: c` for an error and its sources.
fn source_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// How long a draining server keeps idle keep-alive connections open, so that clients learn of
/// the drain from a `Connection: close` response instead of racing a close.
const IDLE_GRACE: Duration = Duration::from_secs(2);

/// Accepts connections until `shutdown` turns true, then drains.
///
/// Once the gateway is draining, every response carries `Connection: close`, so busy clients
/// reconnect (to a successor sharing the listening socket, or to another data plane) without
/// ever sending a request into a closing connection. After [`IDLE_GRACE`], connections still
/// idle are closed and those with a request in flight finish it, for at most `drain_timeout`.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    mut shutdown: watch::Receiver<bool>,
    drain_timeout: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
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
        let open = OpenConnection::start(&proxy.gateway);
        let proxy = Arc::clone(&proxy);
        let service = service_fn(move |request| {
            let proxy = Arc::clone(&proxy);
            async move {
                let mut response = proxy.handle(request, client).await;
                if proxy.gateway.is_draining() {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, Infallible>(response)
            }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _open = open;
            if let Err(error) = connection.await {
                tracing::debug!(%client, %error, "proxy connection ended with an error");
            }
        });
    }
    drop(listener);
    let grace = IDLE_GRACE.min(drain_timeout);
    tokio::time::sleep(grace).await;
    drain(graceful, drain_timeout.saturating_sub(grace)).await;
}

/// A client connection, counted as open until dropped.
struct OpenConnection(Arc<Gateway>);

impl OpenConnection {
    fn start(gateway: &Arc<Gateway>) -> OpenConnection {
        let process = &gateway.metrics().process;
        process
            .downstream_connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        process
            .downstream_connections_active
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        OpenConnection(Arc::clone(gateway))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0
            .metrics()
            .process
            .downstream_connections_active
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone).
pub async fn stop_requested(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Waits for watched connections to finish, at most `timeout`.
pub async fn drain(graceful: GracefulShutdown, timeout: Duration) {
    if tokio::time::timeout(timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {timeout:?}; closing them");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_host_prefers_the_absolute_uri() {
        let request = Request::builder()
            .uri("http://abs.example.com:8080/x")
            .header(header::HOST, "header.example.com")
            .body(())
            .unwrap();
        assert_eq!(request_host(&request), "abs.example.com:8080");
        let request = Request::builder()
            .uri("/x")
            .header(header::HOST, "header.example.com")
            .body(())
            .unwrap();
        assert_eq!(request_host(&request), "header.example.com");
    }
}
