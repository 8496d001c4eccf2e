//! Private keys are sealed in every row that holds them: `certificates.spec` and the whole
//! configs in `config_versions.config`. The store seals on write and opens on read, so everything
//! above it (validation, ETags, snapshots) sees plain PEM and nothing below it does.
//!
//! Without a key-encryption key (Postgres started without `--secrets-key-file`), a private key
//! cannot be written and a sealed one cannot be read: both are clear errors naming the flag.
//! Rows written in plain text by an older version are sealed at start-up by
//! [`Store::seal_plaintext_rows`], so no plain key remains once a control plane ran with a key.

use std::sync::Arc;

use gateway_proto::kind::{Kind, resource_ref};
use gateway_proto::v1::{Certificate, Config, FieldViolation};
use sqlx::Row;

use super::{Store, parse_spec};
use crate::error::ApiError;
use crate::secrets::{KeyEncryptionKey, is_sealed};

/// Text every PEM private key contains (`BEGIN PRIVATE KEY`, `BEGIN EC PRIVATE KEY`, …) and no
/// sealed value does: finds the rows an older version wrote in plain text.
const PLAIN_KEY_MARKER: &str = "PRIVATE KEY-----";

/// Seals and opens private keys with the store's key-encryption key, if it has one.
#[derive(Clone, Default)]
pub struct Sealer(Option<Arc<KeyEncryptionKey>>);

impl Sealer {
    pub fn new(key: Option<KeyEncryptionKey>) -> Self {
        Sealer(key.map(Arc::new))
    }

    /// `certificate` as stored: its private key sealed.
    pub(super) fn seal_certificate(
        &self,
        certificate: &Certificate,
    ) -> Result<Certificate, ApiError> {
        let mut sealed = certificate.clone();
        if sealed.private_key_pem.is_empty() || is_sealed(&sealed.private_key_pem) {
            return Ok(sealed);
        }
        let owner = resource_ref(Kind::Certificate, &certificate.name);
        let Some(key) = &self.0 else {
            return Err(ApiError::Invalid(vec![FieldViolation {
                resource: owner,
                field: "private_key_pem".into(),
                reason: "cannot be stored: this control plane has no key-encryption key for private keys; start it with --secrets-key-file (GATEWAY_SECRETS_KEY_FILE) or GATEWAY_SECRETS_KEY".into(),
            }]));
        };
        sealed.private_key_pem = key
            .seal(&owner, &certificate.private_key_pem)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(sealed)
    }

    /// Opens the private key of a stored certificate in place; a plain (older) key is kept.
    pub(super) fn open_certificate(&self, certificate: &mut Certificate) -> Result<(), ApiError> {
        if !is_sealed(&certificate.private_key_pem) {
            return Ok(());
        }
        let owner = resource_ref(Kind::Certificate, &certificate.name);
        let Some(key) = &self.0 else {
            return Err(ApiError::Internal(format!(
                "the private key of {owner} is encrypted in the store, and this control plane has no key-encryption key: start it with --secrets-key-file (GATEWAY_SECRETS_KEY_FILE) or GATEWAY_SECRETS_KEY"
            )));
        };
        certificate.private_key_pem = key
            .open(&owner, &certificate.private_key_pem)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(())
    }

    /// `config` as JSON for `config_versions`, every private key sealed. Only the certificates
    /// are copied (sealed), never the whole config: it is put back as it was.
    pub(super) fn config_json(&self, config: &mut Config) -> Result<String, ApiError> {
        let sealed = config
            .certificates
            .iter()
            .map(|certificate| self.seal_certificate(certificate))
            .collect::<Result<Vec<_>, _>>()?;
        let plain = std::mem::replace(&mut config.certificates, sealed);
        let json = serde_json::to_string(&*config);
        config.certificates = plain;
        json.map_err(|e| ApiError::Internal(format!("encoding config: {e}")))
    }

    /// Reads a config from `config_versions`, its private keys opened.
    pub(super) fn open_config(&self, text: &str) -> Result<Config, ApiError> {
        let mut config: Config = parse_spec(text)?;
        for certificate in &mut config.certificates {
            self.open_certificate(certificate)?;
        }
        Ok(config)
    }
}

impl Store {
    /// Seals the private keys an older version stored in plain text, in one transaction that
    /// holds the writers' lock (`config_head`). Without a key there is nothing to seal with;
    /// with a wrong key, the first sealed certificate that does not open stops the start.
    pub(super) async fn seal_plaintext_rows(&self) -> Result<(), ApiError> {
        if self.sealer.0.is_none() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE config_head SET version = version WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query("SELECT name, spec FROM certificates")
            .fetch_all(&mut *tx)
            .await?;
        let mut sealed_rows = 0usize;
        for row in &rows {
            let name: String = row.try_get(0)?;
            let mut certificate: Certificate = parse_spec(&row.try_get::<String, _>(1)?)?;
            if is_sealed(&certificate.private_key_pem) {
                // Proves the key before the control plane serves anything.
                self.sealer.open_certificate(&mut certificate)?;
                continue;
            }
            let spec = serde_json::to_string(&self.sealer.seal_certificate(&certificate)?)
                .map_err(|e| ApiError::Internal(format!("encoding certificate: {e}")))?;
            sqlx::query("UPDATE certificates SET spec = $1 WHERE name = $2")
                .bind(spec)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            sealed_rows += 1;
        }
        let versions = sqlx::query(&format!(
            "SELECT version, config FROM config_versions WHERE config LIKE '%{PLAIN_KEY_MARKER}%'"
        ))
        .fetch_all(&mut *tx)
        .await?;
        for row in &versions {
            let version: i64 = row.try_get(0)?;
            let mut config = self.sealer.open_config(&row.try_get::<String, _>(1)?)?;
            let text = self.sealer.config_json(&mut config)?;
            sqlx::query("UPDATE config_versions SET config = $1 WHERE version = $2")
                .bind(text)
                .bind(version)
                .execute(&mut *tx)
                .await?;
            sealed_rows += 1;
        }
        tx.commit().await?;
        if sealed_rows > 0 {
            tracing::info!(
                rows = sealed_rows,
                "sealed private keys stored in plain text by an older version"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
