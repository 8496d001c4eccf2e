//! An apply document as a tree that remembers where each of its nodes and mapping keys is in
//! the file, so an error found later, when the document becomes a typed resource, can point at
//! the line and column of the offending key or value.
//!
//! serde-saphyr records a node's position when it is read into a [`Spanned`]; a generic
//! `serde_json::Value` has nowhere to keep it. The tree is read once per document (YAML, or
//! JSON, which the same parser reads), turned into a `Value` for the typed deserialization, and
//! asked for the position of the path `serde_path_to_error` reports.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::{Location, Spanned};

/// One node of a document: a scalar, or a sequence or mapping of located nodes.
#[derive(Debug)]
pub(crate) enum Tree {
    Scalar(Value),
    Sequence(Vec<Spanned<Tree>>),
    /// In document order; a repeated key is the parser's error, not kept here.
    Mapping(Vec<(Spanned<String>, Spanned<Tree>)>),
}

/// A line and column in a file, counted from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    pub line: u64,
    pub column: u64,
}

impl Position {
    /// `None` for the parser's "unknown" location (line 0).
    pub(crate) fn of(location: Location) -> Option<Self> {
        (location.line() > 0).then(|| Self {
            line: location.line(),
            column: location.column(),
        })
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One step of a path into a document, as `serde_path_to_error` reports it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

impl Tree {
    /// The same document without positions.
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Tree::Scalar(value) => value.clone(),
            Tree::Sequence(items) => items.iter().map(|i| i.value.to_value()).collect(),
            Tree::Mapping(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.value.clone(), v.value.to_value()))
                    .collect(),
            ),
        }
    }

    /// The position of the deepest node `path` reaches. The last step, when it is a key, points
    /// at the key itself (an unknown field is its key; a bad value is found by the caller
    /// stepping into it); `value_of_last` asks for the value instead.
    pub(crate) fn position(
        node: &Spanned<Tree>,
        path: &[Step<'_>],
        value_of_last: bool,
    ) -> Option<Position> {
        let mut here = node;
        let mut found = Position::of(node.referenced);
        for (i, step) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            let next = match (step, &here.value) {
                (Step::Index(index), Tree::Sequence(items)) => items.get(*index),
                (Step::Key(key), Tree::Mapping(entries)) => {
                    let Some((k, v)) = entries.iter().find(|(k, _)| k.value == *key) else {
                        break;
                    };
                    if last && !value_of_last {
                        return Position::of(k.referenced).or(found);
                    }
                    Some(v)
                }
                _ => None,
            };
            let Some(next) = next else { break };
            here = next;
            found = Position::of(here.referenced).or(found);
        }
        found
    }
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML or JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Tree, E> {
        Ok(Tree::Scalar(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Tree, E> {
        Ok(Tree::Scalar(Value::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Tree, E> {
        Ok(Tree::Scalar(Value::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Tree, E> {
        // NaN and infinities have no JSON form; they become null, as in serde_json.
        Ok(Tree::Scalar(Value::from(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Tree, E> {
        Ok(Tree::Scalar(Value::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Tree, E> {
        Ok(Tree::Scalar(Value::String(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Tree, E> {
        Ok(Tree::Scalar(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Tree, E> {
        Ok(Tree::Scalar(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Tree, D::Error> {
        Tree::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Tree::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value()?;
            entries.push((key, value));
        }
        Ok(Tree::Mapping(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn documents(text: &str) -> Vec<Spanned<Tree>> {
        let mut reader = text.as_bytes();
        serde_saphyr::read::<_, Spanned<Tree>>(&mut reader)
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn at(line: u64, column: u64) -> Option<Position> {
        Some(Position { line, column })
    }

    #[test]
    fn keys_and_values_keep_their_positions_in_the_file() {
        let docs = documents(
            "kind: Upstream\nname: web\n---\nkind: Route\nmatch:\n  hosts: [a, b]\n  pathprefix: /v1\n",
        );
        assert_eq!(docs.len(), 2);
        let route = &docs[1];
        assert_eq!(
            Tree::position(route, &[Step::Key("match"), Step::Key("pathprefix")], false),
            at(7, 3)
        );
        assert_eq!(
            Tree::position(route, &[Step::Key("match"), Step::Key("pathprefix")], true),
            at(7, 15)
        );
        assert_eq!(
            Tree::position(
                route,
                &[Step::Key("match"), Step::Key("hosts"), Step::Index(1)],
                true
            ),
            at(6, 14)
        );
        // A path past what the document holds stops at the deepest node it reached.
        assert_eq!(
            Tree::position(route, &[Step::Key("match"), Step::Key("nope")], false),
            at(6, 3)
        );
        assert_eq!(
            route.value.to_value(),
            serde_json::json!({"kind": "Route", "match": {"hosts": ["a", "b"], "pathprefix": "/v1"}})
        );
    }

    #[test]
    fn json_keeps_positions_too() {
        let docs = documents("[{\"kind\": \"Upstream\",\n  \"name\": \"a\", \"targett\": []}]");
        assert_eq!(
            Tree::position(&docs[0], &[Step::Index(0), Step::Key("targett")], false),
            at(2, 16)
        );
    }
}
