//! `gatewayctl audit`: who changed what and when, newest first, from the control plane's audit
//! log (config writes and token changes alike).

use clap::Args;
use gateway_proto::v1::{AuditEntry, ListAuditRequest};

use super::Context;
use super::history::change_summary;
use crate::output::{self, Row};

/// Changes shown per entry in a table; `-o yaml` lists them all.
const SHOWN_CHANGES: usize = 10;

/// The most entries one request asks for.
const PAGE: u32 = 1000;

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Show at most this many entries, newest first
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
    /// Only the changes made by this token (its name), `bootstrap` or `anonymous`
    #[arg(long, value_name = "NAME")]
    actor: Option<String>,
}

pub async fn run(ctx: &Context, args: AuditArgs) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let mut items: Vec<AuditEntry> = Vec::new();
    let mut page_token = String::new();
    let limit = usize::try_from(args.limit).unwrap_or(usize::MAX);
    while items.len() < limit {
        let want = u32::try_from(limit - items.len()).unwrap_or(PAGE).min(PAGE);
        let page = client
            .list_audit(ListAuditRequest {
                page_size: want,
                page_token,
                actor: args.actor.clone().unwrap_or_default(),
            })
            .await
            .map_err(|s| ctx.rpc_error(s))?
            .into_inner();
        items.extend(page.items);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    items.truncate(limit);
    output::rows(ctx.format, &items, "audit entries")
}

impl Row for AuditEntry {
    const HEADERS: &'static [&'static str] =
        &["TIME", "ACTOR", "OPERATION", "VERSION", "CHANGES", "ID"];
    const NARROW: usize = 5;

    fn cells(&self) -> Vec<String> {
        let version = if self.version == 0 {
            "-".to_owned()
        } else {
            self.version.to_string()
        };
        vec![
            self.time.clone(),
            self.actor.clone(),
            self.operation.clone(),
            version,
            change_summary(&self.changes, SHOWN_CHANGES),
            self.id.to_string(),
        ]
    }

    fn reference(&self) -> String {
        format!("audit/{}", self.id)
    }
}

#[cfg(test)]
mod tests {
    use gateway_proto::v1::ConfigChange;

    use super::*;

    #[test]
    fn rows_show_who_did_what() {
        let entry = AuditEntry {
            id: 3,
            time: "2026-11-26T10:00:00.000Z".into(),
            actor: "ci".into(),
            operation: "RevokeToken".into(),
            changes: vec![ConfigChange {
                op: "delete".into(),
                kind: "token".into(),
                name: "old".into(),
            }],
            version: 0,
        };
        assert_eq!(
            entry.cells(),
            [
                "2026-11-26T10:00:00.000Z",
                "ci",
                "RevokeToken",
                "-",
                "-token/old",
                "3"
            ]
        );
    }
}
