//! The gateway's data plane: a stateless HTTP/1.1, HTTP/2, gRPC and WebSocket proxy, plain or TLS, driven by snapshots from the control
//! plane. See `ARCHITECTURE.md` for the life of a request and of a config change.
//!
//! Invariants: the request path never waits on the control plane, the cache or a lock held
//! across I/O; a config is in service whole or not at all (one `ArcSwap` store); an ACK is sent
//! only after the table it acknowledges is in service. The data plane knows nothing of Postgres.

pub mod admin;
pub mod app;
pub mod balance;
pub mod cache;
pub mod discovery_client;
pub mod dns;
pub mod health;
pub mod lifecycle;
pub mod outlier;
pub mod proxy;
pub mod report;
pub mod retry;
pub mod route;
pub mod state;
pub mod table;
pub mod telemetry;
pub mod tls;
pub mod traffic;
pub mod upgrade;
