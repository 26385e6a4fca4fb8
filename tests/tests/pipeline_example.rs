//! examples/pipeline runs on the embedded broker: events POSTed to ingest
//! come out of stage `clean` (filter → redact → enrich) on telemetry.clean,
//! readable through the admin tail endpoint the README shows.

use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_tests::{Sluice, plugins_built, repo_path};

#[tokio::test(flavor = "multi_thread")]
async fn pipeline_example_cleans_events_on_the_embedded_broker() -> anyhow::Result<()> {
    plugins_built(&["filter", "redact", "enrich"])?;
    let sluice = Sluice::start_example("pipeline")?;
    let client = reqwest::Client::new();
    let events = std::fs::read_to_string(repo_path("examples/quickstart/events.ndjson"))?;
    let response = client
        .post(format!("{}/v1/events/batch", sluice.url))
        .header("content-type", "application/x-ndjson")
        .body(events.clone())
        .send()
        .await?;
    assert_eq!(response.status(), 202, "{}", sluice.log());
    let not_debug = events.lines().filter(|l| !l.contains("\"DEBUG\"")).count();

    let unauthorized = client
        .get(format!("{}/admin/topics/telemetry.clean/tail", sluice.url))
        .send()
        .await?;
    assert_eq!(unauthorized.status(), 401);

    let deadline = Instant::now() + Duration::from_secs(60);
    let records = loop {
        let records: Vec<Value> = client
            .get(format!(
                "{}/admin/topics/telemetry.clean/tail?limit=100",
                sluice.url
            ))
            .bearer_auth("pipeline-example-token")
            .send()
            .await?
            .json()
            .await?;
        if records.len() >= not_debug || Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(
        records.len(),
        not_debug,
        "DEBUG events are filtered out\n{}",
        sluice.log()
    );
    for record in &records {
        let value = &record["value"];
        assert_ne!(value["severity"], "DEBUG");
        let attributes = &value["attributes"];
        assert!(
            attributes["email"]
                .as_str()
                .is_some_and(|e| e.starts_with("sha256:")),
            "{value}"
        );
        assert!(
            attributes["ip"]
                .as_str()
                .is_some_and(|e| e.starts_with("sha256:")),
            "{value}"
        );
        assert_eq!(attributes["ua_family"], "Firefox");
        assert!(
            attributes["team"].is_string() && attributes["ingested_at"].is_string(),
            "{value}"
        );
    }
    // Lag is reported every 5 s, also while idle.
    let mut metrics = String::new();
    for _ in 0..20 {
        metrics = client
            .get(format!("{}/metrics", sluice.url))
            .send()
            .await?
            .text()
            .await?;
        if metrics.contains("sluice_stage_consumer_lag{") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let sample = |name: &str, labels: &[(&str, &str)]| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    for (plugin, outcome) in [
        ("", "in"),
        ("", "out"),
        ("filter", "in"),
        ("filter", "dropped"),
        ("redact", "modified"),
        ("enrich", "modified"),
    ] {
        let value = sample(
            "sluice_stage_events_total",
            &[("stage", "clean"), ("plugin", plugin), ("outcome", outcome)],
        );
        assert!(value > 0.0, "{plugin}/{outcome} is {value}:\n{metrics}");
    }
    for plugin in ["filter", "redact", "enrich"] {
        assert_eq!(
            sample(
                "sluice_plugin_active",
                &[("stage", "clean"), ("plugin", plugin)]
            ),
            1.0,
            "{plugin} version gauge:\n{metrics}"
        );
        assert!(
            sample("sluice_plugin_call_seconds_count", &[("plugin", plugin)]) > 0.0,
            "{plugin} call latency:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("sluice_stage_consumer_lag{"),
        "consumer lag per partition:\n{metrics}"
    );
    assert!(
        metrics.contains("sluice_stage_batch_seconds_count{stage="),
        "{metrics}"
    );
    // Ingest: requests by route and status, events by status, latency, queue.
    assert!(
        sample("sluice_ingest_requests_total", &[("status", "202")]) >= 1.0,
        "{metrics}"
    );
    assert!(
        sample("sluice_ingest_events_total", &[("status", "accepted")]) >= 20.0,
        "{metrics}"
    );
    assert!(
        sample("sluice_ingest_request_seconds_count", &[]) >= 1.0,
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_producer_queue_depth{producer=\"ingest\"}"),
        "{metrics}"
    );
    Ok(())
}
