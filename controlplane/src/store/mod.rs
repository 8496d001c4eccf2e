//! The config store: Postgres for production and several replicas, SQLite as the embedded default.
//!
//! Both backends run the same SQL through sqlx's `Any` driver; only migrations, the connection
//! set-up and change notification differ (see [`backend`]). Invariants:
//! - every change is one transaction that first bumps the single `config_head` row, which both
//!   numbers the version and serializes writers (so validation always sees the latest config);
//! - the whole new config is validated before anything is written, and a change that leaves the
//!   config identical is rolled back instead of producing a version;
//! - each version's full config is stored in `config_versions`, so every replica builds the same
//!   snapshot for the same version.

mod audit;
mod backend;
mod dataplanes;
mod reports;
mod sealing;
mod tokens;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use gateway_proto::hash::config_hash;
use gateway_proto::kind::{Kind, Resource};
use gateway_proto::v1::{
    Certificate, Config, ConfigChange, ConfigVersion, HealthCheckPolicy, Route, Upstream,
};
use gateway_proto::validate::validate_config;
use serde::{Serialize, de::DeserializeOwned};
use sqlx::AnyPool;
use sqlx::{Any, Row, Transaction};

pub use audit::Author;
pub use backend::{Backend, NOTIFY_CHANNEL, OpenError};
pub use dataplanes::HEARTBEAT;
pub use sealing::Sealer;

use crate::error::ApiError;
use crate::page::{Page, PageRequest};

/// The config at one version.
#[derive(Debug, Clone)]
pub struct VersionedConfig {
    pub version: u64,
    pub hash: String,
    pub config: Config,
}

/// What a change did to one resource: `op` is one of these.
pub const CREATE: &str = "create";
pub const UPDATE: &str = "update";
pub const DELETE: &str = "delete";

/// The outcome of [`Store::mutate`]. `changes` is empty when the config was already as asked,
/// in which case no version was created and `version` is the current one.
#[derive(Debug, Clone)]
pub struct Commit {
    pub version: u64,
    pub hash: String,
    pub changes: Vec<ConfigChange>,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    sealer: Sealer,
}

impl Store {
    /// Connects, applies migrations and, for the embedded store, takes the single-writer lock.
    /// `sealer` seals private keys at rest; rows an older version wrote in plain text are
    /// sealed now, and a sealed row the key does not open stops the start.
    #[tracing::instrument(name = "store.open", skip_all)]
    pub async fn open(url: &str, sealer: Sealer) -> Result<Store, OpenError> {
        let (pool, backend) = backend::open(url).await?;
        let store = Store {
            pool,
            backend,
            sealer,
        };
        store
            .seal_plaintext_rows()
            .await
            .map_err(|source| OpenError::Seal {
                target: store.backend.describe(),
                source,
            })?;
        Ok(store)
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Ready means the database answers and the schema is in place.
    #[tracing::instrument(name = "store.ping", skip_all)]
    pub async fn ping(&self) -> Result<(), ApiError> {
        sqlx::query("SELECT version FROM config_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(())
    }

    #[tracing::instrument(name = "store.head_version", skip_all)]
    pub async fn head_version(&self) -> Result<u64, ApiError> {
        let row = sqlx::query("SELECT version FROM config_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(to_u64(row.try_get::<i64, _>(0)?))
    }

    /// The newest version and its config.
    #[tracing::instrument(name = "store.latest", skip_all)]
    pub async fn latest(&self) -> Result<VersionedConfig, ApiError> {
        let row = sqlx::query(
            "SELECT version, hash, config FROM config_versions ORDER BY version DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        match row {
            None => Ok(empty_config()),
            Some(row) => Ok(VersionedConfig {
                version: to_u64(row.try_get::<i64, _>(0)?),
                hash: row.try_get(1)?,
                config: self.sealer.open_config(&row.try_get::<String, _>(2)?)?,
            }),
        }
    }

    /// Versions newest first, without their configs.
    #[tracing::instrument(name = "store.versions", skip_all)]
    pub async fn versions(&self, page: &PageRequest) -> Result<Page<ConfigVersion>, ApiError> {
        let before = match &page.after {
            None => i64::MAX,
            Some(version) => version
                .parse::<i64>()
                .map_err(|_| ApiError::BadRequest("page_token: malformed".into()))?,
        };
        let rows = sqlx::query(
            "SELECT version, hash, created_at_ms, changes, author FROM config_versions \
             WHERE version < $1 ORDER BY version DESC LIMIT $2",
        )
        .bind(before)
        .bind(page.fetch())
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(|row| {
                Ok(ConfigVersion {
                    version: to_u64(row.try_get(0)?),
                    hash: row.try_get(1)?,
                    created_at: rfc3339(row.try_get(2)?),
                    changes: parse_spec(&row.try_get::<String, _>(3)?)?,
                    config: None,
                    author: row.try_get(4)?,
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(page.finish(items, |v| v.version.to_string()))
    }

    /// One version with its whole config, if it exists.
    #[tracing::instrument(name = "store.version", skip_all)]
    pub async fn version(&self, version: u64) -> Result<Option<ConfigVersion>, ApiError> {
        let row = sqlx::query(
            "SELECT version, hash, created_at_ms, changes, config, author FROM config_versions WHERE version = $1",
        )
        .bind(to_i64(version))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(ConfigVersion {
            version: to_u64(row.try_get(0)?),
            hash: row.try_get(1)?,
            created_at: rfc3339(row.try_get(2)?),
            changes: parse_spec(&row.try_get::<String, _>(3)?)?,
            config: Some(self.sealer.open_config(&row.try_get::<String, _>(4)?)?),
            author: row.try_get(5)?,
        }))
    }

    #[tracing::instrument(name = "store.get", skip_all)]
    pub async fn get<R: StoredResource>(&self, name: &str) -> Result<R, ApiError> {
        let sql = format!("SELECT spec FROM {} WHERE name = $1", R::TABLE);
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => R::from_row(&row.try_get::<String, _>(0)?, &self.sealer),
            None => Err(ApiError::not_found(R::KIND, name)),
        }
    }

    /// One page of resources in name order, only those carrying every label in `labels`.
    ///
    /// Rows are read in name order after the page's cursor, a chunk at a time, until the page
    /// (plus one, to know whether more follow) is full: a selective label filter costs more
    /// reads, never more memory.
    #[tracing::instrument(name = "store.list", skip_all)]
    pub async fn list<R: StoredResource>(
        &self,
        page: &PageRequest,
        labels: &BTreeMap<String, String>,
    ) -> Result<Page<R>, ApiError> {
        let sql = format!(
            "SELECT name, spec FROM {} WHERE name > $1 ORDER BY name LIMIT $2",
            R::TABLE
        );
        let chunk = if labels.is_empty() {
            page.fetch()
        } else {
            page.fetch().max(LIST_CHUNK)
        };
        let wanted = usize::try_from(page.fetch()).unwrap_or(usize::MAX);
        // Names are never empty, so "" is before the first.
        let mut after = page.after.clone().unwrap_or_default();
        let mut items: Vec<R> = Vec::new();
        loop {
            let rows = sqlx::query(&sql)
                .bind(&after)
                .bind(chunk)
                .fetch_all(&self.pool)
                .await?;
            for row in &rows {
                let item = R::from_row(&row.try_get::<String, _>(1)?, &self.sealer)?;
                if has_labels(item.labels(), labels) {
                    items.push(item);
                    if items.len() == wanted {
                        return Ok(page.finish(items, |r| r.name().to_owned()));
                    }
                }
            }
            match rows.last() {
                Some(last) if i64::try_from(rows.len()).unwrap_or(i64::MAX) == chunk => {
                    after = last.try_get(0)?;
                }
                _ => return Ok(page.finish(items, |r| r.name().to_owned())),
            }
        }
    }

    /// Applies `change` to the current config in one transaction: all or nothing.
    ///
    /// The closure sees the latest committed config (writers are serialized), may refuse with an
    /// error, and the result is validated as a whole before any row is written. The new version
    /// names `author`, and the audit row of the change is written in the same transaction.
    #[tracing::instrument(name = "store.mutate", skip_all)]
    pub async fn mutate(
        &self,
        author: &Author,
        change: impl FnOnce(&mut Config) -> Result<(), ApiError>,
    ) -> Result<Commit, ApiError> {
        self.write(author, true, change).await
    }

    /// [`Store::mutate`] without the commit: the same checks, and the version and changes the
    /// change would produce, after which everything is rolled back (no version is used up).
    #[tracing::instrument(name = "store.dry_run", skip_all)]
    pub async fn dry_run(
        &self,
        author: &Author,
        change: impl FnOnce(&mut Config) -> Result<(), ApiError>,
    ) -> Result<Commit, ApiError> {
        self.write(author, false, change).await
    }

    async fn write(
        &self,
        author: &Author,
        commit: bool,
        change: impl FnOnce(&mut Config) -> Result<(), ApiError>,
    ) -> Result<Commit, ApiError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE config_head SET version = version + 1 WHERE id = 1 RETURNING version",
        )
        .fetch_one(&mut *tx)
        .await?;
        let version = to_u64(row.try_get::<i64, _>(0)?);

        let old = load_config(&mut tx, &self.sealer).await?;
        let mut new = old.clone();
        change(&mut new)?;
        new.canonicalize();
        validate_config(&new).map_err(ApiError::Invalid)?;

        let mut changes = Vec::new();
        let sealer = &self.sealer;
        write_diff::<Certificate>(&mut tx, &old, &new, version, sealer, &mut changes).await?;
        write_diff::<HealthCheckPolicy>(&mut tx, &old, &new, version, sealer, &mut changes).await?;
        write_diff::<Upstream>(&mut tx, &old, &new, version, sealer, &mut changes).await?;
        write_diff::<Route>(&mut tx, &old, &new, version, sealer, &mut changes).await?;
        if changes.is_empty() {
            tx.rollback().await?;
            let current = self.latest().await?;
            return Ok(Commit {
                version: current.version,
                hash: current.hash,
                changes,
            });
        }

        let hash = config_hash(&new);
        let config_json = self.sealer.config_json(&mut new)?;
        let changes_json = serde_json::to_string(&changes)
            .map_err(|e| ApiError::Internal(format!("encoding changes: {e}")))?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO config_versions (version, created_at_ms, hash, changes, config, author) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(to_i64(version))
        .bind(now)
        .bind(&hash)
        .bind(changes_json)
        .bind(config_json)
        .bind(&author.actor)
        .execute(&mut *tx)
        .await?;
        audit::record(&mut tx, author, &changes, version, now).await?;
        if !commit {
            tx.rollback().await?;
            return Ok(Commit {
                version,
                hash,
                changes,
            });
        }
        self.backend.notify_in(&mut tx, version).await?;
        tx.commit().await?;
        Ok(Commit {
            version,
            hash,
            changes,
        })
    }
}

/// A resource kind with its own table. `reference` is the one foreign key a kind has.
pub trait StoredResource: Resource + Serialize + DeserializeOwned + Send + Sync + Unpin {
    const TABLE: &'static str;
    /// The name of its lists and of their page tokens (its REST collection).
    const PLURAL: &'static str;
    const REFERENCE_COLUMN: Option<&'static str>;
    fn reference(&self) -> Option<&str>;
    fn labels(&self) -> &BTreeMap<String, String>;

    /// The row's `spec`: the resource as JSON, secrets sealed.
    fn to_row(&self, _sealer: &Sealer) -> Result<String, ApiError> {
        serde_json::to_string(self)
            .map_err(|e| ApiError::Internal(format!("encoding {}: {e}", Self::KIND)))
    }

    /// The resource from its row's `spec`, secrets opened.
    fn from_row(spec: &str, _sealer: &Sealer) -> Result<Self, ApiError> {
        parse_spec(spec)
    }
}

impl StoredResource for HealthCheckPolicy {
    const TABLE: &'static str = "health_checks";
    const PLURAL: &'static str = "health-checks";
    const REFERENCE_COLUMN: Option<&'static str> = None;
    fn reference(&self) -> Option<&str> {
        None
    }
    fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
}

/// Certificates are stored with their private keys (the data planes need them), sealed (see
/// [`sealing`]); the service layer never returns the keys.
impl StoredResource for Certificate {
    const TABLE: &'static str = "certificates";
    const PLURAL: &'static str = "certificates";
    const REFERENCE_COLUMN: Option<&'static str> = None;
    fn reference(&self) -> Option<&str> {
        None
    }
    fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
    fn to_row(&self, sealer: &Sealer) -> Result<String, ApiError> {
        serde_json::to_string(&sealer.seal_certificate(self)?)
            .map_err(|e| ApiError::Internal(format!("encoding certificate: {e}")))
    }
    fn from_row(spec: &str, sealer: &Sealer) -> Result<Self, ApiError> {
        let mut certificate: Certificate = parse_spec(spec)?;
        sealer.open_certificate(&mut certificate)?;
        Ok(certificate)
    }
}

impl StoredResource for Upstream {
    const TABLE: &'static str = "upstreams";
    const PLURAL: &'static str = "upstreams";
    const REFERENCE_COLUMN: Option<&'static str> = Some("health_check");
    fn reference(&self) -> Option<&str> {
        Some(self.health_check.as_str()).filter(|h| !h.is_empty())
    }
    fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
}

impl StoredResource for Route {
    const TABLE: &'static str = "routes";
    const PLURAL: &'static str = "routes";
    const REFERENCE_COLUMN: Option<&'static str> = Some("upstream");
    fn reference(&self) -> Option<&str> {
        Some(self.upstream.as_str())
    }
    fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
}

/// Whether `labels` holds every `wanted` key with its value (an empty selector matches all).
pub fn has_labels(labels: &BTreeMap<String, String>, wanted: &BTreeMap<String, String>) -> bool {
    wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Rows read per query while filtering a list by labels.
const LIST_CHUNK: i64 = 500;

async fn load_config(
    tx: &mut Transaction<'static, Any>,
    sealer: &Sealer,
) -> Result<Config, ApiError> {
    Ok(Config {
        certificates: load_all(tx, sealer).await?,
        health_checks: load_all(tx, sealer).await?,
        upstreams: load_all(tx, sealer).await?,
        routes: load_all(tx, sealer).await?,
    })
}

async fn load_all<R: StoredResource>(
    tx: &mut Transaction<'static, Any>,
    sealer: &Sealer,
) -> Result<Vec<R>, ApiError> {
    let sql = format!("SELECT spec FROM {} ORDER BY name", R::TABLE);
    let rows = sqlx::query(&sql).fetch_all(&mut **tx).await?;
    rows.iter()
        .map(|row| R::from_row(&row.try_get::<String, _>(0)?, sealer))
        .collect()
}

/// Writes the rows of kind `R` that differ between `old` and `new`, recording each change.
async fn write_diff<R: StoredResource>(
    tx: &mut Transaction<'static, Any>,
    old: &Config,
    new: &Config,
    version: u64,
    sealer: &Sealer,
    changes: &mut Vec<ConfigChange>,
) -> Result<(), ApiError> {
    let old_by_name: BTreeMap<&str, &R> = R::list(old).iter().map(|r| (r.name(), r)).collect();
    let new_by_name: BTreeMap<&str, &R> = R::list(new).iter().map(|r| (r.name(), r)).collect();
    let delete = format!("DELETE FROM {} WHERE name = $1", R::TABLE);
    for name in old_by_name.keys().filter(|n| !new_by_name.contains_key(*n)) {
        sqlx::query(&delete).bind(*name).execute(&mut **tx).await?;
        changes.push(change(DELETE, R::KIND, name));
    }
    let upsert = match R::REFERENCE_COLUMN {
        Some(column) => format!(
            "INSERT INTO {t} (name, spec, updated_version, {column}) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, \
             updated_version = excluded.updated_version, {column} = excluded.{column}",
            t = R::TABLE
        ),
        None => format!(
            "INSERT INTO {t} (name, spec, updated_version) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated_version = excluded.updated_version",
            t = R::TABLE
        ),
    };
    for (name, resource) in &new_by_name {
        let op = match old_by_name.get(name) {
            Some(previous) if previous == resource => continue,
            Some(_) => UPDATE,
            None => CREATE,
        };
        let spec = resource.to_row(sealer)?;
        let mut query = sqlx::query(&upsert)
            .bind(*name)
            .bind(spec)
            .bind(to_i64(version));
        if R::REFERENCE_COLUMN.is_some() {
            query = query.bind(resource.reference().map(str::to_string));
        }
        query.execute(&mut **tx).await?;
        changes.push(change(op, R::KIND, name));
    }
    Ok(())
}

fn change(op: &str, kind: Kind, name: &str) -> ConfigChange {
    ConfigChange {
        op: op.to_string(),
        kind: kind.as_str().to_string(),
        name: name.to_string(),
    }
}

fn parse_spec<R: DeserializeOwned>(spec: &str) -> Result<R, ApiError> {
    serde_json::from_str(spec)
        .map_err(|e| ApiError::Internal(format!("stored resource is unreadable: {e}")))
}

fn empty_config() -> VersionedConfig {
    let config = Config::default();
    VersionedConfig {
        version: 0,
        hash: config_hash(&config),
        config,
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn rfc3339(ms: i64) -> String {
    let time = UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(time).to_string()
}

/// Versions are BIGINT in SQL and never negative.
fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
pub(crate) mod tests;
