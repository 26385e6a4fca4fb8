//! `ndjson-sink`: appends one JSON line per event to a file in the directory
//! the operator granted to the stage, rotating it by size.
//!
//! Config (the stage's `[stage.config.ndjson-sink]` table, as JSON):
//!
//! ```toml
//! file = "events.ndjson"     # default; relative to the granted directory
//! max_bytes = 67108864       # default 64 MiB: rotate before a batch would exceed it
//! envelope = false           # default; true wraps each value with its Kafka metadata
//! ```
//!
//! Each batch is encoded first and written with **one** `files::append`
//! call, so a retried batch appends all of its lines or none of them from
//! that call (at-least-once: a batch whose append succeeded but whose offsets
//! were not committed is appended again).
//!
//! **Lines.** Without `envelope`, a line is the event's JSON value as the host
//! passed it (re-serialized compactly only if it contains a line break).
//! With `envelope = true` it is
//! `{"topic":..,"partition":..,"offset":..,"key":..,"timestamp_ms":..,"value":<the value>}`
//! where `topic`, `partition` and `offset` come from the event's Kafka origin
//! (`null` when it has none), `key` is the record key as a string (`null`
//! when absent; bytes that are not UTF-8 are replaced by U+FFFD) and
//! `timestamp_ms` is the record timestamp (`null` when absent). A value that
//! is not valid JSON fails the batch naming the event.
//!
//! **Rotation.** Before appending, if the file is non-empty and its size plus
//! the batch's bytes would exceed `max_bytes`, the file is renamed to the
//! next free `STEM.N.EXT` (`events.1.ndjson`, `events.2.ndjson`, ...; probed
//! with `files::size`, counting up from 1, or from after the last rotation of
//! this instance) and the batch starts a new file. A batch larger than
//! `max_bytes` is still written whole, alone in its file.
//!
//! Counters: `lines_written`, `bytes_written`, `files_rotated`.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use sluice_sdk::{Config, Event, Needs, Sink, files};

/// The default `file`.
pub const DEFAULT_FILE: &str = "events.ndjson";

/// The default `max_bytes`: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_file")]
    file: String,
    #[serde(default = "default_max_bytes")]
    max_bytes: u64,
    #[serde(default)]
    envelope: bool,
}

fn default_file() -> String {
    DEFAULT_FILE.to_string()
}

fn default_max_bytes() -> u64 {
    DEFAULT_MAX_BYTES
}

/// Checks that `path` is a relative path inside the granted directory: not
/// empty, no leading `/`, no empty, `.` or `..` segment, no `\` or control
/// character.
pub fn validate_file(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("must not be empty".to_string());
    }
    if path.starts_with('/') {
        return Err(format!(
            "\"{path}\" must be relative to the granted directory"
        ));
    }
    if path.contains('\\') || path.chars().any(char::is_control) {
        return Err(format!(
            "\"{path}\" contains a backslash or a control character"
        ));
    }
    if path
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(format!(
            "\"{path}\" has an empty, `.` or `..` segment; it must stay inside the granted directory"
        ));
    }
    Ok(())
}

/// The name of rotated file number `n` for `file`: `N` goes before the last
/// extension of the file name (`events.ndjson` → `events.N.ndjson`,
/// `logs/app.json` → `logs/app.N.json`), or at the end when the name has
/// none (`out` → `out.N`; `.hidden` → `.hidden.N`).
pub fn rotated_name(file: &str, n: u64) -> String {
    let name_start = file.rfind('/').map_or(0, |slash| slash + 1);
    match file[name_start..].rfind('.') {
        Some(dot) if dot > 0 => {
            let dot = name_start + dot;
            format!("{}.{n}{}", &file[..dot], &file[dot..])
        }
        _ => format!("{file}.{n}"),
    }
}

/// Whether a file of `current` bytes must be rotated before appending
/// `incoming` bytes: it is non-empty and the sum would exceed `max_bytes`.
pub fn needs_rotation(current: u64, incoming: u64, max_bytes: u64) -> bool {
    current > 0 && current.saturating_add(incoming) > max_bytes
}

/// Describes an event for error messages: `event 3 (partition 2, offset 17)`,
/// or `event 3` when it has no origin.
fn describe(index: usize, event: &Event<'_>) -> String {
    match event.origin {
        Some(origin) => format!(
            "event {index} (partition {}, offset {})",
            origin.partition, origin.offset
        ),
        None => format!("event {index}"),
    }
}

/// The ndjson-sink plugin.
#[derive(Debug, Clone)]
pub struct NdjsonSink {
    file: String,
    max_bytes: u64,
    envelope: bool,
    /// Where the next rotation starts probing for a free number.
    next_rotation: u64,
}

impl NdjsonSink {
    /// Builds the plugin from its JSON config.
    pub fn from_config(config: &Value) -> Result<NdjsonSink, String> {
        let fail = |message: String| format!("invalid ndjson-sink config: {message}");
        let raw = RawConfig::deserialize(config).map_err(|err| fail(err.to_string()))?;
        validate_file(&raw.file).map_err(|err| fail(format!("file: {err}")))?;
        if raw.max_bytes == 0 {
            return Err(fail("max_bytes: must be at least 1".to_string()));
        }
        Ok(NdjsonSink {
            file: raw.file,
            max_bytes: raw.max_bytes,
            envelope: raw.envelope,
            next_rotation: 1,
        })
    }

    /// The file lines are appended to.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Appends the line (with its `\n`) for `event` to `out`.
    pub fn encode_line(
        &self,
        index: usize,
        event: &Event<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let invalid = |err: serde_json::Error| {
            format!(
                "ndjson-sink: {}: value is not valid JSON: {err}",
                describe(index, event)
            )
        };
        serde_json::from_slice::<IgnoredAny>(event.value).map_err(invalid)?;
        let compacted;
        let value: &[u8] = if event.value.iter().any(|&b| b == b'\n' || b == b'\r') {
            // A line break in valid JSON is whitespace between tokens.
            let parsed: Value = serde_json::from_slice(event.value).map_err(invalid)?;
            compacted = parsed.to_string();
            compacted.as_bytes()
        } else {
            event.value.trim_ascii()
        };
        if !self.envelope {
            out.extend_from_slice(value);
            out.push(b'\n');
            return Ok(());
        }
        let (topic, partition, offset) = match event.origin {
            Some(origin) => (
                Value::from(origin.topic.as_str()),
                Value::from(origin.partition),
                Value::from(origin.offset),
            ),
            None => (Value::Null, Value::Null, Value::Null),
        };
        let key = match event.key {
            Some(key) => Value::from(String::from_utf8_lossy(key)),
            None => Value::Null,
        };
        let timestamp = event.timestamp_ms.map_or(Value::Null, Value::from);
        out.extend_from_slice(
            format!(
                "{{\"topic\":{topic},\"partition\":{partition},\"offset\":{offset},\"key\":{key},\"timestamp_ms\":{timestamp},\"value\":"
            )
            .as_bytes(),
        );
        out.extend_from_slice(value);
        out.extend_from_slice(b"}\n");
        Ok(())
    }

    /// Encodes a whole batch: one line per event, in order.
    pub fn encode_batch(&self, batch: &[Event<'_>]) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(batch.iter().map(|e| e.value.len() + 1).sum());
        for (index, event) in batch.iter().enumerate() {
            self.encode_line(index, event, &mut out)?;
        }
        Ok(out)
    }

    /// Renames the file to the next free rotated name; returns that name.
    fn rotate(&mut self) -> Result<String, String> {
        let mut n = self.next_rotation;
        let target = loop {
            let candidate = rotated_name(&self.file, n);
            let size = files::size(&candidate)
                .map_err(|err| format!("ndjson-sink: size of {candidate}: {err}"))?;
            if size.is_none() {
                break candidate;
            }
            n += 1;
        };
        files::rename(&self.file, &target)
            .map_err(|err| format!("ndjson-sink: rename {} to {target}: {err}", self.file))?;
        self.next_rotation = n + 1;
        sluice_sdk::counter_add("files_rotated", 1);
        Ok(target)
    }
}

impl Sink for NdjsonSink {
    fn init(config: Config) -> Result<Self, String> {
        NdjsonSink::from_config(config.value())
    }

    fn needs(&self) -> Needs {
        // Error messages and the envelope name each event's origin.
        Needs::ORIGINS
    }

    fn write(&mut self, batch: &[Event<'_>]) -> Result<(), String> {
        if batch.is_empty() {
            return Ok(());
        }
        let data = self.encode_batch(batch)?;
        let current = files::size(&self.file)
            .map_err(|err| format!("ndjson-sink: size of {}: {err}", self.file))?
            .unwrap_or(0);
        if needs_rotation(current, data.len() as u64, self.max_bytes) {
            self.rotate()?;
        }
        files::append(&self.file, &data)
            .map_err(|err| format!("ndjson-sink: append to {}: {err}", self.file))?;
        sluice_sdk::counter_add("lines_written", batch.len() as u64);
        sluice_sdk::counter_add("bytes_written", data.len() as u64);
        Ok(())
    }
}

sluice_sdk::export_sink!(NdjsonSink);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_sdk::{Origin, testing};

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

    fn sink(config: Value) -> NdjsonSink {
        NdjsonSink::from_config(&config).unwrap()
    }

    fn file(path: &str) -> String {
        String::from_utf8(testing::files().get(path).cloned().unwrap_or_default()).unwrap()
    }

    #[test]
    fn defaults() {
        let sink = sink(json!({}));
        assert_eq!(sink.file, "events.ndjson");
        assert_eq!(sink.max_bytes, 64 * 1024 * 1024);
        assert!(!sink.envelope);
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = |config: Value| NdjsonSink::from_config(&config).unwrap_err();
        assert_eq!(
            err(json!({"max_bytes": 0})),
            "invalid ndjson-sink config: max_bytes: must be at least 1"
        );
        assert!(
            err(json!({"fle": "x"})).starts_with("invalid ndjson-sink config: unknown field `fle`"),
        );
        assert!(err(json!({"max_bytes": -1})).starts_with("invalid ndjson-sink config: "));
        assert!(err(json!({"envelope": "yes"})).starts_with("invalid ndjson-sink config: "));
        for bad in [
            "",
            "/var/log/x",
            "../x",
            "a/../x",
            "a//x",
            "./x",
            "a\\x",
            "a/",
        ] {
            let message = err(json!({ "file": bad }));
            assert!(
                message.starts_with("invalid ndjson-sink config: file: "),
                "{bad}: {message}"
            );
        }
        assert_eq!(sink(json!({"file": "out/a.ndjson"})).file(), "out/a.ndjson");
    }

    #[test]
    fn rotated_names_insert_the_number_before_the_extension() {
        assert_eq!(rotated_name("events.ndjson", 1), "events.1.ndjson");
        assert_eq!(rotated_name("events.ndjson", 12), "events.12.ndjson");
        assert_eq!(rotated_name("logs/app.json", 3), "logs/app.3.json");
        assert_eq!(rotated_name("a.b/out", 2), "a.b/out.2");
        assert_eq!(rotated_name("out", 2), "out.2");
        assert_eq!(rotated_name(".hidden", 1), ".hidden.1");
        assert_eq!(rotated_name("x.tar.gz", 1), "x.tar.1.gz");
    }

    #[test]
    fn rotation_threshold() {
        assert!(
            !needs_rotation(0, 100, 10),
            "an empty file is never rotated"
        );
        assert!(!needs_rotation(5, 5, 10));
        assert!(needs_rotation(5, 6, 10));
        assert!(needs_rotation(u64::MAX, 1, 10));
    }

    #[test]
    fn lines_are_the_values() {
        testing::reset();
        let mut sink = testing::run_sink::<NdjsonSink>(
            "{}",
            vec![event(r#"{"a":1}"#, 0), event("{\n  \"b\": [1,\n 2]\n}", 1)],
        )
        .unwrap();
        sink.write(&[event(" \"s\" ", 2)]).unwrap();
        assert_eq!(file("events.ndjson"), "{\"a\":1}\n{\"b\":[1,2]}\n\"s\"\n");
        assert_eq!(testing::counter("lines_written"), 3);
        assert_eq!(testing::counter("bytes_written"), 8 + 12 + 4);
    }

    #[test]
    fn envelope_wraps_the_value() {
        let sink = sink(json!({"envelope": true}));
        let line = sink.encode_batch(&[event(r#"{"a":"x"}"#, 42)]).unwrap();
        assert_eq!(
            String::from_utf8(line.clone()).unwrap(),
            "{\"topic\":\"telemetry.clean\",\"partition\":2,\"offset\":42,\"key\":\"user-7\",\"timestamp_ms\":1764400000123,\"value\":{\"a\":\"x\"}}\n"
        );
        let parsed: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(parsed["value"], json!({"a": "x"}));

        let mut bare = Event::new("[1]");
        bare.key = Some(&[0xff, b'"']);
        let line = sink.encode_batch(&[bare]).unwrap();
        let parsed: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            parsed,
            json!({"topic": null, "partition": null, "offset": null, "key": "\u{fffd}\"", "timestamp_ms": null, "value": [1]})
        );
    }

    #[test]
    fn invalid_json_fails_the_batch_naming_the_event_and_writes_nothing() {
        testing::reset();
        let err = testing::run_sink::<NdjsonSink>("{}", vec![event("{}", 7), event("{\"a\":", 8)])
            .err()
            .unwrap();
        assert!(
            err.starts_with(
                "ndjson-sink: event 1 (partition 2, offset 8): value is not valid JSON: "
            ),
            "{err}"
        );
        assert!(testing::files().is_empty());
        let err = sink(json!({}))
            .encode_batch(&[Event::new(&[0xffu8][..])])
            .unwrap_err();
        assert!(
            err.starts_with("ndjson-sink: event 0: value is not valid JSON: "),
            "{err}"
        );
    }

    #[test]
    fn one_append_per_batch_and_rotation_to_the_next_free_number() {
        testing::reset();
        // `events.1.ndjson` exists already (an earlier run), so rotation skips it.
        testing::put_file("events.1.ndjson", b"old\n");
        let mut sink = sink(json!({"max_bytes": 20}));
        let batch = |first: i64| vec![event("[1,2,3]", first), event("[4,5]", first + 1)];
        // 14 bytes per batch.
        sink.write(&batch(0)).unwrap();
        assert_eq!(file("events.ndjson"), "[1,2,3]\n[4,5]\n");
        sink.write(&batch(2)).unwrap(); // 14 + 14 > 20: rotate first
        assert_eq!(file("events.1.ndjson"), "old\n");
        assert_eq!(file("events.2.ndjson"), "[1,2,3]\n[4,5]\n");
        assert_eq!(file("events.ndjson"), "[1,2,3]\n[4,5]\n");
        sink.write(&batch(4)).unwrap();
        assert_eq!(file("events.3.ndjson"), "[1,2,3]\n[4,5]\n");
        // A batch larger than max_bytes goes alone into a fresh file.
        let big = vec![event(r#""0123456789012345678901234""#, 6)];
        sink.write(&big).unwrap();
        assert_eq!(file("events.4.ndjson"), "[1,2,3]\n[4,5]\n");
        assert_eq!(file("events.ndjson"), "\"0123456789012345678901234\"\n");
        assert_eq!(testing::counter("files_rotated"), 3);
        assert_eq!(testing::files().len(), 5);

        // A fresh instance probes from 1 and finds the next free number.
        let mut fresh = NdjsonSink::from_config(&json!({"max_bytes": 20})).unwrap();
        fresh.write(&batch(7)).unwrap();
        assert_eq!(file("events.5.ndjson"), "\"0123456789012345678901234\"\n");
    }

    #[test]
    fn host_errors_fail_the_batch() {
        testing::reset();
        testing::set_files_error(Some("no directory is granted to stage `s`"));
        let err = testing::run_sink::<NdjsonSink>("{}", vec![event("{}", 0)])
            .err()
            .unwrap();
        assert_eq!(
            err,
            "ndjson-sink: size of events.ndjson: no directory is granted to stage `s`"
        );
        testing::reset();
        testing::run_sink::<NdjsonSink>("{}", vec![]).unwrap();
        assert!(testing::files().is_empty(), "an empty batch writes nothing");
    }
}
