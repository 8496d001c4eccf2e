//! The real control-plane and data-plane binaries as child processes of the test.
//!
//! Each process logs (stdout and stderr) to a file in its own temporary directory. When a
//! handle drops while the test is panicking, or a readiness wait fails, the log's tail is
//! printed: a failed end-to-end test should say what the processes saw.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::Full;
use serde_json::Value;
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::cli::{CliOutput, gatewayctl};
use crate::db::TestDb;
use crate::http::{HttpResponse, send, send_get};
use crate::json::u64_field;
use crate::wait::{eventually, poll_until};

/// How long a process may take to become ready (a control plane migrates the database first).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a log to show when a test fails.
const LOG_TAIL_BYTES: u64 = 8 * 1024;
/// Generous ceiling for a config change to reach a data plane.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Path of a workspace binary, in the same target directory as the running executable: a test
/// (`<target>/<profile>/deps/<test>-<hash>`) or a bench binary (`<target>/<profile>/<bin>`).
pub fn binary_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running executable");
    let parent = exe
        .parent()
        .expect("the running executable lives in a directory");
    // Binaries live in <target>/<profile>.
    let profile_dir = if parent.file_name().is_some_and(|n| n == "deps") {
        parent
            .parent()
            .expect("the test executable lives in <target>/<profile>/deps")
    } else {
        parent
    };
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} does not exist: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}

/// Several ports free a moment ago, all different: each is held until all are found, so the
/// kernel cannot hand out the same one twice.
fn distinct_free_addrs<const N: usize>() -> [SocketAddr; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port"))
        .collect();
    std::array::from_fn(|i| {
        held[i]
            .local_addr()
            .expect("the address of a bound listener")
    })
}

fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// One binary with fixed arguments that can be stopped and started again.
struct Process {
    label: String,
    binary: PathBuf,
    args: Vec<OsString>,
    log_path: PathBuf,
    child: Option<Child>,
}

impl Process {
    fn new(label: String, binary: &str, args: Vec<OsString>, dir: &Path) -> Self {
        Process {
            log_path: dir.join(format!("{label}.log")),
            label,
            binary: binary_path(binary),
            args,
            child: None,
        }
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        writeln!(
            log,
            "==== starting {} {:?}",
            self.binary.display(),
            self.args
        )?;
        let stderr = log.try_clone()?;
        let mut command = Command::new(&self.binary);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true);
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        let child = command
            .spawn()
            .with_context(|| format!("spawning {}", self.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    fn signal(&self, name: &str) {
        let pid = self.pid().expect("the process is running");
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {pid} failed");
    }

    async fn wait_exit(&mut self, within: Duration) -> bool {
        let Some(child) = self.child.as_mut() else {
            return true;
        };
        match tokio::time::timeout(within, child.wait()).await {
            Ok(_) => {
                self.child = None;
                true
            }
            Err(_) => false,
        }
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL: a data plane must survive its control plane vanishing without goodbye.
            let _ = child.kill().await;
            let _ = child.wait().await;
        }
    }

    /// Fails with the exit status if the process has died.
    fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.as_mut().map(Child::try_wait) {
            None => bail!("{} is stopped", self.label),
            Some(Ok(None)) => Ok(()),
            Some(Ok(Some(status))) => bail!("{} exited: {status}", self.label),
            Some(Err(e)) => bail!("cannot check on {}: {e}", self.label),
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    fn log_tail(&self) -> String {
        let read = || -> std::io::Result<String> {
            let mut file = File::open(&self.log_path)?;
            let len = file.metadata()?.len();
            file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        };
        let tail = read().unwrap_or_else(|e| format!("(cannot read log: {e})"));
        format!(
            "---- {} log ({}) ----\n{tail}\n---- end of {} log ----",
            self.label,
            self.log_path.display(),
            self.label
        )
    }

    /// Waits until `probe` answers 200; on failure the error carries the log tail.
    async fn wait_http_ok(&mut self, addr: SocketAddr, path: &str) -> anyhow::Result<()> {
        let label = self.label.clone();
        let result = poll_until(READY_TIMEOUT, || {
            let exited = self.check_running().err();
            let label = &label;
            async move {
                if let Some(exited) = exited {
                    // Dead processes never become ready: no point waiting out the timeout.
                    return Ok(Err(exited));
                }
                let response = send_get(addr, "localhost", path).await?;
                ensure!(
                    response.status == StatusCode::OK,
                    "{label} {path} answered {}: {}",
                    response.status,
                    response.text()
                );
                Ok(Ok(()))
            }
        })
        .await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) | Err(error) => Err(error.context(self.log_tail())),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
    }
}

/// Keeps a failed test's directory (and the logs in it) for a post-mortem.
fn keep_if_failing(dir: &mut TempDir) {
    if std::thread::panicking() {
        dir.disable_cleanup(true);
        eprintln!("kept {} for inspection", dir.path().display());
    }
}

/// The key-encryption key of control planes on Postgres (32 bytes, hex).
const TEST_SECRETS_KEY: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7";

/// A running `gateway-controlplane` on its own database and ports.
pub struct ControlPlane {
    process: Process,
    rest: SocketAddr,
    grpc: SocketAddr,
    dir: TempDir,
}

impl ControlPlane {
    /// Starts a control plane on `db` and waits until `/readyz` answers 200.
    pub async fn start(db: &TestDb) -> Self {
        Self::start_with_args(db, &[]).await
    }

    /// Like [`ControlPlane::start`], with extra command-line flags.
    pub async fn start_with_args(db: &TestDb, extra: &[&str]) -> Self {
        Self::start_on(&["--database-url", db.url()], extra).await
    }

    /// A control plane on the embedded store (SQLite in its own data directory, which survives
    /// restarts): what a new user runs.
    pub async fn start_embedded() -> Self {
        Self::start_on(&[], &[]).await
    }

    async fn start_on(store: &[&str], extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("gw-e2e-cp-")
            .tempdir()
            .expect("create a temporary directory");
        let (rest, grpc) = (free_addr(), free_addr());
        let mut args: Vec<std::ffi::OsString> = store.iter().map(Into::into).collect();
        if store.is_empty() {
            args.extend([
                "--data-dir".into(),
                dir.path().join("data").into_os_string(),
            ]);
        } else if !extra.iter().any(|a| a.starts_with("--secrets-key")) {
            // On Postgres, certificates need a key-encryption key; every replica of a test's
            // database shares this one.
            args.extend(["--secrets-key".into(), TEST_SECRETS_KEY.into()]);
        }
        args.extend([
            "--rest-listen".into(),
            rest.to_string().into(),
            "--grpc-listen".into(),
            grpc.to_string().into(),
        ]);
        args.extend(extra.iter().map(Into::into));
        let process = Process::new(
            "controlplane".to_owned(),
            "gateway-controlplane",
            args,
            dir.path(),
        );
        let mut cp = ControlPlane {
            process,
            rest,
            grpc,
            dir,
        };
        cp.restart().await;
        cp
    }

    pub fn rest_addr(&self) -> SocketAddr {
        self.rest
    }

    /// The process id while it runs (for reading its memory from `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
    }

    /// `http://<grpc>`: what `gatewayctl --server` and `gateway-dataplane --control-plane` take.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// A directory that lives as long as this control plane, for files the test writes.
    pub fn temp_dir(&self) -> &Path {
        self.dir.path()
    }

    pub async fn wait_ready(&mut self) {
        let rest = self.rest;
        if let Err(e) = self.process.wait_http_ok(rest, "/readyz").await {
            panic!("control plane did not become ready: {e:#}");
        }
    }

    /// Kills the process (SIGKILL) and waits for it to exit.
    pub async fn stop(&mut self) {
        self.process.stop().await;
    }

    /// Sends a signal (`TERM`, …) to the process, as an orchestrator would.
    pub fn signal(&self, name: &str) {
        self.process.signal(name);
    }

    /// Waits (at most `within`) for the process to exit by itself; returns whether it did.
    pub async fn wait_exit(&mut self, within: Duration) -> bool {
        self.process.wait_exit(within).await
    }

    /// Stops the process if it runs, starts it again on the same ports and database, and
    /// waits until it is ready.
    pub async fn restart(&mut self) {
        self.process.stop().await;
        if let Err(e) = self.process.spawn() {
            panic!("cannot start the control plane: {e:#}");
        }
        self.wait_ready().await;
    }

    /// Sends a REST request with an optional JSON body.
    pub async fn rest(&self, method: Method, path: &str, body: Option<&Value>) -> HttpResponse {
        let (content_type, bytes) = match body {
            Some(body) => (Some("application/json"), body.to_string()),
            None => (None, String::new()),
        };
        self.rest_raw(method, path, content_type, bytes).await
    }

    /// Sends a REST request with an arbitrary body and content type.
    pub async fn rest_raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> HttpResponse {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, self.rest.to_string())
            .header(header::ACCEPT, "application/json");
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request
            .body(Full::new(body.into()))
            .unwrap_or_else(|e| panic!("invalid request {method} {path}: {e}"));
        send(self.rest, request)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"))
    }

    /// `GET path`, expecting 200 and a JSON body.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.rest(Method::GET, path, None).await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "GET {path}: {}",
            response.text()
        );
        response
            .json()
            .unwrap_or_else(|e| panic!("GET {path}: {e:#}"))
    }

    /// `POST /v1/<kind>`, expecting 201; returns the stored resource.
    pub async fn create(&self, kind: &str, resource: Value) -> Value {
        let path = format!("/v1/{kind}");
        let response = self.rest(Method::POST, &path, Some(&resource)).await;
        assert_eq!(
            response.status,
            StatusCode::CREATED,
            "POST {path} {resource}: {}",
            response.text()
        );
        response
            .json()
            .unwrap_or_else(|e| panic!("POST {path}: {e:#}"))
    }

    /// The `name` of every item of `GET /v1/<kind>`, sorted.
    pub async fn names(&self, kind: &str) -> Vec<String> {
        let list = self.get_json(&format!("/v1/{kind}")).await;
        let mut names: Vec<String> = list
            .get("items")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| item.get("name").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Value {
        self.get_json("/v1/status").await
    }

    /// The current config version, from `GET /v1/status`.
    pub async fn version(&self) -> u64 {
        let status = self.status().await;
        u64_field(&status, "version").unwrap_or_else(|e| panic!("/v1/status: {e:#} in {status}"))
    }

    /// The items of `GET /v1/dataplanes`.
    pub async fn dataplanes(&self) -> Vec<Value> {
        let list = self.get_json("/v1/dataplanes").await;
        list.get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    /// Runs `gatewayctl --server <this control plane> <args>`.
    pub async fn ctl(&self, args: &[&str]) -> CliOutput {
        gatewayctl(&self.grpc_url(), args).await
    }

    /// Writes `contents` to a file in this control plane's temporary directory.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        keep_if_failing(&mut self.dir);
    }
}

/// A running `gateway-dataplane` with its own ports and cache directory.
pub struct DataPlane {
    process: Process,
    node_id: String,
    listen: SocketAddr,
    tls_listen: SocketAddr,
    admin: SocketAddr,
    dir: TempDir,
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        keep_if_failing(&mut self.dir);
    }
}

impl DataPlane {
    /// Starts a data plane pointed at a control plane's gRPC address and waits until its admin
    /// `/healthz` answers 200 (it need not have a config yet).
    pub async fn start(control_plane_grpc: SocketAddr, node_id: &str) -> Self {
        Self::start_with(&[control_plane_grpc], node_id).await
    }

    /// A data plane that knows several control planes and moves to the next when one fails.
    pub async fn start_with(control_planes: &[SocketAddr], node_id: &str) -> Self {
        Self::start_with_args(control_planes, node_id, &[]).await
    }

    /// Like [`DataPlane::start_with`], with extra command-line flags.
    pub async fn start_with_args(
        control_planes: &[SocketAddr],
        node_id: &str,
        extra: &[&str],
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("gw-e2e-dp-")
            .tempdir()
            .expect("create a temporary directory");
        let cache_dir = dir.path().join("cache");
        std::fs::create_dir_all(&cache_dir).expect("create the data plane's cache directory");
        let [listen, tls_listen, admin] = distinct_free_addrs();
        let mut args: Vec<OsString> = vec![
            "--listen".into(),
            listen.to_string().into(),
            "--tls-listen".into(),
            tls_listen.to_string().into(),
            "--admin-listen".into(),
            admin.to_string().into(),
            "--control-plane".into(),
            control_planes
                .iter()
                .map(|cp| format!("http://{cp}"))
                .collect::<Vec<_>>()
                .join(",")
                .into(),
            "--node-id".into(),
            node_id.into(),
            "--cache-dir".into(),
            cache_dir.into_os_string(),
        ];
        args.extend(extra.iter().map(Into::into));
        let process = Process::new(
            format!("dataplane {node_id}"),
            "gateway-dataplane",
            args,
            dir.path(),
        );
        let mut dp = DataPlane {
            process,
            node_id: node_id.to_owned(),
            listen,
            tls_listen,
            admin,
            dir,
        };
        dp.restart().await;
        dp
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Sends a signal (`TERM`, `QUIT`, …) to the process, as an orchestrator would.
    pub fn signal(&self, name: &str) {
        self.process.signal(name);
    }

    /// Waits (at most `within`) for the process to exit by itself; returns whether it did.
    pub async fn wait_exit(&mut self, within: Duration) -> bool {
        self.process.wait_exit(within).await
    }

    /// The arguments it was started with, for starting a successor with the same flags.
    pub fn args(&self) -> &[OsString] {
        &self.process.args
    }

    /// The last-known-good cache directory (`--cache-dir`).
    pub fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// Where it proxies.
    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    /// Everything it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.process.log_path).unwrap_or_default()
    }

    /// Where it terminates TLS.
    pub fn tls_addr(&self) -> SocketAddr {
        self.tls_listen
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Fails the test if the process has exited.
    pub fn assert_running(&mut self) {
        if let Err(e) = self.process.check_running() {
            panic!("{e:#}\n{}", self.process.log_tail());
        }
    }

    pub async fn wait_ready(&mut self) {
        let admin = self.admin;
        if let Err(e) = self.process.wait_http_ok(admin, "/healthz").await {
            panic!("data plane {} did not become healthy: {e:#}", self.node_id);
        }
    }

    pub async fn stop(&mut self) {
        self.process.stop().await;
    }

    /// Stops the process if it runs and starts it again with the same ports and cache.
    pub async fn restart(&mut self) {
        self.process.stop().await;
        if let Err(e) = self.process.spawn() {
            panic!("cannot start data plane {}: {e:#}", self.node_id);
        }
        self.wait_ready().await;
    }

    /// `GET path` through the proxy with the given Host header.
    pub async fn get(&self, host: &str, path: &str) -> anyhow::Result<HttpResponse> {
        send_get(self.listen, host, path).await
    }

    /// `GET path` on the admin listener (`/healthz`, `/readyz`, `/config`, ...).
    pub async fn admin_get(&self, path: &str) -> anyhow::Result<HttpResponse> {
        send_get(self.admin, "localhost", path).await
    }

    /// The admin `/config` document.
    pub async fn config(&self) -> anyhow::Result<Value> {
        let response = self.admin_get("/config").await?;
        ensure!(
            response.status == StatusCode::OK,
            "/config answered {}: {}",
            response.status,
            response.text()
        );
        response.json()
    }

    /// The version of the config it has applied (0 when none).
    pub async fn applied_version(&self) -> anyhow::Result<u64> {
        u64_field(&self.config().await?, "version")
    }

    /// Waits (up to 10 s) until it has applied `version` or later; returns its `/config`.
    pub async fn wait_for_version(&self, version: u64) -> Value {
        eventually(CONVERGE_TIMEOUT, || async {
            let config = self.config().await?;
            let applied = u64_field(&config, "version")?;
            ensure!(
                applied >= version,
                "data plane {} has applied version {applied}, waiting for {version}: {config}",
                self.node_id
            );
            Ok(config)
        })
        .await
    }

    /// Waits until the current generation of the on-disk cache holds `version`. The data plane
    /// writes its cache just after it ACKs, so a test that kills it right after converging
    /// must wait for this to find that version cached.
    pub async fn wait_for_cached(&self, version: u64) {
        let cache = gateway_dataplane::cache::SnapshotCache::new(self.cache_dir());
        eventually(CONVERGE_TIMEOUT, || async {
            let current = cache.load(gateway_dataplane::cache::Generation::Current)?;
            let cached = current.map(|snapshot| snapshot.version);
            ensure!(
                cached == Some(version),
                "data plane {} has cached {cached:?}, waiting for version {version}",
                self.node_id
            );
            Ok(())
        })
        .await;
    }

    /// Waits (up to `timeout`) until `GET path` with `host` answers with the given status and,
    /// if given, body.
    pub async fn wait_for_response(
        &self,
        timeout: Duration,
        host: &str,
        path: &str,
        status: StatusCode,
        body: Option<&str>,
    ) -> HttpResponse {
        eventually(timeout, || async {
            let response = self.get(host, path).await?;
            ensure!(
                response.status == status && body.is_none_or(|b| response.text() == b),
                "GET {host}{path} via {}: {} {:?}; waiting for {status} {body:?}",
                self.node_id,
                response.status,
                response.text()
            );
            Ok(response)
        })
        .await
    }
}

/// A database, a control plane and data planes: the usual cast of a test. Fields drop in
/// order, so the processes are gone before the database is dropped.
pub struct Gateway {
    pub cp: ControlPlane,
    pub dps: Vec<DataPlane>,
    pub db: TestDb,
}

impl Gateway {
    /// Starts a control plane and `data_planes` data planes named `dp-1`, `dp-2`, ...
    pub async fn start(data_planes: usize) -> Self {
        let db = TestDb::create().await;
        let cp = ControlPlane::start(&db).await;
        let mut dps = Vec::with_capacity(data_planes);
        for i in 1..=data_planes {
            dps.push(DataPlane::start(cp.grpc_addr(), &format!("dp-{i}")).await);
        }
        Gateway { cp, dps, db }
    }

    /// The first data plane.
    pub fn dp(&self) -> &DataPlane {
        self.dps
            .first()
            .expect("a gateway started with a data plane")
    }

    /// Waits until every data plane has applied the control plane's current version.
    pub async fn converge(&self) -> u64 {
        let version = self.cp.version().await;
        for dp in &self.dps {
            dp.wait_for_version(version).await;
        }
        version
    }
}
