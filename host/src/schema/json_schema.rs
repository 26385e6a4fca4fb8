//! The JSON Schema of the JSON that ingest accepts for an Avro schema, as
//! `from_json` reads it: records as objects (no unknown fields; fields
//! with defaults optional), maps as objects, enums as their symbols, unions
//! as the plain value of a branch, timestamp-millis as epoch milliseconds
//! or an RFC 3339 string. The OpenAPI document shows event bodies with it.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::Name;
use serde_json::{Value, json};

/// The JSON Schema (2020-12, as OpenAPI 3.1 uses it) of `schema`'s JSON.
pub fn of(schema: &Schema) -> Value {
    let mut named = HashMap::new();
    convert(schema, None, &mut named)
}

/// Named types seen so far: their JSON Schema, or `None` while a record is
/// still being converted (a reference to it then is recursive).
type Named = HashMap<Name, Option<Value>>;

fn convert(schema: &Schema, namespace: Option<&str>, named: &mut Named) -> Value {
    match schema {
        Schema::Null => json!({"type": "null"}),
        Schema::Boolean => json!({"type": "boolean"}),
        Schema::Int => json!({"type": "integer", "format": "int32",
            "minimum": i32::MIN, "maximum": i32::MAX}),
        Schema::Long => json!({"type": "integer", "format": "int64",
            "minimum": i64::MIN, "maximum": i64::MAX}),
        Schema::Float | Schema::Double => json!({"type": "number"}),
        Schema::String => json!({"type": "string"}),
        Schema::Bytes => json!({"type": "string", "description": "The bytes as text."}),
        Schema::TimestampMillis => json!({"oneOf": [
            {"type": "integer", "format": "int64", "minimum": i64::MIN, "maximum": i64::MAX,
             "description": "Epoch milliseconds."},
            {"type": "string", "format": "date-time", "description": "RFC 3339."},
        ]}),
        Schema::Fixed(fixed) => {
            let value = json!({"type": "string",
                "description": format!("Exactly {} bytes of text.", fixed.size)});
            named.insert(fixed.name.clone(), Some(value.clone()));
            value
        }
        Schema::Enum(e) => {
            let value = with_doc(
                json!({"type": "string", "enum": e.symbols}),
                e.doc.as_deref(),
            );
            named.insert(e.name.clone(), Some(value.clone()));
            value
        }
        Schema::Array(array) => {
            json!({"type": "array", "items": convert(&array.items, namespace, named)})
        }
        Schema::Map(map) => json!({"type": "object",
            "additionalProperties": convert(&map.types, namespace, named)}),
        Schema::Union(union) => {
            let variants = union.variants();
            let nullable = variants.iter().any(|v| matches!(v, Schema::Null));
            let others: Vec<&Schema> = variants
                .iter()
                .filter(|v| !matches!(v, Schema::Null))
                .collect();
            match (nullable, others.as_slice()) {
                (true, [one]) => {
                    let inner = convert(one, namespace, named);
                    match inner.get("type").and_then(Value::as_str) {
                        Some(kind) if inner.get("enum").is_none() => {
                            let mut inner = inner.clone();
                            inner["type"] = json!([kind, "null"]);
                            inner
                        }
                        _ => json!({"anyOf": [inner, {"type": "null"}]}),
                    }
                }
                _ => json!({"anyOf": variants
                    .iter()
                    .map(|v| convert(v, namespace, named))
                    .collect::<Vec<_>>()}),
            }
        }
        Schema::Record(record) => {
            named.insert(record.name.clone(), None);
            let inner_namespace = record.name.namespace.as_deref().or(namespace);
            let mut properties = serde_json::Map::new();
            let mut required = Vec::new();
            for field in &record.fields {
                let mut property = convert(&field.schema, inner_namespace, named);
                if let Some(doc) = &field.doc {
                    property["description"] = json!(doc);
                }
                match &field.default {
                    Some(default) => property["default"] = default.clone(),
                    None => required.push(json!(field.name)),
                }
                properties.insert(field.name.clone(), property);
            }
            let value = with_doc(
                json!({"type": "object", "required": required, "properties": properties,
                    "additionalProperties": false}),
                record.doc.as_deref(),
            );
            named.insert(record.name.clone(), Some(value.clone()));
            value
        }
        Schema::Ref { name } => {
            let qualified = name.fully_qualified_name(&namespace.map(str::to_string));
            match named.get(name).or_else(|| named.get(&qualified)) {
                Some(Some(value)) => value.clone(),
                // A record that contains itself: its schema would not end.
                _ => json!({"type": "object",
                    "description": format!("A `{}` record.", qualified.fullname(None))}),
            }
        }
        other => json!({"not": {}, "description":
            format!("Avro {other:?} is not accepted as JSON input.")}),
    }
}

fn with_doc(mut value: Value, doc: Option<&str>) -> Value {
    if let Some(doc) = doc {
        value["description"] = json!(doc);
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_telemetry_schema_becomes_the_json_ingest_reads() {
        let text = include_str!("../../../schemas/telemetry_event.avsc");
        let schema = Schema::parse_str(text).expect("avsc");
        let doc = of(&schema);
        assert_eq!(doc["type"], "object");
        assert_eq!(doc["additionalProperties"], false);
        assert_eq!(
            doc["required"],
            json!(["event_id", "type", "source", "entity_id", "occurred_at"])
        );
        let p = &doc["properties"];
        assert_eq!(p["event_id"]["type"], "string");
        assert_eq!(p["occurred_at"]["oneOf"][1]["format"], "date-time");
        assert_eq!(p["severity"]["enum"][4], "FATAL");
        assert_eq!(p["severity"]["default"], "INFO");
        assert_eq!(p["attributes"]["additionalProperties"]["type"], "string");
        assert_eq!(p["trace_id"]["type"], json!(["string", "null"]));
        assert_eq!(p["trace_id"]["default"], Value::Null);
    }

    #[test]
    fn nested_records_arrays_and_general_unions() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"A","fields":[
                {"name":"n","type":"int"},
                {"name":"tags","type":{"type":"array","items":"string"}},
                {"name":"inner","type":{"type":"record","name":"B","fields":[{"name":"x","type":"double"}]}},
                {"name":"again","type":["null","B"],"default":null},
                {"name":"either","type":["int","string"]}]}"#,
        )
        .expect("schema");
        let doc = of(&schema);
        let p = &doc["properties"];
        assert_eq!(p["n"]["maximum"], i32::MAX);
        assert_eq!(p["tags"]["items"]["type"], "string");
        assert_eq!(p["inner"]["properties"]["x"]["type"], "number");
        assert_eq!(p["again"]["type"], json!(["object", "null"]));
        assert_eq!(p["again"]["properties"]["x"]["type"], "number");
        assert_eq!(p["either"]["anyOf"][1]["type"], "string");
    }
}
