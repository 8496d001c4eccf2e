//! What makes writes safe to retry and to race: ETags, preconditions, JSON Merge Patch.
//!
//! A resource's ETag is a hash of its canonical protobuf encoding (labels are ordered maps), so
//! equal resources have equal ETags on every replica. Preconditions are checked by the change
//! closure *inside* the store transaction, after the writer lock is taken: a stale ETag can never
//! slip between the check and the write, and two concurrent read-modify-write cycles cannot both
//! succeed on the same ETag.

use prost::Message;
use serde_json::Value;
use sha2::{Digest, Sha256};

use gateway_proto::kind::{Kind, resource_ref};

use crate::error::ApiError;

/// Hex digits of the ETag: 128 bits is plenty to tell versions of one resource apart.
const ETAG_HEX: usize = 32;

/// The ETag of a resource, unquoted.
pub fn etag<R: Message>(resource: &R) -> String {
    let mut hex = hex::encode(Sha256::digest(resource.encode_to_vec()));
    hex.truncate(ETAG_HEX);
    hex
}

/// What must hold of the stored resource for a write to go ahead.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Precondition {
    #[default]
    None,
    /// `If-Match: "a", "b"` / `etag`: it exists and has one of these ETags.
    Matches(Vec<String>),
    /// `If-Match: *`: it exists.
    Exists,
    /// `If-None-Match: *`: it does not exist.
    Absent,
}

impl Precondition {
    /// From a gRPC `etag` field: empty is no condition, `*` is "exists".
    pub fn from_etag(etag: &str) -> Self {
        match etag.trim() {
            "" => Precondition::None,
            "*" => Precondition::Exists,
            tag => Precondition::Matches(vec![tag.trim_matches('"').to_owned()]),
        }
    }

    /// From REST `If-Match` and `If-None-Match` header values.
    pub fn from_headers(
        if_match: Option<&str>,
        if_none_match: Option<&str>,
    ) -> Result<Self, ApiError> {
        match (if_match.map(str::trim), if_none_match.map(str::trim)) {
            (None, None) => Ok(Precondition::None),
            (Some("*"), None) => Ok(Precondition::Exists),
            (Some(list), None) => Ok(Precondition::Matches(
                list.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    // Strong comparison: a weak tag never matches.
                    .filter(|t| !t.starts_with("W/"))
                    .map(|t| t.trim_matches('"').to_owned())
                    .collect(),
            )),
            (None, Some("*")) => Ok(Precondition::Absent),
            (None, Some(_)) => Err(ApiError::BadRequest(
                "If-None-Match: only `*` is supported on writes".into(),
            )),
            (Some(_), Some(_)) => Err(ApiError::BadRequest(
                "give If-Match or If-None-Match, not both".into(),
            )),
        }
    }

    /// Checks the stored resource (`current`, with its ETag) against the condition.
    pub fn check(&self, kind: Kind, name: &str, current: Option<&str>) -> Result<(), ApiError> {
        let failed = |reason: String| ApiError::PreconditionFailed {
            resource: resource_ref(kind, name),
            reason,
        };
        match (self, current) {
            (Precondition::None, _) => Ok(()),
            (Precondition::Exists | Precondition::Matches(_), None) => {
                Err(failed("it does not exist".into()))
            }
            (Precondition::Exists, Some(_)) => Ok(()),
            (Precondition::Matches(tags), Some(etag)) if tags.iter().any(|t| t == etag) => Ok(()),
            (Precondition::Matches(_), Some(etag)) => Err(failed(format!(
                "it was changed since it was read (its ETag is now \"{etag}\"); read it again and retry"
            ))),
            (Precondition::Absent, Some(_)) => Err(failed("it already exists".into())),
            (Precondition::Absent, None) => Ok(()),
        }
    }
}

/// How a single-resource write treats an existing or missing resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    Upsert,
    Create,
    Replace,
}

#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub precondition: Precondition,
    /// Do everything but the commit.
    pub validate_only: bool,
}

/// RFC 7396 JSON Merge Patch: objects merge recursively, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        // The examples of RFC 7396, appendix A.
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (mut target, patch, expected) in cases {
            merge_patch(&mut target, &patch);
            assert_eq!(target, expected, "patch {patch}");
        }
    }

    #[test]
    fn preconditions() {
        let kind = Kind::Route;
        let tag = Some("abc");
        assert!(Precondition::None.check(kind, "r", None).is_ok());
        assert!(Precondition::Exists.check(kind, "r", tag).is_ok());
        assert!(Precondition::Exists.check(kind, "r", None).is_err());
        assert!(Precondition::Absent.check(kind, "r", tag).is_err());
        let matches = Precondition::from_headers(Some("\"x\", \"abc\""), None).unwrap();
        assert!(matches.check(kind, "r", tag).is_ok());
        let weak = Precondition::from_headers(Some("W/\"abc\""), None).unwrap();
        assert!(weak.check(kind, "r", tag).is_err());
        assert_eq!(Precondition::from_etag(""), Precondition::None);
        assert_eq!(
            Precondition::from_etag("abc"),
            Precondition::Matches(vec!["abc".into()])
        );
        assert!(Precondition::from_headers(None, Some("\"abc\"")).is_err());
    }

    #[test]
    fn etags_follow_content() {
        use gateway_proto::v1::Upstream;
        let a = Upstream {
            name: "a".into(),
            ..Default::default()
        };
        let mut b = a.clone();
        assert_eq!(etag(&a), etag(&b));
        b.labels.insert("team".into(), "web".into());
        assert_ne!(etag(&a), etag(&b));
        assert_eq!(etag(&a).len(), ETAG_HEX);
    }
}
