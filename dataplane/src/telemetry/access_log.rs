//! The access log: one JSON line per request, written off the request path.
//!
//! A finished request hands an [`AccessRecord`] (cheap clones of what it already has: the URI,
//! the Host value, the request id) to a bounded channel; a writer thread formats and writes
//! the lines, flushing whenever it has caught up. When the writer falls behind and the channel is
//! full, the line is dropped and counted (`gateway_access_log_dropped_lines_total`): a slow disk
//! never slows requests. Diagnostic logs are separate (stderr, `--log-format`).

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, Uri, Version};
use serde::Serialize;
use tokio::sync::mpsc::{self, error::TrySendError};

use super::metrics::RouteStats;
use crate::app::Gateway;
use crate::state::TargetState;

/// Lines waiting for the writer before new ones are dropped.
const QUEUE: usize = 16 * 1024;

/// Where access-log lines go: `stdout` or a file (appended to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    File(PathBuf),
}

impl std::str::FromStr for AccessLogTarget {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "" => Err("expected stdout or a file path".into()),
            "stdout" | "-" => Ok(AccessLogTarget::Stdout),
            path => Ok(AccessLogTarget::File(PathBuf::from(path))),
        }
    }
}

/// What one finished request leaves in the log.
#[derive(Debug)]
pub struct AccessRecord {
    pub time: SystemTime,
    pub method: Method,
    pub uri: Uri,
    pub host: Option<HeaderValue>,
    pub version: Version,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
    pub upstream_time: Option<Duration>,
    pub target: Option<Arc<TargetState>>,
    pub route: Option<Arc<RouteStats>>,
    pub request_id: HeaderValue,
    pub trace_id: Option<opentelemetry::trace::TraceId>,
    pub retries: u32,
}

/// The sending side, held by the proxy.
#[derive(Debug, Clone)]
pub struct AccessLog {
    sender: mpsc::Sender<AccessRecord>,
    gateway: Arc<Gateway>,
}

impl AccessLog {
    /// Opens `target` and starts the writer thread.
    pub fn start(target: &AccessLogTarget, gateway: Arc<Gateway>) -> io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match target {
            AccessLogTarget::Stdout => Box::new(io::stdout()),
            AccessLogTarget::File(path) => Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?,
            ),
        };
        let (sender, receiver) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(receiver, BufWriter::new(out)))?;
        Ok(AccessLog { sender, gateway })
    }

    /// Queues a line; drops and counts it if the writer is behind.
    pub fn send(&self, record: AccessRecord) {
        if let Err(TrySendError::Full(_) | TrySendError::Closed(_)) = self.sender.try_send(record) {
            self.gateway
                .metrics()
                .process
                .access_log_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn write_lines(
    mut receiver: mpsc::Receiver<AccessRecord>,
    mut out: BufWriter<Box<dyn Write + Send>>,
) {
    let mut line = Vec::with_capacity(512);
    while let Some(record) = receiver.blocking_recv() {
        let mut next = Some(record);
        while let Some(record) = next {
            // Nowhere to report a write failure but stderr; keep consuming so senders never
            // block.
            if format_line(&record, &mut line).is_ok() && out.write_all(&line).is_err() {
                eprintln!("access log: write failed");
            }
            next = receiver.try_recv().ok();
        }
        // Caught up: flush, so lines are visible promptly.
        let _ = out.flush();
    }
    let _ = out.flush();
}

/// Replaces `line` with the record's JSON line, newline included (the writer thread's work).
pub fn format_line(record: &AccessRecord, line: &mut Vec<u8>) -> serde_json::Result<()> {
    line.clear();
    serde_json::to_writer(&mut *line, &Line::from(record))?;
    line.push(b'\n');
    Ok(())
}

/// The JSON shape of a line.
#[derive(Debug, Serialize)]
struct Line<'a> {
    time: String,
    method: &'a str,
    authority: &'a str,
    path: &'a str,
    protocol: &'static str,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    duration_ms: f64,
    upstream_ms: Option<f64>,
    upstream_target: Option<&'a str>,
    route: Option<&'a str>,
    upstream: Option<&'a str>,
    request_id: &'a str,
    trace_id: Option<String>,
    retries: u32,
}

impl<'a> From<&'a AccessRecord> for Line<'a> {
    fn from(r: &'a AccessRecord) -> Line<'a> {
        let authority = r
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| r.host.as_ref().and_then(|h| h.to_str().ok()))
            .unwrap_or("");
        let route = r.route.as_deref().filter(|s| !s.route.is_empty());
        Line {
            time: humantime::format_rfc3339_millis(r.time).to_string(),
            method: r.method.as_str(),
            authority,
            path: r.uri.path(),
            protocol: protocol(r.version),
            status: r.status,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            duration_ms: millis(r.duration),
            upstream_ms: r.upstream_time.map(millis),
            upstream_target: r.target.as_deref().map(|t| &*t.address),
            route: route.map(|s| &*s.route),
            upstream: route.map(|s| &*s.upstream),
            request_id: r.request_id.to_str().unwrap_or(""),
            trace_id: r.trace_id.map(|t| t.to_string()),
            retries: r.retries,
        }
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_carries_every_field() {
        let record = AccessRecord {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            method: Method::POST,
            uri: Uri::from_static("/items/7?secret=1"),
            host: Some(HeaderValue::from_static("shop.local")),
            version: Version::HTTP_11,
            status: 201,
            bytes_in: 12,
            bytes_out: 34,
            duration: Duration::from_micros(2_500),
            upstream_time: Some(Duration::from_micros(1_250)),
            target: Some(Arc::new(TargetState::new("pool", "10.0.0.1:80"))),
            route: Some(Arc::new(RouteStats::new("shop", "pool"))),
            request_id: HeaderValue::from_static("rid-1"),
            trace_id: opentelemetry::trace::TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736")
                .ok(),
            retries: 1,
        };
        let line = serde_json::to_value(Line::from(&record)).unwrap();
        assert_eq!(
            line,
            serde_json::json!({
                "time": "2023-11-14T22:13:20.123Z",
                "method": "POST",
                "authority": "shop.local",
                "path": "/items/7",
                "protocol": "HTTP/1.1",
                "status": 201,
                "bytes_in": 12,
                "bytes_out": 34,
                "duration_ms": 2.5,
                "upstream_ms": 1.25,
                "upstream_target": "10.0.0.1:80",
                "route": "shop",
                "upstream": "pool",
                "request_id": "rid-1",
                "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                "retries": 1,
            })
        );
    }

    #[test]
    fn targets_parse() {
        assert_eq!("stdout".parse(), Ok(AccessLogTarget::Stdout));
        assert_eq!(
            "/var/log/a.log".parse(),
            Ok(AccessLogTarget::File("/var/log/a.log".into()))
        );
        assert!("".parse::<AccessLogTarget>().is_err());
    }

    #[tokio::test]
    async fn lines_are_dropped_and_counted_when_the_writer_is_gone() {
        let gateway = Gateway::new();
        let (sender, receiver) = mpsc::channel(1);
        drop(receiver);
        let log = AccessLog {
            sender,
            gateway: Arc::clone(&gateway),
        };
        log.send(AccessRecord {
            time: SystemTime::now(),
            method: Method::GET,
            uri: Uri::from_static("/"),
            host: None,
            version: Version::HTTP_11,
            status: 200,
            bytes_in: 0,
            bytes_out: 0,
            duration: Duration::ZERO,
            upstream_time: None,
            target: None,
            route: None,
            request_id: HeaderValue::from_static("x"),
            trace_id: None,
            retries: 0,
        });
        assert_eq!(
            gateway
                .metrics()
                .process
                .access_log_dropped
                .load(Ordering::Relaxed),
            1
        );
    }
}
