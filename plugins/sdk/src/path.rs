//! Dotted paths into JSON values (`attributes.email`).
//!
//! A path is a non-empty list of segments separated by `.`. Each segment
//! names an object member; on an array a segment that is a decimal number
//! indexes the array (`tags.0`). There is no escaping, so member names that
//! contain `.` cannot be addressed.

use std::fmt;

use serde_json::{Map, Value};

/// Error for an invalid dotted path, or a path that cannot be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError {
    path: String,
    message: String,
}

impl PathError {
    fn new(path: &str, message: impl Into<String>) -> Self {
        PathError {
            path: path.to_string(),
            message: message.into(),
        }
    }

    /// The path the error is about.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What went wrong, without the path.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "path `{}`: {}", self.path, self.message)
    }
}

impl std::error::Error for PathError {}

/// A validated dotted path such as `attributes.region`.
///
/// Parse it once (typically in [`Transform::init`](crate::Transform::init))
/// and use it for every event.
///
/// ```
/// use serde_json::json;
/// use sluice_sdk::FieldPath;
///
/// let path = FieldPath::parse("attributes.team").unwrap();
/// let mut value = json!({"attributes": {}});
/// path.set(&mut value, json!("payments")).unwrap();
/// assert_eq!(path.get(&value), Some(&json!("payments")));
/// assert!(FieldPath::parse("attributes..team").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath {
    text: String,
    segments: Vec<String>,
}

impl FieldPath {
    /// Parses a dotted path. Fails on an empty path or an empty segment
    /// (leading, trailing or doubled `.`).
    pub fn parse(path: &str) -> Result<FieldPath, PathError> {
        if path.is_empty() {
            return Err(PathError::new(path, "path is empty"));
        }
        let segments: Vec<String> = path.split('.').map(str::to_string).collect();
        if segments.iter().any(String::is_empty) {
            return Err(PathError::new(path, "path has an empty segment"));
        }
        Ok(FieldPath {
            text: path.to_string(),
            segments,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The segments of the path.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The value at this path, if present.
    pub fn get<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        self.segments
            .iter()
            .try_fold(value, |current, segment| step(current, segment))
    }

    /// The value at this path, mutably, if present.
    pub fn get_mut<'v>(&self, value: &'v mut Value) -> Option<&'v mut Value> {
        self.segments
            .iter()
            .try_fold(value, |current, segment| step_mut(current, segment))
    }

    /// Writes `new` at this path and returns the value it replaced.
    ///
    /// Missing intermediate object members are created as empty objects.
    /// Fails when an intermediate value exists but is not an object (or an
    /// array indexed by a number in range), or when an array index is out of
    /// range.
    pub fn set(&self, value: &mut Value, new: Value) -> Result<Option<Value>, PathError> {
        let (last, parents) = self.segments.split_last().expect("paths are non-empty");
        let mut current = value;
        for (depth, segment) in parents.iter().enumerate() {
            current = match current {
                Value::Object(map) => map
                    .entry(segment.clone())
                    .or_insert_with(|| Value::Object(Map::new())),
                Value::Array(items) => {
                    let len = items.len();
                    match segment.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                        Some(item) => item,
                        None => return Err(self.index_error(depth, len)),
                    }
                }
                other => return Err(self.container_error(depth, other)),
            };
        }
        match current {
            Value::Object(map) => Ok(map.insert(last.clone(), new)),
            Value::Array(items) => {
                let len = items.len();
                match last.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                    Some(item) => Ok(Some(std::mem::replace(item, new))),
                    None => Err(self.index_error(parents.len(), len)),
                }
            }
            other => Err(self.container_error(parents.len(), other)),
        }
    }

    /// Removes the value at this path and returns it, if present.
    pub fn remove(&self, value: &mut Value) -> Option<Value> {
        let (last, parents) = self.segments.split_last().expect("paths are non-empty");
        let parent = parents
            .iter()
            .try_fold(value, |current, segment| step_mut(current, segment))?;
        match parent {
            Value::Object(map) => map.remove(last.as_str()),
            Value::Array(items) => {
                let index = last.parse::<usize>().ok().filter(|&i| i < items.len())?;
                Some(items.remove(index))
            }
            _ => None,
        }
    }

    fn prefix(&self, depth: usize) -> String {
        if depth == 0 {
            "the root".to_string()
        } else {
            format!("`{}`", self.segments[..depth].join("."))
        }
    }

    fn container_error(&self, depth: usize, found: &Value) -> PathError {
        PathError::new(
            &self.text,
            format!("{} is {}, not an object", self.prefix(depth), kind(found)),
        )
    }

    fn index_error(&self, depth: usize, len: usize) -> PathError {
        PathError::new(
            &self.text,
            format!(
                "`{}` is not an index into the array at {} (length {len})",
                self.segments[depth],
                self.prefix(depth)
            ),
        )
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for FieldPath {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldPath::parse(s)
    }
}

impl<'de> serde::Deserialize<'de> for FieldPath {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        FieldPath::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn step<'v>(value: &'v Value, segment: &str) -> Option<&'v Value> {
    match value {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => items.get(segment.parse::<usize>().ok()?),
        _ => None,
    }
}

fn step_mut<'v>(value: &'v mut Value, segment: &str) -> Option<&'v mut Value> {
    match value {
        Value::Object(map) => map.get_mut(segment),
        Value::Array(items) => items.get_mut(segment.parse::<usize>().ok()?),
        _ => None,
    }
}

/// A short name for the JSON type of `value`, for error messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The value at dotted `path` in `value`, if present (`None` for an invalid
/// path too).
///
/// ```
/// let value = serde_json::json!({"attributes": {"email": "a@b.com"}});
/// assert_eq!(sluice_sdk::get_path(&value, "attributes.email").and_then(|v| v.as_str()), Some("a@b.com"));
/// assert_eq!(sluice_sdk::get_path(&value, "attributes.ip"), None);
/// ```
pub fn get_path<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    if path.is_empty() {
        return None;
    }
    path.split('.').try_fold(value, step)
}

/// The value at dotted `path` in `value`, mutably, if present.
pub fn get_path_mut<'v>(value: &'v mut Value, path: &str) -> Option<&'v mut Value> {
    if path.is_empty() {
        return None;
    }
    path.split('.').try_fold(value, step_mut)
}

/// Writes `new` at dotted `path` in `value`, creating missing intermediate
/// objects, and returns the value it replaced. See [`FieldPath::set`].
///
/// ```
/// let mut value = serde_json::json!({"attributes": {"region": "eu"}});
/// let old = sluice_sdk::set_path(&mut value, "attributes.region", "us".into()).unwrap();
/// assert_eq!(old, Some("eu".into()));
/// assert_eq!(value["attributes"]["region"], "us");
/// ```
pub fn set_path(value: &mut Value, path: &str, new: Value) -> Result<Option<Value>, PathError> {
    FieldPath::parse(path)?.set(value, new)
}

/// Removes the value at dotted `path` in `value` and returns it, if present.
pub fn remove_path(value: &mut Value, path: &str) -> Option<Value> {
    FieldPath::parse(path).ok()?.remove(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "event_id": "e-1",
            "attributes": {"email": "a@b.com", "region": "eu"},
            "tags": ["x", {"k": "v"}],
            "trace_id": null
        })
    }

    #[test]
    fn parse_rejects_empty_segments() {
        assert!(FieldPath::parse("").is_err());
        assert!(FieldPath::parse(".a").is_err());
        assert!(FieldPath::parse("a.").is_err());
        let err = FieldPath::parse("a..b").unwrap_err();
        assert_eq!(err.to_string(), "path `a..b`: path has an empty segment");
        assert_eq!(FieldPath::parse("a.b").unwrap().segments(), ["a", "b"]);
    }

    #[test]
    fn get_walks_objects_and_arrays() {
        let value = sample();
        assert_eq!(get_path(&value, "event_id"), Some(&json!("e-1")));
        assert_eq!(get_path(&value, "attributes.region"), Some(&json!("eu")));
        assert_eq!(get_path(&value, "tags.0"), Some(&json!("x")));
        assert_eq!(get_path(&value, "tags.1.k"), Some(&json!("v")));
        assert_eq!(get_path(&value, "tags.2"), None);
        assert_eq!(get_path(&value, "trace_id"), Some(&Value::Null));
        assert_eq!(get_path(&value, "trace_id.x"), None);
        assert_eq!(get_path(&value, "event_id.x"), None);
        assert_eq!(get_path(&value, ""), None);
    }

    #[test]
    fn get_mut_changes_in_place() {
        let mut value = sample();
        *get_path_mut(&mut value, "attributes.email").unwrap() = json!("***");
        assert_eq!(value["attributes"]["email"], "***");
    }

    #[test]
    fn set_replaces_and_creates() {
        let mut value = sample();
        assert_eq!(
            set_path(&mut value, "attributes.region", json!("us")).unwrap(),
            Some(json!("eu"))
        );
        assert_eq!(
            set_path(&mut value, "attributes.team", json!("growth")).unwrap(),
            None
        );
        assert_eq!(set_path(&mut value, "meta.deep.x", json!(1)).unwrap(), None);
        assert_eq!(value["meta"], json!({"deep": {"x": 1}}));
        assert_eq!(
            set_path(&mut value, "tags.1.k", json!("w")).unwrap(),
            Some(json!("v"))
        );
        assert_eq!(
            set_path(&mut value, "tags.0", json!("y")).unwrap(),
            Some(json!("x"))
        );
    }

    #[test]
    fn set_reports_non_containers() {
        let mut value = sample();
        let err = set_path(&mut value, "event_id.x", json!(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "path `event_id.x`: `event_id` is a string, not an object"
        );
        let err = set_path(&mut value, "trace_id.x", json!(1)).unwrap_err();
        assert_eq!(err.message(), "`trace_id` is null, not an object");
        let err = set_path(&mut value, "tags.5", json!(1)).unwrap_err();
        assert_eq!(
            err.message(),
            "`5` is not an index into the array at `tags` (length 2)"
        );
        let mut scalar = json!(3);
        let err = set_path(&mut scalar, "a", json!(1)).unwrap_err();
        assert_eq!(err.message(), "the root is a number, not an object");
        assert!(set_path(&mut value, "a..b", json!(1)).is_err());
    }

    #[test]
    fn remove_takes_the_value_out() {
        let mut value = sample();
        assert_eq!(
            remove_path(&mut value, "attributes.email"),
            Some(json!("a@b.com"))
        );
        assert_eq!(remove_path(&mut value, "attributes.email"), None);
        assert_eq!(remove_path(&mut value, "tags.0"), Some(json!("x")));
        assert_eq!(remove_path(&mut value, "nope.x"), None);
    }

    #[test]
    fn deserializes_from_config() {
        let path: FieldPath = serde_json::from_str(r#""attributes.region""#).unwrap();
        assert_eq!(path.as_str(), "attributes.region");
        assert!(serde_json::from_str::<FieldPath>(r#""a..b""#).is_err());
    }
}
