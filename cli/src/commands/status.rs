//! `gatewayctl status`: "did every proxy take my change?" — the current config version and,
//! for each data plane not on it, whether it is behind or rejected it and why.

use std::fmt::Write as _;

use gateway_proto::v1::{DataPlane, GetStatusRequest, Status};

use super::Context;
use super::dataplane::{ago, version, violation};
use crate::output;

pub async fn run(ctx: &Context) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let status = client
        .get_status(GetStatusRequest {})
        .await
        .map_err(|s| ctx.rpc_error(s))?
        .into_inner();
    output::message(ctx.format, &status, &render(&status))
}

/// Where a data plane stands relative to the current version.
enum Standing<'a> {
    Current,
    Rejected(&'a DataPlane),
    Behind(&'a DataPlane),
}

fn standing<'a>(status: &Status, dp: &'a DataPlane) -> Standing<'a> {
    if dp.applied_version == status.version {
        Standing::Current
    } else if dp.rejected_version >= status.version && dp.rejected_version > dp.applied_version {
        Standing::Rejected(dp)
    } else {
        Standing::Behind(dp)
    }
}

fn render(status: &Status) -> String {
    let mut out = String::new();
    if status.version == 0 {
        out.push_str("config version: none (nothing has been written yet)\n");
    } else {
        let _ = writeln!(out, "config version: {}", status.version);
        let _ = writeln!(
            out,
            "config hash:    {}",
            output::or_dash(status.hash.clone())
        );
    }
    let mut planes: Vec<&DataPlane> = status.data_planes.iter().collect();
    planes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    if planes.is_empty() {
        out.push_str("data planes:    none known\n");
        return out;
    }
    let current = planes
        .iter()
        .filter(|dp| matches!(standing(status, dp), Standing::Current))
        .count();
    let _ = writeln!(
        out,
        "data planes:    {current} of {} on version {}",
        planes.len(),
        version(status.version)
    );

    let rejected: Vec<&DataPlane> = planes
        .iter()
        .filter_map(|dp| match standing(status, dp) {
            Standing::Rejected(dp) => Some(dp),
            _ => None,
        })
        .collect();
    if !rejected.is_empty() {
        out.push_str("\nrejected:\n");
        for dp in rejected {
            let _ = writeln!(
                out,
                "  {}: rejected version {}, still serving version {}{}",
                dp.node_id,
                dp.rejected_version,
                version(dp.applied_version),
                connection(dp)
            );
            for error in &dp.rejection_errors {
                let _ = writeln!(out, "    {}", violation(error));
            }
        }
    }

    let behind: Vec<&DataPlane> = planes
        .iter()
        .filter_map(|dp| match standing(status, dp) {
            Standing::Behind(dp) => Some(dp),
            _ => None,
        })
        .collect();
    if !behind.is_empty() {
        out.push_str("\nbehind:\n");
        for dp in behind {
            let _ = writeln!(
                out,
                "  {}: on version {}{}",
                dp.node_id,
                version(dp.applied_version),
                connection(dp)
            );
            if dp.rejected_version != 0 {
                let _ = writeln!(out, "    last rejected version {}:", dp.rejected_version);
                for error in &dp.rejection_errors {
                    let _ = writeln!(out, "      {}", violation(error));
                }
            }
        }
    }
    out
}

fn connection(dp: &DataPlane) -> String {
    let mut notes = Vec::new();
    if !dp.connected {
        notes.push(format!("disconnected, last seen {}", ago(&dp.last_seen)));
    }
    if dp.stale {
        notes.push("serving from its on-disk cache".to_owned());
    }
    if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use gateway_proto::v1::FieldViolation;

    use super::*;

    fn plane(node_id: &str, applied: u64, rejected: u64) -> DataPlane {
        DataPlane {
            node_id: node_id.into(),
            connected: true,
            applied_version: applied,
            rejected_version: rejected,
            ..Default::default()
        }
    }

    #[test]
    fn names_current_behind_and_rejected_planes() {
        let mut rejecting = plane("dp-c", 41, 42);
        rejecting.rejection_errors = vec![FieldViolation {
            resource: "route/api".into(),
            field: "match.prefix".into(),
            reason: "must start with '/'".into(),
        }];
        let mut gone = plane("dp-b", 40, 0);
        gone.connected = false;
        let status = Status {
            version: 42,
            hash: "abc".into(),
            data_planes: vec![plane("dp-a", 42, 0), gone, rejecting],
        };
        let text = render(&status);
        assert!(text.contains("config version: 42"), "{text}");
        assert!(text.contains("config hash:    abc"), "{text}");
        assert!(text.contains("1 of 3 on version 42"), "{text}");
        assert!(
            text.contains("dp-c: rejected version 42, still serving version 41"),
            "{text}"
        );
        assert!(
            text.contains("    route/api match.prefix: must start with '/'"),
            "{text}"
        );
        assert!(text.contains("dp-b: on version 40 (disconnected"), "{text}");
        assert!(!text.contains("dp-a:"), "{text}");
    }

    #[test]
    fn an_older_rejection_of_a_plane_that_is_current_is_not_shown() {
        let status = Status {
            version: 5,
            hash: "h".into(),
            data_planes: vec![plane("dp-a", 5, 4)],
        };
        let text = render(&status);
        assert!(text.contains("1 of 1 on version 5"), "{text}");
        assert!(!text.contains("rejected"), "{text}");
    }
}
