//! The discovery server: one bidirectional stream per data plane.
//!
//! The data plane opens with `Hello` (who it is, what it holds). The server sends the published
//! snapshot whenever it differs from what the data plane holds — as a delta when this control
//! plane still has the version the data plane holds — and records every ACK and NACK in the
//! registry. A rejected version is not sent again: only a newer version is.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use gateway_proto::v1::Delta;
use gateway_proto::v1::discovery_service_server::DiscoveryService;
use gateway_proto::v1::{
    ControlPlaneMessage, DataPlaneMessage, Hello, Snapshot, control_plane_message,
    data_plane_message,
};
use prost::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::snapshot::{Published, Snapshots};
use crate::store::{HEARTBEAT, Store};

/// Default largest gRPC message either side accepts (`--max-snapshot-bytes`). A snapshot above
/// the limit is refused loudly, never stalled: the data plane keeps its table and the error says
/// how big the config became.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Full snapshots in flight at once (sent and not yet ACKed or NACKed).
const MAX_CONCURRENT_FULL_PUSHES: usize = 8;

/// A data plane that neither ACKs nor NACKs a full push gives its slot back after this long.
const FULL_PUSH_HOLD: Duration = Duration::from_secs(30);

pub struct DiscoveryServer {
    store: Store,
    snapshots: Snapshots,
    full_pushes: Arc<Semaphore>,
    max_snapshot_bytes: usize,
    shutdown: watch::Receiver<bool>,
}

impl DiscoveryServer {
    /// Streams end when `shutdown` turns true, so data planes move to another replica at once
    /// instead of waiting for this process to die.
    pub fn new(
        store: Store,
        snapshots: Snapshots,
        max_snapshot_bytes: usize,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        DiscoveryServer {
            store,
            snapshots,
            full_pushes: Arc::new(Semaphore::new(MAX_CONCURRENT_FULL_PUSHES)),
            max_snapshot_bytes,
            shutdown,
        }
    }
}

type OutStream = Pin<Box<dyn Stream<Item = Result<ControlPlaneMessage, Status>> + Send>>;

#[tonic::async_trait]
impl DiscoveryService for DiscoveryServer {
    type StreamStream = OutStream;

    async fn stream(
        &self,
        request: Request<Streaming<DataPlaneMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let address = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let mut inbound = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.next()).await {
            Ok(Some(Ok(DataPlaneMessage {
                kind: Some(data_plane_message::Kind::Hello(hello)),
            }))) => hello,
            Ok(Some(Err(status))) => return Err(status),
            Ok(_) => {
                return Err(Status::invalid_argument(
                    "the first message on a stream must be Hello",
                ));
            }
            Err(_) => return Err(Status::deadline_exceeded("no Hello within 10 s")),
        };
        if hello.node_id.is_empty() {
            return Err(Status::invalid_argument("Hello.node_id must not be empty"));
        }
        // The registry is for operators; a database outage must not keep config from a data
        // plane, so the snapshot in memory is served even when this write fails.
        if let Err(error) = self.store.dataplane_connected(&hello, &address).await {
            tracing::warn!(node_id = %hello.node_id, %error, "recording the connection failed; serving anyway");
        }
        tracing::info!(node_id = %hello.node_id, %address, applied_version = hello.applied_version, "data plane connected");

        self.snapshots.metrics().dataplane_connected(&hello.node_id);
        let (out, rx) = mpsc::channel(4);
        let session = Session {
            store: self.store.clone(),
            snapshots: self.snapshots.clone(),
            full_pushes: self.full_pushes.clone(),
            max_snapshot_bytes: self.max_snapshot_bytes,
            shutdown: self.shutdown.clone(),
            node_id: hello.node_id.clone(),
            out,
        };
        tokio::spawn(session.run(hello, inbound, self.snapshots.subscribe()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone).
async fn shutting_down(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

struct Session {
    store: Store,
    snapshots: Snapshots,
    full_pushes: Arc<Semaphore>,
    max_snapshot_bytes: usize,
    shutdown: watch::Receiver<bool>,
    node_id: String,
    out: mpsc::Sender<Result<ControlPlaneMessage, Status>>,
}

/// What one stream knows about its data plane.
struct StreamState {
    /// The version and hash the data plane holds (from Hello, then from each ACK).
    held_version: u64,
    held_hash: String,
    /// The newest version offered on this stream; a NACKed version is never offered again.
    offered: u64,
    /// The data plane serves from its disk cache: even when it holds the current content, it
    /// gets a (then empty) delta, so that it learns a control plane confirmed its config.
    stale: bool,
    /// Held from a full push until its ACK or NACK, bounding concurrent full pushes.
    full_push: Option<(OwnedSemaphorePermit, Instant)>,
}

impl Session {
    async fn run(
        self,
        hello: Hello,
        mut inbound: Streaming<DataPlaneMessage>,
        mut snapshots: watch::Receiver<Arc<Published>>,
    ) {
        let mut shutdown = self.shutdown.clone();
        let mut state = StreamState {
            held_version: hello.applied_version,
            held_hash: hello.applied_hash,
            offered: 0,
            stale: hello.stale,
            full_push: None,
        };
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        let published = snapshots.borrow_and_update().clone();
        if !self.offer(&published, &mut state).await {
            return self.close().await;
        }
        loop {
            let open = tokio::select! {
                () = shutting_down(&mut shutdown) => {
                    tracing::info!(node_id = %self.node_id, "closing the stream: this control plane is shutting down");
                    false
                }
                changed = snapshots.changed() => {
                    let published = snapshots.borrow_and_update().clone();
                    changed.is_ok() && self.offer(&published, &mut state).await
                }
                message = inbound.next() => match message {
                    Some(Ok(message)) => {
                        let resync = self.record(message, &mut state).await;
                        let published = snapshots.borrow().clone();
                        !resync || self.offer(&published, &mut state).await
                    }
                    Some(Err(status)) => {
                        tracing::info!(node_id = %self.node_id, %status, "stream error");
                        false
                    }
                    None => false,
                },
                _ = heartbeat.tick() => {
                    if state.full_push.as_ref().is_some_and(|(_, since)| since.elapsed() > FULL_PUSH_HOLD) {
                        state.full_push = None;
                    }
                    if let Err(error) = self.store.dataplane_seen(&self.node_id).await {
                        tracing::warn!(node_id = %self.node_id, %error, "recording heartbeat failed");
                    }
                    true
                }
            };
            if !open {
                break;
            }
        }
        self.close().await;
    }

    /// Sends `published` unless the data plane holds it or was already offered it: as a delta
    /// from what it holds when this control plane still has that version, else whole.
    /// Returns false when the stream is gone.
    async fn offer(&self, published: &Published, state: &mut StreamState) -> bool {
        let holds_it = published.hash == state.held_hash && !state.stale;
        if holds_it || (state.offered != 0 && published.version <= state.offered) {
            return true;
        }
        state.offered = published.version;
        let mut snapshot = Snapshot {
            version: published.version,
            hash: published.hash.clone(),
            nonce: format!("{:016x}", rand::random::<u64>()),
            config: None,
            delta: None,
        };
        match self
            .snapshots
            .base(state.held_version, &state.held_hash)
            .await
        {
            Some(base) => {
                let delta = self.snapshots.delta(&base, published);
                snapshot.delta = Some(Delta {
                    base_version: base.version,
                    base_hash: base.hash.clone(),
                    upserted: Some(delta.0.clone()),
                    removed: delta.1.clone(),
                });
            }
            None => {
                // A full push is the expensive one: bound how many run at once, so a reconnect
                // storm converges without starving everything else.
                if state.full_push.is_none() {
                    let Ok(permit) = self.full_pushes.clone().acquire_owned().await else {
                        return false;
                    };
                    state.full_push = Some((permit, Instant::now()));
                }
                snapshot.config = Some(published.config.clone());
            }
        }
        let delta = snapshot.delta.is_some();
        let message = ControlPlaneMessage {
            kind: Some(control_plane_message::Kind::Snapshot(snapshot)),
        };
        let bytes = message.encoded_len();
        let limit = self.max_snapshot_bytes;
        if bytes > limit {
            tracing::error!(
                node_id = %self.node_id,
                version = published.version,
                bytes,
                limit,
                "snapshot exceeds the gRPC message limit and cannot be sent"
            );
            let status = Status::resource_exhausted(format!(
                "snapshot version {} is {bytes} bytes, above the {limit}-byte message limit (--max-snapshot-bytes)",
                published.version
            ));
            let _ = self.out.send(Err(status)).await;
            return false;
        }
        tracing::debug!(node_id = %self.node_id, version = published.version, bytes, delta, "offering snapshot");
        self.out.send(Ok(message)).await.is_ok()
    }

    /// Records a report. Returns true when the data plane re-announced what it holds and so
    /// needs the current snapshot offered again.
    async fn record(&self, message: DataPlaneMessage, state: &mut StreamState) -> bool {
        let result = match message.kind {
            Some(data_plane_message::Kind::Ack(ack)) => {
                tracing::info!(node_id = %self.node_id, version = ack.version, "data plane applied");
                state.held_version = ack.version;
                state.held_hash.clone_from(&ack.hash);
                state.stale = false;
                state.full_push = None;
                self.snapshots.metrics().acked(&self.node_id, ack.version);
                self.store
                    .dataplane_applied(&self.node_id, ack.version, &ack.hash)
                    .await
            }
            Some(data_plane_message::Kind::Nack(nack)) => {
                tracing::warn!(
                    node_id = %self.node_id,
                    version = nack.version,
                    errors = ?nack.errors,
                    "data plane rejected a snapshot"
                );
                state.full_push = None;
                self.snapshots.metrics().nacked();
                self.store
                    .dataplane_rejected(&self.node_id, nack.version, &nack.errors)
                    .await
            }
            Some(data_plane_message::Kind::Hello(hello)) => {
                tracing::info!(node_id = %self.node_id, holds = hello.applied_version, "data plane resynchronizing");
                state.held_version = hello.applied_version;
                state.held_hash = hello.applied_hash;
                state.stale = hello.stale;
                state.offered = 0;
                return true;
            }
            Some(data_plane_message::Kind::Health(report)) => {
                self.store.record_health(&self.node_id, &report).await
            }
            Some(data_plane_message::Kind::Traffic(report)) => {
                self.store.record_traffic(&self.node_id, &report).await
            }
            None => Ok(()),
        };
        if let Err(error) = result {
            tracing::warn!(node_id = %self.node_id, %error, "recording a data plane report failed");
        }
        false
    }

    async fn close(&self) {
        tracing::info!(node_id = %self.node_id, "data plane disconnected");
        self.snapshots
            .metrics()
            .dataplane_disconnected(&self.node_id);
        if let Err(error) = self.store.dataplane_disconnected(&self.node_id).await {
            tracing::warn!(node_id = %self.node_id, %error, "recording the disconnect failed");
        }
    }
}
