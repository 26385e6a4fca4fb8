//! Edge cases of the one-pass transcoders, each against the tree path
//! (helpers from `transcode_tests.rs`): float rendering, repeated keys, JSON
//! syntax corners, hostile block counts, truncation, references.

use super::transcode_tests::{loaded, old_encode, old_encode_bytes, old_to_json, same_datum};
use super::*;
use serde_json::json;

fn telemetry() -> LoadedSchema {
    LoadedSchema::from_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/telemetry_event.avsc"),
    )
    .expect("schema parses")
}

#[test]
fn telemetry_events_transcode_both_ways() {
    let schema = telemetry();
    let text = br#"{"event_id":"e-1","type":"page_view","source":"web","entity_id":"user-7",
        "occurred_at":"2025-11-29T08:26:40Z","attributes":{"z":"1","a":"2","m":"\u00e9\n"},"trace_id":"t"}"#;
    let framed = schema.encode_json_bytes(text).expect("valid");
    let old = old_encode_bytes(&schema, text).expect("valid");
    assert!(same_datum(&schema, &framed, &old));
    let json = schema.datum_to_json(&framed[HEADER_LEN..]).unwrap();
    assert_eq!(json, old_to_json(&schema, &old[HEADER_LEN..]).unwrap());
    assert_eq!(
        String::from_utf8(json).unwrap(),
        r#"{"event_id":"e-1","type":"page_view","source":"web","entity_id":"user-7","occurred_at":1764404800000,"severity":"INFO","attributes":{"a":"2","m":"é\n","z":"1"},"trace_id":"t"}"#
    );
}

#[test]
fn floats_render_as_serde_json_does() {
    let schema = loaded(&json!({"type":"record","name":"r","fields":[
        {"name":"f","type":"float"},{"name":"d","type":"double"}]}));
    for (f, d) in [
        (f32::NAN, f64::INFINITY),
        (0.1f32, -0.0f64),
        (1e-45f32, 5e-324f64),
        (3.4e38f32, 1.7976931348623157e308f64),
    ] {
        let mut datum = f.to_le_bytes().to_vec();
        datum.extend_from_slice(&d.to_le_bytes());
        assert_eq!(
            schema.datum_to_json(&datum).unwrap(),
            old_to_json(&schema, &datum).unwrap(),
            "{f} {d}"
        );
    }
}

#[test]
fn repeated_map_keys_keep_the_last_value_both_ways() {
    let schema = loaded(&json!({"type":"record","name":"r","fields":[
        {"name":"m","type":{"type":"map","values":"int"}}]}));
    // One block of three entries: b=1, a=2, b=3.
    let datum = [6, 2, b'b', 2, 2, b'a', 4, 2, b'b', 6, 0];
    let got = schema.datum_to_json(&datum).unwrap();
    assert_eq!(got, old_to_json(&schema, &datum).unwrap());
    assert_eq!(got, br#"{"m":{"a":2,"b":3}}"#);
    let text = br#"{"m":{"b":1,"a":2,"b":3}}"#;
    let new = schema.encode_json_bytes(text).unwrap();
    assert!(same_datum(
        &schema,
        &new,
        &old_encode_bytes(&schema, text).unwrap()
    ));
    // Repeated record keys: the last counts; unknown ones are named.
    let schema = telemetry();
    let text =
        br#"{"event_id":"a","event_id":7,"type":"t","source":"s","entity_id":"e","occurred_at":1}"#;
    assert_eq!(
        schema.encode_json_bytes(text),
        old_encode_bytes(&schema, text)
    );
    let text = br#"{"event_id":"a","zz":1,"type":"t","source":"s","entity_id":"e","occurred_at":1,"yy":2}"#;
    let e = schema.encode_json_bytes(text).unwrap_err();
    assert_eq!(e, old_encode_bytes(&schema, text).unwrap_err());
    assert_eq!(e.field, "zz");
}

#[test]
fn json_edge_cases_match_serde_json() {
    let schema = loaded(&json!({"type":"record","name":"r","fields":[
        {"name":"s","type":["null","string"]},{"name":"n","type":["null","long","double"]}]}));
    let cases: &[&[u8]] = &[
        br#"{"s":"\ud83d\ude00 \u00e9 \"q\" \\ \/ \b\f\n\r\t","n":-0}"#,
        br#"{"s":"\ud83d","n":1}"#,
        br#"{"s":"\ude00","n":1}"#,
        br#"{"s":"\u12G4","n":1}"#,
        br#"{"s":"a","n":1e400}"#,
        br#"{"s":"a","n":-1e-400}"#,
        br#"{"s":"a","n":18446744073709551616}"#,
        br#"{"s":"a","n":9223372036854775808}"#,
        br#"{"s":"a","n":-9223372036854775809}"#,
        br#"{"s":"a","n":01}"#,
        br#"{"s":"a","n":1.}"#,
        br#"{"s":"a","n":+1}"#,
        b"{\"s\":\"a\x01\",\"n\":1}",
        b"{\"s\":\"\xff\",\"n\":1}",
        b" \t\r\n{\"s\" : null , \"n\" : 2.5e3 } \n",
        br#"{"s":"a","n":1} x"#,
        br#"{"s":"a","n":1,}"#,
        br#"[]"#,
        b"",
        br#"{"s":"a""#,
        br#"{"s":tru}"#,
    ];
    for text in cases {
        let old = old_encode_bytes(&schema, text);
        let new = schema.encode_json_bytes(text);
        assert_eq!(old, new, "{}", String::from_utf8_lossy(text));
    }
    let deep = format!("{{\"s\":{}{}}}", "[".repeat(200), "]".repeat(200));
    assert_eq!(
        old_encode_bytes(&schema, deep.as_bytes()),
        schema.encode_json_bytes(deep.as_bytes())
    );
    let nested = format!("{{\"s\":{}1{}}}", "[".repeat(126), "]".repeat(126));
    assert_eq!(
        old_encode_bytes(&schema, nested.as_bytes()),
        schema.encode_json_bytes(nested.as_bytes())
    );
}

#[test]
fn a_huge_map_count_is_refused_before_any_allocation() {
    let schema = telemetry();
    let mut datum = Vec::new();
    for s in ["e", "t", "s", "u"] {
        from_json::put_long(&mut datum, 1);
        datum.extend_from_slice(s.as_bytes());
    }
    from_json::put_long(&mut datum, 1); // occurred_at
    from_json::put_long(&mut datum, 1); // severity
    from_json::put_long(&mut datum, 500_000_000); // attributes: 500M entries
    datum.resize(150, b'x');
    let e = schema.datum_to_json(&datum).unwrap_err();
    assert!(format!("{e:#}").contains("claims 500000000 items"), "{e:#}");
}

#[test]
fn truncated_and_trailing_datums_are_errors() {
    let schema = telemetry();
    let framed = old_encode(&schema, &json!({"event_id":"e","type":"t","source":"s","entity_id":"u","occurred_at":5,"trace_id":"x"})).unwrap();
    let datum = &framed[HEADER_LEN..];
    for cut in 1..datum.len() {
        assert!(
            schema.datum_to_json(&datum[..datum.len() - cut]).is_err(),
            "cut {cut}"
        );
    }
    let mut long = datum.to_vec();
    long.push(0);
    let e = schema.datum_to_json(&long).unwrap_err();
    assert!(format!("{e:#}").contains("1 trailing bytes"), "{e:#}");
    let mut set = SchemaSet::default();
    set.load(&schema.path).unwrap();
    let (found, json) = set.decode_to_json(&framed).unwrap();
    assert_eq!(found.fingerprint, schema.fingerprint);
    assert_eq!(json, old_to_json(&schema, datum).unwrap());
}

#[test]
fn top_level_fields_are_read_from_the_document() {
    let doc =
        JsonDoc::parse(br#" {"type":"a\u0062","type":"page","k":[1, {"x":2}],"n":1.0} "#).unwrap();
    let root = doc.root();
    assert_eq!(root.kind(), JsonKind::Object);
    assert_eq!(
        root.get("type").and_then(|t| t.as_str()).as_deref(),
        Some("page")
    );
    assert_eq!(root.get("k").map(|k| k.raw()), Some(r#"[1, {"x":2}]"#));
    assert_eq!(root.get("k").map(|k| k.len()), Some(2));
    assert_eq!(
        root.get("n").map(|n| n.to_value().to_string()),
        Some("1.0".into())
    );
    assert!(root.get("missing").is_none());
    let batch = JsonDoc::parse(b"[{},{\"a\":1},[]]").unwrap();
    let kinds: Vec<_> = batch.root().items().map(|n| n.kind()).collect();
    assert_eq!(kinds, [JsonKind::Object, JsonKind::Object, JsonKind::Array]);
}

#[test]
fn references_and_micros_decode_like_the_tree_path() {
    let schema = loaded(
        &json!({"type":"record","name":"r","namespace":"n","fields":[
        {"name":"a","type":{"type":"enum","name":"E","symbols":["X","Y"]}},
        {"name":"b","type":["null","E"]},
        {"name":"c","type":{"type":"array","items":"n.E"}},
        {"name":"t","type":{"type":"long","logicalType":"timestamp-micros"}}]}),
    );
    // a=Y, b=E.X, c=[Y, X], t=-3
    let datum = [2, 2, 0, 4, 2, 0, 0, 5];
    let got = schema.datum_to_json(&datum).unwrap();
    assert_eq!(got, old_to_json(&schema, &datum).unwrap());
    assert_eq!(got, br#"{"a":"Y","b":"X","c":["Y","X"],"t":-3}"#);
    // JSON input refuses both, in the same words as before.
    let text = br#"{"a":"Y","b":"X","c":["Y"],"t":1}"#;
    assert_eq!(
        schema.encode_json_bytes(text),
        old_encode_bytes(&schema, text)
    );
}
