//! Sink stages against a real Kafka broker and the machine's PostgreSQL:
//! events become exactly one row each with the mapped values, redelivered
//! batches leave the row count unchanged, a database outage loses nothing,
//! an ungranted connection dead-letters the batch, and the NDJSON sink
//! rotates files in its granted directory.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use sluice_tests::postgres::{PgOutage, PgSchema, connect, pg_url};
use sluice_tests::{
    Broker, Sluice, TempDir, config_head, free_port, plugins_built, produce_events, read_topic,
    sample_event, wait_until,
};

/// The telemetry mapping of `examples/warehouse`, into `{table}`.
fn warehouse_config(bootstrap: &str, port: u16, table: &str, batch_size: usize) -> String {
    let head = config_head(bootstrap, port);
    format!(
        r#"{head}
[connections.warehouse]
type = "postgres"
url = "{url}"

[[stage]]
name = "warehouse"
input = "in"
sink = "postgres-sink"
connections = ["warehouse"]
dead_letter = "dlq"
batch_size = {batch_size}
batch_wait_ms = 50

[stage.config.postgres-sink]
connection = "warehouse"
table = "{table}"
key = ["event_id"]
create_table = true
columns = [
  {{ name = "event_id",        from = "event_id",    type = "text" }},
  {{ name = "type",            from = "type",        type = "text",      nullable = false }},
  {{ name = "source",          from = "source",      type = "text",      nullable = false }},
  {{ name = "entity_id",       from = "entity_id",   type = "text",      nullable = false }},
  {{ name = "occurred_at",     from = "occurred_at", type = "timestamp", nullable = false }},
  {{ name = "severity",        from = "severity",    type = "text",      nullable = false }},
  {{ name = "attributes",      from = "attributes",  type = "json" }},
  {{ name = "trace_id",        from = "trace_id",    type = "text" }},
  {{ name = "kafka_partition", from = "$partition",  type = "int" }},
  {{ name = "kafka_offset",    from = "$offset",     type = "int" }},
]
"#,
        url = pg_url()
    )
}

/// Every row of `table`, as the event JSON it should equal, by event id;
/// plus the (partition, offset) each came from.
async fn rows(table: &str) -> anyhow::Result<BTreeMap<String, (Value, (i64, i64))>> {
    let client = connect().await?;
    let rows = client
        .query(
            &format!(
                "SELECT event_id, type, source, entity_id, \
                 (extract(epoch from occurred_at) * 1000)::bigint, severity, attributes, \
                 trace_id, kafka_partition, kafka_offset FROM {table}"
            ),
            &[],
        )
        .await?;
    let mut out = BTreeMap::new();
    for row in rows {
        let id: String = row.get(0);
        let trace: Option<String> = row.get(7);
        let event = serde_json::json!({
            "event_id": id,
            "type": row.get::<_, String>(1),
            "source": row.get::<_, String>(2),
            "entity_id": row.get::<_, String>(3),
            "occurred_at": row.get::<_, i64>(4),
            "severity": row.get::<_, String>(5),
            "attributes": row.get::<_, Value>(6),
            "trace_id": trace,
        });
        out.insert(id, (event, (row.get(8), row.get(9))));
    }
    Ok(out)
}

async fn row_count(table: &str) -> anyhow::Result<i64> {
    Ok(connect()
        .await?
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await?
        .get(0))
}

/// Poll `SELECT count(*)` until it reaches `want` (tables may not exist yet).
async fn wait_for_rows(table: &str, want: i64, timeout: Duration) -> anyhow::Result<i64> {
    let deadline = Instant::now() + timeout;
    let mut last = 0;
    while Instant::now() < deadline {
        last = row_count(table).await.unwrap_or(0);
        if last >= want {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::bail!("timed out with {last} of {want} rows in {table}")
}

/// Sum of a Prometheus metric's samples (all label sets).
async fn metric(url: &str, name: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

fn assert_rows_match(rows: &BTreeMap<String, (Value, (i64, i64))>, inputs: &[Value]) {
    assert_eq!(rows.len(), inputs.len());
    let mut origins = BTreeSet::new();
    for input in inputs {
        let id = input["event_id"].as_str().unwrap_or_default();
        let (row, origin) = rows.get(id).unwrap_or_else(|| panic!("no row for {id}"));
        assert_eq!(row, input, "row {id}");
        assert!(origins.insert(*origin), "two rows from {origin:?}");
    }
}

/// Make the stage's group read `in` from the start again, as if the host had
/// crashed before committing anything.
fn rewind_group(bootstrap: &str, group: &str, partitions: i32) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    let mut offsets = TopicPartitionList::new();
    for p in 0..partitions {
        offsets.add_partition_offset("in", p, Offset::Offset(0))?;
    }
    consumer.assign(&offsets)?;
    consumer.commit(&offsets, CommitMode::Sync)?;
    let committed = consumer.committed_offsets(offsets, Duration::from_secs(10))?;
    for element in committed.elements() {
        anyhow::ensure!(
            element.offset() == Offset::Offset(0),
            "partition {} not rewound: {:?}",
            element.partition(),
            element.offset()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn events_become_one_row_each_even_when_redelivered() -> anyhow::Result<()> {
    plugins_built(&["postgres-sink"])?;
    let total = 50_000;
    let schema = PgSchema::create("rows").await?;
    let table = format!("{}.events", schema.name);
    let broker = Broker::start()?;
    broker.create_topic("in", 3)?;
    broker.create_topic("dlq", 1)?;
    let inputs: Vec<Value> = (0..total).map(|i| sample_event(i, 500)).collect();
    produce_events(&broker.bootstrap(), "in", &inputs).await?;

    let port = free_port();
    let config = warehouse_config(&broker.bootstrap(), port, &table, 2000);
    let mut sluice = Sluice::start(&config, port)?;
    let started = Instant::now();
    let count = wait_for_rows(&table, total as i64, Duration::from_secs(120)).await;
    let count = count.map_err(|e| anyhow::anyhow!("{e:#}\n{}", sluice.log()))?;
    println!(
        "sink: {count} rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_rows_match(&rows(&table).await?, &inputs);
    let status = sluice.terminate(Duration::from_secs(30))?;
    assert!(status.success(), "{}", sluice.log());

    // A crash before the commit: the group reads every batch again.
    let bootstrap = broker.bootstrap();
    tokio::task::spawn_blocking(move || rewind_group(&bootstrap, "sluice-warehouse", 3)).await??;
    let again = Sluice::start(&config, port)?;
    let url = again.url.clone();
    let mut rewritten = 0.0;
    wait_until(
        Duration::from_secs(120),
        "the redelivered batches to be written",
        || {
            rewritten =
                futures::executor::block_on(metric(&url, "sluice_sink_rows_total")).unwrap_or(0.0);
            rewritten >= total as f64
        },
    )
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", again.log()))?;
    assert_eq!(row_count(&table).await?, total as i64);
    assert_rows_match(&rows(&table).await?, &inputs);
    println!("redelivery: rows_written_again={rewritten} rows={total}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn database_outage_loses_nothing_and_the_stage_resumes() -> anyhow::Result<()> {
    plugins_built(&["postgres-sink"])?;
    let schema = PgSchema::create("outage").await?;
    let table = format!("{}.events", schema.name);
    let broker = Broker::start()?;
    broker.create_topic("in", 3)?;
    broker.create_topic("dlq", 1)?;
    let port = free_port();
    let sluice = Sluice::start(
        &warehouse_config(&broker.bootstrap(), port, &table, 500),
        port,
    )?;

    // A steady stream: 60 chunks of 500 events, one every 500 ms (30 s).
    let chunks = 60;
    let chunk = 500;
    let total = chunks * chunk;
    let inputs: Vec<Value> = (0..total).map(|i| sample_event(i, 300)).collect();
    let bootstrap = broker.bootstrap();
    let stream = inputs.clone();
    let producer = tokio::spawn(async move {
        for part in stream.chunks(chunk) {
            produce_events(&bootstrap, "in", part).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        anyhow::Ok(())
    });

    wait_for_rows(&table, 3000, Duration::from_secs(60))
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", sluice.log()))?;
    let lag_before = metric(&sluice.url, "sluice_stage_consumer_lag").await?;
    let mut outage = PgOutage::begin()?;
    let down = Instant::now();
    let mut lag_during = 0.0f64;
    while down.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        lag_during = lag_during.max(metric(&sluice.url, "sluice_stage_consumer_lag").await?);
    }
    let readyz_during = reqwest::get(format!("{}/readyz", sluice.url))
        .await?
        .text()
        .await?;
    outage.end()?;
    producer.await??;

    let count = wait_for_rows(&table, total as i64, Duration::from_secs(90))
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", sluice.log()))?;
    let rows = rows(&table).await?;
    let lost = inputs
        .iter()
        .filter(|e| !rows.contains_key(e["event_id"].as_str().unwrap_or_default()))
        .count();
    let url = sluice.url.clone();
    let mut lag_after = f64::MAX;
    wait_until(
        Duration::from_secs(30),
        "consumer lag to fall to zero",
        || {
            lag_after = futures::executor::block_on(metric(&url, "sluice_stage_consumer_lag"))
                .unwrap_or(f64::MAX);
            lag_after == 0.0
        },
    )?;
    println!(
        "db outage: produced={total} rows={count} lost={lost} lag_before={lag_before} lag_during_max={lag_during} lag_after={lag_after}"
    );
    assert_eq!(lost, 0);
    assert_eq!(count, total as i64, "one row per event, no duplicates");
    assert_rows_match(&rows, &inputs);
    assert!(
        lag_during > lag_before && lag_during >= 1000.0,
        "lag should rise while the database is down: before {lag_before}, during {lag_during}"
    );
    assert!(
        readyz_during.contains("unavailable"),
        "status should say why the stage is waiting: {readyz_during}"
    );
    assert!(
        sluice.log().contains("sink target reachable again"),
        "{}",
        sluice.log()
    );
    Ok(())
}

/// A database that accepts connections but never answers (here: a table
/// held under `ACCESS EXCLUSIVE` by another session) makes the write time out
/// after `query_timeout_ms`: the stage reports the database unavailable and
/// retries, and once the lock is gone every event is written once.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_does_not_answer_times_out_and_the_batch_is_retried() -> anyhow::Result<()>
{
    plugins_built(&["postgres-sink"])?;
    let schema = PgSchema::create("hang").await?;
    let table = format!("{}.events", schema.name);
    let broker = Broker::start()?;
    broker.create_topic("in", 1)?;
    broker.create_topic("dlq", 1)?;
    let port = free_port();
    let config = warehouse_config(&broker.bootstrap(), port, &table, 100).replace(
        "type = \"postgres\"\n",
        "type = \"postgres\"\nquery_timeout_ms = 1000\n",
    );
    let sluice = Sluice::start(&config, port)?;
    let inputs: Vec<Value> = (0..200).map(|i| sample_event(i, 50)).collect();
    produce_events(&broker.bootstrap(), "in", &inputs[..100]).await?;
    wait_for_rows(&table, 100, Duration::from_secs(60))
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", sluice.log()))?;

    let locker = connect().await?;
    locker
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
        ))
        .await?;
    produce_events(&broker.bootstrap(), "in", &inputs[100..]).await?;
    let url = sluice.url.clone();
    let mut readyz = String::new();
    wait_until(
        Duration::from_secs(30),
        "the stage to report the database unavailable",
        || {
            readyz = futures::executor::block_on(async {
                reqwest::get(format!("{url}/readyz")).await?.text().await
            })
            .unwrap_or_default();
            readyz.contains("query_timeout_ms")
        },
    )
    .map_err(|e| anyhow::anyhow!("{e:#}\n{readyz}\n{}", sluice.log()))?;
    let unavailable = metric(&sluice.url, "sluice_sink_unavailable_total").await?;
    locker.batch_execute("ROLLBACK").await?;

    let count = wait_for_rows(&table, 200, Duration::from_secs(60))
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", sluice.log()))?;
    let rows = rows(&table).await?;
    println!(
        "db hang: rows={count} sink_unavailable_total={unavailable} readyz during the hang: {readyz}"
    );
    assert_eq!(count, 200, "one row per event, no duplicates");
    assert_rows_match(&rows, &inputs);
    assert!(unavailable >= 1.0, "the timeout counts as unavailable");
    assert!(
        sluice.log().contains("sink target reachable again"),
        "{}",
        sluice.log()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ungranted_connection_dead_letters_the_batch() -> anyhow::Result<()> {
    plugins_built(&["fixture-sneaky-sink"])?;
    let broker = Broker::start()?;
    broker.create_topic("in", 1)?;
    broker.create_topic("dlq", 1)?;
    let files = TempDir::new("secrets");
    let inputs: Vec<Value> = (0..40).map(|i| sample_event(i, 10)).collect();
    produce_events(&broker.bootstrap(), "in", &inputs).await?;
    let port = free_port();
    let head = config_head(&broker.bootstrap(), port);
    let config = format!(
        r#"{head}
[connections.warehouse]
type = "postgres"
url = "{url}"
[connections.secrets]
type = "postgres"
url = "{url}"
[connections.exports]
type = "directory"
path = "{files}"

[[stage]]
name = "sneaky"
input = "in"
sink = "fixture-sneaky-sink"
connections = ["warehouse", "exports"]
dead_letter = "dlq"
batch_size = 10
retries = 0

[stage.config.fixture-sneaky-sink]
connection = "secrets"
"#,
        url = pg_url(),
        files = files.path().display(),
    );
    let sluice = Sluice::start(&config, port)?;
    let bootstrap = broker.bootstrap();
    let dead = tokio::task::spawn_blocking(move || {
        read_topic(&bootstrap, "dlq", 40, Duration::from_secs(60))
    })
    .await??;
    assert_eq!(dead.len(), 40, "{}", sluice.log());
    let mut offsets = BTreeSet::new();
    for record in &dead {
        assert_eq!(
            record.header("sluice-plugin").as_deref(),
            Some("fixture-sneaky-sink")
        );
        let error = record.header("sluice-error").unwrap_or_default();
        assert!(
            error.contains(
                "connection `secrets` is not granted to stage `sneaky` (granted: exports, warehouse)"
            ),
            "{error}"
        );
        offsets.insert(record.header("sluice-origin-offset").unwrap_or_default());
    }
    assert_eq!(offsets.len(), 40, "every event dead-lettered once");
    let ready = reqwest::get(format!("{}/readyz", sluice.url)).await?;
    assert_eq!(ready.status(), 200, "the host stays up");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn ndjson_sink_appends_every_event_and_rotates_files() -> anyhow::Result<()> {
    plugins_built(&["ndjson-sink"])?;
    let broker = Broker::start()?;
    broker.create_topic("in", 2)?;
    broker.create_topic("dlq", 1)?;
    let out = TempDir::new("ndjson");
    let total = 3000;
    let inputs: Vec<Value> = (0..total).map(|i| sample_event(i, 50)).collect();
    produce_events(&broker.bootstrap(), "in", &inputs).await?;
    let port = free_port();
    let head = config_head(&broker.bootstrap(), port);
    let config = format!(
        r#"{head}
[connections.archive]
type = "directory"
path = "{dir}"

[[stage]]
name = "archive"
input = "in"
sink = "ndjson-sink"
connections = ["archive"]
dead_letter = "dlq"
batch_size = 250

[stage.config.ndjson-sink]
file = "events/telemetry.ndjson"
max_bytes = 100000
"#,
        dir = out.path().display(),
    );
    let sluice = Sluice::start(&config, port)?;
    let events_dir = out.path().join("events");
    let read_lines = || -> Vec<Value> {
        let Ok(entries) = std::fs::read_dir(&events_dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .flat_map(|text| {
                text.lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect::<Vec<Value>>()
            })
            .collect()
    };
    wait_until(Duration::from_secs(60), "every event in the files", || {
        read_lines().len() >= total
    })
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", sluice.log()))?;
    let lines = read_lines();
    assert_eq!(lines.len(), total, "clean run: each event once");
    let mut want: Vec<&Value> = inputs.iter().collect();
    let mut got: Vec<&Value> = lines.iter().collect();
    want.sort_by_key(|e| e["event_id"].as_str().map(str::to_string));
    got.sort_by_key(|e| e["event_id"].as_str().map(str::to_string));
    assert_eq!(got, want);
    let files: Vec<String> = std::fs::read_dir(&events_dir)?
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().to_string()))
        .collect();
    assert!(
        files.iter().any(|f| f == "telemetry.1.ndjson") && files.len() > 3,
        "rotated at 100 kB: {files:?}"
    );
    for file in &files {
        let size = std::fs::metadata(events_dir.join(file))?.len();
        assert!(size <= 100_000, "{file} is {size} bytes");
    }
    Ok(())
}
