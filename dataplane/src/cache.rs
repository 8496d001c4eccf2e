//! The last-known-good cache: the latest applied snapshot on disk, so that a restart without a
//! control plane still serves the last config (marked stale) instead of nothing.
//!
//! Two generations, `snapshot.pb` (current) and `snapshot.prev.pb` (previous). Each file is
//!
//! ```text
//! magic "GWDPSNP1" | version u64 | hash length u16 | hash | body length u64 | body | SHA-256
//! ```
//!
//! (integers big-endian), where the body is the `Snapshot` protobuf and the SHA-256 covers
//! everything before it. Writes go to a temporary file that is fsynced, then renamed into place,
//! then the directory is fsynced: a crash leaves either the old file or the new one, whole.
//! A file that fails its checksum is skipped for the previous generation, never for nothing.
//!
//! A snapshot holds the TLS certificates' private keys, so the files are written owner-only
//! (0600 on Unix), whatever the umask, and a temporary file left by an older version is made
//! owner-only before it is reused. They are not encrypted: whoever can read them as the data
//! plane's user can read its memory too.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use gateway_proto::hash::config_hash;
use gateway_proto::v1::Snapshot;
use prost::Message;
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"GWDPSNP1";
const CHECKSUM_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// Which file of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    Current,
    Previous,
}

impl Generation {
    fn file_name(self) -> &'static str {
        match self {
            Generation::Current => "snapshot.pb",
            Generation::Previous => "snapshot.prev.pb",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SnapshotCache {
    dir: PathBuf,
}

impl SnapshotCache {
    pub fn new(dir: impl Into<PathBuf>) -> SnapshotCache {
        SnapshotCache { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, generation: Generation) -> PathBuf {
        self.dir.join(generation.file_name())
    }

    /// Makes `snapshot` the current generation; the current one, if sound and different,
    /// becomes the previous one.
    pub fn store(&self, snapshot: &Snapshot) -> Result<(), CacheError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CacheError::Io { path, source }
        };
        fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let current = self.path(Generation::Current);
        match self.load(Generation::Current) {
            Ok(Some(held)) if held.hash == snapshot.hash && held.version == snapshot.version => {
                return Ok(());
            }
            // Re-sent identical config (e.g. after a reconnect): keep the real previous one.
            Ok(Some(held)) if held.hash == snapshot.hash => {}
            Ok(Some(_)) => {
                let previous = self.path(Generation::Previous);
                fs::rename(&current, &previous).map_err(io_err(&previous))?;
            }
            // Nothing or garbage in the current slot: overwrite it, keep the previous one.
            Ok(None) | Err(_) => {}
        }
        let temp = self.dir.join(".snapshot.pb.tmp");
        write_synced(&temp, &encode(snapshot)).map_err(io_err(&temp))?;
        fs::rename(&temp, &current).map_err(io_err(&current))?;
        sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        Ok(())
    }

    /// One generation; `Ok(None)` when it does not exist.
    pub fn load(&self, generation: Generation) -> Result<Option<Snapshot>, CacheError> {
        let path = self.path(generation);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CacheError::Io { path, source }),
        };
        decode(&bytes)
            .map(Some)
            .map_err(|reason| CacheError::Corrupt { path, reason })
    }

    /// The sound generations, newest first; unreadable ones are logged and skipped.
    pub fn load_all(&self) -> Vec<(Generation, Snapshot)> {
        [Generation::Current, Generation::Previous]
            .into_iter()
            .filter_map(|generation| match self.load(generation) {
                Ok(snapshot) => snapshot.map(|s| (generation, s)),
                Err(error) => {
                    tracing::warn!(%error, "skipping unreadable cached snapshot");
                    None
                }
            })
            .collect()
    }
}

fn encode(snapshot: &Snapshot) -> Vec<u8> {
    let body = snapshot.encode_to_vec();
    let hash = snapshot.hash.as_bytes();
    let mut out = Vec::with_capacity(8 + 8 + 2 + hash.len() + 8 + body.len() + CHECKSUM_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&snapshot.version.to_be_bytes());
    // Hashes are 64 hex characters; anything longer is cut rather than failing the write.
    let hash = &hash[..hash.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(hash.len() as u16).to_be_bytes());
    out.extend_from_slice(hash);
    out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    out.extend_from_slice(&body);
    let checksum = Sha256::digest(&out);
    out.extend_from_slice(&checksum);
    out
}

fn decode(bytes: &[u8]) -> Result<Snapshot, String> {
    let Some(split) = bytes.len().checked_sub(CHECKSUM_LEN) else {
        return Err(format!("truncated: {} bytes", bytes.len()));
    };
    let (content, checksum) = bytes.split_at(split);
    if Sha256::digest(content).as_slice() != checksum {
        return Err("checksum mismatch".into());
    }
    let mut reader = Reader(content);
    if reader.take(MAGIC.len())? != MAGIC {
        return Err("not a gateway-dataplane snapshot file".into());
    }
    let version = u64::from_be_bytes(reader.array()?);
    let hash_len = u16::from_be_bytes(reader.array()?);
    let hash = String::from_utf8(reader.take(usize::from(hash_len))?.to_vec())
        .map_err(|_| "hash is not UTF-8".to_string())?;
    let body_len = usize::try_from(u64::from_be_bytes(reader.array()?))
        .map_err(|_| "body length out of range".to_string())?;
    let body = reader.take(body_len)?;
    if !reader.0.is_empty() {
        return Err("trailing bytes after the body".into());
    }
    let snapshot = Snapshot::decode(body).map_err(|e| format!("body: {e}"))?;
    if snapshot.version != version || snapshot.hash != hash {
        return Err("header does not match the snapshot it holds".into());
    }
    let actual = config_hash(&snapshot.config.clone().unwrap_or_default());
    if actual != snapshot.hash {
        return Err(format!("config hashes to {actual}, not {hash}"));
    }
    Ok(snapshot)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    // `mode` applies only when the file is created: narrow a pre-existing one before writing.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes the renames in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
