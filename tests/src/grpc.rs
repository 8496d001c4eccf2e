//! A gRPC upstream with every call kind (`echo.v1.Echo`), and a slow HTTP/2 upstream that
//! ignores deadlines, for proving the gateway's own `grpc-timeout` handling.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::metadata::MetadataValue;
use tonic::{Status, Streaming};

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod echo {
    tonic::include_proto!("echo.v1");
}

use echo::Msg;
use echo::echo_server::{Echo, EchoServer};

/// Largest message either side accepts: big enough for the large-message tests.
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// `Unary` echoes; text `fail` answers INVALID_ARGUMENT with metadata `x-detail`.
/// `ServerStream` with text `fail-after` ends with RESOURCE_EXHAUSTED in the trailers. Every
/// response carries header metadata `x-served-by: echo`.
#[derive(Debug, Default)]
struct EchoService;

type MsgStream = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send>>;

fn with_trailer<T>(message: T) -> tonic::Response<T> {
    let mut response = tonic::Response::new(message);
    response
        .metadata_mut()
        .insert("x-served-by", MetadataValue::from_static("echo"));
    response
}

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(&self, request: tonic::Request<Msg>) -> Result<tonic::Response<Msg>, Status> {
        let message = request.into_inner();
        if message.text == "fail" {
            let mut metadata = tonic::metadata::MetadataMap::new();
            metadata.insert("x-detail", MetadataValue::from_static("asked to fail"));
            return Err(Status::with_metadata(
                tonic::Code::InvalidArgument,
                "failing as asked",
                metadata,
            ));
        }
        Ok(with_trailer(message))
    }

    async fn client_stream(
        &self,
        request: tonic::Request<Streaming<Msg>>,
    ) -> Result<tonic::Response<Msg>, Status> {
        let mut stream = request.into_inner();
        let (mut count, mut bytes) = (0u32, 0usize);
        while let Some(message) = stream.next().await {
            let message = message?;
            count += 1;
            bytes += message.payload.len();
        }
        Ok(with_trailer(Msg {
            text: format!("{count} messages, {bytes} bytes"),
            payload: Vec::new(),
            count,
        }))
    }

    type ServerStreamStream = MsgStream;

    async fn server_stream(
        &self,
        request: tonic::Request<Msg>,
    ) -> Result<tonic::Response<Self::ServerStreamStream>, Status> {
        let message = request.into_inner();
        let fail = message.text == "fail-after";
        let stream = futures::stream::iter(0..message.count).map(move |i| {
            Ok(Msg {
                text: format!("{}-{i}", message.text),
                payload: Vec::new(),
                count: i,
            })
        });
        // `fail-after`: the messages, then an error whose status and metadata travel in the
        // trailers.
        let end = futures::stream::iter(fail.then(|| {
            let mut metadata = tonic::metadata::MetadataMap::new();
            metadata.insert("x-detail", MetadataValue::from_static("after the stream"));
            Err(Status::with_metadata(
                tonic::Code::ResourceExhausted,
                "stream failed as asked",
                metadata,
            ))
        }));
        Ok(with_trailer(Box::pin(stream.chain(end)) as MsgStream))
    }

    type BidiStream = MsgStream;

    async fn bidi(
        &self,
        request: tonic::Request<Streaming<Msg>>,
    ) -> Result<tonic::Response<Self::BidiStream>, Status> {
        let stream = request.into_inner().map(|message| {
            message.map(|mut m| {
                m.text = format!("echo {}", m.text);
                m
            })
        });
        Ok(with_trailer(Box::pin(stream) as MsgStream))
    }
}

/// A running `echo.v1.Echo` server (HTTP/2 prior knowledge); stops when dropped.
pub struct GrpcUpstream {
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl GrpcUpstream {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a gRPC test upstream");
        let addr = listener.local_addr().expect("its address");
        let service = EchoServer::new(EchoService)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        GrpcUpstream { addr, server }
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for GrpcUpstream {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// An HTTP/2 (h2c) upstream that answers every call OK after `delay`, whatever its deadline.
pub struct SlowH2Upstream {
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl SlowH2Upstream {
    pub async fn start(delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a slow HTTP/2 upstream");
        let addr = listener.local_addr().expect("its address");
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let service = service_fn(move |_request: Request<Incoming>| async move {
                        tokio::time::sleep(delay).await;
                        let response = Response::builder()
                            .header("content-type", "application/grpc")
                            .header("grpc-status", "0")
                            .body(Full::new(Bytes::new()))
                            .map_err(|e| std::io::Error::other(e.to_string()))?;
                        Ok::<_, std::io::Error>(response)
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        SlowH2Upstream { addr, server }
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for SlowH2Upstream {
    fn drop(&mut self) {
        self.server.abort();
    }
}
