//! A small HTTP/1.1 upstream: it answers with its own name, records what it received, and can be
//! made slow, unhealthy or failing. Requests to `/healthz` are health probes and are kept apart.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The path health probes use in these tests.
pub const HEALTH_PATH: &str = "/healthz";

/// What the upstream received, for asserting forwarded headers.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

struct State {
    name: String,
    seen: Mutex<Vec<SeenRequest>>,
    health_probes: AtomicU64,
    health_status: AtomicU16,
    health_delay_ms: AtomicU64,
    status: AtomicU16,
    delay_ms: AtomicU64,
    /// Flipped to `true` by [`TestUpstream::kill`]: every open connection closes.
    killed: tokio::sync::watch::Sender<bool>,
}

pub struct TestUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    server: JoinHandle<()>,
}

impl TestUpstream {
    /// Starts serving on `127.0.0.1:0`; every response body is `name`.
    pub async fn start(name: &str) -> Self {
        Self::start_at(name, "127.0.0.1:0".parse().expect("a socket address")).await
    }

    /// Starts serving on `addr` (an upstream coming back on the port of one that was killed).
    pub async fn start_at(name: &str, addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("bind a test upstream on {addr}: {e}"));
        let addr = listener
            .local_addr()
            .expect("local address of a bound listener");
        let state = Arc::new(State {
            name: name.to_owned(),
            seen: Mutex::new(Vec::new()),
            health_probes: AtomicU64::new(0),
            health_status: AtomicU16::new(200),
            health_delay_ms: AtomicU64::new(0),
            status: AtomicU16::new(200),
            delay_ms: AtomicU64::new(0),
            killed: tokio::sync::watch::Sender::new(false),
        });
        let server = tokio::spawn(serve(listener, Arc::clone(&state)));
        TestUpstream {
            addr,
            state,
            server,
        }
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, as a target address.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Requests received, health probes excluded.
    pub fn request_count(&self) -> usize {
        self.seen().len()
    }

    pub fn seen(&self) -> Vec<SeenRequest> {
        self.state
            .seen
            .lock()
            .map(|seen| seen.clone())
            .unwrap_or_default()
    }

    pub fn last_request(&self) -> Option<SeenRequest> {
        self.seen().pop()
    }

    pub fn health_probe_count(&self) -> u64 {
        self.state.health_probes.load(Ordering::SeqCst)
    }

    /// Status answered to health probes (200 by default).
    pub fn set_health_status(&self, status: u16) {
        self.state.health_status.store(status, Ordering::SeqCst);
    }

    /// Delay before answering health probes (none by default): probes with a shorter timeout
    /// time out.
    pub fn set_health_delay(&self, delay: Duration) {
        self.state
            .health_delay_ms
            .store(millis(delay), Ordering::SeqCst);
    }

    /// Status answered to ordinary requests (200 by default), as a failing application would.
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    /// Stops as a crashed process would: the listener closes (connections are refused) and
    /// every open connection is dropped.
    pub fn kill(self) {
        self.state.killed.send_replace(true);
        self.server.abort();
    }

    /// Delay before answering ordinary requests (none by default).
    pub fn set_delay(&self, delay: Duration) {
        self.state.delay_ms.store(millis(delay), Ordering::SeqCst);
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// An address nothing listens on: connections to it are refused.
pub fn dead_address() -> String {
    format!("127.0.0.1:{}", crate::process::free_port())
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = Arc::clone(&state);
        let mut killed = state.killed.subscribe();
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(Arc::clone(&state), request));
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            // A client hanging up mid-request is not the upstream's concern.
            tokio::select! {
                _ = connection => {}
                _ = killed.wait_for(|killed| *killed) => {}
            }
        });
    }
}

async fn respond(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    if path == HEALTH_PATH {
        state.health_probes.fetch_add(1, Ordering::SeqCst);
        sleep_ms(state.health_delay_ms.load(Ordering::SeqCst)).await;
        return Ok(reply(&state.name, status(&state.health_status), None));
    }
    let seen = SeenRequest {
        method: request.method().clone(),
        path: request
            .uri()
            .path_and_query()
            .map_or(path, |pq| pq.as_str().to_owned()),
        headers: request.headers().clone(),
    };
    let echo = echo_headers(&seen.headers);
    if let Ok(mut all) = state.seen.lock() {
        all.push(seen);
    }
    sleep_ms(state.delay_ms.load(Ordering::SeqCst)).await;
    Ok(reply(&state.name, status(&state.status), echo))
}

fn status(setting: &AtomicU16) -> StatusCode {
    StatusCode::from_u16(setting.load(Ordering::SeqCst))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

async fn sleep_ms(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

fn reply(name: &str, status: StatusCode, echo: Option<HeaderValue>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(name.to_owned())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(name) {
        headers.insert("x-upstream", value);
    }
    if let Some(echo) = echo {
        headers.insert("x-echo-headers", echo);
    }
    headers.insert("content-type", HeaderValue::from_static("text/plain"));
    response
}

/// The request headers as a JSON object, for tests that only see the response.
fn echo_headers(headers: &HeaderMap) -> Option<HeaderValue> {
    let object: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes())
                    .into_owned()
                    .into(),
            )
        })
        .collect();
    HeaderValue::from_str(&serde_json::Value::Object(object).to_string()).ok()
}
