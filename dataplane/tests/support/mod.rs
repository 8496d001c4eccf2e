//! Shared test helpers: configs, an in-process fake control plane and a test upstream.
#![allow(dead_code, reason = "each test binary uses part of it")]
#![allow(clippy::unwrap_used, reason = "test helpers: a failure should panic")]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gateway_proto::hash::config_hash;
use gateway_proto::v1::discovery_service_server::{DiscoveryService, DiscoveryServiceServer};
use gateway_proto::v1::{
    Config, ControlPlaneMessage, DataPlaneMessage, Route, RouteMatch, Snapshot, Target, Upstream,
    control_plane_message, route_match::Path,
};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Status, Streaming};

pub fn upstream(name: &str, addresses: &[String]) -> Upstream {
    Upstream {
        name: name.into(),
        targets: addresses
            .iter()
            .map(|address| Target {
                address: address.clone(),
                weight: 1,
            })
            .collect(),
        ..Default::default()
    }
}

pub fn route(name: &str, hosts: &[&str], prefix: &str, upstream: &str) -> Route {
    Route {
        name: name.into(),
        r#match: Some(RouteMatch {
            hosts: hosts.iter().map(|h| (*h).into()).collect(),
            path: Some(Path::Prefix(prefix.into())),
            methods: vec![],
        }),
        upstream: upstream.into(),
        ..Default::default()
    }
}

pub fn snapshot(version: u64, config: Config) -> Snapshot {
    Snapshot {
        version,
        hash: config_hash(&config),
        nonce: format!("nonce-{version}"),
        config: Some(config),
        ..Default::default()
    }
}

/// One data plane's stream, as the fake control plane sees it.
pub struct Session {
    pub inbound: Streaming<DataPlaneMessage>,
    pub outbound: mpsc::Sender<Result<ControlPlaneMessage, Status>>,
}

impl Session {
    pub async fn send(&self, snapshot: Snapshot) {
        let message = ControlPlaneMessage {
            kind: Some(control_plane_message::Kind::Snapshot(snapshot)),
        };
        self.outbound.send(Ok(message)).await.unwrap();
    }

    pub async fn receive(&mut self) -> DataPlaneMessage {
        tokio::time::timeout(Duration::from_secs(10), self.inbound.message())
            .await
            .expect("the data plane answers within 10 s")
            .unwrap()
            .expect("the stream is open")
    }
}

struct FakeControlPlane {
    sessions: mpsc::Sender<Session>,
}

#[tonic::async_trait]
impl DiscoveryService for FakeControlPlane {
    type StreamStream =
        Pin<Box<dyn tokio_stream::Stream<Item = Result<ControlPlaneMessage, Status>> + Send>>;

    async fn stream(
        &self,
        request: tonic::Request<Streaming<DataPlaneMessage>>,
    ) -> Result<tonic::Response<Self::StreamStream>, Status> {
        let (outbound, receiver) = mpsc::channel(8);
        let session = Session {
            inbound: request.into_inner(),
            outbound,
        };
        self.sessions
            .send(session)
            .await
            .map_err(|_| Status::unavailable("test over"))?;
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(
            receiver,
        ))))
    }
}

/// Starts a fake control plane; each data-plane stream arrives on the returned receiver.
pub async fn fake_control_plane() -> (String, mpsc::Receiver<Session>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let (sessions, receiver) = mpsc::channel(4);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(DiscoveryServiceServer::new(FakeControlPlane { sessions }))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (address, receiver)
}

/// An address nothing listens on.
pub async fn closed_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// A test upstream: `/slow` waits 3 s; anything else answers with the request's method, path,
/// headers and body as JSON, plus an `x-backend` header naming this backend.
pub async fn backend(name: &'static str) -> SocketAddr {
    backend_with_health(name).await.0
}

/// [`backend`] whose `/healthz` answers with the status in the returned cell (200 at first).
pub async fn backend_with_health(name: &'static str) -> (SocketAddr, Arc<AtomicU16>) {
    let health = Arc::new(AtomicU16::new(200));
    let status = Arc::clone(&health);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let status = Arc::clone(&status);
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let health = status.load(Ordering::Relaxed);
                async move {
                    if request.uri().path() == "/healthz" {
                        let mut response = Response::new(Full::new(Bytes::from_static(b"health")));
                        *response.status_mut() = http::StatusCode::from_u16(health).unwrap();
                        return Ok::<_, Infallible>(response);
                    }
                    if request.uri().path() == "/slow" {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                    }
                    let (parts, body) = request.into_parts();
                    let body = body.collect().await.unwrap().to_bytes();
                    let headers: serde_json::Map<String, serde_json::Value> = parts
                        .headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().into()))
                        .collect();
                    let echo = serde_json::json!({
                        "method": parts.method.as_str(),
                        "uri": parts.uri.to_string(),
                        "headers": headers,
                        "body": String::from_utf8_lossy(&body),
                    });
                    let response = Response::builder()
                        .header("x-backend", name)
                        .header("connection", "keep-alive, x-hop")
                        .header("x-hop", "must not pass")
                        .body(Full::new(Bytes::from(echo.to_string())))
                        .unwrap();
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (address, health)
}
