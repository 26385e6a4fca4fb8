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
