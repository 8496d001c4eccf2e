//! Reading the proto3 JSON mapping: 64-bit integers arrive as strings, default values are omitted.

use anyhow::{Context, bail};
use serde_json::Value;

/// Reads an unsigned integer field that may be a JSON number or a string (proto3 renders
/// `uint64` as a string) and is 0 when absent (proto3 omits default values).
pub fn u64_field(object: &Value, key: &str) -> anyhow::Result<u64> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_u64()
            .with_context(|| format!("{key:?} is not an unsigned integer: {n}")),
        Some(Value::String(s)) => s
            .parse()
            .with_context(|| format!("{key:?} is not an unsigned integer: {s:?}")),
        Some(other) => bail!("{key:?} is neither a number nor a string: {other}"),
    }
}

/// The `field` of every entry of a problem+json `errors` array, for asserting which fields a
/// refusal names.
pub fn violation_fields(problem: &Value) -> Vec<String> {
    problem
        .get("errors")
        .and_then(Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e.get("field").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}
