//! The discovery server: one bidirectional stream per data plane.
//!
//! The data plane opens with `Hello` (who it is, what it holds). The server sends the published
//! snapshot whenever it differs from what the data plane holds, and records every ACK and NACK
//! in the registry. A rejected version is not sent again: only a newer version is.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use gateway_proto::v1::discovery_service_server::DiscoveryService;
use gateway_proto::v1::{
    ControlPlaneMessage, DataPlaneMessage, Hello, Snapshot, control_plane_message,
    data_plane_message,
};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::snapshot::{Published, Snapshots};
use crate::store::{HEARTBEAT, Store};

/// Largest gRPC message either side accepts. A snapshot above it is refused loudly, never
/// stalled: the data plane keeps its table and the error says how big the config became.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub struct DiscoveryServer {
    store: Store,
    snapshots: Snapshots,
}

impl DiscoveryServer {
    pub fn new(store: Store, snapshots: Snapshots) -> Self {
        DiscoveryServer { store, snapshots }
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
        self.store
            .dataplane_connected(&hello, &address)
            .await
            .map_err(Status::from)?;
        tracing::info!(node_id = %hello.node_id, %address, applied_version = hello.applied_version, "data plane connected");

        let (out, rx) = mpsc::channel(4);
        let session = Session {
            store: self.store.clone(),
            node_id: hello.node_id.clone(),
            out,
        };
        tokio::spawn(session.run(hello, inbound, self.snapshots.subscribe()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

struct Session {
    store: Store,
    node_id: String,
    out: mpsc::Sender<Result<ControlPlaneMessage, Status>>,
}

impl Session {
    async fn run(
        self,
        hello: Hello,
        mut inbound: Streaming<DataPlaneMessage>,
        mut snapshots: tokio::sync::watch::Receiver<Arc<Published>>,
    ) {
        // The hash of what the data plane holds, and the newest version offered to it.
        let mut held_hash = hello.applied_hash;
        let mut offered = 0u64;
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        let published = snapshots.borrow_and_update().clone();
        if !self.offer(&published, &held_hash, &mut offered).await {
            return self.close().await;
        }
        loop {
            tokio::select! {
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let published = snapshots.borrow_and_update().clone();
                    if !self.offer(&published, &held_hash, &mut offered).await {
                        break;
                    }
                }
                message = inbound.next() => match message {
                    Some(Ok(message)) => self.record(message, &mut held_hash).await,
                    Some(Err(status)) => {
                        tracing::info!(node_id = %self.node_id, %status, "stream error");
                        break;
                    }
                    None => break,
                },
                _ = heartbeat.tick() => {
                    if let Err(error) = self.store.dataplane_seen(&self.node_id).await {
                        tracing::warn!(node_id = %self.node_id, %error, "recording heartbeat failed");
                    }
                }
            }
        }
        self.close().await;
    }

    /// Sends `published` unless the data plane already holds it or was already offered it.
    /// Returns false when the stream is gone.
    async fn offer(&self, published: &Published, held_hash: &str, offered: &mut u64) -> bool {
        if published.hash == held_hash || (published.version <= *offered && *offered != 0) {
            return true;
        }
        *offered = published.version;
        if published.encoded_len > MAX_MESSAGE_BYTES {
            tracing::error!(
                node_id = %self.node_id,
                version = published.version,
                bytes = published.encoded_len,
                limit = MAX_MESSAGE_BYTES,
                "snapshot exceeds the gRPC message limit and cannot be sent"
            );
            let status = Status::resource_exhausted(format!(
                "snapshot version {} is {} bytes, above the {MAX_MESSAGE_BYTES}-byte message limit",
                published.version, published.encoded_len
            ));
            let _ = self.out.send(Err(status)).await;
            return false;
        }
        let snapshot = Snapshot {
            version: published.version,
            hash: published.hash.clone(),
            nonce: format!("{:016x}", rand::random::<u64>()),
            config: Some(published.config.clone()),
        };
        let message = ControlPlaneMessage {
            kind: Some(control_plane_message::Kind::Snapshot(snapshot)),
        };
        self.out.send(Ok(message)).await.is_ok()
    }

    async fn record(&self, message: DataPlaneMessage, held_hash: &mut String) {
        let result = match message.kind {
            Some(data_plane_message::Kind::Ack(ack)) => {
                tracing::info!(node_id = %self.node_id, version = ack.version, "data plane applied");
                held_hash.clone_from(&ack.hash);
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
                self.store
                    .dataplane_rejected(&self.node_id, nack.version, &nack.errors)
                    .await
            }
            Some(data_plane_message::Kind::Hello(_)) | None => Ok(()),
        };
        if let Err(error) = result {
            tracing::warn!(node_id = %self.node_id, %error, "recording a data plane report failed");
        }
    }

    async fn close(&self) {
        tracing::info!(node_id = %self.node_id, "data plane disconnected");
        if let Err(error) = self.store.dataplane_disconnected(&self.node_id).await {
            tracing::warn!(node_id = %self.node_id, %error, "recording the disconnect failed");
        }
    }
}
