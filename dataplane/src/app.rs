//! The data plane's shared state and its one way to change: validate once, compile, swap.
//!
//! [`Gateway`] holds the applied config (table plus what it came from) behind one `ArcSwap`, so
//! a request sees a whole config or the previous one, never a mix. Applying runs the CPU work
//! on the blocking pool: a large config never stalls the threads that serve requests.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use gateway_proto::hash::config_hash;
use gateway_proto::v1::{Config, FieldViolation, Snapshot};
use gateway_proto::validate::validate_config;
use http::uri::Authority;
use tokio::task::JoinHandle;

use crate::cache::SnapshotCache;
use crate::dns::{Dns, Lookup, Resolutions, dns_name};
use crate::health::HealthChecks;
use crate::state::CarriedState;
use crate::table::{RouteTable, compile_resolved};
use crate::telemetry::Metrics;

/// Where the applied config came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    ControlPlane,
    /// The on-disk last-known-good cache, loaded at start-up.
    Cache,
}

/// A config in service: its table and its identity.
#[derive(Debug)]
pub struct ActiveConfig {
    pub table: RouteTable,
    pub version: u64,
    pub hash: String,
    pub source: ConfigSource,
    pub applied_at: SystemTime,
    /// The whole snapshot (never a delta): the base of the next delta, and what the cache holds.
    pub snapshot: Arc<Snapshot>,
}

impl ActiveConfig {
    /// Served from the cache without a control plane having confirmed it.
    pub fn is_stale(&self) -> bool {
        self.source == ConfigSource::Cache
    }

    pub fn config(&self) -> &Config {
        static EMPTY: Config = Config {
            upstreams: Vec::new(),
            routes: Vec::new(),
            health_checks: Vec::new(),
            certificates: Vec::new(),
        };
        self.snapshot.config.as_ref().unwrap_or(&EMPTY)
    }
}

#[derive(Debug, Default)]
pub struct Gateway {
    active: ArcSwapOption<ActiveConfig>,
    connected: AtomicBool,
    carried: CarriedState,
    /// Set once the process is leaving: `/readyz` answers 503 from then on.
    draining: AtomicBool,
    health: HealthChecks,
    dns: Dns,
    /// One apply (or DNS refresh) at a time; never taken by requests.
    applying: tokio::sync::Mutex<()>,
    /// Recompiles the config in service when a DNS name's addresses change.
    refresher: OnceLock<OwnedTask>,
    metrics: Metrics,
}

impl Gateway {
    pub fn new() -> Arc<Gateway> {
        Arc::new(Gateway::default())
    }

    /// A gateway resolving DNS targets with `lookup` instead of the system resolver.
    pub fn with_lookup(lookup: Arc<dyn Lookup>) -> Arc<Gateway> {
        Arc::new(Gateway {
            dns: Dns::with_lookup(lookup),
            ..Gateway::default()
        })
    }

    /// The config in service, if any; hold it for the whole request.
    pub fn active(&self) -> Option<Arc<ActiveConfig>> {
        self.active.load_full()
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// State kept across tables: target health for the reports.
    pub fn carried(&self) -> &CarriedState {
        &self.carried
    }

    /// Every counter of this data plane (see [`crate::telemetry`]).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn begin_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }

    /// Checks, validates and compiles `snapshot` (resolving a delta against the config in
    /// service), then puts it in service with one store. On error nothing changes.
    pub async fn apply(
        self: &Arc<Self>,
        snapshot: Snapshot,
        source: ConfigSource,
    ) -> Result<Arc<ActiveConfig>, ApplyError> {
        let _one_at_a_time = self.applying.lock().await;
        let held = self.active();
        let resolutions = self.dns.resolutions();
        let (snapshot, table) = tokio::task::spawn_blocking(move || {
            let snapshot = resolve_delta(snapshot, held.as_deref())?;
            let table = prepare_resolved(&snapshot, &resolutions).map_err(ApplyError::Rejected)?;
            Ok::<_, ApplyError>((snapshot, table))
        })
        .await
        .map_err(|e| {
            ApplyError::Rejected(vec![violation(
                "snapshot",
                "config",
                format!("compiling panicked: {e}"),
            )])
        })??;
        let active = self.install(table, Arc::new(snapshot), source, SystemTime::now());
        self.watch_dns(active.config());
        Ok(active)
    }

    /// Adopts carried state and probes for `table`, then puts it in service.
    fn install(
        &self,
        mut table: RouteTable,
        snapshot: Arc<Snapshot>,
        source: ConfigSource,
        applied_at: SystemTime,
    ) -> Arc<ActiveConfig> {
        self.carried.adopt(&mut table);
        self.metrics.adopt(&mut table);
        // Probes of targets this table drops stop here, before the swap; the old table's
        // last requests may still pick those targets, on their last known health.
        self.health.adopt(&table);
        let active = Arc::new(ActiveConfig {
            table,
            version: snapshot.version,
            hash: snapshot.hash.clone(),
            source,
            applied_at,
            snapshot,
        });
        self.active.store(Some(Arc::clone(&active)));
        active
    }

    /// Watches the config's DNS names; a change of their addresses recompiles the config in
    /// service (see [`crate::dns`]).
    fn watch_dns(self: &Arc<Self>, config: &Config) {
        let names: BTreeSet<String> = config
            .upstreams
            .iter()
            .flat_map(|u| &u.targets)
            .filter_map(|t| t.address.parse::<Authority>().ok())
            .filter_map(|a| dns_name(&a).map(str::to_string))
            .collect();
        if names.is_empty() && self.refresher.get().is_none() {
            return;
        }
        self.dns.watch(names);
        self.refresher.get_or_init(|| {
            let gateway = Arc::downgrade(self);
            let changed = self.dns.changed();
            OwnedTask(tokio::spawn(async move {
                loop {
                    changed.notified().await;
                    let Some(gateway) = gateway.upgrade() else {
                        return;
                    };
                    gateway.refresh_addresses().await;
                }
            }))
        });
    }

    /// Recompiles the config in service with the latest DNS answers: same version, new targets.
    async fn refresh_addresses(&self) {
        let _one_at_a_time = self.applying.lock().await;
        let Some(active) = self.active() else { return };
        let resolutions = self.dns.resolutions();
        let snapshot = Arc::clone(&active.snapshot);
        let compiled = tokio::task::spawn_blocking(move || {
            let empty = Config::default();
            compile_resolved(snapshot.config.as_ref().unwrap_or(&empty), &resolutions)
        })
        .await;
        match compiled {
            Ok(Ok(table)) => {
                self.install(
                    table,
                    Arc::clone(&active.snapshot),
                    active.source,
                    active.applied_at,
                );
                tracing::info!(version = active.version, "targets updated from DNS");
            }
            Ok(Err(errors)) => {
                tracing::warn!(
                    ?errors,
                    "the config in service no longer compiles with the new DNS answers"
                );
            }
            Err(error) => tracing::warn!(%error, "recompiling with new DNS answers panicked"),
        }
    }

    /// Serves the newest cached config that applies, marked stale, until a control plane
    /// answers. Falls back generation by generation; never to an empty table.
    pub async fn restore_from_cache(
        self: &Arc<Self>,
        cache: &SnapshotCache,
    ) -> Option<Arc<ActiveConfig>> {
        let generations = {
            let cache = cache.clone();
            tokio::task::spawn_blocking(move || cache.load_all())
                .await
                .unwrap_or_default()
        };
        for (generation, snapshot) in generations {
            let version = snapshot.version;
            match self.apply(snapshot, ConfigSource::Cache).await {
                Ok(active) => {
                    tracing::info!(
                        version,
                        hash = %active.hash,
                        ?generation,
                        "serving the cached config (stale) until a control plane answers"
                    );
                    return Some(active);
                }
                Err(error) => tracing::warn!(
                    version,
                    ?generation,
                    %error,
                    "the cached config does not apply; trying an older one"
                ),
            }
        }
        None
    }
}

/// A task that ends with its owner.
#[derive(Debug)]
struct OwnedTask(JoinHandle<()>);

impl Drop for OwnedTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a snapshot was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A delta from a config other than the one in service: not an error of the snapshot, the
    /// control plane only needs to hear what this data plane holds.
    #[error("the delta's base (version {version}, hash {hash:?}) is not the config in service")]
    UnknownBase { version: u64, hash: String },
    #[error("{} problem(s): {:?}", .0.len(), .0)]
    Rejected(Vec<FieldViolation>),
}

/// A whole snapshot: `snapshot` itself, or its delta applied to `held`.
pub fn resolve_delta(
    mut snapshot: Snapshot,
    held: Option<&ActiveConfig>,
) -> Result<Snapshot, ApplyError> {
    let Some(delta) = snapshot.delta.take() else {
        return Ok(snapshot);
    };
    let base = held
        .filter(|held| held.version == delta.base_version && held.hash == delta.base_hash)
        .ok_or_else(|| ApplyError::UnknownBase {
            version: delta.base_version,
            hash: delta.base_hash.clone(),
        })?;
    let config = gateway_proto::delta::apply(base.config(), &delta)
        .map_err(|reason| ApplyError::Rejected(vec![violation("snapshot", "delta", reason)]))?;
    snapshot.config = Some(config);
    Ok(snapshot)
}

/// Everything that can reject a snapshot, without touching shared state.
pub fn prepare(snapshot: &Snapshot) -> Result<RouteTable, Vec<FieldViolation>> {
    prepare_resolved(snapshot, &Resolutions::new())
}

/// [`prepare`], DNS targets standing for the addresses in `resolutions`.
pub fn prepare_resolved(
    snapshot: &Snapshot,
    resolutions: &Resolutions,
) -> Result<RouteTable, Vec<FieldViolation>> {
    let empty = Config::default();
    let config = snapshot.config.as_ref().unwrap_or(&empty);
    let actual = config_hash(config);
    if actual != snapshot.hash {
        return Err(vec![violation(
            "snapshot",
            "hash",
            format!(
                "the config hashes to {actual}, not {:?}: it was altered or truncated",
                snapshot.hash
            ),
        )]);
    }
    validate_config(config)?;
    compile_resolved(config, resolutions)
}

fn violation(resource: &str, field: &str, reason: String) -> FieldViolation {
    FieldViolation {
        resource: resource.into(),
        field: field.into(),
        reason,
    }
}
