//! Request decoding as ingest does it (`decode_request`): events are
//! validated and encoded straight from the body, with the same answers as
//! the tree path had; a framed Avro body of the route's schema goes through
//! untouched.

use std::path::Path;

use serde_json::{Value as Json, json};

use super::*;
use crate::schema::HEADER_LEN;

fn schemas() -> (SchemaSet, Arc<LoadedSchema>) {
    let mut set = SchemaSet::default();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/telemetry_event.avsc");
    let schema = set.load(&path).expect("schema loads");
    (set, schema)
}

fn event(i: usize) -> Json {
    json!({
        "event_id": format!("e-{i}"), "type": "page_view", "source": "web",
        "entity_id": "user-7", "occurred_at": 1764400000000i64 + i as i64,
        "attributes": {"b": "2", "a": "1", "c": "3"}
    })
}

fn rejected(result: Result<Vec<Vec<u8>>, ApiError>) -> Vec<Rejected> {
    match result {
        Err(ApiError::Invalid { rejected, .. }) => rejected,
        Err(other) => panic!("expected a 400, got {other:?}"),
        Ok(records) => panic!("expected a 400, got {} records", records.len()),
    }
}

#[test]
fn json_events_encode_as_the_tree_path_did() {
    let (set, schema) = schemas();
    let body = serde_json::to_vec(&event(1)).unwrap();
    let records = decode_request(false, "application/json", &body, &set, &schema).unwrap();
    assert_eq!(records, vec![schema.encode_json(&event(1)).unwrap()]);
    let batch = serde_json::to_vec(&[event(1), event(2)]).unwrap();
    let records = decode_request(true, "application/json", &batch, &set, &schema).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[1], schema.encode_json(&event(2)).unwrap());
    let ndjson = format!("{}\n\n{}\n", event(3), event(4));
    let records = decode_request(
        true,
        "application/x-ndjson",
        ndjson.as_bytes(),
        &set,
        &schema,
    )
    .unwrap();
    assert_eq!(records[1], schema.encode_json(&event(4)).unwrap());
}

#[test]
fn unreadable_bodies_are_worded_as_before() {
    let (set, schema) = schemas();
    let cases: [(bool, &str, &[u8], &str); 6] = [
        (
            false,
            "application/json",
            b"",
            "empty body: expected a JSON object",
        ),
        (
            false,
            "application/json",
            b"{\"a\":",
            "invalid JSON: EOF while parsing a value at line 1 column 5",
        ),
        (false, "application/json", b"[1]", "expected a JSON object"),
        (
            true,
            "application/json",
            b"{}",
            "body is not a JSON array of events: invalid type: map, expected a sequence at line 1 column 0",
        ),
        (
            true,
            "application/json",
            b"[{}, {",
            "body is not a JSON array of events: EOF while parsing an object at line 1 column 6",
        ),
        (true, "application/json", b"[7]", "expected a JSON object"),
    ];
    for (batch, content_type, body, reason) in cases {
        let got = rejected(decode_request(batch, content_type, body, &set, &schema));
        assert_eq!(got[0].reason, reason, "{}", String::from_utf8_lossy(body));
    }
    let bad = format!("{}\n{{\"event_id\":1}}\n", event(1));
    let got = rejected(decode_request(
        true,
        "application/x-ndjson",
        bad.as_bytes(),
        &set,
        &schema,
    ));
    assert_eq!(
        got,
        vec![Rejected {
            index: 1,
            field: "event_id".into(),
            reason: "expected a string, got a number".into()
        }]
    );
}

#[test]
fn a_framed_avro_body_of_the_route_schema_is_forwarded_as_is() {
    let (set, schema) = schemas();
    // Map entries in an order the JSON path would not write: forwarded
    // untouched all the same.
    let mut framed = schema.encode_json(&event(1)).unwrap();
    let at = framed
        .windows(4)
        .position(|w| w == [2, b'b', 2, b'2'])
        .expect("map entry b");
    framed[at..at + 8].copy_from_slice(&[2, b'a', 2, b'1', 2, b'b', 2, b'2']);
    let records = decode_request(false, "avro/binary", &framed, &set, &schema).unwrap();
    assert_eq!(records, vec![framed.clone()]);
    // A bare datum is re-encoded from its JSON; a broken one is refused.
    let bare = &framed[HEADER_LEN..];
    let records = decode_request(false, "avro/binary", bare, &set, &schema).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        set.decode_json(&records[0]).unwrap(),
        set.decode_json(&framed).unwrap()
    );
    let got = rejected(decode_request(
        false,
        "avro/binary",
        &framed[..framed.len() - 2],
        &set,
        &schema,
    ));
    assert!(got[0].reason.starts_with("invalid Avro body: "), "{got:?}");
}
