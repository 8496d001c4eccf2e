//! The gateway's one schema, `gateway.v1`, generated at build time, plus what both planes share:
//! validation ([`validate`]), the canonical content hash ([`hash`]) and resource naming ([`kind`]).

pub mod delta;
pub mod hash;
pub mod kind;
pub mod validate;

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("gateway.v1");
    include!(concat!(env!("OUT_DIR"), "/gateway.v1.serde.rs"));

    /// Encoded `FileDescriptorSet` of the schema, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/gateway_descriptor.bin"));
}
