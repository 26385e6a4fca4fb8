//! The one-pass transcoders against the tree path they replace: for random
//! schemas and values, Avro → JSON gives the same bytes as `avro_to_json`,
//! JSON → Avro the same datum as `json_to_avro` + apache-avro, and broken or
//! mistyped input the same `FieldError` (or, for Avro, an error too).

use super::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value as Json, json};

/// The old JSON → framed Avro path.
pub(super) fn old_encode(schema: &LoadedSchema, json: &Json) -> Result<Vec<u8>, FieldError> {
    let value = json_to_avro(&schema.schema, json)?;
    schema.encode(value).map_err(|e| FieldError {
        field: String::new(),
        reason: format!("{e:#}"),
    })
}

/// The old request-bytes path: parse, then convert.
pub(super) fn old_encode_bytes(schema: &LoadedSchema, text: &[u8]) -> Result<Vec<u8>, FieldError> {
    let json: Json = serde_json::from_slice(text).map_err(|e| FieldError {
        field: String::new(),
        reason: format!("invalid JSON: {e}"),
    })?;
    old_encode(schema, &json)
}

/// The old Avro → JSON bytes path.
pub(super) fn old_to_json(schema: &LoadedSchema, datum: &[u8]) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec(&avro_to_json(
        &schema.decode_datum(datum)?,
    )?)?)
}

pub(super) fn loaded(schema: &Json) -> LoadedSchema {
    LoadedSchema::from_str(&schema.to_string(), Path::new("test.avsc")).expect("schema parses")
}

/// Whether two framed datums hold the same value (map order may differ:
/// the old path writes maps in `HashMap` order).
pub(super) fn same_datum(schema: &LoadedSchema, a: &[u8], b: &[u8]) -> bool {
    a == b
        || (a.len() == b.len()
            && schema.decode_datum(&a[HEADER_LEN..]).ok()
                == Some(
                    schema
                        .decode_datum(&b[HEADER_LEN..])
                        .expect("new datum decodes"),
                ))
}

// ---- random schemas -------------------------------------------------------

/// A schema type as JSON, with `"$name"` placeholders for named types and
/// `{"$ref": ...}` for references to earlier enums or fixeds.
fn schema_type(depth: u32) -> BoxedStrategy<Json> {
    // Timestamp-micros and references have no JSON input form (both paths
    // refuse them), so they are rare here to keep most values valid.
    let leaf = prop_oneof![
        3 => Just(json!("boolean")),
        3 => Just(json!("int")),
        3 => Just(json!("long")),
        3 => Just(json!("float")),
        3 => Just(json!("double")),
        3 => Just(json!("string")),
        3 => Just(json!("bytes")),
        3 => Just(json!({"type": "long", "logicalType": "timestamp-millis"})),
        3 => prop::collection::btree_set((b'A'..=b'E').prop_map(|b| char::from(b).to_string()), 1..4)
            .prop_map(|s| json!({"type": "enum", "name": "$name", "symbols": s})),
        3 => (0usize..4).prop_map(|n| json!({"type": "fixed", "name": "$name", "size": n})),
        1 => Just(json!({"type": "long", "logicalType": "timestamp-micros"})),
        1 => Just(json!({"$ref": true})),
    ];
    leaf.prop_recursive(depth, 24, 4, |inner| {
        prop_oneof![
            inner
                .clone()
                .prop_map(|t| json!({"type": "array", "items": t})),
            inner
                .clone()
                .prop_map(|t| json!({"type": "map", "values": t})),
            (inner.clone(), any::<bool>()).prop_map(|(t, first)| if first {
                json!(["null", t])
            } else {
                json!([t, "null"])
            }),
            Just(json!(["string", "long", "null"])),
            Just(json!(["int", "boolean", "double"])),
            record(inner),
        ]
    })
    .boxed()
}

fn record(inner: impl Strategy<Value = Json> + 'static) -> BoxedStrategy<Json> {
    prop::collection::vec((inner, any::<bool>()), 0..5)
        .prop_map(|fields| {
            let fields: Vec<Json> = fields
                .into_iter()
                .enumerate()
                .map(|(i, (t, with_default))| {
                    let mut field = json!({"name": format!("f{i}"), "type": t});
                    if with_default && let Some(d) = default_for(&field["type"]) {
                        field["default"] = d;
                    }
                    field
                })
                .collect();
            json!({"type": "record", "name": "$name", "fields": fields})
        })
        .boxed()
}

/// A default valid for the type, where one is easy to state.
fn default_for(t: &Json) -> Option<Json> {
    match t {
        Json::String(s) => match s.as_str() {
            "boolean" => Some(json!(true)),
            "int" | "long" => Some(json!(7)),
            "float" | "double" => Some(json!(1.5)),
            "string" => Some(json!("d\"e")),
            _ => None,
        },
        Json::Array(v) if v[0] == "null" => Some(Json::Null),
        Json::Object(o) => match o.get("type").and_then(Json::as_str) {
            Some("map") => Some(json!({})),
            Some("array") => Some(json!([])),
            Some("enum") => o["symbols"].get(0).cloned(),
            _ => None,
        },
        _ => None,
    }
}

/// Give named types unique names and point references at earlier enums or
/// fixeds (or `string` when there is none).
fn name_types(t: &mut Json, defined: &mut Vec<String>, counter: &mut usize) {
    match t {
        Json::Object(o) => {
            if o.contains_key("$ref") {
                *t = match defined.last() {
                    Some(name) => json!(name),
                    None => json!("string"),
                };
                return;
            }
            if o.get("name") == Some(&json!("$name")) {
                let name = format!("T{counter}");
                *counter += 1;
                if o["type"] != "record" {
                    defined.push(name.clone());
                }
                o.insert("name".into(), json!(name));
            }
            for key in ["items", "values", "type"] {
                if let Some(inner) = o.get_mut(key).filter(|v| !v.is_string()) {
                    name_types(inner, defined, counter);
                }
            }
            if let Some(Json::Array(fields)) = o.get_mut("fields") {
                for field in fields {
                    name_types(&mut field["type"], defined, counter);
                }
            }
        }
        Json::Array(variants) => {
            for v in variants {
                name_types(v, defined, counter);
            }
        }
        _ => {}
    }
}

fn any_schema() -> impl Strategy<Value = Arc<LoadedSchema>> {
    record(schema_type(3)).prop_filter_map("valid Avro schema", |mut top| {
        name_types(&mut top, &mut Vec::new(), &mut 0);
        LoadedSchema::from_str(&top.to_string(), Path::new("random.avsc"))
            .ok()
            .map(Arc::new)
    })
}

// ---- random values of a schema --------------------------------------------

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        prop::collection::vec(b'a'..=b'e', 0..6)
            .prop_map(|b| String::from_utf8(b).unwrap_or_default()),
        prop::collection::vec(any::<char>(), 0..6).prop_map(String::from_iter),
        Just("\"\\/\u{8}\u{c}\n\r\t\u{1}\u{7f}é€😀".to_string()),
    ]
    .boxed()
}

fn value_of(schema: &Schema, names: &HashMap<Name, Schema>) -> BoxedStrategy<Json> {
    match schema {
        Schema::Null => Just(Json::Null).boxed(),
        Schema::Boolean => any::<bool>().prop_map(Json::from).boxed(),
        Schema::Int => any::<i32>().prop_map(Json::from).boxed(),
        Schema::Long | Schema::TimestampMicros => any::<i64>().prop_map(Json::from).boxed(),
        Schema::TimestampMillis => prop_oneof![
            any::<i64>().prop_map(Json::from),
            (0u64..4_000_000_000_000).prop_map(|ms| {
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
                json!(humantime::format_rfc3339_millis(t).to_string())
            }),
        ]
        .boxed(),
        Schema::Float => prop_oneof![
            any::<f32>().prop_map(|f| Json::from(f as f64)),
            any::<i16>().prop_map(Json::from),
            Just(json!(0.1)),
            Just(json!(-0.0)),
        ]
        .boxed(),
        Schema::Double => prop_oneof![
            any::<f64>().prop_map(Json::from),
            any::<i64>().prop_map(Json::from),
            any::<u64>().prop_map(Json::from),
            Just(json!(1e300)),
        ]
        .boxed(),
        Schema::String | Schema::Bytes => text().prop_map(Json::from).boxed(),
        Schema::Enum(e) => prop::sample::select(e.symbols.clone())
            .prop_map(Json::from)
            .boxed(),
        Schema::Fixed(f) => {
            let n = f.size;
            prop_oneof![
                prop::collection::vec(b'a'..=b'z', n)
                    .prop_map(|b| json!(String::from_utf8(b).unwrap_or_default())),
                Just(json!("é".repeat(n / 2) + &"x".repeat(n % 2))),
            ]
            .boxed()
        }
        Schema::Array(a) => prop::collection::vec(value_of(&a.items, names), 0..4)
            .prop_map(Json::from)
            .boxed(),
        Schema::Map(m) => prop::collection::vec((text(), value_of(&m.types, names)), 0..4)
            .prop_map(|entries| Json::Object(entries.into_iter().collect()))
            .boxed(),
        Schema::Union(u) => {
            let variants: Vec<_> = u.variants().iter().map(|v| value_of(v, names)).collect();
            proptest::strategy::Union::new(variants).boxed()
        }
        Schema::Record(r) => {
            let fields: Vec<_> = r
                .fields
                .iter()
                .map(|f| {
                    let omit = f.default.is_some();
                    (
                        Just(f.name.clone()),
                        value_of(&f.schema, names),
                        any::<bool>(),
                    )
                        .prop_map(move |(n, v, drop)| (n, v, omit && drop))
                })
                .collect();
            (fields, any::<prop::sample::Index>())
                .prop_map(|(fields, rotate)| {
                    let mut kept: Vec<_> = fields
                        .into_iter()
                        .filter(|(_, _, drop)| !drop)
                        .map(|(n, v, _)| (n, v))
                        .collect();
                    if !kept.is_empty() {
                        let k = rotate.index(kept.len());
                        kept.rotate_left(k);
                    }
                    Json::Object(kept.into_iter().collect())
                })
                .boxed()
        }
        Schema::Ref { name } => match names.get(name) {
            Some(target) => value_of(target, names),
            None => Just(Json::Null).boxed(),
        },
        _ => Just(Json::Null).boxed(),
    }
}

fn schema_and_value() -> impl Strategy<Value = (Arc<LoadedSchema>, Json)> {
    any_schema().prop_flat_map(|schema| {
        let value = value_of(&schema.schema, &schema.names);
        (Just(schema), value)
    })
}

/// Any JSON at all, to put where it does not belong.
fn any_json() -> BoxedStrategy<Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        any::<f64>().prop_map(Json::from),
        Just(json!(-0.0)),
        Just(json!(3.0)),
        text().prop_map(Json::from),
        Just(json!("2025-11-29T08:26:40Z")),
        Just(json!("A")),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Json::from),
            prop::collection::vec(
                (
                    prop_oneof![(0u8..5).prop_map(|i| format!("f{i}")), text()],
                    inner
                ),
                0..3
            )
            .prop_map(|e| Json::Object(e.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Replace (or, in an object, remove) the `pick`-th node of `value`.
fn mutate(value: &mut Json, pick: &mut usize, with: &Json, remove: bool) -> bool {
    if *pick == 0 {
        *value = with.clone();
        return true;
    }
    *pick -= 1;
    match value {
        Json::Array(items) => items.iter_mut().any(|v| mutate(v, pick, with, remove)),
        Json::Object(o) => {
            let keys: Vec<String> = o.keys().cloned().collect();
            for key in keys {
                if *pick == 0 && remove {
                    o.shift_remove(&key);
                    return true;
                }
                if o.get_mut(&key)
                    .is_some_and(|v| mutate(v, pick, with, remove))
                {
                    return true;
                }
            }
            false
        }
        _ => false,
    }
}

fn check_valid(schema: &LoadedSchema, value: &Json) -> Result<(), TestCaseError> {
    let text = serde_json::to_vec(value).expect("renders");
    // Both paths start from the text (serde_json's float reading is not
    // always the exact inverse of its writing).
    let parsed: Json = serde_json::from_slice(&text).expect("re-reads");
    let old = old_encode(schema, &parsed);
    let new = schema.encode_json_bytes(&text);
    let from_value = schema.encode_json(&parsed);
    let mut packed = b"prefix".to_vec();
    let appended = schema.append_encoded(&parsed, &mut packed);
    prop_assert_eq!(appended.is_ok(), new.is_ok());
    match &new {
        Ok(framed) => prop_assert_eq!(&packed[6..], &framed[..]),
        Err(_) => prop_assert_eq!(&packed[..], b"prefix"),
    }
    match (&old, &new) {
        (Ok(a), Ok(b)) => {
            prop_assert!(same_datum(schema, a, b), "datums differ for {}", value);
            prop_assert_eq!(&from_value, &new);
            // Avro → JSON on both datums: the old path's bytes exactly.
            for framed in [a, b] {
                let datum = &framed[HEADER_LEN..];
                let want = old_to_json(schema, datum).expect("old path decodes");
                let got = schema.datum_to_json(datum).expect("new path decodes");
                prop_assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&want)
                );
            }
        }
        _ => {
            prop_assert_eq!(&old, &new, "for {}", value);
            prop_assert_eq!(&from_value, &new);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn valid_values_transcode_like_the_tree_path((schema, value) in schema_and_value()) {
        check_valid(&schema, &value)?;
    }

    #[test]
    fn mistyped_values_get_the_same_field_errors(
        (schema, value) in schema_and_value(),
        with in any_json(),
        pick in 0usize..40,
        remove in any::<bool>(),
    ) {
        let mut value = value;
        mutate(&mut value, &mut pick.clone(), &with, remove);
        check_valid(&schema, &value)?;
    }

    #[test]
    fn broken_json_text_gets_the_same_answer(
        (schema, value) in schema_and_value(),
        cut in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        how in 0u8..4,
    ) {
        let mut text = serde_json::to_vec_pretty(&value).expect("renders");
        let at = cut.index(text.len() + 1);
        match how {
            0 => text.truncate(at),
            1 => text.insert(at, byte),
            2 if at < text.len() => text[at] = byte,
            _ => text.extend_from_slice(b" x"),
        }
        let old = old_encode_bytes(&schema, &text);
        let new = schema.encode_json_bytes(&text);
        match (&old, &new) {
            (Ok(a), Ok(b)) => prop_assert!(same_datum(&schema, a, b)),
            _ => prop_assert_eq!(old, new),
        }
    }

    #[test]
    fn broken_avro_fails_where_the_tree_path_fails(
        (schema, value) in schema_and_value(),
        cut in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        how in 0u8..4,
    ) {
        let Ok(framed) = old_encode(&schema, &value) else { return Ok(()) };
        let mut datum = framed[HEADER_LEN..].to_vec();
        let at = cut.index(datum.len() + 1);
        match how {
            0 => datum.truncate(at),
            1 => datum.insert(at, byte),
            2 if at < datum.len() => datum[at] = byte,
            _ => datum.push(byte),
        }
        let old = old_to_json(&schema, &datum);
        let new = schema.datum_to_json(&datum);
        match (&old, &new) {
            (Ok(a), Ok(b)) => prop_assert_eq!(String::from_utf8_lossy(a), String::from_utf8_lossy(b)),
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "old {:?} new {:?}", old.map(drop), new.map(drop)),
        }
    }
}

/// The generators must produce mostly valid values, including maps with
/// several entries, or the properties above would prove little.
#[test]
fn generated_cases_are_mostly_valid_and_varied() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = schema_and_value();
    let (mut valid, mut multi_entry_maps, mut unions, total) = (0, 0, 0, 300);
    for _ in 0..total {
        let (schema, value) = strategy.new_tree(&mut runner).expect("generates").current();
        if old_encode(&schema, &value).is_ok() {
            valid += 1;
        }
        let text = schema.schema.canonical_form();
        unions += usize::from(text.contains("[\"null\"") || text.contains(",\"null\"]"));
        let rendered = value.to_string();
        multi_entry_maps +=
            usize::from(text.contains("\"map\"") && rendered.matches(',').count() > 3);
    }
    eprintln!("{valid}/{total} valid, {unions} with unions, {multi_entry_maps} with maps");
    assert!(
        valid * 2 > total,
        "only {valid} of {total} generated values are valid"
    );
    assert!(unions * 5 > total && multi_entry_maps * 10 > total);
}
