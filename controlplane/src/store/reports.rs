//! Health and traffic reports from data planes: the latest of each per data plane.

use gateway_proto::v1::{HealthReport, ObservedTargetHealth, TargetHealth, TrafficReport};
use sqlx::Row;

use super::{Store, now_ms, parse_spec};
use crate::error::ApiError;

impl Store {
    /// Replaces everything `node_id` said before about target health.
    #[tracing::instrument(name = "store.record_health", skip_all)]
    pub async fn record_health(
        &self,
        node_id: &str,
        report: &HealthReport,
    ) -> Result<(), ApiError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM target_health WHERE node_id = $1")
            .bind(node_id)
            .execute(&mut *tx)
            .await?;
        for target in &report.targets {
            sqlx::query(
                "INSERT INTO target_health (node_id, upstream, address, healthy, ejected, reason, since) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (node_id, upstream, address) DO NOTHING",
            )
            .bind(node_id)
            .bind(&target.upstream)
            .bind(&target.address)
            .bind(i64::from(target.healthy))
            .bind(i64::from(target.ejected))
            .bind(&target.reason)
            .bind(&target.since)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every data plane's view of `upstream`'s targets, ordered by address then data plane.
    #[tracing::instrument(name = "store.upstream_health", skip_all)]
    pub async fn upstream_health(
        &self,
        upstream: &str,
    ) -> Result<Vec<ObservedTargetHealth>, ApiError> {
        let rows = sqlx::query(
            "SELECT node_id, address, healthy, ejected, reason, since FROM target_health \
             WHERE upstream = $1 ORDER BY address, node_id",
        )
        .bind(upstream)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ObservedTargetHealth {
                    node_id: row.try_get(0)?,
                    health: Some(TargetHealth {
                        upstream: upstream.to_string(),
                        address: row.try_get(1)?,
                        healthy: row.try_get::<i64, _>(2)? == 1,
                        ejected: row.try_get::<i64, _>(3)? == 1,
                        reason: row.try_get(4)?,
                        since: row.try_get(5)?,
                    }),
                })
            })
            .collect()
    }

    #[tracing::instrument(name = "store.record_traffic", skip_all)]
    pub async fn record_traffic(
        &self,
        node_id: &str,
        report: &TrafficReport,
    ) -> Result<(), ApiError> {
        let json = serde_json::to_string(report)
            .map_err(|e| ApiError::Internal(format!("encoding a traffic report: {e}")))?;
        sqlx::query(
            "INSERT INTO dataplane_traffic (node_id, reported_at_ms, report) VALUES ($1, $2, $3) \
             ON CONFLICT (node_id) DO UPDATE SET reported_at_ms = excluded.reported_at_ms, report = excluded.report",
        )
        .bind(node_id)
        .bind(now_ms())
        .bind(json)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The latest traffic report of each data plane that reported within `max_age_ms`, with
    /// when it arrived.
    #[tracing::instrument(name = "store.recent_traffic", skip_all)]
    pub async fn recent_traffic(
        &self,
        max_age_ms: i64,
    ) -> Result<Vec<(i64, TrafficReport)>, ApiError> {
        let rows = sqlx::query(
            "SELECT reported_at_ms, report FROM dataplane_traffic WHERE reported_at_ms >= $1",
        )
        .bind(now_ms() - max_age_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, parse_spec(&row.try_get::<String, _>(1)?)?)))
            .collect()
    }
}
