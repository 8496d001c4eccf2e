//! `gatewayctl config …`: the named contexts in the config file (see [`crate::contexts`]).
//! These commands never contact a control plane and never print a token.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use serde::Serialize;

use crate::contexts::{ContextFile, NamedContext};
use crate::flags;
use crate::output::{self, Format, Row};

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// List the contexts; `*` marks the current one
    GetContexts,
    /// Make a context the current one
    UseContext { name: String },
    /// Create a context, or change the given settings of an existing one
    #[command(after_help = "\
Only the settings given change. --token-file and --token-stdin replace each other. Example:
  gatewayctl config set-context prod --server http://cp.internal:9090 \\
      --token-file ~/.secrets/gateway-prod --use")]
    SetContext {
        name: String,
        /// The control plane's gRPC address
        #[arg(long, value_parser = flags::server_url)]
        server: Option<String>,
        /// A file holding the token (read at each command; the file is not copied)
        #[arg(long, value_name = "PATH", conflicts_with = "token_stdin")]
        token_file: Option<PathBuf>,
        /// Read the token from standard input and store it in the config file (mode 0600)
        #[arg(long)]
        token_stdin: bool,
        /// Also make it the current context
        #[arg(long = "use")]
        make_current: bool,
    },
    /// Print the current context's name
    CurrentContext,
    /// Delete a context
    DeleteContext { name: String },
}

pub fn run(format: Format, command: ConfigCommand) -> anyhow::Result<()> {
    let path = ContextFile::path()?;
    let mut file = ContextFile::load(&path)?;
    match command {
        ConfigCommand::GetContexts => {
            let rows: Vec<ContextRow> = file
                .contexts
                .iter()
                .map(|c| ContextRow::new(c, file.current_context.as_deref() == Some(&c.name)))
                .collect();
            output::rows(format, &rows, &format!("contexts in {}", path.display()))
        }
        ConfigCommand::UseContext { name } => {
            if file.get(&name).is_none() {
                bail!(
                    "context {name:?} is not defined in {} (create it with `gatewayctl config set-context {name} --server URL`)",
                    path.display()
                );
            }
            file.current_context = Some(name.clone());
            file.save(&path)?;
            output::emit(&format!("switched to context {name:?}\n"))
        }
        ConfigCommand::SetContext {
            name,
            server,
            token_file,
            token_stdin,
            make_current,
        } => {
            let token = if token_stdin {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("cannot read the token from standard input")?;
                let token = text.trim().to_owned();
                if token.is_empty() {
                    bail!("--token-stdin: standard input held no token");
                }
                Some(token)
            } else {
                None
            };
            let existed = file.get(&name).is_some();
            let context = file.entry(&name);
            if let Some(server) = server {
                context.server = Some(server);
            }
            if let Some(path) = token_file {
                context.token_file = Some(path);
                context.token = None;
            }
            if let Some(token) = token {
                context.token = Some(token);
                context.token_file = None;
            }
            if make_current {
                file.current_context = Some(name.clone());
            }
            file.save(&path)?;
            let verb = if existed { "updated" } else { "created" };
            output::emit(&format!("context {name:?} {verb} in {}\n", path.display()))
        }
        ConfigCommand::CurrentContext => match &file.current_context {
            Some(name) => output::emit(&format!("{name}\n")),
            None => bail!("no current context is set in {}", path.display()),
        },
        ConfigCommand::DeleteContext { name } => {
            let before = file.contexts.len();
            file.contexts.retain(|c| c.name != name);
            if file.contexts.len() == before {
                bail!("context {name:?} is not defined in {}", path.display());
            }
            if file.current_context.as_deref() == Some(&name) {
                file.current_context = None;
            }
            file.save(&path)?;
            output::emit(&format!("context {name:?} deleted\n"))
        }
    }
}

/// A context as listed: where its token comes from, never the token.
#[derive(Debug, Serialize)]
struct ContextRow {
    current: bool,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<String>,
    token: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_file: Option<PathBuf>,
}

impl ContextRow {
    fn new(context: &NamedContext, current: bool) -> Self {
        let token = match (&context.token, &context.token_file) {
            (Some(_), _) => "stored",
            (None, Some(_)) => "file",
            (None, None) => "none",
        };
        ContextRow {
            current,
            name: context.name.clone(),
            server: context.server.clone(),
            token,
            token_file: context.token_file.clone(),
        }
    }
}

impl Row for ContextRow {
    const HEADERS: &'static [&'static str] = &["CURRENT", "NAME", "SERVER", "TOKEN"];
    const NARROW: usize = 4;

    fn cells(&self) -> Vec<String> {
        let token = match &self.token_file {
            Some(path) => format!("file {}", path.display()),
            None => self.token.to_owned(),
        };
        vec![
            if self.current { "*" } else { "" }.to_owned(),
            self.name.clone(),
            self.server
                .clone()
                .unwrap_or_else(|| "(default)".to_owned()),
            token,
        ]
    }

    fn reference(&self) -> String {
        format!("context/{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_never_show_a_token() {
        let context = NamedContext {
            name: "prod".into(),
            server: Some("http://cp:9090".into()),
            token: Some("gw_secret".into()),
            token_file: None,
        };
        let row = ContextRow::new(&context, true);
        assert_eq!(row.cells(), ["*", "prod", "http://cp:9090", "stored"]);
        let json = serde_json::to_string(&row).unwrap();
        assert!(!json.contains("gw_secret"), "{json}");
    }
}
