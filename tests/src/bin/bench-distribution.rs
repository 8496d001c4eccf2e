//! Config distribution at scale ("Config distribution" issue): a real control plane on a fresh
//! Postgres database, 10,000 routes over 1,000 upstreams applied in one `POST /v1/apply`, then
//! simulated data planes (1, 10, 100) and one real data plane.
//!
//! ```sh
//! cargo build --release --workspace --bins
//! cargo run --release -p gateway-tests --bin bench-distribution [-- --routes 10000 --changes 20]
//! ```
//!
//! Prints a Markdown table: in-process costs of the snapshot pipeline (median of
//! `--iterations`), encoded sizes, commit-to-ACK latency per fleet size, the commit-to-in-service
//! latency of a real data plane, and the resident memory of both planes, each against the
//! issue's target where it has one.
//!
//! Clock: every latency is measured from just before the REST write is sent. The control plane
//! publishes the new snapshot before it answers the write, so "commit" cannot be observed more
//! precisely from outside; the figures are upper bounds of commit-to-ACK.

#[path = "support/config.rs"]
mod bench_config;
#[path = "support/stats.rs"]
mod stats;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use gateway_dataplane::app::{ConfigSource, Gateway, prepare};
use gateway_dataplane::table::compile;
use gateway_proto::delta;
use gateway_proto::hash::config_hash;
use gateway_proto::v1::{Config, Delta, Snapshot};
use gateway_proto::validate::validate_config;
use gateway_tests::{ControlPlane, DataPlane, SimDataPlane, TestDb, TestUpstream};
use http::Method;
use prost::Message;
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use stats::{bytes, median_of, memory_kib, mib, ms, percentile};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Ceiling for anything the benchmark waits on; beyond it the run fails rather than hangs.
const PATIENCE: Duration = Duration::from_secs(60);

/// Benchmarks config distribution against a real control plane.
#[derive(Debug, Parser)]
struct Flags {
    /// Routes in the config.
    #[arg(long, default_value_t = 10_000)]
    routes: usize,
    /// Upstreams in the config.
    #[arg(long, default_value_t = 1_000)]
    upstreams: usize,
    /// One-route changes measured per fleet size and for the real data plane.
    #[arg(long, default_value_t = 20)]
    changes: usize,
    /// Fleet sizes of simulated data planes, measured in this order (the fleet grows).
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    fleets: Vec<usize>,
    /// Repetitions of each in-process measurement (the median is shown).
    #[arg(long, default_value_t = 5)]
    iterations: usize,
}

/// One line of the result table.
struct Row {
    what: String,
    value: String,
    /// The target and whether it is met.
    target: Option<(&'static str, bool)>,
}

#[derive(Default)]
struct Report(Vec<Row>);

impl Report {
    fn add(&mut self, what: impl Into<String>, value: impl Into<String>) {
        let row = Row {
            what: what.into(),
            value: value.into(),
            target: None,
        };
        eprintln!("  {}: {}", row.what, row.value);
        self.0.push(row);
    }

    fn check(&mut self, what: impl Into<String>, value: String, target: &'static str, met: bool) {
        let row = Row {
            what: what.into(),
            value,
            target: Some((target, met)),
        };
        eprintln!(
            "  {}: {} (target {target}: {})",
            row.what,
            row.value,
            if met { "met" } else { "MISSED" }
        );
        self.0.push(row);
    }

    fn print(&self) {
        println!("| measurement | value | target | |");
        println!("|---|---|---|---|");
        for row in &self.0 {
            let (target, verdict) = match row.target {
                Some((target, true)) => (target, "met"),
                Some((target, false)) => (target, "**missed**"),
                None => ("", ""),
            };
            println!("| {} | {} | {target} | {verdict} |", row.what, row.value);
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    let mut report = Report::default();
    let upstream = TestUpstream::start("bench").await;
    let config = bench_config::config(flags.routes, flags.upstreams, |_| upstream.address());
    let scale = format!("{} routes, {} upstreams", flags.routes, flags.upstreams);

    eprintln!(
        "== in-process costs ({scale}), median of {}",
        flags.iterations
    );
    in_process(&flags, &config, &mut report).await?;

    eprintln!("== control plane on a fresh Postgres database");
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;
    let cp_pid = cp.pid().context("the control plane has no pid")?;
    let (idle_rss, _) = memory_kib(cp_pid)?;
    report.add("control plane RSS, empty config", mib(idle_rss));

    let mut revision = 0_u64;
    snapshot_sizes(&flags, &cp, &config, &mut revision, &mut report).await?;
    let (rss, _) = memory_kib(cp_pid)?;
    report.add(
        format!("control plane RSS, {scale}, no data plane connected"),
        mib(rss),
    );

    let mut fleet = Fleet::default();
    for &size in &flags.fleets {
        eprintln!("== fleet of {size} simulated data planes");
        fleet_round(&flags, &cp, &mut fleet, size, &mut revision, &mut report).await?;
    }
    let (rss, hwm) = memory_kib(cp_pid)?;
    let connected = fleet.tasks.len();
    report.check(
        format!("control plane RSS, {scale}, {connected} data planes connected (peak)"),
        format!("{} ({})", mib(rss), mib(hwm)),
        "< 200 MB",
        rss * 1024 < 200_000_000,
    );
    if connected > 0 {
        status_visibility(&flags, &cp, &mut fleet, &mut revision, &mut report).await?;
    }
    fleet.stop();

    eprintln!("== one real data plane");
    real_data_plane(&flags, &cp, &mut revision, &mut report).await?;
    stored_history(&db, &mut report).await?;

    println!();
    println!("### Config distribution ({scale})");
    println!();
    report.print();
    Ok(())
}

/// What each step of the snapshot pipeline costs, without processes or network.
async fn in_process(flags: &Flags, config: &Config, report: &mut Report) -> anyhow::Result<()> {
    let n = flags.iterations;
    let (t, json) = median_of(n, || serde_json::to_vec(config));
    let json = json?;
    report.add(
        "config → JSON (REST body; the store keeps one per version)",
        format!("{} in {}", bytes(json.len()), ms(t)),
    );
    let (t, parsed) = median_of(n, || serde_json::from_slice::<Config>(&json));
    parsed?;
    report.add(
        "JSON → config (the control plane parses it per published version)",
        ms(t),
    );
    let (t, hash) = median_of(n, || config_hash(config));
    report.add("config_hash (canonicalize + encode + SHA-256)", ms(t));
    let (t, encoded) = median_of(n, || config.encode_to_vec());
    report.add(
        "protobuf encode of the config",
        format!("{} in {}", bytes(encoded.len()), ms(t)),
    );
    let (t, decoded) = median_of(n, || Config::decode(encoded.as_slice()));
    decoded?;
    report.add("protobuf decode of the config", ms(t));
    let (t, valid) = median_of(n, || validate_config(config));
    ensure!(valid.is_ok(), "the benchmark config is invalid: {valid:?}");
    report.add("validate_config", ms(t));
    let (t, table) = median_of(n, || compile(config));
    ensure!(table.is_ok(), "the benchmark config does not compile");
    report.add("table::compile", ms(t));

    let mut changed = config.clone();
    let last = flags.routes.saturating_sub(1);
    changed.upsert(bench_config::route(last, flags.upstreams, Some(1)));
    changed.canonicalize();
    let (t, (upserted, removed)) = median_of(n, || delta::diff(config, &changed));
    report.add("delta::diff for a one-route change", ms(t));

    // The data plane's whole apply: hash check, validate, compile, then one ArcSwap store.
    let full = Snapshot {
        version: 1,
        hash,
        nonce: "bench".into(),
        config: Some(config.clone()),
        delta: None,
    };
    let (t, prepared) = median_of(n, || prepare(&full));
    ensure!(prepared.is_ok(), "prepare refused the benchmark config");
    report.add(
        "data plane prepare (hash check + validate + compile)",
        ms(t),
    );
    let gateway = Gateway::new();
    let mut times = Vec::new();
    for _ in 0..n.max(1) {
        let snapshot = full.clone();
        let start = Instant::now();
        gateway
            .apply(snapshot, ConfigSource::ControlPlane)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        times.push(start.elapsed());
    }
    let full_apply = percentile(&mut times, 50.0);
    report.check(
        "data plane apply, full snapshot (validate + compile + swap)",
        ms(full_apply),
        "< 100 ms",
        full_apply < Duration::from_millis(100),
    );

    // A one-route delta, as a data plane receives it per change: applied to the config in
    // service, then the whole result is hashed, validated and compiled again.
    let changed_hash = config_hash(&changed);
    let forward = Delta {
        base_version: 1,
        base_hash: full.hash.clone(),
        upserted: Some(upserted),
        removed,
    };
    let (back_upserted, back_removed) = delta::diff(&changed, config);
    let back = Delta {
        base_version: 2,
        base_hash: changed_hash.clone(),
        upserted: Some(back_upserted),
        removed: back_removed,
    };
    let mut times = Vec::new();
    for i in 0..n.max(1) {
        // Alternate 1 → 2 → 1 … so each delta's base is the config in service.
        let (version, hash, delta) = if i % 2 == 0 {
            (2, changed_hash.clone(), forward.clone())
        } else {
            (1, full.hash.clone(), back.clone())
        };
        let snapshot = Snapshot {
            version,
            hash,
            nonce: "bench".into(),
            config: None,
            delta: Some(delta),
        };
        let start = Instant::now();
        gateway
            .apply(snapshot, ConfigSource::ControlPlane)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        times.push(start.elapsed());
    }
    report.add(
        "data plane apply, one-route delta (resolve + validate + compile + swap)",
        ms(percentile(&mut times, 50.0)),
    );
    Ok(())
}

/// The full snapshot's size and time to reach a data plane, then a one-route change's delta.
async fn snapshot_sizes(
    flags: &Flags,
    cp: &ControlPlane,
    config: &Config,
    revision: &mut u64,
    report: &mut Report,
) -> anyhow::Result<()> {
    // Not ACKed: a data plane holding nothing gets the next version whole, not as a delta.
    let mut probe = SimDataPlane::connect(cp.grpc_addr(), "probe", None).await?;
    probe.next_snapshot(PATIENCE).await?;

    let body = serde_json::to_value(config)?;
    let start = Instant::now();
    let response = cp.rest(Method::POST, "/v1/apply", Some(&body)).await;
    let written = start.elapsed();
    ensure!(
        response.status.is_success(),
        "POST /v1/apply answered {}: {}",
        response.status,
        response.text()
    );
    let full = probe.next_snapshot(PATIENCE).await?;
    let received = start.elapsed();
    ensure!(
        full.config.is_some(),
        "the first snapshot is not a full one"
    );
    probe.ack(&full).await?;
    report.add(
        format!(
            "POST /v1/apply of {} routes + {} upstreams (one transaction)",
            flags.routes, flags.upstreams
        ),
        ms(written),
    );
    report.add(
        "apply sent → full snapshot received by a data plane",
        ms(received),
    );
    report.add("full snapshot message", bytes(full.encoded_len()));

    *revision += 1;
    let start = Instant::now();
    change_route(cp, flags, *revision).await?;
    let written = start.elapsed();
    let update = probe.next_snapshot(PATIENCE).await?;
    let received = start.elapsed();
    probe.ack(&update).await?;
    let delta = update
        .delta
        .as_ref()
        .context("a data plane holding the previous version got a full snapshot, not a delta")?;
    let routes = delta.upserted.as_ref().map_or(0, |u| u.routes.len());
    report.add("one-route change: PUT /v1/routes/{name}", ms(written));
    report.add(
        "one-route change: write sent → delta received",
        ms(received),
    );
    report.check(
        format!("one-route change: bytes sent to a data plane ({routes} route in the delta)"),
        bytes(update.encoded_len()),
        "< 10 KB",
        update.encoded_len() < 10 * 1024,
    );
    Ok(())
}

/// Replaces the last route with a new `x-bench-rev` header value; returns the new version.
async fn change_route(cp: &ControlPlane, flags: &Flags, revision: u64) -> anyhow::Result<u64> {
    let last = flags.routes.saturating_sub(1);
    let route = bench_config::route(last, flags.upstreams, Some(revision));
    let path = format!("/v1/routes/{}", route.name);
    let body = serde_json::to_value(&route)?;
    let response = cp.rest(Method::PUT, &path, Some(&body)).await;
    ensure!(
        response.status.is_success(),
        "PUT {path} answered {}: {}",
        response.status,
        response.text()
    );
    response
        .header("x-config-version")
        .and_then(|v| v.parse().ok())
        .context("the write has no x-config-version header")
}

/// An ACK as a simulated data plane sent it.
struct AckSeen {
    node: usize,
    version: u64,
    at: Instant,
}

/// Simulated data planes that ACK every snapshot at once, reporting each ACK.
struct Fleet {
    tasks: Vec<JoinHandle<()>>,
    acks_tx: mpsc::UnboundedSender<AckSeen>,
    acks: mpsc::UnboundedReceiver<AckSeen>,
    /// The newest version each node has ACKed.
    held: Vec<u64>,
}

impl Default for Fleet {
    fn default() -> Self {
        let (acks_tx, acks) = mpsc::unbounded_channel();
        Fleet {
            tasks: Vec::new(),
            acks_tx,
            acks,
            held: Vec::new(),
        }
    }
}

impl Fleet {
    async fn grow(&mut self, cp: &ControlPlane, size: usize) -> anyhow::Result<()> {
        while self.tasks.len() < size {
            let node = self.tasks.len();
            let mut sim = SimDataPlane::connect(cp.grpc_addr(), &format!("sim-{node}"), None)
                .await
                .with_context(|| format!("connecting sim-{node}"))?;
            let acks = self.acks_tx.clone();
            self.tasks.push(tokio::spawn(async move {
                while let Ok(snapshot) = sim.next_snapshot(Duration::from_secs(3600)).await {
                    if sim.ack(&snapshot).await.is_err() {
                        return;
                    }
                    let seen = AckSeen {
                        node,
                        version: snapshot.version,
                        at: Instant::now(),
                    };
                    if acks.send(seen).is_err() {
                        return;
                    }
                }
            }));
            self.held.push(0);
        }
        Ok(())
    }

    /// Waits until every node has ACKed `version` or later; returns, per node, when it sent the
    /// first such ACK.
    async fn all_acked(&mut self, version: u64) -> anyhow::Result<Vec<Instant>> {
        // Nodes that already hold it send no new ACK; their time is not a latency (joins only).
        let now = Instant::now();
        let mut when: HashMap<usize, Instant> = (0..self.held.len())
            .filter(|&n| self.held[n] >= version)
            .map(|n| (n, now))
            .collect();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while when.len() < self.held.len() {
            let seen = tokio::time::timeout_at(deadline, self.acks.recv())
                .await
                .with_context(|| {
                    format!(
                        "only {} of {} data planes ACKed version {version} within {PATIENCE:?}",
                        when.len(),
                        self.held.len()
                    )
                })?
                .context("every simulated data plane has stopped")?;
            if let Some(held) = self.held.get_mut(seen.node) {
                *held = (*held).max(seen.version);
            }
            if seen.version >= version {
                when.entry(seen.node).or_insert(seen.at);
            }
        }
        Ok((0..self.held.len())
            .filter_map(|n| when.get(&n).copied())
            .collect())
    }

    fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        self.held.clear();
    }
}

async fn fleet_round(
    flags: &Flags,
    cp: &ControlPlane,
    fleet: &mut Fleet,
    size: usize,
    revision: &mut u64,
    report: &mut Report,
) -> anyhow::Result<()> {
    let joined = fleet.tasks.len();
    let start = Instant::now();
    fleet.grow(cp, size).await?;
    let version = cp.version().await;
    fleet.all_acked(version).await?;
    if size > joined {
        report.add(
            format!("fleet grows {joined} → {size}: every newcomer has ACKed the full snapshot"),
            ms(start.elapsed()),
        );
    }

    let mut latencies = Vec::new();
    let mut writes = Vec::new();
    for _ in 0..flags.changes {
        *revision += 1;
        let start = Instant::now();
        let version = change_route(cp, flags, *revision).await?;
        writes.push(start.elapsed());
        let acks = fleet.all_acked(version).await?;
        latencies.extend(acks.iter().map(|at| at.saturating_duration_since(start)));
        // Let the control plane record the ACKs before the next change.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let p50 = percentile(&mut latencies, 50.0);
    let p99 = percentile(&mut latencies, 99.0);
    let value = format!(
        "p50 {} · p99 {} · max {} (write p50 {})",
        ms(p50),
        ms(p99),
        ms(percentile(&mut latencies, 100.0)),
        ms(percentile(&mut writes, 50.0))
    );
    let what = format!(
        "commit → ACK, {size} data plane{}, {} one-route changes",
        if size == 1 { "" } else { "s" },
        flags.changes
    );
    if size >= 100 {
        report.check(
            what,
            value,
            "p99 < 500 ms",
            p99 < Duration::from_millis(500),
        );
    } else {
        report.add(what, value);
    }
    Ok(())
}

/// How long until `/v1/status` shows every data plane at the new version: the control plane
/// records each ACK in the database.
async fn status_visibility(
    flags: &Flags,
    cp: &ControlPlane,
    fleet: &mut Fleet,
    revision: &mut u64,
    report: &mut Report,
) -> anyhow::Result<()> {
    let size = fleet.tasks.len();
    *revision += 1;
    let start = Instant::now();
    let version = change_route(cp, flags, *revision).await?;
    fleet.all_acked(version).await?;
    let acked = start.elapsed();
    loop {
        let status = cp.status().await;
        let applied = status
            .get("data_planes")
            .or_else(|| status.get("dataPlanes"))
            .and_then(Value::as_array)
            .map(|dps| {
                dps.iter()
                    .filter(|dp| {
                        dp.get("node_id")
                            .or_else(|| dp.get("nodeId"))
                            .and_then(Value::as_str)
                            .is_some_and(|id| id.starts_with("sim-"))
                    })
                    .filter(|dp| {
                        gateway_tests::u64_field(dp, "applied_version")
                            .or_else(|_| gateway_tests::u64_field(dp, "appliedVersion"))
                            .is_ok_and(|v| v >= version)
                    })
                    .count()
            })
            .unwrap_or(0);
        if applied >= size {
            break;
        }
        if start.elapsed() > PATIENCE {
            bail!("/v1/status shows {applied} of {size} data planes at version {version}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    report.add(
        format!("commit → all {size} ACKs sent · → all visible in /v1/status"),
        format!("{} · {}", ms(acked), ms(start.elapsed())),
    );
    Ok(())
}

/// What the version history costs in Postgres: every version stores the whole config.
async fn stored_history(db: &TestDb, report: &mut Report) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(db.url()).await?;
    let (versions, table_bytes, raw, stored): (i64, i64, i32, i32) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM config_versions), \
                pg_total_relation_size('config_versions'), \
                (SELECT octet_length(config) FROM config_versions ORDER BY version DESC LIMIT 1), \
                (SELECT pg_column_size(config) FROM config_versions ORDER BY version DESC LIMIT 1)",
    )
    .fetch_one(&mut conn)
    .await?;
    let size = |n: i64| bytes(usize::try_from(n).unwrap_or(0));
    report.add(
        format!("stored history: {versions} versions in config_versions"),
        format!(
            "{} on disk; the newest row holds the whole config: {} of JSON, {} stored",
            size(table_bytes),
            size(raw.into()),
            size(stored.into())
        ),
    );
    conn.close().await?;
    Ok(())
}

/// A real data plane: time to its first full apply, its memory, and how long a one-route change
/// takes to be in service (seen by the upstream as the new `x-bench-rev` header).
async fn real_data_plane(
    flags: &Flags,
    cp: &ControlPlane,
    revision: &mut u64,
    report: &mut Report,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut dp = DataPlane::start(cp.grpc_addr(), "dp-bench").await;
    let version = cp.version().await;
    dp.wait_for_version(version).await;
    report.add(
        format!(
            "real data plane: process start → version applied ({} routes)",
            flags.routes
        ),
        ms(start.elapsed()),
    );
    let pid = dp.pid().context("the data plane has no pid")?;
    let (rss, hwm) = memory_kib(pid)?;
    report.check(
        format!(
            "data plane RSS with {} routes / {} upstreams (peak)",
            flags.routes, flags.upstreams
        ),
        format!("{} ({})", mib(rss), mib(hwm)),
        "≤ 60 MB",
        rss * 1024 <= 60_000_000,
    );

    let (host, path) = bench_config::route_request(flags.routes.saturating_sub(1));
    let mut latencies = Vec::new();
    for _ in 0..flags.changes {
        *revision += 1;
        let start = Instant::now();
        change_route(cp, flags, *revision).await?;
        let wanted = revision.to_string();
        loop {
            let response = dp.get(&host, &path).await?;
            let seen = response
                .header("x-echo-headers")
                .and_then(|h| serde_json::from_str::<Value>(h).ok())
                .and_then(|h| {
                    h.get("x-bench-rev")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                });
            if seen.as_deref() == Some(wanted.as_str()) {
                break;
            }
            if start.elapsed() > PATIENCE {
                bail!("revision {wanted} not in service after {PATIENCE:?} (seen {seen:?})");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(start.elapsed());
    }
    report.add(
        format!(
            "real data plane: write sent → change in service, {} changes",
            flags.changes
        ),
        format!(
            "p50 {} · p99 {}",
            ms(percentile(&mut latencies, 50.0)),
            ms(percentile(&mut latencies, 99.0))
        ),
    );
    let (rss, hwm) = memory_kib(pid)?;
    report.add(
        "data plane RSS after the changes (peak)",
        format!("{} ({})", mib(rss), mib(hwm)),
    );
    dp.assert_running();
    Ok(())
}
