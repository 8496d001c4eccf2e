//! An open-loop HTTP/1.1 load generator: requests are sent on a fixed schedule whatever the
//! server's speed, so latency percentiles are not flattered by a slow server slowing the client
//! down (coordinated omission). The model is wrk2's: each of `--connections` keep-alive
//! connections sends at `rate / connections` per second, connections staggered evenly.
//!
//! A request's latency runs from its scheduled time when the connection was still busy with
//! the previous response at that time (the wait is the server's doing), and from the moment it
//! was actually written otherwise (so the timer's wake-up slack, ~1 ms, is not counted).
//!
//! ```sh
//! bench-openloop --url http://127.0.0.1:19081/1k --rate 10000 --connections 50 --duration 5
//! ```
//!
//! Prints one line of `key=value` pairs: `requests rate errors non2xx late p50_ms p90_ms p99_ms
//! p999_ms max_ms`, where `late` counts requests sent behind schedule.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Open-loop HTTP/1.1 load at a fixed rate, with latency percentiles.
#[derive(Debug, Parser)]
struct Flags {
    /// `http://host:port/path` to GET.
    #[arg(long)]
    url: Uri,
    /// Host header [default: the URL's authority].
    #[arg(long)]
    host: Option<String>,
    /// Total requests per second, spread evenly over the connections.
    #[arg(long, short)]
    rate: f64,
    /// Keep-alive connections.
    #[arg(long, short, default_value_t = 50)]
    connections: usize,
    /// Seconds measured.
    #[arg(long, short, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// OS threads, each with a single-threaded runtime and its share of the connections.
    #[arg(long, short, default_value_t = 1)]
    threads: usize,
}

/// What one connection saw in the measured window.
#[derive(Default)]
struct Tally {
    /// Microseconds.
    latencies: Vec<u32>,
    errors: u64,
    non_2xx: u64,
    late: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        self.non_2xx += other.non_2xx;
        self.late += other.late;
    }
}

/// Where and what to send; shared by every connection.
#[derive(Clone)]
struct Target {
    addr: String,
    host: String,
    path: String,
}

/// One connection's schedule: first send at `first`, then every `interval`; requests scheduled
/// in `[measure_from, end)` are recorded.
#[derive(Clone, Copy)]
struct Schedule {
    first: Instant,
    interval: Duration,
    measure_from: Instant,
    end: Instant,
}

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    if flags.rate.is_nan() || flags.rate <= 0.0 || flags.connections == 0 || flags.duration <= 0.0 {
        bail!("--rate, --connections and --duration must be positive");
    }
    let authority = flags
        .url
        .authority()
        .context("--url needs host:port")?
        .clone();
    let port = authority.port_u16().unwrap_or(80);
    let target = Target {
        addr: format!("{}:{port}", authority.host()),
        host: flags.host.clone().unwrap_or_else(|| authority.to_string()),
        path: flags
            .url
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned()),
    };
    let threads = flags.threads.clamp(1, flags.connections);
    let interval = Duration::from_secs_f64(flags.connections as f64 / flags.rate);
    // Connections open during the first 200 ms; the schedule starts after.
    let first = Instant::now() + Duration::from_millis(200);
    let measure_from = first + Duration::from_secs_f64(flags.warmup.max(0.0));
    let end = measure_from + Duration::from_secs_f64(flags.duration);

    let mut workers = Vec::new();
    for thread in 0..threads {
        let target = target.clone();
        let connections: Vec<usize> = (thread..flags.connections).step_by(threads).collect();
        let total = flags.connections;
        workers.push(std::thread::spawn(move || -> anyhow::Result<Tally> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let tasks: Vec<_> = connections
                    .into_iter()
                    .map(|k| {
                        // Stagger the connections evenly over one interval.
                        let offset = interval.mul_f64(k as f64 / total as f64);
                        let schedule = Schedule {
                            first: first + offset,
                            interval,
                            measure_from,
                            end,
                        };
                        tokio::spawn(connection(target.clone(), schedule))
                    })
                    .collect();
                let mut tally = Tally::default();
                for task in tasks {
                    tally.merge(task.await?);
                }
                Ok(tally)
            })
        }));
    }
    let mut tally = Tally::default();
    for worker in workers {
        match worker.join() {
            Ok(result) => tally.merge(result?),
            Err(_) => bail!("a load thread panicked"),
        }
    }
    print_summary(&mut tally, flags.duration);
    Ok(())
}

fn print_summary(tally: &mut Tally, duration: f64) {
    tally.latencies.sort_unstable();
    let n = tally.latencies.len();
    let at = |p: f64| -> f64 {
        if n == 0 {
            return 0.0;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        f64::from(tally.latencies[rank.clamp(1, n) - 1]) / 1000.0
    };
    println!(
        "requests={n} rate={:.0} errors={} non2xx={} late={} p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} p999_ms={:.3} max_ms={:.3}",
        n as f64 / duration,
        tally.errors,
        tally.non_2xx,
        tally.late,
        at(50.0),
        at(90.0),
        at(99.0),
        at(99.9),
        at(100.0),
    );
}

async fn connect(target: &Target) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(&target.addr)
        .await
        .with_context(|| format!("connecting to {}", target.addr))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the server closes or the sender is dropped; errors surface on send.
        let _ = connection.await;
    });
    Ok(sender)
}

async fn connection(target: Target, schedule: Schedule) -> Tally {
    let mut tally = Tally::default();
    let mut sender = None;
    let mut scheduled = schedule.first;
    while scheduled < schedule.end {
        let measured = scheduled >= schedule.measure_from;
        if sender.is_none() {
            match connect(&target).await {
                Ok(s) => sender = Some(s),
                Err(_) => {
                    if measured {
                        tally.errors += 1;
                    }
                    scheduled += schedule.interval;
                    tokio::time::sleep_until(scheduled).await;
                    continue;
                }
            }
        }
        let Some(send) = sender.as_mut() else {
            continue;
        };
        let now = Instant::now();
        let since = if now < scheduled {
            tokio::time::sleep_until(scheduled).await;
            Instant::now()
        } else {
            if measured && now > scheduled + Duration::from_millis(1) {
                tally.late += 1;
            }
            scheduled
        };
        match request(send, &target).await {
            Ok(status_ok) => {
                if measured {
                    let micros = since.elapsed().as_micros();
                    tally
                        .latencies
                        .push(u32::try_from(micros).unwrap_or(u32::MAX));
                    if !status_ok {
                        tally.non_2xx += 1;
                    }
                }
            }
            Err(_) => {
                if measured {
                    tally.errors += 1;
                }
                sender = None;
            }
        }
        scheduled += schedule.interval;
    }
    tally
}

/// Sends one GET and reads the whole response; true when the status is 2xx.
async fn request(send: &mut SendRequest<Empty<Bytes>>, target: &Target) -> anyhow::Result<bool> {
    send.ready().await?;
    let request = Request::get(target.path.as_str())
        .header(header::HOST, target.host.as_str())
        .body(Empty::new())?;
    let response = send.send_request(request).await?;
    let ok = response.status().is_success();
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        frame?;
    }
    Ok(ok)
}
