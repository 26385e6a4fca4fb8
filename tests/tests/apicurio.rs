//! The external-registry client (`[schema_registry] url`) against a real
//! schema-registry server that is not Sluice: Apicurio Registry's
//! Confluent-compatible API (`scripts/install-apicurio.sh`; each test starts
//! a fresh, empty registry of its own), with a real Kafka broker and the
//! stock confluent-kafka clients (`scripts/install-python.sh`):
//!
//! * an ingest host with `auto_register` registers its schema in Apicurio,
//!   its records carry Apicurio's id, confluent-kafka's `AvroDeserializer`
//!   (reading the schema from Apicurio) decodes what was posted, and a host
//!   without `auto_register` looks the same id up;
//! * confluent-kafka's `AvroSerializer` registers a newer schema in
//!   Apicurio; a stage fetches it by id, decodes, and writes with its
//!   reader schema under the id Apicurio gave that;
//! * start-up fails with Apicurio's answer for an incompatible schema
//!   (`auto_register`) and for an unregistered one (lookup).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sluice::schema::LoadedSchema;
use sluice_tests::apicurio::Apicurio;
use sluice_tests::python::run_python;
use sluice_tests::{
    Broker, Sluice, TempDir, free_port, plugins_built, read_all, read_topic, repo_path,
    resolve_config, sample_event, sluice_bin, topic_size, unique, wait_until,
};

const CT: &str = "application/vnd.schemaregistry.v1+json";

fn telemetry() -> LoadedSchema {
    LoadedSchema::from_file(&repo_path("schemas/telemetry_event.avsc")).expect("schema")
}

/// Records of `topic` decoded by confluent-kafka's `AvroDeserializer` with
/// its `SchemaRegistryClient` pointed at `registry`, sorted by event id.
async fn stock_consume(
    bootstrap: &str,
    topic: &str,
    registry: &str,
    count: usize,
) -> anyhow::Result<Vec<Value>> {
    let (bootstrap, topic, registry) = (
        bootstrap.to_string(),
        topic.to_string(),
        registry.to_string(),
    );
    let lines = tokio::task::spawn_blocking(move || {
        run_python(
            "confluent_consume.py",
            &[&bootstrap, &topic, &registry, &count.to_string(), "60"],
        )
    })
    .await??;
    let mut got: Vec<Value> = lines
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    got.sort_by(|a, b| a["event_id"].as_str().cmp(&b["event_id"].as_str()));
    Ok(got)
}

/// `GET {registry}{path}` as JSON, failing on a non-2xx answer.
async fn get(client: &reqwest::Client, registry: &str, path: &str) -> anyhow::Result<Value> {
    let response = client.get(format!("{registry}{path}")).send().await?;
    let status = response.status();
    let body: Value = response.json().await?;
    anyhow::ensure!(status.is_success(), "GET {path}: {status} {body}");
    Ok(body)
}

/// `method {registry}{path}` with a JSON body; status and JSON answer.
async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    registry: &str,
    path: &str,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let response = client
        .request(method, format!("{registry}{path}"))
        .header("content-type", CT)
        .body(body.to_string())
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// Apicurio's id for `schema` under `subject` (`POST /subjects/{s}`).
async fn lookup_id(
    client: &reqwest::Client,
    registry: &str,
    subject: &str,
    schema: &str,
) -> anyhow::Result<u32> {
    let (status, answer) = send(
        client,
        reqwest::Method::POST,
        registry,
        &format!("/subjects/{subject}"),
        &json!({ "schema": schema }),
    )
    .await?;
    anyhow::ensure!(status == 200, "lookup under {subject}: {status} {answer}");
    Ok(answer["id"].as_u64().context("id")? as u32)
}

fn ingest_config(bootstrap: &str, port: u16, topic: &str, registry: &str, auto: bool) -> String {
    format!(
        r#"
[kafka]
brokers = "{bootstrap}"

[ingest]
listen = "127.0.0.1:{port}"
ack_timeout_ms = 5000

[[ingest.route]]
topic = "{topic}"
schema = "{{schemas}}/telemetry_event.avsc"
framing = "confluent"

[schema_registry]
url = "{registry}"
auto_register = {auto}
"#
    )
}

fn confluent_ids(records: &[sluice_tests::Consumed]) -> anyhow::Result<Vec<u32>> {
    records
        .iter()
        .map(|r| {
            anyhow::ensure!(r.value.first() == Some(&0), "magic byte");
            Ok(u32::from_be_bytes(r.value[1..5].try_into()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ingest_host_registers_in_apicurio_and_the_stock_deserializer_reads_it_back()
-> anyhow::Result<()> {
    let registry = Apicurio::start()?;
    let broker = Broker::shared();
    let bootstrap = broker.bootstrap();
    let topic = unique("apicurio-ingest");
    broker.create_topic(&topic, 3)?;
    let subject = format!("{topic}-value");
    let client = reqwest::Client::new();

    let port = free_port();
    let host = Sluice::start(
        &ingest_config(&bootstrap, port, &topic, &registry.url, true),
        port,
    )?;
    let events: Vec<Value> = (0..200).map(|i| sample_event(i, 10)).collect();
    let response = client
        .post(format!("{}/v1/events/batch", host.url))
        .json(&events)
        .send()
        .await?;
    assert_eq!(response.status(), 202, "{}", response.text().await?);

    // The host registered its schema in Apicurio under TopicNameStrategy.
    let subjects = get(&client, &registry.url, "/subjects").await?;
    assert!(
        subjects
            .as_array()
            .context("subjects")?
            .contains(&json!(subject)),
        "{subjects}"
    );
    let latest = get(
        &client,
        &registry.url,
        &format!("/subjects/{subject}/versions/latest"),
    )
    .await?;
    assert_eq!(latest["version"], 1, "{latest}");
    let id = latest["id"].as_u64().context("id")? as u32;
    let local = telemetry();
    assert_ne!(id, local.id, "the id is Apicurio's, not the built-in one");
    let stored = get(&client, &registry.url, &format!("/schemas/ids/{id}")).await?;
    // The route's schema as registered (its Parsing Canonical Form; Apicurio
    // answers it in a layout of its own, hence compared parsed).
    let stored = apache_avro::Schema::parse_str(stored["schema"].as_str().context("schema")?)?;
    let registered = apache_avro::Schema::parse_str(&local.canonical_form())?;
    assert_eq!(stored, registered, "Apicurio holds the route's schema");

    // Every record carries Apicurio's id...
    let records = tokio::task::spawn_blocking({
        let (bootstrap, topic) = (bootstrap.clone(), topic.clone());
        move || read_topic(&bootstrap, &topic, 200, Duration::from_secs(20))
    })
    .await??;
    assert_eq!(records.len(), 200);
    assert!(confluent_ids(&records)?.iter().all(|&i| i == id));
    // ...and the stock deserializer, reading the schema from Apicurio,
    // decodes what was posted.
    let got = stock_consume(&bootstrap, &topic, &registry.url, 200).await?;
    assert_eq!(got.len(), 200);
    assert_eq!(
        got, events,
        "AvroDeserializer via Apicurio decodes what was posted"
    );
    drop(host);

    // A host without auto_register looks the schema up (POST /subjects/{s})
    // and gets the same id.
    let port = free_port();
    let lookup = Sluice::start(
        &ingest_config(&bootstrap, port, &topic, &registry.url, false),
        port,
    )?;
    let more: Vec<Value> = (200..210).map(|i| sample_event(i, 10)).collect();
    let response = client
        .post(format!("{}/v1/events/batch", lookup.url))
        .json(&more)
        .send()
        .await?;
    assert_eq!(response.status(), 202, "{}", response.text().await?);
    let records = tokio::task::spawn_blocking({
        let (bootstrap, topic) = (bootstrap.clone(), topic.clone());
        move || read_topic(&bootstrap, &topic, 210, Duration::from_secs(20))
    })
    .await??;
    assert_eq!(records.len(), 210);
    assert!(confluent_ids(&records)?.iter().all(|&i| i == id));
    let versions = get(
        &client,
        &registry.url,
        &format!("/subjects/{subject}/versions"),
    )
    .await?;
    assert_eq!(versions, json!([1]), "the lookup registered nothing");
    println!(
        "apicurio: ingest auto_register -> id {id} under {subject}; 200 records decoded by \
         confluent-kafka AvroDeserializer via Apicurio; lookup host got the same id"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stage_fetches_a_newer_writer_schema_from_apicurio_and_writes_its_reader_schema()
-> anyhow::Result<()> {
    plugins_built(&["filter"])?;
    let registry = Apicurio::start()?;
    let broker = Broker::shared();
    let bootstrap = broker.bootstrap();
    let input = unique("apicurio-in");
    let output = unique("apicurio-out");
    broker.create_topic(&input, 3)?;
    broker.create_topic(&output, 3)?;
    let client = reqwest::Client::new();
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

[schema_registry]
url = "{registry}"
auto_register = true

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
        registry = registry.url,
        group = unique("apicurio-resolve"),
    );
    let host = Sluice::start(&config, port)?;
    // The stage's reader schema, registered at start-up under its output's
    // subject: the id its records must carry.
    let local = telemetry();
    let reader_id = lookup_id(
        &client,
        &registry.url,
        &format!("{output}-value"),
        &local.canonical_form(),
    )
    .await?;

    // A third-party producer registers a newer schema (adds `region`) in
    // Apicurio and writes with it.
    tokio::task::spawn_blocking({
        let (bootstrap, input, url) = (bootstrap.clone(), input.clone(), registry.url.clone());
        move || {
            run_python(
                "confluent_produce.py",
                &[
                    &bootstrap,
                    &input,
                    &url,
                    &repo_path("schemas/telemetry_event.avsc")
                        .display()
                        .to_string(),
                    "100",
                ],
            )
        }
    })
    .await??;
    let writer = get(
        &client,
        &registry.url,
        &format!("/subjects/{input}-value/versions/latest"),
    )
    .await?;
    let writer_id = writer["id"].as_u64().context("writer id")? as u32;
    assert!(
        writer["schema"].as_str().unwrap_or("").contains("region"),
        "{writer}"
    );
    assert_ne!(writer_id, reader_id);
    let inputs = read_all(&bootstrap, &input, Duration::from_secs(3))?;
    assert!(confluent_ids(&inputs)?.iter().all(|&i| i == writer_id));

    wait_until(Duration::from_secs(60), "the stage's output", || {
        topic_size(&bootstrap, &output).unwrap_or(0) >= 100
    })
    .with_context(|| host.log())?;
    let records = read_all(&bootstrap, &output, Duration::from_secs(3))?;
    assert_eq!(records.len(), 100);
    assert!(
        confluent_ids(&records)?.iter().all(|&i| i == reader_id),
        "written with the reader schema's Apicurio id {reader_id}"
    );
    // The stock deserializer reads the output through Apicurio: the reader
    // schema, without `region`.
    let values = stock_consume(&bootstrap, &output, &registry.url, 100).await?;
    assert_eq!(values.len(), 100);
    for (i, v) in values.iter().enumerate() {
        assert_eq!(v["event_id"], format!("py-{i:05}"));
        assert_eq!(v["attributes"]["seq"], i.to_string());
        assert_eq!(v["occurred_at"], 1_764_400_000_000i64 + i as i64);
        assert!(v.get("region").is_none(), "the reader schema has no region");
    }
    assert_eq!(
        topic_size(&bootstrap, &format!("{input}.dlq")).unwrap_or(0),
        0,
        "nothing dead-lettered"
    );
    println!(
        "apicurio: stage fetched writer schema {writer_id} (newer, with region) from Apicurio; \
         100 records written with reader schema id {reader_id}"
    );
    Ok(())
}

/// Run `sluice run` on `config` until it exits (at most 60 s); its status
/// and log.
fn run_to_exit(config: &str) -> anyhow::Result<(std::process::ExitStatus, String)> {
    let dir = TempDir::new("apicurio-startup");
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, resolve_config(config))?;
    let log_path = dir.path().join("sluice.log");
    let mut child = Command::new(sluice_bin())
        .args(["run", "-c"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path)?)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((status, std::fs::read_to_string(&log_path)?));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "sluice did not exit within 60 s:\n{}",
                std::fs::read_to_string(&log_path)?
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn start_up_fails_with_apicurios_answer_for_an_incompatible_or_unregistered_schema()
-> anyhow::Result<()> {
    let registry = Apicurio::start()?;
    let broker = Broker::shared();
    let bootstrap = broker.bootstrap();
    let client = reqwest::Client::new();

    // The subject already holds a version the route's schema cannot read
    // (event_id was a long; the new required fields have no defaults), and
    // BACKWARD compatibility is enforced for it (Apicurio's default is
    // NONE).
    let topic = unique("apicurio-incompatible");
    let subject = format!("{topic}-value");
    let old = json!({
        "type": "record", "name": "TelemetryEvent", "namespace": "dev.sluice",
        "fields": [{"name": "event_id", "type": "long"}]
    });
    let (status, answer) = send(
        &client,
        reqwest::Method::POST,
        &registry.url,
        &format!("/subjects/{subject}/versions"),
        &json!({ "schema": old.to_string() }),
    )
    .await?;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = send(
        &client,
        reqwest::Method::PUT,
        &registry.url,
        &format!("/config/{subject}"),
        &json!({ "compatibility": "BACKWARD" }),
    )
    .await?;
    assert_eq!(status, 200, "{answer}");

    let port = free_port();
    let (status, log) = run_to_exit(&ingest_config(
        &bootstrap,
        port,
        &topic,
        &registry.url,
        true,
    ))?;
    assert!(!status.success(), "start-up must fail: {log}");
    assert!(
        log.contains(&format!(
            "not compatible with the latest version of subject `{subject}`"
        )) && log.contains("is_compatible"),
        "the registry's answer is in the error:\n{log}"
    );
    let versions = get(
        &client,
        &registry.url,
        &format!("/subjects/{subject}/versions"),
    )
    .await?;
    assert_eq!(versions, json!([1]), "nothing was registered");

    // Without auto_register, a subject Apicurio does not have fails the
    // look-up with its 404.
    let topic = unique("apicurio-unregistered");
    let port = free_port();
    let (status, log) = run_to_exit(&ingest_config(
        &bootstrap,
        port,
        &topic,
        &registry.url,
        false,
    ))?;
    assert!(!status.success(), "start-up must fail: {log}");
    assert!(
        log.contains(&format!("is not registered under subject `{topic}-value`"))
            && log.contains("40401"),
        "Apicurio's 404 is in the error:\n{log}"
    );
    println!("apicurio: start-up failed with the registry's answer (incompatible; unregistered)");
    Ok(())
}
