//! The admin APIs through real servers: each test starts the control plane as `main` does, on
//! 127.0.0.1:0 and its own Postgres database, and talks to it over HTTP/1.1 and gRPC.

mod audit;
mod auth;
mod grpc;
mod probes;
mod rest;
mod traces;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gateway_proto::v1::admin_service_client::AdminServiceClient;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::server::{self, ServerConfig};
use crate::store::tests::{Scratch, postgres};

/// The admin token every [`TestServer::start`] server accepts (principal `bootstrap`).
pub const ROOT: &str = "test-bootstrap-token-0123456789abcdef";

pub struct TestServer {
    pub rest: SocketAddr,
    pub grpc: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _scratch: Scratch,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn config() -> ServerConfig {
    ServerConfig {
        poll_interval: Duration::from_secs(1),
        max_snapshot_bytes: crate::discovery::MAX_MESSAGE_BYTES,
        bootstrap_token: None,
        insecure_no_auth: false,
        metrics: std::sync::Arc::default(),
    }
}

impl TestServer {
    /// A server with the bootstrap admin token [`ROOT`].
    pub async fn start() -> Self {
        Self::with(ServerConfig {
            bootstrap_token: Some(ROOT.into()),
            ..config()
        })
        .await
    }

    pub async fn with(config: ServerConfig) -> Self {
        let scratch = postgres().await;
        let store = scratch.store.clone();
        let rest = TcpListener::bind("127.0.0.1:0").await.expect("bind REST");
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind gRPC");
        let (rest_addr, grpc_addr) = (rest.local_addr().unwrap(), grpc.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = store.clone();
        tokio::spawn(async move {
            let stop = async {
                let _ = stopped.await;
            };
            if let Err(e) = server::serve(serving, rest, grpc, config, stop).await {
                panic!("control plane failed: {e:#}");
            }
        });
        TestServer {
            rest: rest_addr,
            grpc: grpc_addr,
            stop: Some(stop),
            _scratch: scratch,
        }
    }

    /// One REST request on a fresh connection.
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>) -> Reply {
        self.send(method, path, token, &[], None).await
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let stream = TcpStream::connect(self.rest).await.expect("connect REST");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP handshake");
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.rest.to_string());
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let has_content_type = headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        if body.is_some() && !has_content_type {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let response = sender
            .send_request(request.body(Full::new(Bytes::from(bytes))).unwrap())
            .await
            .expect("REST request");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
        };
        Reply {
            status,
            headers,
            body: json,
        }
    }

    pub async fn grpc(&self, token: Option<&str>) -> Admin {
        let channel = Channel::from_shared(format!("http://{}", self.grpc))
            .unwrap()
            .connect()
            .await
            .expect("connect gRPC");
        AdminServiceClient::with_interceptor(channel, Bearer(token.map(str::to_owned)))
    }

    pub async fn grpc_channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc))
            .unwrap()
            .connect()
            .await
            .expect("connect gRPC")
    }

    /// Creates a token with the root token and returns its secret.
    pub async fn token(&self, name: &str, role: &str) -> String {
        let reply = self
            .send(
                Method::POST,
                "/v1/tokens",
                Some(ROOT),
                &[],
                Some(serde_json::json!({"name": name, "role": role})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["secret"].as_str().unwrap().to_owned()
    }
}

pub type Admin = AdminServiceClient<InterceptedService<Channel, Bearer>>;

#[derive(Clone)]
pub struct Bearer(pub Option<String>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            let value = MetadataValue::try_from(format!("Bearer {token}")).unwrap();
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json with this status and reason.
    #[track_caller]
    pub fn assert_problem(&self, status: StatusCode, reason: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.body
        );
        assert_eq!(self.body["reason"], reason, "{}", self.body);
    }
}

pub fn upstream(name: &str) -> Value {
    serde_json::json!({"name": name, "targets": [{"address": "127.0.0.1:9001", "weight": 1}]})
}
