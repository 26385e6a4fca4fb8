//! Events as a plugin sees them: borrowed views into the batch's buffers,
//! and the owned [`Change`]s and [`NewEvent`]s a plugin hands back.

use serde::Deserialize;
use serde_json::Value;

use crate::{Edit, Header, JsonError, NewEvent, Origin, Selected, Selector};

/// One event as a plugin sees it: a view that borrows its key, value and
/// metadata from the batch the host sent, so reading it copies nothing.
///
/// `headers` and `origin` are filled only for plugins that ask for them
/// ([`Transform::needs`](crate::Transform::needs)); otherwise they are empty
/// and `None`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event<'a> {
    /// Kafka record key. Ingest sets it to the entity id.
    pub key: Option<&'a [u8]>,
    /// The value as UTF-8 JSON.
    pub value: &'a [u8],
    /// Record timestamp in milliseconds since the Unix epoch, if any.
    pub timestamp_ms: Option<i64>,
    /// Kafka record headers, in order (when asked for).
    pub headers: &'a [Header],
    /// Where the event was read from (when asked for).
    pub origin: Option<&'a Origin>,
    /// Where the plugin's declared fields ([`Transform::fields`]) are in
    /// `value`: two numbers per field, as `json::locate` writes them; read
    /// them with [`Event::field`]. Empty when nothing was located.
    ///
    /// [`Transform::fields`]: crate::Transform::fields
    pub located: &'a [i32],
}

impl<'a> Event<'a> {
    /// A view of `value` with nothing else: no key, headers, timestamp or
    /// origin. Handy in tests.
    pub fn new(value: &'a (impl AsRef<[u8]> + ?Sized)) -> Event<'a> {
        Event {
            key: None,
            value: value.as_ref(),
            timestamp_ms: None,
            headers: &[],
            origin: None,
            located: &[],
        }
    }

    /// The value of declared field `index` (the position of its path in
    /// [`Transform::fields`](crate::Transform::fields)), located by the host:
    /// `Ok(None)` when the path is absent, `Err` when the value is not valid
    /// JSON on the way (or the field was not located).
    pub fn field(
        &self,
        index: usize,
    ) -> Result<Option<crate::json::Found<'a>>, crate::json::ScanError> {
        match self.located.get(2 * index..2 * index + 2) {
            Some(&[start, len]) => crate::json::located(self.value, start, len),
            _ => Err(crate::json::ScanError {
                at: 0,
                expected: "a field declared by Transform::fields",
            }),
        }
    }

    /// Deserializes the value into `T`, reading only what `T` names.
    ///
    /// Use a small struct with borrowed fields (`#[serde(borrow)] &'a str`)
    /// to avoid copies; serde skips every field the struct does not name.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Head<'a> {
    ///     #[serde(borrow)]
    ///     source: &'a str,
    ///     occurred_at: i64,
    /// }
    ///
    /// let event = sluice_sdk::Event::new(r#"{"source":"web","occurred_at":5,"attributes":{"a":"b"}}"#);
    /// let head: Head = event.json().unwrap();
    /// assert_eq!((head.source, head.occurred_at), ("web", 5));
    /// ```
    ///
    /// A borrowed `&str` fails on strings containing escapes; use
    /// `std::borrow::Cow<'a, str>` with `#[serde(borrow)]` where that can
    /// happen.
    pub fn json<T: Deserialize<'a>>(&self) -> Result<T, JsonError> {
        serde_json::from_slice(self.value)
    }

    /// Parses the whole value into a [`serde_json::Value`].
    ///
    /// This reads every field and builds a tree; prefer [`Event::json`],
    /// [`Event::select`] or [`crate::json`] (field lookups and edits on the
    /// raw bytes) in rules that run on every event.
    pub fn value_json(&self) -> Result<Value, JsonError> {
        serde_json::from_slice(self.value)
    }

    /// Extracts the values at the selector's paths, skipping everything else.
    ///
    /// ```
    /// use sluice_sdk::{Event, Selector};
    ///
    /// let selector = Selector::new(["severity", "attributes.region"]).unwrap();
    /// let event = Event::new(r#"{"severity":"WARN","attributes":{"region":"eu","ip":"x"}}"#);
    /// let selected = event.select(&selector).unwrap();
    /// assert_eq!(selected.get(0).and_then(|v| v.as_str()), Some("WARN"));
    /// assert_eq!(selected.get(1).and_then(|v| v.as_str()), Some("eu"));
    /// ```
    pub fn select(&self, selector: &Selector) -> Result<Selected, JsonError> {
        selector.select(self.value)
    }

    /// The value as UTF-8 text.
    pub fn value_str(&self) -> Result<&'a str, std::str::Utf8Error> {
        std::str::from_utf8(self.value)
    }

    /// A change replacing the value with `value` serialized as JSON.
    ///
    /// Object keys are written in sorted order; the host re-encodes the value
    /// with its Avro schema, so order does not matter downstream.
    pub fn with_value_json(&self, value: &Value) -> Change {
        Change::value(value.to_string())
    }

    /// A change replacing the value with `value` (raw JSON bytes).
    pub fn with_value(&self, value: impl Into<Vec<u8>>) -> Change {
        Change::value(value)
    }

    /// A change sending this event to `topic` instead of the stage's output
    /// topic; the value is untouched, so the host does not re-encode it.
    pub fn with_topic(&self, topic: impl Into<String>) -> Change {
        Change::default().with_topic(topic)
    }

    /// The value of the first header named `key`, if any (headers are there
    /// only for plugins that ask for them).
    pub fn header(&self, key: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|header| header.key == key)
            .map(|header| header.value.as_slice())
    }

    /// An owned copy of this event (key, value, headers, timestamp) as a
    /// [`NewEvent`], to build fan-out events from.
    pub fn to_new_event(&self) -> NewEvent {
        NewEvent {
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.to_vec(),
            headers: self.headers.to_vec(),
            timestamp_ms: self.timestamp_ms,
            topic: None,
        }
    }
}

/// What a plugin changes in an event: maybe its value, maybe its metadata.
/// Metadata edits alone leave the value marked unchanged, so the host reuses
/// the input's encoded bytes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Change {
    /// The new value (UTF-8 JSON), if it changes.
    pub value: Option<Vec<u8>>,
    /// Metadata edits, applied in order.
    pub edits: Vec<Edit>,
}

impl Change {
    /// A change of the value only.
    pub fn value(value: impl Into<Vec<u8>>) -> Change {
        Change {
            value: Some(value.into()),
            edits: Vec::new(),
        }
    }

    /// Also send the event to `topic`.
    pub fn with_topic(mut self, topic: impl Into<String>) -> Change {
        self.edits.push(Edit::SetTopic(topic.into()));
        self
    }

    /// Also set header `key` (replacing headers of that name).
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Change {
        self.edits.push(Edit::SetHeader(Header {
            key: key.into(),
            value: value.into(),
        }));
        self
    }

    /// Also remove every header named `key`.
    pub fn without_header(mut self, key: impl Into<String>) -> Change {
        self.edits.push(Edit::RemoveHeader(key.into()));
        self
    }

    /// The new value as text, if the value changes and is UTF-8.
    pub fn value_str(&self) -> Option<&str> {
        self.value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The topic this change sends the event to, if it sets one.
    pub fn topic(&self) -> Option<&str> {
        self.edits.iter().rev().find_map(|e| match e {
            Edit::SetTopic(topic) => Some(topic.as_str()),
            _ => None,
        })
    }
}

impl NewEvent {
    /// A created event with this JSON value and nothing else.
    pub fn new(value: impl Into<Vec<u8>>) -> NewEvent {
        NewEvent {
            key: None,
            value: value.into(),
            headers: Vec::new(),
            timestamp_ms: None,
            topic: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::borrow::Cow;

    const VALUE: &str = r#"{"event_id":"e-1","severity":"INFO","attributes":{"email":"a@b.com"}}"#;

    fn full_event<'a>(headers: &'a [Header], origin: &'a Origin) -> Event<'a> {
        Event {
            key: Some(b"user-7"),
            value: VALUE.as_bytes(),
            headers,
            timestamp_ms: Some(1_764_400_000_123),
            origin: Some(origin),
            located: &[],
        }
    }

    #[derive(serde::Deserialize)]
    struct Partial<'a> {
        #[serde(borrow)]
        event_id: Cow<'a, str>,
        severity: &'a str,
    }

    #[test]
    fn json_reads_a_borrowed_partial_struct() {
        let event = Event::new(VALUE);
        let partial: Partial = event.json().unwrap();
        assert_eq!(partial.event_id, "e-1");
        assert!(matches!(partial.event_id, Cow::Borrowed(_)));
        assert_eq!(partial.severity, "INFO");
    }

    #[test]
    fn json_reports_invalid_values() {
        let event = Event::new("not json");
        assert!(event.json::<Partial>().is_err());
        assert!(event.value_json().is_err());
    }

    #[test]
    fn with_value_json_changes_only_the_value() {
        let event = Event::new(VALUE);
        let change = event.with_value_json(&json!({"b": 1, "a": "x"}));
        assert_eq!(change.value_str(), Some(r#"{"a":"x","b":1}"#));
        assert!(change.edits.is_empty());
    }

    #[test]
    fn with_topic_is_a_metadata_edit() {
        let change = Event::new(VALUE).with_topic("telemetry.eu");
        assert_eq!(change.value, None);
        assert_eq!(change.topic(), Some("telemetry.eu"));
    }

    #[test]
    fn header_finds_first_match_and_new_events_copy_metadata() {
        let headers = [Header {
            key: "h".into(),
            value: b"v".to_vec(),
        }];
        let origin = Origin {
            topic: "t".into(),
            partition: 3,
            offset: 42,
        };
        let event = full_event(&headers, &origin);
        assert_eq!(event.header("h"), Some(&b"v"[..]));
        assert_eq!(event.header("missing"), None);
        let created = event.to_new_event();
        assert_eq!(created.key.as_deref(), Some(&b"user-7"[..]));
        assert_eq!(created.headers, headers.to_vec());
        assert_eq!(created.timestamp_ms, event.timestamp_ms);
        assert_eq!(created.value, VALUE.as_bytes());
    }
}
