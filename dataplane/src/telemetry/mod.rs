//! What the data plane tells about itself: metrics (`/metrics`), request ids, the access log,
//! and traces (OTLP). (The traffic reports sent to the control plane are `crate::report`.)
//!
//! Invariant: the request path only bumps atomics on handles it already holds; whatever
//! formats, locks or does I/O runs elsewhere (the scrape, the access-log writer thread, the
//! span exporter's batch thread). The access log and tracing are off by
//! default, and then cost one branch per request.

pub mod access_log;
pub mod exposition;
pub mod histogram;
pub mod metrics;
pub mod otel;
pub mod request_id;

pub use access_log::{AccessLog, AccessLogTarget, AccessRecord};
pub use metrics::{
    ConnectionRegistry, ConnectionStats, LocalReason, Metrics, RetryReason, RouteStats,
    UpstreamStats, method_class, status_class,
};
pub use otel::{Tracing, TracingConfig};
