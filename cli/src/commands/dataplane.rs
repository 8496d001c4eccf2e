//! `gatewayctl dataplane …`: the data planes the control plane knows, and what each applied.

use std::time::{Duration, SystemTime};

use anyhow::anyhow;
use clap::Subcommand;
use gateway_proto::v1::{DataPlane, FieldViolation, ListRequest};

use super::Context;
use crate::output::{self, Row};

#[derive(Debug, Subcommand)]
pub enum DataPlaneCommand {
    /// List data planes with their applied and rejected config versions
    #[command(visible_alias = "ls")]
    List,
    /// Show one data plane, with every error of its last rejection
    Get { node_id: String },
}

pub async fn run(ctx: &Context, command: DataPlaneCommand) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let mut items = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_data_planes(ListRequest {
                page_size: super::PAGE_SIZE,
                page_token,
                ..Default::default()
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
    items.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    match command {
        DataPlaneCommand::List => output::rows(ctx.format, &items, "data planes"),
        DataPlaneCommand::Get { node_id } => {
            let item = items
                .into_iter()
                .find(|d| d.node_id == node_id)
                .ok_or_else(|| anyhow!("data plane {node_id:?} not found"))?;
            output::one(ctx.format, &item)
        }
    }
}

impl Row for DataPlane {
    const HEADERS: &'static [&'static str] = &[
        "NODE ID",
        "CONNECTED",
        "APPLIED VERSION",
        "REJECTED",
        "LAST SEEN",
        "ADDRESS",
        "BUILD",
        "CONNECTED SINCE",
        "APPLIED HASH",
        "LABELS",
        "REJECTION ERRORS",
    ];
    const NARROW: usize = 5;

    fn cells(&self) -> Vec<String> {
        let connected = match (self.connected, self.stale) {
            (true, true) => "yes (stale cache)",
            (true, false) => "yes",
            (false, _) => "no",
        };
        let rejected = if self.rejected_version == 0 {
            "-".to_owned()
        } else {
            let first = self
                .rejection_errors
                .first()
                .map(violation)
                .unwrap_or_default();
            let more = match self.rejection_errors.len() {
                0 | 1 => String::new(),
                n => format!(" (+{} more)", n - 1),
            };
            format!("{}: {first}{more}", self.rejected_version)
        };
        vec![
            self.node_id.clone(),
            connected.to_owned(),
            version(self.applied_version),
            rejected,
            ago(&self.last_seen),
            output::or_dash(self.address.clone()),
            output::or_dash(self.build_version.clone()),
            ago(&self.connected_since),
            output::or_dash(self.applied_hash.clone()),
            output::labels(&self.labels),
            output::or_dash(
                self.rejection_errors
                    .iter()
                    .map(violation)
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
        ]
    }

    fn reference(&self) -> String {
        format!("dataplane/{}", self.node_id)
    }
}

/// `resource field: reason`, the way every rejection error is printed.
pub fn violation(v: &FieldViolation) -> String {
    if v.field.is_empty() {
        format!("{}: {}", v.resource, v.reason)
    } else {
        format!("{} {}: {}", v.resource, v.field, v.reason)
    }
}

pub fn version(v: u64) -> String {
    if v == 0 { "none".into() } else { v.to_string() }
}

/// `12s ago` for an RFC 3339 timestamp; the timestamp itself when it cannot be read.
pub fn ago(timestamp: &str) -> String {
    if timestamp.is_empty() {
        return "-".into();
    }
    let Ok(then) = humantime::parse_rfc3339_weak(timestamp) else {
        return timestamp.to_owned();
    };
    match SystemTime::now().duration_since(then) {
        Ok(elapsed) => {
            let seconds = Duration::from_secs(elapsed.as_secs());
            format!("{} ago", humantime::format_duration(seconds))
        }
        // A clock slightly ahead of ours.
        Err(_) => "just now".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_read_resource_field_reason() {
        let v = FieldViolation {
            resource: "route/api".into(),
            field: "match.prefix".into(),
            reason: "must start with '/'".into(),
        };
        assert_eq!(violation(&v), "route/api match.prefix: must start with '/'");
        let v = FieldViolation {
            field: String::new(),
            ..v
        };
        assert_eq!(violation(&v), "route/api: must start with '/'");
    }

    #[test]
    fn rejected_cell_shows_version_and_first_error() {
        let dp = DataPlane {
            node_id: "dp-1".into(),
            rejected_version: 7,
            rejection_errors: vec![
                FieldViolation {
                    resource: "route/a".into(),
                    field: "upstream".into(),
                    reason: "unknown".into(),
                },
                FieldViolation::default(),
            ],
            ..Default::default()
        };
        let cells = dp.cells();
        assert_eq!(cells[3], "7: route/a upstream: unknown (+1 more)");
        assert_eq!(cells[2], "none");
        assert_eq!(cells[4], "-");
    }

    #[test]
    fn ago_falls_back_to_the_raw_timestamp() {
        assert_eq!(ago("not a time"), "not a time");
        assert!(ago("2020-01-01T00:00:00Z").ends_with(" ago"));
    }
}
