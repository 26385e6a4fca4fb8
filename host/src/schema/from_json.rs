//! Natural JSON → Avro binary datum, validated and encoded in one pass.
//!
//! The rules, and every [`FieldError`] (field path and reason), are those of
//! `json_to_avro` in `json.rs`; the property tests in `transcode_tests.rs`
//! hold the two to the same answers. The input is anything that implements
//! [`Input`]: a node of a [`JsonDoc`](super::json_doc::JsonDoc) read straight
//! from request bytes (no tree), or a `serde_json::Value` (schema defaults,
//! and callers that already hold one). Field paths are only rendered when an
//! error is reported.

use std::borrow::Cow;
use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::{RecordSchema, UnionSchema};
use serde_json::{Number, Value as Json};

use super::json::FieldError;
use super::json_doc::{JsonKind, JsonNode};

/// A JSON value as the encoder reads it.
pub trait Input<'a>: Copy {
    /// The value's kind.
    fn kind(self) -> JsonKind;
    /// The boolean, if it is one.
    fn as_bool(self) -> Option<bool>;
    /// The string, if it is one.
    fn as_str(self) -> Option<Cow<'a, str>>;
    /// The number, if it is one.
    fn as_number(self) -> Option<Number>;
    /// Array items in order (nothing for other kinds).
    fn items(self) -> impl Iterator<Item = Self>;
    /// Object entries in document order; may repeat a key (the last value
    /// counts, at the place of the first, as in serde_json's map).
    fn entries(self) -> impl Iterator<Item = (Cow<'a, str>, Self)>;
    /// Whether [`Input::entries`] can repeat a key.
    fn may_repeat_keys(self) -> bool;
}

impl<'a> Input<'a> for JsonNode<'a> {
    fn kind(self) -> JsonKind {
        JsonNode::kind(&self)
    }
    fn as_bool(self) -> Option<bool> {
        JsonNode::as_bool(&self)
    }
    fn as_str(self) -> Option<Cow<'a, str>> {
        JsonNode::as_str(&self)
    }
    fn as_number(self) -> Option<Number> {
        JsonNode::as_number(&self)
    }
    fn items(self) -> impl Iterator<Item = Self> {
        JsonNode::items(&self)
    }
    fn entries(self) -> impl Iterator<Item = (Cow<'a, str>, Self)> {
        JsonNode::entries(&self).map(|(k, v)| (k.as_str().unwrap_or_default(), v))
    }
    fn may_repeat_keys(self) -> bool {
        true
    }
}

impl<'a> Input<'a> for &'a Json {
    fn kind(self) -> JsonKind {
        match self {
            Json::Null => JsonKind::Null,
            Json::Bool(_) => JsonKind::Bool,
            Json::Number(_) => JsonKind::Number,
            Json::String(_) => JsonKind::String,
            Json::Array(_) => JsonKind::Array,
            Json::Object(_) => JsonKind::Object,
        }
    }
    fn as_bool(self) -> Option<bool> {
        Json::as_bool(self)
    }
    fn as_str(self) -> Option<Cow<'a, str>> {
        Json::as_str(self).map(Cow::Borrowed)
    }
    fn as_number(self) -> Option<Number> {
        match self {
            Json::Number(n) => Some(n.clone()),
            _ => None,
        }
    }
    fn items(self) -> impl Iterator<Item = Self> {
        self.as_array().into_iter().flatten()
    }
    fn entries(self) -> impl Iterator<Item = (Cow<'a, str>, Self)> {
        self.as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (Cow::Borrowed(k.as_str()), v))
    }
    fn may_repeat_keys(self) -> bool {
        false
    }
}

/// Where a value sits, rendered only for errors.
#[derive(Clone, Copy)]
enum Path<'p> {
    Root,
    Field(&'p Path<'p>, &'p str),
    Index(&'p Path<'p>, usize),
}

impl Path<'_> {
    fn render(&self) -> String {
        match self {
            Path::Root => String::new(),
            Path::Field(parent, name) => {
                let parent = parent.render();
                if parent.is_empty() {
                    (*name).to_string()
                } else {
                    format!("{parent}.{name}")
                }
            }
            Path::Index(parent, i) => format!("{}[{i}]", parent.render()),
        }
    }

    fn err(&self, reason: impl Into<String>) -> FieldError {
        FieldError {
            field: self.render(),
            reason: reason.into(),
        }
    }
}

fn kind_name(kind: JsonKind) -> &'static str {
    match kind {
        JsonKind::Null => "null",
        JsonKind::Bool => "a boolean",
        JsonKind::Number => "a number",
        JsonKind::String => "a string",
        JsonKind::Array => "an array",
        JsonKind::Object => "an object",
    }
}

/// Append `n` as an Avro (zigzag varint) long.
pub(crate) fn put_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z > 0x7f {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_long(out, bytes.len() as i64);
    out.extend_from_slice(bytes);
}

/// Validate `json` against `schema` and append its Avro datum to `out`, or
/// say which field does not fit and why (as `json_to_avro` would). On error
/// `out` may hold a partial datum.
pub fn encode<'a, I: Input<'a>>(
    schema: &Schema,
    json: I,
    out: &mut Vec<u8>,
) -> Result<(), FieldError> {
    value(schema, json, &Path::Root, out)
}

fn value<'a, I: Input<'a>>(
    schema: &Schema,
    json: I,
    path: &Path<'_>,
    out: &mut Vec<u8>,
) -> Result<(), FieldError> {
    match schema {
        Schema::Null => match json.kind() {
            JsonKind::Null => Ok(()),
            other => Err(path.err(format!("expected null, got {}", kind_name(other)))),
        },
        Schema::Boolean => {
            let b = json.as_bool().ok_or_else(|| {
                path.err(format!(
                    "expected a boolean, got {}",
                    kind_name(json.kind())
                ))
            })?;
            out.push(u8::from(b));
            Ok(())
        }
        Schema::Int => {
            let n = integer(json, path)?;
            let n =
                i32::try_from(n).map_err(|_| path.err(format!("{n} does not fit a 32-bit int")))?;
            put_long(out, i64::from(n));
            Ok(())
        }
        Schema::Long => {
            put_long(out, integer(json, path)?);
            Ok(())
        }
        Schema::Float => {
            let f = number(json, path)? as f32;
            out.extend_from_slice(&f.to_le_bytes());
            Ok(())
        }
        Schema::Double => {
            out.extend_from_slice(&number(json, path)?.to_le_bytes());
            Ok(())
        }
        Schema::String | Schema::Bytes => {
            let s = string(json, path)?;
            put_bytes(out, s.as_bytes());
            Ok(())
        }
        Schema::TimestampMillis => {
            put_long(out, timestamp_millis(json, path)?);
            Ok(())
        }
        Schema::Record(record) => encode_record(record, json, path, out),
        Schema::Enum(e) => {
            let symbol = json.as_str().ok_or_else(|| {
                path.err(format!(
                    "expected one of {:?}, got {}",
                    e.symbols,
                    kind_name(json.kind())
                ))
            })?;
            let index = e
                .symbols
                .iter()
                .position(|s| *s == *symbol)
                .ok_or_else(|| path.err(format!("`{symbol}` is not one of {:?}", e.symbols)))?;
            put_long(out, index as i64);
            Ok(())
        }
        Schema::Array(array) => {
            if json.kind() != JsonKind::Array {
                return Err(path.err(format!("expected an array, got {}", kind_name(json.kind()))));
            }
            let count = json.items().count();
            if count > 0 {
                put_long(out, count as i64);
                for (i, item) in json.items().enumerate() {
                    value(&array.items, item, &Path::Index(path, i), out)?;
                }
            }
            out.push(0);
            Ok(())
        }
        Schema::Map(map) => encode_map(&map.types, json, path, out),
        Schema::Union(union) => encode_union(union, json, path, out),
        Schema::Fixed(fixed) => {
            let s = string(json, path)?;
            if s.len() != fixed.size {
                return Err(path.err(format!("expected exactly {} bytes", fixed.size)));
            }
            out.extend_from_slice(s.as_bytes());
            Ok(())
        }
        other => Err(path.err(format!(
            "schema type {other:?} is not supported for JSON input"
        ))),
    }
}

fn string<'a, I: Input<'a>>(json: I, path: &Path<'_>) -> Result<Cow<'a, str>, FieldError> {
    json.as_str()
        .ok_or_else(|| path.err(format!("expected a string, got {}", kind_name(json.kind()))))
}

fn integer<'a, I: Input<'a>>(json: I, path: &Path<'_>) -> Result<i64, FieldError> {
    match json.as_number() {
        Some(n) => integral(&n).ok_or_else(|| path.err(format!("expected an integer, got {n}"))),
        None => Err(path.err(format!(
            "expected an integer, got {}",
            kind_name(json.kind())
        ))),
    }
}

fn number<'a, I: Input<'a>>(json: I, path: &Path<'_>) -> Result<f64, FieldError> {
    json.as_number()
        .and_then(|n| n.as_f64())
        .ok_or_else(|| path.err(format!("expected a number, got {}", kind_name(json.kind()))))
}

fn timestamp_millis<'a, I: Input<'a>>(json: I, path: &Path<'_>) -> Result<i64, FieldError> {
    match json.kind() {
        JsonKind::Number => integer(json, path),
        JsonKind::String => {
            let s = json.as_str().unwrap_or_default();
            rfc3339_millis(&s).map_err(|e| path.err(e))
        }
        other => Err(path.err(format!(
            "expected epoch milliseconds or an RFC 3339 timestamp, got {}",
            kind_name(other)
        ))),
    }
}

/// Record fields in schema order, from wherever they sit in the object.
fn encode_record<'a, I: Input<'a>>(
    record: &RecordSchema,
    json: I,
    path: &Path<'_>,
    out: &mut Vec<u8>,
) -> Result<(), FieldError> {
    if json.kind() != JsonKind::Object {
        return Err(path.err(format!(
            "expected an object, got {}",
            kind_name(json.kind())
        )));
    }
    let fields = &record.fields;
    let mut small = [None; 16];
    let mut large = Vec::new();
    let slots: &mut [Option<I>] = if fields.len() <= small.len() {
        &mut small[..fields.len()]
    } else {
        large.resize(fields.len(), None);
        &mut large
    };
    // One pass over the keys; producers usually follow schema order, so the
    // search starts after the last match. A repeated key keeps its last value.
    let mut unknown: Option<Cow<'a, str>> = None;
    let mut hint = 0;
    for (key, item) in json.entries() {
        let found = (hint..fields.len())
            .chain(0..hint)
            .find(|&i| fields[i].name == *key);
        match found {
            Some(i) => {
                slots[i] = Some(item);
                hint = i + 1;
            }
            None => {
                unknown.get_or_insert(key);
            }
        }
    }
    for (field, slot) in fields.iter().zip(slots.iter()) {
        let field_path = Path::Field(path, &field.name);
        match slot {
            Some(item) => value(&field.schema, *item, &field_path, out)?,
            None => match &field.default {
                Some(default) => value(&field.schema, default, &field_path, out)?,
                None if accepts_null(&field.schema) => {
                    value(&field.schema, &Json::Null, &field_path, out)?
                }
                None => return Err(field_path.err("required field is missing")),
            },
        }
    }
    match unknown {
        Some(key) => Err(Path::Field(path, &key).err("unknown field (not in the schema)")),
        None => Ok(()),
    }
}

fn accepts_null(schema: &Schema) -> bool {
    match schema {
        Schema::Null => true,
        Schema::Union(u) => u.variants().iter().any(|v| matches!(v, Schema::Null)),
        _ => false,
    }
}

/// A map in object order; a repeated key counts once, with its last value.
fn encode_map<'a, I: Input<'a>>(
    values: &Schema,
    json: I,
    path: &Path<'_>,
    out: &mut Vec<u8>,
) -> Result<(), FieldError> {
    if json.kind() != JsonKind::Object {
        return Err(path.err(format!(
            "expected an object, got {}",
            kind_name(json.kind())
        )));
    }
    let entry = |key: &str, item: I, out: &mut Vec<u8>| {
        put_bytes(out, key.as_bytes());
        value(values, item, &Path::Field(path, key), out)
    };
    if json.may_repeat_keys() && has_repeated_key(json) {
        let mut order: Vec<(Cow<'a, str>, I)> = Vec::new();
        let mut seen: HashMap<Cow<'a, str>, usize> = HashMap::new();
        for (key, item) in json.entries() {
            match seen.get(&key) {
                Some(&i) => order[i].1 = item,
                None => {
                    seen.insert(key.clone(), order.len());
                    order.push((key, item));
                }
            }
        }
        if !order.is_empty() {
            put_long(out, order.len() as i64);
            for (key, item) in order {
                entry(&key, item, out)?;
            }
        }
    } else {
        let count = json.entries().count();
        if count > 0 {
            put_long(out, count as i64);
            for (key, item) in json.entries() {
                entry(&key, item, out)?;
            }
        }
    }
    out.push(0);
    Ok(())
}

fn has_repeated_key<'a, I: Input<'a>>(json: I) -> bool {
    let count = json.entries().count();
    if count <= 16 {
        let mut keys: [Cow<'a, str>; 16] = Default::default();
        for (i, (key, _)) in json.entries().enumerate() {
            if keys[..i].contains(&key) {
                return true;
            }
            keys[i] = key;
        }
        false
    } else {
        let mut seen = std::collections::HashSet::with_capacity(count);
        json.entries().any(|(key, _)| !seen.insert(key))
    }
}

/// Whether `json` can possibly be a value of `schema`; `false` means its
/// conversion fails with an error at the union's own path.
fn could_match(schema: &Schema, kind: JsonKind) -> bool {
    match schema {
        Schema::Null => kind == JsonKind::Null,
        Schema::Boolean => kind == JsonKind::Bool,
        Schema::Int | Schema::Long | Schema::Float | Schema::Double => kind == JsonKind::Number,
        Schema::TimestampMillis => matches!(kind, JsonKind::Number | JsonKind::String),
        Schema::String | Schema::Bytes | Schema::Enum(_) | Schema::Fixed(_) => {
            kind == JsonKind::String
        }
        Schema::Record(_) | Schema::Map(_) => kind == JsonKind::Object,
        Schema::Array(_) => kind == JsonKind::Array,
        _ => true,
    }
}

/// The first variant that takes the value wins. As in `json_to_avro`, the
/// error is the first variant's when it lies inside the value, else a
/// summary of the variants.
fn encode_union<'a, I: Input<'a>>(
    union: &UnionSchema,
    json: I,
    path: &Path<'_>,
    out: &mut Vec<u8>,
) -> Result<(), FieldError> {
    let kind = json.kind();
    let mark = out.len();
    let mut first_error: Option<Option<FieldError>> = None;
    for (index, variant) in union.variants().iter().enumerate() {
        if !could_match(variant, kind) {
            // Its error would be at `path`, which never surfaces.
            first_error.get_or_insert(None);
            continue;
        }
        put_long(out, index as i64);
        match value(variant, json, path, out) {
            Ok(()) => return Ok(()),
            Err(e) => {
                out.truncate(mark);
                first_error.get_or_insert(Some(e));
            }
        }
    }
    let here = path.render();
    Err(first_error
        .flatten()
        .filter(|e| e.field != here)
        .unwrap_or_else(|| {
            let names: Vec<String> = union
                .variants()
                .iter()
                .map(|v| format!("{:?}", apache_avro::schema::SchemaKind::from(v)).to_lowercase())
                .collect();
            FieldError {
                field: here,
                reason: format!(
                    "expected one of {}, got {}",
                    names.join(" | "),
                    kind_name(kind)
                ),
            }
        }))
}

/// Epoch milliseconds of an RFC 3339 timestamp (any year 0000–9999, any
/// offset; a missing offset reads as UTC, a space may stand for `T`), as
/// every JSON input path reads a `timestamp-millis` string.
pub(super) fn rfc3339_millis(text: &str) -> Result<i64, String> {
    let parsed = text.parse::<jiff::Timestamp>().or_else(|strict| {
        text.parse::<jiff::civil::DateTime>()
            .and_then(|civil| civil.to_zoned(jiff::tz::TimeZone::UTC))
            .map(|zoned| zoned.timestamp())
            .map_err(|_| strict)
    });
    parsed
        .map(|t| t.as_millisecond())
        .map_err(|e| format!("expected epoch milliseconds or an RFC 3339 timestamp: {e}"))
}

/// `n` as an i64 if it is an integer, as JSON Schema counts them: `1.0`
/// is the integer 1. Fractions are not, nor are numbers past i64 (serde
/// reads those as floats) or floats past 2^53, which no longer name one
/// integer.
pub(super) fn integral(n: &serde_json::Number) -> Option<i64> {
    const LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() <= LIMIT)
            .map(|f| f as i64)
    })
}
