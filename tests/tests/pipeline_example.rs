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
    let metrics = client
        .get(format!("{}/metrics", sluice.url))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("sluice_stage_events_total"),
        "stage metrics are exported"
    );
    Ok(())
}
