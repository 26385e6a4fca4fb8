//! The HTTP contract of SPEC.md: status codes, JSON error bodies that name
//! the field, API keys, body limits, and "a rejected batch writes nothing".

use std::time::Duration;

use serde_json::{Value, json};
use sluice_tests::{Broker, Sluice, free_port, read_topic, repo_path, sample_event};

const TOPIC: &str = "telemetry.events";

struct Setup {
    broker: Broker,
    sluice: Sluice,
    client: reqwest::Client,
}

fn start(extra_ingest: &str) -> anyhow::Result<Setup> {
    let broker = Broker::start()?;
    broker.create_topic(TOPIC, 3)?;
    let port = free_port();
    let config = format!(
        r#"
[kafka]
brokers = "{}"

[ingest]
listen = "127.0.0.1:{port}"
{extra_ingest}

[[ingest.route]]
topic = "{TOPIC}"
schema = "{{schemas}}/telemetry_event.avsc"
"#,
        broker.bootstrap()
    );
    let sluice = Sluice::start(&config, port)?;
    Ok(Setup {
        broker,
        sluice,
        client: reqwest::Client::new(),
    })
}

impl Setup {
    async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> anyhow::Result<(u16, Value)> {
        let response = self
            .client
            .post(format!("{}{path}", self.sluice.url))
            .header("content-type", content_type)
            .header("x-api-key", "k1")
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    fn stored(&self, expected: usize) -> anyhow::Result<usize> {
        Ok(read_topic(
            &self.broker.bootstrap(),
            TOPIC,
            expected,
            Duration::from_secs(3),
        )?
        .len())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn status_codes_and_error_bodies() -> anyhow::Result<()> {
    let s = start("api_keys = [\"k1\", \"k2\"]\nmax_body_bytes = 1048576")?;

    let (status, body) = s
        .post(
            "/v1/events",
            "application/json",
            sample_event(1, 5).to_string(),
        )
        .await?;
    assert_eq!((status, &body), (202, &json!({"accepted": 1})));

    let mut missing = sample_event(2, 5);
    missing.as_object_mut().unwrap().remove("entity_id");
    let (status, body) = s
        .post("/v1/events", "application/json", missing.to_string())
        .await?;
    assert_eq!(status, 400);
    assert_eq!(body["field"], "entity_id", "{body}");
    assert_eq!(body["rejected"][0]["index"], 0);

    let mut wrong_type = sample_event(3, 5);
    wrong_type["attributes"]["region"] = json!(42);
    let (status, body) = s
        .post("/v1/events", "application/json", wrong_type.to_string())
        .await?;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("attributes.region")),
        "{body}"
    );

    let (status, body) = s
        .post("/v1/events", "application/json", "{\"event_id\": ")
        .await?;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("invalid JSON"),
        "{body}"
    );

    let (status, body) = s.post("/v1/events", "text/plain", "hello").await?;
    assert_eq!(status, 415);
    assert_eq!(body["error"], "unsupported_media_type");

    let one = sample_event(4, 5).to_string();
    let big = format!(
        "[{}]",
        vec![one.as_str(); 2 * 1024 * 1024 / one.len() + 1].join(",")
    );
    assert!(big.len() > 2 * 1024 * 1024, "a body over 2 MiB");
    let (status, body) = s.post("/v1/events/batch", "application/json", big).await?;
    assert_eq!(status, 413, "{body}");

    let unauthorized = s
        .client
        .post(format!("{}/v1/events", s.sluice.url))
        .header("content-type", "application/json")
        .body(sample_event(5, 5).to_string())
        .send()
        .await?;
    assert_eq!(unauthorized.status(), 401);
    let wrong_key = s
        .client
        .post(format!("{}/v1/events", s.sluice.url))
        .header("content-type", "application/json")
        .header("authorization", "Bearer nope")
        .body(sample_event(5, 5).to_string())
        .send()
        .await?;
    assert_eq!(wrong_key.status(), 401);

    // A batch with one bad event writes nothing and names index and field.
    let mut batch: Vec<Value> = (10..20).map(|i| sample_event(i, 5)).collect();
    batch[7]["severity"] = json!("LOUD");
    let (status, body) = s
        .post(
            "/v1/events/batch",
            "application/json",
            serde_json::to_vec(&batch)?,
        )
        .await?;
    assert_eq!(status, 400);
    assert_eq!(
        body["rejected"],
        json!([{"index": 7, "field": "severity", "reason": body["rejected"][0]["reason"]}])
    );
    assert_eq!(body["accepted"], 0);

    // NDJSON: the bad line is reported by its index.
    let ndjson = format!(
        "{}\nnot json\n{}\n",
        sample_event(30, 5),
        sample_event(31, 5)
    );
    let (status, body) = s
        .post("/v1/events/batch", "application/x-ndjson", ndjson)
        .await?;
    assert_eq!(
        (status, body["rejected"][0]["index"].as_i64()),
        (400, Some(1)),
        "{body}"
    );

    // Avro binary: a framed record is accepted on /v1/events.
    let schema =
        sluice::schema::LoadedSchema::from_file(&repo_path("schemas/telemetry_event.avsc"))?;
    let framed = schema
        .encode_json(&sample_event(40, 5))
        .map_err(anyhow::Error::msg)?;
    let (status, _) = s.post("/v1/events", "avro/binary", framed).await?;
    assert_eq!(status, 202);
    let (status, body) = s
        .post("/v1/events", "avro/binary", vec![0xC3, 0x01, 1, 2, 3])
        .await?;
    assert_eq!(status, 400, "{body}");

    // Exactly the two accepted single events reached Kafka.
    assert_eq!(tokio::task::spawn_blocking(move || s.stored(10)).await??, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn partial_mode_writes_the_valid_events() -> anyhow::Result<()> {
    let s = start("partial = true")?;
    let mut batch: Vec<Value> = (0..5).map(|i| sample_event(i, 5)).collect();
    batch[2]["occurred_at"] = json!("not a time");
    let (status, body) = s
        .post(
            "/v1/events/batch",
            "application/json",
            serde_json::to_vec(&batch)?,
        )
        .await?;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 4);
    assert_eq!(body["rejected"][0]["field"], "occurred_at");
    assert_eq!(tokio::task::spawn_blocking(move || s.stored(10)).await??, 4);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_readiness() -> anyhow::Result<()> {
    let s = start("")?;
    let health = s
        .client
        .get(format!("{}/healthz", s.sluice.url))
        .send()
        .await?;
    assert_eq!(health.status(), 200);
    let ready: Value = s
        .client
        .get(format!("{}/readyz", s.sluice.url))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["broker"], "reachable");
    Ok(())
}

/// `/metrics` on a fresh host, before any traffic, lists every metric name
/// that host/src/metrics.rs records (each described and registered at zero).
#[tokio::test(flavor = "multi_thread")]
async fn fresh_host_lists_every_metric() -> anyhow::Result<()> {
    let s = start("")?;
    let metrics = s
        .client
        .get(format!("{}/metrics", s.sluice.url))
        .send()
        .await?
        .text()
        .await?;
    let source = std::fs::read_to_string(repo_path("host/src/metrics.rs"))?;
    let mut names: Vec<&str> = source
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.starts_with("sluice_") && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        })
        .collect();
    names.sort();
    names.dedup();
    assert!(names.len() >= 19, "found only {names:?} in metrics.rs");
    let missing: Vec<_> = names
        .iter()
        .filter(|name| !metrics.contains(&format!("# TYPE {name} ")))
        .collect();
    println!(
        "{} metric names in metrics.rs, {} missing from a fresh host's /metrics",
        names.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "missing {missing:?} in:\n{metrics}");
    for line in metrics
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let value = line.rsplit(' ').next().unwrap_or_default();
        assert_eq!(
            value.parse::<f64>()?,
            0.0,
            "non-zero before any traffic: {line}"
        );
    }
    Ok(())
}
