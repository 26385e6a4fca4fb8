//! `route`: picks each event's destination topic from one field.
//!
//! Config (the stage's `[stage.config.route]` table, as JSON):
//!
//! ```toml
//! field = "attributes.region"
//! topics = { eu = "telemetry.eu", us = "telemetry.us" }
//! default = "telemetry.other"   # optional
//! ```
//!
//! The field's value (a string, or a number/boolean by its JSON text) is
//! looked up in `topics`. On a match the event's `topic` is set and the
//! outcome is `modify`; with no match the `default` topic is used if set,
//! otherwise the event is kept unchanged (it goes to the stage's output
//! topic, or keeps a topic an earlier plugin set). Only the routing field is
//! parsed; the value is never re-serialized.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use sluice_sdk::{Config, Event, FieldPath, Outcome, Selector, Transform};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    field: String,
    topics: BTreeMap<String, String>,
    #[serde(default)]
    default: Option<String>,
}

/// Checks a Kafka topic name: 1 to 249 characters from `[A-Za-z0-9._-]`, not
/// `.` or `..`.
pub fn validate_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.len() > 249 {
        return Err(format!(
            "topic \"{topic}\" must be 1 to 249 characters long"
        ));
    }
    if topic == "." || topic == ".." {
        return Err(format!("topic \"{topic}\" is not a valid name"));
    }
    if let Some(bad) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic \"{topic}\" contains {bad:?}; use only A-Z a-z 0-9 . _ -"
        ));
    }
    Ok(())
}

/// The route plugin.
#[derive(Debug, Clone)]
pub struct Route {
    field: FieldPath,
    topics: BTreeMap<String, String>,
    default: Option<String>,
    selector: Selector,
}

impl Route {
    /// Builds the plugin from its JSON config.
    pub fn from_config(config: &Value) -> Result<Route, String> {
        let fail = |message: String| format!("invalid route config: {message}");
        let raw = RawConfig::deserialize(config).map_err(|err| fail(err.to_string()))?;
        let field = FieldPath::parse(&raw.field).map_err(|err| fail(format!("field: {err}")))?;
        if raw.topics.is_empty() && raw.default.is_none() {
            return Err(fail(
                "`topics` is empty and there is no `default`".to_string(),
            ));
        }
        for (key, topic) in &raw.topics {
            validate_topic(topic).map_err(|err| fail(format!("topics.{key}: {err}")))?;
        }
        if let Some(topic) = &raw.default {
            validate_topic(topic).map_err(|err| fail(format!("default: {err}")))?;
        }
        let selector = Selector::from_paths(vec![field.clone()]);
        Ok(Route {
            field,
            topics: raw.topics,
            default: raw.default,
            selector,
        })
    }

    /// The routing field.
    pub fn field(&self) -> &FieldPath {
        &self.field
    }

    /// The topic for an event whose routing field has `value` (`None` when
    /// absent), or `None` to leave the event's topic alone.
    pub fn topic_for(&self, value: Option<&Value>) -> Option<&str> {
        let key = match value {
            Some(Value::String(text)) => Some(text.clone()),
            Some(other @ (Value::Number(_) | Value::Bool(_))) => Some(other.to_string()),
            _ => None,
        };
        key.and_then(|key| self.topics.get(&key))
            .or(self.default.as_ref())
            .map(String::as_str)
    }

    /// The topic for an event value (JSON text); errors when it is not JSON.
    pub fn route(&self, value: &[u8]) -> Result<Option<&str>, String> {
        let selected = self
            .selector
            .select(value)
            .map_err(|err| format!("route: event value is not valid JSON: {err}"))?;
        Ok(self.topic_for(selected.get(0)))
    }
}

impl Transform for Route {
    fn init(config: Config) -> Result<Self, String> {
        Route::from_config(config.value())
    }

    fn process(&mut self, event: &Event<'_>) -> Outcome {
        match self.route(event.value) {
            Ok(Some(topic)) => Outcome::modify(event.with_topic(topic)),
            Ok(None) => Outcome::keep(),
            Err(reason) => Outcome::fail(reason),
        }
    }
}

sluice_sdk::export_transform!(Route);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const EVENT: &str = r#"{"event_id":"e-1","source":"web","severity":"INFO","attributes":{"region":"eu","code":7},"trace_id":null}"#;

    fn route(config: Value) -> Route {
        Route::from_config(&config).unwrap()
    }

    fn regions(default: Option<&str>) -> Value {
        let mut config = json!({"field": "attributes.region", "topics": {"eu": "telemetry.eu", "us": "telemetry.us"}});
        if let Some(default) = default {
            config["default"] = json!(default);
        }
        config
    }

    #[test]
    fn matches_and_defaults() {
        let with_default = route(regions(Some("telemetry.other")));
        assert_eq!(
            with_default.route(EVENT.as_bytes()).unwrap(),
            Some("telemetry.eu")
        );
        let us = EVENT.replace(r#""region":"eu""#, r#""region":"us""#);
        assert_eq!(
            with_default.route(us.as_bytes()).unwrap(),
            Some("telemetry.us")
        );
        let apac = EVENT.replace(r#""region":"eu""#, r#""region":"apac""#);
        assert_eq!(
            with_default.route(apac.as_bytes()).unwrap(),
            Some("telemetry.other")
        );
        assert_eq!(
            with_default.route(br#"{"attributes":{}}"#).unwrap(),
            Some("telemetry.other")
        );

        let without_default = route(regions(None));
        assert_eq!(without_default.route(apac.as_bytes()).unwrap(), None);
        assert_eq!(without_default.route(br#"{}"#).unwrap(), None);
    }

    #[test]
    fn numbers_route_by_json_text() {
        let r = route(json!({"field": "attributes.code", "topics": {"7": "seven"}}));
        assert_eq!(r.route(EVENT.as_bytes()).unwrap(), Some("seven"));
    }

    #[test]
    fn outcomes_through_the_sdk() {
        let mut event = Event::new(EVENT);
        event.key = Some(b"k");
        let apac_value = EVENT.replace(r#""region":"eu""#, r#""region":"apac""#);
        let apac = Event::new(&apac_value);
        let config = regions(None).to_string();
        let outcomes =
            sluice_sdk::testing::run::<Route>(&config, vec![event, apac, Event::new("nope")])
                .unwrap();
        // Routing is a metadata edit: the value does not cross back, so the
        // host keeps the input's encoded bytes.
        assert_eq!(outcomes[0], Outcome::route("telemetry.eu"));
        assert_eq!(outcomes[0].modified().unwrap().value, None);
        assert_eq!(outcomes[1], Outcome::keep());
        assert!(
            outcomes[2]
                .failure()
                .unwrap()
                .starts_with("route: event value is not valid JSON")
        );
    }

    #[test]
    fn config_errors() {
        let err = |config: Value| Route::from_config(&config).unwrap_err();
        assert!(err(json!({"topics": {}})).contains("missing field `field`"));
        assert_eq!(
            err(json!({"field": "a", "topics": {}})),
            "invalid route config: `topics` is empty and there is no `default`"
        );
        assert_eq!(
            err(json!({"field": "a", "topics": {"eu": "bad topic"}})),
            "invalid route config: topics.eu: topic \"bad topic\" contains ' '; use only A-Z a-z 0-9 . _ -"
        );
        assert_eq!(
            err(json!({"field": "a", "topics": {}, "default": ""})),
            "invalid route config: default: topic \"\" must be 1 to 249 characters long"
        );
        assert!(
            err(json!({"field": "a..b", "topics": {"x": "y"}}))
                .contains("field: path `a..b`: path has an empty segment")
        );
        assert!(
            err(json!({"field": "a", "topics": {"x": 1}})).contains("invalid type: integer `1`")
        );
        assert!(validate_topic(&"a".repeat(249)).is_ok());
        assert!(validate_topic(&"a".repeat(250)).is_err());
        assert!(validate_topic("..").is_err());
    }
}
