//! The typed configuration and the checks that need only the file itself.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{Diagnostics, Source};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Config {
    /// Directory of `.avsc` files that stages decode records with (every
    /// ingest route's schema is known too), relative to the config file.
    #[serde(default)]
    pub schemas: Option<Spanned<PathBuf>>,
    /// Kafka connection and client settings.
    pub kafka: KafkaConfig,
    /// HTTP ingest; absent means this host runs no ingest.
    #[serde(default)]
    pub ingest: Option<IngestConfig>,
    /// Plugin directory and default sandbox limits.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// Processing stages, run in this host.
    #[serde(default, rename = "stage")]
    pub stages: Vec<StageConfig>,
    /// Sink targets (databases, directories), granted to stages by name.
    #[serde(default)]
    pub connections: BTreeMap<String, ConnectionConfig>,
    /// Admin API settings.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Logging settings.
    #[serde(default)]
    pub log: LogConfig,
    /// Graceful shutdown on SIGTERM or Ctrl-C.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// `[[test]]`: pipeline test cases that `sluice test` runs.
    #[serde(default, rename = "test")]
    pub tests: Vec<super::TestCase>,
    /// An external Confluent-compatible schema registry; without it the
    /// host serves the registry API for its own schemas.
    #[serde(default)]
    pub schema_registry: Option<super::SchemaRegistryConfig>,
}

impl Config {
    /// This host's name among the hosts of its consumer groups and plugin
    /// store: `[plugins] host_id`, else the machine's host name and the HTTP
    /// listen port (distinct for several hosts on one machine, stable across
    /// restarts), else the host name and process id. `plugin list` shows it,
    /// and exactly-once stages put it in their transactional ids, so a
    /// restarted host fences its predecessor's producer at once.
    pub fn host_id(&self) -> String {
        if let Some(id) = &self.plugins.host_id {
            return id.clone();
        }
        let machine = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        let listen = self
            .ingest
            .as_ref()
            .map(|i| i.listen.get_ref().clone())
            .or_else(|| self.admin.listen.as_ref().map(|l| l.get_ref().clone()));
        match listen {
            Some(listen) => format!("{machine}:{}", listen.rsplit(':').next().unwrap_or("")),
            None => format!("{machine}-pid{}", std::process::id()),
        }
        .replace('/', "_")
    }
}

/// `[shutdown]`: how SIGTERM and Ctrl-C drain the host.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
pub struct ShutdownConfig {
    /// Bound on the whole drain (ingest acknowledgements, producer flush,
    /// the stages' last batches and commits), in milliseconds. Past it the
    /// host exits non-zero, and uncommitted batches are read again on restart.
    #[serde(
        default = "default_shutdown_timeout_ms",
        alias = "timeout",
        deserialize_with = "super::duration::millis"
    )]
    pub timeout_ms: u64,
    /// Keep the HTTP listener open at least this long after the signal, so
    /// clients get `503` + `Retry-After` (and `/readyz` 503) instead of
    /// connection errors while load balancers notice, in milliseconds.
    #[serde(
        default,
        alias = "linger",
        deserialize_with = "super::duration::millis"
    )]
    pub linger_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            timeout_ms: default_shutdown_timeout_ms(),
            linger_ms: 0,
        }
    }
}

fn default_shutdown_timeout_ms() -> u64 {
    30_000
}

/// `[kafka]`: where the brokers are and how to talk to them.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct KafkaConfig {
    /// `"embedded"` for the in-process broker, or `host:port[,host:port...]`.
    pub brokers: Spanned<String>,
    /// Extra librdkafka settings passed through unchanged to every client
    /// (for example `"security.protocol" = "SASL_SSL"`).
    #[serde(default)]
    pub client: BTreeMap<String, toml::Value>,
    /// Partitions for topics Sluice creates (always on the embedded broker;
    /// on a real one only with `create_topics = true`).
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Create missing topics at start-up on a real broker.
    #[serde(default)]
    pub create_topics: bool,
}

fn default_partitions() -> i32 {
    3
}

impl KafkaConfig {
    /// True when `brokers = "embedded"`.
    pub fn is_embedded(&self) -> bool {
        self.brokers.get_ref().trim() == "embedded"
    }

    /// Client settings as strings, the form librdkafka takes.
    pub fn client_settings(&self) -> Vec<(String, String)> {
        self.client
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), value)
            })
            .collect()
    }
}

/// When ingest answers `202`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AckMode {
    /// After the broker acknowledged every record (`acks=all`). The default.
    #[default]
    Broker,
    /// As soon as records are queued in the producer: faster, but events
    /// queued when the host dies are lost. Opt-in only.
    Queued,
}

/// `[ingest]`: the HTTP API that producers POST events to.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct IngestConfig {
    /// Listen address, e.g. `127.0.0.1:8080`.
    pub listen: Spanned<String>,
    /// When to answer 202; see [`AckMode`].
    #[serde(default)]
    pub ack: AckMode,
    /// Largest accepted request body in bytes (413 above it).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Events accepted but not yet acknowledged by the broker, across all
    /// requests; beyond it ingest answers 503 with `Retry-After`.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// How long to wait for the broker's acknowledgement before answering
    /// 503 (sets librdkafka's `message.timeout.ms` for the ingest producer).
    #[serde(
        default = "default_ack_timeout_ms",
        alias = "ack_timeout",
        deserialize_with = "super::duration::millis"
    )]
    pub ack_timeout_ms: u64,
    /// Seconds suggested in `Retry-After` on 503.
    #[serde(
        default = "default_retry_after",
        alias = "retry_after",
        deserialize_with = "super::duration::secs"
    )]
    pub retry_after_secs: u64,
    /// Accept the valid events of a batch that also has invalid ones.
    #[serde(default)]
    pub partial: bool,
    /// API keys accepted in `Authorization: Bearer KEY` or `X-Api-Key`;
    /// empty means no authentication. `${VAR}` reads the environment.
    #[serde(default)]
    pub api_keys: Vec<Spanned<String>>,
    /// Routes from event type to topic and schema; first match wins.
    #[serde(rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// `POST /v1/logs`: how OTLP log records become events.
    #[serde(default)]
    pub otlp: super::OtlpConfig,
}

fn default_max_body_bytes() -> usize {
    1024 * 1024
}
fn default_max_in_flight() -> usize {
    100_000
}
fn default_ack_timeout_ms() -> u64 {
    5_000
}
fn default_retry_after() -> u64 {
    1
}

/// `[[ingest.route]]`: where events of one type go.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RouteConfig {
    /// Event type this route takes (the schema's `type_field`), or `"*"`.
    #[serde(default = "default_event_type")]
    pub event_type: String,
    /// Kafka topic the events are produced to.
    pub topic: Spanned<String>,
    /// Avro schema file (`.avsc`), relative to the config file.
    pub schema: Spanned<PathBuf>,
    /// Field used as the Kafka key, so one entity's events keep their order.
    #[serde(default = "default_key_field")]
    pub key_field: String,
    /// Field holding the event type.
    #[serde(default = "default_type_field")]
    pub type_field: String,
    /// Record framing on Kafka: `single-object` (default) or `confluent`.
    #[serde(default)]
    pub framing: super::Framing,
    /// Producer compression of this route's records (default: the
    /// `[kafka.client] compression.type`, else lz4).
    #[serde(default)]
    pub compression: Option<super::ProducerCompression>,
    /// Registry subject of this route's schema, instead of the one
    /// `[schema_registry] subject_strategy` names.
    #[serde(default)]
    pub subject: Option<String>,
}

fn default_event_type() -> String {
    "*".into()
}
fn default_key_field() -> String {
    "entity_id".into()
}
fn default_type_field() -> String {
    "type".into()
}

/// `[plugins]`: where components come from and the default sandbox.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct PluginsConfig {
    /// Directory holding `NAME.wasm` components, relative to the config file.
    #[serde(default = "default_plugin_dir")]
    pub dir: Spanned<PathBuf>,
    /// Directory for precompiled components; defaults to
    /// `$XDG_CACHE_HOME/sluice/components` or `~/.cache/sluice/components`.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Default limits for every plugin call.
    #[serde(default)]
    pub limits: Limits,
    /// Follow and publish to the plugin store topic: hot reload through
    /// `sluice plugin push`, converging on every host that enables it.
    #[serde(default)]
    pub store: bool,
    /// The compacted topic holding every plugin version (with `store`).
    #[serde(default = "default_store_topic")]
    pub store_topic: String,
    /// Watch `dir` and publish a changed `NAME.wasm` like a push (with
    /// `store`; for local development).
    #[serde(default)]
    pub watch: bool,
    /// How this host names itself in the store; defaults to the machine's
    /// host name and the HTTP listen address.
    #[serde(default)]
    pub host_id: Option<String>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: Spanned::new(0..0, default_plugin_dir_path()),
            cache_dir: None,
            limits: Limits::default(),
            store: false,
            store_topic: default_store_topic(),
            watch: false,
            host_id: None,
        }
    }
}

fn default_store_topic() -> String {
    "sluice.plugins".into()
}

fn default_plugin_dir_path() -> PathBuf {
    PathBuf::from("plugins")
}

fn default_plugin_dir() -> Spanned<PathBuf> {
    Spanned::new(0..0, default_plugin_dir_path())
}

/// Sandbox limits for plugin calls.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock bound for one call (a whole batch), in milliseconds.
    #[serde(
        default = "default_timeout_ms",
        alias = "timeout",
        deserialize_with = "super::duration::millis"
    )]
    pub timeout_ms: u64,
    /// Linear memory cap per plugin instance, in MiB.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout_ms: default_timeout_ms(),
            memory_mb: default_memory_mb(),
        }
    }
}

fn default_timeout_ms() -> u64 {
    2_000
}
fn default_memory_mb() -> u64 {
    64
}

/// `[[stage]]`: a consumer group running a plugin chain.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct StageConfig {
    /// Stage name, unique in the file; used in metrics and headers.
    pub name: Spanned<String>,
    /// Topic consumed.
    pub input: Spanned<String>,
    /// Consumer group; defaults to `sluice-<name>`.
    #[serde(default)]
    pub group: Option<String>,
    /// Transform plugins, in order.
    #[serde(default)]
    pub chain: Vec<Spanned<String>>,
    /// Topic for the chain's output.
    #[serde(default)]
    pub output: Option<Spanned<String>>,
    /// Sink plugin that writes the chain's output (instead of `output`).
    #[serde(default)]
    pub sink: Option<Spanned<String>>,
    /// Topic for events that failed; defaults to `<input>.dlq`.
    #[serde(default)]
    pub dead_letter: Option<String>,
    /// Largest batch handed to the chain.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest wait to fill a batch, in milliseconds.
    #[serde(
        default = "default_batch_wait_ms",
        alias = "batch_wait",
        deserialize_with = "super::duration::millis"
    )]
    pub batch_wait_ms: u64,
    /// Attempts on a fresh instance after a plugin trap, before dead-lettering.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// How long the broker may take to acknowledge the stage's output and
    /// dead letters, in milliseconds. After that the batch is retried (not
    /// committed) with a fresh producer.
    #[serde(
        default = "default_delivery_timeout_ms",
        alias = "delivery_timeout",
        deserialize_with = "super::duration::millis"
    )]
    pub delivery_timeout_ms: u64,
    /// Per-plugin configuration tables, by plugin name, passed to `init`.
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
    /// Limits overriding `[plugins.limits]` for this stage.
    #[serde(default)]
    pub limits: Option<Limits>,
    /// Names of `[connections.NAME]` this stage's sink may use.
    #[serde(default)]
    pub connections: Vec<Spanned<String>>,
    /// `"at-least-once"` (default) or `"exactly-once"`: Kafka transactions
    /// covering the output, the dead letters and the input offsets (topic
    /// → topic stages only).
    #[serde(default)]
    pub delivery: Option<Spanned<Delivery>>,
    /// Exactly-once: how long one transaction collects batches before it
    /// commits, in milliseconds. Longer means fewer commits (throughput),
    /// shorter means output visible sooner to `read_committed` consumers.
    #[serde(
        default = "default_transaction_interval_ms",
        alias = "transaction_interval",
        deserialize_with = "super::duration::millis"
    )]
    pub transaction_interval_ms: u64,
    /// Exactly-once: the broker aborts a transaction left open this long
    /// (a stalled or killed host's), in milliseconds. Bounds how long such
    /// a host holds back its partitions' `read_committed` readers.
    #[serde(
        default = "default_transaction_timeout_ms",
        alias = "transaction_timeout",
        deserialize_with = "super::duration::millis"
    )]
    pub transaction_timeout_ms: u64,
    /// Framing of the output records: `single-object` (default) or
    /// `confluent`. Input records are read in either.
    #[serde(default)]
    pub framing: super::Framing,
    /// Avro schema file (`.avsc`, relative to the config file) every input
    /// record is read as, and the output written with: a record written
    /// with another, compatible schema (a local file or one the registry
    /// gives by id) is resolved to it (Avro schema resolution: fields it
    /// adds take their defaults, fields it lacks are skipped). Unset: each
    /// record is read as its own schema, and a registered schema with no
    /// local file as the local schema of the same full name.
    #[serde(default)]
    pub reader_schema: Option<Spanned<PathBuf>>,
}

/// A stage's delivery guarantee.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// Offsets committed after the batch's output was acknowledged; a crash
    /// between the two re-runs the batch (duplicates, never loss).
    #[default]
    AtLeastOnce,
    /// Output, dead letters and offsets committed in one Kafka transaction
    /// per `transaction_interval_ms`; `read_committed` consumers see each
    /// input's results exactly once.
    ExactlyOnce,
}

fn default_transaction_interval_ms() -> u64 {
    100
}
fn default_transaction_timeout_ms() -> u64 {
    10_000
}

fn default_batch_size() -> usize {
    500
}
fn default_batch_wait_ms() -> u64 {
    100
}
fn default_retries() -> u32 {
    2
}
fn default_delivery_timeout_ms() -> u64 {
    30_000
}

impl StageConfig {
    /// The stage's delivery guarantee (at-least-once unless configured).
    pub fn delivery(&self) -> Delivery {
        self.delivery
            .as_ref()
            .map(|d| *d.get_ref())
            .unwrap_or_default()
    }

    /// The consumer group this stage joins.
    pub fn group_id(&self) -> String {
        self.group
            .clone()
            .unwrap_or_else(|| format!("sluice-{}", self.name.get_ref()))
    }

    /// The dead-letter topic.
    pub fn dead_letter_topic(&self) -> String {
        self.dead_letter
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.input.get_ref()))
    }
}

/// `[connections.NAME]`: a sink target.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ConnectionConfig {
    /// A PostgreSQL database.
    Postgres {
        /// `postgres://...` URL; `${VAR}` reads the environment.
        url: String,
        /// Pool size.
        #[serde(default = "default_pool_size")]
        pool_size: usize,
        /// How long one database call (a bulk load, a commit) may take before
        /// the database counts as unavailable and the batch is retried; the
        /// connection is then discarded. Guards against a hung network.
        #[serde(
            default = "default_query_timeout_ms",
            alias = "query_timeout",
            deserialize_with = "super::duration::millis"
        )]
        query_timeout_ms: u64,
    },
    /// A directory for file sinks.
    Directory {
        /// Path, relative to the config file.
        path: PathBuf,
    },
}

fn default_pool_size() -> usize {
    4
}

fn default_query_timeout_ms() -> u64 {
    60_000
}

/// `[admin]`: the admin API (plugin versions, stage status).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct AdminConfig {
    /// Listen address for `/healthz`, `/readyz`, `/metrics` and `/admin`
    /// when the host runs no ingest (with ingest they share its listener).
    #[serde(default)]
    pub listen: Option<Spanned<String>>,
    /// Bearer token; `${VAR}` reads the environment. Unset disables `/admin`
    /// (unless `tokens` names some). Its name is `admin`.
    #[serde(default)]
    pub token: Option<String>,
    /// Named bearer tokens (`[admin.tokens] alice = "${ALICE_TOKEN}"`), each
    /// as good as `token`; the name is who a dead-letter redrive records.
    #[serde(default)]
    pub tokens: BTreeMap<String, Spanned<String>>,
}

/// The name `[admin] token` goes by.
pub const DEFAULT_TOKEN_NAME: &str = "admin";

impl AdminConfig {
    /// Every admin token as `(name, secret)`, `${VAR}` read from the
    /// environment: `token` as `admin`, then `tokens` by name.
    pub fn named_tokens(&self) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::with_capacity(self.tokens.len() + 1);
        if let Some(token) = &self.token {
            let secret = super::interpolate_env(token).map_err(|e| format!("admin.token: {e}"))?;
            out.push((DEFAULT_TOKEN_NAME.to_string(), secret));
        }
        for (name, token) in &self.tokens {
            let secret = super::interpolate_env(token.get_ref())
                .map_err(|e| format!("admin.tokens.{name}: {e}"))?;
            out.push((name.clone(), secret));
        }
        Ok(out)
    }
}

/// `[admin]` checks: token names are plain words, secrets are non-empty
/// and distinct (a secret names exactly one caller), and `token` and
/// `tokens.admin` are not both set.
fn check_admin(admin: &AdminConfig, source: &Source<'_>, problems: &mut Diagnostics) {
    let mut secrets: BTreeMap<String, String> = BTreeMap::new();
    if let Some(token) = &admin.token {
        match super::interpolate_env(token) {
            Ok(secret) if secret.trim().is_empty() => {
                problems.push(source.at(None, "admin.token", "must not be empty".into()))
            }
            Ok(secret) => {
                secrets.insert(secret, DEFAULT_TOKEN_NAME.into());
            }
            // `sluice run` reports it when it reads the token.
            Err(_) => {}
        }
    }
    for (name, token) in &admin.tokens {
        let key = format!("admin.tokens.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        {
            problems.push(source.spanned(
                token,
                &key,
                "a token name is ASCII letters, digits, `-`, `_`, `.` or `@` (it is recorded in headers and logs)".into(),
            ));
        }
        if name == DEFAULT_TOKEN_NAME && admin.token.is_some() {
            problems.push(source.spanned(
                token,
                &key,
                format!(
                    "`{DEFAULT_TOKEN_NAME}` is the name of `[admin] token`; set one of the two"
                ),
            ));
        }
        match super::interpolate_env(token.get_ref()) {
            Ok(secret) if secret.trim().is_empty() => {
                problems.push(source.spanned(token, &key, "must not be empty".into()))
            }
            Ok(secret) => {
                if let Some(other) = secrets.insert(secret, name.clone()) {
                    problems.push(source.spanned(
                        token,
                        &key,
                        format!("the same secret as `{other}`'s: each token must name one caller"),
                    ));
                }
            }
            Err(e) => problems.push(source.spanned(token, &key, e)),
        }
    }
}

/// `[log]`: the log filter.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct LogConfig {
    /// `RUST_LOG`-style filter (e.g. `"info,sluice::stage=debug"`) for
    /// `sluice run` and `sluice test`; the `SLUICE_LOG` variable overrides it.
    #[serde(default)]
    pub filter: Option<Spanned<String>>,
}

/// Checks that need only the configuration text.
pub(super) fn check(config: &Config, source: &Source<'_>, problems: &mut Diagnostics) {
    let brokers = config.kafka.brokers.get_ref().trim();
    if brokers.is_empty() {
        problems.push(source.spanned(
            &config.kafka.brokers,
            "kafka.brokers",
            "must be \"embedded\" or a comma-separated host:port list".into(),
        ));
    }
    if config.kafka.partitions < 1 {
        problems.push(source.at(None, "kafka.partitions", "must be at least 1".into()));
    }
    if let Some(ingest) = &config.ingest {
        check_ingest(ingest, source, problems);
    }
    if let Some(listen) = &config.admin.listen
        && listen.get_ref().parse::<SocketAddr>().is_err()
    {
        problems.push(source.spanned(
            listen,
            "admin.listen",
            format!(
                "`{}` is not a listen address like 127.0.0.1:9090",
                listen.get_ref()
            ),
        ));
    }
    check_admin(&config.admin, source, problems);
    if let Some(filter) = &config.log.filter
        && let Err(e) = tracing_subscriber::EnvFilter::try_new(filter.get_ref())
    {
        problems.push(source.spanned(
            filter,
            "log.filter",
            format!("not a log filter like \"info,sluice::stage=debug\": {e}"),
        ));
    }
    if config.shutdown.linger_ms > config.shutdown.timeout_ms {
        problems.push(source.at(
            None,
            "shutdown.linger_ms",
            "must not exceed shutdown.timeout_ms".into(),
        ));
    }
    super::test_case::check(config, source, problems);
    let mut names = BTreeSet::new();
    for (i, stage) in config.stages.iter().enumerate() {
        let key = format!("stage[{i}]");
        if !names.insert(stage.name.get_ref().clone()) {
            problems.push(source.spanned(
                &stage.name,
                &format!("{key}.name"),
                format!("duplicate stage name `{}`", stage.name.get_ref()),
            ));
        }
        match (&stage.output, &stage.sink) {
            (None, None) => problems.push(source.spanned(
                &stage.name,
                &key,
                "a stage needs `output` (a topic) or `sink` (a sink plugin)".into(),
            )),
            (Some(output), Some(_)) => problems.push(source.spanned(
                output,
                &format!("{key}.output"),
                "set either `output` or `sink`, not both".into(),
            )),
            _ => {}
        }
        if stage.batch_size == 0 {
            problems.push(source.spanned(
                &stage.name,
                &format!("{key}.batch_size"),
                "must be at least 1".into(),
            ));
        }
        if let Some(delivery) = &stage.delivery
            && *delivery.get_ref() == Delivery::ExactlyOnce
        {
            if stage.sink.is_some() {
                problems.push(source.spanned(
                    delivery,
                    &format!("{key}.delivery"),
                    "exactly-once needs a topic `output`: a sink writes outside Kafka, where the \
                     stage's Kafka transaction cannot reach, so a crash between the write and the \
                     commit would write twice; use at-least-once with an idempotent sink (upserts)"
                        .into(),
                ));
            }
            if stage.transaction_interval_ms == 0 {
                problems.push(source.spanned(
                    delivery,
                    &format!("{key}.transaction_interval_ms"),
                    "must be at least 1".into(),
                ));
            }
            if stage.transaction_timeout_ms < 1_000
                || stage.transaction_timeout_ms <= stage.transaction_interval_ms
            {
                problems.push(source.spanned(
                    delivery,
                    &format!("{key}.transaction_timeout_ms"),
                    format!(
                        "must be at least 1000 and longer than transaction_interval_ms ({})",
                        stage.transaction_interval_ms
                    ),
                ));
            }
        }
        if stage.delivery_timeout_ms == 0 {
            problems.push(source.spanned(
                &stage.name,
                &format!("{key}.delivery_timeout_ms"),
                "must be at least 1 (librdkafka reads 0 as \"retry forever\")".into(),
            ));
        }
        for granted in &stage.connections {
            if !config.connections.contains_key(granted.get_ref()) {
                problems.push(source.spanned(
                    granted,
                    &format!("{key}.connections"),
                    format!("no `[connections.{}]` is defined", granted.get_ref()),
                ));
            }
        }
    }
}

fn check_ingest(ingest: &IngestConfig, source: &Source<'_>, problems: &mut Diagnostics) {
    if ingest.listen.get_ref().parse::<SocketAddr>().is_err() {
        problems.push(source.spanned(
            &ingest.listen,
            "ingest.listen",
            format!(
                "`{}` is not a listen address like 127.0.0.1:8080",
                ingest.listen.get_ref()
            ),
        ));
    }
    if ingest.routes.is_empty() {
        problems.push(source.spanned(
            &ingest.listen,
            "ingest.route",
            "ingest needs at least one [[ingest.route]]".into(),
        ));
    }
    for (i, route) in ingest.routes.iter().enumerate() {
        if route.topic.get_ref().trim().is_empty() {
            problems.push(source.spanned(
                &route.topic,
                &format!("ingest.route[{i}].topic"),
                "must not be empty".into(),
            ));
        }
    }
    for key in &ingest.api_keys {
        if let Err(e) = super::interpolate_env(key.get_ref()) {
            problems.push(source.spanned(key, "ingest.api_keys", e));
        }
    }
    if ingest.max_in_flight == 0 {
        problems.push(source.spanned(
            &ingest.listen,
            "ingest.max_in_flight",
            "must be at least 1".into(),
        ));
    }
}
