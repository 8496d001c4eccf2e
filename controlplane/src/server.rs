//! Assembles the running control plane on two bound listeners: the REST app and the gRPC server
//! (admin, discovery), both behind authentication, until shutdown. `main` and the API tests both
//! start it this way, so tests exercise exactly what ships.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gateway_proto::v1::admin_service_server::AdminServiceServer;
use gateway_proto::v1::discovery_service_server::DiscoveryServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::api;
use crate::auth::{AuthSettings, Authenticator};
use crate::discovery::{DiscoveryServer, MAX_MESSAGE_BYTES};
use crate::grpc_health;
use crate::service::ConfigService;
use crate::snapshot::Snapshots;
use crate::store::Store;
use crate::telemetry::Metrics;

/// How long open admin calls and discovery streams get to finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub struct ServerConfig {
    pub poll_interval: Duration,
    pub max_snapshot_bytes: usize,
    pub bootstrap_token: Option<String>,
    pub insecure_no_auth: bool,
    /// Shared with the tracing layer that times store queries.
    pub metrics: Arc<Metrics>,
}

/// Serves until `stop` completes, then gives open calls [`SHUTDOWN_GRACE`] to finish.
pub async fn serve(
    store: Store,
    rest: TcpListener,
    grpc: TcpListener,
    config: ServerConfig,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (rest_addr, grpc_addr) = (rest.local_addr()?, grpc.local_addr()?);
    let auth = Authenticator::configure(
        store.clone(),
        AuthSettings {
            bootstrap_token: config.bootstrap_token,
            insecure_no_auth: config.insecure_no_auth,
            listeners: vec![("--rest-listen", rest_addr), ("--grpc-listen", grpc_addr)],
        },
    )
    .await?;

    let snapshots = Snapshots::load(store.clone(), Arc::clone(&config.metrics))
        .await
        .context("loading the current config")?;
    snapshots.spawn_followers(config.poll_interval);
    let service = ConfigService::new(store.clone(), snapshots.clone());

    let shutdown = tokio::sync::watch::channel(false).0;
    let rest_app = api::rest::router(
        service.clone(),
        store.clone(),
        auth.clone(),
        Arc::clone(&config.metrics),
    );
    let rest_server = axum::serve(rest, rest_app).with_graceful_shutdown(wait(shutdown.clone()));
    let health = grpc_health::service(store.clone(), shutdown.subscribe()).await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(gateway_proto::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let grpc_server = tonic::transport::Server::builder()
        .layer(api::observe::GrpcObserveLayer::new(Arc::clone(
            &config.metrics,
        )))
        .layer(api::auth::GrpcAuthLayer::new(auth))
        .add_service(health)
        // v1 for current clients, v1alpha for older grpcurl and Postman.
        .add_service(reflection().build_v1().context("gRPC reflection")?)
        .add_service(reflection().build_v1alpha().context("gRPC reflection")?)
        .add_service(
            AdminServiceServer::new(api::grpc::AdminApi::new(service))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            DiscoveryServiceServer::new(DiscoveryServer::new(
                store,
                snapshots,
                config.max_snapshot_bytes,
                shutdown.subscribe(),
            ))
            .max_decoding_message_size(config.max_snapshot_bytes)
            .max_encoding_message_size(config.max_snapshot_bytes),
        )
        .serve_with_incoming_shutdown(TcpListenerStream::new(grpc), wait(shutdown.clone()));
    tracing::info!(rest = %rest_addr, grpc = %grpc_addr, "control plane listening");

    let servers = async {
        let (rest, grpc) =
            tokio::join!(async { rest_server.await.context("REST server") }, async {
                grpc_server.await.context("gRPC server")
            });
        rest.and(grpc)
    };
    tokio::pin!(servers);
    tokio::select! {
        result = &mut servers => result,
        () = stop => {
            tracing::info!("shutting down");
            let _ = shutdown.send(true);
            // Discovery streams never end on their own; bound the wait.
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut servers).await {
                Ok(result) => result,
                Err(_) => Ok(()),
            }
        }
    }
}

async fn wait(shutdown: tokio::sync::watch::Sender<bool>) {
    let mut rx = shutdown.subscribe();
    let _ = rx.wait_for(|stop| *stop).await;
}
