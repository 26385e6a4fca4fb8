//! HTTP ingest against a real Kafka broker: everything POSTed comes back out
//! of Kafka, decoded with the documented framing, in per-entity order; a
//! broker outage yields 503s and never a 202 for an event it did not take.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice::schema::SchemaSet;
use sluice_tests::{Broker, Sluice, free_port, read_topic, repo_path, sample_event};

const TOPIC: &str = "telemetry.events";

fn config(bootstrap: &str, port: u16) -> String {
    format!(
        r#"
[kafka]
brokers = "{bootstrap}"

[ingest]
listen = "127.0.0.1:{port}"
ack_timeout_ms = 3000

[[ingest.route]]
topic = "{TOPIC}"
schema = "{{schemas}}/telemetry_event.avsc"
"#
    )
}

fn schemas() -> SchemaSet {
    let mut set = SchemaSet::default();
    set.load(&repo_path("schemas/telemetry_event.avsc"))
        .expect("schema");
    set
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_batched_events_round_trip_in_entity_order() -> anyhow::Result<()> {
    let broker = Broker::start()?;
    broker.create_topic(TOPIC, 3)?;
    let port = free_port();
    let sluice = Sluice::start(&config(&broker.bootstrap(), port), port)?;
    let client = reqwest::Client::new();

    let total = 10_000;
    let entities = 50;
    let events: Vec<Value> = (0..total).map(|i| sample_event(i, entities)).collect();
    for (n, chunk) in events.chunks(500).enumerate() {
        // Alternate JSON arrays and NDJSON so both batch formats are covered.
        let request = if n % 2 == 0 {
            client
                .post(format!("{}/v1/events/batch", sluice.url))
                .header("content-type", "application/json")
                .body(serde_json::to_vec(chunk)?)
        } else {
            let ndjson: String = chunk.iter().map(|e| format!("{e}\n")).collect();
            client
                .post(format!("{}/v1/events/batch", sluice.url))
                .header("content-type", "application/x-ndjson")
                .body(ndjson)
        };
        let response = request.send().await?;
        assert_eq!(response.status(), 202, "{}", response.text().await?);
        let body: Value = response.json().await?;
        assert_eq!(body["accepted"], chunk.len());
    }

    let records = tokio::task::spawn_blocking({
        let bootstrap = broker.bootstrap();
        move || read_topic(&bootstrap, TOPIC, total, Duration::from_secs(20))
    })
    .await??;
    assert_eq!(
        records.len(),
        total,
        "every accepted event is in Kafka exactly once"
    );

    let set = schemas();
    let mut received = BTreeMap::new();
    let mut partition_of: BTreeMap<String, i32> = BTreeMap::new();
    let mut last_seq: BTreeMap<String, i64> = BTreeMap::new();
    for record in &records {
        let value = set.decode_json(&record.value)?;
        let entity = value["entity_id"].as_str().unwrap_or_default().to_string();
        assert_eq!(
            record.key.as_deref(),
            Some(entity.as_bytes()),
            "key is the entity id"
        );
        let partition = *partition_of
            .entry(entity.clone())
            .or_insert(record.partition);
        assert_eq!(
            partition, record.partition,
            "{entity} stays in one partition"
        );
        let seq: i64 = value["attributes"]["seq"]
            .as_str()
            .unwrap_or("-1")
            .parse()?;
        let previous = last_seq.insert(entity.clone(), seq).unwrap_or(-1);
        assert!(
            seq > previous,
            "{entity}: event {seq} after {previous}: order broken"
        );
        received.insert(
            value["event_id"].as_str().unwrap_or_default().to_string(),
            value,
        );
    }
    for sent in &events {
        let id = sent["event_id"].as_str().unwrap_or_default();
        assert_eq!(
            received.get(id),
            Some(sent),
            "event {id} differs after the round trip"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_outage_answers_503_and_recovers_without_restart() -> anyhow::Result<()> {
    let mut broker = Broker::start()?;
    broker.create_topic(TOPIC, 3)?;
    let port = free_port();
    let sluice = Sluice::start(&config(&broker.bootstrap(), port), port)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()?;
    let mut accepted_ids = HashSet::new();
    let mut next = 0usize;

    let post = async |next: &mut usize| -> anyhow::Result<(u16, Option<String>, Vec<String>)> {
        let chunk: Vec<Value> = (*next..*next + 20).map(|i| sample_event(i, 10)).collect();
        *next += 20;
        let ids = chunk
            .iter()
            .map(|e| e["event_id"].as_str().unwrap_or_default().to_string())
            .collect();
        let response = client
            .post(format!("{}/v1/events/batch", sluice.url))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&chunk)?)
            .send()
            .await?;
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok((response.status().as_u16(), retry_after, ids))
    };

    let (status, _, ids) = post(&mut next).await?;
    assert_eq!(status, 202);
    accepted_ids.extend(ids);

    broker.stop();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut saw_503 = false;
    while Instant::now() < deadline && !saw_503 {
        let (status, retry_after, ids) = post(&mut next).await?;
        match status {
            202 => accepted_ids.extend(ids),
            503 => {
                assert!(retry_after.is_some(), "503 carries Retry-After");
                saw_503 = true;
            }
            other => panic!("unexpected status {other} while the broker is down"),
        }
    }
    assert!(saw_503, "ingest answered 503 while the broker was down");
    // Keep posting for a while: every answer must be 503 (never 202).
    for _ in 0..5 {
        let (status, _, _) = post(&mut next).await?;
        assert_eq!(status, 503, "no 202 while the broker is down");
    }

    broker.restart()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut recovered = false;
    while Instant::now() < deadline && !recovered {
        let (status, _, ids) = post(&mut next).await?;
        if status == 202 {
            accepted_ids.extend(ids);
            recovered = true;
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    assert!(
        recovered,
        "ingest accepted events again after the broker came back\n{}",
        sluice.log()
    );

    let records = tokio::task::spawn_blocking({
        let bootstrap = broker.bootstrap();
        let expected = accepted_ids.len();
        move || read_topic(&bootstrap, TOPIC, expected, Duration::from_secs(15))
    })
    .await??;
    let set = schemas();
    let stored: HashSet<String> = records
        .iter()
        .map(|r| {
            set.decode_json(&r.value)
                .map(|v| v["event_id"].as_str().unwrap_or_default().to_string())
        })
        .collect::<anyhow::Result<_>>()?;
    let lost: Vec<&String> = accepted_ids.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "events answered 202 but missing from Kafka: {lost:?}"
    );
    println!(
        "outage: accepted={} stored={} lost=0",
        accepted_ids.len(),
        stored.len()
    );
    Ok(())
}

/// A client that gives up waiting must not hide a delivery the broker never
/// acknowledged. Here the broker hangs (SIGSTOP) while a request waits for
/// its ack and the client hangs up after 300 ms. The host still sees the
/// records time out and replaces its producer (a fresh producer id, so no
/// idempotence state of the hung requests is carried over). After the
/// broker resumes, ingest accepts again.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_hanging_up_does_not_hide_an_unacknowledged_delivery() -> anyhow::Result<()> {
    let broker = Broker::start()?;
    broker.create_topic(TOPIC, 1)?;
    let port = free_port();
    let sluice = Sluice::start(&config(&broker.bootstrap(), port), port)?;
    let post = |client: &reqwest::Client, i: usize| {
        client
            .post(format!("{}/v1/events", sluice.url))
            .json(&sample_event(i, 10))
            .send()
    };
    let patient = reqwest::Client::new();
    assert_eq!(post(&patient, 0).await?.status(), 202);

    // Hang the broker with a request waiting for its ack; the client leaves.
    // If the host's health check noticed the hang first, the request gets a
    // 503 without producing anything: let the broker recover and try again.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()?;
    let mut hung_up = false;
    for attempt in 1..=5 {
        broker.pause()?;
        match post(&impatient, attempt).await {
            Err(e) if e.is_timeout() => {
                hung_up = true;
                break;
            }
            other => {
                println!("attempt {attempt}: {:?}", other.map(|r| r.status()));
                broker.resume()?;
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
        }
    }
    assert!(hung_up, "a request was left waiting for the hung broker");
    let log = || sluice.log();
    sluice_tests::wait_until(
        Duration::from_secs(15),
        "the host to give up on the acknowledgement and replace its producer",
        || log().contains("replacing the producer"),
    )
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", log()))?;
    broker.resume()?;

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        last = Some(post(&patient, 100).await?.status());
        if last == Some(reqwest::StatusCode::ACCEPTED) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let metrics = reqwest::get(format!("{}/metrics", sluice.url))
        .await?
        .text()
        .await?;
    let replaced = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sluice_producer_replaced_total{producer=\"ingest\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(replaced >= 1.0, "the replacement is counted:\n{metrics}");
    assert_eq!(
        last,
        Some(reqwest::StatusCode::ACCEPTED),
        "ingest accepts again once the broker resumes\n{}",
        log()
    );
    Ok(())
}
