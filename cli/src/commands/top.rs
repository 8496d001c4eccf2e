//! `gatewayctl top`: live traffic per route and upstream, summed over the data planes' reports
//! (requests/s, error rate, p99), refreshed every few seconds as a terminal table.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::time::Duration;

use clap::Args;
use gateway_proto::v1::{GetTrafficRequest, Traffic, TrafficRate};

use super::Context;
use crate::output::{self, Format};

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Time between refreshes
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Print one snapshot and exit (also the behaviour with -o json or -o yaml)
    #[arg(long)]
    once: bool,
}

pub async fn run(ctx: &Context, args: TopArgs) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let live = !args.once && matches!(ctx.format, Format::Table | Format::Wide);
    loop {
        let traffic = client
            .get_traffic(GetTrafficRequest {})
            .await
            .map_err(|s| ctx.rpc_error(s))?
            .into_inner();
        let text = render(&traffic);
        if !live {
            return output::message(ctx.format, &traffic, &text);
        }
        // Redraw in place on a terminal; elsewhere, frames follow each other.
        if std::io::stdout().is_terminal() {
            print!("\x1b[2J\x1b[H");
        }
        output::emit(&text)?;
        tokio::time::sleep(args.interval).await;
    }
}

fn render(traffic: &Traffic) -> String {
    let mut out = String::new();
    if traffic.as_of.is_empty() {
        out.push_str("no traffic reported by any connected data plane in the last 15 s\n");
        return out;
    }
    let _ = writeln!(
        out,
        "traffic as of {} (summed over data planes)\n",
        traffic.as_of
    );
    section(&mut out, "ROUTE", &traffic.routes);
    out.push('\n');
    section(&mut out, "UPSTREAM", &traffic.upstreams);
    out
}

fn section(out: &mut String, noun: &str, rates: &[TrafficRate]) {
    let _ = writeln!(
        out,
        "{noun:<24} {:>10} {:>8} {:>10} {:>10} {:>10}",
        "REQ/S", "ERR%", "P99 MS", "IN/S", "OUT/S"
    );
    if rates.is_empty() {
        let _ = writeln!(out, "(none)");
    }
    let mut rates: Vec<&TrafficRate> = rates.iter().collect();
    rates.sort_by(|a, b| {
        b.requests_per_second
            .total_cmp(&a.requests_per_second)
            .then(a.name.cmp(&b.name))
    });
    for rate in rates {
        let _ = writeln!(
            out,
            "{:<24} {:>10.1} {:>8.2} {:>10.1} {:>10} {:>10}",
            rate.name,
            rate.requests_per_second,
            rate.error_ratio * 100.0,
            rate.latency_p99_ms,
            bytes(rate.bytes_in_per_second),
            bytes(rate.bytes_out_per_second),
        );
    }
}

fn bytes(per_second: u64) -> String {
    match per_second {
        b if b >= 1 << 20 => format!("{:.1}M", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.1}K", b as f64 / f64::from(1 << 10)),
        b => b.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busiest_first_with_rates_and_units() {
        let rate = |name: &str, rps: f64| TrafficRate {
            name: name.into(),
            requests_per_second: rps,
            error_ratio: 0.025,
            latency_p99_ms: 12.5,
            bytes_in_per_second: 2048,
            bytes_out_per_second: 3 << 20,
        };
        let traffic = Traffic {
            routes: vec![rate("quiet", 1.0), rate("busy", 250.0)],
            upstreams: vec![],
            as_of: "2026-11-26T10:00:00Z".into(),
        };
        let text = render(&traffic);
        let busy = text.find("busy").unwrap();
        assert!(busy < text.find("quiet").unwrap(), "{text}");
        assert!(
            text.contains("250.0")
                && text.contains("2.50")
                && text.contains("3.0M")
                && text.contains("2.0K"),
            "{text}"
        );
        assert!(text.contains("(none)"), "{text}");
    }

    #[test]
    fn says_when_nothing_is_reported() {
        assert!(render(&Traffic::default()).starts_with("no traffic"));
    }
}
