//! The audit log: one row per change, written by the transaction that makes the change, so a
//! committed change always has its row and a rolled-back one never does.

use gateway_proto::v1::{AuditEntry, ConfigChange};
use sqlx::{Any, Row, Transaction};

use super::{Store, parse_spec, rfc3339, to_i64, to_u64};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::page::{Page, PageRequest};

/// Who asks for a change and through which API operation (`CreateRoute`, `Apply`, …): the
/// version it produces and its audit row name them.
#[derive(Debug, Clone)]
pub struct Author {
    pub actor: String,
    pub operation: String,
}

impl Author {
    pub fn new(principal: &Principal, operation: impl Into<String>) -> Self {
        Author {
            actor: principal.name.clone(),
            operation: operation.into(),
        }
    }
}

/// Writes the audit row of a change inside its transaction.
pub(super) async fn record(
    tx: &mut Transaction<'static, Any>,
    author: &Author,
    changes: &[ConfigChange],
    version: u64,
    at_ms: i64,
) -> Result<(), ApiError> {
    let changes = serde_json::to_string(changes)
        .map_err(|e| ApiError::Internal(format!("encoding changes: {e}")))?;
    sqlx::query(
        "INSERT INTO audit_log (at_ms, actor, operation, changes, version) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(at_ms)
    .bind(&author.actor)
    .bind(&author.operation)
    .bind(changes)
    .bind(to_i64(version))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Audit entries newest first, optionally only those of `actor`.
    #[tracing::instrument(name = "store.audit", skip_all)]
    pub async fn audit(
        &self,
        page: &PageRequest,
        actor: Option<&str>,
    ) -> Result<Page<AuditEntry>, ApiError> {
        let before = match &page.after {
            None => i64::MAX,
            Some(id) => id
                .parse::<i64>()
                .map_err(|_| ApiError::BadRequest("page_token: malformed".into()))?,
        };
        let rows = sqlx::query(
            "SELECT id, at_ms, actor, operation, changes, version FROM audit_log \
             WHERE id < $1 AND ($2 = '' OR actor = $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(before)
        .bind(actor.unwrap_or_default())
        .bind(page.fetch())
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: to_u64(row.try_get(0)?),
                    time: rfc3339(row.try_get(1)?),
                    actor: row.try_get(2)?,
                    operation: row.try_get(3)?,
                    changes: parse_spec(&row.try_get::<String, _>(4)?)?,
                    version: to_u64(row.try_get(5)?),
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(page.finish(items, |entry| entry.id.to_string()))
    }
}
