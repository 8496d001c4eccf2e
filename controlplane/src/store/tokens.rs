//! API tokens: name, role and the SHA-256 of the secret. The secret itself is never stored.

use gateway_proto::v1::Token;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::audit::{self, Author};
use super::{CREATE, DELETE, Store, now_ms, rfc3339};
use crate::auth::{Principal, Role};
use crate::error::ApiError;

impl Store {
    /// Whether any admin token exists: the end of the local no-token fallback.
    #[tracing::instrument(name = "store.has_admin_token", skip_all)]
    pub async fn has_admin_token(&self) -> Result<bool, ApiError> {
        let row = sqlx::query("SELECT name FROM tokens WHERE role = $1 LIMIT 1")
            .bind(Role::Admin.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// The principal whose token hashes to `sha256`, if any.
    #[tracing::instrument(name = "store.token_by_sha256", skip_all)]
    pub async fn token_by_sha256(&self, sha256: &str) -> Result<Option<Principal>, ApiError> {
        let row = sqlx::query("SELECT name, role FROM tokens WHERE token_sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let role: String = row.try_get(1)?;
        let role = Role::parse(&role)
            .ok_or_else(|| ApiError::Internal(format!("stored token has unknown role {role:?}")))?;
        Ok(Some(Principal {
            name: row.try_get(0)?,
            role,
        }))
    }

    #[tracing::instrument(name = "store.create_token", skip_all)]
    pub async fn create_token(
        &self,
        name: &str,
        role: Role,
        sha256: &str,
        author: &Author,
    ) -> Result<Token, ApiError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let result = sqlx::query(
            "INSERT INTO tokens (name, role, token_sha256, created_at_ms, created_by) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(sha256)
        .bind(now)
        .bind(&author.actor)
        .execute(&mut *tx)
        .await?;
        if result.rows_affected() == 0 {
            return Err(ApiError::TokenExists(name.to_string()));
        }
        audit::record(&mut tx, author, &[token_change(CREATE, name)], 0, now).await?;
        tx.commit().await?;
        Ok(Token {
            name: name.to_string(),
            role: role.as_str().to_string(),
            created_at: rfc3339(now),
            created_by: author.actor.clone(),
        })
    }

    #[tracing::instrument(name = "store.tokens", skip_all)]
    pub async fn tokens(&self) -> Result<Vec<Token>, ApiError> {
        let rows =
            sqlx::query("SELECT name, role, created_at_ms, created_by FROM tokens ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(token_from_row).collect()
    }

    #[tracing::instrument(name = "store.revoke_token", skip_all)]
    pub async fn revoke_token(&self, name: &str, author: &Author) -> Result<(), ApiError> {
        let mut tx = self.pool.begin().await?;
        let result = sqlx::query("DELETE FROM tokens WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if result.rows_affected() == 0 {
            return Err(ApiError::UnknownToken(name.to_string()));
        }
        audit::record(&mut tx, author, &[token_change(DELETE, name)], 0, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Tokens are not config resources; their audit rows name them as kind `token`.
fn token_change(op: &str, name: &str) -> gateway_proto::v1::ConfigChange {
    gateway_proto::v1::ConfigChange {
        op: op.to_string(),
        kind: "token".to_string(),
        name: name.to_string(),
    }
}

fn token_from_row(row: &AnyRow) -> Result<Token, ApiError> {
    Ok(Token {
        name: row.try_get(0)?,
        role: row.try_get(1)?,
        created_at: rfc3339(row.try_get(2)?),
        created_by: row.try_get(3)?,
    })
}
