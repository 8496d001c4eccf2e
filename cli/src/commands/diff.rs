//! `gatewayctl diff`: what changed between two config versions, or what applying files would
//! change, as a unified diff of the documents `gatewayctl export` prints.
//!
//! Exit status, like `kubectl diff` and `diff(1)`: 0 when there is no difference, 1 when there is
//! one, 2 on any error (and on usage errors, as everywhere).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use clap::{ArgGroup, Args};
use gateway_proto::v1::{Certificate, Config};
use similar::{ChangeTag, TextDiff};

use super::Context;
use super::apply::{self, parse_sources, read_sources};
use super::export::{config_at, current_version};
use crate::output;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["from", "files"])))]
pub struct DiffArgs {
    /// The old version (0 is the empty config before the first write)
    #[arg(long, value_name = "VERSION", conflicts_with = "files")]
    from: Option<u64>,
    /// The new version [default: the current version]
    #[arg(long, value_name = "VERSION", requires = "from")]
    to: Option<u64>,
    /// Compare the current config with it after applying these files (as `apply -f` takes
    /// them); repeatable
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// Whether the two sides differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Same,
    Different,
}

/// 0 same, 1 different, 2 error; the error is printed here.
pub fn exit_code(result: &anyhow::Result<Outcome>) -> ExitCode {
    ExitCode::from(exit_status(result))
}

fn exit_status(result: &anyhow::Result<Outcome>) -> u8 {
    match result {
        Ok(Outcome::Same) => 0,
        Ok(Outcome::Different) => 1,
        Err(error) => {
            eprintln!("error: {error:#}");
            2
        }
    }
}

pub async fn run(ctx: &Context, args: DiffArgs) -> anyhow::Result<Outcome> {
    // Files are read and checked before connecting, as `apply` does.
    let local = if args.files.is_empty() {
        None
    } else {
        let sources = read_sources(&args.files)?;
        let config = parse_sources(&sources).map_err(|errors| anyhow!(apply::problems(&errors)))?;
        Some((apply::names(&sources), config))
    };
    let mut client = ctx.client().await?;
    let (old_label, old, new_label, new) = match (local, args.from) {
        (Some((names, files)), _) => {
            let version = current_version(ctx, &mut client).await?;
            let current = config_at(ctx, &mut client, version).await?;
            let applied = upsert_all(current.clone(), files);
            (
                format!("version {version}"),
                current,
                format!("version {version} with {names} applied"),
                applied,
            )
        }
        (None, Some(from)) => {
            let to = match args.to {
                Some(to) => to,
                None => current_version(ctx, &mut client).await?,
            };
            let old = config_at(ctx, &mut client, from).await?;
            let new = config_at(ctx, &mut client, to).await?;
            (format!("version {from}"), old, format!("version {to}"), new)
        }
        (None, None) => return Err(anyhow!("give --from VERSION or -f FILE")),
    };
    let old = output::yaml_config(&old)?;
    let new = output::yaml_config(&new)?;
    match unified(&old_label, &old, &new_label, &new, output::styled()) {
        None => Ok(Outcome::Same),
        Some(text) => {
            output::emit(&text)?;
            Ok(Outcome::Different)
        }
    }
}

/// `config` with every resource of `files` created or replaced, as `Apply` would do it.
/// Private keys are never shown (the control plane never returns them), and a certificate's
/// `not_after` is the control plane's to compute: an unchanged chain keeps the current one.
fn upsert_all(mut config: Config, files: Config) -> Config {
    for mut r in files.certificates {
        r.private_key_pem.clear();
        if let Some(current) = config.get::<Certificate>(&r.name)
            && current.certificate_pem == r.certificate_pem
        {
            r.not_after = current.not_after.clone();
        }
        config.upsert(r);
    }
    for r in files.health_checks {
        config.upsert(r);
    }
    for r in files.upstreams {
        config.upsert(r);
    }
    for r in files.routes {
        config.upsert(r);
    }
    config
}

/// A unified diff with `--- old` / `+++ new` headers and three lines of context; `None` when
/// the texts are equal. `colour` adds ANSI colours: red removals, green additions, cyan hunks.
fn unified(old_label: &str, old: &str, new_label: &str, new: &str, colour: bool) -> Option<String> {
    if old == new {
        return None;
    }
    let diff = TextDiff::configure()
        // Past this, a correct but less minimal diff is better than waiting.
        .timeout(Duration::from_secs(5))
        .diff_lines(old, new);
    let paint = |code: &str, text: &str| {
        if colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}", paint("1", &format!("--- {old_label}")));
    let _ = writeln!(out, "{}", paint("1", &format!("+++ {new_label}")));
    for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
        let _ = writeln!(out, "{}", paint("36", &hunk.header().to_string()));
        for change in hunk.iter_changes() {
            let (sign, code) = match change.tag() {
                ChangeTag::Delete => ("-", Some("31")),
                ChangeTag::Insert => ("+", Some("32")),
                ChangeTag::Equal => (" ", None),
            };
            let line = format!("{sign}{}", change.value().trim_end_matches('\n'));
            match code {
                Some(code) => out.push_str(&paint(code, &line)),
                None => out.push_str(&line),
            }
            out.push('\n');
            if change.missing_newline() {
                out.push_str("\\ No newline at end of file\n");
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use gateway_proto::v1::{Route, Upstream};

    use super::*;

    #[test]
    fn exit_codes_follow_diff() {
        assert_eq!(exit_status(&Ok(Outcome::Same)), 0);
        assert_eq!(exit_status(&Ok(Outcome::Different)), 1);
        assert_eq!(exit_status(&Err(anyhow!("version 9 not found"))), 2);
    }

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified("version 1", "a\n", "version 2", "a\n", false), None);
        assert_eq!(unified("version 1", "", "version 2", "", false), None);
    }

    #[test]
    fn unified_diff_with_version_headers() {
        let old = "kind: Upstream\nname: web\ntargets:\n- address: 10.0.0.1:80\n  weight: 1\n";
        let new = "kind: Upstream\nname: web\ntargets:\n- address: 10.0.0.2:80\n  weight: 1\n";
        let text = unified("version 3", old, "version 4", new, false).unwrap();
        assert_eq!(
            text,
            "--- version 3\n+++ version 4\n@@ -1,5 +1,5 @@\n kind: Upstream\n name: web\n \
             targets:\n-- address: 10.0.0.1:80\n+- address: 10.0.0.2:80\n   weight: 1\n"
        );
        assert!(!text.contains('\x1b'));
        let coloured = unified("version 3", old, "version 4", new, true).unwrap();
        assert!(
            coloured.contains("\x1b[31m-- address: 10.0.0.1:80\x1b[0m"),
            "{coloured}"
        );
        assert!(
            coloured.contains("\x1b[32m+- address: 10.0.0.2:80\x1b[0m"),
            "{coloured}"
        );
    }

    #[test]
    fn diff_from_empty_adds_everything() {
        let text = unified(
            "version 0",
            "",
            "version 1",
            "kind: Route\nname: a\n",
            false,
        )
        .unwrap();
        assert!(
            text.contains("@@ -0,0 +1,2 @@\n+kind: Route\n+name: a\n"),
            "{text}"
        );
    }

    #[test]
    fn files_are_upserted_into_the_current_config() {
        let current = Config {
            upstreams: vec![Upstream {
                name: "web".into(),
                connect_timeout_ms: 1000,
                ..Default::default()
            }],
            routes: vec![Route {
                name: "keep".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let files = Config {
            upstreams: vec![Upstream {
                name: "web".into(),
                connect_timeout_ms: 2000,
                ..Default::default()
            }],
            routes: vec![Route {
                name: "new".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let applied = upsert_all(current, files);
        assert_eq!(applied.upstreams.len(), 1);
        assert_eq!(applied.upstreams[0].connect_timeout_ms, 2000);
        let routes: Vec<&str> = applied.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(routes, ["keep", "new"]);
    }
}
