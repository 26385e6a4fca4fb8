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
