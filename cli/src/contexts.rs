//! Named contexts: which control plane to talk to, and with which token.
//!
//! They live in `$XDG_CONFIG_HOME/gatewayctl/config.yaml` (else `~/.config/gatewayctl/config.yaml`;
//! `GATEWAYCTL_CONFIG` names another file):
//!
//! ```yaml
//! current_context: prod
//! contexts:
//!   - name: prod
//!     server: http://cp.internal:9090
//!     token_file: /home/me/.secrets/gateway-prod     # or token: gw_…
//!   - name: local
//!     server: http://127.0.0.1:9090
//! ```
//!
//! Each setting is taken from the first of: a command-line flag, a `GATEWAYCTL_*` environment
//! variable, the selected context (`--context`, else `current_context`), the default. A token is
//! never printed: listings say only where it comes from. The file is written with mode 0600.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use serde::{Deserialize, Serialize};

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:9090";

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: Vec<NamedContext>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedContext {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

impl ContextFile {
    /// Where the file is: `GATEWAYCTL_CONFIG`, else the XDG location.
    pub fn path() -> anyhow::Result<PathBuf> {
        if let Some(path) = std::env::var_os("GATEWAYCTL_CONFIG").filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(path));
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
            .ok_or_else(|| anyhow!("neither XDG_CONFIG_HOME nor HOME is set"))?;
        Ok(base.join("gatewayctl").join("config.yaml"))
    }

    /// The file's contents; an absent file is an empty one.
    pub fn load(path: &Path) -> anyhow::Result<ContextFile> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ContextFile::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if text.trim().is_empty() {
            return Ok(ContextFile::default());
        }
        serde_saphyr::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
    }

    /// Writes the file (mode 0600: it may hold tokens), replacing it atomically.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_saphyr::to_string(self).context("cannot encode the contexts")?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let temporary = path.with_extension("yaml.tmp");
        write_private(&temporary, text.as_bytes())
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        std::fs::rename(&temporary, path)
            .with_context(|| format!("cannot replace {}", path.display()))
    }

    pub fn get(&self, name: &str) -> Option<&NamedContext> {
        self.contexts.iter().find(|c| c.name == name)
    }

    /// The context named `name`, added (empty) when missing.
    pub fn entry(&mut self, name: &str) -> &mut NamedContext {
        let index = match self.contexts.iter().position(|c| c.name == name) {
            Some(index) => index,
            None => {
                self.contexts.push(NamedContext {
                    name: name.to_owned(),
                    ..Default::default()
                });
                self.contexts.len() - 1
            }
        };
        &mut self.contexts[index]
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// Where a command-line setting came from; a flag beats the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Environment,
    Flag,
}

/// What the command line and the environment said.
#[derive(Debug, Default)]
pub struct Overrides {
    pub server: Option<String>,
    pub token: Option<(String, Source)>,
    pub token_file: Option<(PathBuf, Source)>,
    pub context: Option<String>,
}

/// Where to connect and how to authenticate.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub server: String,
    pub token: Option<String>,
}

/// Applies the precedence: flag > environment > context > default.
pub fn resolve(
    overrides: Overrides,
    file: &ContextFile,
    file_path: &Path,
) -> anyhow::Result<Target> {
    let context = match (&overrides.context, &file.current_context) {
        (Some(name), _) => Some(file.get(name).ok_or_else(|| {
            anyhow!(
                "context {name:?} is not defined in {} (see `gatewayctl config get-contexts`)",
                file_path.display()
            )
        })?),
        (None, Some(name)) => Some(file.get(name).ok_or_else(|| {
            anyhow!(
                "the current context {name:?} is not defined in {} (fix it with `gatewayctl config use-context`)",
                file_path.display()
            )
        })?),
        (None, None) => None,
    };
    let server = overrides
        .server
        .or_else(|| context.and_then(|c| c.server.clone()))
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    crate::flags::server_url(&server).map_err(|e| anyhow!("invalid server {server:?}: {e}"))?;

    // The strongest of --token / --token-file (flag over environment), then the context's.
    let token = match (overrides.token, overrides.token_file) {
        (Some((token, a)), Some((_, b))) if a >= b => Some(token),
        (Some(_), Some((path, _))) | (None, Some((path, _))) => Some(read_token(&path)?),
        (Some((token, _)), None) => Some(token),
        (None, None) => match context {
            Some(NamedContext {
                token: Some(token), ..
            }) => Some(token.clone()),
            Some(NamedContext {
                token_file: Some(path),
                ..
            }) => Some(read_token(path)?),
            _ => None,
        },
    };
    Ok(Target {
        server,
        token: token.filter(|t| !t.is_empty()),
    })
}

/// A token file's contents, trimmed; errors name the file, never its content.
pub fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("the token file {} is empty", path.display());
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> ContextFile {
        serde_saphyr::from_str(
            "current_context: prod\ncontexts:\n  - name: prod\n    server: http://prod:9090\n    token: from-prod\n  - name: local\n",
        )
        .unwrap()
    }

    fn path() -> PathBuf {
        PathBuf::from("/tmp/gatewayctl-test.yaml")
    }

    #[test]
    fn the_current_context_fills_what_flags_leave_out() {
        let target = resolve(Overrides::default(), &file(), &path()).unwrap();
        assert_eq!(target.server, "http://prod:9090");
        assert_eq!(target.token.as_deref(), Some("from-prod"));

        let target = resolve(
            Overrides {
                context: Some("local".into()),
                ..Default::default()
            },
            &file(),
            &path(),
        )
        .unwrap();
        assert_eq!(target.server, DEFAULT_SERVER);
        assert_eq!(target.token, None);
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "from-file\n").unwrap();
        let target = resolve(
            Overrides {
                server: Some("http://flag:1".into()),
                token: Some(("from-env".into(), Source::Environment)),
                token_file: Some((token_file.clone(), Source::Flag)),
                context: None,
            },
            &file(),
            &path(),
        )
        .unwrap();
        assert_eq!(target.server, "http://flag:1");
        assert_eq!(
            target.token.as_deref(),
            Some("from-file"),
            "--token-file beats GATEWAYCTL_TOKEN"
        );

        let target = resolve(
            Overrides {
                token: Some(("from-flag".into(), Source::Flag)),
                token_file: Some((token_file, Source::Environment)),
                ..Default::default()
            },
            &file(),
            &path(),
        )
        .unwrap();
        assert_eq!(target.token.as_deref(), Some("from-flag"));
    }

    #[test]
    fn unknown_contexts_and_unreadable_tokens_are_errors_that_hide_the_token() {
        let missing = resolve(
            Overrides {
                context: Some("nope".into()),
                ..Default::default()
            },
            &file(),
            &path(),
        )
        .unwrap_err();
        assert!(
            missing.to_string().contains("\"nope\" is not defined"),
            "{missing}"
        );
        let mut broken = file();
        broken.current_context = Some("gone".into());
        assert!(resolve(Overrides::default(), &broken, &path()).is_err());
        let unreadable = read_token(Path::new("/nonexistent/token")).unwrap_err();
        assert!(unreadable.to_string().contains("/nonexistent/token"));
    }

    #[test]
    fn files_round_trip_privately() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gatewayctl").join("config.yaml");
        assert_eq!(ContextFile::load(&path).unwrap(), ContextFile::default());
        let mut contexts = file();
        contexts.entry("new").server = Some("http://new:9090".into());
        contexts.save(&path).unwrap();
        assert_eq!(ContextFile::load(&path).unwrap(), contexts);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "contexts: []\nunknown: 1\n").unwrap();
        assert!(
            ContextFile::load(&path).is_err(),
            "unknown fields are errors"
        );
    }
}
