//! `gatewayctl history` and `gatewayctl rollback`: the config's versions, what each changed, and
//! going back to one of them.
//!
//! A rollback never rewrites history: it creates a new version whose content equals the old one,
//! so `history` shows it like any other change and a rollback can itself be rolled back.

use std::fmt::Write as _;

use clap::Args;
use gateway_proto::v1::{
    ApplyResponse, ConfigChange, ConfigVersion, ListVersionsRequest, RollbackRequest,
};

use super::Context;
use crate::output::{self, Row};

/// Changes shown per version in a table; the rest are counted (`-o yaml` lists them all).
const SHOWN_CHANGES: usize = 10;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Show at most this many versions, newest first (at most 1000)
    #[arg(long, value_name = "N", default_value_t = 50)]
    limit: u32,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The version whose content becomes current again (see `gatewayctl history`)
    #[arg(long, value_name = "VERSION", value_parser = clap::value_parser!(u64).range(1..))]
    to: u64,
}

pub async fn history(ctx: &Context, args: HistoryArgs) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let items = client
        .list_versions(ListVersionsRequest {
            limit: args.limit,
            ..Default::default()
        })
        .await
        .map_err(|s| ctx.rpc_error(s))?
        .into_inner()
        .items;
    output::rows(ctx.format, &items, "config versions")
}

pub async fn rollback(ctx: &Context, args: RollbackArgs) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let response = client
        .rollback(RollbackRequest {
            to: args.to,
            ..Default::default()
        })
        .await
        .map_err(|s| ctx.rpc_error(s))?
        .into_inner();
    output::message(ctx.format, &response, &rollback_summary(args.to, &response))
}

/// `rolled back to version 3 as new version 9: created 1, updated 2`, then one line per resource.
/// Deleted resources count as updated: the server reports every change that is not a creation so.
fn rollback_summary(to: u64, response: &ApplyResponse) -> String {
    if response.created.is_empty() && response.updated.is_empty() {
        return format!(
            "already at the content of version {to} (current version {}); nothing changed\n",
            response.version
        );
    }
    let mut text = format!(
        "rolled back to version {to} as new version {}: created {}, updated {}\n",
        response.version,
        response.created.len(),
        response.updated.len()
    );
    for (verb, names) in [
        ("created", &response.created),
        ("updated", &response.updated),
    ] {
        for name in names {
            let _ = writeln!(text, "  {verb} {name}");
        }
    }
    text
}

/// `+route/a ~upstream/web -route/b`: created, updated, deleted, in the server's order; after
/// `shown` changes the rest are counted.
pub fn change_summary(changes: &[ConfigChange], shown: usize) -> String {
    let mut parts: Vec<String> = changes
        .iter()
        .take(shown)
        .map(|c| {
            let sign = match c.op.as_str() {
                "create" => "+",
                "update" => "~",
                "delete" => "-",
                _ => "?",
            };
            format!("{sign}{}/{}", c.kind, c.name)
        })
        .collect();
    if changes.len() > shown {
        parts.push(format!("(+{} more)", changes.len() - shown));
    }
    output::or_dash(parts.join(" "))
}

impl Row for ConfigVersion {
    const HEADERS: &'static [&'static str] = &["VERSION", "CREATED", "AUTHOR", "CHANGES", "HASH"];
    const NARROW: usize = 4;

    fn cells(&self) -> Vec<String> {
        vec![
            self.version.to_string(),
            output::or_dash(self.created_at.clone()),
            output::or_dash(self.author.clone()),
            change_summary(&self.changes, SHOWN_CHANGES),
            output::or_dash(self.hash.clone()),
        ]
    }

    fn reference(&self) -> String {
        format!("version/{}", self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(op: &str, kind: &str, name: &str) -> ConfigChange {
        ConfigChange {
            op: op.into(),
            kind: kind.into(),
            name: name.into(),
        }
    }

    #[test]
    fn summarises_changes_with_signs() {
        let changes = [
            change("create", "route", "a"),
            change("update", "upstream", "web"),
            change("delete", "route", "b"),
            change("create", "health-check", "hc"),
        ];
        assert_eq!(
            change_summary(&changes, 10),
            "+route/a ~upstream/web -route/b +health-check/hc"
        );
        assert_eq!(
            change_summary(&changes, 2),
            "+route/a ~upstream/web (+2 more)"
        );
        assert_eq!(change_summary(&[], 10), "-");
        assert_eq!(
            change_summary(&[change("rename", "route", "x")], 10),
            "?route/x"
        );
    }

    #[test]
    fn version_rows() {
        let v = ConfigVersion {
            version: 7,
            hash: "abc".into(),
            created_at: "2025-01-02T03:04:05Z".into(),
            changes: vec![change("create", "route", "a")],
            config: None,
            author: "ci".into(),
        };
        assert_eq!(
            v.cells(),
            ["7", "2025-01-02T03:04:05Z", "ci", "+route/a", "abc"]
        );
    }

    #[test]
    fn rollback_summaries() {
        let response = ApplyResponse {
            version: 9,
            created: vec!["route/a".into()],
            updated: vec!["upstream/web".into(), "route/b".into()],
            unchanged: vec![],
            deleted: vec![],
        };
        let text = rollback_summary(3, &response);
        assert!(
            text.starts_with("rolled back to version 3 as new version 9: created 1, updated 2\n"),
            "{text}"
        );
        assert!(text.contains("  created route/a\n"), "{text}");
        assert!(text.contains("  updated route/b\n"), "{text}");

        let nothing = ApplyResponse {
            version: 8,
            ..Default::default()
        };
        assert_eq!(
            rollback_summary(3, &nothing),
            "already at the content of version 3 (current version 8); nothing changed\n"
        );
    }
}
