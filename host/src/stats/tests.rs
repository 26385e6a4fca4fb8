use std::collections::BTreeMap;
use std::path::Path;

use super::*;

const CONFIG: &str = r#"
[kafka]
brokers = "embedded"

[ingest]
listen = "127.0.0.1:8080"
[[ingest.route]]
event_type = "login"
topic = "auth.events"
schema = "s.avsc"
[[ingest.route]]
event_type = "*"
topic = "telemetry.events"
schema = "s.avsc"

[plugins]
dir = "plugins"
host_id = "eu-1"

[[stage]]
name = "clean"
input = "telemetry.events"
output = "telemetry.clean"
chain = ["filter", "redact"]

[[stage]]
name = "warehouse"
input = "telemetry.clean"
sink = "postgres-sink"
connections = ["db"]
dead_letter = "wh.dlq"

[connections.db]
type = "postgres"
url = "postgres://x"
"#;

fn info() -> HostInfo {
    let loaded = crate::config::parse_str(CONFIG, Path::new("/tmp/sluice.toml")).expect("config");
    HostInfo::from_config(&loaded.config)
}

/// What the exporter renders after some traffic (its format: buckets with
/// `le`, then `_sum` and `_count`).
const METRICS: &str = r#"# TYPE sluice_ingest_events_total counter
sluice_ingest_events_total 0
sluice_ingest_events_total{topic="telemetry.events",status="accepted"} 2000
sluice_ingest_events_total{topic="telemetry.events",status="unavailable"} 3
sluice_ingest_events_total{topic="",status="rejected"} 4
sluice_ingest_requests_total{route="/v1/events/batch",status="202"} 4
sluice_ingest_requests_total{route="/v1/events",status="400"} 4
sluice_ingest_in_flight_events 12
sluice_stage_events_total{stage="clean",plugin="",outcome="in"} 2000
sluice_stage_events_total{stage="clean",plugin="filter",outcome="in"} 1999
sluice_stage_events_total{stage="clean",plugin="filter",outcome="kept"} 1499
sluice_stage_events_total{stage="clean",plugin="filter",outcome="dropped"} 500
sluice_stage_events_total{stage="clean",plugin="redact",outcome="in"} 1499
sluice_stage_events_total{stage="clean",plugin="redact",outcome="modified"} 1498
sluice_stage_events_total{stage="clean",plugin="redact",outcome="failed"} 1
sluice_stage_events_total{stage="clean",plugin="",outcome="out"} 1498
sluice_stage_events_total{stage="clean",plugin="",outcome="dead_lettered"} 2
sluice_stage_events_total{stage="warehouse",plugin="postgres-sink",outcome="written"} 7
sluice_plugin_active{stage="clean",plugin="filter",version="aaaaaaaaaaaa"} 0
sluice_plugin_active{stage="clean",plugin="filter",version="bbbbbbbbbbbb"} 1
sluice_plugin_active{stage="clean",plugin="redact",version="cccccccccccc"} 1
sluice_plugin_traps_total{stage="clean",plugin="redact",kind="trap"} 1
sluice_sink_rows_total{stage="warehouse",plugin="postgres-sink"} 7
sluice_stage_consumer_lag{stage="clean",topic="telemetry.events",partition="0"} 5
sluice_stage_consumer_lag{stage="clean",topic="telemetry.events",partition="1"} 7
sluice_stage_consumer_lag{stage="clean",topic="telemetry.events",partition="2"} 100
sluice_stage_batch_seconds_bucket{le="0.1"} 0
sluice_stage_batch_seconds_bucket{le="+Inf"} 0
sluice_stage_batch_seconds_sum 0
sluice_stage_batch_seconds_count 0
sluice_stage_batch_seconds_bucket{stage="clean",le="0.01"} 2
sluice_stage_batch_seconds_bucket{stage="clean",le="0.1"} 9
sluice_stage_batch_seconds_bucket{stage="clean",le="1"} 10
sluice_stage_batch_seconds_bucket{stage="clean",le="+Inf"} 10
sluice_stage_batch_seconds_sum{stage="clean"} 0.4
sluice_stage_batch_seconds_count{stage="clean"} 10
sluice_plugin_call_seconds_bucket{stage="clean",plugin="filter",le="0.001"} 10
sluice_plugin_call_seconds_bucket{stage="clean",plugin="filter",le="+Inf"} 10
sluice_plugin_call_seconds_sum{stage="clean",plugin="filter"} 0.005
sluice_plugin_call_seconds_count{stage="clean",plugin="filter"} 10
"#;

#[test]
fn a_snapshot_carries_the_metrics_counters_per_route_stage_and_plugin() {
    let status = BTreeMap::from([(
        "clean".to_string(),
        StageStatus {
            state: "running".into(),
            detail: "consuming".into(),
            stuck: false,
            assignment: vec![
                ("telemetry.events".into(), 0),
                ("telemetry.events".into(), 1),
            ],
        },
    )]);
    let store = BTreeMap::from([(("clean".to_string(), "redact".to_string()), 3)]);
    let stats = stats(&info(), METRICS, &status, &store, 1_000);
    assert_eq!(stats.host.id, "eu-1");
    assert_eq!(stats.host.at_ms, 1_000);
    assert_eq!(stats.host.version, env!("CARGO_PKG_VERSION"));

    let ingest = stats.ingest.as_ref().expect("ingest");
    assert_eq!(ingest.routes.len(), 2);
    assert_eq!(ingest.routes[0].topic, "auth.events");
    assert_eq!(ingest.routes[0].accepted, 0);
    let telemetry = &ingest.routes[1];
    assert_eq!(telemetry.event_types, ["*"]);
    assert_eq!(
        (
            telemetry.accepted,
            telemetry.rejected,
            telemetry.unavailable
        ),
        (2000, 0, 3)
    );
    assert_eq!(ingest.unrouted_rejected, 4);
    assert_eq!(ingest.in_flight, 12);
    assert_eq!(ingest.requests.len(), 2);
    assert_eq!(ingest.requests[0].route, "/v1/events");
    assert_eq!(ingest.requests[0].status, 400);

    let clean = &stats.stages[0];
    assert_eq!(clean.name, "clean");
    assert_eq!(clean.group, "sluice-clean");
    assert_eq!(clean.state, "running");
    assert_eq!(
        clean.events,
        StageEvents {
            input: 2000,
            out: 1498,
            dropped: 500,
            failed: 1,
            dead_lettered: 2,
        }
    );
    assert_eq!(clean.batches.count, 10);
    assert_eq!(clean.batches.sum_seconds, 0.4);
    assert_eq!(clean.batches.buckets.len(), 3, "+Inf is `count`");
    // Rank 9.9 of 10 in (0.1, 1]: 0.9 of the way.
    let p99 = clean.batches.p99_seconds.expect("batches");
    assert!((p99 - 0.91).abs() < 1e-9, "{p99}");
    // Lag: the held partitions only; partition 2 moved away.
    assert_eq!(clean.lag.total, 12);
    assert_eq!(clean.lag.partitions.len(), 3);
    assert!(!clean.lag.partitions[2].assigned);

    let [filter, redact] = &clean.plugins[..] else {
        panic!("{:?}", clean.plugins)
    };
    assert_eq!(
        filter.version.as_deref(),
        Some("bbbbbbbbbbbb"),
        "the active one"
    );
    assert_eq!(filter.store_version, None);
    assert_eq!((filter.events.input, filter.events.out()), (1999, 1499));
    assert_eq!(filter.calls.count, 10);
    assert_eq!(redact.store_version, Some(3));
    assert_eq!(redact.traps, 1);
    assert_eq!(redact.events.out(), 1498);

    let warehouse = &stats.stages[1];
    assert_eq!(warehouse.state, "starting", "not on the board yet");
    assert_eq!(warehouse.plugins[0].kind, "sink");
    assert_eq!(warehouse.plugins[0].rows, 7);
    assert_eq!(warehouse.plugins[0].events.written, 7);
    assert_eq!(warehouse.batches.p99_seconds, None);

    // The JSON reads back as the same snapshot (what `sluice top` does).
    let json = serde_json::to_string(&stats).expect("json");
    assert!(json.contains(r#""in":2000"#), "{json}");
    let back: Stats = serde_json::from_str(&json).expect("read back");
    assert_eq!(back, stats);
}

#[test]
fn the_topology_is_routes_topics_stages_sinks_and_dead_letters() {
    let topology = topology(&info(), 5);
    let ids: Vec<&str> = topology.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "route:login",
            "topic:auth.events",
            "route:*",
            "topic:telemetry.events",
            "stage:clean",
            "topic:telemetry.clean",
            "topic:telemetry.events.dlq",
            "stage:warehouse",
            "sink:warehouse",
            "topic:wh.dlq",
        ]
    );
    let clean = &topology.nodes[4];
    assert_eq!(clean.chain, ["filter", "redact"]);
    assert_eq!(clean.delivery.as_deref(), Some("at-least-once"));
    assert_eq!(topology.nodes[8].name, "postgres-sink");
    assert_eq!(topology.nodes[8].connections, ["db"]);
    let edges: Vec<String> = topology
        .edges
        .iter()
        .map(|e| format!("{} -{}-> {}", e.from, e.kind, e.to))
        .collect();
    assert_eq!(
        edges,
        [
            "route:login -produce-> topic:auth.events",
            "route:* -produce-> topic:telemetry.events",
            "topic:telemetry.events -consume-> stage:clean",
            "stage:clean -output-> topic:telemetry.clean",
            "stage:clean -dead_letter-> topic:telemetry.events.dlq",
            "topic:telemetry.clean -consume-> stage:warehouse",
            "stage:warehouse -sink-> sink:warehouse",
            "stage:warehouse -dead_letter-> topic:wh.dlq",
        ]
    );
}
