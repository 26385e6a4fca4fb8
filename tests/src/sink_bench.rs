//! The PostgreSQL sink benchmark (`bash scripts/bench.sh sink`): telemetry
//! events written through the `postgres-sink` plugin and the host's `sql`
//! capability (wasm column mapping, binary COPY into a temporary table,
//! upsert on `event_id`, one transaction per batch), against a plain binary
//! `COPY` of the same rows from the same process as the baseline. Rounds
//! alternate so both see the same machine; the ratio of medians is reported.
//! `SLUICE_BENCH_BATCH` sets the batch size (default 2000 rows).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sluice::config::Limits;
use sluice::runtime::bindings::{Event, Origin};
use sluice::runtime::{Runtime, SinkPlugin};
use sluice::sink::postgres::Database;
use sluice::sink::{Grants, SinkRunner, Target};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use crate::postgres::{PgSchema, connect, pg_url};
use crate::{repo_path, sample_event};

const COLUMNS: &str = "event_id TEXT NOT NULL PRIMARY KEY, type TEXT NOT NULL, source TEXT NOT NULL, \
    entity_id TEXT NOT NULL, occurred_at TIMESTAMPTZ NOT NULL, severity TEXT NOT NULL, \
    attributes JSONB, trace_id TEXT, kafka_partition BIGINT, kafka_offset BIGINT";

fn sink_config(table: &str) -> String {
    serde_json::json!({
        "connection": "bench",
        "table": table,
        "key": ["event_id"],
        "columns": [
            {"name": "event_id", "from": "event_id", "type": "text"},
            {"name": "type", "from": "type", "type": "text", "nullable": false},
            {"name": "source", "from": "source", "type": "text", "nullable": false},
            {"name": "entity_id", "from": "entity_id", "type": "text", "nullable": false},
            {"name": "occurred_at", "from": "occurred_at", "type": "timestamp", "nullable": false},
            {"name": "severity", "from": "severity", "type": "text", "nullable": false},
            {"name": "attributes", "from": "attributes", "type": "json"},
            {"name": "trace_id", "from": "trace_id", "type": "text"},
            {"name": "kafka_partition", "from": "$partition", "type": "int"},
            {"name": "kafka_offset", "from": "$offset", "type": "int"},
        ]
    })
    .to_string()
}

/// Run the benchmark with `scale` × 200k rows per round.
pub async fn run(scale: f64) -> anyhow::Result<()> {
    let rows = ((200_000.0 * scale) as usize).max(10_000);
    let batch: usize = std::env::var("SLUICE_BENCH_BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(2000);
    let rounds = 3;
    let schema = PgSchema::create("bench").await?;
    let client = connect().await?;
    let copy_table = format!("{}.copy_baseline", schema.name);
    let sink_table = format!("{}.sink", schema.name);
    for table in [&copy_table, &sink_table] {
        client
            .batch_execute(&format!("CREATE UNLOGGED TABLE {table} ({COLUMNS})"))
            .await?;
    }
    let events: Vec<Value> = (0..rows).map(|i| sample_event(i, 1000)).collect();
    let wit_events: Vec<Event> = events
        .iter()
        .enumerate()
        .map(|(i, e)| Event {
            key: e["entity_id"].as_str().map(|k| k.as_bytes().to_vec()),
            value: serde_json::to_vec(e).unwrap_or_default().into(),
            headers: Vec::new(),
            timestamp_ms: Some(1_764_400_000_000),
            origin: Some(Origin {
                topic: "in".into(),
                partition: (i % 3) as i32,
                offset: (i / 3) as i64,
            }),
            topic: None,
        })
        .collect();

    let runtime = Runtime::new(None, 256)?;
    let plugin = Arc::new(SinkPlugin::load_file(
        &runtime,
        "postgres-sink",
        &repo_path("plugins/dist/postgres-sink.wasm"),
    )?);
    let handle = tokio::runtime::Handle::current();
    let database = {
        let _guard = handle.enter();
        Arc::new(Database::new(
            "bench",
            &pg_url(),
            2,
            std::time::Duration::from_secs(60),
        )?)
    };
    let grants = Arc::new(Grants::new(
        "bench",
        BTreeMap::from([("bench".to_string(), Target::Postgres(database))]),
        BTreeSet::from(["bench".to_string()]),
        handle,
    ));
    let mut runner = SinkRunner::new(
        "bench",
        plugin,
        sink_config(&sink_table),
        Limits {
            timeout_ms: 10_000,
            memory_mb: 256,
        },
        grants,
        0,
    );

    let mut copy_rates = Vec::new();
    let mut sink_rates = Vec::new();
    for round in 0..rounds {
        for table in [&copy_table, &sink_table] {
            client.batch_execute(&format!("TRUNCATE {table}")).await?;
        }
        let started = Instant::now();
        plain_copy(&client, &copy_table, &events, batch).await?;
        let copy = rows as f64 / started.elapsed().as_secs_f64();

        let started = Instant::now();
        let (runner_back, failed) = tokio::task::spawn_blocking({
            let events = wit_events.clone();
            move || {
                let mut failed = 0;
                for chunk in events.chunks(batch) {
                    match runner.write(chunk) {
                        Ok(f) => failed += f.len(),
                        Err(e) => return Err(anyhow::anyhow!("database unavailable: {}", e.0)),
                    }
                }
                Ok((runner, failed))
            }
        })
        .await??;
        runner = runner_back;
        let sink = rows as f64 / started.elapsed().as_secs_f64();
        anyhow::ensure!(failed == 0, "{failed} rows failed");
        let written: i64 = client
            .query_one(&format!("SELECT count(*) FROM {sink_table}"), &[])
            .await?
            .get(0);
        anyhow::ensure!(written == rows as i64, "{written} of {rows} rows written");
        println!(
            "round {round}: plain COPY {copy:>9.0} rows/s   postgres-sink {sink:>9.0} rows/s   ratio {:.2}",
            sink / copy
        );
        copy_rates.push(copy);
        sink_rates.push(sink);
    }
    let copy = median(&mut copy_rates);
    let sink = median(&mut sink_rates);
    println!(
        "sink: {rows} rows × {rounds} rounds, batch {batch}: plain binary COPY {copy:.0} rows/s, \
         postgres-sink (wasm mapping + COPY + upsert) {sink:.0} rows/s, ratio {:.2}× (median of rounds)",
        sink / copy
    );
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// The baseline: the same rows, typed natively, by binary COPY in one
/// transaction per batch.
async fn plain_copy(
    client: &tokio_postgres::Client,
    table: &str,
    events: &[Value],
    batch: usize,
) -> anyhow::Result<()> {
    let types = [
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TIMESTAMPTZ,
        Type::TEXT,
        Type::JSONB,
        Type::TEXT,
        Type::INT8,
        Type::INT8,
    ];
    for (n, chunk) in events.chunks(batch).enumerate() {
        client.batch_execute("BEGIN").await?;
        let sink = client
            .copy_in(&format!("COPY {table} FROM STDIN BINARY"))
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &types);
        let mut writer = std::pin::pin!(writer);
        for (i, e) in chunk.iter().enumerate() {
            let at =
                UNIX_EPOCH + Duration::from_millis(e["occurred_at"].as_u64().unwrap_or_default());
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            let index = n * batch + i;
            let row: [&(dyn ToSql + Sync); 10] = [
                &text("event_id"),
                &text("type"),
                &text("source"),
                &text("entity_id"),
                &(at as SystemTime),
                &text("severity"),
                &e["attributes"],
                &e["trace_id"].as_str(),
                &((index % 3) as i64),
                &((index / 3) as i64),
            ];
            writer.as_mut().write(&row).await?;
        }
        writer.finish().await?;
        client.batch_execute("COMMIT").await?;
    }
    Ok(())
}
