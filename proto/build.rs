//! Generates the Rust types, gRPC stubs and serde (proto3 JSON mapping) impls for `gateway.v1`.
//! protox compiles the .proto files in-process, so no system `protoc` is needed.

use std::{env, fs, path::PathBuf};

use prost_reflect_free::encode_descriptor_set;

const PROTOS: &[&str] = &[
    "proto/gateway/v1/resources.proto",
    "proto/gateway/v1/admin.proto",
    "proto/gateway/v1/discovery.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let descriptor_path = out_dir.join("gateway_descriptor.bin");
    fs::write(&descriptor_path, encode_descriptor_set(&descriptors))?;

    // BTreeMap keeps label maps in a stable order, so encodings (and hashes) are canonical.
    tonic_prost_build::configure()
        .btree_map(".")
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;

    let descriptor_bytes = fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .btree_map(["."])
        .preserve_proto_field_names()
        .build(&[".gateway"])?;
    Ok(())
}

mod prost_reflect_free {
    use prost::Message;
    use prost_types::FileDescriptorSet;

    pub fn encode_descriptor_set(set: &FileDescriptorSet) -> Vec<u8> {
        set.encode_to_vec()
    }
}
