//! End-to-end test support: the real `gateway-controlplane`, `gateway-dataplane` and `gatewayctl`
//! binaries, a throw-away Postgres database per test, and small HTTP upstreams to proxy to.
//!
//! Every test gets its own database, ports and temporary directories, so tests run in parallel.
//! Processes are killed when their handle drops; if the test is failing at that moment, the
//! tail of each process's log is printed so the failure explains itself.
//!
//! The binaries are not built by `cargo test` for this crate: run `cargo build --workspace --bins`
//! first (the CI script does).

mod cli;
mod db;
pub mod grpc;
mod http;
mod json;
mod otlp;
mod process;
mod sim;
pub mod tls;
mod upstream;
mod wait;

pub use cli::{CliOutput, gatewayctl, gatewayctl_with_stdin, output_of};
pub use db::TestDb;
pub use http::{HttpResponse, send, send_get};
pub use json::{u64_field, violation_fields};
pub use otlp::{CollectedSpan, OtlpCollector};
pub use process::{ControlPlane, DataPlane, Gateway, binary_path, free_port};
pub use sim::SimDataPlane;
pub use upstream::{HEALTH_PATH, SeenRequest, TestUpstream, dead_address};
pub use wait::{eventually, poll_until};
