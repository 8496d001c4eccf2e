//! Shared test helpers: configs, an in-process fake control plane and a test upstream.
#![allow(dead_code, reason = "each test binary uses part of it")]
#![allow(clippy::unwrap_used, reason = "test helpers: a failure should panic")]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gateway_dataplane::app::{ConfigSource, Gateway};
use gateway_dataplane::proxy::{self, Proxy};
use gateway_dataplane::state::HealthStatus;
use gateway_proto::hash::config_hash;
use gateway_proto::v1::discovery_service_server::{DiscoveryService, DiscoveryServiceServer};
use gateway_proto::v1::{
    Config, ControlPlaneMessage, DataPlaneMessage, HealthCheckPolicy, HttpHealthCheck, Route,
    RouteMatch, Snapshot, Target, Upstream, control_plane_message, data_plane_message::Kind,
    health_check_policy, route_match::Path,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
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

/// A health-check policy probing often, for tests.
pub fn health_policy(name: &str, check: health_check_policy::Check) -> HealthCheckPolicy {
    HealthCheckPolicy {
        name: name.into(),
        check: Some(check),
        interval_ms: 50,
        timeout_ms: 50,
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        ..Default::default()
    }
}

/// An HTTP check of `/healthz`.
pub fn http_check() -> health_check_policy::Check {
    health_check_policy::Check::Http(HttpHealthCheck {
        path: "/healthz".into(),
        ..Default::default()
    })
}

/// The health `gateway` reports for `address`, if it watches it.
pub fn health_of(gateway: &Gateway, address: &str) -> Option<HealthStatus> {
    gateway
        .carried()
        .watched_targets()
        .into_iter()
        .find(|t| &*t.address == address)
        .map(|t| t.health())
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
    /// Reports received while waiting for something else.
    pub reports: Vec<DataPlaneMessage>,
}

impl Session {
    pub async fn send(&self, snapshot: Snapshot) {
        let message = ControlPlaneMessage {
            kind: Some(control_plane_message::Kind::Snapshot(snapshot)),
        };
        self.outbound.send(Ok(message)).await.unwrap();
    }

    /// The next protocol message (Hello, ACK, NACK); reports are kept for [`Session::report`].
    pub async fn receive(&mut self) -> DataPlaneMessage {
        loop {
            let message = self.next().await;
            match message.kind {
                Some(Kind::Health(_) | Kind::Traffic(_)) => self.reports.push(message),
                _ => return message,
            }
        }
    }

    /// The first report (kept or coming) that `pick` accepts; a protocol message arriving
    /// meanwhile fails the test.
    pub async fn report<T>(&mut self, mut pick: impl FnMut(&Kind) -> Option<T>) -> T {
        let kept = std::mem::take(&mut self.reports);
        for message in kept {
            if let Some(found) = message.kind.as_ref().and_then(&mut pick) {
                return found;
            }
        }
        loop {
            let message = self.next().await;
            match &message.kind {
                Some(kind @ (Kind::Health(_) | Kind::Traffic(_))) => {
                    if let Some(found) = pick(kind) {
                        return found;
                    }
                }
                other => panic!("expected a report, got {other:?}"),
            }
        }
    }

    async fn next(&mut self) -> DataPlaneMessage {
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
            reports: Vec::new(),
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
    let backend = TestBackend::start(name).await;
    let address = backend.address;
    // Serves until the test process ends.
    std::mem::forget(backend);
    address
}

/// [`backend`] whose `/healthz` answers with the status in the returned cell (200 at first).
pub async fn backend_with_health(name: &'static str) -> (SocketAddr, Arc<AtomicU16>) {
    let backend = TestBackend::start(name).await;
    let handles = (backend.address, backend.health.clone());
    std::mem::forget(backend);
    handles
}

/// A test upstream under the test's control.
pub struct TestBackend {
    pub address: SocketAddr,
    /// The status `/healthz` answers (200 at first).
    pub health: Arc<AtomicU16>,
    /// When not 0, every other request is answered with this status.
    pub fail_with: Arc<AtomicU16>,
    /// Milliseconds every other request waits before its answer.
    pub delay_ms: Arc<AtomicU64>,
    /// Requests served, `/healthz` excluded.
    pub requests: Arc<AtomicUsize>,
    /// `METHOD host` of each `/healthz` request.
    pub probes: Arc<Mutex<Vec<String>>>,
    stop: watch::Sender<bool>,
}

impl TestBackend {
    pub async fn start(name: &'static str) -> TestBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        TestBackend::serve(name, listener)
    }

    /// Serves on `address` (again, after [`TestBackend::kill`]; or on another loopback IP).
    pub async fn start_at(name: &'static str, address: SocketAddr) -> TestBackend {
        let listener = TcpListener::bind(address).await.unwrap();
        TestBackend::serve(name, listener)
    }

    fn serve(name: &'static str, listener: TcpListener) -> TestBackend {
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let backend = TestBackend {
            address,
            health: Arc::new(AtomicU16::new(200)),
            fail_with: Arc::new(AtomicU16::new(0)),
            delay_ms: Arc::new(AtomicU64::new(0)),
            requests: Arc::new(AtomicUsize::new(0)),
            probes: Arc::default(),
            stop,
        };
        let (health, fail_with, requests, probes, delay) = (
            backend.health.clone(),
            backend.fail_with.clone(),
            backend.requests.clone(),
            backend.probes.clone(),
            backend.delay_ms.clone(),
        );
        tokio::spawn(async move {
            let mut stop_accepting = stopped.clone();
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = stop_accepting.wait_for(|stop| *stop) => return,
                };
                let Ok((stream, _)) = accepted else { return };
                let (health, fail_with, requests, probes, delay) = (
                    health.clone(),
                    fail_with.clone(),
                    requests.clone(),
                    probes.clone(),
                    delay.clone(),
                );
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    if request.uri().path() == "/healthz" {
                        let host = request
                            .headers()
                            .get("host")
                            .map(|h| h.to_str().unwrap().to_string());
                        probes.lock().unwrap().push(format!(
                            "{} {}",
                            request.method(),
                            host.unwrap_or_default()
                        ));
                    }
                    let delay = Duration::from_millis(delay.load(Ordering::Relaxed));
                    respond(name, request, &health, &fail_with, &requests, delay)
                });
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    // Killed: the connection is dropped mid-request, as by a crash.
                    tokio::select! {
                        _ = connection => {}
                        _ = stopped.wait_for(|stop| *stop) => {}
                    }
                });
            }
        });
        backend
    }

    /// Stops listening and drops every open connection, as a crash would.
    pub fn kill(&self) {
        let _ = self.stop.send(true);
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn probes(&self) -> Vec<String> {
        self.probes.lock().unwrap().clone()
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.kill();
    }
}

fn respond(
    name: &'static str,
    request: Request<Incoming>,
    health: &AtomicU16,
    fail_with: &AtomicU16,
    requests: &AtomicUsize,
    delay: Duration,
) -> impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + use<> {
    let health = health.load(Ordering::Relaxed);
    let fail_with = fail_with.load(Ordering::Relaxed);
    if request.uri().path() != "/healthz" {
        requests.fetch_add(1, Ordering::Relaxed);
    }
    async move {
        if request.uri().path() == "/healthz" {
            let mut response = Response::new(Full::new(Bytes::from_static(b"health")));
            *response.status_mut() = http::StatusCode::from_u16(health).unwrap();
            return Ok(response);
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if fail_with != 0 {
            let response = Response::builder()
                .status(fail_with)
                .header("x-backend", name)
                .body(Full::new(Bytes::from_static(b"failing")))
                .unwrap();
            return Ok(response);
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
        Ok(response)
    }
}

/// A gRPC server with only `grpc.health.v1.Health`, whose answers the reporter sets.
pub async fn grpc_health_target() -> (SocketAddr, tonic_health::server::HealthReporter) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (reporter, service) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (address, reporter)
}

/// Polls `check` every 20 ms until it gives a value; panics naming `what` after `ceiling`.
pub async fn eventually<T, F, Fut>(ceiling: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + ceiling;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {ceiling:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A proxy on a real listener, fed configs as the control plane would.
pub struct Harness {
    pub gateway: Arc<Gateway>,
    pub address: SocketAddr,
    pub client: Client<HttpConnector, Full<Bytes>>,
    _stop: watch::Sender<bool>,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::with_gateway(Gateway::new()).await
    }

    pub async fn with_gateway(gateway: Arc<Gateway>) -> Harness {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(proxy::serve(
            listener,
            Proxy::new(gateway.clone()),
            stopped,
            std::time::Duration::from_secs(5),
        ));
        Harness {
            gateway,
            address,
            client: Client::builder(TokioExecutor::new()).build_http(),
            _stop: stop,
        }
    }

    pub async fn apply(&self, version: u64, config: Config) {
        self.gateway
            .apply(snapshot(version, config), ConfigSource::ControlPlane)
            .await
            .unwrap();
    }

    /// Which backends `n` requests reach, in order.
    pub async fn backends(&self, n: usize) -> Vec<String> {
        let mut seen = Vec::new();
        for _ in 0..n {
            let (_, headers, _) = self.send("h", "/", "").await;
            seen.push(headers["x-backend"].to_str().unwrap().to_string());
        }
        seen
    }

    pub async fn send(
        &self,
        host: &str,
        path: &str,
        body: &str,
    ) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        self.send_with(host, path, body, &[]).await
    }

    /// [`Harness::send`] with extra request headers.
    pub async fn send_with(
        &self,
        host: &str,
        path: &str,
        body: &str,
        extra: &[(&str, &str)],
    ) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        self.request(Method::POST, host, path, body, extra).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        self.request(Method::GET, "h", path, "", &[]).await
    }

    pub async fn request(
        &self,
        method: Method,
        host: &str,
        path: &str,
        body: &str,
        extra: &[(&str, &str)],
    ) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.address));
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let request = request
            .header("host", host)
            .header("x-forwarded-for", "203.0.113.9")
            .header("connection", "keep-alive, x-drop-me")
            .header("x-drop-me", "1")
            .header("x-debug", "1")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let response = self.client.request(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        (status, headers, json)
    }
}
