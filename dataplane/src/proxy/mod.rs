//! The proxy: the request path, for HTTP/1.1, HTTP/2 and gRPC, plain or TLS ([`server`]).
//!
//! Life of a request: load the applied config once (it stays for the whole request) → normalize
//! the host and find the route → read the body whole only if the route retries and it is small
//! ([`body`]) → rewrite headers → attempts ([`forward`]): pick a target with the upstream's
//! balancer, send with the pooled client of the upstream's transport (HTTP/1.1 or HTTP/2, plain
//! or TLS) within the per-try and total timeouts (a shorter `grpc-timeout` wins), observe the
//! outcome, maybe retry elsewhere → stream the response back, trailers included
//! ([`response`]). An HTTP/1.1 Upgrade (WebSocket) answered 101 becomes a byte tunnel
//! ([`tunnel`]). Every failure is a [`ProxyError`] and becomes a response in
//! [`ProxyError::into_response_for`] (a gRPC status for gRPC calls).
//! Last, when the response body is over, the request is recorded (metrics, access log,
//! spans: [`observe`]).

mod body;
mod client;
mod connections;
mod error;
mod forward;
mod framing;
pub mod grpc;
mod head_audit;
pub mod headers;
pub mod observe;
mod pool;
mod response;
mod server;
mod tunnel;
mod worker_load;

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::watch;

use crate::app::Gateway;
use crate::route::normalize_host;
use observe::Exchange;
use worker_load::WorkerLoad;

pub use body::MAX_BUFFERED;
pub use client::UpstreamClients;
pub use error::{ProxyError, Side, json_response};
pub use observe::{ObservedBody, Observers};
pub use response::{Record, ResponseBody};
pub use server::{ServerLimits, serve, serve_with};
pub use tunnel::{
    DEFAULT_TUNNEL_IDLE_TIMEOUT, all_closed as tunnels_closed, open_count as open_tunnels,
};

/// Response bodies: streamed from a target, or a small body the gateway wrote itself.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Who sent a request, and over what.
#[derive(Debug, Clone)]
pub struct Downstream {
    pub client: SocketAddr,
    /// `client`'s address as an `X-Forwarded-For` element ([`headers::client_address`]): made
    /// once per connection, since formatting an address costs more than the rest of the
    /// header rewrite.
    pub client_ip: HeaderValue,
    /// Arrived on the TLS listener.
    pub tls: bool,
    /// The listener lets a body on GET through ([`ServerLimits::allow_get_body`]).
    pub allow_get_body: bool,
    /// Why the connection's head audit refuses this request: framing hyper resolved while
    /// parsing, so [`framing`] cannot see it ([`head_audit`]).
    pub refused: Option<&'static str>,
}

thread_local! {
    /// The proxy worker this thread is, set by [`enter_worker`]; 0 on any other thread.
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Marks the calling thread as proxy worker `index` (0-based, below the `workers` the
/// [`Proxy`] was made for): its requests use that worker's own upstream connection pools, so a
/// request, its upstream connection and that connection's task stay on this thread.
pub fn enter_worker(index: usize) {
    WORKER.with(|worker| worker.set(index));
}

fn current_worker() -> usize {
    WORKER.with(Cell::get)
}

pub struct Proxy {
    gateway: Arc<Gateway>,
    /// One set of pooled clients per worker thread; connections never cross workers.
    clients: Box<[UpstreamClients]>,
    observers: Observers,
    /// How long an upgraded (WebSocket) connection may pass no byte either way.
    tunnel_idle_timeout: Duration,
    /// Open client connections per worker, so that accepting spreads them evenly.
    load: Arc<WorkerLoad>,
}

impl Proxy {
    /// A proxy with request ids, metrics, and neither access log nor tracing.
    pub fn new(gateway: Arc<Gateway>) -> Arc<Proxy> {
        Proxy::with_observers(gateway, Observers::default())
    }

    pub fn with_observers(gateway: Arc<Gateway>, observers: Observers) -> Arc<Proxy> {
        Proxy::with_options(gateway, observers, DEFAULT_TUNNEL_IDLE_TIMEOUT)
    }

    /// With `tunnel_idle_timeout` for upgraded (WebSocket) connections.
    pub fn with_options(
        gateway: Arc<Gateway>,
        observers: Observers,
        tunnel_idle_timeout: Duration,
    ) -> Arc<Proxy> {
        Proxy::with_workers(gateway, observers, tunnel_idle_timeout, 1)
    }

    /// For `workers` worker threads (see [`enter_worker`]), each with its own upstream pools.
    pub fn with_workers(
        gateway: Arc<Gateway>,
        observers: Observers,
        tunnel_idle_timeout: Duration,
        workers: usize,
    ) -> Arc<Proxy> {
        let connections = &gateway.metrics().connections;
        let clients = (0..workers.max(1))
            .map(|_| UpstreamClients::counting_in(Arc::clone(connections)))
            .collect();
        Arc::new(Proxy {
            gateway,
            clients,
            observers,
            tunnel_idle_timeout,
            load: WorkerLoad::new(workers),
        })
    }

    /// The calling worker's upstream clients.
    fn clients(&self) -> &UpstreamClients {
        &self.clients[current_worker().min(self.clients.len() - 1)]
    }

    /// Serves one request that arrived in plain HTTP; failures are already responses.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<ObservedBody> {
        let downstream = Downstream {
            client,
            client_ip: headers::client_address(client.ip()),
            tls: false,
            allow_get_body: false,
            refused: None,
        };
        self.handle_from(request, downstream).await
    }

    /// Serves one request; failures are already responses (gRPC statuses for gRPC calls).
    pub async fn handle_from(
        &self,
        mut request: Request<Incoming>,
        downstream: Downstream,
    ) -> Response<ObservedBody> {
        let mut exchange = Exchange::begin(
            &self.gateway,
            &self.observers,
            &mut request,
            downstream.client,
        );
        let response = self.route(request, &downstream, &mut exchange).await;
        exchange.respond(&self.observers, response)
    }

    async fn route(
        &self,
        mut request: Request<Incoming>,
        downstream: &Downstream,
        exchange: &mut Exchange,
    ) -> Response<ResponseBody> {
        let grpc = grpc::is_grpc(request.headers());
        let refused = downstream
            .refused
            .or_else(|| framing::refusal(&request, downstream.allow_get_body));
        if let Some(reason) = refused {
            let error = ProxyError::Malformed(reason);
            exchange.failed(&error);
            return ResponseBody::unrouted(error.into_response());
        }
        let Some(active) = self.gateway.active() else {
            exchange.failed(&ProxyError::NotReady);
            return ResponseBody::unrouted(ProxyError::NotReady.into_response_for(grpc));
        };
        let host = normalize_host(request_host(&request));
        let path = request.uri().path();
        let Some((route, upstream)) = active.table.find(&host, path, request.method()) else {
            let error = ProxyError::NoRoute {
                host: host.into_owned(),
                path: path.to_string(),
            };
            exchange.failed(&error);
            return ResponseBody::unrouted(error.into_response_for(grpc));
        };
        exchange.routed(&route.stats, &self.observers);
        let record = Record::new(route);
        // An upgrade (WebSocket) keeps its Upgrade headers and becomes a tunnel on 101; so does
        // a WebSocket over HTTP/2, sent to the target as an HTTP/1.1 upgrade.
        let over_h2 = tunnel::websocket_over_h2_as_upgrade(&mut request);
        let upgrade =
            (over_h2 || tunnel::requested(&request)).then(|| hyper::upgrade::on(&mut request));
        let call = forward::Call {
            downstream,
            grpc,
            upgrade: upgrade.is_some(),
        };
        match self.forward(request, call, route, upstream, exchange).await {
            Ok(answer) => {
                let mut response = answer.response;
                if let Some(downstream_upgrade) = upgrade
                    && response.status() == StatusCode::SWITCHING_PROTOCOLS
                {
                    // The tunnel keeps the target counted as busy while it is open.
                    let tunnel_in_flight = answer.in_flight.target().start_request();
                    tunnel::spawn(
                        downstream_upgrade,
                        hyper::upgrade::on(&mut response),
                        self.tunnel_idle_timeout,
                        tunnel_in_flight,
                        route.name.clone(),
                    );
                    // The tunnel has the connection now; it never goes back to a pool.
                    let record = record.answered(answer.in_flight, None);
                    if over_h2 {
                        tunnel::accept_websocket_over_h2(&mut response);
                    }
                    let mut response = response.map(Either::Left);
                    headers::add_via(response.headers_mut());
                    return ResponseBody::recorded(response, record);
                }
                let record = record.answered(answer.in_flight, answer.connection);
                let mut response = response.map(Either::Left);
                // The client hears this gateway's HTTP version, not the target's: an HTTP/1.0
                // target must not turn the client's HTTP/1.1 exchange into HTTP/1.0 (and a close).
                *response.version_mut() = Version::HTTP_11;
                headers::rewrite_response(response.headers_mut());
                ResponseBody::recorded(response, record)
            }
            Err(error) => {
                exchange.failed(&error);
                ResponseBody::recorded(error.into_response_for(grpc), record)
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
