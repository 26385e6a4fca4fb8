//! Configuration of the ecosystem protocols: record framing, producer
//! compression, the schema registry and OTLP/HTTP logs.

use serde::{Deserialize, Serialize};

/// How record values are framed on Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// Avro single-object encoding: `C3 01`, the schema's 8-byte CRC-64-AVRO
    /// fingerprint, the datum. The default.
    #[default]
    SingleObject,
    /// The Confluent Schema Registry wire format: `00`, the schema's 4-byte
    /// big-endian registry id, the datum.
    Confluent,
}

/// Producer compression of a route's records (librdkafka's
/// `compression.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ProducerCompression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4 (the host's default).
    Lz4,
    /// Zstandard.
    Zstd,
}

impl ProducerCompression {
    /// The librdkafka value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// `[schema_registry]`: an external Confluent-compatible schema registry.
/// Without it, a host serves the registry API for its own schemas itself.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct SchemaRegistryConfig {
    /// Base URL, e.g. `http://registry:8081`; `${VAR}` reads the environment.
    pub url: String,
    /// Basic auth user (`${VAR}` reads the environment).
    #[serde(default)]
    pub username: Option<String>,
    /// Basic auth password (`${VAR}` reads the environment).
    #[serde(default)]
    pub password: Option<String>,
    /// Bearer token (`${VAR}` reads the environment), instead of basic auth.
    #[serde(default)]
    pub token: Option<String>,
    /// Register each confluent-framed route's schema at start-up (after a
    /// compatibility check against the subject's latest version).
    #[serde(default)]
    pub auto_register: bool,
    /// Timeout of one registry request, in milliseconds.
    #[serde(
        default = "default_registry_timeout_ms",
        alias = "timeout",
        deserialize_with = "super::duration::millis"
    )]
    pub timeout_ms: u64,
    /// How a topic's schemas are named as registry subjects (Confluent's
    /// subject name strategies): `topic` (default), `record` or
    /// `topic-record`. A route's `subject` overrides it.
    #[serde(default)]
    pub subject_strategy: SubjectStrategy,
}

/// Confluent's subject name strategies: which registry subject a record
/// value written to a topic is registered and looked up under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SubjectStrategy {
    /// TopicNameStrategy: `<topic>-value` (the default).
    #[default]
    Topic,
    /// RecordNameStrategy: the record's full name, e.g. `sluice.Event`.
    Record,
    /// TopicRecordNameStrategy: `<topic>-<record full name>`.
    TopicRecord,
}

impl SubjectStrategy {
    /// The subject of values written to `topic` with a schema whose full
    /// name is `record` (`None` for a schema that is not a named record,
    /// which the record strategies name by the topic, as `topic` does).
    pub fn subject(self, topic: &str, record: Option<&str>) -> String {
        match (self, record) {
            (Self::Record, Some(record)) => record.to_string(),
            (Self::TopicRecord, Some(record)) => format!("{topic}-{record}"),
            _ => format!("{topic}-value"),
        }
    }
}

fn default_registry_timeout_ms() -> u64 {
    5_000
}

/// `[ingest.otlp]`: how `POST /v1/logs` maps OTLP log records to events.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct OtlpConfig {
    /// Log or resource attribute whose value becomes `entity_id` (the Kafka
    /// key). Log attributes win over resource attributes; without either,
    /// the resource's `service.name`.
    #[serde(default = "default_entity_attribute")]
    pub entity_attribute: String,
    /// Event `type` of mapped log records (used for routing, like a posted
    /// event's `type`); `event_name` of a record wins when set.
    #[serde(default = "default_log_type")]
    pub event_type: String,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            entity_attribute: default_entity_attribute(),
            event_type: default_log_type(),
        }
    }
}

fn default_entity_attribute() -> String {
    "entity.id".into()
}

fn default_log_type() -> String {
    "log".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_strategies_name_as_confluent_does() {
        let record = Some("sluice.telemetry.Event");
        assert_eq!(
            SubjectStrategy::Topic.subject("telemetry.events", record),
            "telemetry.events-value"
        );
        assert_eq!(
            SubjectStrategy::Record.subject("telemetry.events", record),
            "sluice.telemetry.Event"
        );
        assert_eq!(
            SubjectStrategy::TopicRecord.subject("telemetry.events", record),
            "telemetry.events-sluice.telemetry.Event"
        );
        assert_eq!(
            SubjectStrategy::Record.subject("t", None),
            "t-value",
            "a schema without a record name falls back to the topic"
        );
    }

    #[test]
    fn subject_strategy_parses_and_defaults_to_topic() {
        #[derive(Deserialize)]
        struct Doc {
            schema_registry: SchemaRegistryConfig,
        }
        let doc: Doc = toml::from_str("[schema_registry]\nurl = \"http://r\"\n").unwrap();
        assert_eq!(doc.schema_registry.subject_strategy, SubjectStrategy::Topic);
        for (text, want) in [
            ("topic", SubjectStrategy::Topic),
            ("record", SubjectStrategy::Record),
            ("topic-record", SubjectStrategy::TopicRecord),
        ] {
            let doc: Doc = toml::from_str(&format!(
                "[schema_registry]\nurl = \"http://r\"\nsubject_strategy = \"{text}\"\n"
            ))
            .unwrap();
            assert_eq!(doc.schema_registry.subject_strategy, want);
        }
        assert!(
            toml::from_str::<Doc>(
                "[schema_registry]\nurl = \"http://r\"\nsubject_strategy = \"nope\"\n"
            )
            .is_err()
        );
    }
}
