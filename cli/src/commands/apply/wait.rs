//! `apply --wait`: after the write, watch `GetStatus` until every connected data plane has applied
//! the version (or a later one), one rejected it, or the time is up.
//!
//! Only connected data planes are waited for: a disconnected one will get the version when it
//! reconnects, and waiting for it could take forever. A rejection is reported from any data plane,
//! at once: waiting longer cannot turn it into a success.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::time::{Duration, Instant};

use anyhow::bail;
use gateway_proto::v1::{DataPlane, GetStatusRequest};

use crate::commands::Context;
use crate::commands::dataplane::{version as version_text, violation};

/// How often `GetStatus` is asked.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Where the data planes stand with respect to one version.
#[derive(Debug, PartialEq)]
pub enum WaitState<'a> {
    /// No data plane is connected: nothing to wait for.
    NoneConnected,
    /// Every connected data plane applied the version or a later one.
    Converged { total: usize },
    /// At least one data plane rejected the version (and has not applied a later one since).
    Rejected(Vec<&'a DataPlane>),
    /// Some connected data planes are still on an older version.
    Waiting {
        applied: usize,
        total: usize,
        behind: Vec<&'a DataPlane>,
    },
}

pub fn classify(target: u64, planes: &[DataPlane]) -> WaitState<'_> {
    let mut planes: Vec<&DataPlane> = planes.iter().collect();
    planes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    let rejected: Vec<&DataPlane> = planes
        .iter()
        .copied()
        .filter(|dp| dp.rejected_version >= target && dp.rejected_version > dp.applied_version)
        .collect();
    if !rejected.is_empty() {
        return WaitState::Rejected(rejected);
    }
    let connected: Vec<&DataPlane> = planes.into_iter().filter(|dp| dp.connected).collect();
    if connected.is_empty() {
        return WaitState::NoneConnected;
    }
    let total = connected.len();
    let behind: Vec<&DataPlane> = connected
        .into_iter()
        .filter(|dp| dp.applied_version < target)
        .collect();
    if behind.is_empty() {
        WaitState::Converged { total }
    } else {
        WaitState::Waiting {
            applied: total - behind.len(),
            total,
            behind,
        }
    }
}

/// Polls until the data planes converge on `target` (Ok), one rejects it or `timeout` passes
/// (Err naming the data planes and why).
pub async fn wait_for(ctx: &Context, target: u64, timeout: Duration) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let deadline = Instant::now() + timeout;
    let mut progress = Progress::new();
    loop {
        let status = client
            .get_status(GetStatusRequest {})
            .await
            .map_err(|s| ctx.rpc_error(s))?
            .into_inner();
        match classify(target, &status.data_planes) {
            WaitState::NoneConnected => {
                progress.finish(&format!(
                    "no data planes are connected; nothing to wait for (version {target})"
                ));
                return Ok(());
            }
            WaitState::Converged { total } => {
                progress.finish(&format!(
                    "version {target} applied by {total} of {total} connected data planes"
                ));
                return Ok(());
            }
            WaitState::Rejected(planes) => {
                progress.finish("");
                bail!("{}", rejected_message(target, &planes));
            }
            WaitState::Waiting {
                applied,
                total,
                behind,
            } => {
                if Instant::now() >= deadline {
                    progress.finish("");
                    bail!("{}", timeout_message(target, timeout, &behind));
                }
                progress.show(&format!(
                    "waiting for version {target}: {applied}/{total} data planes applied"
                ));
            }
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline.saturating_duration_since(Instant::now())))
            .await;
    }
}

fn rejected_message(target: u64, planes: &[&DataPlane]) -> String {
    let mut text = format!(
        "version {target} was rejected by {} data plane{}:",
        planes.len(),
        plural(planes.len())
    );
    for dp in planes {
        let _ = write!(
            text,
            "\n  {}: rejected version {}, still serving version {}",
            dp.node_id,
            dp.rejected_version,
            version_text(dp.applied_version)
        );
        for error in &dp.rejection_errors {
            let _ = write!(text, "\n    {}", violation(error));
        }
    }
    text
}

fn timeout_message(target: u64, timeout: Duration, behind: &[&DataPlane]) -> String {
    let mut text = format!(
        "timed out after {} waiting for version {target}; {} data plane{} still behind:",
        humantime::format_duration(timeout),
        behind.len(),
        plural(behind.len())
    );
    for dp in behind {
        let _ = write!(
            text,
            "\n  {}: on version {}",
            dp.node_id,
            version_text(dp.applied_version)
        );
    }
    text
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The progress line on stderr: rewritten in place on a terminal, printed when it changes
/// otherwise (so a log shows each step once).
struct Progress {
    terminal: bool,
    last: String,
}

impl Progress {
    fn new() -> Self {
        Progress {
            terminal: std::io::stderr().is_terminal(),
            last: String::new(),
        }
    }

    fn show(&mut self, line: &str) {
        if line == self.last {
            return;
        }
        let mut stderr = std::io::stderr().lock();
        let _ = if self.terminal {
            write!(stderr, "\r\x1b[2K{line}")
        } else {
            writeln!(stderr, "{line}")
        };
        let _ = stderr.flush();
        line.clone_into(&mut self.last);
    }

    /// Ends the progress line, then prints `line` unless it is empty.
    fn finish(&mut self, line: &str) {
        let mut stderr = std::io::stderr().lock();
        if self.terminal && !self.last.is_empty() {
            let _ = write!(stderr, "\r\x1b[2K");
        }
        if !line.is_empty() {
            let _ = writeln!(stderr, "{line}");
        }
        self.last.clear();
    }
}

#[cfg(test)]
mod tests {
    use gateway_proto::v1::FieldViolation;

    use super::*;

    fn plane(node_id: &str, connected: bool, applied: u64, rejected: u64) -> DataPlane {
        DataPlane {
            node_id: node_id.into(),
            connected,
            applied_version: applied,
            rejected_version: rejected,
            ..Default::default()
        }
    }

    fn names(planes: &[&DataPlane]) -> Vec<String> {
        planes.iter().map(|dp| dp.node_id.clone()).collect()
    }

    #[test]
    fn no_connected_planes_means_nothing_to_wait_for() {
        assert_eq!(classify(5, &[]), WaitState::NoneConnected);
        assert_eq!(
            classify(5, &[plane("gone", false, 1, 0)]),
            WaitState::NoneConnected
        );
    }

    #[test]
    fn converged_when_every_connected_plane_is_at_or_past_the_version() {
        let planes = [
            plane("a", true, 5, 0),
            plane("b", true, 6, 0),
            plane("gone", false, 2, 0),
        ];
        assert_eq!(classify(5, &planes), WaitState::Converged { total: 2 });
    }

    #[test]
    fn waiting_counts_applied_and_names_the_planes_behind() {
        let planes = [
            plane("c", true, 4, 0),
            plane("a", true, 5, 0),
            plane("b", true, 3, 0),
            plane("gone", false, 1, 0),
        ];
        let WaitState::Waiting {
            applied,
            total,
            behind,
        } = classify(5, &planes)
        else {
            panic!("{:?}", classify(5, &planes));
        };
        assert_eq!((applied, total), (1, 3));
        assert_eq!(names(&behind), ["b", "c"]);
    }

    #[test]
    fn a_rejection_of_the_version_or_a_later_one_fails_at_once() {
        let planes = [
            plane("a", true, 5, 0),
            plane("b", true, 4, 5),
            plane("c", false, 4, 6),
            plane("d", true, 4, 0),
        ];
        let WaitState::Rejected(rejected) = classify(5, &planes) else {
            panic!("{:?}", classify(5, &planes));
        };
        assert_eq!(names(&rejected), ["b", "c"]);
    }

    #[test]
    fn older_or_superseded_rejections_do_not_count() {
        // b rejected 4, before our version; c rejected 5 but has applied 6 since.
        let planes = [plane("b", true, 3, 4), plane("c", true, 6, 5)];
        assert!(matches!(
            classify(5, &planes),
            WaitState::Waiting {
                applied: 1,
                total: 2,
                ..
            }
        ));
    }

    #[test]
    fn messages_name_planes_and_errors() {
        let mut dp = plane("dp-1", true, 4, 5);
        dp.rejection_errors = vec![FieldViolation {
            resource: "route/api".into(),
            field: "upstream".into(),
            reason: "unknown upstream".into(),
        }];
        let text = rejected_message(5, &[&dp]);
        assert_eq!(
            text,
            "version 5 was rejected by 1 data plane:\n  dp-1: rejected version 5, still serving \
             version 4\n    route/api upstream: unknown upstream"
        );
        let behind = plane("dp-2", true, 0, 0);
        let text = timeout_message(5, Duration::from_secs(60), &[&behind]);
        assert_eq!(
            text,
            "timed out after 1m waiting for version 5; 1 data plane still behind:\n  dp-2: on \
             version none"
        );
    }
}
