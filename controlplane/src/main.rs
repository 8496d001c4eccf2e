//! `gateway-controlplane`: stores the gateway's config, serves the REST and gRPC admin APIs, and
//! streams one snapshot per config version to every data plane.

mod api;
mod discovery;
mod error;
mod service;
mod snapshot;
mod store;
mod traffic;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use gateway_proto::v1::admin_service_server::AdminServiceServer;
use gateway_proto::v1::discovery_service_server::DiscoveryServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::discovery::{DiscoveryServer, MAX_MESSAGE_BYTES};
use crate::service::ConfigService;
use crate::snapshot::Snapshots;
use crate::store::Store;

/// How long open admin calls and discovery streams get to finish after SIGTERM or Ctrl-C.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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

    /// Diagnostic log format; the level comes from RUST_LOG (default info).
    #[arg(long, env = "GATEWAY_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let flags = Flags::parse();
    init_logging(&flags.log_format);
    match run(flags).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gateway-controlplane: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

async fn run(flags: Flags) -> anyhow::Result<()> {
    // Listeners first, so a taken port fails before the store is touched.
    let rest = bind(flags.rest_listen, "--rest-listen").await?;
    let grpc = bind(flags.grpc_listen, "--grpc-listen").await?;
    let url = database_url(&flags)?;
    let store = Store::open(&url).await?;
    tracing::info!(store = %store.backend().describe(), "store ready");

    let snapshots = Snapshots::load(store.clone())
        .await
        .context("loading the current config")?;
    snapshots.spawn_followers(flags.poll_interval);
    let service = ConfigService::new(store.clone(), snapshots.clone());

    let shutdown = tokio::sync::watch::channel(false).0;
    let rest_app = api::rest::router(service.clone(), store.clone());
    let rest_server = axum::serve(rest, rest_app).with_graceful_shutdown(wait(shutdown.clone()));
    let grpc_server = tonic::transport::Server::builder()
        .add_service(
            AdminServiceServer::new(api::grpc::AdminApi::new(service))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            DiscoveryServiceServer::new(DiscoveryServer::new(
                store,
                snapshots,
                flags.max_snapshot_bytes,
            ))
            .max_decoding_message_size(flags.max_snapshot_bytes)
            .max_encoding_message_size(flags.max_snapshot_bytes),
        )
        .serve_with_incoming_shutdown(TcpListenerStream::new(grpc), wait(shutdown.clone()));
    tracing::info!(rest = %flags.rest_listen, grpc = %flags.grpc_listen, "control plane listening");

    let servers = async {
        let (rest, grpc) =
            tokio::join!(async { rest_server.await.context("REST server") }, async {
                grpc_server.await.context("gRPC server")
            });
        rest.and(grpc)
    };
    tokio::pin!(servers);
    tokio::select! {
        result = &mut servers => result,
        () = shutdown_signal() => {
            tracing::info!("shutting down");
            let _ = shutdown.send(true);
            // Discovery streams never end on their own; bound the wait.
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut servers).await {
                Ok(result) => result,
                Err(_) => Ok(()),
            }
        }
    }
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

async fn bind(address: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} ({flag})"))
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

fn default_data_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share"))
        })?;
    Some(base.join("gateway"))
}

async fn wait(shutdown: tokio::sync::watch::Sender<bool>) {
    let mut rx = shutdown.subscribe();
    let _ = rx.wait_for(|stop| *stop).await;
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

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
