//! The content hash that names a config independently of its version number.
//!
//! Maps are generated as `BTreeMap` and lists are sorted by name before encoding, so two equal
//! configs always have the same hash, on every replica and every data plane.

use prost::Message;
use sha2::{Digest, Sha256};

use crate::v1::Config;

/// Hex SHA-256 of the canonical protobuf encoding of `config`.
pub fn config_hash(config: &Config) -> String {
    let mut canonical = config.clone();
    canonical.canonicalize();
    hex::encode(Sha256::digest(canonical.encode_to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Route, Upstream};

    #[test]
    fn hash_ignores_list_order_but_not_content() {
        let a = Config {
            upstreams: vec![
                Upstream {
                    name: "a".into(),
                    ..Default::default()
                },
                Upstream {
                    name: "b".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let mut b = a.clone();
        b.upstreams.reverse();
        assert_eq!(config_hash(&a), config_hash(&b));
        b.routes.push(Route {
            name: "r".into(),
            ..Default::default()
        });
        assert_ne!(config_hash(&a), config_hash(&b));
    }
}
