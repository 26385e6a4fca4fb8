//! The ecosystem's protocols against a real Kafka broker and stock
//! third-party clients (Python, from PyPI, installed by
//! `scripts/install-python.sh` into a cached venv):
//!
//! * compressed bodies (gzip, zstd, deflate) on `/v1/events`,
//!   `/v1/events/batch` and `/v1/logs`, and a decompression bomb → 413 with
//!   the host's RSS bounded;
//! * OTLP/HTTP logs from the OpenTelemetry Python SDK's exporter (1,000
//!   records), OTLP/JSON, and a malformed protobuf → 400 with nothing
//!   written;
//! * Confluent framing read back by confluent-kafka's `AvroDeserializer`
//!   through the host's built-in schema registry;
//! * records written by confluent-kafka's `AvroSerializer` with a newer,
//!   compatible schema the host has no file for, decoded by a stage through
//!   the registry and written with the stage's reader schema.
//!
//! Every test runs on the binary's shared broker with its own topics.

use std::io::Write as _;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use sluice::schema::SchemaSet;
use sluice_tests::python::run_python;
use sluice_tests::{
    Broker, Sluice, free_port, plugins_built, read_all, read_topic, repo_path, sample_event,
    topic_size, unique, wait_until,
};

fn schemas() -> SchemaSet {
    let mut set = SchemaSet::default();
    set.load(&repo_path("schemas/telemetry_event.avsc"))
        .expect("schema");
    set
}

/// Write `count` records to `topic` with confluent-kafka's `AvroSerializer`
/// and a newer telemetry schema (an added optional `region`) that it
/// registers at `registry` (`tests/python/confluent_produce.py`).
async fn produce_newer(
    bootstrap: String,
    topic: &str,
    registry: &str,
    count: usize,
) -> anyhow::Result<()> {
    let (topic, registry) = (topic.to_string(), registry.to_string());
    tokio::task::spawn_blocking(move || {
        run_python(
            "confluent_produce.py",
            &[
                &bootstrap,
                &topic,
                &registry,
                &repo_path("schemas/telemetry_event.avsc")
                    .display()
                    .to_string(),
                &count.to_string(),
            ],
        )
    })
    .await??;
    Ok(())
}

fn ingest_config(bootstrap: &str, port: u16, topic: &str, extra_route: &str) -> String {
    format!(
        r#"
[kafka]
brokers = "{bootstrap}"

[ingest]
listen = "127.0.0.1:{port}"
ack_timeout_ms = 5000
max_body_bytes = 1048576

[[ingest.route]]
topic = "{topic}"
schema = "{{schemas}}/telemetry_event.avsc"
{extra_route}
"#
    )
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// Resident set size of a process in KiB (`VmRSS`), and its peak (`VmHWM`).
fn rss_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

fn decoded(set: &SchemaSet, records: &[sluice_tests::Consumed]) -> Vec<Value> {
    let mut values: Vec<Value> = records
        .iter()
        .map(|r| set.decode_json(&r.value).expect("decodes"))
        .collect();
    values.sort_by(|a, b| a["event_id"].as_str().cmp(&b["event_id"].as_str()));
    values
}

#[tokio::test(flavor = "multi_thread")]
async fn compressed_bodies_on_every_route_and_a_bomb_gets_413() -> anyhow::Result<()> {
    let broker = Broker::shared();
    let topic = unique("compressed");
    broker.create_topic(&topic, 3)?;
    let port = free_port();
    let sluice = Sluice::start(
        &ingest_config(&broker.bootstrap(), port, &topic, "compression = \"zstd\""),
        port,
    )?;
    let client = reqwest::Client::new();
    let events: Vec<Value> = (0..30).map(|i| sample_event(i, 5)).collect();

    // /v1/events: gzip, zstd and deflate (zlib) bodies.
    for (i, (coding, body)) in [
        ("gzip", gzip(&serde_json::to_vec(&events[0])?)),
        ("zstd", zstd(&serde_json::to_vec(&events[1])?)),
        ("deflate", zlib(&serde_json::to_vec(&events[2])?)),
    ]
    .into_iter()
    .enumerate()
    {
        let response = client
            .post(format!("{}/v1/events", sluice.url))
            .header("content-type", "application/json")
            .header("content-encoding", coding)
            .body(body)
            .send()
            .await?;
        assert_eq!(
            response.status(),
            202,
            "{coding} event {i}: {}",
            response.text().await?
        );
    }
    // /v1/events/batch: a gzip JSON array and a zstd NDJSON body.
    let array = serde_json::to_vec(&events[3..15])?;
    let ndjson: String = events[15..30].iter().map(|e| format!("{e}\n")).collect();
    for (coding, content_type, body, n) in [
        ("gzip", "application/json", gzip(&array), 12),
        ("zstd", "application/x-ndjson", zstd(ndjson.as_bytes()), 15),
    ] {
        let response = client
            .post(format!("{}/v1/events/batch", sluice.url))
            .header("content-type", content_type)
            .header("content-encoding", coding)
            .body(body)
            .send()
            .await?;
        assert_eq!(
            response.status(),
            202,
            "{coding} batch: {}",
            response.text().await?
        );
        let body: Value = response.json().await?;
        assert_eq!(body["accepted"], n);
    }
    // /v1/logs: OTLP/JSON, gzip and zstd.
    for (coding, body) in [
        ("gzip", gzip(&otlp_json(0, 3))),
        ("zstd", zstd(&otlp_json(3, 3))),
    ] {
        let response = client
            .post(format!("{}/v1/logs", sluice.url))
            .header("content-type", "application/json")
            .header("content-encoding", coding)
            .body(body)
            .send()
            .await?;
        assert_eq!(
            response.status(),
            200,
            "{coding} logs: {}",
            response.text().await?
        );
        let body: Value = response.json().await?;
        assert!(body.get("partialSuccess").is_none(), "{body}");
    }
    // An unknown coding is 415, a corrupt body 400.
    let response = client
        .post(format!("{}/v1/events", sluice.url))
        .header("content-type", "application/json")
        .header("content-encoding", "br")
        .body("x")
        .send()
        .await?;
    assert_eq!(response.status(), 415);
    let response = client
        .post(format!("{}/v1/events", sluice.url))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(&b"\x1f\x8b\x08\x00garbage"[..])
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await?;
    assert!(
        body["message"].as_str().unwrap().contains("not valid gzip"),
        "{body}"
    );

    // The bombs: 1 GiB of zeros in ~32 KiB of zstd, 256 MiB of NDJSON-ish
    // text in ~770 KiB of gzip; the limit is 1 MiB decompressed.
    let pid = sluice.pid().context("sluice pid")?;
    let (before, _) = rss_kib(pid)?;
    let zstd_bomb = {
        let mut e = zstd::stream::Encoder::new(Vec::new(), 19)?;
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            e.write_all(&zeros)?;
        }
        e.finish()?
    };
    let gzip_bomb = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let line =
            b"{\"event_id\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}\n".repeat(1 << 14);
        let mut written = 0usize;
        while written < 256 << 20 {
            e.write_all(&line)?;
            written += line.len();
        }
        e.finish()?
    };
    for (coding, route, bomb) in [
        ("zstd", "/v1/events", &zstd_bomb),
        ("gzip", "/v1/events/batch", &gzip_bomb),
        ("zstd", "/v1/logs", &zstd_bomb),
    ] {
        let content_type = if route == "/v1/events/batch" {
            "application/x-ndjson"
        } else {
            "application/json"
        };
        let response = client
            .post(format!("{}{route}", sluice.url))
            .header("content-type", content_type)
            .header("content-encoding", coding)
            .body(bomb.clone())
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        assert_eq!(status, 413, "{coding} bomb on {route}: {text}");
        if route != "/v1/logs" {
            let body: Value = serde_json::from_str(&text)?;
            assert_eq!(body["error"], "body_too_large", "{body}");
        }
        eprintln!(
            "bomb {coding} on {route}: {} compressed bytes -> 413",
            bomb.len()
        );
    }
    let (after, peak) = rss_kib(pid)?;
    println!(
        "decompression bombs (1 GiB zstd, 256 MiB gzip; limit 1 MiB): host RSS before {} MiB, \
         after {} MiB, peak {} MiB",
        before / 1024,
        after / 1024,
        peak / 1024
    );
    assert!(
        peak < before + 64 * 1024,
        "RSS grew from {before} KiB to a peak of {peak} KiB"
    );

    // Everything accepted is in Kafka, nothing of the rejected requests.
    let bootstrap = broker.bootstrap();
    let want = 30 + 6;
    let records = tokio::task::spawn_blocking({
        let topic = topic.clone();
        move || read_topic(&bootstrap, &topic, want, Duration::from_secs(20))
    })
    .await??;
    assert_eq!(records.len(), want);
    let set = schemas();
    let values = decoded(&set, &records);
    let mut expected = events.clone();
    expected.sort_by(|a, b| a["event_id"].as_str().cmp(&b["event_id"].as_str()));
    let posted: Vec<&Value> = values
        .iter()
        .filter(|v| v["event_id"].as_str().unwrap().starts_with("evt-"))
        .collect();
    assert_eq!(posted.len(), 30);
    for (got, want) in posted.iter().zip(&expected) {
        assert_eq!(*got, want);
    }
    assert_eq!(values.iter().filter(|v| v["type"] == "log").count(), 6);
    assert_eq!(topic_size(&broker.bootstrap(), &topic)?, want as i64);
    Ok(())
}

/// OTLP/JSON for `n` log records numbered from `from`.
fn otlp_json(from: usize, n: usize) -> Vec<u8> {
    let records: Vec<Value> = (from..from + n)
        .map(|i| {
            json!({
                "timeUnixNano": (1_764_400_000_000_000_000u64 + i as u64 * 1_000_000).to_string(),
                "severityNumber": 13,
                "severityText": "WARN",
                "body": {"stringValue": format!("json log {i}")},
                "attributes": [
                    {"key": "entity.id", "value": {"stringValue": format!("device-{i}")}},
                    {"key": "attempt", "value": {"intValue": "3"}}
                ],
                "traceId": "5b8efff798038103d269b633813fc60c",
                "spanId": "eee19b7ec3c1b174"
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "edge"}}]},
            "scopeLogs": [{"scope": {"name": "edge.logger"}, "logRecords": records}]
        }]
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_logs_from_the_python_sdk_and_json_land_mapped() -> anyhow::Result<()> {
    let broker = Broker::shared();
    let topic = unique("otlp");
    broker.create_topic(&topic, 3)?;
    let port = free_port();
    let sluice = Sluice::start(&ingest_config(&broker.bootstrap(), port, &topic, ""), port)?;
    let client = reqwest::Client::new();

    // A malformed protobuf: 400 with a reason (google.rpc.Status), nothing
    // written.
    let response = client
        .post(format!("{}/v1/logs", sluice.url))
        .header("content-type", "application/x-protobuf")
        .body(&b"\x0a\xff\xff\xff\xff\x0f\x01"[..])
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    let status = response.bytes().await?;
    let message = String::from_utf8_lossy(&status);
    assert!(message.contains("ExportLogsServiceRequest"), "{message}");
    let response = client
        .post(format!("{}/v1/logs", sluice.url))
        .header("content-type", "application/json")
        .body("{\"resourceLogs\": [{\"scopeLogs\": 5}]}")
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await?;
    assert_eq!(body["code"], 3, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("OTLP/JSON"),
        "{body}"
    );
    assert_eq!(
        topic_size(&broker.bootstrap(), &topic)?,
        0,
        "nothing written"
    );

    // The OpenTelemetry Python SDK's OTLP/HTTP exporter: 1,000 records.
    let endpoint = format!("{}/v1/logs", sluice.url);
    tokio::task::spawn_blocking(move || run_python("otlp_logs.py", &[&endpoint, "1000"])).await??;
    // And OTLP/JSON.
    let response = client
        .post(format!("{}/v1/logs", sluice.url))
        .header("content-type", "application/json")
        .body(otlp_json(0, 5))
        .send()
        .await?;
    assert_eq!(response.status(), 200, "{}", response.text().await?);

    let bootstrap = broker.bootstrap();
    let records = tokio::task::spawn_blocking({
        let topic = topic.clone();
        move || read_all(&bootstrap, &topic, Duration::from_secs(5))
    })
    .await??;
    assert_eq!(records.len(), 1005, "every log record once");
    let set = schemas();
    let mut sdk = 0;
    let mut severities = std::collections::BTreeMap::new();
    for record in &records {
        let value = set.decode_json(&record.value)?;
        let key = String::from_utf8(record.key.clone().unwrap_or_default())?;
        assert_eq!(key, value["entity_id"], "the entity id is the key");
        assert_eq!(value["type"], "log");
        if value["source"] == "checkout" {
            sdk += 1;
            let body = value["attributes"]["body"].as_str().unwrap();
            let seq: usize = body
                .strip_prefix("order ")
                .and_then(|b| b.strip_suffix(" processed"))
                .unwrap()
                .parse()?;
            assert_eq!(value["entity_id"], format!("order-{}", seq % 25));
            assert_eq!(value["attributes"]["seq"], seq.to_string());
            assert_eq!(
                value["attributes"]["resource.deployment.environment"],
                "test"
            );
            assert_eq!(value["attributes"]["scope.name"], "shop.checkout");
            let want = ["DEBUG", "INFO", "WARN", "ERROR"][seq % 4];
            assert_eq!(value["severity"], want, "{value}");
            *severities.entry(want).or_insert(0) += 1;
            assert!(value["occurred_at"].as_i64().unwrap() > 1_700_000_000_000);
        } else {
            assert_eq!(value["source"], "edge");
            assert_eq!(value["severity"], "WARN");
            assert_eq!(value["trace_id"], "5b8efff798038103d269b633813fc60c");
            assert_eq!(value["attributes"]["span_id"], "eee19b7ec3c1b174");
            assert_eq!(value["attributes"]["attempt"], "3");
            assert!(value["entity_id"].as_str().unwrap().starts_with("device-"));
        }
    }
    assert_eq!(sdk, 1000);
    println!(
        "otlp: 1000 SDK log records (gzip protobuf) + 5 OTLP/JSON landed; severities {severities:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn confluent_framing_is_read_by_the_stock_deserializer_via_the_builtin_registry()
-> anyhow::Result<()> {
    let broker = Broker::shared();
    let topic = unique("confluent");
    broker.create_topic(&topic, 3)?;
    let port = free_port();
    let sluice = Sluice::start(
        &ingest_config(&broker.bootstrap(), port, &topic, "framing = \"confluent\""),
        port,
    )?;
    let client = reqwest::Client::new();
    let events: Vec<Value> = (0..200).map(|i| sample_event(i, 10)).collect();
    let response = client
        .post(format!("{}/v1/events/batch", sluice.url))
        .header("content-type", "application/json")
        .json(&events)
        .send()
        .await?;
    assert_eq!(response.status(), 202, "{}", response.text().await?);

    // The registry API a stock client needs.
    let subjects: Value = client
        .get(format!("{}/subjects", sluice.url))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(subjects, json!([format!("{topic}-value")]));
    let latest: Value = client
        .get(format!(
            "{}/subjects/{topic}-value/versions/latest",
            sluice.url
        ))
        .send()
        .await?
        .json()
        .await?;
    let id = latest["id"].as_u64().context("id")?;
    assert_eq!(latest["version"], 1);

    // Every record is in the Confluent wire format with that id.
    let bootstrap = broker.bootstrap();
    let records = tokio::task::spawn_blocking({
        let topic = topic.clone();
        move || read_topic(&bootstrap, &topic, 200, Duration::from_secs(20))
    })
    .await??;
    for r in &records {
        assert_eq!(r.value[0], 0, "magic byte");
        assert_eq!(u32::from_be_bytes(r.value[1..5].try_into()?) as u64, id);
    }
    // Sluice's own readers recognise it too.
    assert_eq!(decoded(&schemas(), &records).len(), 200);

    let lines = tokio::task::spawn_blocking({
        let (bootstrap, topic, url) = (broker.bootstrap(), topic.clone(), sluice.url.clone());
        move || {
            run_python(
                "confluent_consume.py",
                &[&bootstrap, &topic, &url, "200", "60"],
            )
        }
    })
    .await??;
    let mut got: Vec<Value> = lines
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    got.sort_by(|a, b| a["event_id"].as_str().cmp(&b["event_id"].as_str()));
    assert_eq!(got.len(), 200);
    assert_eq!(got, events, "AvroDeserializer decodes what was posted");
    println!(
        "confluent framing: 200 records decoded by confluent-kafka AvroDeserializer (schema id {id})"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_third_party_producers_newer_schema_is_resolved_by_a_stage() -> anyhow::Result<()> {
    plugins_built(&["filter"])?;
    let broker = Broker::shared();
    let input = unique("py-in");
    let output = unique("py-out");
    broker.create_topic(&input, 3)?;
    broker.create_topic(&output, 3)?;
    let port = free_port();
    let config = format!(
        r#"
schemas = "{{schemas}}"

[kafka]
brokers = "{bootstrap}"
[kafka.client]
"session.timeout.ms" = "8000"

[admin]
listen = "127.0.0.1:{port}"

[plugins]
dir = "{{plugins}}"

[[stage]]
name = "resolve"
input = "{input}"
output = "{output}"
group = "{group}"
chain = ["filter"]
batch_size = 50
batch_wait_ms = 20
framing = "confluent"
[stage.config.filter]
mode = "drop"
rules = [{{ field = "severity", op = "equals", value = "DEBUG" }}]
"#,
        bootstrap = broker.bootstrap(),
        group = unique("resolve"),
    );
    let sluice = Sluice::start(&config, port)?;
    produce_newer(broker.bootstrap(), &input, &sluice.url, 100).await?;
    let bootstrap = broker.bootstrap();
    let set = schemas();
    let reader = set.schemas().next().context("schema")?.clone();
    wait_until(Duration::from_secs(60), "the stage's output", || {
        topic_size(&bootstrap, &output).unwrap_or(0) >= 100
    })?;
    let records = read_all(&bootstrap, &output, Duration::from_secs(3))?;
    assert_eq!(records.len(), 100);
    let mut values = Vec::new();
    for r in &records {
        // Written with the stage's reader schema, in the stage's framing.
        assert_eq!(r.value[0], 0);
        assert_eq!(u32::from_be_bytes(r.value[1..5].try_into()?), reader.id);
        values.push(set.decode_json(&r.value)?);
    }
    values.sort_by(|a, b| a["event_id"].as_str().cmp(&b["event_id"].as_str()));
    for (i, v) in values.iter().enumerate() {
        assert_eq!(v["event_id"], format!("py-{i:05}"));
        assert_eq!(v["attributes"]["seq"], i.to_string());
        assert_eq!(v["occurred_at"], 1_764_400_000_000i64 + i as i64);
        assert!(v.get("region").is_none(), "the reader schema has no region");
    }
    let dead = topic_size(&bootstrap, &format!("{input}.dlq")).unwrap_or(0);
    assert_eq!(dead, 0, "nothing dead-lettered");
    println!(
        "third-party producer: 100 records with a registered newer schema decoded by the stage, \
         written with the reader schema (id {})",
        reader.id
    );
    Ok(())
}

/// A stage's `reader_schema` reads every record as that one schema: records
/// written with Sluice's own schema (single-object) and records a
/// third-party producer wrote with a newer schema (Confluent framing,
/// registered through the built-in registry) come out with the reader's id,
/// the older ones with the added field's default; a replay of the stage to
/// a topic reads and frames them the same way.
#[tokio::test(flavor = "multi_thread")]
async fn a_stage_reader_schema_reads_old_and_new_writers_as_one_schema() -> anyhow::Result<()> {
    plugins_built(&["filter"])?;
    let broker = Broker::shared();
    let (input, output, replayed) = (unique("rs-in"), unique("rs-out"), unique("rs-replayed"));
    for topic in [&input, &output, &replayed] {
        broker.create_topic(topic, 3)?;
    }
    let dir = sluice_tests::TempDir::new("reader-schema");
    let v2_path = dir.path().join("telemetry_v2.avsc");
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(repo_path(
        "schemas/telemetry_event.avsc",
    ))?)?;
    doc["fields"]
        .as_array_mut()
        .context("fields")?
        .push(json!({"name": "region", "type": ["null", "string"], "default": null}));
    std::fs::write(&v2_path, doc.to_string())?;
    let port = free_port();
    let config = sluice_tests::config_head(&broker.bootstrap(), port)
        + &format!(
            r#"
[[stage]]
name = "as-v2"
input = "{input}"
output = "{output}"
group = "{group}"
chain = ["filter"]
batch_size = 50
batch_wait_ms = 20
framing = "confluent"
reader_schema = "{v2}"
[stage.config.filter]
mode = "drop"
rules = [{{ field = "severity", op = "equals", value = "DEBUG" }}]
"#,
            group = unique("as-v2"),
            v2 = v2_path.display(),
        );
    let config_path = dir.path().join("sluice.toml");
    std::fs::write(&config_path, sluice_tests::resolve_config(&config))?;
    let sluice = Sluice::start(&config, port)?;
    let old: Vec<Value> = (0..50)
        .map(|i| {
            let mut event = sample_event(i, 5);
            event["severity"] = json!("INFO");
            event
        })
        .collect();
    sluice_tests::produce_events(&broker.bootstrap(), &input, &old).await?;
    produce_newer(broker.bootstrap(), &input, &sluice.url, 50).await?;
    let bootstrap = broker.bootstrap();
    let mut v2_set = SchemaSet::default();
    let v2 = v2_set.load(&v2_path)?;
    let check = |topic: &str| -> anyhow::Result<()> {
        wait_until(Duration::from_secs(90), topic, || {
            topic_size(&bootstrap, topic).unwrap_or(0) >= 100
        })?;
        let records = read_all(&bootstrap, topic, Duration::from_secs(3))?;
        assert_eq!(records.len(), 100, "{topic}");
        let mut old_seen = 0;
        let mut new_seen = 0;
        for r in &records {
            assert_eq!(r.value[0], 0, "Confluent framing, as the stage says");
            assert_eq!(
                u32::from_be_bytes(r.value[1..5].try_into()?),
                v2.id,
                "written with the reader schema"
            );
            let value = v2_set.decode_json(&r.value)?;
            let id = value["event_id"].as_str().unwrap_or_default();
            if let Some(seq) = id.strip_prefix("py-") {
                let i: usize = seq.parse()?;
                assert_eq!(value["region"], ["eu", "us"][i % 2], "{value}");
                new_seen += 1;
            } else {
                let i: usize = id.trim_start_matches("evt-").parse()?;
                let mut want = old[i].clone();
                want["region"] = Value::Null;
                assert_eq!(value, want, "the older record read as the newer schema");
                old_seen += 1;
            }
        }
        assert_eq!((old_seen, new_seen), (50, 50), "{topic}");
        Ok(())
    };
    check(&output)?;
    let dead = topic_size(&bootstrap, &format!("{input}.dlq")).unwrap_or(0);
    assert_eq!(dead, 0, "nothing dead-lettered");

    let replay = Command::new(sluice_tests::sluice_bin())
        .args(["replay", "-c"])
        .arg(&config_path)
        .args([
            "--topic",
            &input,
            "--from",
            "0",
            "--stage",
            "as-v2",
            "--out-topic",
            &replayed,
        ])
        .env("SLUICE_LOG", "warn")
        .output()?;
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    check(&replayed)?;
    println!(
        "reader_schema: 50 older and 50 newer records read as {} (id {}), by the stage and by its replay",
        v2_path.display(),
        v2.id
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_external_registry_outage_holds_the_batch_and_ids_come_from_it() -> anyhow::Result<()> {
    plugins_built(&["filter"])?;
    let broker = Broker::shared();
    let bootstrap = broker.bootstrap();
    let (input, output, events_topic) = (unique("ext-in"), unique("ext-out"), unique("ext-ev"));
    for topic in [&input, &output, &events_topic] {
        broker.create_topic(topic, 3)?;
    }
    // Host A only serves the built-in registry: the "external" registry of
    // the hosts below (a Confluent-compatible API over HTTP).
    // It knows the producer's newer schema from a file, as a durable
    // registry would after a restart (the built-in one keeps registrations
    // in memory only).
    let dir = sluice_tests::TempDir::new("newer-schema");
    let mut newer: Value = serde_json::from_str(&std::fs::read_to_string(repo_path(
        "schemas/telemetry_event.avsc",
    ))?)?;
    newer["fields"]
        .as_array_mut()
        .context("fields")?
        .push(json!({"name": "region", "type": ["null", "string"], "default": null}));
    std::fs::write(dir.path().join("newer.avsc"), newer.to_string())?;
    let registry_port = free_port();
    let registry_config = format!(
        "schemas = \"{}\"\n[kafka]\nbrokers = \"{bootstrap}\"\n[admin]\nlisten = \"127.0.0.1:{registry_port}\"\n",
        dir.path().display()
    );
    let mut registry = Sluice::start(&registry_config, registry_port)?;
    let registry_url = registry.url.clone();
    produce_newer(bootstrap.clone(), &input, &registry_url, 50).await?;
    // The registry goes away before the stage has seen the writer schema.
    registry.kill();

    let port = free_port();
    let stage_config = format!(
        r#"
schemas = "{{schemas}}"

[kafka]
brokers = "{bootstrap}"
[kafka.client]
"session.timeout.ms" = "8000"

[admin]
listen = "127.0.0.1:{port}"

[schema_registry]
url = "${{SLUICE_TEST_REGISTRY_URL:-{registry_url}}}"
timeout_ms = 1000

[plugins]
dir = "{{plugins}}"

[[stage]]
name = "ext"
input = "{input}"
output = "{output}"
group = "{group}"
chain = ["filter"]
batch_size = 50
batch_wait_ms = 20
[stage.config.filter]
mode = "drop"
rules = [{{ field = "severity", op = "equals", value = "DEBUG" }}]
"#,
        group = unique("ext"),
    );
    let host = Sluice::start(&stage_config, port)?;
    let client = reqwest::Client::new();
    let readyz = |client: reqwest::Client, url: String| async move {
        let response = client.get(format!("{url}/readyz")).send().await?;
        let status = response.status().as_u16();
        let body: Value = response.json().await?;
        anyhow::Ok((status, body))
    };
    let mut held = None;
    for _ in 0..30 {
        let (status, body) = readyz(client.clone(), host.url.clone()).await?;
        if status == 503 && body.get("schema_registry").is_some() {
            held = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let held = held.context("/readyz never reported the registry outage")?;
    println!("registry outage: /readyz 503 {}", held["schema_registry"]);
    assert_eq!(topic_size(&bootstrap, &output)?, 0, "the batch is held");

    // The registry returns (same port); the producer writes 50 more
    // records (ids derive from the schema: it gets the same id).
    let registry = Sluice::start(&registry_config, registry_port)?;
    produce_newer(bootstrap.clone(), &input, &registry_url, 50).await?;
    wait_until(
        Duration::from_secs(60),
        "the held batch and the rest",
        || topic_size(&bootstrap, &output).unwrap_or(0) >= 100,
    )?;
    let (status, body) = readyz(client.clone(), host.url.clone()).await?;
    assert_eq!(status, 200, "{body}");
    let records = read_all(&bootstrap, &output, Duration::from_secs(3))?;
    let set = schemas();
    let values = decoded(&set, &records);
    assert_eq!(values.len(), 100, "nothing lost, nothing dead-lettered");
    assert_eq!(
        topic_size(&bootstrap, &format!("{input}.dlq")).unwrap_or(0),
        0
    );

    // A host writing Confluent framing with auto_register takes its ids
    // from the registry.
    let port = free_port();
    let writer = Sluice::start(
        &format!(
            "{}\n[schema_registry]\nurl = \"{}\"\nauto_register = true\n",
            ingest_config(&bootstrap, port, &events_topic, "framing = \"confluent\""),
            registry.url
        ),
        port,
    )?;
    let events: Vec<Value> = (0..10).map(|i| sample_event(i, 3)).collect();
    let response = client
        .post(format!("{}/v1/events/batch", writer.url))
        .json(&events)
        .send()
        .await?;
    assert_eq!(response.status(), 202, "{}", response.text().await?);
    let latest: Value = client
        .get(format!(
            "{}/subjects/{events_topic}-value/versions/latest",
            registry.url
        ))
        .send()
        .await?
        .json()
        .await?;
    let id = latest["id"].as_u64().context("registered")? as u32;
    let records = tokio::task::spawn_blocking({
        let (bootstrap, topic) = (bootstrap.clone(), events_topic.clone());
        move || read_topic(&bootstrap, &topic, 10, Duration::from_secs(20))
    })
    .await??;
    for r in &records {
        assert_eq!(r.value[0], 0);
        assert_eq!(u32::from_be_bytes(r.value[1..5].try_into()?), id);
    }
    println!(
        "external registry: outage held the batch; 100 records after recovery; auto_register id {id}"
    );
    Ok(())
}
