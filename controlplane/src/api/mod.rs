//! The admin APIs: thin adapters that turn REST and gRPC requests into service-layer calls.

pub mod grpc;
pub mod rest;
