//! Small measurement helpers shared by the bench binaries: percentiles, medians of timed runs,
//! and a process's memory from `/proc`.

use std::time::{Duration, Instant};

use anyhow::Context;

/// The `p`-th percentile (0–100, nearest rank) of `samples`, which get sorted.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Runs `f` `iterations` times (at least once) and returns the median duration and the first
/// result.
pub fn median_of<T>(iterations: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let start = Instant::now();
    let first = std::hint::black_box(f());
    let mut times = vec![start.elapsed()];
    for _ in 1..iterations {
        let start = Instant::now();
        std::hint::black_box(f());
        times.push(start.elapsed());
    }
    (percentile(&mut times, 50.0), first)
}

/// `VmRSS` and `VmHWM` (peak RSS) of a process, in KiB.
pub fn memory_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .with_context(|| format!("no {name} in {path}"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub fn bytes(n: usize) -> String {
    if n >= 1024 * 1024 {
        format!("{:.2} MiB ({n} B)", n as f64 / (1024.0 * 1024.0))
    } else if n >= 1024 {
        format!("{:.1} KiB ({n} B)", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}
