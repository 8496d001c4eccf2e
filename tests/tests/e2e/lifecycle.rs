//! Never dropping a request while data planes come and go: zero-downtime binary upgrades by
//! listener hand-off, and a SIGTERM drain while another data plane takes over. Under steady
//! keep-alive load, every request must succeed and no connection may be refused, and a
//! WebSocket opened before keeps exchanging messages until the test closes it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use gateway_tests::tls::WsEchoUpstream;
use gateway_tests::{DataPlane, Gateway, TestUpstream, binary_path};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::{SOON, route_json, route_to, upstream_json};

/// Steady keep-alive traffic from a few clients to whichever address `target` holds.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    /// Connections refused (also counted in `failed`).
    refused: Arc<AtomicU64>,
    failed: Arc<Mutex<Vec<String>>>,
    latencies: Arc<Mutex<Vec<(Instant, Duration)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(
        target: Arc<std::sync::RwLock<SocketAddr>>,
        host: &'static str,
        clients: usize,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, ok, refused, failed, latencies, target) = (
                    stop.clone(),
                    ok.clone(),
                    refused.clone(),
                    failed.clone(),
                    latencies.clone(),
                    target.clone(),
                );
                tokio::spawn(async move {
                    let client: Client<HttpConnector, Empty<Bytes>> =
                        Client::builder(TokioExecutor::new()).build_http();
                    while !stop.load(Ordering::Relaxed) {
                        let addr = *target.read().expect("target lock");
                        let started = Instant::now();
                        // No retries: every error counts as a failed request.
                        match get(&client, addr, host).await {
                            Ok(()) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                latencies.lock().await.push((started, started.elapsed()));
                            }
                            Err((was_refused, error)) => {
                                if was_refused {
                                    refused.fetch_add(1, Ordering::Relaxed);
                                }
                                failed.lock().await.push(error);
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            refused,
            failed,
            latencies,
            tasks,
        }
    }

    async fn finish(self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        Outcome {
            ok: self.ok.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            failed: self.failed.lock().await.clone(),
            latencies: self.latencies.lock().await.clone(),
        }
    }
}

/// What the load saw: successes, refusals, every failure, and each success's latency by start.
struct Outcome {
    ok: u64,
    refused: u64,
    failed: Vec<String>,
    latencies: Vec<(Instant, Duration)>,
}

impl Outcome {
    /// `requests N, failed F (refused R); p99 before X, since Y` around `at`.
    fn summary(&self, at: Instant, since: &str) -> String {
        let (mut before, mut after): (Vec<Duration>, Vec<Duration>) = (Vec::new(), Vec::new());
        for &(started, latency) in &self.latencies {
            if started < at {
                before.push(latency);
            } else {
                after.push(latency);
            }
        }
        format!(
            "requests {}, failed {} (refused {}); p99 steady {:?}, {since} {:?}",
            self.ok + self.failed.len() as u64,
            self.failed.len(),
            self.refused,
            p99(&mut before),
            p99(&mut after)
        )
    }

    fn assert_none_failed(&self) {
        assert!(
            self.failed.is_empty() && self.refused == 0,
            "{} failed requests ({} refused), e.g. {:?}",
            self.failed.len(),
            self.refused,
            &self.failed[..self.failed.len().min(5)]
        );
    }
}

/// A WebSocket through a data plane that exchanges a numbered message every 50 ms until it is
/// closed; any missing or wrong echo, or the connection ending, is a failure.
struct LongStream {
    exchanged: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<u64, String>>,
}

impl LongStream {
    async fn open(addr: SocketAddr, host: &str) -> LongStream {
        let tcp = TcpStream::connect(addr)
            .await
            .expect("connect for the WebSocket");
        let mut request = format!("ws://{host}/stream")
            .into_client_request()
            .expect("a WebSocket request");
        request
            .headers_mut()
            .insert(http::header::HOST, host.parse().expect("a Host header"));
        let (mut ws, response) = tokio_tungstenite::client_async(request, tcp)
            .await
            .expect("the WebSocket handshake goes through the data plane");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        let exchanged = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (exchanged, stop) = (exchanged.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    ws.send(Message::text(n.to_string()))
                        .await
                        .map_err(|e| format!("sending message {n}: {e}"))?;
                    match tokio::time::timeout(SOON, ws.next()).await {
                        Ok(Some(Ok(Message::Text(text)))) if text == format!("echo: {n}") => {
                            exchanged.fetch_add(1, Ordering::Relaxed);
                        }
                        other => return Err(format!("echo of message {n}: {other:?}")),
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                ws.close(None).await.map_err(|e| format!("closing: {e}"))?;
                // The close handshake: read until the server's Close and the end.
                while let Ok(Some(Ok(_))) = tokio::time::timeout(SOON, ws.next()).await {}
                Ok(n)
            })
        };
        let stream = LongStream {
            exchanged,
            stop,
            task,
        };
        stream.exchanges_now().await;
        stream
    }

    fn exchanged(&self) -> u64 {
        self.exchanged.load(Ordering::Relaxed)
    }

    /// Waits for three more round trips: the stream is alive at this moment.
    async fn exchanges_now(&self) {
        let from = self.exchanged();
        let waited = Instant::now();
        while self.exchanged() < from + 3 {
            assert!(
                !self.task.is_finished(),
                "the WebSocket stopped after {} messages",
                self.exchanged()
            );
            assert!(waited.elapsed() < SOON, "the WebSocket stalled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Closes it cleanly; fails if it was cut before.
    async fn close(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let exchanged = self
            .task
            .await
            .expect("the WebSocket task")
            .unwrap_or_else(|e| panic!("the WebSocket was cut: {e}"));
        assert_eq!(exchanged, self.exchanged.load(Ordering::Relaxed));
        exchanged
    }
}

/// A WebSocket echo upstream behind `ws.local`.
async fn websocket_route(cp: &gateway_tests::ControlPlane) -> WsEchoUpstream {
    let echo = WsEchoUpstream::start().await;
    cp.create("upstreams", upstream_json("ws", &[(echo.address(), 1)]))
        .await;
    cp.create("routes", route_json("ws", "ws.local", "/", "ws"))
        .await;
    echo
}

/// One request; an error says whether the connection was refused.
async fn get(
    client: &Client<HttpConnector, Empty<Bytes>>,
    addr: SocketAddr,
    host: &str,
) -> Result<(), (bool, String)> {
    let request = Request::get(format!("http://{addr}/"))
        .header(http::header::HOST, host)
        .body(Empty::new())
        .map_err(|e| (false, e.to_string()))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| (e.is_connect(), format!("{e:?}")))?;
    let status = response.status();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| (false, format!("body: {e}")))?;
    if status == StatusCode::OK {
        Ok(())
    } else {
        Err((false, format!("status {status}")))
    }
}

fn p99(latencies: &mut [Duration]) -> Duration {
    latencies.sort();
    latencies
        .get(latencies.len().saturating_mul(99) / 100)
        .copied()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_binary_upgrades_in_a_row_drop_no_request() {
    let gw = Gateway::start(0).await;
    let upstream = TestUpstream::start("up").await;
    route_to(&gw.cp, "web", "web.local", "web", &[&upstream]).await;
    let _echo = websocket_route(&gw.cp).await;
    let socket =
        std::env::temp_dir().join(format!("gw-upgrade-{:016x}.sock", rand::random::<u64>()));
    let socket_arg = socket.to_str().unwrap().to_owned();
    // The first process keeps the WebSocket through all the upgrades: its drain must outlast them.
    let mut current = DataPlane::start_with_args(
        &[gw.cp.grpc_addr()],
        "dp-1",
        &["--upgrade-socket", &socket_arg, "--drain-timeout", "300s"],
    )
    .await;
    let version = gw.cp.version().await;
    current.wait_for_version(version).await;
    let addr = current.addr();
    let target = Arc::new(std::sync::RwLock::new(addr));

    let load = Load::start(target, "web.local", 4);
    let stream = LongStream::open(addr, "ws.local").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let upgrades_started = Instant::now();
    let messages_before = stream.exchanged();
    let mut args = current.args().to_vec();
    args.extend(["--upgrade".into()]);
    let mut previous: Option<tokio::process::Child> = None;
    // Old processes drain concurrently; each must exit by itself.
    let mut draining: Vec<tokio::process::Child> = Vec::new();
    for round in 0..20 {
        // The successor: same flags, plus --upgrade; it takes over once it has a config.
        let log =
            std::fs::File::create(std::env::temp_dir().join(format!("gw-upgrade-{round}.log")))
                .unwrap();
        let successor = tokio::process::Command::new(binary_path("gateway-dataplane"))
            .args(&args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let waited = Instant::now();
        while !socket.exists() {
            assert!(
                waited.elapsed() < SOON,
                "round {round}: the successor never waited for the listeners"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Hand over from whoever serves now; it drains alongside the next rounds.
        match previous.take() {
            None => current.signal("QUIT"),
            Some(old) => {
                let pid = old.id().unwrap().to_string();
                let kill = std::process::Command::new("kill")
                    .args(["-QUIT", &pid])
                    .status();
                assert!(kill.unwrap().success());
                draining.push(old);
            }
        }
        // The successor holds the listeners once it has removed the socket file.
        while socket.exists() {
            assert!(
                waited.elapsed() < SOON,
                "round {round}: the hand-off did not complete"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        previous = Some(successor);
    }
    for (i, mut old) in draining.into_iter().enumerate() {
        let exited = tokio::time::timeout(SOON, old.wait()).await;
        assert!(
            exited.is_ok(),
            "successor {i} did not exit after handing over"
        );
    }
    let upgrades_took = upgrades_started.elapsed();
    // The first process has handed over 20 generations ago and is still draining: the
    // WebSocket it carries is alive.
    current.assert_running();
    let messages_during = stream.exchanged() - messages_before;
    stream.exchanges_now().await;
    let messages = stream.close().await;
    assert!(
        current.wait_exit(SOON).await,
        "the first data plane did not exit once its WebSocket closed"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let outcome = load.finish().await;
    println!(
        "upgrades: 20 in {upgrades_took:?}; {}; websocket never cut: {messages} messages, {messages_before} before, {messages_during} during the upgrades, {} after",
        outcome.summary(upgrades_started, "during upgrades"),
        messages - messages_before - messages_during,
    );
    outcome.assert_none_failed();
    assert!(
        outcome.ok > 1000,
        "steady load: only {} requests",
        outcome.ok
    );
    if let Some(mut last) = previous {
        let _ = last.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_under_load_while_another_data_plane_takes_over_drops_no_request() {
    let gw = Gateway::start(0).await;
    let fast = TestUpstream::start("fast").await;
    let slow = TestUpstream::start("slow").await;
    slow.set_delay(Duration::from_secs(3));
    route_to(&gw.cp, "web", "web.local", "web", &[&fast]).await;
    route_to(&gw.cp, "slow", "slow.local", "slow", &[&slow]).await;
    let _echo = websocket_route(&gw.cp).await;
    let drain = ["--drain-delay", "2s", "--drain-timeout", "20s"];
    let mut first = DataPlane::start_with_args(&[gw.cp.grpc_addr()], "dp-1", &drain).await;
    let second = DataPlane::start_with_args(&[gw.cp.grpc_addr()], "dp-2", &drain).await;
    let version = gw.cp.version().await;
    first.wait_for_version(version).await;
    second.wait_for_version(version).await;

    // A load balancer in miniature: sends to the first while it is ready, then to the second.
    let target = Arc::new(std::sync::RwLock::new(first.addr()));
    let load = Load::start(target.clone(), "web.local", 4);
    let first_admin = first.admin_addr();
    let balancer = {
        let (target, second) = (target.clone(), second.addr());
        tokio::spawn(async move {
            loop {
                let ready = gateway_tests::send_get(first_admin, "admin", "/readyz").await;
                if !matches!(ready, Ok(ref r) if r.status == StatusCode::OK) {
                    *target.write().unwrap() = second;
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // A WebSocket and a long request, both open when the drain starts.
    let stream = LongStream::open(first.addr(), "ws.local").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let long = {
        let addr = first.addr();
        tokio::spawn(async move { gateway_tests::send_get(addr, "slow.local", "/").await })
    };
    // An HTTP/2 (h2c) connection with a long request in flight: the request finishes, then the
    // drain closes the connection with GOAWAY (a clean end, not a reset).
    let (mut h2, h2_connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(TcpStream::connect(first.addr()).await.unwrap()),
    )
    .await
    .expect("an h2c connection");
    let h2_connection = tokio::spawn(h2_connection);
    let h2_long = h2.send_request(
        Request::get("http://slow.local/")
            .body(Empty::<Bytes>::new())
            .unwrap(),
    );
    let h2_long = tokio::spawn(async move {
        let response = h2_long.await?;
        let status = response.status();
        response.into_body().collect().await?;
        Ok::<_, hyper::Error>(status)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let messages_before = stream.exchanged();
    let drain_started = Instant::now();
    first.signal("TERM");
    balancer.await.unwrap();
    // During the drain delay, the stream goes on.
    stream.exchanges_now().await;
    let long = long
        .await
        .unwrap()
        .expect("the long request survived the drain");
    assert_eq!(long.status, StatusCode::OK);
    assert_eq!(long.text(), "slow");
    let h2_long = h2_long.await.unwrap();
    assert_eq!(
        h2_long.expect("the HTTP/2 request survived the drain"),
        StatusCode::OK
    );
    let h2_ended = tokio::time::timeout(SOON, h2_connection)
        .await
        .expect("the drain closed the HTTP/2 connection")
        .unwrap();
    assert!(
        h2_ended.is_ok(),
        "the HTTP/2 connection ended with GOAWAY, not an error: {h2_ended:?}"
    );
    assert!(h2.is_closed(), "no new stream after GOAWAY");
    // The listener has closed (this probe is not part of the load) ...
    let waited = Instant::now();
    while TcpStream::connect(first.addr()).await.is_ok() {
        assert!(waited.elapsed() < SOON, "the drained listener never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... and every HTTP connection is done (the idle ones closed 2 s after), yet the
    // WebSocket still exchanges messages and the process waits for it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    first.assert_running();
    let messages_during = stream.exchanged() - messages_before;
    stream.exchanges_now().await;
    let messages = stream.close().await;
    assert!(
        first.wait_exit(SOON).await,
        "the drained data plane did not exit once its WebSocket closed"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcome = load.finish().await;
    println!(
        "drain: {}; websocket never cut: {messages} messages, {messages_before} before, {messages_during} from SIGTERM to closed listener + 3 s, {} after",
        outcome.summary(drain_started, "during the drain"),
        messages - messages_before - messages_during,
    );
    outcome.assert_none_failed();
}
