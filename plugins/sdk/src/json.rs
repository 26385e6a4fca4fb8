//! Field access and edits on raw JSON bytes, without building a tree.
//!
//! [`find`] walks a dotted [`FieldPath`] through the value's bytes, skipping
//! every member it does not need, and returns the raw span of what it found.
//! [`Edits`] replaces or inserts values by span and writes the result in one
//! pass: everything the rule did not touch is copied verbatim, keys keep
//! their order, and nothing is re-serialized.
//!
//! ```
//! use sluice_sdk::{FieldPath, json};
//!
//! let value = br#"{"severity":"INFO","attributes":{"email":"a@b.com"}}"#;
//! let email = FieldPath::parse("attributes.email").unwrap();
//! let team = FieldPath::parse("attributes.team").unwrap();
//! let found = json::find(value, &email).unwrap().unwrap();
//! assert_eq!(found.as_str().as_deref(), Some("a@b.com"));
//!
//! let mut edits = json::Edits::new(value);
//! edits.replace(&found, json::string("***")).unwrap();
//! edits.set(&team, json::string("growth")).unwrap();
//! assert_eq!(
//!     edits.finish().unwrap(),
//!     br#"{"severity":"INFO","attributes":{"email":"***","team":"growth"}}"#
//! );
//! ```

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use crate::FieldPath;

/// The value is not well-formed JSON where the scanner had to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    /// Byte offset of the problem.
    pub at: usize,
    /// What was expected there.
    pub expected: &'static str,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid JSON at byte {}: expected {}",
            self.at, self.expected
        )
    }
}

impl std::error::Error for ScanError {}

/// A value found in a JSON document: its raw bytes and where they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<'a> {
    /// The value's raw JSON text (a string includes its quotes).
    pub raw: &'a [u8],
    /// Its byte range in the document.
    pub span: Range<usize>,
}

impl<'a> Found<'a> {
    /// True for a JSON string.
    pub fn is_string(&self) -> bool {
        self.raw.first() == Some(&b'"')
    }

    /// True for `null`.
    pub fn is_null(&self) -> bool {
        self.raw == b"null"
    }

    /// True for an object.
    pub fn is_object(&self) -> bool {
        self.raw.first() == Some(&b'{')
    }

    /// The string's text, borrowed when it has no escapes; `None` for
    /// anything but a string.
    pub fn as_str(&self) -> Option<Cow<'a, str>> {
        let inner = self.raw.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
        if !inner.contains(&b'\\') {
            return std::str::from_utf8(inner).ok().map(Cow::Borrowed);
        }
        serde_json::from_slice::<String>(self.raw)
            .ok()
            .map(Cow::Owned)
    }

    /// The value as an integer, if it is one.
    pub fn as_i64(&self) -> Option<i64> {
        std::str::from_utf8(self.raw).ok()?.parse().ok()
    }

    /// The value parsed into a [`serde_json::Value`] (builds a tree of just
    /// this value).
    pub fn to_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(self.raw)
    }
}

/// A JSON string literal for `text`, with quotes and escapes.
pub fn string(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 2);
    write_string(&mut out, text);
    out
}

fn write_string(out: &mut Vec<u8>, text: &str) {
    let plain = text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    if plain {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else if let Ok(encoded) = serde_json::to_vec(text) {
        out.extend_from_slice(&encoded);
    }
}

/// Span markers in [`locate`]'s output.
pub const ABSENT: i32 = -1;
/// The value is not valid JSON where the path had to be read.
pub const INVALID: i32 = -2;

/// Locate `paths` in one value and append two numbers per path to `out`:
/// the start and length of the value found there, or [`ABSENT`] (the path
/// is not there) or [`INVALID`] (the value is not valid JSON on the way),
/// each followed by 0. This is what the host computes for the fields a
/// plugin declares ([`crate::Transform::fields`]), natively, so the plugin
/// never scans for them itself.
pub fn locate(json: &[u8], paths: &[FieldPath], out: &mut Vec<i32>) {
    for path in paths {
        match find(json, path) {
            Ok(Some(found)) => match (
                i32::try_from(found.span.start),
                i32::try_from(found.raw.len()),
            ) {
                (Ok(start), Ok(len)) => out.extend([start, len]),
                _ => out.extend([INVALID, 0]),
            },
            Ok(None) => out.extend([ABSENT, 0]),
            Err(_) => out.extend([INVALID, 0]),
        }
    }
}

/// The value a [`locate`] span points at: `Ok(None)` for [`ABSENT`],
/// `Err` for [`INVALID`] or a span outside `json`.
pub fn located<'a>(json: &'a [u8], start: i32, len: i32) -> Result<Option<Found<'a>>, ScanError> {
    if start == ABSENT {
        return Ok(None);
    }
    let invalid = ScanError {
        at: 0,
        expected: "a valid JSON value",
    };
    let (Ok(start), Ok(len)) = (usize::try_from(start), usize::try_from(len)) else {
        return Err(invalid);
    };
    let raw = json.get(start..start + len).ok_or(invalid)?;
    Ok(Some(Found {
        raw,
        span: start..start + len,
    }))
}

/// Find the value at `path` in `json`. `Ok(None)` when a member on the way
/// is absent or a value on the way is not an object (or an array indexed by
/// a number in range).
pub fn find<'a>(json: &'a [u8], path: &FieldPath) -> Result<Option<Found<'a>>, ScanError> {
    let mut scanner = Scanner { json, at: 0 };
    let mut start = scanner.skip_ws();
    for segment in path.segments() {
        match scanner.member(start, segment)? {
            Step::Found(value_start) => start = value_start,
            Step::Missing { .. } | Step::NotAContainer => return Ok(None),
        }
    }
    let end = scanner.skip_value(start)?;
    Ok(Some(Found {
        raw: &json[start..end],
        span: start..end,
    }))
}

/// The members of the object at `path` (the whole value for an empty path
/// list), as `(key, value)` pairs of raw spans, in document order. `Ok(None)`
/// when there is no object there.
pub fn members<'a>(
    json: &'a [u8],
    path: Option<&FieldPath>,
) -> Result<Option<Members<'a>>, ScanError> {
    let mut scanner = Scanner { json, at: 0 };
    let mut start = scanner.skip_ws();
    if let Some(path) = path {
        for segment in path.segments() {
            match scanner.member(start, segment)? {
                Step::Found(value_start) => start = value_start,
                Step::Missing { .. } | Step::NotAContainer => return Ok(None),
            }
        }
    }
    if json.get(start) != Some(&b'{') {
        return Ok(None);
    }
    let mut out = Vec::new();
    let mut at = scanner.skip_ws_from(start + 1);
    if json.get(at) == Some(&b'}') {
        return Ok(Some(out));
    }
    loop {
        let key_end = scanner.skip_string(at)?;
        let key = Found {
            raw: &json[at..key_end],
            span: at..key_end,
        }
        .as_str()
        .ok_or(ScanError {
            at,
            expected: "a UTF-8 member name",
        })?;
        let colon = scanner.skip_ws_from(key_end);
        scanner.expect(colon, b':', "`:`")?;
        let value_start = scanner.skip_ws_from(colon + 1);
        let value_end = scanner.skip_value(value_start)?;
        out.push((
            key,
            Found {
                raw: &json[value_start..value_end],
                span: value_start..value_end,
            },
        ));
        let next = scanner.skip_ws_from(value_end);
        match json.get(next) {
            Some(b',') => at = scanner.skip_ws_from(next + 1),
            Some(b'}') => return Ok(Some(out)),
            _ => {
                return Err(ScanError {
                    at: next,
                    expected: "`,` or `}`",
                });
            }
        }
    }
}

/// An object's members: decoded names and their values, in document order.
pub type Members<'a> = Vec<(Cow<'a, str>, Found<'a>)>;

/// Byte-range edits of one JSON document, applied in one pass by
/// [`Edits::finish`].
#[derive(Debug)]
pub struct Edits<'a> {
    json: &'a [u8],
    /// (range replaced, replacement); insertions have an empty range.
    changes: Vec<(Range<usize>, Vec<u8>)>,
    /// Insertion points where an edit created intermediate objects: a second
    /// insertion there could create the same member twice.
    nested_at: Vec<usize>,
}

/// Why an edit could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditError {
    /// The document is not well-formed JSON where the edit had to read it.
    Scan(ScanError),
    /// A value on the way is neither an object nor an array holding the
    /// indexed element, so the path cannot be written.
    NotWritable(String),
    /// The edit overlaps one made before.
    Overlap(String),
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditError::Scan(e) => e.fmt(f),
            EditError::NotWritable(path) => {
                write!(f, "path `{path}`: a value on the way is not an object")
            }
            EditError::Overlap(path) => write!(f, "path `{path}`: overlaps an earlier edit"),
        }
    }
}

impl std::error::Error for EditError {}

impl From<ScanError> for EditError {
    fn from(e: ScanError) -> Self {
        EditError::Scan(e)
    }
}

impl<'a> Edits<'a> {
    /// Edits of `json`.
    pub fn new(json: &'a [u8]) -> Edits<'a> {
        Edits {
            json,
            changes: Vec::new(),
            nested_at: Vec::new(),
        }
    }

    /// True when no edit was made.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Replace a value found in this document with `raw` JSON.
    pub fn replace(&mut self, found: &Found<'_>, raw: Vec<u8>) -> Result<(), EditError> {
        self.push(found.span.clone(), raw, "")
    }

    /// Write `raw` JSON at `path`: replace the value there, or insert the
    /// member (creating missing intermediate objects), like
    /// [`FieldPath::set`](crate::FieldPath::set) on a tree.
    pub fn set(&mut self, path: &FieldPath, raw: Vec<u8>) -> Result<(), EditError> {
        let mut scanner = Scanner {
            json: self.json,
            at: 0,
        };
        let mut start = scanner.skip_ws();
        let segments = path.segments();
        for (depth, segment) in segments.iter().enumerate() {
            match scanner.member(start, segment)? {
                Step::Found(value_start) => start = value_start,
                Step::Missing { close, empty } => {
                    // Insert `"seg":{"next":...raw...}` before the `}`.
                    let mut text = Vec::with_capacity(raw.len() + 32);
                    let already = self
                        .changes
                        .iter()
                        .any(|(r, _)| r.start == close && r.end == close);
                    if !empty || already {
                        text.push(b',');
                    }
                    let rest = &segments[depth..];
                    let nested = rest.len() > 1;
                    if self.nested_at.contains(&close) || (nested && already) {
                        return Err(EditError::Overlap(path.as_str().to_string()));
                    }
                    if nested {
                        self.nested_at.push(close);
                    }
                    for (i, name) in rest.iter().enumerate() {
                        write_string(&mut text, name);
                        text.push(b':');
                        if i + 1 < rest.len() {
                            text.push(b'{');
                        }
                    }
                    text.extend_from_slice(&raw);
                    text.extend(std::iter::repeat_n(b'}', rest.len() - 1));
                    return self.push(close..close, text, path.as_str());
                }
                Step::NotAContainer => {
                    return Err(EditError::NotWritable(path.as_str().to_string()));
                }
            }
        }
        let end = scanner.skip_value(start)?;
        self.push(start..end, raw, path.as_str())
    }

    /// Add member `key` with `raw` JSON to `object`, a JSON object found in
    /// this document that has no member `key` (e.g. located by the host).
    pub fn insert(&mut self, object: &Found<'_>, key: &str, raw: Vec<u8>) -> Result<(), EditError> {
        if !object.is_object() {
            return Err(EditError::NotWritable(key.to_string()));
        }
        let close = object.span.end - 1;
        let empty = object.raw[1..object.raw.len() - 1]
            .iter()
            .all(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'));
        let already = self
            .changes
            .iter()
            .any(|(r, _)| r.start == close && r.end == close);
        if self.nested_at.contains(&close) {
            return Err(EditError::Overlap(key.to_string()));
        }
        let mut text = Vec::with_capacity(raw.len() + key.len() + 4);
        if !empty || already {
            text.push(b',');
        }
        write_string(&mut text, key);
        text.push(b':');
        text.extend_from_slice(&raw);
        self.push(close..close, text, key)
    }

    fn push(&mut self, range: Range<usize>, raw: Vec<u8>, path: &str) -> Result<(), EditError> {
        let overlaps = self.changes.iter().any(|(r, _)| {
            // Two insertions at one point are fine (applied in order).
            let both_points = r.is_empty() && range.is_empty();
            !both_points
                && range.start < r.end.max(r.start + 1)
                && r.start < range.end.max(range.start + 1)
        });
        if overlaps {
            return Err(EditError::Overlap(path.to_string()));
        }
        self.changes.push((range, raw));
        Ok(())
    }

    /// The edited document, or `None` when no edit was made.
    pub fn finish(mut self) -> Option<Vec<u8>> {
        if self.changes.is_empty() {
            return None;
        }
        // Stable: insertions at one point keep the order they were made in.
        self.changes.sort_by_key(|(r, _)| r.start);
        let extra: usize = self.changes.iter().map(|(_, t)| t.len()).sum();
        let mut out = Vec::with_capacity(self.json.len() + extra);
        let mut at = 0;
        for (range, text) in &self.changes {
            out.extend_from_slice(&self.json[at..range.start]);
            out.extend_from_slice(text);
            at = range.end;
        }
        out.extend_from_slice(&self.json[at..]);
        Some(out)
    }
}

enum Step {
    /// The member's value starts here.
    Found(usize),
    /// The object has no such member; it closes at `close` and is `empty`.
    Missing { close: usize, empty: bool },
    /// The value is not an object, nor an array holding that index.
    NotAContainer,
}

struct Scanner<'a> {
    json: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    fn skip_ws(&mut self) -> usize {
        self.at = self.skip_ws_from(self.at);
        self.at
    }

    fn skip_ws_from(&self, mut at: usize) -> usize {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.json.get(at) {
            at += 1;
        }
        at
    }

    fn expect(&self, at: usize, byte: u8, expected: &'static str) -> Result<(), ScanError> {
        if self.json.get(at) == Some(&byte) {
            Ok(())
        } else {
            Err(ScanError { at, expected })
        }
    }

    /// In the container starting at `start`, the value of member `name` (or
    /// element `name` of an array).
    fn member(&self, start: usize, name: &str) -> Result<Step, ScanError> {
        match self.json.get(start) {
            Some(b'{') => {}
            Some(b'[') => return self.element(start, name),
            _ => return Ok(Step::NotAContainer),
        }
        let mut at = self.skip_ws_from(start + 1);
        if self.json.get(at) == Some(&b'}') {
            return Ok(Step::Missing {
                close: at,
                empty: true,
            });
        }
        loop {
            let key_end = self.skip_string(at)?;
            let key = &self.json[at + 1..key_end - 1];
            let matches = if key.contains(&b'\\') {
                serde_json::from_slice::<String>(&self.json[at..key_end])
                    .map(|k| k == name)
                    .unwrap_or(false)
            } else {
                key == name.as_bytes()
            };
            let colon = self.skip_ws_from(key_end);
            self.expect(colon, b':', "`:`")?;
            let value_start = self.skip_ws_from(colon + 1);
            if matches {
                return Ok(Step::Found(value_start));
            }
            let value_end = self.skip_value(value_start)?;
            let next = self.skip_ws_from(value_end);
            match self.json.get(next) {
                Some(b',') => at = self.skip_ws_from(next + 1),
                Some(b'}') => {
                    return Ok(Step::Missing {
                        close: next,
                        empty: false,
                    });
                }
                _ => {
                    return Err(ScanError {
                        at: next,
                        expected: "`,` or `}`",
                    });
                }
            }
        }
    }

    fn element(&self, start: usize, name: &str) -> Result<Step, ScanError> {
        let Ok(index) = name.parse::<usize>() else {
            return Ok(Step::NotAContainer);
        };
        let mut at = self.skip_ws_from(start + 1);
        if self.json.get(at) == Some(&b']') {
            return Ok(Step::NotAContainer);
        }
        let mut i = 0;
        loop {
            if i == index {
                return Ok(Step::Found(at));
            }
            let end = self.skip_value(at)?;
            let next = self.skip_ws_from(end);
            match self.json.get(next) {
                Some(b',') => at = self.skip_ws_from(next + 1),
                Some(b']') => return Ok(Step::NotAContainer),
                _ => {
                    return Err(ScanError {
                        at: next,
                        expected: "`,` or `]`",
                    });
                }
            }
            i += 1;
        }
    }

    /// The end of the string starting at `at` (one past its closing quote).
    fn skip_string(&self, at: usize) -> Result<usize, ScanError> {
        self.expect(at, b'"', "a string")?;
        let mut i = at + 1;
        loop {
            match self.json.get(i) {
                Some(b'"') => return Ok(i + 1),
                Some(b'\\') => i += 2,
                Some(_) => i += 1,
                None => {
                    return Err(ScanError {
                        at: i,
                        expected: "the end of a string",
                    });
                }
            }
        }
    }

    /// The end of the value starting at `at`.
    fn skip_value(&self, at: usize) -> Result<usize, ScanError> {
        match self.json.get(at) {
            Some(b'"') => self.skip_string(at),
            Some(open @ (b'{' | b'[')) => {
                let close = if *open == b'{' { b'}' } else { b']' };
                let mut i = self.skip_ws_from(at + 1);
                if self.json.get(i) == Some(&close) {
                    return Ok(i + 1);
                }
                loop {
                    if *open == b'{' {
                        let key_end = self.skip_string(i)?;
                        let colon = self.skip_ws_from(key_end);
                        self.expect(colon, b':', "`:`")?;
                        i = self.skip_ws_from(colon + 1);
                    }
                    let end = self.skip_value(i)?;
                    let next = self.skip_ws_from(end);
                    match self.json.get(next) {
                        Some(b',') => i = self.skip_ws_from(next + 1),
                        Some(c) if *c == close => return Ok(next + 1),
                        _ => {
                            return Err(ScanError {
                                at: next,
                                expected: "`,` or the end of a container",
                            });
                        }
                    }
                }
            }
            Some(b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
                let mut i = at;
                while let Some(b) = self.json.get(i) {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                        break;
                    }
                    i += 1;
                }
                Ok(i)
            }
            _ => Err(ScanError {
                at,
                expected: "a value",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn path(p: &str) -> FieldPath {
        FieldPath::parse(p).unwrap()
    }

    const DOC: &str =
        r#" { "a" : 1, "s":"x\"y", "o": {"n": [1, {"k": "v"}], "e": {}}, "z": null } "#;

    #[test]
    fn find_walks_objects_and_arrays() {
        let doc = DOC.as_bytes();
        assert_eq!(find(doc, &path("a")).unwrap().unwrap().raw, b"1");
        let s = find(doc, &path("s")).unwrap().unwrap();
        assert_eq!(s.as_str().as_deref(), Some("x\"y"));
        assert_eq!(find(doc, &path("o.n.1.k")).unwrap().unwrap().raw, b"\"v\"");
        assert!(find(doc, &path("z")).unwrap().unwrap().is_null());
        assert_eq!(find(doc, &path("missing")).unwrap(), None);
        assert_eq!(find(doc, &path("a.b")).unwrap(), None);
        assert_eq!(find(doc, &path("o.n.7")).unwrap(), None);
        assert_eq!(find(doc, &path("o.e.x")).unwrap(), None);
    }

    #[test]
    fn edits_replace_and_insert_like_the_tree_helpers() {
        let doc = DOC.as_bytes();
        let cases: &[(&str, Value)] = &[
            ("a", json!("new")),
            ("o.e.x", json!(1)),
            ("o.new.deep", json!([true])),
            ("fresh", json!({"q": 1})),
            ("o.n.1.k", json!(null)),
        ];
        for (p, v) in cases {
            let mut edits = Edits::new(doc);
            edits.set(&path(p), serde_json::to_vec(v).unwrap()).unwrap();
            let out: Value = serde_json::from_slice(&edits.finish().unwrap()).unwrap();
            let mut expected: Value = serde_json::from_str(DOC).unwrap();
            crate::set_path(&mut expected, p, v.clone()).unwrap();
            assert_eq!(out, expected, "{p}");
        }
    }

    #[test]
    fn two_insertions_into_one_object_are_both_kept() {
        let doc = br#"{"attributes":{}}"#;
        let mut edits = Edits::new(doc);
        edits.set(&path("attributes.team"), string("a")).unwrap();
        edits.set(&path("attributes.ua"), string("b")).unwrap();
        assert_eq!(
            edits.finish().unwrap(),
            br#"{"attributes":{"team":"a","ua":"b"}}"#
        );
    }

    #[test]
    fn two_insertions_that_create_one_object_are_refused() {
        let doc = br#"{"n":1}"#;
        let mut edits = Edits::new(doc);
        edits.set(&path("attributes.a"), b"1".to_vec()).unwrap();
        assert!(matches!(
            edits.set(&path("attributes.b"), b"2".to_vec()),
            Err(EditError::Overlap(_))
        ));
    }

    #[test]
    fn overlapping_and_unwritable_edits_are_refused() {
        let doc = br#"{"a":{"b":1},"n":5}"#;
        let mut edits = Edits::new(doc);
        edits.set(&path("a.b"), b"2".to_vec()).unwrap();
        assert!(matches!(
            edits.set(&path("a"), b"3".to_vec()),
            Err(EditError::Overlap(_))
        ));
        assert!(matches!(
            edits.set(&path("n.x"), b"3".to_vec()),
            Err(EditError::NotWritable(_))
        ));
        assert_eq!(edits.finish().unwrap(), br#"{"a":{"b":2},"n":5}"#);
        assert_eq!(Edits::new(doc).finish(), None);
    }

    #[test]
    fn malformed_documents_are_errors_not_panics() {
        for bad in [
            "",
            "{",
            r#"{"a""#,
            r#"{"a":"#,
            r#"{"a":1"#,
            r#"{"a" 1}"#,
            r#"{"x":[1,"#,
            "\"abc",
        ] {
            let _ = find(bad.as_bytes(), &path("a.b"));
            let _ = members(bad.as_bytes(), None);
            let _ = Edits::new(bad.as_bytes()).set(&path("a.b"), b"1".to_vec());
        }
        assert!(find(br#"{"x":1,"#, &path("a")).is_err());
    }

    #[test]
    fn members_lists_an_object() {
        let doc = DOC.as_bytes();
        let top = members(doc, None).unwrap().unwrap();
        let keys: Vec<_> = top.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["a", "s", "o", "z"]);
        assert_eq!(members(doc, Some(&path("o.e"))).unwrap().unwrap(), vec![]);
        assert_eq!(members(doc, Some(&path("a"))).unwrap(), None);
    }

    #[test]
    fn locate_gives_spans_that_found_reads_back() {
        let doc = DOC.as_bytes();
        let paths = [path("o.n.1.k"), path("missing"), path("a")];
        let mut spans = Vec::new();
        locate(doc, &paths, &mut spans);
        assert_eq!(spans[2..4], [ABSENT, 0]);
        let k = located(doc, spans[0], spans[1]).unwrap().unwrap();
        assert_eq!(k, find(doc, &paths[0]).unwrap().unwrap());
        assert_eq!(located(doc, spans[2], spans[3]).unwrap(), None);
        let mut bad = Vec::new();
        locate(br#"{"x":"#, &[path("a")], &mut bad);
        assert_eq!(bad, [INVALID, 0]);
        assert!(located(doc, INVALID, 0).is_err());
        assert!(located(doc, 1000, 5).is_err());
    }

    #[test]
    fn insert_adds_a_member_to_a_found_object() {
        let doc = br#"{"a":{ },"b":{"x":1}}"#;
        let mut edits = Edits::new(doc);
        let a = find(doc, &path("a")).unwrap().unwrap();
        let b = find(doc, &path("b")).unwrap().unwrap();
        edits.insert(&a, "k", b"1".to_vec()).unwrap();
        edits.insert(&a, "l", b"2".to_vec()).unwrap();
        edits.insert(&b, "y", b"3".to_vec()).unwrap();
        assert_eq!(
            edits.finish().unwrap(),
            br#"{"a":{ "k":1,"l":2},"b":{"x":1,"y":3}}"#
        );
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(string("plain"), br#""plain""#);
        assert_eq!(string("q\"\n"), br#""q\"\n""#);
    }
}
