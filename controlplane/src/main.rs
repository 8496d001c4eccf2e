//! `gateway-controlplane`: stores the gateway's config, serves the REST and gRPC admin APIs, and
//! streams one snapshot per config version to every data plane.

mod api;
mod auth;
mod certificate;
mod discovery;
mod error;
mod grpc_health;
mod page;
mod secrets;
mod server;
mod service;
mod snapshot;
mod store;
mod telemetry;
mod traffic;
mod write;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio::net::{TcpListener, TcpSocket};

use crate::discovery::MAX_MESSAGE_BYTES;
use crate::secrets::KeyEncryptionKey;
use crate::server::ServerConfig;
use crate::store::{Sealer, Store};
use crate::telemetry::Metrics;

#[derive(Parser, Debug)]
#[command(
    name = "gateway-controlplane",
    version,
    about = "The gateway's control plane: config store, admin APIs (REST and gRPC) and snapshot distribution to data planes"
)]
struct Flags {
    /// Store: postgres://USER@HOST:PORT/DB, or sqlite://PATH. [default: the embedded store,
    /// sqlite file gateway.db in --data-dir]
    #[arg(long, env = "GATEWAY_DATABASE_URL")]
    database_url: Option<String>,

    /// Directory of the embedded store, created when missing. [default: $XDG_DATA_HOME/gateway,
    /// else ~/.local/share/gateway]
    #[arg(long, env = "GATEWAY_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// REST admin API address (/v1/…, /healthz, /readyz).
    #[arg(long, env = "GATEWAY_REST_LISTEN", default_value = "127.0.0.1:9080")]
    rest_listen: SocketAddr,

    /// gRPC address: gateway.v1.AdminService and gateway.v1.DiscoveryService.
    #[arg(long, env = "GATEWAY_GRPC_LISTEN", default_value = "127.0.0.1:9090")]
    grpc_listen: SocketAddr,

    /// How often to check the store for versions committed by other replicas, as a backstop
    /// for lost notifications.
    #[arg(long, env = "GATEWAY_POLL_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    poll_interval: Duration,

    /// Largest snapshot (and gRPC message) sent or accepted, in bytes; a bigger config is an
    /// explicit error on the discovery stream, never a stall.
    #[arg(long, env = "GATEWAY_MAX_SNAPSHOT_BYTES", default_value_t = MAX_MESSAGE_BYTES)]
    max_snapshot_bytes: usize,

    /// File holding an admin token that is valid while this process runs (principal
    /// `bootstrap`); use it to create the real tokens. Never stored. At least 32 characters.
    #[arg(
        long,
        env = "GATEWAY_BOOTSTRAP_TOKEN_FILE",
        value_name = "PATH",
        conflicts_with = "bootstrap_token"
    )]
    bootstrap_token_file: Option<PathBuf>,

    /// Like --bootstrap-token-file, with the token itself (prefer the file or the environment:
    /// command lines are visible to other users).
    #[arg(
        long,
        env = "GATEWAY_BOOTSTRAP_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    bootstrap_token: Option<String>,

    /// File holding the key that seals certificates' private keys in the store (AES-256-GCM):
    /// 64 hex digits, e.g. from `openssl rand -hex 32`. Every replica on one database needs the
    /// same key. [default: on the embedded store, secrets.key beside the database, created
    /// (0600) on first start; on Postgres none, and then a Certificate cannot be written]
    #[arg(
        long,
        env = "GATEWAY_SECRETS_KEY_FILE",
        value_name = "PATH",
        conflicts_with = "secrets_key"
    )]
    secrets_key_file: Option<PathBuf>,

    /// Like --secrets-key-file, with the key itself (e.g. from a Kubernetes Secret; prefer the
    /// file or the environment: command lines are visible to other users).
    #[arg(
        long,
        env = "GATEWAY_SECRETS_KEY",
        value_name = "HEX",
        hide_env_values = true
    )]
    secrets_key: Option<String>,

    /// Let requests without a token through as admin "anonymous", on any address. For
    /// throwaway set-ups only. Without it, a non-loopback listener needs a bootstrap token or an
    /// admin token in the store; on loopback, tokenless requests are allowed only until the
    /// first admin token exists.
    #[arg(
        long,
        env = "GATEWAY_INSECURE_NO_AUTH",
        value_parser = clap::builder::BoolishValueParser::new(),
        conflicts_with_all = ["bootstrap_token", "bootstrap_token_file"]
    )]
    insecure_no_auth: bool,

    /// Diagnostic log format; the level comes from RUST_LOG (default info).
    #[arg(long, env = "GATEWAY_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,

    /// Export traces of admin calls (store queries as child spans) with OTLP over gRPC to this
    /// collector, e.g. http://127.0.0.1:4317 [default: off].
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,

    /// Fraction of new traces to record, 0 to 1; a call whose caller decided (`traceparent`)
    /// follows the caller's decision.
    #[arg(long, env = "GATEWAY_TRACE_SAMPLE_RATIO", default_value_t = 1.0, value_parser = parse_ratio)]
    trace_sample_ratio: f64,

    /// `service.name` of exported spans.
    #[arg(
        long,
        env = "OTEL_SERVICE_NAME",
        default_value = "gateway-controlplane"
    )]
    otel_service_name: String,
}

fn parse_ratio(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err(format!("{raw:?} is not a number from 0 to 1")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let flags = Flags::parse();
    let metrics = Arc::new(Metrics::default());
    let tracer = match init_logging(&flags, &metrics) {
        Ok(tracer) => tracer,
        Err(error) => {
            eprintln!("gateway-controlplane: {}", one_line(&error));
            return ExitCode::FAILURE;
        }
    };
    let result = run(flags, metrics).await;
    if let Some(provider) = tracer {
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gateway-controlplane: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

async fn run(flags: Flags, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    // Listeners first, so a taken port fails before the store is touched.
    let rest = bind(flags.rest_listen, "--rest-listen")?;
    let grpc = bind(flags.grpc_listen, "--grpc-listen")?;
    let bootstrap_token =
        match &flags.bootstrap_token_file {
            Some(path) => Some(std::fs::read_to_string(path).with_context(|| {
                format!("cannot read --bootstrap-token-file {}", path.display())
            })?),
            None => flags.bootstrap_token.clone(),
        };
    let url = database_url(&flags)?;
    let key = secrets_key(&flags, &url)?;
    if let Some(key) = &key {
        tracing::info!(
            key_id = key.id(),
            "private keys are sealed with this key-encryption key"
        );
    }
    let sealer = Sealer::new(key);
    let store = Store::open(&url, sealer).await?;
    tracing::info!(store = %store.backend().describe(), "store ready");
    let config = ServerConfig {
        poll_interval: flags.poll_interval,
        max_snapshot_bytes: flags.max_snapshot_bytes,
        bootstrap_token,
        insecure_no_auth: flags.insecure_no_auth,
        metrics,
    };
    server::serve(store, rest, grpc, config, shutdown_signal()).await
}

/// The error and its causes on one line, skipping causes whose text the previous one already
/// includes (sqlx and io errors often repeat their source in their own message).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

/// Connections the kernel queues before they are accepted. Tokio's default (128, the standard
/// library's) is overflowed when a fleet of data planes reconnects at once, after a restart
/// of this control plane: the surplus handshakes are dropped and retried a second later.
const LISTEN_BACKLOG: u32 = 4096;

fn bind(address: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    listen(address).with_context(|| format!("cannot listen on {address} ({flag})"))
}

fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

fn database_url(flags: &Flags) -> anyhow::Result<String> {
    if let Some(url) = &flags.database_url {
        return Ok(url.clone());
    }
    let dir = match &flags.data_dir {
        Some(dir) => dir.clone(),
        None => default_data_dir()
            .context("no --data-dir given and neither XDG_DATA_HOME nor HOME is set")?,
    };
    Ok(format!("sqlite://{}", dir.join("gateway.db").display()))
}

/// The key that seals private keys at rest: the flag's, else on SQLite the store's own key file
/// (created on first start, so the quick start needs no set-up), else none.
fn secrets_key(flags: &Flags, url: &str) -> anyhow::Result<Option<KeyEncryptionKey>> {
    if let Some(path) = &flags.secrets_key_file {
        return Ok(Some(KeyEncryptionKey::read(path)?));
    }
    if let Some(text) = &flags.secrets_key {
        return Ok(Some(KeyEncryptionKey::from_hex(text, "--secrets-key")?));
    }
    let Some(database) = url.strip_prefix("sqlite://") else {
        tracing::warn!(
            "no --secrets-key-file: certificates (private keys) cannot be written to this store"
        );
        return Ok(None);
    };
    let database = PathBuf::from(database.split('?').next().unwrap_or(database));
    let path = database.with_file_name("secrets.key");
    Ok(Some(KeyEncryptionKey::read_or_create(&path)?))
}

fn default_data_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share"))
        })?;
    Some(base.join("gateway"))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Diagnostic logs to stderr (filtered by RUST_LOG), store timings into the metrics, and, with
/// an OTLP endpoint, spans to the collector. Returns the tracer provider to flush at exit.
fn init_logging(
    flags: &Flags,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Option<SdkTracerProvider>> {
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let log = telemetry::LogOutput {
        json: flags.log_format == "json",
        ansi: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        filter,
        writer: tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
    };
    let (tracer, provider) = match flags.otlp_endpoint.as_deref().map(str::trim) {
        Some(endpoint) if !endpoint.is_empty() => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.to_string())
                .build()
                .with_context(|| format!("--otlp-endpoint {endpoint}"))?;
            let provider = telemetry::tracer_provider(
                exporter,
                flags.trace_sample_ratio,
                &flags.otel_service_name,
            );
            (
                Some(provider.tracer("gateway-controlplane")),
                Some(provider),
            )
        }
        _ => (None, None),
    };
    telemetry::subscriber(log, metrics, tracer)
        .try_init()
        .context("installing the log subscriber")?;
    Ok(provider)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fleet reconnecting at once, more than tokio's default backlog of 128, none accepted
    /// yet: every handshake must complete and wait in the queue.
    #[tokio::test]
    async fn a_burst_of_connections_is_queued_while_none_is_accepted() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), "--grpc-listen").unwrap();
        let address = listener.local_addr().unwrap();
        // The kernel caps the backlog at net.core.somaxconn (4096 since Linux 5.4).
        let burst = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|max| max.trim().parse::<usize>().ok())
            .map_or(300, |max| max.min(300));
        let connects: Vec<_> = (0..burst)
            .map(|_| {
                tokio::spawn(tokio::time::timeout(
                    Duration::from_secs(5),
                    tokio::net::TcpStream::connect(address),
                ))
            })
            .collect();
        let mut established = 0;
        for connect in connects {
            if let Ok(Ok(Ok(_stream))) = connect.await {
                established += 1;
            }
        }
        assert_eq!(established, burst);
        drop(listener);
    }
}
