//! Every protocol through real processes: HTTP/2 downstream (h2c and TLS with ALPN), upstream
//! HTTP/2 and TLS, the four gRPC call kinds with statuses and trailers, WebSocket, SNI
//! certificates and their replacement, and request-smuggling attempts.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use gateway_tests::grpc::echo::Msg;
use gateway_tests::grpc::echo::echo_client::EchoClient;
use gateway_tests::grpc::{GrpcUpstream, MAX_MESSAGE, SlowH2Upstream};
use gateway_tests::tls::{TestCert, TlsUpstream, WsEchoUpstream, served_certificate, tls_connect};
use gateway_tests::{ControlPlane, DataPlane, Gateway, TestUpstream, dead_address, eventually};
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::Channel;

use crate::{SOON, route_json, route_to, upstream_json};

/// `GET /` over HTTP/2 on an already open connection (plain or TLS).
async fn h2_get<IO>(io: IO, host: &str) -> (http::Version, StatusCode, String)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let request = Request::get(format!("http://{host}/"))
        .body(Full::new(Bytes::new()))
        .expect("a request");
    let response = sender.send_request(request).await.expect("an answer");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("the body").to_bytes();
    (
        parts.version,
        parts.status,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

async fn upstream_with(gw: &Gateway, name: &str, extra: Value) {
    let mut body = upstream_json(name, &[]);
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    gw.cp.create("upstreams", body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_with_prior_knowledge_is_served_on_the_plain_listener() {
    let gw = Gateway::start(1).await;
    let upstream = TestUpstream::start("upstream-a").await;
    route_to(&gw.cp, "h2c", "h2c.local", "web", &[&upstream]).await;
    gw.dp()
        .wait_for_response(SOON, "h2c.local", "/", StatusCode::OK, None)
        .await;

    let tcp = TcpStream::connect(gw.dp().addr()).await.unwrap();
    let (version, status, body) = h2_get(tcp, "h2c.local").await;
    assert_eq!(version, http::Version::HTTP_2);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "upstream-a");
    // HTTP/1.1 still works on the same listener.
    let response = gw.dp().get("h2c.local", "/").await.unwrap();
    assert_eq!(response.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_the_certificate_of_each_sni_and_negotiates_h2() {
    let gw = Gateway::start(1).await;
    let upstream = TestUpstream::start("upstream-a").await;
    route_to(&gw.cp, "a", "a.tls.local", "web", &[&upstream]).await;
    let (cert_a, cert_b) = (
        TestCert::self_signed(&["a.tls.local"]),
        TestCert::self_signed(&["*.b.local"]),
    );
    let stored = gw
        .cp
        .create("certificates", cert_a.resource("cert-a", &["a.tls.local"]))
        .await;
    assert!(
        stored.get("private_key_pem").is_none(),
        "the key came back: {stored}"
    );
    assert_eq!(stored["not_after"], "2090-01-01T00:00:00Z");
    gw.cp
        .create("certificates", cert_b.resource("cert-b", &["*.b.local"]))
        .await;
    gw.converge().await;

    let dp = gw.dp();
    let stream = tls_connect(
        dp.tls_addr(),
        "a.tls.local",
        &[&cert_a.der],
        &[b"h2", b"http/1.1"],
    )
    .await
    .expect("a handshake that verifies against cert-a");
    assert_eq!(served_certificate(&stream).as_ref(), Some(&cert_a.der));
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (version, status, body) = h2_get(stream, "a.tls.local").await;
    assert_eq!(
        (version, status, body.as_str()),
        (http::Version::HTTP_2, StatusCode::OK, "upstream-a")
    );

    // A wildcard name gets cert-b; an unknown name gets the default (the first by name).
    let stream = tls_connect(dp.tls_addr(), "x.b.local", &[&cert_b.der], &[b"http/1.1"])
        .await
        .expect("a handshake that verifies against cert-b");
    assert_eq!(served_certificate(&stream).as_ref(), Some(&cert_b.der));
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let unknown = tls_connect(dp.tls_addr(), "other.local", &[&cert_a.der], &[]).await;
    assert!(unknown.is_err(), "cert-a does not name other.local");

    // The key is never returned, nor exported.
    let listed = gw.cp.get_json("/v1/certificates").await;
    assert!(!listed.to_string().contains("PRIVATE KEY"), "{listed}");
    let export = gw.cp.ctl(&["export"]).await;
    export.assert_success();
    assert!(!export.stdout.contains("PRIVATE KEY"), "{}", export.stdout);
    assert!(
        export.stdout.contains("kind: Certificate"),
        "{}",
        export.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_applies_to_new_handshakes_and_keeps_open_connections() {
    let gw = Gateway::start(1).await;
    let upstream = TestUpstream::start("upstream-a").await;
    route_to(&gw.cp, "a", "site.local", "web", &[&upstream]).await;
    let (old, new) = (
        TestCert::self_signed(&["site.local"]),
        TestCert::self_signed(&["site.local"]),
    );
    gw.cp
        .create("certificates", old.resource("site", &["site.local"]))
        .await;
    gw.converge().await;
    let dp = gw.dp();

    let open = tls_connect(dp.tls_addr(), "site.local", &[&old.der], &[b"h2"])
        .await
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(open))
            .await
            .unwrap();
    tokio::spawn(connection);
    let get = || {
        Request::get("https://site.local/")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    assert_eq!(
        sender.send_request(get()).await.unwrap().status(),
        StatusCode::OK
    );

    let response = gw
        .cp
        .rest(
            Method::PUT,
            "/v1/certificates/site",
            Some(&new.resource("site", &["site.local"])),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    gw.converge().await;
    let renewed = tls_connect(dp.tls_addr(), "site.local", &[&new.der], &[b"h2"])
        .await
        .expect("new handshakes get the new certificate");
    assert_eq!(served_certificate(&renewed).as_ref(), Some(&new.der));

    // The connection opened before the change still serves requests.
    for _ in 0..3 {
        let response = sender.send_request(get()).await.expect("still open");
        assert_eq!(response.status(), StatusCode::OK);
    }
}

/// On the embedded store (the quick start), the control plane makes its key-encryption key on
/// first start; no file it writes holds a PEM private key, and after a restart it still hands
/// the key to a data plane that never saw it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_keys_are_sealed_at_rest_and_serve_after_a_control_plane_restart() {
    let mut cp = ControlPlane::start_embedded().await;
    let upstream = TestUpstream::start("upstream-a").await;
    route_to(&cp, "sealed", "sealed.local", "web", &[&upstream]).await;
    let cert = TestCert::self_signed(&["sealed.local"]);
    cp.create("certificates", cert.resource("sealed", &["sealed.local"]))
        .await;

    let data = cp.temp_dir().join("data");
    let key_file = data.join("secrets.key");
    let mode = std::fs::metadata(&key_file)
        .expect("a key file")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("PRIVATE KEY"),
            "{} holds a key",
            path.display()
        );
    }

    cp.restart().await;
    let dp = DataPlane::start(cp.grpc_addr(), "dp-after-restart").await;
    dp.wait_for_version(cp.version().await).await;
    let stream = tls_connect(dp.tls_addr(), "sealed.local", &[&cert.der], &[b"h2"])
        .await
        .expect("a handshake with the stored certificate");
    assert_eq!(served_certificate(&stream).as_ref(), Some(&cert.der));
    let (_, status, body) = h2_get(stream, "sealed.local").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "upstream-a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_that_cannot_be_served_are_refused_at_write_time() {
    let gw = Gateway::start(0).await;
    let (one, other) = (
        TestCert::self_signed(&["one.local"]),
        TestCert::self_signed(&["other.local"]),
    );
    let mut mismatched = one.resource("one", &["one.local"]);
    mismatched["private_key_pem"] = json!(other.key_pem);
    let response = gw
        .cp
        .rest(Method::POST, "/v1/certificates", Some(&mismatched))
        .await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.text()
    );
    assert!(
        response.text().contains("does not match"),
        "{}",
        response.text()
    );
    assert!(
        !response.text().contains("PRIVATE KEY"),
        "{}",
        response.text()
    );

    let mut garbage = one.resource("one", &["one.local"]);
    garbage["certificate_pem"] = json!("-----BEGIN CERTIFICATE-----\nnope\n");
    let response = gw
        .cp
        .rest(Method::POST, "/v1/certificates", Some(&garbage))
        .await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.text()
    );
    assert!(
        response.text().contains("certificate_pem"),
        "{}",
        response.text()
    );

    // The CLI: create, list with not-after, get without key, delete.
    let cert = gw.cp.write_file("one.pem", &one.cert_pem);
    let key = gw.cp.write_file("one.key", &one.key_pem);
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    gw.cp
        .ctl(&[
            "certificate",
            "create",
            "one",
            "--cert",
            cert,
            "--key",
            key,
            "--sni",
            "one.local",
        ])
        .await
        .assert_success();
    let list = gw.cp.ctl(&["certificate", "list"]).await;
    list.assert_success();
    assert!(
        list.stdout.contains("2090-01-01T00:00:00Z"),
        "{}",
        list.stdout
    );
    let got = gw
        .cp
        .ctl(&["certificate", "get", "one", "-o", "yaml"])
        .await;
    got.assert_success();
    assert!(!got.stdout.contains("PRIVATE KEY"), "{}", got.stdout);
    gw.cp
        .ctl(&["certificate", "delete", "one"])
        .await
        .assert_success();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_is_verified_and_http2_negotiated() {
    let gw = Gateway::start(1).await;
    let cert = TestCert::self_signed(&["backend.internal"]);
    let backend = TlsUpstream::start("tls-backend", &cert).await;
    let ca = gw.cp.write_file("ca.pem", &cert.cert_pem);
    gw.cp
        .ctl(&[
            "upstream",
            "create",
            "secure",
            "--target",
            &backend.address(),
            "--protocol",
            "auto",
            "--tls",
            "--sni",
            "backend.internal",
            "--ca-file",
            ca.to_str().unwrap(),
        ])
        .await
        .assert_success();
    gw.cp
        .create(
            "routes",
            route_json("secure", "secure.local", "/", "secure"),
        )
        .await;
    // The same target, verified against the public roots: the self-signed certificate fails.
    upstream_with(
        &gw,
        "unverified",
        json!({
            "targets": [{ "address": backend.address(), "weight": 1 }],
            "tls": { "enabled": true, "sni": "backend.internal" },
        }),
    )
    .await;
    gw.cp
        .create(
            "routes",
            route_json("unverified", "unverified.local", "/", "unverified"),
        )
        .await;
    gw.converge().await;

    let response = gw
        .dp()
        .wait_for_response(SOON, "secure.local", "/", StatusCode::OK, None)
        .await;
    assert_eq!(response.text(), "tls-backend HTTP/2.0", "ALPN chose h2");

    let response = gw.dp().get("unverified.local", "/").await.unwrap();
    assert_eq!(
        response.status,
        StatusCode::BAD_GATEWAY,
        "{}",
        response.text()
    );
    eventually(SOON, || async {
        let log = gw.dp().log();
        anyhow::ensure!(
            log.contains("TLS with the target failed") && log.contains("UnknownIssuer"),
            "no log line says why"
        );
        Ok(())
    })
    .await;
}

/// A gRPC client to `echo.v1.Echo` through the data plane's plain listener (h2c).
async fn echo_client(dp: &DataPlane, authority: &str) -> EchoClient<Channel> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", dp.addr()))
        .expect("an endpoint")
        .origin(format!("http://{authority}").parse().expect("an origin"));
    let channel = endpoint.connect().await.expect("connect to the data plane");
    EchoClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_four_grpc_call_kinds_pass_with_statuses_and_trailers() {
    let gw = Gateway::start(1).await;
    let grpc = GrpcUpstream::start().await;
    upstream_with(
        &gw,
        "echo",
        json!({
            "targets": [{ "address": grpc.address(), "weight": 1 }],
            "protocol": "UPSTREAM_PROTOCOL_HTTP2",
        }),
    )
    .await;
    gw.cp
        .create("routes", route_json("echo", "grpc.local", "/", "echo"))
        .await;
    gw.converge().await;
    let mut client = echo_client(gw.dp(), "grpc.local").await;
    let msg = |text: &str, count: u32| Msg {
        text: text.into(),
        payload: Vec::new(),
        count,
    };

    // Unary, with header metadata intact.
    let response = client.unary(msg("hello", 0)).await.expect("unary");
    assert_eq!(response.metadata().get("x-served-by").unwrap(), "echo");
    assert_eq!(response.into_inner().text, "hello");

    // A status with a message and metadata.
    let status = client.unary(msg("fail", 0)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "failing as asked");
    assert_eq!(status.metadata().get("x-detail").unwrap(), "asked to fail");

    // Client streaming, with a large total and a large message.
    let big = vec![7u8; 8 * 1024 * 1024];
    let outbound = futures::stream::iter((0..20).map(move |i| Msg {
        text: format!("{i}"),
        payload: if i == 0 { big.clone() } else { vec![1; 1000] },
        count: i,
    }));
    let summary = client.client_stream(outbound).await.expect("client stream");
    assert_eq!(
        summary.into_inner().text,
        format!("20 messages, {} bytes", 8 * 1024 * 1024 + 19 * 1000)
    );

    // A long server stream; its OK status arrives in the trailers.
    let mut stream = client
        .server_stream(msg("n", 5000))
        .await
        .expect("server stream")
        .into_inner();
    let mut received = 0;
    while let Some(message) = stream.next().await {
        let message = message.expect("every message, then OK from the trailers");
        assert_eq!(message.count, received);
        received += 1;
    }
    assert_eq!(received, 5000);

    // An error after messages travels in the trailers, metadata included.
    let mut stream = client
        .server_stream(msg("fail-after", 3))
        .await
        .expect("server stream")
        .into_inner();
    let mut ok = 0;
    let status = loop {
        match stream.next().await {
            Some(Ok(_)) => ok += 1,
            Some(Err(status)) => break status,
            None => panic!("the stream ended without its error"),
        }
    };
    assert_eq!(ok, 3);
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        status.metadata().get("x-detail").unwrap(),
        "after the stream"
    );

    // Bidirectional streaming: each message answered as it goes.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut replies = client
        .bidi(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("bidi")
        .into_inner();
    for i in 0..50 {
        tx.send(msg(&format!("m{i}"), i)).await.unwrap();
        let reply = replies.next().await.unwrap().unwrap();
        assert_eq!(reply.text, format!("echo m{i}"));
    }
    drop(tx);
    assert!(replies.next().await.is_none(), "the call ends with OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_answers_grpc_calls_with_grpc_errors_and_honours_deadlines() {
    let gw = Gateway::start(1).await;
    let slow = SlowH2Upstream::start(Duration::from_secs(5)).await;
    upstream_with(
        &gw,
        "slow",
        json!({
            "targets": [{ "address": slow.address(), "weight": 1 }],
            "protocol": "UPSTREAM_PROTOCOL_HTTP2",
        }),
    )
    .await;
    gw.cp
        .create("routes", route_json("slow", "slow.local", "/", "slow"))
        .await;
    let dead = dead_address();
    gw.cp
        .create("upstreams", upstream_json("dead", &[(dead, 1)]))
        .await;
    gw.cp
        .create("routes", route_json("dead", "dead.local", "/", "dead"))
        .await;
    gw.converge().await;
    let msg = Msg {
        text: "x".into(),
        payload: Vec::new(),
        count: 0,
    };

    // grpc-timeout is honoured by the gateway itself: the upstream would take 5 s. (Sent by
    // hand: a tonic client would enforce the deadline itself.)
    let tcp = TcpStream::connect(gw.dp().addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::post("http://slow.local/echo.v1.Echo/Unary")
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .header("grpc-timeout", "300m")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let started = Instant::now();
    let response = sender.send_request(request).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "4", "DEADLINE_EXCEEDED");

    let mut client = echo_client(gw.dp(), "dead.local").await;
    let status = client.unary(msg.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");

    let mut client = echo_client(gw.dp(), "nowhere.local").await;
    let status = client.unary(msg).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");

    // Over HTTP/1.1 too, the answer is HTTP 200 with grpc-status, not a JSON body.
    let request = Request::post("/echo.v1.Echo/Unary")
        .header(header::HOST, "nowhere.local")
        .header(header::CONTENT_TYPE, "application/grpc")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = gateway_tests::send(gw.dp().addr(), request).await.unwrap();
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("grpc-status"), Some("12"));
    assert!(response.body.is_empty());
}

/// A gateway routing `ws.local` to a WebSocket echo target (kept alive by the second value).
async fn websocket_echo_gateway() -> (Gateway, WsEchoUpstream) {
    let gw = Gateway::start(1).await;
    let echo = WsEchoUpstream::start().await;
    gw.cp
        .create("upstreams", upstream_json("ws", &[(echo.address(), 1)]))
        .await;
    gw.cp
        .create("routes", route_json("ws", "ws.local", "/", "ws"))
        .await;
    gw.converge().await;
    (gw, echo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_are_tunnelled_and_survive_unrelated_config_changes() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let (gw, _echo) = websocket_echo_gateway().await;

    let tcp = TcpStream::connect(gw.dp().addr()).await.unwrap();
    let mut request = "ws://ws.local/chat".into_client_request().unwrap();
    request
        .headers_mut()
        .insert(header::HOST, "ws.local".parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::client_async(request, tcp)
        .await
        .expect("the upgrade goes through the gateway");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws.send(Message::text("one")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("echo: one")
    );

    // A config change that does not touch the route leaves the tunnel alone.
    let other = TestUpstream::start("other").await;
    route_to(&gw.cp, "other", "other.local", "other", &[&other]).await;
    gw.converge().await;
    for i in 0..10 {
        ws.send(Message::text(format!("after {i}"))).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text(format!("echo: after {i}"))
        );
    }
    ws.close(None).await.unwrap();
}

/// RFC 8441: a WebSocket over an HTTP/2 connection (extended CONNECT with `:protocol
/// websocket`) reaches an HTTP/1.1 WebSocket target through the gateway, which answers 200 and
/// tunnels the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_over_http2_extended_connect_are_tunnelled() {
    use futures::SinkExt;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;

    let (gw, _echo) = websocket_echo_gateway().await;

    let tcp = TcpStream::connect(gw.dp().addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("an h2c handshake");
    tokio::spawn(connection);
    // One plain request first, so the server's SETTINGS (extended CONNECT on) have arrived.
    let get = Request::get("http://ws.local/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    sender.send_request(get).await.expect("a plain answer");

    let mut connect = Request::connect("http://ws.local/chat")
        .header("sec-websocket-version", "13")
        .body(Full::new(Bytes::new()))
        .unwrap();
    connect
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let response = sender.send_request(connect).await.expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    let upgraded = hyper::upgrade::on(response).await.expect("a tunnel");
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
    for i in 0..3 {
        ws.send(Message::text(format!("h2 {i}"))).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text(format!("echo: h2 {i}"))
        );
    }
}

/// Sends raw bytes and reads everything until the server closes (at most 5 s).
async fn raw_exchange(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the connection was left open after: {request:?}"
    );
    String::from_utf8_lossy(&answer).into_owned()
}

/// Everything ambiguous (hyper's rules, `proxy/framing.rs` and, for what hyper resolves while
/// parsing, `proxy/head_audit.rs`) is a 400 with the connection closed: what follows is never
/// read as a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_requests_get_400_and_a_closed_connection() {
    let gw = Gateway::start(1).await;
    let upstream = TestUpstream::start("upstream-a").await;
    route_to(&gw.cp, "web", "smuggle.local", "web", &[&upstream]).await;
    gw.dp()
        .wait_for_response(SOON, "smuggle.local", "/", StatusCode::OK, None)
        .await;

    let answer = raw_exchange(
        gw.dp().addr(),
        "POST / HTTP/1.1\r\nHost: smuggle.local\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: smuggle.local\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer:?}");
    assert!(answer.contains("connection: close"), "{answer:?}");
    let seen = upstream.seen();
    assert!(
        seen.iter().all(|r| r.path != "/smuggled"),
        "the smuggled request reached the upstream: {seen:?}"
    );
    let seen_before = upstream.request_count();

    let cases = [
        (
            "duplicate CL",
            "POST / HTTP/1.1\r\nHost: smuggle.local\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd",
        ),
        (
            "obs-fold",
            "GET / HTTP/1.1\r\nHost: smuggle.local\r\nX-Folded: a\r\n b\r\n\r\n",
        ),
        (
            "space before colon",
            "GET / HTTP/1.1\r\nHost: smuggle.local\r\nContent-Length : 5\r\n\r\nabcde",
        ),
        (
            "invalid header name",
            "GET / HTTP/1.1\r\nHost: smuggle.local\r\nBad[Name]: x\r\n\r\n",
        ),
        (
            "TE not ending in chunked",
            "POST / HTTP/1.1\r\nHost: smuggle.local\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        ),
        (
            "TE other than one chunked",
            "POST / HTTP/1.1\r\nHost: smuggle.local\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "a name imitating Transfer-Encoding",
            "POST / HTTP/1.1\r\nHost: smuggle.local\r\nTransfer_Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "GET with a body",
            "GET / HTTP/1.1\r\nHost: smuggle.local\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        ),
        (
            "HEAD with a chunked body",
            "HEAD / HTTP/1.1\r\nHost: smuggle.local\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
    ];
    for (name, request) in cases {
        let answer = raw_exchange(gw.dp().addr(), request).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{name}: expected 400, got {answer:?}"
        );
        assert_eq!(
            answer.matches("HTTP/1.1").count(),
            1,
            "{name}: a second response means a smuggled request was served: {answer:?}"
        );
    }
    assert_eq!(
        upstream.request_count(),
        seen_before,
        "nothing ambiguous reached the upstream"
    );
}

/// hyper resolves two framings while parsing and leaves no trace of them in the request: with
/// both Content-Length and Transfer-Encoding it drops the length, of identical Content-Lengths
/// it keeps one. The head audit under hyper refuses both; a good request pipelined before the
/// bad one is still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_hyper_resolves_is_refused_by_the_head_audit() {
    let gw = Gateway::start(1).await;
    let upstream = TestUpstream::start("upstream-a").await;
    route_to(&gw.cp, "web", "audit.local", "web", &[&upstream]).await;
    gw.dp()
        .wait_for_response(SOON, "audit.local", "/", StatusCode::OK, None)
        .await;
    let before = upstream.request_count();

    for (name, request, reason) in [
        (
            "Content-Length then Transfer-Encoding",
            "POST /cl-te HTTP/1.1\r\nHost: audit.local\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "both Transfer-Encoding and Content-Length",
        ),
        (
            "Transfer-Encoding then Content-Length",
            "POST /te-cl HTTP/1.1\r\nHost: audit.local\r\ntransfer-encoding: chunked\r\nCONTENT-LENGTH: 5\r\n\r\n0\r\n\r\n",
            "both Transfer-Encoding and Content-Length",
        ),
        (
            "two identical Content-Lengths",
            "POST /cl-cl HTTP/1.1\r\nHost: audit.local\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            "more than one Content-Length",
        ),
    ] {
        let answer = raw_exchange(gw.dp().addr(), request).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{name}: expected 400, got {answer:?}"
        );
        assert!(answer.contains("connection: close"), "{name}: {answer:?}");
        assert!(answer.contains(reason), "{name}: {answer:?}");
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{name}: {answer:?}");
    }
    assert_eq!(
        upstream.request_count(),
        before,
        "nothing ambiguous reached the upstream"
    );

    let answer = raw_exchange(
        gw.dp().addr(),
        "GET /first HTTP/1.1\r\nHost: audit.local\r\n\r\n\
         POST /second HTTP/1.1\r\nHost: audit.local\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc\
         GET /third HTTP/1.1\r\nHost: audit.local\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 2, "{answer:?}");
    let refused = answer
        .find("HTTP/1.1 400")
        .expect("the second request refused");
    assert!(
        answer[refused..].contains("more than one Content-Length"),
        "{answer:?}"
    );
    let paths: Vec<String> = upstream.seen().into_iter().map(|r| r.path).collect();
    assert!(paths.iter().any(|p| p == "/first"), "{paths:?}");
    assert!(
        paths.iter().all(|p| p != "/second" && p != "/third"),
        "{paths:?}"
    );
}

/// `--allow-get-body` lets a GET with a body through to the target (APIs such as
/// Elasticsearch's `_search` need it); a HEAD body and conflicting framing are still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_allows_get_bodies_forwards_them() {
    let mut gw = Gateway::start(0).await;
    gw.dps.push(
        DataPlane::start_with_args(&[gw.cp.grpc_addr()], "dp-1", &["--allow-get-body"]).await,
    );
    let upstream = TestUpstream::start("upstream-a").await;
    route_to(&gw.cp, "web", "search.local", "web", &[&upstream]).await;
    gw.dp()
        .wait_for_response(SOON, "search.local", "/", StatusCode::OK, None)
        .await;

    let answer = raw_exchange(
        gw.dp().addr(),
        "GET /_search HTTP/1.1\r\nHost: search.local\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(
        upstream.seen().iter().any(|r| r.path == "/_search"),
        "the GET with a body reached the target"
    );
    for (name, request) in [
        (
            "HEAD with a body",
            "HEAD / HTTP/1.1\r\nHost: search.local\r\nContent-Length: 2\r\n\r\n{}",
        ),
        (
            "GET with both framings",
            "GET / HTTP/1.1\r\nHost: search.local\r\nTransfer_Encoding: chunked\r\nContent-Length: 2\r\n\r\n{}",
        ),
    ] {
        let answer = raw_exchange(gw.dp().addr(), request).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{name}: expected 400, got {answer:?}"
        );
    }
}

/// A target that still speaks HTTP/1.0 is answered to the client in HTTP/1.1: the client hears
/// the gateway's version, not the target's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_0_target_is_answered_in_http_1_1() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head).await;
                let _ = stream
                    .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
            });
        }
    });
    let gw = Gateway::start(1).await;
    let created = gw
        .cp
        .ctl(&["upstream", "create", "old", "--target", &address])
        .await;
    assert!(created.success(), "{created:?}");
    let created = gw
        .cp
        .ctl(&[
            "route",
            "create",
            "old",
            "--host",
            "old.local",
            "--path-prefix",
            "/",
            "--upstream",
            "old",
        ])
        .await;
    assert!(created.success(), "{created:?}");
    gw.dp()
        .wait_for_response(SOON, "old.local", "/", StatusCode::OK, Some("ok"))
        .await;

    let answer = raw_exchange(
        gw.dp().addr(),
        "GET / HTTP/1.1\r\nHost: old.local\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

/// `--idle-timeout`: an HTTP/2 connection without an open stream for that long gets GOAWAY and
/// is closed; one whose stream runs longer than the timeout is left alone and serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed_after_the_idle_timeout() {
    let mut gw = Gateway::start(0).await;
    gw.dps.push(
        DataPlane::start_with_args(&[gw.cp.grpc_addr()], "dp-1", &["--idle-timeout", "1s"]).await,
    );
    let upstream = TestUpstream::start("upstream-a").await;
    route_to(&gw.cp, "web", "idle.local", "web", &[&upstream]).await;
    gw.dp()
        .wait_for_response(SOON, "idle.local", "/", StatusCode::OK, None)
        .await;
    let get = || {
        Request::get("http://idle.local/")
            .body(Full::new(Bytes::new()))
            .expect("a request")
    };
    let h2c = || async {
        let tcp = TcpStream::connect(gw.dp().addr()).await.expect("connect");
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .expect("HTTP/2 handshake");
        (sender, tokio::spawn(connection))
    };

    let (mut sender, connection) = h2c().await;
    let response = sender.send_request(get()).await.expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.expect("the body");
    let idle_since = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), connection).await;
    let idle_for = idle_since.elapsed();
    assert!(
        closed.is_ok(),
        "an idle HTTP/2 connection is still open after 5 s"
    );
    assert!(
        idle_for >= Duration::from_millis(900),
        "closed after {idle_for:?} idle, before the timeout"
    );

    upstream.set_delay(Duration::from_secs(3));
    let (mut sender, connection) = h2c().await;
    let response = sender
        .send_request(get())
        .await
        .expect("the stream outlasting the idle timeout is answered");
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.expect("the body");
    upstream.set_delay(Duration::ZERO);
    let response = sender
        .send_request(get())
        .await
        .expect("the connection still serves after its long stream");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!connection.is_finished());
}

#[test]
fn a_zero_timeout_flag_is_refused_naming_the_flag() {
    for flag in [
        "--idle-timeout",
        "--header-read-timeout",
        "--tunnel-idle-timeout",
    ] {
        let output = std::process::Command::new(gateway_tests::binary_path("gateway-dataplane"))
            .args([flag, "0s"])
            .output()
            .expect("running gateway-dataplane");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains("is zero"),
            "{flag}: {stderr}"
        );
    }
}
