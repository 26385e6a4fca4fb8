//! The JSON of `GET /admin/stats` and `GET /admin/topology`: every response
//! type in one place, `serde` both ways, so the host serialises exactly what
//! `sluice top` (and the web console) deserialise, and the OpenAPI document
//! can be generated from these structs.
//!
//! Stats are cumulative counters since the host started, never rates: a
//! client computes rates from two snapshots (`at_ms` apart), so any number
//! of clients can watch without disturbing each other.

use serde::{Deserialize, Serialize};

/// Who answered: the same block in `/admin/stats` and `/admin/topology`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostIdentity {
    /// `[plugins] host_id`, else host name and HTTP port: this host's name
    /// in its consumer groups' transactional ids and in `sluice plugin list`.
    pub id: String,
    /// The `sluice` version.
    pub version: String,
    /// When the process started, epoch milliseconds.
    pub started_at_ms: i64,
    /// Milliseconds since start, measured when the snapshot was taken.
    pub uptime_ms: u64,
    /// When the snapshot was taken, epoch milliseconds.
    pub at_ms: i64,
}

/// `GET /admin/stats`: one host's cumulative counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stats {
    /// This host.
    pub host: HostIdentity,
    /// HTTP ingest; absent on a host without `[ingest]`.
    pub ingest: Option<IngestStats>,
    /// Every stage of this host's configuration, in configuration order.
    pub stages: Vec<StageStats>,
}

/// Ingest counters (`sluice_ingest_events_total`, `sluice_ingest_requests_total`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IngestStats {
    /// One entry per topic the ingest routes write, in route order. The
    /// metric counts per topic, so routes sharing a topic share an entry.
    pub routes: Vec<RouteStats>,
    /// Events rejected before a route was chosen (an undecodable body).
    pub unrouted_rejected: u64,
    /// HTTP requests by endpoint and status.
    pub requests: Vec<RequestCount>,
    /// Events awaiting the broker's acknowledgement now (a gauge).
    pub in_flight: u64,
}

/// Events the ingest routes to one topic received.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RouteStats {
    /// The topic.
    pub topic: String,
    /// The `event_type`s routed to it (`*` for the catch-all).
    pub event_types: Vec<String>,
    /// Produced and acknowledged (`status="accepted"`).
    pub accepted: u64,
    /// Invalid events (`status="rejected"`).
    pub rejected: u64,
    /// Refused with 503 or 429: broker down, too many in flight.
    pub unavailable: u64,
}

/// HTTP ingest requests of one endpoint with one status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestCount {
    /// The endpoint (`/v1/events`, `/v1/events/batch`, `/v1/logs`).
    pub route: String,
    /// The HTTP status.
    pub status: u16,
    /// Requests.
    pub count: u64,
}

/// One stage on this host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StageStats {
    /// Stage name.
    pub name: String,
    /// Input topic.
    pub input: String,
    /// Consumer group.
    pub group: String,
    /// State (`starting`, `running`, `retrying`, `stopped`), as `/readyz`.
    pub state: String,
    /// What the state is about (e.g. why it retries).
    pub detail: String,
    /// No poll-loop progress for 60 s while running.
    pub stuck: bool,
    /// Input partitions this host holds.
    pub assignment: Vec<PartitionRef>,
    /// Stage-level event counts.
    pub events: StageEvents,
    /// Batch latency, poll to commit (`sluice_stage_batch_seconds`).
    pub batches: Histogram,
    /// Consumer lag (`sluice_stage_consumer_lag`).
    pub lag: Lag,
    /// The chain's plugins in order, then the sink plugin if any.
    pub plugins: Vec<PluginStats>,
}

/// A topic partition.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct PartitionRef {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
}

/// Stage-level counts (`sluice_stage_events_total{plugin=""}`, plus the
/// plugins' drops and failures summed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StageEvents {
    /// Records read from the input (`outcome="in"`).
    #[serde(rename = "in")]
    pub input: u64,
    /// Records written to the output topic or the sink (`outcome="out"`).
    pub out: u64,
    /// Events the chain's plugins dropped (sum of their `dropped`).
    pub dropped: u64,
    /// Events the chain's plugins failed (sum of their `failed`; sinks too).
    pub failed: u64,
    /// Records sent to the dead-letter topic (`outcome="dead_lettered"`):
    /// failed events and undecodable records.
    pub dead_lettered: u64,
}

/// A histogram as the metric holds it: cumulative since start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Histogram {
    /// Observations.
    pub count: u64,
    /// Their sum, seconds.
    pub sum_seconds: f64,
    /// The 99th percentile since start, seconds, estimated from the buckets
    /// as Prometheus' `histogram_quantile` does; `null` before any.
    pub p99_seconds: Option<f64>,
    /// Cumulative bucket counts by upper bound (the `+Inf` bucket is
    /// `count`). A client takes the difference of two snapshots' buckets
    /// for the p99 of that interval.
    pub buckets: Vec<Bucket>,
}

/// One cumulative histogram bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Bucket {
    /// Upper bound, seconds (inclusive).
    pub le: f64,
    /// Observations at or below it.
    pub count: u64,
}

/// A stage's consumer lag.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Lag {
    /// Sum over the partitions this host holds.
    pub total: u64,
    /// Each partition measured on this host (every 5 s).
    pub partitions: Vec<PartitionLag>,
}

/// One partition's lag.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PartitionLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// High watermark minus committed offset, at the last measurement.
    pub lag: u64,
    /// Whether this host holds the partition now (a partition that moved
    /// away keeps its last measurement).
    pub assigned: bool,
}

/// One plugin of a stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginStats {
    /// Plugin name.
    pub name: String,
    /// `transform` (in the chain) or `sink`.
    pub kind: String,
    /// The version the stage runs: 12 hex digits of its sha256
    /// (`sluice_plugin_active`).
    pub version: Option<String>,
    /// Its plugin-store version number, when the store numbered it (the
    /// plugin directory's file has none).
    pub store_version: Option<u32>,
    /// Event counts (`sluice_stage_events_total{plugin=NAME}`).
    pub events: PluginEvents,
    /// Calls that trapped (`sluice_plugin_traps_total`).
    pub traps: u64,
    /// Call latency (`sluice_plugin_call_seconds`).
    pub calls: Histogram,
    /// Rows a sink wrote (`sluice_sink_rows_total`); 0 for transforms.
    pub rows: u64,
}

/// Per-plugin outcomes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginEvents {
    /// Events handed to the plugin.
    #[serde(rename = "in")]
    pub input: u64,
    /// Kept unchanged.
    pub kept: u64,
    /// Kept with a changed value, key, topic or headers.
    pub modified: u64,
    /// Dropped.
    pub dropped: u64,
    /// Failed (dead-lettered).
    pub failed: u64,
    /// Sinks: written.
    pub written: u64,
}

impl PluginEvents {
    /// Events the plugin passed on: kept and modified (a sink's written).
    pub fn out(&self) -> u64 {
        self.kept + self.modified + self.written
    }
}

/// `GET /admin/topology`: the pipeline of this host's configuration as a
/// graph: ingest routes → topics → stages (with their chains) → output
/// topics, sinks and dead-letter topics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Topology {
    /// This host.
    pub host: HostIdentity,
    /// Routes, topics, stages and sinks.
    pub nodes: Vec<Node>,
    /// Data flowing from one node to another.
    pub edges: Vec<Edge>,
}

/// A node of the pipeline graph. `id` is `KIND:NAME` (`route:*`,
/// `topic:telemetry.events`, `stage:clean`, `sink:clean`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Node {
    /// Unique within the graph.
    pub id: String,
    /// `route`, `topic`, `stage` or `sink`.
    pub kind: String,
    /// The route's event type, the topic, the stage's or the sink plugin's name.
    pub name: String,
    /// Stages: the chain's plugins in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// Stages: the consumer group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Stages: `at-least-once` or `exactly-once`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    /// Sinks: the connections the stage grants its sink.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<String>,
}

/// An edge of the pipeline graph.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Edge {
    /// Node id data leaves.
    pub from: String,
    /// Node id data reaches.
    pub to: String,
    /// `produce` (route → topic), `consume` (topic → stage), `output`
    /// (stage → topic), `sink` (stage → sink), `dead_letter` (stage → topic).
    pub kind: String,
}
