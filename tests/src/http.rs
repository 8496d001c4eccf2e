//! A minimal HTTP/1.1 client: one fresh connection per request, so a restarted process never
//! meets a stale pooled connection and every request is seen by the server as a new client.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// No single request in these tests should take longer; beyond it something hangs.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("response body is not JSON: {:?}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn content_type(&self) -> &str {
        self.header(header::CONTENT_TYPE.as_str()).unwrap_or("")
    }
}

/// Sends `request` (origin-form URI, Host header set by the caller) to `addr`.
pub async fn send(addr: SocketAddr, request: Request<Full<Bytes>>) -> anyhow::Result<HttpResponse> {
    tokio::time::timeout(REQUEST_TIMEOUT, send_inner(addr, request))
        .await
        .with_context(|| format!("no response from {addr} within {REQUEST_TIMEOUT:?}"))?
}

async fn send_inner(
    addr: SocketAddr,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<HttpResponse> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .with_context(|| format!("HTTP handshake with {addr}"))?;
    let connection = tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .with_context(|| format!("sending request to {addr}"))?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .with_context(|| format!("reading response body from {addr}"))?
        .to_bytes();
    drop(sender);
    connection.abort();
    Ok(HttpResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// `GET path` with the given Host header.
pub async fn send_get(addr: SocketAddr, host: &str, path: &str) -> anyhow::Result<HttpResponse> {
    let request = Request::get(path)
        .header(header::HOST, host)
        .body(Full::new(Bytes::new()))
        .context("building request")?;
    send(addr, request).await
}
