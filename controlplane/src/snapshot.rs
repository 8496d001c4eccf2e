//! One immutable snapshot per config version, shared by every discovery stream.
//!
//! The published snapshot only moves forward. It is refreshed right after a local commit, on a
//! Postgres notification from another replica, and by a periodic version check — the backstop for
//! notifications lost while the listener was disconnected.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use gateway_proto::v1::{Config, ResourceRef};
use sqlx::postgres::PgListener;
use tokio::sync::{Mutex, watch};

use crate::error::ApiError;
use crate::store::{NOTIFY_CHANNEL, Store, VersionedConfig};
use crate::telemetry::{Metrics, Trigger};

/// The config at one version, as every data plane receives it.
#[derive(Debug)]
pub struct Published {
    pub version: u64,
    pub hash: String,
    pub config: Config,
}

impl From<VersionedConfig> for Published {
    fn from(v: VersionedConfig) -> Self {
        Published {
            version: v.version,
            hash: v.hash,
            config: v.config,
        }
    }
}

/// Recent versions kept in memory as bases for deltas; older bases are read from the store.
/// Bounded so memory does not grow with history, and shared by every stream.
const RECENT_VERSIONS: usize = 4;

/// The resources to upsert and remove between two versions.
pub type DeltaParts = (Config, Vec<ResourceRef>);

/// A delta and the (base version, target version) it leads between.
type CachedDelta = ((u64, u64), Arc<DeltaParts>);

/// Deltas kept for reuse; a commit makes every data plane on the previous version need the
/// same one, so it is computed once, not once per stream.
const CACHED_DELTAS: usize = 16;

#[derive(Clone)]
pub struct Snapshots {
    store: Store,
    current: Arc<watch::Sender<Arc<Published>>>,
    recent: Arc<std::sync::Mutex<VecDeque<Arc<Published>>>>,
    /// (base version, target version) → delta, most recent last.
    deltas: Arc<std::sync::Mutex<VecDeque<CachedDelta>>>,
    /// Serializes refreshes so two of them never load the same version twice.
    refreshing: Arc<Mutex<()>>,
    metrics: Arc<Metrics>,
}

impl Snapshots {
    pub async fn load(store: Store, metrics: Arc<Metrics>) -> Result<Snapshots, ApiError> {
        let latest = Arc::new(Published::from(store.latest().await?));
        let (current, _) = watch::channel(latest.clone());
        Ok(Snapshots {
            store,
            current: Arc::new(current),
            recent: Arc::new(std::sync::Mutex::new(VecDeque::from([latest]))),
            deltas: Arc::new(std::sync::Mutex::new(VecDeque::new())),
            refreshing: Arc::new(Mutex::new(())),
            metrics,
        })
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Published>> {
        self.current.subscribe()
    }

    pub fn current(&self) -> Arc<Published> {
        self.current.borrow().clone()
    }

    /// Publishes the store's newest version if it is newer than the published one (after a
    /// commit on this replica).
    pub async fn refresh(&self) -> Result<(), ApiError> {
        self.refresh_on(Trigger::Commit).await
    }

    /// Like [`Snapshots::refresh`]; `trigger` says what prompted it, for the metrics.
    pub async fn refresh_on(&self, trigger: Trigger) -> Result<(), ApiError> {
        let _guard = self.refreshing.lock().await;
        let published = self.current().version;
        if self.store.head_version().await? <= published {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let latest = Arc::new(Published::from(self.store.latest().await?));
        let built_in = started.elapsed().as_secs_f64();
        let version = latest.version;
        if version > self.current().version {
            // Before the streams see it, so no ACK can come before the version is awaited.
            let bytes = prost::Message::encoded_len(&latest.config);
            self.metrics.published(version, trigger, built_in, bytes);
        }
        let moved = self.current.send_if_modified(|current| {
            if latest.version > current.version {
                *current = latest.clone();
                true
            } else {
                false
            }
        });
        if moved {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            recent.push_back(latest);
            while recent.len() > RECENT_VERSIONS {
                recent.pop_front();
            }
            tracing::info!(version, "published config version");
        }
        Ok(())
    }

    /// The delta from `base` to `target`, computed once and shared by every stream that needs
    /// it. Computed under the lock on purpose: concurrent streams wait for one diff instead of
    /// each running their own.
    pub fn delta(&self, base: &Published, target: &Published) -> Arc<DeltaParts> {
        let key = (base.version, target.version);
        let mut deltas = self.deltas.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, delta)) = deltas.iter().find(|(k, _)| *k == key) {
            return delta.clone();
        }
        let delta = Arc::new(gateway_proto::delta::diff(&base.config, &target.config));
        deltas.push_back((key, delta.clone()));
        while deltas.len() > CACHED_DELTAS {
            deltas.pop_front();
        }
        delta
    }

    /// The config a data plane says it holds, if this control plane still has that version with
    /// that content: from memory when recent, else from the stored history.
    pub async fn base(&self, version: u64, hash: &str) -> Option<Arc<Published>> {
        if hash.is_empty() {
            return None;
        }
        let in_memory = {
            let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            recent
                .iter()
                .find(|p| p.version == version && p.hash == hash)
                .cloned()
        };
        if in_memory.is_some() {
            return in_memory;
        }
        match self.store.version(version).await {
            Ok(Some(stored)) if stored.hash == hash => {
                Some(Arc::new(Published::from(VersionedConfig {
                    version: stored.version,
                    hash: stored.hash,
                    config: stored.config.unwrap_or_default(),
                })))
            }
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(%error, version, "reading a delta base failed; sending the full snapshot");
                None
            }
        }
    }

    /// Follows commits made by other replicas: LISTEN/NOTIFY when on Postgres, plus polling.
    pub fn spawn_followers(&self, poll_interval: Duration) {
        if let Some(url) = self.store.backend().listen_url() {
            tokio::spawn(listen(self.clone(), url.to_string()));
        }
        let snapshots = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(poll_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let before = snapshots.current().version;
                match snapshots.refresh_on(Trigger::Poll).await {
                    Ok(()) if snapshots.current().version > before => {
                        tracing::info!(
                            version = snapshots.current().version,
                            "caught up by polling"
                        );
                    }
                    Ok(()) => {}
                    Err(error) => tracing::warn!(%error, "polling the config version failed"),
                }
            }
        });
    }
}

async fn listen(snapshots: Snapshots, url: String) {
    loop {
        match PgListener::connect(&url).await {
            Ok(mut listener) => {
                if let Err(error) = listener.listen(NOTIFY_CHANNEL).await {
                    tracing::warn!(%error, "LISTEN failed");
                } else {
                    follow(&snapshots, &mut listener).await;
                }
            }
            Err(error) => tracing::warn!(%error, "cannot open the notification listener"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn follow(snapshots: &Snapshots, listener: &mut PgListener) {
    // Anything committed before LISTEN took effect was never announced to us.
    refresh_logged(snapshots, Trigger::Resync).await;
    loop {
        match listener.try_recv().await {
            Ok(Some(_notification)) => refresh_logged(snapshots, Trigger::Notification).await,
            Ok(None) => {
                tracing::warn!("notification listener reconnected; catching up on missed versions");
                refresh_logged(snapshots, Trigger::Resync).await;
            }
            Err(error) => {
                tracing::warn!(%error, "notification listener failed");
                return;
            }
        }
    }
}

async fn refresh_logged(snapshots: &Snapshots, trigger: Trigger) {
    if let Err(error) = snapshots.refresh_on(trigger).await {
        tracing::warn!(%error, "refreshing the snapshot failed");
    }
}
