//! `postgres-sink`: upserts one row per event into a PostgreSQL table through
//! a connection the operator granted to the stage.
//!
//! Config (the stage's `[stage.config.postgres-sink]` table, as JSON):
//!
//! ```toml
//! connection = "warehouse"      # required: a [connections.NAME] granted to the stage
//! table = "telemetry_events"    # required, may be schema-qualified (public.events)
//! key = ["event_id"]            # required: the idempotency (upsert) key columns
//! create_table = false          # default false: nothing is created implicitly
//!
//! [[stage.config.postgres-sink.columns]]
//! name = "event_id"             # column name
//! from = "event_id"             # dotted path into the event value, or a special source
//! type = "text"                 # boolean | int | float | text | bytes | json | timestamp
//! nullable = true               # default true (false for key columns)
//! ```
//!
//! Special `from` sources: `$key` (the Kafka record key, UTF-8 text; raw
//! bytes for `type = "bytes"`), `$timestamp` (the record timestamp, epoch
//! ms), `$topic`, `$partition`, `$offset` (the event's Kafka origin) and
//! `$value` (the whole JSON value).
//!
//! Each `write` converts every event of the batch into a row (see
//! [`convert`] for the conversions) and sends them in **one**
//! `sql::write` call, which the host runs as one transaction upserting on the
//! key columns, so a re-delivered batch leaves one row per key. Events of one
//! batch with the same key collapse into one row holding the last event's
//! values (an upsert cannot touch a row twice in one statement). If any
//! event does not convert, nothing is written and the batch fails with a
//! reason naming the event index, its origin, the column and the problem.
//! With `create_table = true`, `sql::create_table` runs once per instance
//! before the first write.
//!
//! Counters: `rows_written` (rows the host reports inserted or updated) and
//! `rows_deduplicated` (events collapsed into a later event's row).
//!
//! ## Mapping for `schemas/telemetry_event.avsc`
//!
//! ```toml
//! [stage.config.postgres-sink]
//! connection = "warehouse"
//! table = "telemetry_events"
//! key = ["event_id"]
//! columns = [
//!   { name = "event_id",        from = "event_id",    type = "text" },
//!   { name = "type",            from = "type",        type = "text",      nullable = false },
//!   { name = "source",          from = "source",      type = "text",      nullable = false },
//!   { name = "entity_id",       from = "entity_id",   type = "text",      nullable = false },
//!   { name = "occurred_at",     from = "occurred_at", type = "timestamp", nullable = false },
//!   { name = "severity",        from = "severity",    type = "text",      nullable = false },
//!   { name = "attributes",      from = "attributes",  type = "json",      nullable = false },
//!   { name = "trace_id",        from = "trace_id",    type = "text" },
//!   { name = "kafka_topic",     from = "$topic",      type = "text" },
//!   { name = "kafka_partition", from = "$partition",  type = "int" },
//!   { name = "kafka_offset",    from = "$offset",     type = "int" },
//! ]
//! ```
//!
//! The unit tests run exactly this mapping (`telemetry_config` in
//! `src/tests.rs`); `plugins/README.md` documents every key, conversion and
//! error message.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;
use sluice_sdk::sql::{self, ColumnDef, SqlType, SqlValue, TableWrite};
use sluice_sdk::{Config, Event, FieldPath, Needs, Selector, Sink};

/// Longest PostgreSQL identifier (`NAMEDATALEN - 1`); longer ones would be
/// truncated silently by the server.
const MAX_IDENTIFIER_BYTES: usize = 63;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    connection: String,
    table: String,
    key: Vec<String>,
    #[serde(default)]
    create_table: bool,
    columns: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumn {
    name: String,
    from: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    nullable: Option<bool>,
}

/// Where a column's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A dotted path into the event value; the index of its slot in the
    /// plugin's [`Selector`].
    Path(usize),
    /// `$key`: the Kafka record key.
    Key,
    /// `$timestamp`: the record timestamp in epoch milliseconds.
    Timestamp,
    /// `$topic`: the topic the event was read from.
    Topic,
    /// `$partition`: the partition the event was read from.
    Partition,
    /// `$offset`: the offset the event was read from.
    Offset,
    /// `$value`: the whole JSON value.
    Value,
}

impl Source {
    /// The special source named `name` (with its `$`), if any.
    pub fn special(name: &str) -> Option<Source> {
        Some(match name {
            "$key" => Source::Key,
            "$timestamp" => Source::Timestamp,
            "$topic" => Source::Topic,
            "$partition" => Source::Partition,
            "$offset" => Source::Offset,
            "$value" => Source::Value,
            _ => return None,
        })
    }

    /// The column types this source can be stored as; `None` for a path
    /// (any type, checked per value).
    fn allowed_types(self) -> Option<&'static [SqlType]> {
        const TEXT_LIKE: &[SqlType] = &[SqlType::Text, SqlType::Bytes, SqlType::Json];
        const TIMESTAMP: &[SqlType] = &[
            SqlType::Timestamp,
            SqlType::Int,
            SqlType::Float,
            SqlType::Text,
            SqlType::Json,
        ];
        const NUMBER: &[SqlType] = &[SqlType::Int, SqlType::Float, SqlType::Text, SqlType::Json];
        const VALUE: &[SqlType] = &[SqlType::Json, SqlType::Text];
        match self {
            Source::Path(_) => None,
            Source::Key | Source::Topic => Some(TEXT_LIKE),
            Source::Timestamp => Some(TIMESTAMP),
            Source::Partition | Source::Offset => Some(NUMBER),
            Source::Value => Some(VALUE),
        }
    }
}

/// One configured column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// The `from` text as configured (for error messages).
    pub from: String,
    /// Where the value comes from.
    pub source: Source,
    /// Column type.
    pub kind: SqlType,
    /// Whether a missing or `null` value is stored as NULL (otherwise it
    /// fails the batch).
    pub nullable: bool,
}

/// The postgres-sink plugin.
#[derive(Debug, Clone)]
pub struct PostgresSink {
    connection: String,
    table: String,
    columns: Vec<Column>,
    key: Vec<String>,
    key_indexes: Vec<usize>,
    create_table: bool,
    table_ready: bool,
    selector: Selector,
}

/// Checks a PostgreSQL identifier: 1 to 63 bytes, no `"`, `.` or control
/// character.
fn validate_identifier(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_string());
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(format!(
            "\"{name}\" is longer than {MAX_IDENTIFIER_BYTES} bytes"
        ));
    }
    if name.chars().any(|c| c == '"' || c == '.' || c.is_control()) {
        return Err(format!(
            "\"{name}\" contains a double quote, a dot or a control character"
        ));
    }
    Ok(())
}

/// Checks a table name: `table` or `schema.table`, each part a valid
/// identifier.
pub fn validate_table(table: &str) -> Result<(), String> {
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() > 2 {
        return Err(format!("\"{table}\" must be `table` or `schema.table`"));
    }
    for part in parts {
        validate_identifier(part).map_err(|err| format!("\"{table}\": {err}"))?;
    }
    Ok(())
}

fn type_names(types: &[SqlType]) -> String {
    types
        .iter()
        .map(|kind| kind.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl PostgresSink {
    /// Builds the plugin from its JSON config, validating all of it.
    pub fn from_config(config: &Value) -> Result<PostgresSink, String> {
        let fail = |message: String| format!("invalid postgres-sink config: {message}");
        let raw = RawConfig::deserialize(config).map_err(|err| fail(err.to_string()))?;
        if raw.connection.is_empty() {
            return Err(fail("connection: must not be empty".to_string()));
        }
        validate_table(&raw.table).map_err(|err| fail(format!("table: {err}")))?;
        if raw.columns.is_empty() {
            return Err(fail("columns: must list at least one column".to_string()));
        }

        let mut paths: Vec<FieldPath> = Vec::new();
        let mut columns: Vec<Column> = Vec::with_capacity(raw.columns.len());
        for (index, value) in raw.columns.iter().enumerate() {
            let at = |key: &str, message: String| fail(format!("columns[{index}]{key}: {message}"));
            let column = RawColumn::deserialize(value).map_err(|err| at("", err.to_string()))?;
            validate_identifier(&column.name).map_err(|err| at(".name", err))?;
            if columns.iter().any(|other| other.name == column.name) {
                return Err(at(".name", format!("\"{}\" is listed twice", column.name)));
            }
            let kind = SqlType::from_name(&column.kind).ok_or_else(|| {
                at(
                    ".type",
                    format!(
                        "unknown type \"{}\"; use one of {}",
                        column.kind,
                        type_names(&SqlType::ALL)
                    ),
                )
            })?;
            let source = if column.from.starts_with('$') {
                Source::special(&column.from).ok_or_else(|| {
                    at(
                        ".from",
                        format!(
                            "unknown special source \"{}\"; use one of $key, $timestamp, $topic, $partition, $offset, $value, or a dotted path",
                            column.from
                        ),
                    )
                })?
            } else {
                let path =
                    FieldPath::parse(&column.from).map_err(|err| at(".from", err.to_string()))?;
                let slot = match paths.iter().position(|known| known == &path) {
                    Some(slot) => slot,
                    None => {
                        paths.push(path);
                        paths.len() - 1
                    }
                };
                Source::Path(slot)
            };
            if let Some(allowed) = source.allowed_types()
                && !allowed.contains(&kind)
            {
                return Err(at(
                    ".type",
                    format!(
                        "{} cannot be stored as {}; use one of {}",
                        column.from,
                        kind.name(),
                        type_names(allowed)
                    ),
                ));
            }
            let is_key = raw.key.contains(&column.name);
            if is_key && column.nullable == Some(true) {
                return Err(at(
                    ".nullable",
                    format!("key column \"{}\" cannot be nullable", column.name),
                ));
            }
            columns.push(Column {
                name: column.name,
                from: column.from,
                source,
                kind,
                nullable: column.nullable.unwrap_or(!is_key),
            });
        }

        if raw.key.is_empty() {
            return Err(fail("key: must name at least one column".to_string()));
        }
        let mut key_indexes = Vec::with_capacity(raw.key.len());
        for name in &raw.key {
            let index = columns
                .iter()
                .position(|column| &column.name == name)
                .ok_or_else(|| fail(format!("key: \"{name}\" is not one of the columns")))?;
            if key_indexes.contains(&index) {
                return Err(fail(format!("key: \"{name}\" is listed twice")));
            }
            key_indexes.push(index);
        }

        Ok(PostgresSink {
            connection: raw.connection,
            table: raw.table,
            columns,
            key: raw.key,
            key_indexes,
            create_table: raw.create_table,
            table_ready: false,
            selector: Selector::from_paths(paths),
        })
    }

    /// The configured columns, in row order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The column definitions `create_table = true` creates the table with.
    pub fn column_defs(&self) -> Vec<ColumnDef> {
        self.columns
            .iter()
            .map(|column| ColumnDef {
                name: column.name.clone(),
                kind: column.kind,
                nullable: column.nullable,
            })
            .collect()
    }

    /// Converts one event into a row: one value per column, in order.
    pub fn row(&self, index: usize, event: &Event<'_>) -> Result<Vec<SqlValue>, String> {
        let describe = || match event.origin {
            Some(origin) => format!(
                "postgres-sink: event {index} (partition {}, offset {})",
                origin.partition, origin.offset
            ),
            None => format!("postgres-sink: event {index}"),
        };
        let selected = self
            .selector
            .select(event.value)
            .map_err(|err| format!("{}: value is not valid JSON: {err}", describe()))?;
        let mut row = Vec::with_capacity(self.columns.len());
        for column in &self.columns {
            let value = self
                .column_value(column, event, selected.values())
                .map_err(|err| {
                    format!(
                        "{}: column \"{}\" (from \"{}\"): {err}",
                        describe(),
                        column.name,
                        column.from
                    )
                })?;
            row.push(value);
        }
        Ok(row)
    }

    /// The SQL value of `column` for `event`, whose selected path values are
    /// `selected`.
    fn column_value(
        &self,
        column: &Column,
        event: &Event<'_>,
        selected: &[Option<Value>],
    ) -> Result<SqlValue, String> {
        let origin = event.origin;
        let value: Option<Cow<Value>> = match column.source {
            Source::Path(slot) => selected[slot].as_ref().map(Cow::Borrowed),
            Source::Key => match (&event.key, column.kind) {
                (Some(key), SqlType::Bytes) => return Ok(SqlValue::Bytes(key.to_vec())),
                (Some(key), _) => Some(Cow::Owned(Value::String(
                    String::from_utf8(key.to_vec())
                        .map_err(|_| "the record key is not valid UTF-8".to_string())?,
                ))),
                (None, _) => None,
            },
            Source::Timestamp => event.timestamp_ms.map(|ms| Cow::Owned(Value::from(ms))),
            Source::Topic => origin.map(|origin| Cow::Owned(Value::from(origin.topic.as_str()))),
            Source::Partition => origin.map(|origin| Cow::Owned(Value::from(origin.partition))),
            Source::Offset => origin.map(|origin| Cow::Owned(Value::from(origin.offset))),
            Source::Value => {
                // The value is already JSON text: pass it on without a
                // parse-and-print round trip.
                let text = event
                    .value_str()
                    .map_err(|err| format!("value is not valid UTF-8: {err}"))?;
                let text = text.trim().to_string();
                return Ok(match column.kind {
                    SqlType::Text => SqlValue::Text(text),
                    _ => SqlValue::Json(text),
                });
            }
        };
        match value.as_deref() {
            None | Some(Value::Null) if column.nullable => Ok(SqlValue::Null),
            None => Err("value is missing and the column is not nullable".to_string()),
            Some(Value::Null) => Err("value is null and the column is not nullable".to_string()),
            Some(value) => convert(column.kind, value),
        }
    }

    /// Converts a whole batch into rows, collapsing rows with equal keys into
    /// the last one (at the position of the first). Returns the rows and how
    /// many events were collapsed.
    pub fn rows(&self, batch: &[Event<'_>]) -> Result<(Vec<Vec<SqlValue>>, u64), String> {
        let mut rows: Vec<Vec<SqlValue>> = Vec::with_capacity(batch.len());
        let mut positions: HashMap<String, usize> = HashMap::with_capacity(batch.len());
        let mut collapsed = 0;
        for (index, event) in batch.iter().enumerate() {
            let row = self.row(index, event)?;
            let key = self.row_key(&row);
            match positions.get(&key) {
                Some(&position) => {
                    rows[position] = row;
                    collapsed += 1;
                }
                None => {
                    positions.insert(key, rows.len());
                    rows.push(row);
                }
            }
        }
        Ok((rows, collapsed))
    }

    /// A string identifying a row's key values.
    fn row_key(&self, row: &[SqlValue]) -> String {
        let key: Vec<&SqlValue> = self.key_indexes.iter().map(|&i| &row[i]).collect();
        format!("{key:?}")
    }

    /// The request for `rows`.
    pub fn request(&self, rows: Vec<Vec<SqlValue>>) -> TableWrite {
        TableWrite {
            connection: self.connection.clone(),
            table: self.table.clone(),
            columns: self
                .columns
                .iter()
                .map(|column| column.name.clone())
                .collect(),
            key_columns: self.key.clone(),
            rows,
        }
    }
}

/// Describes a JSON value for an error message: its type, and for scalars the
/// value (strings cut to 40 characters).
fn found(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.chars().count() > 40 => {
            format!("string \"{}...\"", s.chars().take(40).collect::<String>())
        }
        Value::String(s) => format!("string \"{s}\""),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

/// A JSON number as an `i64`, if it is an integer in range (`3.0` counts).
fn integer(number: &serde_json::Number) -> Result<i64, String> {
    if let Some(int) = number.as_i64() {
        return Ok(int);
    }
    if number.is_u64() {
        return Err(format!(
            "number {number} is out of range for a 64-bit integer"
        ));
    }
    let float = number.as_f64().unwrap_or(f64::NAN);
    if float.fract() != 0.0 || !float.is_finite() {
        return Err(format!(
            "expected an integer, found number {number} (a fraction)"
        ));
    }
    // i64::MIN and i64::MAX are exact at the bounds: -2^63 and 2^63 - 1 → 2^63.
    if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&float) {
        return Err(format!(
            "number {number} is out of range for a 64-bit integer"
        ));
    }
    Ok(float as i64)
}

/// Converts a (non-null) JSON value to a column of type `kind`:
///
/// | type | accepts |
/// | --- | --- |
/// | `boolean` | `true`/`false`, or the strings `"true"`/`"false"` |
/// | `int` | an integer (`3.0` counts; fractions and values outside 64 bits are errors), or a string holding a decimal integer |
/// | `float` | any number, or a string holding a finite decimal number |
/// | `text` | a string; a number or boolean becomes its JSON text; objects and arrays are errors (use `json`) |
/// | `bytes` | a string, as its UTF-8 bytes |
/// | `json` | anything, as JSON text |
/// | `timestamp` | epoch milliseconds (an integer, or a string of digits), or an RFC 3339 string (`2025-11-29T10:00:00.123Z`, `2025-11-29T12:00:00+02:00`) |
///
/// String forms exist because the telemetry schema's `attributes` hold only
/// strings.
pub fn convert(kind: SqlType, value: &Value) -> Result<SqlValue, String> {
    let mismatch = |expected: &str| format!("expected {expected}, found {}", found(value));
    match kind {
        SqlType::Boolean => match value {
            Value::Bool(b) => Ok(SqlValue::Boolean(*b)),
            Value::String(s) if s == "true" => Ok(SqlValue::Boolean(true)),
            Value::String(s) if s == "false" => Ok(SqlValue::Boolean(false)),
            _ => Err(mismatch("a boolean")),
        },
        SqlType::Int => match value {
            Value::Number(n) => integer(n).map(SqlValue::Int),
            Value::String(s) => s
                .parse::<i64>()
                .map(SqlValue::Int)
                .map_err(|_| mismatch("an integer")),
            _ => Err(mismatch("an integer")),
        },
        SqlType::Float => match value {
            Value::Number(n) => n
                .as_f64()
                .map(SqlValue::Float)
                .ok_or_else(|| mismatch("a number")),
            Value::String(s) => match s.parse::<f64>() {
                Ok(float) if float.is_finite() => Ok(SqlValue::Float(float)),
                _ => Err(mismatch("a number")),
            },
            _ => Err(mismatch("a number")),
        },
        SqlType::Text => match value {
            Value::String(s) => Ok(SqlValue::Text(s.clone())),
            Value::Number(_) | Value::Bool(_) => Ok(SqlValue::Text(value.to_string())),
            _ => Err(format!(
                "expected a string or a scalar for text, found {} (use type = \"json\")",
                found(value)
            )),
        },
        SqlType::Bytes => match value {
            Value::String(s) => Ok(SqlValue::Bytes(s.as_bytes().to_vec())),
            _ => Err(mismatch("a string")),
        },
        SqlType::Json => Ok(SqlValue::Json(value.to_string())),
        SqlType::Timestamp => {
            let expected = "epoch milliseconds or an RFC 3339 timestamp";
            match value {
                Value::Number(n) => integer(n)
                    .map(SqlValue::TimestampMs)
                    .map_err(|_| mismatch(expected)),
                Value::String(s) => {
                    let digits = s.strip_prefix('-').unwrap_or(s);
                    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                        return s
                            .parse::<i64>()
                            .map(SqlValue::TimestampMs)
                            .map_err(|_| mismatch(expected));
                    }
                    parse_rfc3339_ms(s)
                        .map(SqlValue::TimestampMs)
                        .map_err(|err| format!("{}: {err}", mismatch(expected)))
                }
                _ => Err(mismatch(expected)),
            }
        }
    }
}

/// Parses an RFC 3339 timestamp into epoch milliseconds (sub-millisecond
/// digits are truncated toward the past).
pub fn parse_rfc3339_ms(text: &str) -> Result<i64, String> {
    let time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|err| err.to_string())?;
    let millis = time.unix_timestamp_nanos().div_euclid(1_000_000);
    i64::try_from(millis).map_err(|_| "out of range".to_string())
}

impl Sink for PostgresSink {
    fn init(config: Config) -> Result<Self, String> {
        PostgresSink::from_config(config.value())
    }

    fn needs(&self) -> Needs {
        // Error messages name each event's partition and offset, and
        // `$topic`, `$partition` and `$offset` columns read them.
        Needs::ORIGINS
    }

    fn write(&mut self, batch: &[Event<'_>]) -> Result<(), String> {
        if batch.is_empty() {
            return Ok(());
        }
        let (rows, collapsed) = self.rows(batch)?;
        if self.create_table && !self.table_ready {
            sql::create_table(
                &self.connection,
                &self.table,
                &self.column_defs(),
                &self.key,
            )
            .map_err(|err| {
                format!(
                    "postgres-sink: create table {} on connection {}: {err}",
                    self.table, self.connection
                )
            })?;
            self.table_ready = true;
        }
        let written = sql::write(&self.request(rows)).map_err(|err| {
            format!(
                "postgres-sink: write to {} on connection {}: {err}",
                self.table, self.connection
            )
        })?;
        sluice_sdk::counter_add("rows_written", written);
        if collapsed > 0 {
            sluice_sdk::counter_add("rows_deduplicated", collapsed);
        }
        Ok(())
    }
}

sluice_sdk::export_sink!(PostgresSink);

#[cfg(test)]
mod tests;
