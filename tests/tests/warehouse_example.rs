//! examples/warehouse runs on the embedded broker and the local PostgreSQL:
//! events POSTed to ingest become rows of `telemetry_events` (created by the
//! sink because the example asks for it), and posting them again leaves the
//! row count unchanged. The table lives in a schema of the test's own.

use std::time::Duration;

use sluice_tests::postgres::{PgSchema, connect, pg_url};
use sluice_tests::{Sluice, free_port, plugins_built, repo_path, wait_until};

#[tokio::test(flavor = "multi_thread")]
async fn warehouse_example_writes_posted_events_as_rows_once() -> anyhow::Result<()> {
    plugins_built(&["redact", "postgres-sink"])?;
    let schema = PgSchema::create("warehouse").await?;
    let port = free_port();
    // The example's URL, with the test's schema first on the search path.
    let url = format!("{}?options=-csearch_path%3D{}", pg_url(), schema.name);
    let config = std::fs::read_to_string(repo_path("examples/warehouse/sluice.toml"))?
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("../../schemas", "{schemas}")
        .replace("../../plugins/dist", "{plugins}")
        .replace(
            "${SLUICE_WAREHOUSE_URL:-postgres://postgres@127.0.0.1:5432/test}",
            &url,
        );
    assert!(config.contains(&url), "the example's URL line changed");
    let sluice = Sluice::start(&config, port)?;
    let events = std::fs::read_to_string(repo_path("examples/quickstart/events.ndjson"))?;
    let posted = events.lines().count() as i64;
    let client = reqwest::Client::new();
    let table = format!("{}.telemetry_events", schema.name);
    for round in 0..2 {
        let started = std::time::Instant::now();
        let response = client
            .post(format!("{}/v1/events/batch", sluice.url))
            .header("content-type", "application/x-ndjson")
            .body(events.clone())
            .send()
            .await?;
        assert_eq!(response.status(), 202, "{}", sluice.log());
        let db = connect().await?;
        let target = table.clone();
        let handle = tokio::runtime::Handle::current();
        let written = tokio::task::spawn_blocking(move || {
            wait_until(Duration::from_secs(90), "rows in telemetry_events", || {
                handle
                    .block_on(db.query_one(
                        &if round == 0 {
                            format!("SELECT count(*) FROM {target}")
                        } else {
                            // The second post is upserted over the first:
                            // every row now points at its newer record.
                            format!(
                                "SELECT count(*) FROM {target} t JOIN {target}_first f USING (event_id) \
                                 WHERE t.kafka_offset > f.kafka_offset"
                            )
                        },
                        &[],
                    ))
                    .map(|row| row.get::<_, i64>(0) == posted)
                    .unwrap_or(false)
            })
        })
        .await?;
        written.map_err(|e| anyhow::anyhow!("{e:#}\n{}", sluice.log()))?;
        println!("round {round}: {posted} rows after {:?}", started.elapsed());
        if round == 0 {
            connect()
                .await?
                .batch_execute(&format!(
                    "CREATE TABLE {table}_first AS SELECT event_id, kafka_offset FROM {table}"
                ))
                .await?;
        }
    }
    let db = connect().await?;
    let count: i64 = db
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await?
        .get(0);
    assert_eq!(count, posted, "posting twice upserts the same rows");
    let row = db
        .query_one(
            &format!(
                "SELECT entity_id, severity, attributes->>'email' FROM {table} WHERE event_id = 'qs-0000'"
            ),
            &[],
        )
        .await?;
    assert_eq!(row.get::<_, String>(0), "user-0");
    assert_eq!(row.get::<_, String>(1), "INFO");
    let email: Option<String> = row.get(2);
    assert!(
        email.as_deref().is_some_and(|e| e.starts_with("sha256:")),
        "email redacted before the sink: {email:?}"
    );
    Ok(())
}
