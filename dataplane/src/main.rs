//! `gateway-dataplane`: flags, logging and wiring. Start-up errors print one line and exit 1.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::{Parser, ValueEnum};
use gateway_dataplane::app::Gateway;
use gateway_dataplane::cache::SnapshotCache;
use gateway_dataplane::discovery_client::{DiscoveryClient, NodeIdentity};
use gateway_dataplane::proxy::Proxy;
use gateway_dataplane::{admin, proxy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

/// The gateway's data plane: an HTTP/1.1 proxy configured by the control plane.
#[derive(Debug, Parser)]
#[command(name = "gateway-dataplane", version, about)]
struct Flags {
    /// Address of the HTTP/1.1 proxy listener.
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Address of the admin listener (/healthz, /readyz, /config).
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

    /// Log line format; the level comes from RUST_LOG (default: info).
    #[arg(long, env = "GATEWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
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

fn main() -> ExitCode {
    let flags = Flags::parse();
    init_logging(flags.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
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
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(flags: Flags) -> anyhow::Result<()> {
    let listener = bind(flags.listen, "--listen").await?;
    let admin_listener = bind(flags.admin_listen, "--admin-listen").await?;

    let identity = NodeIdentity {
        node_id: flags.node_id.clone().unwrap_or_else(host_name),
        labels: flags.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
    };
    let cache = cache_dir(flags.cache_dir.as_deref()).map(SnapshotCache::new);
    let gateway = Gateway::new();
    let addresses: Vec<String> = flags
        .control_plane
        .iter()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    if addresses.is_empty() {
        return Err(anyhow!("--control-plane: at least one address is required"));
    }
    let discovery =
        DiscoveryClient::new(&addresses, identity.clone(), gateway.clone(), cache.clone())
            .context("--control-plane")?;

    if let Some(cache) = &cache {
        gateway.restore_from_cache(cache).await;
    }

    tracing::info!(
        listen = %flags.listen,
        admin_listen = %flags.admin_listen,
        control_plane = ?addresses,
        node_id = %identity.node_id,
        cache_dir = ?cache.as_ref().map(|c| c.dir().display().to_string()),
        "gateway-dataplane started"
    );

    let (stop, stopped) = watch::channel(false);
    let proxy_task = tokio::spawn(proxy::serve(
        listener,
        Proxy::new(gateway.clone()),
        stopped.clone(),
    ));
    let admin_task = tokio::spawn(admin::serve(admin_listener, gateway.clone(), stopped));
    let discovery_task = tokio::spawn(discovery.run());

    shutdown_signal().await;
    tracing::info!("shutting down: draining connections");
    discovery_task.abort();
    let _ = stop.send(true);
    let _ = tokio::join!(proxy_task, admin_task);
    Ok(())
}

async fn bind(address: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.map_err(|error| {
        let reason = match error.kind() {
            io::ErrorKind::AddrInUse => "address in use".to_string(),
            io::ErrorKind::AddrNotAvailable => "address not available on this host".to_string(),
            io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => error.to_string(),
        };
        anyhow!("cannot listen on {address} ({flag}): {reason}")
    })
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

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
