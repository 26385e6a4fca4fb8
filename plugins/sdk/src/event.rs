//! JSON helpers on [`Event`].

use serde::Deserialize;
use serde_json::Value;

use crate::{Event, JsonError, Selected, Selector};

impl Event {
    /// A new event with this JSON value and nothing else: no key, no headers,
    /// no timestamp, no origin, no topic override.
    ///
    /// Handy in tests and for events a plugin creates ([`Outcome::fan_out`](crate::Outcome::fan_out)).
    pub fn new(value: impl Into<Vec<u8>>) -> Event {
        Event {
            key: None,
            value: value.into(),
            headers: Vec::new(),
            timestamp_ms: None,
            origin: None,
            topic: None,
        }
    }

    /// A new event whose value is `value` serialized as JSON, with nothing
    /// else set (see [`Event::new`]).
    pub fn from_value_json(value: &Value) -> Event {
        Event::new(value.to_string())
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
    pub fn json<'a, T: Deserialize<'a>>(&'a self) -> Result<T, JsonError> {
        serde_json::from_slice(&self.value)
    }

    /// Parses the whole value into a [`serde_json::Value`].
    ///
    /// This reads every field; prefer [`Event::json`] or [`Event::select`]
    /// when the event may not change.
    pub fn value_json(&self) -> Result<Value, JsonError> {
        serde_json::from_slice(&self.value)
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
        selector.select(&self.value)
    }

    /// The value as UTF-8 text.
    pub fn value_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.value)
    }

    /// A copy of this event (key, headers, timestamp, origin, topic) whose
    /// value is `value` serialized as JSON.
    ///
    /// Object keys are written in sorted order; the host re-encodes the value
    /// with its Avro schema, so order does not matter downstream.
    pub fn with_value_json(&self, value: &Value) -> Event {
        self.with_value(value.to_string())
    }

    /// A copy of this event whose value is replaced by `value` (raw bytes).
    pub fn with_value(&self, value: impl Into<Vec<u8>>) -> Event {
        Event {
            key: self.key.clone(),
            value: value.into(),
            headers: self.headers.clone(),
            timestamp_ms: self.timestamp_ms,
            origin: self.origin.clone(),
            topic: self.topic.clone(),
        }
    }

    /// A copy of this event sent to `topic` instead of the stage's output
    /// topic.
    pub fn with_topic(&self, topic: impl Into<String>) -> Event {
        let mut event = self.clone();
        event.topic = Some(topic.into());
        event
    }

    /// The value of the first header named `key`, if any.
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|header| header.key == key)
            .map(|header| header.value.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Header, Origin};
    use serde_json::json;
    use std::borrow::Cow;

    fn full_event() -> Event {
        Event {
            key: Some(b"user-7".to_vec()),
            value: br#"{"event_id":"e-1","severity":"INFO","attributes":{"email":"a@b.com"}}"#
                .to_vec(),
            headers: vec![Header {
                key: "h".into(),
                value: b"v".to_vec(),
            }],
            timestamp_ms: Some(1_764_400_000_123),
            origin: Some(Origin {
                topic: "t".into(),
                partition: 3,
                offset: 42,
            }),
            topic: None,
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
        let event = full_event();
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
    fn with_value_json_keeps_metadata() {
        let event = full_event();
        let out = event.with_value_json(&json!({"b": 1, "a": "x"}));
        assert_eq!(out.value, br#"{"a":"x","b":1}"#);
        assert_eq!(out.key, event.key);
        assert_eq!(out.headers, event.headers);
        assert_eq!(out.timestamp_ms, event.timestamp_ms);
        assert_eq!(out.origin, event.origin);
        assert_eq!(out.topic, None);
    }

    #[test]
    fn with_topic_sets_only_the_topic() {
        let event = full_event();
        let out = event.with_topic("telemetry.eu");
        assert_eq!(out.topic.as_deref(), Some("telemetry.eu"));
        assert_eq!(out.value, event.value);
    }

    #[test]
    fn header_finds_first_match() {
        let event = full_event();
        assert_eq!(event.header("h"), Some(&b"v"[..]));
        assert_eq!(event.header("missing"), None);
    }

    #[test]
    fn new_and_from_value_json() {
        let event = Event::from_value_json(&json!({"a": [1, 2]}));
        assert_eq!(event.value_str().unwrap(), r#"{"a":[1,2]}"#);
        assert_eq!(event.key, None);
        assert!(event.headers.is_empty());
    }
}
