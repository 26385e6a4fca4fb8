//! Stats and topology: what `GET /admin/stats` and `GET /admin/topology`
//! answer, and what `sluice top` and the web console read.
//!
//! The counters are read from the text the Prometheus exporter renders for
//! `/metrics` (the same recorder, the same instant), so a snapshot and a
//! scrape taken together agree to the event; nothing here counts anything.
//! The shape of the pipeline comes from the configuration.

use std::collections::BTreeMap;
use std::time::Instant;

pub mod model;
pub mod prom;

pub use model::*;
use prom::{Samples, to_count};

use crate::config::Config;

/// What a host knows about itself from its configuration and start.
#[derive(Debug, Clone)]
pub struct HostInfo {
    id: String,
    started_at_ms: i64,
    started: Instant,
    /// `(event_type, topic)` of each ingest route, in order; `None` without
    /// `[ingest]`.
    routes: Option<Vec<(String, String)>>,
    stages: Vec<StageShape>,
}

/// A stage as configured.
#[derive(Debug, Clone)]
struct StageShape {
    name: String,
    input: String,
    group: String,
    output: Option<String>,
    sink: Option<String>,
    dead_letter: String,
    delivery: &'static str,
    chain: Vec<String>,
    connections: Vec<String>,
}

/// A stage's state as the status board reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageStatus {
    /// `starting`, `running`, `retrying`, `stopped`.
    pub state: String,
    /// Detail.
    pub detail: String,
    /// Quiet for too long.
    pub stuck: bool,
    /// Partitions held.
    pub assignment: Vec<(String, i32)>,
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl HostInfo {
    /// The host `config` describes, started now.
    pub fn from_config(config: &Config) -> Self {
        let routes = config.ingest.as_ref().map(|ingest| {
            ingest
                .routes
                .iter()
                .map(|r| (r.event_type.clone(), r.topic.get_ref().clone()))
                .collect()
        });
        let stages = config
            .stages
            .iter()
            .map(|s| StageShape {
                name: s.name.get_ref().clone(),
                input: s.input.get_ref().clone(),
                group: s.group_id(),
                output: s.output.as_ref().map(|o| o.get_ref().clone()),
                sink: s.sink.as_ref().map(|o| o.get_ref().clone()),
                dead_letter: s.dead_letter_topic(),
                delivery: match s.delivery() {
                    crate::config::Delivery::AtLeastOnce => "at-least-once",
                    crate::config::Delivery::ExactlyOnce => "exactly-once",
                },
                chain: s.chain.iter().map(|p| p.get_ref().clone()).collect(),
                connections: s.connections.iter().map(|c| c.get_ref().clone()).collect(),
            })
            .collect();
        Self {
            id: config.host_id(),
            started_at_ms: now_ms(),
            started: Instant::now(),
            routes,
            stages,
        }
    }

    /// This host's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The identity block of a snapshot taken at `at_ms`.
    pub fn identity(&self, at_ms: i64) -> HostIdentity {
        HostIdentity {
            id: self.id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at_ms: self.started_at_ms,
            uptime_ms: self.started.elapsed().as_millis() as u64,
            at_ms,
        }
    }
}

/// The stats snapshot: `metrics` is the exporter's rendered text,
/// `status` the board's stage states, `store_versions` the plugin-store
/// version this host reported running per `(stage, plugin)`.
pub fn stats(
    info: &HostInfo,
    metrics: &str,
    status: &BTreeMap<String, StageStatus>,
    store_versions: &BTreeMap<(String, String), u32>,
    at_ms: i64,
) -> Stats {
    let samples = Samples::parse(metrics);
    Stats {
        host: info.identity(at_ms),
        ingest: info.routes.as_ref().map(|routes| ingest(routes, &samples)),
        stages: info
            .stages
            .iter()
            .map(|shape| {
                stage(
                    shape,
                    &samples,
                    status.get(&shape.name).cloned().unwrap_or_default(),
                    store_versions,
                )
            })
            .collect(),
    }
}

fn ingest(routes: &[(String, String)], samples: &Samples) -> IngestStats {
    let mut by_topic: Vec<RouteStats> = Vec::new();
    for (event_type, topic) in routes {
        match by_topic.iter_mut().find(|r| &r.topic == topic) {
            Some(route) => route.event_types.push(event_type.clone()),
            None => by_topic.push(RouteStats {
                topic: topic.clone(),
                event_types: vec![event_type.clone()],
                ..RouteStats::default()
            }),
        }
    }
    const EVENTS: &str = "sluice_ingest_events_total";
    for route in &mut by_topic {
        let topic = route.topic.as_str();
        route.accepted = samples.count(EVENTS, &[("topic", topic), ("status", "accepted")]);
        route.rejected = samples.count(EVENTS, &[("topic", topic), ("status", "rejected")]);
        route.unavailable = samples.count(EVENTS, &[("topic", topic), ("status", "unavailable")]);
    }
    let mut requests: Vec<RequestCount> = samples
        .all("sluice_ingest_requests_total")
        .iter()
        .filter_map(|s| {
            Some(RequestCount {
                route: s.labels.get("route")?.clone(),
                status: s.labels.get("status")?.parse().ok()?,
                count: to_count(s.value),
            })
        })
        .collect();
    requests.sort_by(|a, b| (&a.route, a.status).cmp(&(&b.route, b.status)));
    IngestStats {
        routes: by_topic,
        unrouted_rejected: samples.count(EVENTS, &[("topic", ""), ("status", "rejected")]),
        requests,
        in_flight: samples.count("sluice_ingest_in_flight_events", &[]),
    }
}

fn stage(
    shape: &StageShape,
    samples: &Samples,
    status: StageStatus,
    store_versions: &BTreeMap<(String, String), u32>,
) -> StageStats {
    const EVENTS: &str = "sluice_stage_events_total";
    let name = shape.name.as_str();
    let outcome = |plugin: &str, outcome: &str| {
        samples.count(
            EVENTS,
            &[("stage", name), ("plugin", plugin), ("outcome", outcome)],
        )
    };
    let mut plugins: Vec<PluginStats> = shape
        .chain
        .iter()
        .map(|p| (p, "transform"))
        .chain(shape.sink.iter().map(|p| (p, "sink")))
        .map(|(plugin, kind)| {
            let labels = [("stage", name), ("plugin", plugin.as_str())];
            PluginStats {
                name: plugin.clone(),
                kind: kind.to_string(),
                version: active_version(samples, name, plugin),
                store_version: store_versions
                    .get(&(name.to_string(), plugin.clone()))
                    .copied()
                    .filter(|v| *v > 0),
                events: PluginEvents {
                    input: outcome(plugin.as_str(), "in"),
                    kept: outcome(plugin.as_str(), "kept"),
                    modified: outcome(plugin.as_str(), "modified"),
                    dropped: outcome(plugin.as_str(), "dropped"),
                    failed: outcome(plugin.as_str(), "failed"),
                    written: outcome(plugin.as_str(), "written"),
                },
                traps: samples.count("sluice_plugin_traps_total", &labels),
                calls: histogram(samples, "sluice_plugin_call_seconds", &labels),
                rows: samples.count("sluice_sink_rows_total", &labels),
            }
        })
        .collect();
    // A chain naming the same plugin twice shares its label set: keep one.
    let mut seen = std::collections::BTreeSet::new();
    plugins.retain(|p| seen.insert(p.name.clone()));
    let assignment: Vec<PartitionRef> = status
        .assignment
        .iter()
        .map(|(topic, partition)| PartitionRef {
            topic: topic.clone(),
            partition: *partition,
        })
        .collect();
    let mut partitions: Vec<PartitionLag> = samples
        .matching("sluice_stage_consumer_lag", &[("stage", name)])
        .filter_map(|s| {
            let topic = s.labels.get("topic")?.clone();
            let partition: i32 = s.labels.get("partition")?.parse().ok()?;
            let assigned = assignment
                .iter()
                .any(|a| a.topic == topic && a.partition == partition);
            Some(PartitionLag {
                topic,
                partition,
                lag: to_count(s.value),
                assigned,
            })
        })
        .collect();
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    StageStats {
        name: shape.name.clone(),
        input: shape.input.clone(),
        group: shape.group.clone(),
        state: if status.state.is_empty() {
            "starting".into()
        } else {
            status.state
        },
        detail: status.detail,
        stuck: status.stuck,
        assignment,
        events: StageEvents {
            input: outcome("", "in"),
            out: outcome("", "out"),
            dropped: plugins.iter().map(|p| p.events.dropped).sum(),
            failed: plugins.iter().map(|p| p.events.failed).sum(),
            dead_lettered: outcome("", "dead_lettered"),
        },
        batches: histogram(samples, "sluice_stage_batch_seconds", &[("stage", name)]),
        lag: Lag {
            total: partitions
                .iter()
                .filter(|p| p.assigned)
                .map(|p| p.lag)
                .sum(),
            partitions,
        },
        plugins,
    }
}

/// The version label of the stage's plugin whose `sluice_plugin_active` is 1.
fn active_version(samples: &Samples, stage: &str, plugin: &str) -> Option<String> {
    samples
        .matching(
            "sluice_plugin_active",
            &[("stage", stage), ("plugin", plugin)],
        )
        .filter(|s| s.value >= 1.0)
        .map(|s| s.label("version").to_string())
        .last()
}

/// The histogram `name` (its `_bucket`, `_sum`, `_count` series) for the
/// series with exactly these `labels` plus `le`.
fn histogram(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Histogram {
    let exact = |s: &&prom::Sample| {
        s.labels
            .keys()
            .filter(|k| k.as_str() != "le")
            .all(|k| labels.iter().any(|(l, _)| *l == k.as_str()))
    };
    let mut buckets: Vec<(f64, u64)> = samples
        .matching(&format!("{name}_bucket"), labels)
        .filter(exact)
        .filter_map(|s| {
            let le = match s.labels.get("le")?.as_str() {
                "+Inf" | "Inf" => f64::INFINITY,
                other => other.parse().ok()?,
            };
            Some((le, to_count(s.value)))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let count = samples
        .matching(&format!("{name}_count"), labels)
        .filter(exact)
        .map(|s| to_count(s.value))
        .sum();
    let sum_seconds = samples
        .matching(&format!("{name}_sum"), labels)
        .filter(exact)
        .map(|s| s.value)
        .sum();
    Histogram {
        count,
        sum_seconds,
        p99_seconds: prom::quantile(0.99, &buckets, count),
        buckets: buckets
            .into_iter()
            .filter(|(le, _)| le.is_finite())
            .map(|(le, count)| Bucket { le, count })
            .collect(),
    }
}

/// The pipeline graph of this host's configuration.
pub fn topology(info: &HostInfo, at_ms: i64) -> Topology {
    let mut graph = Graph::default();
    for (event_type, topic) in info.routes.iter().flatten() {
        let route = graph.node("route", event_type);
        let topic = graph.node("topic", topic);
        graph.edge(route, topic, "produce");
    }
    for shape in &info.stages {
        let input = graph.node("topic", &shape.input);
        let stage = graph.node("stage", &shape.name);
        if let Some(node) = graph.nodes.iter_mut().find(|n| n.id == stage) {
            node.chain = shape.chain.clone();
            node.group = Some(shape.group.clone());
            node.delivery = Some(shape.delivery.to_string());
        }
        graph.edge(input, stage.clone(), "consume");
        if let Some(output) = &shape.output {
            let output = graph.node("topic", output);
            graph.edge(stage.clone(), output, "output");
        }
        if let Some(sink) = &shape.sink {
            // One sink node per stage: the same plugin in two stages writes
            // through different connections.
            let id = format!("sink:{}", shape.name);
            graph.nodes.push(Node {
                id: id.clone(),
                kind: "sink".into(),
                name: sink.clone(),
                connections: shape.connections.clone(),
                ..Node::default()
            });
            graph.edge(stage.clone(), id, "sink");
        }
        let dead_letter = graph.node("topic", &shape.dead_letter);
        graph.edge(stage, dead_letter, "dead_letter");
    }
    Topology {
        host: info.identity(at_ms),
        nodes: graph.nodes,
        edges: graph.edges,
    }
}

#[derive(Default)]
struct Graph {
    nodes: Vec<Node>,
    edges: Vec<Edge>,
}

impl Graph {
    /// The id of node `kind:name`, added if new.
    fn node(&mut self, kind: &str, name: &str) -> String {
        let id = format!("{kind}:{name}");
        if !self.nodes.iter().any(|n| n.id == id) {
            self.nodes.push(Node {
                id: id.clone(),
                kind: kind.into(),
                name: name.into(),
                ..Node::default()
            });
        }
        id
    }

    fn edge(&mut self, from: String, to: String, kind: &str) {
        let edge = Edge {
            from,
            to,
            kind: kind.into(),
        };
        if !self.edges.contains(&edge) {
            self.edges.push(edge);
        }
    }
}

#[cfg(test)]
mod tests;
