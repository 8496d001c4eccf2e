//! Private keys at rest: sealed with a key-encryption key (KEK) before they reach the store.
//!
//! AES-256-GCM (aws-lc-rs, the provider rustls already uses), a fresh random nonce per seal, and
//! the owning resource's name as associated data, so a sealed value copied into another
//! certificate's row does not open. A sealed value reads
//! `enc:v1:<key id>:<hex of nonce ‖ ciphertext ‖ tag>`: the version names the scheme and the key
//! id (the first 4 bytes of the KEK's SHA-256) names the key, so a wrong key is reported as such
//! and a later rotation can tell which rows still need re-sealing. The KEK is 32 random bytes
//! written as 64 hex digits (`openssl rand -hex 32`).

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::digest::{SHA256, digest};

const PREFIX: &str = "enc:v1:";
const KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "{source_name}: the key-encryption key must be {KEY_BYTES} bytes written as {} hex digits (e.g. `openssl rand -hex 32`)",
        KEY_BYTES * 2
    )]
    Malformed { source_name: String },
    #[error("cannot read the key-encryption key file {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the key-encryption key file {path}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the private key of {owner} was sealed with key-encryption key {sealed_with}, but the configured key is {configured} (--secrets-key-file / GATEWAY_SECRETS_KEY_FILE)"
    )]
    WrongKey {
        owner: String,
        sealed_with: String,
        configured: String,
    },
    #[error(
        "the private key of {owner} does not decrypt with key-encryption key {key_id}: the stored value is damaged or was moved from another resource"
    )]
    Damaged { owner: String, key_id: String },
    #[error("the private key of {owner} is sealed in an unknown format")]
    UnknownFormat { owner: String },
    #[error("cannot seal a private key: {0}")]
    Seal(&'static str),
}

/// The key-encryption key.
pub struct KeyEncryptionKey {
    key: RandomizedNonceKey,
    id: String,
}

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEncryptionKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl KeyEncryptionKey {
    /// A key from its hex text; `source_name` says where it came from, for the error.
    pub fn from_hex(text: &str, source_name: &str) -> Result<Self, SecretsError> {
        let malformed = || SecretsError::Malformed {
            source_name: source_name.to_string(),
        };
        let bytes = hex::decode(text.trim()).map_err(|_| malformed())?;
        if bytes.len() != KEY_BYTES {
            return Err(malformed());
        }
        let key = RandomizedNonceKey::new(&AES_256_GCM, &bytes).map_err(|_| malformed())?;
        let id = hex::encode(&digest(&SHA256, &bytes).as_ref()[..4]);
        Ok(KeyEncryptionKey { key, id })
    }

    /// Reads the key from `path`.
    pub fn read(path: &Path) -> Result<Self, SecretsError> {
        let text = fs::read_to_string(path).map_err(|source| SecretsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_hex(&text, &path.display().to_string())
    }

    /// Reads the key from `path`, first creating it (owner-only, 0600) with a random key when
    /// the file does not exist.
    pub fn read_or_create(path: &Path) -> Result<Self, SecretsError> {
        if path.exists() {
            return Self::read(path);
        }
        let create = |source| SecretsError::Create {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(create)?;
        }
        let mut bytes = [0u8; KEY_BYTES];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| SecretsError::Seal("no randomness"))?;
        let text = hex::encode(bytes);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(create)?;
        file.write_all(format!("{text}\n").as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(create)?;
        Self::from_hex(&text, &path.display().to_string())
    }

    /// The key's id, as written in every value it seals.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plaintext`, bound to `owner` (e.g. `certificate/web`).
    pub fn seal(&self, owner: &str, plaintext: &str) -> Result<String, SecretsError> {
        let mut in_out = plaintext.as_bytes().to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(owner.as_bytes()), &mut in_out)
            .map_err(|_| SecretsError::Seal("AES-256-GCM failed"))?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + in_out.len());
        sealed.extend_from_slice(nonce.as_ref());
        sealed.extend_from_slice(&in_out);
        Ok(format!("{PREFIX}{}:{}", self.id, hex::encode(sealed)))
    }

    /// Opens what [`KeyEncryptionKey::seal`] produced for the same `owner`.
    pub fn open(&self, owner: &str, sealed: &str) -> Result<String, SecretsError> {
        let unknown = || SecretsError::UnknownFormat {
            owner: owner.to_string(),
        };
        let (key_id, payload) = sealed
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .ok_or_else(unknown)?;
        if key_id != self.id {
            return Err(SecretsError::WrongKey {
                owner: owner.to_string(),
                sealed_with: key_id.to_string(),
                configured: self.id.clone(),
            });
        }
        let damaged = || SecretsError::Damaged {
            owner: owner.to_string(),
            key_id: self.id.clone(),
        };
        let mut bytes = hex::decode(payload).map_err(|_| damaged())?;
        if bytes.len() < NONCE_LEN {
            return Err(damaged());
        }
        let (nonce, in_out) = bytes.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| damaged())?;
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(owner.as_bytes()), in_out)
            .map_err(|_| damaged())?;
        String::from_utf8(plaintext.to_vec()).map_err(|_| damaged())
    }
}

/// Whether `value` is a sealed secret (of any version), as opposed to plain text.
pub fn is_sealed(value: &str) -> bool {
    value.starts_with("enc:")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const PEM: &str =
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";

    fn key(text: &str) -> KeyEncryptionKey {
        KeyEncryptionKey::from_hex(text, "test").expect("a valid key")
    }

    #[test]
    fn seals_without_plaintext_and_opens_back() {
        let kek = key(KEY);
        let sealed = kek.seal("certificate/web", PEM).expect("seal");
        assert!(sealed.starts_with(&format!("enc:v1:{}:", kek.id())));
        assert!(!sealed.contains("PRIVATE KEY"));
        assert!(is_sealed(&sealed));
        assert_eq!(kek.open("certificate/web", &sealed).expect("open"), PEM);
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let kek = key(KEY);
        let first = kek.seal("certificate/web", PEM).expect("seal");
        let second = kek.seal("certificate/web", PEM).expect("seal");
        assert_ne!(first, second);
    }

    #[test]
    fn a_value_moved_to_another_owner_does_not_open() {
        let kek = key(KEY);
        let sealed = kek.seal("certificate/web", PEM).expect("seal");
        let error = kek
            .open("certificate/api", &sealed)
            .expect_err("bound to its owner");
        assert!(matches!(error, SecretsError::Damaged { .. }), "{error}");
    }

    #[test]
    fn a_wrong_key_is_named_as_such() {
        let sealed = key(KEY).seal("certificate/web", PEM).expect("seal");
        let other = key(&"ab".repeat(32));
        let error = other
            .open("certificate/web", &sealed)
            .expect_err("wrong key");
        assert!(matches!(error, SecretsError::WrongKey { .. }), "{error}");
        assert!(error.to_string().contains("--secrets-key-file"), "{error}");
    }

    #[test]
    fn malformed_keys_are_refused_with_the_expected_form() {
        for text in ["", "zz", &"00".repeat(16), &"00".repeat(33)] {
            let error = KeyEncryptionKey::from_hex(text, "GATEWAY_SECRETS_KEY").expect_err(text);
            assert!(error.to_string().contains("64 hex digits"), "{error}");
        }
    }

    #[test]
    fn a_created_key_file_is_owner_only_and_read_back() {
        let dir = tempfile_dir();
        let path = dir.join("secrets.key");
        let created = KeyEncryptionKey::read_or_create(&path).expect("create");
        let read = KeyEncryptionKey::read_or_create(&path).expect("read");
        assert_eq!(created.id(), read.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> PathBuf {
        std::env::temp_dir().join(format!("gw-secrets-{:016x}", rand::random::<u64>()))
    }
}
