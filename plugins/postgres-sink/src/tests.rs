use serde_json::json;
use sluice_sdk::{Origin, testing};

use super::*;

/// The ready-made mapping for `schemas/telemetry_event.avsc` documented in
/// plugins/README.md, as the host passes it (TOML rendered as JSON).
fn telemetry_config() -> Value {
    json!({
        "connection": "warehouse",
        "table": "public.telemetry_events",
        "key": ["event_id"],
        "columns": [
            {"name": "event_id", "from": "event_id", "type": "text"},
            {"name": "type", "from": "type", "type": "text", "nullable": false},
            {"name": "source", "from": "source", "type": "text", "nullable": false},
            {"name": "entity_id", "from": "entity_id", "type": "text", "nullable": false},
            {"name": "occurred_at", "from": "occurred_at", "type": "timestamp", "nullable": false},
            {"name": "severity", "from": "severity", "type": "text", "nullable": false},
            {"name": "attributes", "from": "attributes", "type": "json", "nullable": false},
            {"name": "trace_id", "from": "trace_id", "type": "text"},
            {"name": "kafka_topic", "from": "$topic", "type": "text"},
            {"name": "kafka_partition", "from": "$partition", "type": "int"},
            {"name": "kafka_offset", "from": "$offset", "type": "int"}
        ]
    })
}

const EVENT: &str = r#"{"event_id":"e-1","type":"page_view","source":"web","entity_id":"user-7","occurred_at":1764400000000,"severity":"INFO","attributes":{"region":"eu","email":"a@b.com"},"trace_id":null}"#;

fn event(value: &str, offset: i64) -> Event<'_> {
    // Views borrow their origin; a test can afford to leak a few.
    let origin: &'static Origin = Box::leak(Box::new(Origin {
        topic: "telemetry.clean".into(),
        partition: 2,
        offset,
    }));
    Event {
        key: Some(b"user-7"),
        value: value.as_bytes(),
        headers: &[],
        timestamp_ms: Some(1_764_400_000_123),
        origin: Some(origin),
        located: &[],
    }
}

fn sink(config: Value) -> PostgresSink {
    PostgresSink::from_config(&config).unwrap()
}

fn config_error(config: Value) -> String {
    PostgresSink::from_config(&config).unwrap_err()
}

fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.to_string())
}

#[test]
fn telemetry_mapping_builds_the_expected_row() {
    let sink = sink(telemetry_config());
    let row = sink.row(0, &event(EVENT, 41)).unwrap();
    assert_eq!(
        row,
        vec![
            text("e-1"),
            text("page_view"),
            text("web"),
            text("user-7"),
            SqlValue::TimestampMs(1_764_400_000_000),
            text("INFO"),
            SqlValue::Json(r#"{"email":"a@b.com","region":"eu"}"#.into()),
            SqlValue::Null,
            text("telemetry.clean"),
            SqlValue::Int(2),
            SqlValue::Int(41),
        ]
    );
    let defs = sink.column_defs();
    assert_eq!(defs.len(), 11);
    assert_eq!(defs[0].name, "event_id");
    assert!(!defs[0].nullable, "key columns default to NOT NULL");
    assert_eq!(defs[4].kind, SqlType::Timestamp);
    assert!(defs[7].nullable);
    let request = sink.request(vec![row]);
    assert_eq!(request.connection, "warehouse");
    assert_eq!(request.table, "public.telemetry_events");
    assert_eq!(request.key_columns, vec!["event_id".to_string()]);
    assert_eq!(request.columns[10], "kafka_offset");
}

#[test]
fn config_errors_name_the_key() {
    let base = telemetry_config();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut config = base.clone();
        edit(&mut config);
        config_error(config)
    };
    let prefix = "invalid postgres-sink config: ";
    let cases: Vec<(String, &str)> = vec![
        (
            with(&|c| {
                c.as_object_mut().unwrap().remove("connection");
            }),
            "missing field `connection`",
        ),
        (
            with(&|c| c["connection"] = json!("")),
            "connection: must not be empty",
        ),
        (
            with(&|c| c["tabel"] = json!("x")),
            "unknown field `tabel`, expected one of `connection`, `table`, `key`, `create_table`, `columns`",
        ),
        (
            with(&|c| c["table"] = json!("a.b.c")),
            "table: \"a.b.c\" must be `table` or `schema.table`",
        ),
        (
            with(&|c| c["table"] = json!("public.")),
            "table: \"public.\": must not be empty",
        ),
        (
            with(&|c| c["table"] = json!("bad\"name")),
            "table: \"bad\"name\": \"bad\"name\" contains a double quote, a dot or a control character",
        ),
        (
            with(&|c| c["columns"] = json!([])),
            "columns: must list at least one column",
        ),
        (
            with(&|c| c["columns"][2]["form"] = json!("x")),
            "columns[2]: unknown field `form`, expected one of `name`, `from`, `type`, `nullable`",
        ),
        (
            with(&|c| {
                c["columns"][1].as_object_mut().unwrap().remove("type");
            }),
            "columns[1]: missing field `type`",
        ),
        (
            with(&|c| c["columns"][3]["type"] = json!("varchar")),
            "columns[3].type: unknown type \"varchar\"; use one of boolean, int, float, text, bytes, json, timestamp",
        ),
        (
            with(&|c| c["columns"][3]["name"] = json!("type")),
            "columns[3].name: \"type\" is listed twice",
        ),
        (
            with(&|c| c["columns"][3]["name"] = json!("")),
            "columns[3].name: must not be empty",
        ),
        (
            with(&|c| c["columns"][3]["name"] = json!("x".repeat(64))),
            "columns[3].name: \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\" is longer than 63 bytes",
        ),
        (
            with(&|c| c["columns"][8]["from"] = json!("$topik")),
            "columns[8].from: unknown special source \"$topik\"; use one of $key, $timestamp, $topic, $partition, $offset, $value, or a dotted path",
        ),
        (
            with(&|c| c["columns"][1]["from"] = json!("attributes..x")),
            "columns[1].from: path `attributes..x`: path has an empty segment",
        ),
        (
            with(&|c| c["columns"][8]["type"] = json!("int")),
            "columns[8].type: $topic cannot be stored as int; use one of text, bytes, json",
        ),
        (
            with(&|c| c["columns"][0]["nullable"] = json!(true)),
            "columns[0].nullable: key column \"event_id\" cannot be nullable",
        ),
        (
            with(&|c| c["key"] = json!([])),
            "key: must name at least one column",
        ),
        (
            with(&|c| c["key"] = json!(["event_id", "nope"])),
            "key: \"nope\" is not one of the columns",
        ),
        (
            with(&|c| c["key"] = json!(["event_id", "event_id"])),
            "key: \"event_id\" is listed twice",
        ),
    ];
    for (actual, expected) in cases {
        assert_eq!(actual, format!("{prefix}{expected}"));
    }
    // Types that do not parse at all are still named by serde.
    let err = with(&|c| c["create_table"] = json!("yes"));
    assert!(
        err.starts_with(
            "invalid postgres-sink config: invalid type: string \"yes\", expected a boolean"
        ),
        "{err}"
    );
}

#[test]
fn specials_read_the_record() {
    let config = json!({
        "connection": "db",
        "table": "t",
        "key": ["offset"],
        "columns": [
            {"name": "key", "from": "$key", "type": "text"},
            {"name": "key_bytes", "from": "$key", "type": "bytes"},
            {"name": "ts", "from": "$timestamp", "type": "timestamp"},
            {"name": "ts_int", "from": "$timestamp", "type": "int"},
            {"name": "topic", "from": "$topic", "type": "text"},
            {"name": "partition", "from": "$partition", "type": "int"},
            {"name": "offset", "from": "$offset", "type": "int"},
            {"name": "offset_text", "from": "$offset", "type": "text"},
            {"name": "value", "from": "$value", "type": "json"},
            {"name": "value_text", "from": "$value", "type": "text"}
        ]
    });
    let sink = sink(config);
    let row = sink.row(0, &event(" {\"a\": 1} ", 9)).unwrap();
    assert_eq!(
        row,
        vec![
            text("user-7"),
            SqlValue::Bytes(b"user-7".to_vec()),
            SqlValue::TimestampMs(1_764_400_000_123),
            SqlValue::Int(1_764_400_000_123),
            text("telemetry.clean"),
            SqlValue::Int(2),
            SqlValue::Int(9),
            text("9"),
            SqlValue::Json("{\"a\": 1}".into()),
            text("{\"a\": 1}"),
        ]
    );

    // An event a plugin created: no key, timestamp or origin.
    let mut bare = Event::new("{}");
    bare.origin = None;
    let err = sink.row(4, &bare).unwrap_err();
    assert_eq!(
        err,
        "postgres-sink: event 4: column \"offset\" (from \"$offset\"): value is missing and the column is not nullable"
    );

    // A key that is not UTF-8 works as bytes, not as text.
    let mut binary = event("{}", 1);
    binary.key = Some(&[0xff, 0x00]);
    let err = sink.row(0, &binary).unwrap_err();
    assert_eq!(
        err,
        "postgres-sink: event 0 (partition 2, offset 1): column \"key\" (from \"$key\"): the record key is not valid UTF-8"
    );
}

#[test]
fn missing_and_null_values() {
    let config = json!({
        "connection": "db",
        "table": "t",
        "key": ["id"],
        "columns": [
            {"name": "id", "from": "event_id", "type": "text"},
            {"name": "trace", "from": "trace_id", "type": "text"},
            {"name": "region", "from": "attributes.region", "type": "text", "nullable": false}
        ]
    });
    let sink = sink(config);
    assert_eq!(
        sink.row(
            0,
            &event(
                r#"{"event_id":"a","trace_id":null,"attributes":{"region":"eu"}}"#,
                0
            )
        )
        .unwrap(),
        vec![text("a"), SqlValue::Null, text("eu")]
    );
    assert_eq!(
        sink.row(
            0,
            &event(r#"{"event_id":"a","attributes":{"region":"eu"}}"#, 0)
        )
        .unwrap()[1],
        SqlValue::Null
    );
    assert_eq!(
        sink.row(3, &event(r#"{"event_id":"a","attributes":{}}"#, 1042))
            .unwrap_err(),
        "postgres-sink: event 3 (partition 2, offset 1042): column \"region\" (from \"attributes.region\"): value is missing and the column is not nullable"
    );
    assert_eq!(
        sink.row(
            3,
            &event(r#"{"event_id":"a","attributes":{"region":null}}"#, 1042)
        )
        .unwrap_err(),
        "postgres-sink: event 3 (partition 2, offset 1042): column \"region\" (from \"attributes.region\"): value is null and the column is not nullable"
    );
    assert_eq!(
        sink.row(
            1,
            &event(r#"{"event_id":null,"attributes":{"region":"x"}}"#, 5)
        )
        .unwrap_err(),
        "postgres-sink: event 1 (partition 2, offset 5): column \"id\" (from \"event_id\"): value is null and the column is not nullable"
    );
    let err = sink.row(2, &event("{nope", 6)).unwrap_err();
    assert!(
        err.starts_with(
            "postgres-sink: event 2 (partition 2, offset 6): value is not valid JSON: "
        ),
        "{err}"
    );
}

#[test]
fn conversions() {
    let ok = |kind, value: Value| convert(kind, &value).unwrap();
    let err = |kind, value: Value| convert(kind, &value).unwrap_err();

    assert_eq!(ok(SqlType::Boolean, json!(true)), SqlValue::Boolean(true));
    assert_eq!(
        ok(SqlType::Boolean, json!("false")),
        SqlValue::Boolean(false)
    );
    assert_eq!(
        err(SqlType::Boolean, json!(1)),
        "expected a boolean, found number 1"
    );
    assert_eq!(
        err(SqlType::Boolean, json!("yes")),
        "expected a boolean, found string \"yes\""
    );

    assert_eq!(ok(SqlType::Int, json!(42)), SqlValue::Int(42));
    assert_eq!(ok(SqlType::Int, json!(-7)), SqlValue::Int(-7));
    assert_eq!(ok(SqlType::Int, json!(3.0)), SqlValue::Int(3));
    assert_eq!(ok(SqlType::Int, json!("200")), SqlValue::Int(200));
    assert_eq!(ok(SqlType::Int, json!(i64::MAX)), SqlValue::Int(i64::MAX));
    assert_eq!(
        err(SqlType::Int, json!(1.5)),
        "expected an integer, found number 1.5 (a fraction)"
    );
    assert_eq!(
        err(SqlType::Int, json!(u64::MAX)),
        "number 18446744073709551615 is out of range for a 64-bit integer"
    );
    assert_eq!(
        err(SqlType::Int, json!(1e19)),
        "number 1e+19 is out of range for a 64-bit integer"
    );
    assert_eq!(
        err(SqlType::Int, json!("1.5")),
        "expected an integer, found string \"1.5\""
    );
    assert_eq!(
        err(SqlType::Int, json!(true)),
        "expected an integer, found boolean true"
    );
    assert_eq!(
        err(SqlType::Int, json!([1])),
        "expected an integer, found an array"
    );

    assert_eq!(ok(SqlType::Float, json!(1.5)), SqlValue::Float(1.5));
    assert_eq!(ok(SqlType::Float, json!(2)), SqlValue::Float(2.0));
    assert_eq!(ok(SqlType::Float, json!("0.25")), SqlValue::Float(0.25));
    assert_eq!(
        err(SqlType::Float, json!("NaN")),
        "expected a number, found string \"NaN\""
    );
    assert_eq!(
        err(SqlType::Float, json!({})),
        "expected a number, found an object"
    );

    assert_eq!(ok(SqlType::Text, json!("x")), text("x"));
    assert_eq!(ok(SqlType::Text, json!(12)), text("12"));
    assert_eq!(ok(SqlType::Text, json!(1.5)), text("1.5"));
    assert_eq!(ok(SqlType::Text, json!(false)), text("false"));
    assert_eq!(
        err(SqlType::Text, json!({"a": 1})),
        "expected a string or a scalar for text, found an object (use type = \"json\")"
    );

    assert_eq!(
        ok(SqlType::Bytes, json!("hé")),
        SqlValue::Bytes("hé".as_bytes().to_vec())
    );
    assert_eq!(
        err(SqlType::Bytes, json!(1)),
        "expected a string, found number 1"
    );

    assert_eq!(
        ok(SqlType::Json, json!({"b": [1, "x"]})),
        SqlValue::Json(r#"{"b":[1,"x"]}"#.into())
    );
    assert_eq!(
        ok(SqlType::Json, json!("s")),
        SqlValue::Json(r#""s""#.into())
    );
    assert_eq!(ok(SqlType::Json, json!(3)), SqlValue::Json("3".into()));

    assert_eq!(
        ok(SqlType::Timestamp, json!(1_764_400_000_000_i64)),
        SqlValue::TimestampMs(1_764_400_000_000)
    );
    assert_eq!(
        ok(SqlType::Timestamp, json!("1764400000123")),
        SqlValue::TimestampMs(1_764_400_000_123)
    );
    assert_eq!(
        ok(SqlType::Timestamp, json!("-5")),
        SqlValue::TimestampMs(-5)
    );
    assert_eq!(
        ok(SqlType::Timestamp, json!("2025-11-29T07:06:40.123Z")),
        SqlValue::TimestampMs(1_764_400_000_123)
    );
    assert_eq!(
        ok(SqlType::Timestamp, json!("2025-11-29T09:06:40+02:00")),
        SqlValue::TimestampMs(1_764_400_000_000)
    );
    assert_eq!(
        ok(SqlType::Timestamp, json!("1969-12-31T23:59:59.9995Z")),
        SqlValue::TimestampMs(-1)
    );
    assert_eq!(
        err(SqlType::Timestamp, json!(1.5)),
        "expected epoch milliseconds or an RFC 3339 timestamp, found number 1.5"
    );
    assert_eq!(
        err(SqlType::Timestamp, json!(true)),
        "expected epoch milliseconds or an RFC 3339 timestamp, found boolean true"
    );
    let message = err(SqlType::Timestamp, json!("yesterday"));
    assert!(
        message.starts_with(
            "expected epoch milliseconds or an RFC 3339 timestamp, found string \"yesterday\": "
        ),
        "{message}"
    );
    assert!(err(SqlType::Timestamp, json!("2025-11-29 07:06:40")).starts_with("expected epoch"));
    assert!(err(SqlType::Timestamp, json!("2025-13-01T00:00:00Z")).starts_with("expected epoch"));
}

#[test]
fn long_strings_are_cut_in_messages() {
    let long = "x".repeat(100);
    assert_eq!(
        convert(SqlType::Int, &json!(long)).unwrap_err(),
        format!(
            "expected an integer, found string \"{}...\"",
            "x".repeat(40)
        )
    );
}

#[test]
fn write_sends_one_request_per_batch() {
    testing::reset();
    let mut sink = testing::run_sink::<PostgresSink>(
        &telemetry_config().to_string(),
        vec![event(EVENT, 1), event(&EVENT.replace("e-1", "e-2"), 2)],
    )
    .unwrap();
    let third = EVENT.replace("e-1", "e-3");
    sink.write(&[event(&third, 3)]).unwrap();
    sink.write(&[]).unwrap();
    let writes = testing::sql_writes();
    assert_eq!(writes.len(), 2, "one write per non-empty batch");
    assert_eq!(writes[0].rows.len(), 2);
    assert_eq!(writes[0].rows[1][0], text("e-2"));
    assert_eq!(writes[1].rows[0][0], text("e-3"));
    assert_eq!(testing::counter("rows_written"), 3);
    assert!(
        testing::created_tables().is_empty(),
        "create_table defaults to false"
    );
}

#[test]
fn a_bad_event_fails_the_batch_and_writes_nothing() {
    testing::reset();
    let bad = EVENT.replace("1764400000000", "\"soon\"");
    let err = testing::run_sink::<PostgresSink>(
        &telemetry_config().to_string(),
        vec![event(EVENT, 10), event(&bad, 11)],
    )
    .err()
    .unwrap();
    assert!(
        err.starts_with("postgres-sink: event 1 (partition 2, offset 11): column \"occurred_at\" (from \"occurred_at\"): expected epoch milliseconds or an RFC 3339 timestamp, found string \"soon\""),
        "{err}"
    );
    assert!(testing::sql_writes().is_empty());
    assert_eq!(testing::counter("rows_written"), 0);
}

#[test]
fn create_table_runs_once_before_the_first_write() {
    testing::reset();
    let mut config = telemetry_config();
    config["create_table"] = json!(true);
    let mut sink = sink(config);
    sink.write(&[]).unwrap();
    assert!(
        testing::created_tables().is_empty(),
        "nothing to write, nothing created"
    );

    testing::set_sql_error(Some("connection `warehouse` is not granted to stage `s`"));
    let err = sink.write(&[event(EVENT, 1)]).unwrap_err();
    assert_eq!(
        err,
        "postgres-sink: create table public.telemetry_events on connection warehouse: connection `warehouse` is not granted to stage `s`"
    );
    testing::set_sql_error(None);

    sink.write(&[event(EVENT, 1)]).unwrap();
    sink.write(&[event(EVENT, 2)]).unwrap();
    let tables = testing::created_tables();
    assert_eq!(tables.len(), 1, "created once, after the failed attempt");
    assert_eq!(tables[0].connection, "warehouse");
    assert_eq!(tables[0].table, "public.telemetry_events");
    assert_eq!(tables[0].key_columns, vec!["event_id".to_string()]);
    assert_eq!(tables[0].columns, sink.column_defs());
    assert_eq!(testing::sql_writes().len(), 2);
}

#[test]
fn host_write_errors_fail_the_batch() {
    testing::reset();
    testing::set_sql_error(Some("duplicate key value violates unique constraint"));
    let err =
        testing::run_sink::<PostgresSink>(&telemetry_config().to_string(), vec![event(EVENT, 1)])
            .err()
            .unwrap();
    assert_eq!(
        err,
        "postgres-sink: write to public.telemetry_events on connection warehouse: duplicate key value violates unique constraint"
    );
    assert_eq!(testing::counter("rows_written"), 0);
}

#[test]
fn equal_keys_in_one_batch_collapse_into_the_last_event() {
    testing::reset();
    let mut config = telemetry_config();
    config["key"] = json!(["event_id", "kafka_partition"]);
    config["columns"][9]["nullable"] = json!(false);
    let first = EVENT.replace("INFO", "WARN");
    let other = EVENT.replace("e-1", "e-2");
    testing::run_sink::<PostgresSink>(
        &config.to_string(),
        vec![event(&first, 1), event(&other, 2), event(EVENT, 3)],
    )
    .unwrap();
    let writes = testing::sql_writes();
    let rows = &writes[0].rows;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0][0], text("e-1"));
    assert_eq!(rows[0][5], text("INFO"), "the last event's values win");
    assert_eq!(rows[0][10], SqlValue::Int(3));
    assert_eq!(rows[1][0], text("e-2"));
    assert_eq!(testing::counter("rows_deduplicated"), 1);
    assert_eq!(testing::counter("rows_written"), 2);
}

#[test]
fn shared_paths_are_read_once() {
    let config = json!({
        "connection": "db",
        "table": "t",
        "key": ["a"],
        "columns": [
            {"name": "a", "from": "attributes.id", "type": "text"},
            {"name": "b", "from": "attributes.id", "type": "int"},
            {"name": "c", "from": "attributes", "type": "json"}
        ]
    });
    let sink = sink(config);
    assert_eq!(sink.selector.paths().len(), 2);
    assert_eq!(
        sink.row(0, &event(r#"{"attributes":{"id":"7"}}"#, 0))
            .unwrap(),
        vec![
            text("7"),
            SqlValue::Int(7),
            SqlValue::Json(r#"{"id":"7"}"#.into())
        ]
    );
}
