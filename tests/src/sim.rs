//! A simulated data plane: a raw discovery-stream client driven by the test, so tests can see
//! exactly what the control plane sends (full or delta) and can ACK or NACK at will. Many fit in
//! one process, which is how fleet-scale behaviour is exercised.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, anyhow};
use gateway_proto::v1::discovery_service_client::DiscoveryServiceClient;
use gateway_proto::v1::{
    Ack, DataPlaneMessage, FieldViolation, Hello, Nack, Snapshot, control_plane_message,
    data_plane_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

pub struct SimDataPlane {
    node_id: String,
    out: mpsc::Sender<DataPlaneMessage>,
    inbound: Streaming<gateway_proto::v1::ControlPlaneMessage>,
}

impl SimDataPlane {
    /// Opens a stream and says Hello, holding `held` (version, hash) if given.
    pub async fn connect(
        control_plane: SocketAddr,
        node_id: &str,
        held: Option<(u64, String)>,
    ) -> anyhow::Result<Self> {
        let mut client = DiscoveryServiceClient::connect(format!("http://{control_plane}"))
            .await
            .context("connecting to the discovery service")?
            .max_decoding_message_size(64 * 1024 * 1024);
        let (out, rx) = mpsc::channel(8);
        let (applied_version, applied_hash) = held.unwrap_or_default();
        let hello = Hello {
            node_id: node_id.to_owned(),
            build_version: "sim".into(),
            applied_version,
            applied_hash,
            ..Default::default()
        };
        out.send(message(data_plane_message::Kind::Hello(hello)))
            .await?;
        let inbound = client
            .stream(ReceiverStream::new(rx))
            .await
            .context("opening the discovery stream")?
            .into_inner();
        Ok(SimDataPlane {
            node_id: node_id.to_owned(),
            out,
            inbound,
        })
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The next snapshot, or an error if none arrives within `within`.
    pub async fn next_snapshot(&mut self, within: Duration) -> anyhow::Result<Snapshot> {
        let received = tokio::time::timeout(within, self.inbound.message())
            .await
            .map_err(|_| anyhow!("no snapshot within {within:?}"))??
            .ok_or_else(|| anyhow!("the control plane closed the stream"))?;
        match received.kind {
            Some(control_plane_message::Kind::Snapshot(snapshot)) => Ok(snapshot),
            None => Err(anyhow!("an empty message")),
        }
    }

    pub async fn ack(&self, snapshot: &Snapshot) -> anyhow::Result<()> {
        let ack = Ack {
            version: snapshot.version,
            nonce: snapshot.nonce.clone(),
            hash: snapshot.hash.clone(),
        };
        Ok(self
            .out
            .send(message(data_plane_message::Kind::Ack(ack)))
            .await?)
    }

    pub async fn nack(
        &self,
        snapshot: &Snapshot,
        errors: Vec<FieldViolation>,
    ) -> anyhow::Result<()> {
        let nack = Nack {
            version: snapshot.version,
            nonce: snapshot.nonce.clone(),
            errors,
        };
        Ok(self
            .out
            .send(message(data_plane_message::Kind::Nack(nack)))
            .await?)
    }
}

fn message(kind: data_plane_message::Kind) -> DataPlaneMessage {
    DataPlaneMessage { kind: Some(kind) }
}
