//! How a data plane comes and goes without dropping a request: it binds its listeners (or takes
//! them over from the process it replaces), and it leaves either by draining (SIGTERM) or by
//! handing its listeners to a successor and then draining (SIGQUIT). See LIFECYCLE.md.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;

use crate::app::Gateway;
use crate::upgrade::{self, Handed};

/// The listeners of one process, as std sockets so they can be duplicated for a hand-off.
pub struct Listeners {
    pub proxy: TcpListener,
    pub tls: TcpListener,
    pub admin: TcpListener,
}

/// Where each listener should be (the `--listen`, `--tls-listen`, `--admin-listen` flags).
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    pub proxy: SocketAddr,
    pub tls: SocketAddr,
    pub admin: SocketAddr,
}

/// Listeners ready to serve, plus the duplicates kept to hand over on SIGQUIT.
pub struct Serving {
    pub proxy: tokio::net::TcpListener,
    pub tls: tokio::net::TcpListener,
    pub admin: tokio::net::TcpListener,
    pub kept: Vec<(SocketAddr, TcpListener)>,
}

#[derive(Debug, Clone)]
pub struct DrainPolicy {
    /// Time between reporting not ready and closing the listeners, so load balancers stop
    /// sending first.
    pub delay: Duration,
    /// Upper bound on waiting for in-flight requests once the listeners are closed.
    pub timeout: Duration,
}

impl Listeners {
    /// Binds every listener; the error names the flag and the reason.
    pub fn bind(addresses: Addresses) -> anyhow::Result<Listeners> {
        Ok(Listeners {
            proxy: bind(addresses.proxy, "--listen")?,
            tls: bind(addresses.tls, "--tls-listen")?,
            admin: bind(addresses.admin, "--admin-listen")?,
        })
    }

    /// Takes the listeners a running data plane hands over on `socket`; an address it did not
    /// hand over (a listener change) is bound fresh, and one no longer configured is closed.
    pub async fn take_over(
        addresses: Addresses,
        socket: PathBuf,
        wait: Duration,
    ) -> anyhow::Result<Listeners> {
        let handed = tokio::task::spawn_blocking(move || upgrade::receive_listeners(&socket, wait))
            .await
            .map_err(|e| anyhow::anyhow!("receiving listeners panicked: {e}"))??;
        let mut handed: Vec<Handed> = handed;
        let mut take = |address: SocketAddr, flag: &str| -> anyhow::Result<TcpListener> {
            match handed.iter().position(|h| h.address == address) {
                Some(index) => Ok(handed.swap_remove(index).listener),
                None => {
                    tracing::info!(%address, flag, "not handed over; binding it fresh");
                    bind(address, flag)
                }
            }
        };
        let listeners = Listeners {
            proxy: take(addresses.proxy, "--listen")?,
            tls: take(addresses.tls, "--tls-listen")?,
            admin: take(addresses.admin, "--admin-listen")?,
        };
        for unused in handed {
            tracing::info!(address = %unused.address, "closing a handed-over listener this process is not configured for");
        }
        Ok(listeners)
    }

    /// Tokio listeners for serving, and duplicates (same kernel sockets) kept for a hand-off.
    pub fn into_serving(self, addresses: Addresses) -> io::Result<Serving> {
        let kept = vec![
            (addresses.proxy, self.proxy.try_clone()?),
            (addresses.tls, self.tls.try_clone()?),
            (addresses.admin, self.admin.try_clone()?),
        ];
        self.proxy.set_nonblocking(true)?;
        self.tls.set_nonblocking(true)?;
        self.admin.set_nonblocking(true)?;
        Ok(Serving {
            proxy: tokio::net::TcpListener::from_std(self.proxy)?,
            tls: tokio::net::TcpListener::from_std(self.tls)?,
            admin: tokio::net::TcpListener::from_std(self.admin)?,
            kept,
        })
    }
}

/// Connections the kernel completes and queues while every worker is busy. The standard
/// library listens with 128, which a pool of a few hundred connections opened at once (a load
/// balancer starting, clients reconnecting after a restart) overflows: the surplus handshakes
/// are dropped and retried by the clients hundreds of milliseconds later. NGINX and HAProxy
/// are commonly given the same 4096; the kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 4096;

fn bind(address: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    listen(address).map_err(|error| {
        let reason = match error.kind() {
            io::ErrorKind::AddrInUse => "address in use".to_string(),
            io::ErrorKind::AddrNotAvailable => "address not available on this host".to_string(),
            io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => error.to_string(),
        };
        anyhow::anyhow!("cannot listen on {address} ({flag}): {reason}")
    })
}

fn listen(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    // As the standard library does: a restarted data plane can bind while connections of its
    // predecessor are in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// What ends a data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM or Ctrl-C: report not ready, wait the drain delay, stop accepting, drain.
    Drain,
    /// SIGQUIT: hand the listeners to a successor, then stop accepting at once and drain.
    HandOff,
}

/// The switches the servers watch: `stop_proxy` ends accepting on both proxy listeners (plain
/// and TLS), `stop_admin` the admin's.
pub struct Switches {
    pub stop_proxy: watch::Sender<bool>,
    pub stop_admin: watch::Sender<bool>,
}

/// Waits for the signal that ends this process and performs the exit it asks for, up to the
/// moment the listeners stop accepting; the servers then drain what they have in flight.
pub async fn run_until_exit(
    gateway: Arc<Gateway>,
    policy: &DrainPolicy,
    upgrade_socket: Option<PathBuf>,
    kept: Vec<(SocketAddr, TcpListener)>,
    switches: &Switches,
) {
    loop {
        match next_signal().await {
            Exit::Drain => {
                gateway.begin_draining();
                tracing::info!(delay = ?policy.delay, "draining: not ready; still serving during the drain delay");
                tokio::time::sleep(policy.delay).await;
                tracing::info!(timeout = ?policy.timeout, "draining: no longer accepting; finishing requests in flight");
                let _ = switches.stop_proxy.send(true);
                return;
            }
            Exit::HandOff => {
                let Some(path) = upgrade_socket.clone() else {
                    tracing::warn!(
                        "SIGQUIT ignored: no --upgrade-socket to hand the listeners over on"
                    );
                    continue;
                };
                let sockets: Vec<(SocketAddr, TcpListener)> = kept
                    .iter()
                    .filter_map(|(a, l)| l.try_clone().ok().map(|l| (*a, l)))
                    .collect();
                let sent = tokio::task::spawn_blocking(move || {
                    let refs: Vec<(SocketAddr, &TcpListener)> =
                        sockets.iter().map(|(a, l)| (*a, l)).collect();
                    upgrade::send_listeners(&path, &refs)
                })
                .await;
                match sent {
                    Ok(Ok(())) => {
                        gateway.begin_draining();
                        tracing::info!("listeners handed over; finishing requests in flight");
                        let _ = switches.stop_proxy.send(true);
                        let _ = switches.stop_admin.send(true);
                        return;
                    }
                    Ok(Err(error)) => tracing::error!(%error, "hand-off failed; still serving"),
                    Err(error) => tracing::error!(%error, "hand-off panicked; still serving"),
                }
            }
        }
    }
}

async fn next_signal() -> Exit {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut quit)) =
        (signal(SignalKind::terminate()), signal(SignalKind::quit()))
    else {
        let _ = tokio::signal::ctrl_c().await;
        return Exit::Drain;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Exit::Drain,
        _ = term.recv() => Exit::Drain,
        _ = quit.recv() => Exit::HandOff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More connections at once than the standard library's backlog of 128, none accepted yet:
    /// the kernel must complete and queue every handshake instead of dropping the surplus.
    #[tokio::test]
    async fn a_burst_of_connections_is_queued_while_no_worker_accepts() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), "--listen").unwrap();
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
