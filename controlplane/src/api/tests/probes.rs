//! gRPC health (for Kubernetes `grpc:` probes) and reflection (for grpcurl), both without a token.

use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use super::*;

#[tokio::test]
async fn health_serves_once_the_store_is_ready() {
    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.grpc_channel().await);
    for service in ["", "gateway.v1.AdminService", "gateway.v1.DiscoveryService"] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status;
            if status == ServingStatus::Serving as i32 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{service:?} never SERVING"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

async fn reflect(server: &TestServer, request: MessageRequest) -> MessageResponse {
    let mut client = ServerReflectionClient::new(server.grpc_channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    responses
        .message()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap()
}

#[tokio::test]
async fn reflection_describes_every_service() {
    let server = TestServer::start().await;
    let MessageResponse::ListServicesResponse(list) =
        reflect(&server, MessageRequest::ListServices(String::new())).await
    else {
        panic!("not a service list");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "gateway.v1.AdminService",
        "gateway.v1.DiscoveryService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&expected), "{names:?}");
    }
    let MessageResponse::FileDescriptorResponse(files) = reflect(
        &server,
        MessageRequest::FileContainingSymbol("gateway.v1.AdminService".into()),
    )
    .await
    else {
        panic!("no descriptor for AdminService");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

#[tokio::test]
async fn openapi_document_is_served_without_a_token() {
    let server = TestServer::start().await;
    let reply = server.call(hyper::Method::GET, "/openapi.json", None).await;
    assert_eq!(reply.status, hyper::StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let expected: serde_json::Value =
        serde_json::from_str(&crate::api::rest::openapi_json()).unwrap();
    assert_eq!(reply.body, expected);
}
