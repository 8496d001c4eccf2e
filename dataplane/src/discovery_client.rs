//! The discovery client: one bidirectional `DiscoveryService.Stream` to a control plane.
//!
//! Protocol, per stream: send `Hello` (what we hold and whether it is stale); then for each
//! `Snapshot`: check its hash, validate, compile; on success swap the table in, then `Ack`
//! (an ACK means applied), then write the cache; on failure `Nack` with every violation and keep
//! the old table. A broken stream is retried forever with jittered exponential backoff,
//! rotating through the control-plane addresses; the last table keeps serving meanwhile.
//!
//! The same stream carries reports (see [`crate::report`]): the whole health view after `Hello`
//! and, debounced, after every transition; traffic deltas every few seconds.
//!
//! Runs as its own task and compiles on the blocking pool: it never holds up requests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gateway_proto::v1::discovery_service_client::DiscoveryServiceClient;
use gateway_proto::v1::{
    Ack, ControlPlaneMessage, DataPlaneMessage, Hello, Nack, Snapshot, control_plane_message,
    data_plane_message,
};
use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, sleep_until};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::app::{ApplyError, ConfigSource, Gateway};
use crate::cache::SnapshotCache;
use crate::report::{self, HEALTH_DEBOUNCE, TRAFFIC_INTERVAL, TrafficTaker};

/// Snapshots carry the whole config; 10,000 routes are a few MiB, so leave ample room.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("invalid control-plane address {address:?}: {source}")]
    InvalidAddress {
        address: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("cannot connect: {0}")]
    Connect(#[source] tonic::transport::Error),
    #[error("stream failed: {}", .0.message())]
    Stream(#[source] tonic::Status),
    #[error("the control plane closed the stream")]
    Closed,
    #[error("{0}")]
    Token(String),
    #[error("the control plane refused this data plane's token ({}): {}; set --token-file to a token of role dataplane", .0.code(), .0.message())]
    Refused(#[source] tonic::Status),
}

/// Who this data plane is, as told in `Hello`.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub node_id: String,
    pub labels: BTreeMap<String, String>,
}

/// Where the data plane's bearer token (role `dataplane`) comes from.
#[derive(Debug, Clone, Default)]
pub enum DiscoveryToken {
    /// No token: accepted only by a control plane without auth (local use).
    #[default]
    None,
    Value(String),
    /// Read again before every connection, so a rotated secret is picked up.
    File(std::path::PathBuf),
}

impl DiscoveryToken {
    fn header(
        &self,
    ) -> Result<Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>, DiscoveryError>
    {
        let token = match self {
            DiscoveryToken::None => return Ok(None),
            DiscoveryToken::Value(token) => token.trim().to_string(),
            DiscoveryToken::File(path) => std::fs::read_to_string(path)
                .map_err(|e| {
                    DiscoveryError::Token(format!(
                        "cannot read --token-file {}: {e}",
                        path.display()
                    ))
                })?
                .trim()
                .to_string(),
        };
        format!("Bearer {token}").parse().map(Some).map_err(|_| {
            DiscoveryError::Token("the token contains characters not allowed in a header".into())
        })
    }
}

pub struct DiscoveryClient {
    endpoints: Vec<Endpoint>,
    identity: NodeIdentity,
    gateway: Arc<Gateway>,
    cache: Option<SnapshotCache>,
    traffic_interval: Duration,
    token: DiscoveryToken,
}

impl DiscoveryClient {
    /// Fails on an address that is not a valid URI, so typos surface at start-up.
    pub fn new(
        addresses: &[String],
        identity: NodeIdentity,
        gateway: Arc<Gateway>,
        cache: Option<SnapshotCache>,
    ) -> Result<DiscoveryClient, DiscoveryError> {
        let endpoints = addresses
            .iter()
            .map(|address| {
                Endpoint::from_shared(address.clone())
                    .map(|e| {
                        e.connect_timeout(CONNECT_TIMEOUT)
                            .tcp_nodelay(true)
                            .http2_keep_alive_interval(Duration::from_secs(20))
                            .keep_alive_timeout(Duration::from_secs(10))
                            .keep_alive_while_idle(true)
                    })
                    .map_err(|source| DiscoveryError::InvalidAddress {
                        address: address.clone(),
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DiscoveryClient {
            endpoints,
            identity,
            gateway,
            cache,
            traffic_interval: TRAFFIC_INTERVAL,
            token: DiscoveryToken::None,
        })
    }

    /// The token presented on every stream.
    pub fn with_token(mut self, token: DiscoveryToken) -> DiscoveryClient {
        self.token = token;
        self
    }

    /// How often traffic is reported (tests shorten it).
    pub fn with_traffic_interval(mut self, interval: Duration) -> DiscoveryClient {
        self.traffic_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Keeps a stream to some control plane open, forever.
    pub async fn run(self) {
        let mut backoff = Backoff::default();
        let mut traffic = TrafficTaker::default();
        for endpoint in self.endpoints.iter().cycle() {
            let address = endpoint.uri().to_string();
            let mut applied_any = false;
            let result = self.session(endpoint, &mut applied_any, &mut traffic).await;
            self.gateway.set_connected(false);
            if applied_any {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            match result {
                Ok(()) => {
                    tracing::warn!(control_plane = %address, retry_in = ?delay, "the control plane closed the stream")
                }
                Err(error) => {
                    tracing::warn!(control_plane = %address, retry_in = ?delay, %error, "discovery stream failed")
                }
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// One stream, until it breaks. `applied_any` tells the caller the stream was healthy.
    async fn session(
        &self,
        endpoint: &Endpoint,
        applied_any: &mut bool,
        traffic: &mut TrafficTaker,
    ) -> Result<(), DiscoveryError> {
        let authorization = self.token.header()?;
        let channel = endpoint.connect().await.map_err(DiscoveryError::Connect)?;
        let mut client = client(channel);
        let (outbound, receiver) = mpsc::channel(8);
        // The queue is empty and `receiver` is alive: these cannot fail.
        let _ = outbound.send(self.hello()).await;
        let _ = outbound.send(self.health()).await;
        let mut request = tonic::Request::new(ReceiverStream::new(receiver));
        if let Some(authorization) = authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization);
        }
        let mut inbound = client.stream(request).await.map_err(refused)?.into_inner();
        self.gateway.set_connected(true);
        tracing::info!(control_plane = %endpoint.uri(), "connected to the control plane");
        let changes = self.gateway.carried().changes();
        let mut health_due: Option<Instant> = None;
        let mut traffic_ticks = tokio::time::interval_at(
            Instant::now() + self.traffic_interval,
            self.traffic_interval,
        );
        traffic_ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = inbound.message() => {
                    let Some(message) = message.map_err(DiscoveryError::Stream)? else {
                        return Ok(());
                    };
                    self.handle(message, &outbound, applied_any).await?;
                }
                () = changes.notified(), if health_due.is_none() => {
                    health_due = Some(Instant::now() + HEALTH_DEBOUNCE);
                }
                () = sleep_until(health_due.unwrap_or_else(Instant::now)), if health_due.is_some() => {
                    health_due = None;
                    send(&outbound, self.health()).await?;
                }
                _ = traffic_ticks.tick() => {
                    let report = traffic.take(self.gateway.metrics());
                    send(&outbound, DataPlaneMessage {
                        kind: Some(data_plane_message::Kind::Traffic(report)),
                    })
                    .await?;
                }
            }
        }
    }

    async fn handle(
        &self,
        message: ControlPlaneMessage,
        outbound: &mpsc::Sender<DataPlaneMessage>,
        applied_any: &mut bool,
    ) -> Result<(), DiscoveryError> {
        match message {
            ControlPlaneMessage {
                kind: Some(control_plane_message::Kind::Snapshot(snapshot)),
            } => {
                let (reply, applied) = self.handle_snapshot(snapshot).await;
                send(outbound, reply).await?;
                if let Some(applied) = applied {
                    *applied_any = true;
                    // After the ACK, one write at a time so an older snapshot never lands last.
                    if let Some(cache) = &self.cache {
                        write_cache(cache.clone(), applied).await;
                    }
                }
            }
            ControlPlaneMessage { kind: None } => {
                tracing::debug!("ignoring a control-plane message of an unknown kind");
            }
        }
        Ok(())
    }

    /// The whole health view, replacing whatever the control plane held from this data plane.
    fn health(&self) -> DataPlaneMessage {
        DataPlaneMessage {
            kind: Some(data_plane_message::Kind::Health(report::health_report(
                self.gateway.carried(),
            ))),
        }
    }

    fn hello(&self) -> DataPlaneMessage {
        let active = self.gateway.active();
        let hello = Hello {
            node_id: self.identity.node_id.clone(),
            labels: self.identity.labels.clone(),
            build_version: env!("CARGO_PKG_VERSION").to_string(),
            applied_version: active.as_ref().map_or(0, |a| a.version),
            applied_hash: active.as_ref().map(|a| a.hash.clone()).unwrap_or_default(),
            stale: active.as_ref().is_some_and(|a| a.is_stale()),
        };
        DataPlaneMessage {
            kind: Some(data_plane_message::Kind::Hello(hello)),
        }
    }

    /// Applies one snapshot; returns the reply (ACK, NACK, or Hello when a delta's base is not
    /// what we hold) and, if applied, the whole snapshot to cache.
    async fn handle_snapshot(
        &self,
        snapshot: Snapshot,
    ) -> (DataPlaneMessage, Option<Arc<Snapshot>>) {
        let (version, nonce) = (snapshot.version, snapshot.nonce.clone());
        match self
            .gateway
            .apply(snapshot, ConfigSource::ControlPlane)
            .await
        {
            Ok(active) => {
                tracing::info!(version, hash = %active.hash, "applied config");
                let ack = DataPlaneMessage {
                    kind: Some(data_plane_message::Kind::Ack(Ack {
                        version,
                        nonce,
                        hash: active.hash.clone(),
                    })),
                };
                (ack, Some(Arc::clone(&active.snapshot)))
            }
            Err(error @ ApplyError::UnknownBase { .. }) => {
                tracing::info!(version, %error, "telling the control plane what we hold");
                (self.hello(), None)
            }
            Err(ApplyError::Rejected(errors)) => {
                self.gateway
                    .metrics()
                    .process
                    .config_rejected
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(version, errors = ?errors, "rejected config; the previous one keeps serving");
                let nack = DataPlaneMessage {
                    kind: Some(data_plane_message::Kind::Nack(Nack {
                        version,
                        nonce,
                        errors,
                    })),
                };
                (nack, None)
            }
        }
    }
}

async fn send(
    outbound: &mpsc::Sender<DataPlaneMessage>,
    message: DataPlaneMessage,
) -> Result<(), DiscoveryError> {
    outbound
        .send(message)
        .await
        .map_err(|_| DiscoveryError::Closed)
}

/// An auth failure gets its own message: it needs an operator, not a retry.
fn refused(status: tonic::Status) -> DiscoveryError {
    match status.code() {
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
            DiscoveryError::Refused(status)
        }
        _ => DiscoveryError::Stream(status),
    }
}

fn client(channel: Channel) -> DiscoveryServiceClient<Channel> {
    DiscoveryServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

/// Writes on the blocking pool; a failure costs only the cache, so it is logged, not returned.
async fn write_cache(cache: SnapshotCache, snapshot: Arc<Snapshot>) {
    let version = snapshot.version;
    match tokio::task::spawn_blocking(move || cache.store(&snapshot)).await {
        Ok(Ok(())) => tracing::debug!(version, "cached config"),
        Ok(Err(error)) => tracing::warn!(version, %error, "cannot write the config cache"),
        Err(error) => tracing::warn!(version, %error, "writing the config cache panicked"),
    }
}

/// Exponential backoff with jitter: each delay is drawn from the upper half of the current step,
/// so a fleet that lost its control plane does not reconnect in lockstep.
#[derive(Debug)]
struct Backoff {
    step: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { step: BACKOFF_MIN }
    }
}

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (step * 2).min(BACKOFF_MAX);
        step.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    fn reset(&mut self) {
        self.step = BACKOFF_MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::default();
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] >= BACKOFF_MIN / 2 && delays[0] <= BACKOFF_MIN);
        assert!(delays[9] >= BACKOFF_MAX / 2 && delays[9] <= BACKOFF_MAX);
        backoff.reset();
        assert!(backoff.next_delay() <= BACKOFF_MIN);
    }
}
