//! Metrics: the names Sluice records through the `metrics` facade and the
//! Prometheus exporter that serves them at `GET /metrics`.
//!
//! Every metric is recorded through the helpers here so names and labels
//! stay consistent and documented in one place.

use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Install the Prometheus recorder for this process and return the handle
/// that renders `/metrics`. Installing twice returns an error.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ])?
        .install_recorder()?;
    describe();
    Ok(handle)
}

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A monotonic counter.
    Counter,
    /// A gauge.
    Gauge,
    /// A histogram (seconds).
    Histogram,
}

/// Every metric Sluice records: name, kind and help text. Each is described
/// and registered at zero (without labels) when the recorder is installed,
/// so `/metrics` on a fresh host lists the whole set.
pub const METRICS: &[(&str, Kind, &str)] = &[
    (
        "sluice_ingest_events_total",
        Kind::Counter,
        "Events received by HTTP ingest, by topic and status (accepted, rejected, unavailable).",
    ),
    (
        "sluice_ingest_requests_total",
        Kind::Counter,
        "HTTP ingest requests, by route and HTTP status.",
    ),
    (
        "sluice_ingest_request_seconds",
        Kind::Histogram,
        "HTTP ingest request latency, including the broker acknowledgement.",
    ),
    (
        "sluice_ingest_in_flight_events",
        Kind::Gauge,
        "Events accepted by ingest and not yet acknowledged by the broker.",
    ),
    (
        "sluice_stage_events_total",
        Kind::Counter,
        "Events through a stage and its plugins, by stage, plugin (empty for the stage itself) and outcome (in, kept, modified, dropped, failed, out, dead_lettered; sinks: written).",
    ),
    (
        "sluice_stage_batch_seconds",
        Kind::Histogram,
        "Time from a batch's first event read to its offsets committed.",
    ),
    (
        "sluice_plugin_traps_total",
        Kind::Counter,
        "Plugin calls that trapped (panic, time bound, memory cap), by stage and plugin.",
    ),
    (
        "sluice_plugin_call_seconds",
        Kind::Histogram,
        "Time spent in one plugin call (one batch), by stage and plugin.",
    ),
    (
        "sluice_producer_queue_depth",
        Kind::Gauge,
        "Messages queued in a librdkafka producer and not yet acknowledged, by producer (ingest, stage).",
    ),
    (
        "sluice_plugin_active",
        Kind::Gauge,
        "1 for each plugin version a stage runs, labelled by stage, plugin and version.",
    ),
    (
        "sluice_sink_rows_total",
        Kind::Counter,
        "Rows sink plugins wrote (inserted or updated), by stage and plugin.",
    ),
    (
        "sluice_sink_unavailable_total",
        Kind::Counter,
        "Sink batch attempts that found a target (database) unavailable, by stage.",
    ),
    (
        "sluice_stage_transactions_total",
        Kind::Counter,
        "Exactly-once stages' transactions, by stage and result (committed, aborted).",
    ),
    (
        "sluice_stage_transaction_commit_seconds",
        Kind::Histogram,
        "Time an exactly-once stage spends committing a transaction (offsets and commit), by stage.",
    ),
    (
        "sluice_stage_assigned_partitions",
        Kind::Gauge,
        "Input partitions this host's consumer holds, by stage and topic; with `sluice_stage_partition_assigned` (1 per held partition) it shows how hosts of one group share the input.",
    ),
    (
        "sluice_stage_partition_assigned",
        Kind::Gauge,
        "1 for each input partition this host's stage holds, 0 after it moved away, by stage, topic and partition.",
    ),
    (
        "sluice_stage_consumer_lag",
        Kind::Gauge,
        "High watermark minus committed offset, by stage, topic and partition.",
    ),
    (
        "sluice_plugin_counter_total",
        Kind::Counter,
        "Counters plugins increment through the host API, by stage, plugin and counter name.",
    ),
    (
        "sluice_producer_replaced_total",
        Kind::Counter,
        "librdkafka producers replaced after a fatal error, by producer (ingest, stage).",
    ),
    (
        "sluice_tap_dropped_total",
        Kind::Counter,
        "Tapped copies dropped because a tap's reader was slower than the data path.",
    ),
    (
        "sluice_taps_active",
        Kind::Gauge,
        "Live taps (`GET /admin/tap`) open on this host.",
    ),
    (
        "sluice_dlq_redrives_total",
        Kind::Counter,
        "Dead-letter redrives (`POST /admin/dlq/{stage}/redrive`), by stage and the admin token's name (by).",
    ),
    (
        "sluice_dlq_redriven_total",
        Kind::Counter,
        "Records redriven from a stage's dead letters to its input and acknowledged, by stage and the admin token's name (by).",
    ),
];

/// Describe every metric and register its label-less series at zero.
fn describe() {
    for &(name, kind, help) in METRICS {
        match kind {
            Kind::Counter => {
                metrics::describe_counter!(name, help);
                metrics::counter!(name).absolute(0);
            }
            Kind::Gauge => {
                metrics::describe_gauge!(name, help);
                metrics::gauge!(name).set(0.0);
            }
            Kind::Histogram => {
                metrics::describe_histogram!(name, help);
                // Registering the handle is enough: the exporter shows its
                // buckets at zero count until something is recorded.
                let _ = metrics::histogram!(name);
            }
        }
    }
}

/// Count one dead-letter redrive by `by` and the records it sent back.
pub fn dlq_redriven(stage: &str, by: &str, records: u64) {
    metrics::counter!("sluice_dlq_redrives_total", "stage" => stage.to_string(), "by" => by.to_string())
        .increment(1);
    metrics::counter!("sluice_dlq_redriven_total", "stage" => stage.to_string(), "by" => by.to_string())
        .increment(records);
}

/// Count tapped copies dropped on a full tap channel.
pub fn tap_dropped(count: u64) {
    metrics::counter!("sluice_tap_dropped_total").increment(count);
}

/// Set the number of open taps.
pub fn taps_active(count: usize) {
    metrics::gauge!("sluice_taps_active").set(count as f64);
}

/// Count ingest events by topic and status.
pub fn ingest_events(topic: &str, status: &'static str, count: usize) {
    metrics::counter!("sluice_ingest_events_total", "topic" => topic.to_string(), "status" => status)
        .increment(count as u64);
}

/// Count one ingest request and its latency.
pub fn ingest_request(route: &'static str, status: u16, elapsed: Duration) {
    metrics::counter!("sluice_ingest_requests_total", "route" => route, "status" => status.to_string())
        .increment(1);
    metrics::histogram!("sluice_ingest_request_seconds", "route" => route)
        .record(elapsed.as_secs_f64());
}

/// Set the number of events in flight to the broker.
pub fn ingest_in_flight(count: usize) {
    metrics::gauge!("sluice_ingest_in_flight_events").set(count as f64);
}

/// Count events through a stage step by outcome.
pub fn stage_events(stage: &str, plugin: &str, outcome: &'static str, count: usize) {
    if count == 0 {
        return;
    }
    metrics::counter!(
        "sluice_stage_events_total",
        "stage" => stage.to_string(),
        "plugin" => plugin.to_string(),
        "outcome" => outcome
    )
    .increment(count as u64);
}

/// Record a batch's end-to-end latency in a stage.
pub fn stage_batch(stage: &str, elapsed: Duration) {
    metrics::histogram!("sluice_stage_batch_seconds", "stage" => stage.to_string())
        .record(elapsed.as_secs_f64());
}

/// Record one plugin call's duration.
pub fn plugin_call(stage: &str, plugin: &str, elapsed: Duration) {
    metrics::histogram!(
        "sluice_plugin_call_seconds",
        "stage" => stage.to_string(),
        "plugin" => plugin.to_string()
    )
    .record(elapsed.as_secs_f64());
}

/// Count a plugin trap.
pub fn plugin_trap(stage: &str, plugin: &str, kind: &'static str) {
    metrics::counter!(
        "sluice_plugin_traps_total",
        "stage" => stage.to_string(),
        "plugin" => plugin.to_string(),
        "kind" => kind
    )
    .increment(1);
}

/// Count a plugin-defined counter (the WIT `counter-add` import).
pub fn plugin_counter(stage: &str, plugin: &str, name: &str, value: u64) {
    metrics::counter!(
        "sluice_plugin_counter_total",
        "stage" => stage.to_string(),
        "plugin" => plugin.to_string(),
        "name" => name.to_string()
    )
    .increment(value);
}

/// Set a partition's consumer lag.
pub fn consumer_lag(stage: &str, topic: &str, partition: i32, lag: i64) {
    metrics::gauge!(
        "sluice_stage_consumer_lag",
        "stage" => stage.to_string(),
        "topic" => topic.to_string(),
        "partition" => partition.to_string()
    )
    .set(lag as f64);
}

/// Rows a sink plugin wrote (inserted or updated).
pub fn sink_rows(stage: &str, plugin: &str, rows: u64) {
    metrics::counter!(
        "sluice_sink_rows_total",
        "stage" => stage.to_string(),
        "plugin" => plugin.to_string()
    )
    .increment(rows);
}

/// A sink batch that could not be written because a target was down.
pub fn sink_unavailable(stage: &str) {
    metrics::counter!("sluice_sink_unavailable_total", "stage" => stage.to_string()).increment(1);
}

/// Mark a plugin version as the one a stage runs (`1`, labelled by version);
/// the version it replaces in that stage goes to 0, so exactly one version
/// per stage and plugin reads 1.
pub fn plugin_active(stage: &str, plugin: &str, version: &str) {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    static RUNNING: Mutex<BTreeMap<(String, String), String>> = Mutex::new(BTreeMap::new());
    let mut running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
    let before = running.insert((stage.to_string(), plugin.to_string()), version.to_string());
    if let Some(before) = before.filter(|b| b != version) {
        metrics::gauge!(
            "sluice_plugin_active",
            "stage" => stage.to_string(),
            "plugin" => plugin.to_string(),
            "version" => before
        )
        .set(0.0);
    }
    metrics::gauge!(
        "sluice_plugin_active",
        "stage" => stage.to_string(),
        "plugin" => plugin.to_string(),
        "version" => version.to_string()
    )
    .set(1.0);
}

/// A producer was rebuilt: a delivery failed with the broker unreachable, or
/// librdkafka put it in a fatal state (see `kafka::Producer::on_failure`).
pub fn producer_replaced(producer: &'static str) {
    metrics::counter!("sluice_producer_replaced_total", "producer" => producer).increment(1);
}

/// Messages the producer holds that the broker has not acknowledged yet
/// (librdkafka's queue), by which part of the host produces them.
pub fn producer_queue_depth(producer: &'static str, depth: i32) {
    metrics::gauge!("sluice_producer_queue_depth", "producer" => producer).set(f64::from(depth));
}

/// Count an exactly-once stage's transaction (`committed` or `aborted`) and,
/// for commits, the time the commit took.
pub fn stage_transaction(stage: &str, result: &'static str, elapsed: Duration) {
    metrics::counter!("sluice_stage_transactions_total", "stage" => stage.to_string(), "result" => result)
        .increment(1);
    if result == "committed" {
        metrics::histogram!("sluice_stage_transaction_commit_seconds", "stage" => stage.to_string())
            .record(elapsed.as_secs_f64());
    }
}

/// Report the partitions a stage's consumer holds after a rebalance.
pub fn stage_assignment(stage: &str, assignment: &[(String, i32)]) {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    // What each stage held before, so partitions that moved away read 0.
    static HELD: Mutex<BTreeMap<String, Vec<(String, i32)>>> = Mutex::new(BTreeMap::new());
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    let before = held
        .insert(stage.to_string(), assignment.to_vec())
        .unwrap_or_default();
    let mut per_topic: BTreeMap<&str, usize> = before
        .iter()
        .map(|(topic, _)| (topic.as_str(), 0))
        .collect();
    for (topic, partition) in &before {
        if !assignment.contains(&(topic.clone(), *partition)) {
            metrics::gauge!("sluice_stage_partition_assigned", "stage" => stage.to_string(), "topic" => topic.clone(), "partition" => partition.to_string()).set(0.0);
        }
    }
    for (topic, partition) in assignment {
        *per_topic.entry(topic).or_default() += 1;
        metrics::gauge!("sluice_stage_partition_assigned", "stage" => stage.to_string(), "topic" => topic.clone(), "partition" => partition.to_string()).set(1.0);
    }
    for (topic, count) in per_topic {
        metrics::gauge!("sluice_stage_assigned_partitions", "stage" => stage.to_string(), "topic" => topic.to_string()).set(count as f64);
    }
}
