//! The registry of data planes: who connected, what each applied or rejected, when it was last
//! seen. Kept in the store so that every control-plane replica shows the whole fleet.

use std::collections::BTreeMap;

use gateway_proto::v1::{DataPlane, FieldViolation, Hello};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, now_ms, rfc3339, to_i64, to_u64};
use crate::error::ApiError;

/// A data plane whose replica stopped refreshing `last_seen` this long ago is shown disconnected,
/// even if that replica died before it could say so.
const SEEN_WITHIN_MS: i64 = 30_000;

/// How often a connected stream refreshes `last_seen`; well under [`SEEN_WITHIN_MS`].
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(10);

impl Store {
    #[tracing::instrument(name = "store.dataplane_connected", skip_all)]
    pub async fn dataplane_connected(&self, hello: &Hello, address: &str) -> Result<(), ApiError> {
        let now = now_ms();
        let labels = serde_json::to_string(&hello.labels).unwrap_or_else(|_| "{}".into());
        sqlx::query(
            "INSERT INTO dataplanes (node_id, labels, build_version, address, connected, connected_since_ms, \
             last_seen_ms, applied_version, applied_hash, rejected_version, rejection_errors, stale) \
             VALUES ($1, $2, $3, $4, 1, $5, $5, $6, $7, 0, '[]', $8) \
             ON CONFLICT (node_id) DO UPDATE SET labels = excluded.labels, build_version = excluded.build_version, \
             address = excluded.address, connected = 1, connected_since_ms = excluded.connected_since_ms, \
             last_seen_ms = excluded.last_seen_ms, applied_version = excluded.applied_version, \
             applied_hash = excluded.applied_hash, stale = excluded.stale",
        )
        .bind(&hello.node_id)
        .bind(labels)
        .bind(&hello.build_version)
        .bind(address)
        .bind(now)
        .bind(to_i64(hello.applied_version))
        .bind(&hello.applied_hash)
        .bind(i64::from(hello.stale))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(name = "store.dataplane_applied", skip_all)]
    pub async fn dataplane_applied(
        &self,
        node_id: &str,
        version: u64,
        hash: &str,
    ) -> Result<(), ApiError> {
        sqlx::query(
            "UPDATE dataplanes SET applied_version = $2, applied_hash = $3, stale = 0, last_seen_ms = $4 \
             WHERE node_id = $1",
        )
        .bind(node_id)
        .bind(to_i64(version))
        .bind(hash)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(name = "store.dataplane_rejected", skip_all)]
    pub async fn dataplane_rejected(
        &self,
        node_id: &str,
        version: u64,
        errors: &[FieldViolation],
    ) -> Result<(), ApiError> {
        let errors = serde_json::to_string(errors).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "UPDATE dataplanes SET rejected_version = $2, rejection_errors = $3, last_seen_ms = $4 \
             WHERE node_id = $1",
        )
        .bind(node_id)
        .bind(to_i64(version))
        .bind(errors)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(name = "store.dataplane_seen", skip_all)]
    pub async fn dataplane_seen(&self, node_id: &str) -> Result<(), ApiError> {
        sqlx::query("UPDATE dataplanes SET last_seen_ms = $2, connected = 1 WHERE node_id = $1")
            .bind(node_id)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    #[tracing::instrument(name = "store.dataplane_disconnected", skip_all)]
    pub async fn dataplane_disconnected(&self, node_id: &str) -> Result<(), ApiError> {
        sqlx::query("UPDATE dataplanes SET connected = 0, last_seen_ms = $2 WHERE node_id = $1")
            .bind(node_id)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    #[tracing::instrument(name = "store.dataplanes", skip_all)]
    pub async fn dataplanes(&self) -> Result<Vec<DataPlane>, ApiError> {
        let rows = sqlx::query(
            "SELECT node_id, labels, build_version, address, connected, connected_since_ms, last_seen_ms, \
             applied_version, applied_hash, rejected_version, rejection_errors, stale \
             FROM dataplanes ORDER BY node_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let now = now_ms();
        rows.iter()
            .map(|row| dataplane_from_row(row, now))
            .collect()
    }
}

fn dataplane_from_row(row: &AnyRow, now: i64) -> Result<DataPlane, ApiError> {
    let last_seen: i64 = row.try_get(6)?;
    let labels: BTreeMap<String, String> =
        serde_json::from_str(&row.try_get::<String, _>(1)?).unwrap_or_default();
    let rejection_errors: Vec<FieldViolation> =
        serde_json::from_str(&row.try_get::<String, _>(10)?).unwrap_or_default();
    Ok(DataPlane {
        node_id: row.try_get(0)?,
        labels,
        build_version: row.try_get(2)?,
        address: row.try_get(3)?,
        connected: row.try_get::<i64, _>(4)? == 1 && now - last_seen < SEEN_WITHIN_MS,
        connected_since: rfc3339(row.try_get(5)?),
        last_seen: rfc3339(last_seen),
        applied_version: to_u64(row.try_get(7)?),
        applied_hash: row.try_get(8)?,
        rejected_version: to_u64(row.try_get(9)?),
        rejection_errors,
        stale: row.try_get::<i64, _>(11)? == 1,
    })
}
