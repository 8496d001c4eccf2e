//! Never dropping a request while data planes come and go: zero-downtime binary upgrades by
//! listener hand-off, and a SIGTERM drain while another data plane takes over. Under steady
//! keep-alive load, every request must succeed and no connection may be refused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway_tests::{DataPlane, Gateway, TestUpstream, binary_path};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Mutex;

use crate::{SOON, route_to};

/// Steady keep-alive traffic from a few clients to whichever address `target` holds.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
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
        let failed = Arc::new(Mutex::new(Vec::new()));
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, ok, failed, latencies, target) = (
                    stop.clone(),
                    ok.clone(),
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
                            Err(error) => failed.lock().await.push(error),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            latencies,
            tasks,
        }
    }

    async fn finish(self) -> (u64, Vec<String>, Vec<(Instant, Duration)>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        let failed = self.failed.lock().await.clone();
        let latencies = self.latencies.lock().await.clone();
        (self.ok.load(Ordering::Relaxed), failed, latencies)
    }
}

async fn get(
    client: &Client<HttpConnector, Empty<Bytes>>,
    addr: SocketAddr,
    host: &str,
) -> Result<(), String> {
    let request = Request::get(format!("http://{addr}/"))
        .header(http::header::HOST, host)
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    if status == StatusCode::OK {
        Ok(())
    } else {
        Err(format!("status {status}"))
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
    let socket =
        std::env::temp_dir().join(format!("gw-upgrade-{:016x}.sock", rand::random::<u64>()));
    let socket_arg = socket.to_str().unwrap().to_owned();
    let mut current = DataPlane::start_with_args(
        &[gw.cp.grpc_addr()],
        "dp-1",
        &["--upgrade-socket", &socket_arg],
    )
    .await;
    let version = gw.cp.version().await;
    current.wait_for_version(version).await;
    let addr = current.addr();
    let target = Arc::new(std::sync::RwLock::new(addr));

    let load = Load::start(target, "web.local", 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let upgrades_started = Instant::now();
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
    assert!(
        current.wait_exit(SOON).await,
        "the first data plane did not exit"
    );
    for (i, mut old) in draining.into_iter().enumerate() {
        let exited = tokio::time::timeout(SOON, old.wait()).await;
        assert!(
            exited.is_ok(),
            "successor {i} did not exit after handing over"
        );
    }
    let upgrades_took = upgrades_started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ok, failed, latencies) = load.finish().await;
    let (mut steady, mut during): (Vec<_>, Vec<_>) = (Vec::new(), Vec::new());
    for (at, latency) in latencies {
        if at < upgrades_started {
            steady.push(latency)
        } else {
            during.push(latency)
        }
    }
    println!(
        "upgrades: 20 in {upgrades_took:?}; requests ok {ok}, failed {}; p99 steady {:?}, during upgrades {:?}",
        failed.len(),
        p99(&mut steady),
        p99(&mut during)
    );
    assert!(
        failed.is_empty(),
        "{} failed requests, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 1000, "steady load: only {ok} requests");
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
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A long request in flight when the drain starts must complete.
    let long = {
        let addr = first.addr();
        tokio::spawn(async move { gateway_tests::send_get(addr, "slow.local", "/").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.signal("TERM");
    balancer.await.unwrap();
    assert!(
        first.wait_exit(Duration::from_secs(25)).await,
        "the drained data plane did not exit"
    );
    let long = long
        .await
        .unwrap()
        .expect("the long request survived the drain");
    assert_eq!(long.status, StatusCode::OK);
    assert_eq!(long.text(), "slow");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed, _) = load.finish().await;
    println!("drain: requests ok {ok}, failed {}", failed.len());
    assert!(
        failed.is_empty(),
        "{} failed requests, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
}
