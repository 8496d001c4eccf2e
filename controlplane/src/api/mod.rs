//! The admin APIs: thin adapters that turn REST and gRPC requests into service-layer calls.

pub mod auth;
pub mod grpc;
pub mod observe;
pub mod openapi;
pub mod rest;

#[cfg(test)]
mod tests;
