//! `grpc.health.v1` for Kubernetes `grpc:` probes and load balancers: the server (`""`) and both
//! gateway services are SERVING while the store answers, NOT_SERVING while it does not — the
//! gRPC twin of `/readyz`.

use std::time::Duration;

use tokio::sync::watch;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::HealthReporter;

use crate::store::Store;

/// The names reported on, besides the whole server (`""`).
const SERVICES: [&str; 2] = ["gateway.v1.AdminService", "gateway.v1.DiscoveryService"];

/// How often the store is checked.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// The `grpc.health.v1.Health` service. Everything starts NOT_SERVING; a task then follows the
/// store's health until `stop` changes.
pub async fn service(
    store: Store,
    mut stop: watch::Receiver<bool>,
) -> HealthServer<impl tonic_health::pb::health_server::Health> {
    let (reporter, server) = tonic_health::server::health_reporter();
    set_all(&reporter, ServingStatus::NotServing).await;
    tokio::spawn(async move {
        tokio::select! {
            () = follow(store, reporter) => {}
            _ = stop.wait_for(|stop| *stop) => {}
        }
    });
    server
}

async fn follow(store: Store, reporter: HealthReporter) {
    let mut last = None;
    loop {
        let status = match store.ping().await {
            Ok(()) => ServingStatus::Serving,
            Err(error) => {
                if last != Some(ServingStatus::NotServing) {
                    tracing::warn!(%error, "store unreachable: gRPC health is NOT_SERVING");
                }
                ServingStatus::NotServing
            }
        };
        if last != Some(status) {
            set_all(&reporter, status).await;
            last = Some(status);
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

async fn set_all(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for service in SERVICES {
        reporter.set_service_status(service, status).await;
    }
}
