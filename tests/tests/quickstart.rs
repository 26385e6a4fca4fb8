//! The quickstart runs on the embedded broker with nothing installed:
//! 202 for a valid event, 400 naming a missing field, 413, 415.

use serde_json::Value;
use sluice_tests::{Sluice, repo_path};

#[tokio::test(flavor = "multi_thread")]
async fn quickstart_serves_on_the_embedded_broker() -> anyhow::Result<()> {
    let sluice = Sluice::start_example("quickstart")?;
    let client = reqwest::Client::new();
    let events = std::fs::read_to_string(repo_path("examples/quickstart/events.ndjson"))?;
    let first = events.lines().next().unwrap_or_default().to_string();

    let single = client
        .post(format!("{}/v1/events", sluice.url))
        .header("content-type", "application/json")
        .body(first.clone())
        .send()
        .await?;
    assert_eq!(single.status(), 202, "{}", sluice.log());

    let batch = client
        .post(format!("{}/v1/events/batch", sluice.url))
        .header("content-type", "application/x-ndjson")
        .body(events.clone())
        .send()
        .await?;
    assert_eq!(batch.status(), 202);
    let body: Value = batch.json().await?;
    assert_eq!(body["accepted"], events.lines().count());

    let missing = first.replace("\"source\": \"web\", ", "");
    let response = client
        .post(format!("{}/v1/events", sluice.url))
        .header("content-type", "application/json")
        .body(missing)
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await?;
    assert_eq!(body["field"], "source", "{body}");

    let response = client
        .post(format!("{}/v1/events/batch", sluice.url))
        .header("content-type", "application/x-ndjson")
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .await?;
    assert_eq!(response.status(), 413);

    let response = client
        .post(format!("{}/v1/events", sluice.url))
        .header("content-type", "application/xml")
        .body("<event/>")
        .send()
        .await?;
    assert_eq!(response.status(), 415);
    assert!(
        sluice.log().contains("in memory only"),
        "the embedded broker says data is in memory only"
    );
    Ok(())
}
