//! Zero-downtime binary upgrade: the running data plane hands its listening sockets to a newly
//! started one over a Unix socket (SCM_RIGHTS), as Pingora does, then drains.
//!
//! Sequence (see LIFECYCLE.md):
//! 1. The new process starts with `--upgrade --upgrade-socket PATH`. It gets a table first (from
//!    its cache or a control plane), then listens on PATH for the sockets.
//! 2. The old process gets SIGQUIT, connects to PATH and sends each listening socket with the
//!    address it serves; the new process answers with one byte once it holds them.
//! 3. The new process accepts on the same kernel sockets, so no connection is ever refused; the
//!    old one stops accepting, finishes what it has in flight, and exits.
//!
//! Addresses the new process is configured for but did not receive (a listener change) are bound
//! fresh; received sockets it no longer wants are closed.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};

/// At most this many sockets change hands (proxy, TLS, admin, with room to grow).
const MAX_SOCKETS: usize = 8;
/// Upper bound on the address list that travels with the sockets.
const MAX_MANIFEST: usize = 4096;
/// How long the old process waits for the new one to confirm it holds the sockets.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("cannot reach the new process at {path}: {source}")]
    Connect { path: String, source: io::Error },
    #[error("cannot listen for the running process at {path}: {source}")]
    Listen { path: String, source: io::Error },
    #[error("handing over the sockets failed: {0}")]
    Transfer(#[from] io::Error),
    #[error("the hand-off message is malformed: {0}")]
    Malformed(String),
}

/// A listening socket and the address it was bound for (the `--listen` style flag value).
pub struct Handed {
    pub address: SocketAddr,
    pub listener: TcpListener,
}

/// Old process: sends `listeners` to the new process waiting on `path`, and returns once it has
/// confirmed receiving them. On error nothing changed hands and the caller keeps serving.
pub fn send_listeners(
    path: &Path,
    listeners: &[(SocketAddr, &TcpListener)],
) -> Result<(), UpgradeError> {
    let mut stream = UnixStream::connect(path).map_err(|source| UpgradeError::Connect {
        path: path.display().to_string(),
        source,
    })?;
    stream.set_read_timeout(Some(CONFIRM_TIMEOUT))?;
    let manifest: Vec<String> = listeners
        .iter()
        .map(|(address, _)| address.to_string())
        .collect();
    let manifest = manifest.join("\n");
    let fds: Vec<_> = listeners
        .iter()
        .map(|(_, listener)| listener.as_fd())
        .collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut ancillary = SendAncillaryBuffer::new(&mut space);
    if fds.len() > MAX_SOCKETS || !ancillary.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(UpgradeError::Malformed(format!(
            "{} sockets is more than {MAX_SOCKETS}",
            fds.len()
        )));
    }
    sendmsg(
        &stream,
        &[IoSlice::new(manifest.as_bytes())],
        &mut ancillary,
        SendFlags::empty(),
    )
    .map_err(io::Error::from)?;
    let mut confirmation = [0u8; 1];
    stream.read_exact(&mut confirmation)?;
    Ok(())
}

/// New process: waits on `path` for the running process's sockets (at most `wait`).
pub fn receive_listeners(path: &Path, wait: Duration) -> Result<Vec<Handed>, UpgradeError> {
    let listen_error = |source| UpgradeError::Listen {
        path: path.display().to_string(),
        source,
    };
    // A socket file left by a crashed predecessor would make bind fail.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(listen_error(error)),
    }
    let listener = UnixListener::bind(path).map_err(listen_error)?;
    let result = accept_with_deadline(&listener, wait).and_then(|mut stream| {
        let handed = receive(&stream)?;
        stream.write_all(&[1])?;
        Ok(handed)
    });
    let _ = std::fs::remove_file(path);
    result
}

fn accept_with_deadline(
    listener: &UnixListener,
    wait: Duration,
) -> Result<UnixStream, UpgradeError> {
    listener.set_nonblocking(true)?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() >= deadline {
                    return Err(UpgradeError::Transfer(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no running process handed over its sockets within {wait:?}"),
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => return Err(error.into()),
        }
    }
}

fn receive(stream: &UnixStream) -> Result<Vec<Handed>, UpgradeError> {
    let mut manifest = vec![0u8; MAX_MANIFEST];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut ancillary = RecvAncillaryBuffer::new(&mut space);
    let received = recvmsg(
        stream,
        &mut [IoSliceMut::new(&mut manifest)],
        &mut ancillary,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in ancillary.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    let text = std::str::from_utf8(&manifest[..received.bytes])
        .map_err(|_| UpgradeError::Malformed("the address list is not UTF-8".into()))?;
    let addresses: Vec<&str> = text.lines().collect();
    if addresses.len() != fds.len() {
        return Err(UpgradeError::Malformed(format!(
            "{} addresses but {} sockets",
            addresses.len(),
            fds.len()
        )));
    }
    addresses
        .into_iter()
        .zip(fds)
        .map(|(address, fd)| {
            let address = address
                .parse()
                .map_err(|_| UpgradeError::Malformed(format!("{address:?} is not an address")))?;
            Ok(Handed {
                address,
                listener: TcpListener::from(fd),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_change_hands_and_keep_their_queue() {
        let dir = std::env::temp_dir().join(format!("gw-upgrade-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("upgrade.sock");
        let old = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = old.local_addr().unwrap();
        // A client that connects before the hand-off is accepted by the new owner.
        let early = std::net::TcpStream::connect(address).unwrap();

        let receiver = {
            let path = path.clone();
            std::thread::spawn(move || receive_listeners(&path, Duration::from_secs(5)))
        };
        while !path.exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
        send_listeners(&path, &[(address, &old)]).unwrap();
        drop(old);
        let handed = receiver.join().unwrap().unwrap();
        assert_eq!(handed.len(), 1);
        assert_eq!(handed[0].address, address);
        let (accepted, _) = handed[0].listener.accept().unwrap();
        assert_eq!(accepted.peer_addr().unwrap(), early.local_addr().unwrap());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn nobody_waiting_is_an_error_that_changes_nothing() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let path = std::env::temp_dir().join(format!(
            "gw-upgrade-none-{:016x}.sock",
            rand::random::<u64>()
        ));
        assert!(matches!(
            send_listeners(&path, &[(address, &listener)]),
            Err(UpgradeError::Connect { .. })
        ));
        assert!(listener.local_addr().is_ok());
    }
}
