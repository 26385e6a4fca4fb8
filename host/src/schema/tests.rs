use super::*;
use serde_json::json;
use std::path::Path;

fn telemetry() -> LoadedSchema {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/telemetry_event.avsc");
    LoadedSchema::from_file(&path).expect("schema parses")
}

fn event() -> serde_json::Value {
    json!({
        "event_id": "e-1", "type": "page_view", "source": "web", "entity_id": "user-7",
        "occurred_at": 1764400000000i64, "severity": "WARN",
        "attributes": {"region": "eu"}, "trace_id": "t-9"
    })
}

#[test]
fn json_round_trips_through_framed_avro() {
    let schema = telemetry();
    let framed = schema.encode_json(&event()).expect("valid event encodes");
    assert_eq!(&framed[..2], &MAGIC);
    assert_eq!(&framed[2..10], &schema.fingerprint);
    let mut set = SchemaSet::default();
    set.load(&schema.path).unwrap();
    assert_eq!(set.decode_json(&framed).unwrap(), event());
}

#[test]
fn defaults_fill_missing_optional_fields() {
    let schema = telemetry();
    let mut input = event();
    let object = input.as_object_mut().unwrap();
    object.remove("severity");
    object.remove("attributes");
    object.remove("trace_id");
    let mut set = SchemaSet::default();
    set.load(&schema.path).unwrap();
    let decoded = set
        .decode_json(&schema.encode_json(&input).unwrap())
        .unwrap();
    assert_eq!(decoded["severity"], "INFO");
    assert_eq!(decoded["attributes"], json!({}));
    assert_eq!(decoded["trace_id"], serde_json::Value::Null);
}

#[test]
fn rfc3339_timestamps_become_epoch_millis() {
    let schema = telemetry();
    let mut input = event();
    input["occurred_at"] = json!("2025-11-29T08:26:40Z");
    let value = json_to_avro(&schema.schema, &input).unwrap();
    let Value::Record(fields) = value else {
        panic!("record expected")
    };
    assert_eq!(fields[4].1, Value::TimestampMillis(1_764_404_800_000));
}

#[test]
fn any_rfc3339_year_and_offset_reads_the_same_on_both_json_paths() {
    let schema = telemetry();
    for (text, millis) in [
        ("2025-11-29T08:26:40Z", 1_764_404_800_000i64),
        ("2025-11-29T09:26:40.000+01:00", 1_764_404_800_000),
        ("2025-11-29 08:26:40", 1_764_404_800_000),
        ("1969-12-31T23:59:59.999Z", -1),
        ("1559-05-18T02:16:41Z", -12_958_090_999_000),
        ("0001-01-01T00:00:00Z", -62_135_596_800_000),
    ] {
        let mut input = event();
        input["occurred_at"] = json!(text);
        let Value::Record(fields) = json_to_avro(&schema.schema, &input).unwrap() else {
            panic!("record expected")
        };
        assert_eq!(fields[4].1, Value::TimestampMillis(millis), "{text}");
        // The tree-free encoder (the ingest path) gives the same datum.
        let framed = schema.encode_json(&input).expect(text);
        let mut set = SchemaSet::default();
        set.load(&schema.path).unwrap();
        assert_eq!(
            set.decode_json(&framed).unwrap()["occurred_at"],
            json!(millis),
            "{text}"
        );
    }
}

#[test]
fn errors_name_the_failing_field() {
    let schema = telemetry();
    let cases = [
        (
            "entity_id",
            json!(null),
            "entity_id",
            "required field is missing",
        ),
        ("severity", json!("LOUD"), "severity", "is not one of"),
        ("occurred_at", json!("yesterday"), "occurred_at", "RFC 3339"),
        (
            "occurred_at",
            json!(1.5),
            "occurred_at",
            "expected an integer",
        ),
        (
            "attributes",
            json!({"region": 7}),
            "attributes.region",
            "expected a string",
        ),
        (
            "trace_id",
            json!(12),
            "trace_id",
            "expected one of null | string",
        ),
        ("bogus", json!(1), "bogus", "unknown field"),
    ];
    for (field, value, expected_field, expected_reason) in cases {
        let mut input = event();
        if value.is_null() {
            input.as_object_mut().unwrap().remove(field);
        } else {
            input[field] = value;
        }
        let e = json_to_avro(&schema.schema, &input).expect_err(field);
        assert_eq!(e.field, expected_field, "{e}");
        assert!(e.reason.contains(expected_reason), "{field}: {e}");
    }
}

#[test]
fn unknown_fingerprint_and_bad_frames_are_errors() {
    let schema = telemetry();
    let set = SchemaSet::default();
    let framed = schema.encode_json(&event()).unwrap();
    assert!(
        set.decode(&framed)
            .unwrap_err()
            .to_string()
            .contains("fingerprint")
    );
    assert!(split_frame(b"{}").is_err());
    let mut loaded = SchemaSet::default();
    loaded.load(&schema.path).unwrap();
    assert!(loaded.decode(&framed[..framed.len() - 3]).is_err());
}

#[test]
fn truncated_datums_are_errors_not_nulls() {
    // apache-avro alone decodes these as records with null fields.
    let schema = telemetry();
    let framed = schema.encode_json(&event()).unwrap();
    for cut in 1..framed.len() - HEADER_LEN {
        let result = schema.decode_datum(&framed[HEADER_LEN..framed.len() - cut]);
        assert!(result.is_err(), "cut {cut} bytes decoded as {result:?}");
    }
}

/// The telemetry schema with an optional `region` field, as a file in a
/// fresh directory.
fn telemetry_with_region() -> (std::path::PathBuf, LoadedSchema) {
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&telemetry().path).unwrap()).unwrap();
    doc["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "region", "type": ["null", "string"], "default": null}));
    let dir = std::env::temp_dir().join(format!("sluice-reader-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("telemetry_v2.avsc");
    std::fs::write(&path, doc.to_string()).unwrap();
    let loaded = LoadedSchema::from_file(&path).unwrap();
    (path, loaded)
}

#[test]
fn a_reader_schema_reads_records_of_other_writer_schemas_as_itself() {
    let v1 = telemetry();
    let (v2_path, v2) = telemetry_with_region();
    let mut set = SchemaSet::default();
    set.load(&v1.path).unwrap();
    let v2_loaded = set.load(&v2_path).unwrap();
    assert!(
        set.loaded(&v2_path)
            .is_some_and(|s| Arc::ptr_eq(s, &v2_loaded))
    );

    // Without a reader schema each record reads as its own schema.
    let old = v1.encode_json(&event()).unwrap();
    let (schema, json) = set.decode_to_json(&old).unwrap();
    assert_eq!(schema.fingerprint, v1.fingerprint);
    assert!(
        serde_json::from_slice::<serde_json::Value>(&json)
            .unwrap()
            .get("region")
            .is_none()
    );

    // Reading as v2: the v1 record gains `region` = its default, null.
    let as_v2 = set.clone().with_reader(Some(v2_loaded.clone()));
    let (schema, json) = as_v2.decode_to_json(&old).unwrap();
    assert_eq!(schema.fingerprint, v2.fingerprint);
    let mut want = event();
    want["region"] = serde_json::Value::Null;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&json).unwrap(),
        want
    );
    assert!(
        !SchemaSet::written_with(&old, &schema),
        "marked for re-encoding"
    );

    // A v2 record read as v1 loses `region`; a v2 record read as v2 is as written.
    let mut with_region = event();
    with_region["region"] = json!("eu");
    let new = v2.encode_json(&with_region).unwrap();
    let as_v1 = set.clone().with_reader(set.get(&v1.fingerprint).cloned());
    let (schema, json) = as_v1.decode_to_json(&new).unwrap();
    assert_eq!(schema.fingerprint, v1.fingerprint);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&json).unwrap(),
        event()
    );
    let (_, json) = as_v2.decode_to_json(&new).unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&json).unwrap(),
        with_region
    );

    // A reader that cannot read the writer (a required field it lacks) is
    // an error naming the reader.
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&v1.path).unwrap()).unwrap();
    doc["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "must", "type": "string"}));
    let strict_path = v2_path.with_file_name("strict.avsc");
    std::fs::write(&strict_path, doc.to_string()).unwrap();
    let strict = set.load(&strict_path).unwrap();
    let err = set
        .clone()
        .with_reader(Some(strict))
        .decode_to_json(&old)
        .unwrap_err();
    assert!(format!("{err:#}").contains("strict.avsc"), "{err:#}");
}

#[test]
fn integral_json_numbers_are_integers_on_both_json_paths() {
    let schema = telemetry();
    let mut set = SchemaSet::default();
    set.load(&schema.path).unwrap();
    for (given, millis) in [
        (json!(-15023.0), Some(-15023i64)),
        (json!(20715), Some(20715)),
        (json!(1.5), None),
        (json!(8.5e21), None),
    ] {
        let mut input = event();
        input["occurred_at"] = given.clone();
        let tree = json_to_avro(&schema.schema, &input).ok().map(|v| match v {
            Value::Record(fields) => fields[4].1.clone(),
            other => other,
        });
        assert_eq!(tree, millis.map(Value::TimestampMillis), "{given}");
        let direct = schema
            .encode_json(&input)
            .ok()
            .map(|framed| set.decode_json(&framed).unwrap()["occurred_at"].clone());
        assert_eq!(direct, millis.map(|m| json!(m)), "{given}");
    }
}
