//! What differs between the two store backends: URL parsing, connection set-up, migrations,
//! the embedded store's single-writer lock, and change notification (Postgres `NOTIFY`).

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyConnection, Connection, Transaction};

use crate::error::ApiError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The Postgres channel on which every commit announces its version.
pub const NOTIFY_CHANNEL: &str = "gateway_config";

#[derive(Clone)]
pub enum Backend {
    Postgres {
        url: String,
    },
    /// `_lock` holds an exclusive lock on `<file>.lock` for the life of the process.
    Sqlite {
        path: PathBuf,
        _lock: Arc<File>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "unsupported --database-url {0:?}: use postgres://USER@HOST:PORT/DB or sqlite://PATH (or leave it unset for the embedded store in --data-dir)"
    )]
    UnknownScheme(String),
    #[error("cannot create the data directory {path}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another control plane is already using the embedded store {path}; the embedded store serves one replica — run several replicas on Postgres (--database-url postgres://…)"
    )]
    Locked { path: PathBuf },
    #[error("cannot connect to the database at {target}")]
    Connect { target: String, source: sqlx::Error },
    #[error("the database at {target} did not answer within {CONNECT_TIMEOUT:?}")]
    ConnectTimeout { target: String },
    #[error("cannot read or seal the private keys stored in {target}")]
    Seal { target: String, source: ApiError },
    #[error("cannot apply migrations to the database at {target}")]
    Migrate {
        target: String,
        source: sqlx::migrate::MigrateError,
    },
}

pub(super) async fn open(url: &str) -> Result<(AnyPool, Backend), OpenError> {
    sqlx::any::install_default_drivers();
    let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Backend::Postgres {
            url: url.to_string(),
        }
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        let path = PathBuf::from(path.split('?').next().unwrap_or(path));
        Backend::Sqlite {
            _lock: Arc::new(lock_embedded(&path)?),
            path,
        }
    } else {
        return Err(OpenError::UnknownScheme(url.to_string()));
    };
    let target = backend.describe();
    let (connect_url, max_connections) = match &backend {
        Backend::Postgres { url } => (url.clone(), 10),
        // One writer at a time is all SQLite allows; a small pool keeps reads concurrent.
        Backend::Sqlite { path, .. } => (format!("sqlite://{}?mode=rwc", path.display()), 4),
    };
    // One direct connection first: the pool would only report a timeout, not why.
    match tokio::time::timeout(CONNECT_TIMEOUT, AnyConnection::connect(&connect_url)).await {
        Ok(Ok(conn)) => drop(conn),
        Ok(Err(source)) => return Err(OpenError::Connect { target, source }),
        Err(_) => return Err(OpenError::ConnectTimeout { target }),
    }
    let is_sqlite = matches!(backend, Backend::Sqlite { .. });
    let pool = AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(CONNECT_TIMEOUT)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if is_sqlite {
                    // Foreign keys are off by default in SQLite; the busy timeout waits for the
                    // writer instead of failing at once.
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA busy_timeout = 5000")
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            })
        })
        .connect(&connect_url)
        .await
        .map_err(|source| OpenError::Connect {
            target: target.clone(),
            source,
        })?;
    let migrator = match backend {
        Backend::Postgres { .. } => sqlx::migrate!("../migrations/postgres"),
        Backend::Sqlite { .. } => {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .map_err(|source| OpenError::Connect {
                    target: target.clone(),
                    source,
                })?;
            sqlx::migrate!("../migrations/sqlite")
        }
    };
    migrator
        .run(&pool)
        .await
        .map_err(|source| OpenError::Migrate { target, source })?;
    Ok((pool, backend))
}

/// Creates the store's directory and takes an exclusive lock beside the database file, so a
/// second control plane on the same embedded store fails fast with a clear message.
fn lock_embedded(path: &Path) -> Result<File, OpenError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|source| OpenError::DataDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let file = File::create(&lock_path).map_err(|source| OpenError::DataDir {
        path: lock_path.clone(),
        source,
    })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(OpenError::Locked {
            path: path.to_path_buf(),
        }),
        Err(TryLockError::Error(source)) => Err(OpenError::DataDir {
            path: lock_path,
            source,
        }),
    }
}

impl Backend {
    /// Where the store is, without credentials, for logs and errors.
    pub fn describe(&self) -> String {
        match self {
            Backend::Postgres { url } => redact(url),
            Backend::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
        }
    }

    /// `postgres` or `sqlite`.
    pub fn kind(&self) -> &'static str {
        match self {
            Backend::Postgres { .. } => "postgres",
            Backend::Sqlite { .. } => "sqlite",
        }
    }

    /// The URL a Postgres `LISTEN` connection should use; `None` for the embedded store, which has
    /// a single replica and so nobody else to hear from.
    pub fn listen_url(&self) -> Option<&str> {
        match self {
            Backend::Postgres { url } => Some(url),
            Backend::Sqlite { .. } => None,
        }
    }

    /// Announces `version` to the other replicas when the transaction commits.
    pub(super) async fn notify_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        version: u64,
    ) -> Result<(), ApiError> {
        if let Backend::Postgres { .. } = self {
            // NOTIFY takes no bind parameters; the payload is a number we produced.
            sqlx::query(&format!("NOTIFY {NOTIFY_CHANNEL}, '{version}'"))
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

/// Drops the password from `scheme://user:password@host/db`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            let user = credentials.split(':').next().unwrap_or("");
            format!("{}{}@{}", &url[..scheme_end + 3], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }
}
