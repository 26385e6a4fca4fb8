//! A template Sluice transform plugin: tags events whose severity is one of
//! `severities` (default `["ERROR"]`) with `attributes.alert = "true"`.
//!
//! Config (the stage's `[stage.config.NAME]` table, as JSON):
//!
//! ```toml
//! severities = ["ERROR", "FATAL"]   # optional, default ["ERROR"]
//! ```

use serde::Deserialize;
use sluice_sdk::{Config, Event, Outcome, Transform};

/// Plugin settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "default_severities")]
    severities: Vec<String>,
}

fn default_severities() -> Vec<String> {
    vec!["ERROR".to_string()]
}

/// The only field the rule reads: serde skips the rest of the event.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    severity: std::borrow::Cow<'a, str>,
}

/// The plugin: one instance per component instance, created by `init`.
pub struct Alert {
    severities: Vec<String>,
}

impl Alert {
    /// Whether an event with this severity gets tagged.
    pub fn wants(&self, severity: &str) -> bool {
        self.severities.iter().any(|s| s == severity)
    }
}

impl Transform for Alert {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        if settings.severities.is_empty() {
            return Err("invalid config: `severities` must not be empty".to_string());
        }
        Ok(Alert {
            severities: settings.severities,
        })
    }

    fn process(&mut self, event: &Event<'_>) -> Outcome {
        // Cheap, partial parse first: most events are not errors and are kept
        // without re-serializing anything.
        let head: Head = match event.json() {
            Ok(head) => head,
            Err(err) => return Outcome::fail(format!("alert: bad event: {err}")),
        };
        if !self.wants(&head.severity) {
            return Outcome::keep();
        }
        // Full round trip only for the events we change.
        let mut value = match event.value_json() {
            Ok(value) => value,
            Err(err) => return Outcome::fail(format!("alert: bad event: {err}")),
        };
        if let Err(err) = sluice_sdk::set_path(&mut value, "attributes.alert", "true".into()) {
            return Outcome::fail(format!("alert: {err}"));
        }
        sluice_sdk::counter_add("alerts", 1);
        Outcome::modify(event.with_value_json(&value))
    }
}

sluice_sdk::export_transform!(Alert);

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"event_id":"e-1","type":"page_view","source":"web","entity_id":"user-7","occurred_at":1764400000000,"severity":"ERROR","attributes":{"region":"eu"},"trace_id":null}"#;

    #[test]
    fn tags_errors_and_keeps_the_rest() {
        let outcomes = sluice_sdk::testing::run::<Alert>(
            "{}",
            vec![
                Event::new(EVENT),
                Event::new(&EVENT.replace("ERROR", "INFO")),
                Event::new("not json"),
            ],
        )
        .unwrap();
        let tagged: serde_json::Value =
            serde_json::from_str(outcomes[0].modified_value().unwrap()).unwrap();
        assert_eq!(tagged["attributes"]["alert"], "true");
        assert_eq!(tagged["attributes"]["region"], "eu");
        assert_eq!(outcomes[1], Outcome::keep());
        assert!(
            outcomes[2]
                .failure()
                .unwrap()
                .starts_with("alert: bad event")
        );
        assert_eq!(sluice_sdk::testing::counter("alerts"), 1);
    }

    #[test]
    fn severities_are_configurable() {
        let outcomes = sluice_sdk::testing::run::<Alert>(
            r#"{"severities":["WARN"]}"#,
            vec![
                Event::new(EVENT),
                Event::new(&EVENT.replace("ERROR", "WARN")),
            ],
        )
        .unwrap();
        assert_eq!(outcomes[0], Outcome::keep());
        assert!(outcomes[1].modified().is_some());
    }

    #[test]
    fn config_errors() {
        let err = sluice_sdk::testing::init::<Alert>(r#"{"severities":[]}"#)
            .err()
            .unwrap();
        assert_eq!(err, "invalid config: `severities` must not be empty");
        let err = sluice_sdk::testing::init::<Alert>(r#"{"severity":"x"}"#)
            .err()
            .unwrap();
        assert!(err.contains("unknown field `severity`"), "{err}");
    }
}
