//! Partial extraction of a few dotted paths from a JSON value.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::{FieldPath, JsonError, PathError};

/// A set of dotted paths to extract from event values in one pass.
///
/// Built once (in `init`) from paths known only at run time, e.g. the fields
/// a filter's rules name. [`Selector::select`] walks the JSON text once,
/// materializes only the values at the selected paths and skips everything
/// else without allocating. It still checks that the whole text is valid
/// JSON.
///
/// ```
/// use sluice_sdk::Selector;
///
/// let selector = Selector::new(["source", "attributes.region", "missing"]).unwrap();
/// let selected = selector
///     .select(br#"{"source":"web","attributes":{"region":"eu","ua":"..."},"big":[1,2,3]}"#)
///     .unwrap();
/// assert_eq!(selected.get(0), Some(&"web".into()));
/// assert_eq!(selected.get(1), Some(&"eu".into()));
/// assert_eq!(selected.get(2), None);
/// ```
#[derive(Debug, Clone)]
pub struct Selector {
    paths: Vec<FieldPath>,
    root: Node,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// Indexes of the selected paths that end at this node.
    terminals: Vec<usize>,
    children: Vec<(String, Node)>,
}

impl Node {
    fn child(&self, segment: &str) -> Option<&Node> {
        self.children
            .iter()
            .find(|(name, _)| name == segment)
            .map(|(_, node)| node)
    }

    fn child_or_insert(&mut self, segment: &str) -> &mut Node {
        let index = match self.children.iter().position(|(name, _)| name == segment) {
            Some(index) => index,
            None => {
                self.children.push((segment.to_string(), Node::default()));
                self.children.len() - 1
            }
        };
        &mut self.children[index].1
    }

    /// Fills the slots of this node and its descendants from a parsed value.
    fn fill(&self, value: &Value, out: &mut [Option<Value>]) {
        for &index in &self.terminals {
            out[index] = Some(value.clone());
        }
        for (segment, child) in &self.children {
            let next = match value {
                Value::Object(map) => map.get(segment),
                Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            if let Some(next) = next {
                child.fill(next, out);
            }
        }
    }
}

impl Selector {
    /// Builds a selector from dotted paths; fails on the first invalid path.
    pub fn new<I, S>(paths: I) -> Result<Selector, PathError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let paths = paths
            .into_iter()
            .map(|path| FieldPath::parse(path.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Selector::from_paths(paths))
    }

    /// Builds a selector from already parsed paths.
    pub fn from_paths(paths: Vec<FieldPath>) -> Selector {
        let mut root = Node::default();
        for (index, path) in paths.iter().enumerate() {
            let node = path
                .segments()
                .iter()
                .fold(&mut root, |node, segment| node.child_or_insert(segment));
            node.terminals.push(index);
        }
        Selector { paths, root }
    }

    /// The selected paths, in the order their values appear in [`Selected`].
    pub fn paths(&self) -> &[FieldPath] {
        &self.paths
    }

    /// Extracts the selected values from JSON text.
    ///
    /// Fails only when `json` is not valid JSON; a path that is absent (or
    /// runs into a non-container) yields `None`.
    pub fn select(&self, json: &[u8]) -> Result<Selected, JsonError> {
        let mut values = vec![None; self.paths.len()];
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        NodeSeed {
            node: &self.root,
            out: &mut values,
        }
        .deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(Selected { values })
    }
}

/// The values a [`Selector`] extracted, one slot per selected path.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selected {
    values: Vec<Option<Value>>,
}

impl Selected {
    /// The value at the `index`-th selected path, if present in the event.
    /// A JSON `null` is returned as `Some(&Value::Null)`.
    pub fn get(&self, index: usize) -> Option<&Value> {
        self.values.get(index).and_then(Option::as_ref)
    }

    /// Number of selected paths.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// `true` when the selector had no paths.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The slots, in selector order.
    pub fn values(&self) -> &[Option<Value>] {
        &self.values
    }

    /// Consumes the result, returning the slots in selector order.
    pub fn into_values(self) -> Vec<Option<Value>> {
        self.values
    }
}

struct NodeSeed<'s> {
    node: &'s Node,
    out: &'s mut [Option<Value>],
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if self.node.terminals.is_empty() {
            deserializer.deserialize_any(NodeVisitor {
                node: self.node,
                out: self.out,
            })
        } else {
            // A selected path ends here: keep the whole value (and serve any
            // deeper selected paths from it).
            let value = Value::deserialize(deserializer)?;
            self.node.fill(&value, self.out);
            Ok(())
        }
    }
}

struct NodeVisitor<'s> {
    node: &'s Node,
    out: &'s mut [Option<Value>],
}

impl<'de> Visitor<'de> for NodeVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        loop {
            let child = self.node.child(&index.to_string());
            let more = match child {
                Some(node) => seq
                    .next_element_seed(NodeSeed {
                        node,
                        out: &mut *self.out,
                    })?
                    .is_some(),
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match self.node.child(&key) {
                Some(node) => map.next_value_seed(NodeSeed {
                    node,
                    out: &mut *self.out,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Reads an object key, borrowing it from the input when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(key))
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key.to_string()))
    }

    fn visit_string<E>(self, key: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const EVENT: &str = r#"{"event_id":"e-1","type":"page_view","source":"web","entity_id":"user-7","occurred_at":1764400000000,"severity":"INFO","attributes":{"email":"a@b.com","ip":"10.1.2.3","user_agent":"Mozilla/5.0 ... Firefox/118.0","region":"eu"},"trace_id":null}"#;

    #[test]
    fn selects_scalars_nested_and_missing() {
        let selector = Selector::new([
            "severity",
            "attributes.region",
            "occurred_at",
            "trace_id",
            "attributes.nope",
            "source.deeper",
        ])
        .unwrap();
        let selected = selector.select(EVENT.as_bytes()).unwrap();
        assert_eq!(selected.len(), 6);
        assert_eq!(selected.get(0), Some(&json!("INFO")));
        assert_eq!(selected.get(1), Some(&json!("eu")));
        assert_eq!(selected.get(2), Some(&json!(1_764_400_000_000u64)));
        assert_eq!(selected.get(3), Some(&Value::Null));
        assert_eq!(selected.get(4), None);
        assert_eq!(selected.get(5), None);
        assert_eq!(selected.get(99), None);
    }

    #[test]
    fn overlapping_and_duplicate_paths() {
        let selector = Selector::new(["attributes", "attributes.ip", "attributes.ip"]).unwrap();
        let selected = selector.select(EVENT.as_bytes()).unwrap();
        assert_eq!(selected.get(0).unwrap()["region"], json!("eu"));
        assert_eq!(selected.get(1), Some(&json!("10.1.2.3")));
        assert_eq!(selected.get(2), Some(&json!("10.1.2.3")));
    }

    #[test]
    fn array_indexes() {
        let selector = Selector::new(["tags.1", "tags.1.k", "tags.9"]).unwrap();
        let selected = selector.select(br#"{"tags":["a",{"k":"v"},3]}"#).unwrap();
        assert_eq!(selected.get(0), Some(&json!({"k": "v"})));
        assert_eq!(selected.get(1), Some(&json!("v")));
        assert_eq!(selected.get(2), None);
    }

    #[test]
    fn escaped_keys_and_values() {
        let selector = Selector::new(["a\"b", "attributes.x"]).unwrap();
        let selected = selector
            .select(br#"{"a\"b":"q\"uote","attributes":{"x":"\u00e9"}}"#)
            .unwrap();
        assert_eq!(selected.get(0), Some(&json!("q\"uote")));
        assert_eq!(selected.get(1), Some(&json!("é")));
    }

    #[test]
    fn invalid_json_is_an_error_even_in_skipped_parts() {
        let selector = Selector::new(["severity"]).unwrap();
        assert!(selector.select(b"not json").is_err());
        assert!(selector.select(br#"{"severity":"INFO","x":[1,}"#).is_err());
        assert!(selector.select(br#"{"severity":"INFO"} trailing"#).is_err());
    }

    #[test]
    fn non_object_roots_select_nothing() {
        let selector = Selector::new(["severity"]).unwrap();
        assert_eq!(selector.select(b"[1,2]").unwrap().get(0), None);
        assert_eq!(selector.select(b"\"x\"").unwrap().get(0), None);
        assert!(
            Selector::new(Vec::<&str>::new())
                .unwrap()
                .select(b"{}")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn invalid_path_is_rejected() {
        assert!(Selector::new(["ok", "bad..path"]).is_err());
    }
}
