//! A fast fixed-response HTTP/1.1 upstream for the load benchmark (`tests/bench/load.sh`).
//!
//! `GET /1k`, `/16k`, `/1m` answer 1 KiB, 16 KiB and 1 MiB bodies; every other path (`/`
//! included) answers an empty body, so route-matching benchmarks can use any path. Keep-alive,
//! no logging, `TCP_NODELAY`; the bodies are static, so a response costs no copy.
//!
//! ```sh
//! bench-upstream 127.0.0.1:19080 [--threads 1]
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;

static KIB_1: [u8; 1024] = [b'a'; 1024];
static KIB_16: [u8; 16 * 1024] = [b'b'; 16 * 1024];
static MIB_1: [u8; 1024 * 1024] = [b'c'; 1024 * 1024];

/// Fixed-response HTTP/1.1 server for benchmarks.
#[derive(Debug, Parser)]
struct Flags {
    /// Address to listen on.
    #[arg(default_value = "127.0.0.1:19080")]
    listen: SocketAddr,
    /// Tokio worker threads; 1 runs a single-threaded runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    let runtime = if flags.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(flags.threads)
            .enable_all()
            .build()
    }
    .context("starting the runtime")?;
    runtime.block_on(serve(flags.listen))
}

async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    // A backlog of 4096, as the proxies in front get: with tokio's 128, a proxy opening 256
    // upstream connections at once overflows it and the surplus waits a second for its SYN to
    // be retried, which would show up as the proxy's latency.
    let socket = if listen.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    };
    let listener = socket
        .and_then(|socket| {
            socket.set_reuseaddr(true)?;
            socket.bind(listen)?;
            socket.listen(4096)
        })
        .with_context(|| format!("cannot listen on {listen}"))?;
    eprintln!("bench-upstream listening on {listen}");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors or similar: keep serving the connections we have.
                eprintln!("accept: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            // A client that hangs up mid-request is not an upstream error.
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(respond))
                .await;
        });
    }
}

async fn respond(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body: &'static [u8] = match request.uri().path() {
        "/1k" => &KIB_1,
        "/16k" => &KIB_16,
        "/1m" => &MIB_1,
        _ => b"",
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}
