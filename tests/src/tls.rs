//! TLS for the end-to-end tests: certificates generated at test time (rcgen), a client that
//! connects with a chosen SNI and ALPN and shows what it was served, and a TLS upstream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A certificate generated for the test, with its key.
#[derive(Clone)]
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl TestCert {
    /// Self-signed for `names` (valid from 2020 to 2090, so not-after is predictable).
    pub fn self_signed(names: &[&str]) -> Self {
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_string()).collect::<Vec<_>>(),
        )
        .expect("certificate parameters");
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2090, 1, 1);
        let key = rcgen::KeyPair::generate().expect("generate a key");
        let cert = params.self_signed(&key).expect("self-sign");
        TestCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// The REST body of a Certificate resource.
    pub fn resource(&self, name: &str, sni: &[&str]) -> serde_json::Value {
        serde_json::json!({
            "name": name,
            "certificate_pem": self.cert_pem,
            "private_key_pem": self.key_pem,
            "sni": sni,
        })
    }

    fn server_config(&self, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .expect("the generated key parses");
        let mut config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![self.der.clone()], key)
            .expect("a server config");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// Connects to `addr` sending `sni` and offering `alpn`, trusting only `trusted`.
pub async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    trusted: &[&CertificateDer<'static>],
    alpn: &[&[u8]],
) -> anyhow::Result<TlsStream<TcpStream>> {
    let mut roots = RootCertStore::empty();
    for cert in trusted {
        roots.add((*cert).clone())?;
    }
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string())?;
    Ok(TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?)
}

/// The leaf certificate the server presented on `stream`.
pub fn served_certificate(stream: &TlsStream<TcpStream>) -> Option<CertificateDer<'static>> {
    let (_, session) = stream.get_ref();
    session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.clone().into_owned())
}

/// An HTTP/1.1 and HTTP/2 upstream behind TLS; answers `<name> <HTTP version>`.
pub struct TlsUpstream {
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl TlsUpstream {
    pub async fn start(name: &str, cert: &TestCert) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a TLS upstream");
        let addr = listener.local_addr().expect("its address");
        let acceptor = TlsAcceptor::from(cert.server_config(&[b"h2", b"http/1.1"]));
        let name = name.to_owned();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, name) = (acceptor.clone(), name.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = service_fn(move |request: Request<Incoming>| {
                        let body = format!("{name} {:?}", request.version());
                        async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TlsUpstream { addr, server }
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A WebSocket upstream that echoes every message, prefixed with `echo: `.
pub struct WsEchoUpstream {
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl WsEchoUpstream {
    pub async fn start() -> Self {
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a WebSocket upstream");
        let addr = listener.local_addr().expect("its address");
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    while let Some(Ok(message)) = ws.next().await {
                        let reply = match message {
                            Message::Text(text) => Message::text(format!("echo: {text}")),
                            Message::Binary(bytes) => Message::Binary(bytes),
                            Message::Close(_) => break,
                            _ => continue,
                        };
                        if ws.send(reply).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        WsEchoUpstream { addr, server }
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for WsEchoUpstream {
    fn drop(&mut self) {
        self.server.abort();
    }
}
