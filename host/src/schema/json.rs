//! Natural JSON ⇄ Avro values, driven by the schema, with errors that name
//! the failing field.

use std::collections::HashMap;
use std::fmt;

use anyhow::bail;
use apache_avro::Schema;
use apache_avro::schema::{RecordSchema, UnionSchema};
use apache_avro::types::Value;
use serde_json::Value as Json;

/// Why a JSON value does not fit its schema, and where.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// Dotted path of the failing field (`attributes.region`); empty for the
    /// event as a whole.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for FieldError {}

fn err(path: &str, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: path.to_string(),
        reason: reason.into(),
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Convert natural JSON into an Avro value of `schema`, or say which field
/// does not fit and why.
pub fn json_to_avro(schema: &Schema, json: &Json) -> Result<Value, FieldError> {
    convert(schema, json, "")
}

fn convert(schema: &Schema, json: &Json, path: &str) -> Result<Value, FieldError> {
    match schema {
        Schema::Null => match json {
            Json::Null => Ok(Value::Null),
            other => Err(err(path, format!("expected null, got {}", kind(other)))),
        },
        Schema::Boolean => json
            .as_bool()
            .map(Value::Boolean)
            .ok_or_else(|| err(path, format!("expected a boolean, got {}", kind(json)))),
        Schema::Int => {
            let n = integer(json, path)?;
            i32::try_from(n)
                .map(Value::Int)
                .map_err(|_| err(path, format!("{n} does not fit a 32-bit int")))
        }
        Schema::Long => integer(json, path).map(Value::Long),
        Schema::Float => number(json, path).map(|f| Value::Float(f as f32)),
        Schema::Double => number(json, path).map(Value::Double),
        Schema::String => json
            .as_str()
            .map(|s| Value::String(s.to_string()))
            .ok_or_else(|| err(path, format!("expected a string, got {}", kind(json)))),
        Schema::Bytes => json
            .as_str()
            .map(|s| Value::Bytes(s.as_bytes().to_vec()))
            .ok_or_else(|| err(path, format!("expected a string, got {}", kind(json)))),
        Schema::TimestampMillis => timestamp_millis(json, path).map(Value::TimestampMillis),
        Schema::Record(record) => convert_record(record, json, path),
        Schema::Enum(e) => {
            let symbol = json.as_str().ok_or_else(|| {
                err(
                    path,
                    format!("expected one of {:?}, got {}", e.symbols, kind(json)),
                )
            })?;
            let index =
                e.symbols.iter().position(|s| s == symbol).ok_or_else(|| {
                    err(path, format!("`{symbol}` is not one of {:?}", e.symbols))
                })?;
            Ok(Value::Enum(index as u32, symbol.to_string()))
        }
        Schema::Array(array) => {
            let items = json
                .as_array()
                .ok_or_else(|| err(path, format!("expected an array, got {}", kind(json))))?;
            items
                .iter()
                .enumerate()
                .map(|(i, item)| convert(&array.items, item, &format!("{path}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        Schema::Map(map) => {
            let object = json
                .as_object()
                .ok_or_else(|| err(path, format!("expected an object, got {}", kind(json))))?;
            let mut out = HashMap::with_capacity(object.len());
            for (key, value) in object {
                out.insert(key.clone(), convert(&map.types, value, &join(path, key))?);
            }
            Ok(Value::Map(out))
        }
        Schema::Union(union) => convert_union(union, json, path),
        Schema::Fixed(fixed) => {
            let s = json
                .as_str()
                .ok_or_else(|| err(path, format!("expected a string, got {}", kind(json))))?;
            if s.len() != fixed.size {
                return Err(err(path, format!("expected exactly {} bytes", fixed.size)));
            }
            Ok(Value::Fixed(fixed.size, s.as_bytes().to_vec()))
        }
        other => Err(err(
            path,
            format!("schema type {other:?} is not supported for JSON input"),
        )),
    }
}

fn convert_record(record: &RecordSchema, json: &Json, path: &str) -> Result<Value, FieldError> {
    let object = json
        .as_object()
        .ok_or_else(|| err(path, format!("expected an object, got {}", kind(json))))?;
    let mut fields = Vec::with_capacity(record.fields.len());
    for field in &record.fields {
        let field_path = join(path, &field.name);
        let value = match object.get(&field.name) {
            Some(value) => convert(&field.schema, value, &field_path)?,
            None => match &field.default {
                Some(default) => convert(&field.schema, default, &field_path)?,
                None if accepts_null(&field.schema) => {
                    convert(&field.schema, &Json::Null, &field_path)?
                }
                None => return Err(err(&field_path, "required field is missing")),
            },
        };
        fields.push((field.name.clone(), value));
    }
    if let Some(unknown) = object
        .keys()
        .find(|k| !record.fields.iter().any(|f| &f.name == *k))
    {
        return Err(err(
            &join(path, unknown),
            "unknown field (not in the schema)",
        ));
    }
    Ok(Value::Record(fields))
}

fn accepts_null(schema: &Schema) -> bool {
    match schema {
        Schema::Null => true,
        Schema::Union(u) => u.variants().iter().any(|v| matches!(v, Schema::Null)),
        _ => false,
    }
}

fn convert_union(union: &UnionSchema, json: &Json, path: &str) -> Result<Value, FieldError> {
    let mut first_error = None;
    for (index, variant) in union.variants().iter().enumerate() {
        match convert(variant, json, path) {
            Ok(value) => return Ok(Value::Union(index as u32, Box::new(value))),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let names: Vec<String> = union
        .variants()
        .iter()
        .map(|v| format!("{:?}", apache_avro::schema::SchemaKind::from(v)).to_lowercase())
        .collect();
    Err(first_error.filter(|e| e.field != path).unwrap_or_else(|| {
        err(
            path,
            format!("expected one of {}, got {}", names.join(" | "), kind(json)),
        )
    }))
}

fn integer(json: &Json, path: &str) -> Result<i64, FieldError> {
    match json {
        Json::Number(n) => super::from_json::integral(n)
            .ok_or_else(|| err(path, format!("expected an integer, got {n}"))),
        other => Err(err(
            path,
            format!("expected an integer, got {}", kind(other)),
        )),
    }
}

fn number(json: &Json, path: &str) -> Result<f64, FieldError> {
    json.as_f64()
        .ok_or_else(|| err(path, format!("expected a number, got {}", kind(json))))
}

fn timestamp_millis(json: &Json, path: &str) -> Result<i64, FieldError> {
    match json {
        Json::Number(_) => integer(json, path),
        Json::String(s) => super::from_json::rfc3339_millis(s).map_err(|e| err(path, e)),
        other => Err(err(
            path,
            format!(
                "expected epoch milliseconds or an RFC 3339 timestamp, got {}",
                kind(other)
            ),
        )),
    }
}

/// Convert an Avro value to natural JSON (see the module docs).
pub fn avro_to_json(value: &Value) -> anyhow::Result<Json> {
    Ok(match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Long(l) | Value::TimestampMillis(l) | Value::TimestampMicros(l) => Json::from(*l),
        Value::Float(f) => Json::from(*f as f64),
        Value::Double(d) => Json::from(*d),
        Value::String(s) | Value::Enum(_, s) => Json::String(s.clone()),
        Value::Bytes(b) | Value::Fixed(_, b) => {
            Json::String(String::from_utf8_lossy(b).into_owned())
        }
        Value::Union(_, inner) => avro_to_json(inner)?,
        Value::Array(items) => Json::Array(
            items
                .iter()
                .map(avro_to_json)
                .collect::<anyhow::Result<_>>()?,
        ),
        Value::Map(map) => {
            let mut object = serde_json::Map::with_capacity(map.len());
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for key in keys {
                object.insert(key.clone(), avro_to_json(&map[key])?);
            }
            Json::Object(object)
        }
        Value::Record(fields) => {
            let mut object = serde_json::Map::with_capacity(fields.len());
            for (name, value) in fields {
                object.insert(name.clone(), avro_to_json(value)?);
            }
            Json::Object(object)
        }
        other => bail!("Avro value {other:?} has no natural JSON form in Sluice"),
    })
}
