//! Batches without a broker: records built as `OwnedMessage`s, decoded,
//! turned into output records, and the offsets a commit would carry.

use std::path::Path;
use std::sync::Arc;

use rdkafka::Timestamp;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders, OwnedMessage};

use super::*;
use crate::runtime::Item;

fn schemas() -> (SchemaSet, Arc<LoadedSchema>) {
    let mut set = SchemaSet::default();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/telemetry_event.avsc");
    let schema = set.load(&path).expect("schema loads");
    (set, schema)
}

fn json(i: i64) -> String {
    format!(
        r#"{{"event_id":"e-{i}","type":"page_view","source":"web","entity_id":"user-{i}","occurred_at":{},"attributes":{{}}}}"#,
        1764400000000i64 + i
    )
}

fn message(schema: &LoadedSchema, partition: i32, offset: i64, i: i64) -> OwnedMessage {
    let value = schema
        .encode_json_bytes_framed(Framing::SingleObject, json(i).as_bytes())
        .expect("encodes");
    let headers = OwnedHeaders::new()
        .insert(KafkaHeader {
            key: "trace",
            value: Some("t-1"),
        })
        .insert(KafkaHeader {
            key: crate::stage::PLUGINS_HEADER,
            value: Some("older@v0"),
        });
    OwnedMessage::new(
        Some(value),
        Some(format!("user-{i}").into_bytes()),
        "input".to_string(),
        Timestamp::CreateTime(1000 + offset),
        partition,
        offset,
        Some(headers),
    )
}

fn batch(schema: &LoadedSchema, records: &[(i32, i64)]) -> Batch {
    let mut batch = Batch::with_capacity(records.len());
    for (n, (partition, offset)) in records.iter().enumerate() {
        batch.push(&message(schema, *partition, *offset, n as i64));
    }
    batch
}

fn item(event: Event, source: usize, changed: bool) -> Item {
    Item {
        event,
        source,
        changed,
        changed_by: changed.then(|| Arc::new(("enrich".to_string(), "v2".to_string()))),
    }
}

#[test]
fn next_offsets_are_one_past_the_highest_read_per_partition() {
    let (_, schema) = schemas();
    let batch = batch(
        &schema,
        &[(0, 10), (1, 7), (0, 11), (2, 3), (1, 9), (0, 12)],
    );
    let next: Vec<_> = batch.next_offsets().into_iter().collect();
    assert_eq!(
        next,
        vec![
            (("input".to_string(), 0), 13),
            (("input".to_string(), 1), 10),
            (("input".to_string(), 2), 4)
        ]
    );
}

#[test]
fn records_of_revoked_partitions_leave_the_batch_and_its_offsets() {
    let (_, schema) = schemas();
    let mut batch = batch(&schema, &[(0, 10), (1, 7), (0, 11)]);
    batch.retain_partitions(|_, p| p != 0);
    assert_eq!(batch.len(), 1);
    assert_eq!(
        batch.next_offsets().into_iter().collect::<Vec<_>>(),
        vec![(("input".to_string(), 1), 8)]
    );
}

#[test]
fn decoded_events_carry_key_headers_timestamp_and_origin() {
    let (set, schema) = schemas();
    let mut batch = batch(&schema, &[(3, 40)]);
    let (events, failures) = batch.decode(&set);
    assert!(failures.is_empty());
    let (index, event) = &events[0];
    assert_eq!(*index, 0);
    let value: serde_json::Value = serde_json::from_slice(&event.value).unwrap();
    assert_eq!(value["entity_id"], "user-0");
    assert_eq!(event.key.as_deref(), Some(&b"user-0"[..]));
    assert_eq!(event.timestamp_ms, Some(1040));
    let origin = event.origin.as_ref().unwrap();
    assert_eq!(
        (&*origin.topic, origin.partition, origin.offset),
        ("input", 3, 40)
    );
    assert_eq!(event.headers[0].key, "trace");
}

#[test]
fn an_undecodable_record_fails_alone_with_its_index() {
    let (set, schema) = schemas();
    let mut batch = batch(&schema, &[(0, 1)]);
    batch.push(&OwnedMessage::new(
        Some(b"not avro".to_vec()),
        None,
        "input".to_string(),
        Timestamp::NotAvailable,
        0,
        2,
        None,
    ));
    let (events, failures) = batch.decode(&set);
    assert_eq!(events.len(), 1);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].source, 1);
    assert!(!failures[0].error.is_empty());
}

#[test]
fn an_unchanged_event_reuses_the_input_bytes_and_replaces_the_plugins_header() {
    let (set, schema) = schemas();
    let mut batch = batch(&schema, &[(0, 5)]);
    let input = message(&schema, 0, 5, 0);
    let (mut events, _) = batch.decode(&set);
    let (_, event) = events.remove(0);
    let record = batch
        .output_record(0, item(event, 0, false), "output", "enrich@v2")
        .unwrap();
    assert_eq!(record.value, rdkafka::Message::payload(&input).unwrap());
    assert_eq!(record.topic, "output");
    assert_eq!(record.timestamp, Some(1005));
    let plugins: Vec<_> = record
        .headers
        .iter()
        .filter(|(k, _)| k == crate::stage::PLUGINS_HEADER)
        .collect();
    assert_eq!(plugins.len(), 1, "{:?}", record.headers);
    assert_eq!(plugins[0].1, b"enrich@v2");
    assert_eq!(record.headers[0], ("trace".to_string(), b"t-1".to_vec()));
}

#[test]
fn a_changed_event_is_re_encoded_and_a_misfit_names_the_plugin_that_changed_it() {
    let (set, schema) = schemas();
    let mut batch = batch(&schema, &[(0, 5), (0, 6)]);
    let (mut events, _) = batch.decode(&set);
    let (_, mut good) = events.remove(0);
    let (_, mut bad) = events.remove(0);
    good.value = json(99).into_bytes().into();
    good.topic = Some("elsewhere".into());
    let record = batch
        .output_record(0, item(good, 0, true), "output", "enrich@v2")
        .unwrap();
    assert_eq!(record.topic, "elsewhere");
    let (_, datum) = crate::schema::split_frame(&record.value).unwrap();
    let back: serde_json::Value =
        serde_json::from_slice(&schema.datum_to_json(datum).unwrap()).unwrap();
    assert_eq!(back["event_id"], "e-99");

    bad.value = br#"{"event_id":1}"#.to_vec().into();
    let failure = batch
        .output_record(1, item(bad, 1, true), "output", "enrich@v2")
        .unwrap_err();
    assert_eq!(failure.source, 1);
    assert_eq!(
        (failure.plugin.as_str(), failure.version.as_str()),
        ("enrich", "v2")
    );
    assert!(
        failure.error.contains("does not match schema"),
        "{}",
        failure.error
    );
}
