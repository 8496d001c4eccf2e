//! `gateway-dataplane`: flags, logging and wiring. Start-up errors print one line and exit 1.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::{Parser, ValueEnum};
use gateway_dataplane::app::Gateway;
use gateway_dataplane::cache::SnapshotCache;
use gateway_dataplane::discovery_client::{DiscoveryClient, DiscoveryToken, NodeIdentity};
use gateway_dataplane::lifecycle::{self, Addresses, DrainPolicy, Listeners, Switches};
use gateway_dataplane::proxy::{Observers, Proxy, ServerLimits};
use gateway_dataplane::telemetry::{AccessLog, AccessLogTarget, Tracing, TracingConfig};
use gateway_dataplane::{admin, proxy, tls};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

/// The gateway's data plane: an HTTP/1.1, HTTP/2, gRPC and WebSocket proxy, plain and TLS,
/// configured by the control plane.
#[derive(Debug, Parser)]
#[command(name = "gateway-dataplane", version, about)]
struct Flags {
    /// Address of the plain proxy listener: HTTP/1.1, and HTTP/2 with prior knowledge (h2c).
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Address of the TLS proxy listener (TLS 1.2 and 1.3, ALPN h2 and http/1.1); its
    /// certificates are the config's Certificate resources, chosen by SNI.
    #[arg(long, env = "GATEWAY_TLS_LISTEN", default_value = "127.0.0.1:8443")]
    tls_listen: SocketAddr,

    /// Time a client has to send request headers (and to finish a TLS handshake); also how
    /// long an idle HTTP/1.1 keep-alive connection waits for its next request.
    #[arg(long, env = "GATEWAY_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = parse_timeout)]
    header_read_timeout: Duration,

    /// Largest request head (HTTP/1.1) or header list (HTTP/2), in bytes; beyond it the request
    /// is refused (431 on HTTP/1.1).
    #[arg(long, env = "GATEWAY_MAX_HEADER_BYTES", default_value_t = 64 * 1024)]
    max_header_bytes: usize,

    /// Most header fields in an HTTP/1.1 request.
    #[arg(long, env = "GATEWAY_MAX_HEADERS", default_value_t = 100)]
    max_headers: usize,

    /// Let HTTP/1.1 requests with a body on GET through (APIs such as Elasticsearch's `_search`
    /// send one). By default they are refused with 400: a next hop that ignores a GET body
    /// reads it as the next request (request smuggling).
    #[arg(long, env = "GATEWAY_ALLOW_GET_BODY")]
    allow_get_body: bool,

    /// HTTP/2: a connection with no open stream for this long gets GOAWAY and is closed
    /// (idle HTTP/1.1 keep-alive connections are bounded by --header-read-timeout).
    #[arg(long, env = "GATEWAY_IDLE_TIMEOUT", default_value = "120s", value_parser = parse_timeout)]
    idle_timeout: Duration,

    /// HTTP/2: streams a client may have open at once on one connection.
    #[arg(long, env = "GATEWAY_H2_MAX_CONCURRENT_STREAMS", default_value_t = 200)]
    h2_max_concurrent_streams: u32,

    /// HTTP/2: flow-control window of each stream, in bytes.
    #[arg(long, env = "GATEWAY_H2_STREAM_WINDOW", default_value_t = 1024 * 1024)]
    h2_stream_window: u32,

    /// HTTP/2: flow-control window of each connection, in bytes.
    #[arg(long, env = "GATEWAY_H2_CONNECTION_WINDOW", default_value_t = 4 * 1024 * 1024)]
    h2_connection_window: u32,

    /// HTTP/2: interval of keep-alive PINGs; a peer that does not answer one within as long
    /// is disconnected.
    #[arg(long, env = "GATEWAY_H2_KEEP_ALIVE", default_value = "20s", value_parser = humantime::parse_duration)]
    h2_keep_alive: Duration,

    /// Proxy worker threads, each with its own single-threaded runtime, accepting on both proxy
    /// listeners and keeping its own upstream connection pools; new connections go to the
    /// least loaded workers first [default: the available cores].
    #[arg(long, env = "GATEWAY_WORKERS", value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,

    /// An upgraded (WebSocket) connection through which no byte moves for this long is closed.
    #[arg(long, env = "GATEWAY_TUNNEL_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_timeout)]
    tunnel_idle_timeout: Duration,

    /// Address of the admin listener (/healthz, /readyz, /config, /metrics).
    #[arg(long, env = "GATEWAY_ADMIN_LISTEN", default_value = "127.0.0.1:8081")]
    admin_listen: SocketAddr,

    /// gRPC address of a control plane; repeat or separate with commas to list several,
    /// tried in turn when one fails.
    #[arg(
        long = "control-plane",
        env = "GATEWAY_CONTROL_PLANE",
        default_value = "http://127.0.0.1:9090",
        value_delimiter = ','
    )]
    control_plane: Vec<String>,

    /// Name of this data plane, as the control plane lists it [default: the host name].
    #[arg(long, env = "GATEWAY_NODE_ID")]
    node_id: Option<String>,

    /// A KEY=VALUE label sent to the control plane; repeatable (comma-separated in the
    /// environment variable).
    #[arg(
        long = "label",
        env = "GATEWAY_LABELS",
        value_name = "KEY=VALUE",
        value_delimiter = ',',
        value_parser = parse_label
    )]
    labels: Vec<(String, String)>,

    /// Directory of the last-known-good config cache; an empty value disables the cache
    /// [default: $XDG_CACHE_HOME/gateway-dataplane, else $HOME/.cache/gateway-dataplane].
    #[arg(long, env = "GATEWAY_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<String>,

    /// File holding this data plane's token (role dataplane), re-read on every reconnect.
    #[arg(
        long,
        env = "GATEWAY_DATAPLANE_TOKEN_FILE",
        value_name = "PATH",
        conflicts_with = "token"
    )]
    token_file: Option<PathBuf>,

    /// This data plane's token (role dataplane); prefer --token-file, which keeps it out of the
    /// process list.
    #[arg(long, env = "GATEWAY_DATAPLANE_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// On SIGTERM: how long to keep serving while reporting not ready, so load balancers stop
    /// sending before the listeners close.
    #[arg(long, env = "GATEWAY_DRAIN_DELAY", default_value = "5s", value_parser = humantime::parse_duration)]
    drain_delay: Duration,

    /// Once the listeners are closed: the longest wait for requests in flight to finish.
    #[arg(long, env = "GATEWAY_DRAIN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,

    /// Unix socket for zero-downtime upgrades: on SIGQUIT this process hands its listeners to
    /// the new process waiting there (started with --upgrade), then drains.
    #[arg(long, env = "GATEWAY_UPGRADE_SOCKET", value_name = "PATH")]
    upgrade_socket: Option<PathBuf>,

    /// Start as the successor of a running data plane: get a config (cache or control plane),
    /// then take the running process's listeners from --upgrade-socket instead of binding.
    #[arg(long, env = "GATEWAY_UPGRADE", requires = "upgrade_socket")]
    upgrade: bool,

    /// Diagnostic log line format (stderr); the level comes from RUST_LOG (default: info).
    #[arg(long, env = "GATEWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Write one JSON access-log line per request to `stdout` or to the file PATH (appended)
    /// [default: off].
    #[arg(long, env = "GATEWAY_ACCESS_LOG", value_name = "stdout|PATH")]
    access_log: Option<AccessLogTarget>,

    /// Export request traces with OTLP over gRPC to this collector, e.g. http://127.0.0.1:4317
    /// [default: off].
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,

    /// Fraction of new traces to record, 0 to 1; a request whose caller decided (`traceparent`)
    /// follows the caller's decision.
    #[arg(long, env = "GATEWAY_TRACE_SAMPLE_RATIO", default_value_t = 1.0, value_parser = parse_ratio)]
    trace_sample_ratio: f64,

    /// `service.name` of exported spans.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "gateway-dataplane")]
    otel_service_name: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn parse_label(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(format!("{raw:?} is not KEY=VALUE")),
    }
}

/// A timeout: a duration above zero (a zero timeout would close every connection at once).
fn parse_timeout(raw: &str) -> Result<Duration, String> {
    match humantime::parse_duration(raw) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        Ok(_) => Err(format!(
            "{raw:?} is zero; a timeout must be longer (such as 30s)"
        )),
        Err(error) => Err(format!(
            "{raw:?} is not a duration such as 30s or 2m: {error}"
        )),
    }
}

fn parse_ratio(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err(format!("{raw:?} is not a number from 0 to 1")),
    }
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    init_logging(flags.log_format);
    // The control side (discovery, admin, health checks, lifecycle) is light: one thread, so it
    // does not compete for the cores with the proxy workers, which are threads of their own.
    // Config compiles run on the blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gateway-dataplane: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gateway-dataplane: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    // rustls warns about what a client sent (an IP address as SNI, as curl and wrk send for
    // https://127.0.0.1/) on every handshake: any client could flood the log at will.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rustls=error"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(flags: Flags) -> anyhow::Result<()> {
    let addresses = Addresses {
        proxy: flags.listen,
        tls: flags.tls_listen,
        admin: flags.admin_listen,
    };
    let limits = ServerLimits {
        header_read_timeout: flags.header_read_timeout,
        max_header_bytes: flags.max_header_bytes,
        max_headers: flags.max_headers,
        h2_max_concurrent_streams: flags.h2_max_concurrent_streams,
        h2_stream_window: flags.h2_stream_window,
        h2_connection_window: flags.h2_connection_window,
        h2_keep_alive_interval: flags.h2_keep_alive,
        h2_keep_alive_timeout: flags.h2_keep_alive,
        allow_get_body: flags.allow_get_body,
        idle_timeout: flags.idle_timeout,
        ..ServerLimits::default()
    };
    // A fresh start binds before anything else, so a taken port fails fast; a successor takes
    // its listeners only once it has a table to serve with.
    let bound = if flags.upgrade {
        None
    } else {
        Some(Listeners::bind(addresses)?)
    };

    let identity = NodeIdentity {
        node_id: flags.node_id.clone().unwrap_or_else(host_name),
        labels: flags.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
    };
    let cache = cache_dir(flags.cache_dir.as_deref()).map(SnapshotCache::new);
    let gateway = Gateway::new();
    let addresses_cp: Vec<String> = flags
        .control_plane
        .iter()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    if addresses_cp.is_empty() {
        return Err(anyhow!("--control-plane: at least one address is required"));
    }
    let discovery = DiscoveryClient::new(
        &addresses_cp,
        identity.clone(),
        gateway.clone(),
        cache.clone(),
    )
    .context("--control-plane")?
    .with_token(match (&flags.token_file, &flags.token) {
        (Some(path), _) => DiscoveryToken::File(path.clone()),
        (None, Some(token)) => DiscoveryToken::Value(token.clone()),
        (None, None) => DiscoveryToken::None,
    });

    if let Some(cache) = &cache {
        gateway.restore_from_cache(cache).await;
    }
    let discovery_task = tokio::spawn(discovery.run());

    let listeners = match (bound, &flags.upgrade_socket) {
        (Some(bound), _) => bound,
        (None, Some(socket)) => {
            wait_for_table(&gateway, TAKE_OVER_WAIT).await?;
            tracing::info!(socket = %socket.display(), "have a config; waiting for the running data plane's listeners");
            Listeners::take_over(addresses, socket.clone(), TAKE_OVER_WAIT).await?
        }
        (None, None) => return Err(anyhow!("--upgrade needs --upgrade-socket")),
    };
    let serving = listeners
        .into_serving(addresses)
        .context("preparing the listeners")?;

    tracing::info!(
        listen = %flags.listen,
        tls_listen = %flags.tls_listen,
        admin_listen = %flags.admin_listen,
        control_plane = ?addresses_cp,
        node_id = %identity.node_id,
        cache_dir = ?cache.as_ref().map(|c| c.dir().display().to_string()),
        upgraded = flags.upgrade,
        "gateway-dataplane started"
    );

    let observers = Observers {
        access_log: match &flags.access_log {
            Some(target) => {
                Some(AccessLog::start(target, gateway.clone()).context("--access-log")?)
            }
            None => None,
        },
        tracing: match &flags.otlp_endpoint {
            Some(endpoint) if !endpoint.trim().is_empty() => {
                let config = TracingConfig {
                    endpoint: endpoint.trim().to_string(),
                    sample_ratio: flags.trace_sample_ratio,
                    service_name: flags.otel_service_name.clone(),
                };
                tracing::info!(endpoint = %config.endpoint, ratio = config.sample_ratio, "exporting request traces");
                Some(Arc::new(
                    Tracing::start(&config).context("--otlp-endpoint")?,
                ))
            }
            _ => None,
        },
        ..Observers::default()
    };
    let tracing_handle = observers.tracing.clone();

    let (stop_proxy, proxy_stopped) = watch::channel(false);
    let (stop_admin, admin_stopped) = watch::channel(false);
    let workers = flags.workers.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        usize::from,
    );
    let proxy = Proxy::with_workers(
        gateway.clone(),
        observers,
        flags.tunnel_idle_timeout,
        workers,
    );
    let tls_config = tls::server_config(gateway.clone()).context("TLS listener")?;
    let workers_done = spawn_workers(
        workers,
        &Worker {
            proxy,
            plain: serving.proxy.into_std().context("proxy listener")?,
            tls: serving.tls.into_std().context("TLS listener")?,
            acceptor: tokio_rustls::TlsAcceptor::from(tls_config),
            stopped: proxy_stopped,
            limits,
            drain_timeout: flags.drain_timeout,
        },
    )?;
    let admin_task = tokio::spawn(admin::serve(serving.admin, gateway.clone(), admin_stopped));

    let switches = Switches {
        stop_proxy,
        stop_admin,
    };
    let policy = DrainPolicy {
        delay: flags.drain_delay,
        timeout: flags.drain_timeout,
    };
    lifecycle::run_until_exit(
        gateway,
        &policy,
        flags.upgrade_socket,
        serving.kept,
        &switches,
    )
    .await;
    for done in workers_done {
        let _ = done.await;
    }
    // The admin listener outlives the proxy's drain, so probes see "draining", not a refusal.
    let _ = switches.stop_admin.send(true);
    discovery_task.abort();
    let _ = admin_task.await;
    if let Some(tracing) = tracing_handle {
        // The batch exporter blocks while it flushes; keep that off the runtime's workers.
        let _ = tokio::task::spawn_blocking(move || tracing.shutdown()).await;
    }
    tracing::info!("drained; exiting");
    Ok(())
}

/// What every proxy worker serves with.
struct Worker {
    proxy: Arc<Proxy>,
    plain: std::net::TcpListener,
    tls: std::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    stopped: watch::Receiver<bool>,
    limits: ServerLimits,
    drain_timeout: Duration,
}

/// Starts `count` proxy workers: threads with a single-threaded runtime each, accepting on
/// duplicates of both proxy listeners (the kernel spreads connections over them), so a
/// connection, its requests and their upstream connections stay on one thread. Each returned
/// receiver resolves when its worker has drained.
fn spawn_workers(
    count: usize,
    worker: &Worker,
) -> anyhow::Result<Vec<tokio::sync::oneshot::Receiver<()>>> {
    let mut done = Vec::with_capacity(count);
    for index in 0..count {
        let plain = worker
            .plain
            .try_clone()
            .context("duplicating the proxy listener")?;
        let tls = worker
            .tls
            .try_clone()
            .context("duplicating the TLS listener")?;
        let proxy = Arc::clone(&worker.proxy);
        let acceptor = worker.acceptor.clone();
        let stopped = worker.stopped.clone();
        let limits = worker.limits.clone();
        let drain_timeout = worker.drain_timeout;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a proxy worker's runtime")?;
        let (finished, finished_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("proxy-worker-{index}"))
            .spawn(move || {
                proxy::enter_worker(index);
                runtime.block_on(async move {
                    let listeners = tokio::net::TcpListener::from_std(plain)
                        .and_then(|plain| Ok((plain, tokio::net::TcpListener::from_std(tls)?)));
                    let (plain, tls) = match listeners {
                        Ok(listeners) => listeners,
                        Err(error) => {
                            tracing::error!(%error, worker = index, "proxy worker cannot listen");
                            return;
                        }
                    };
                    let mut stop = stopped.clone();
                    let ((), (), stopped_at) = tokio::join!(
                        proxy::serve_with(
                            plain,
                            Arc::clone(&proxy),
                            stopped.clone(),
                            drain_timeout,
                            &limits,
                            None,
                        ),
                        proxy::serve_with(
                            tls,
                            proxy,
                            stopped,
                            drain_timeout,
                            &limits,
                            Some(acceptor)
                        ),
                        async move {
                            proxy::stop_requested(&mut stop).await;
                            tokio::time::Instant::now()
                        },
                    );
                    // Upgraded connections (WebSocket) run on this runtime but outside the
                    // servers' graceful shutdown: keep it alive for them, within the same
                    // drain timeout, counted from when the listeners stopped.
                    let deadline = stopped_at + drain_timeout;
                    if tokio::time::timeout_at(deadline, proxy::tunnels_closed())
                        .await
                        .is_err()
                    {
                        tracing::warn!(
                            open = proxy::open_tunnels(),
                            worker = index,
                            "tunnels still open after the drain timeout; closing them"
                        );
                    }
                });
                let _ = finished.send(());
            })
            .context("starting a proxy worker thread")?;
        done.push(finished_rx);
    }
    Ok(done)
}

/// Longest a successor waits for a config, and then for the listeners.
const TAKE_OVER_WAIT: Duration = Duration::from_secs(60);

async fn wait_for_table(gateway: &Gateway, wait: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + wait;
    while gateway.active().is_none() {
        if tokio::time::Instant::now() >= deadline {
            return Err(anyhow!(
                "no config within {wait:?} (neither the cache nor a control plane provided one); the running data plane keeps serving"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// `--cache-dir`: explicit empty disables, absent means the XDG cache directory.
fn cache_dir(flag: Option<&str>) -> Option<PathBuf> {
    match flag {
        Some("") => None,
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME")
                        .filter(|v| !v.is_empty())
                        .map(|home| PathBuf::from(home).join(".cache"))
                })?;
            Some(base.join("gateway-dataplane"))
        }
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "dataplane".to_string())
}
