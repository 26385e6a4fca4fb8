//! The web console in a real browser: `tests/browser/specs/console.spec.mjs`
//! in Debian's headless Chromium (Playwright) against `examples/pipeline` on
//! a real Kafka broker.
//!
//! The host runs the example's config as it ships (stage `clean`: filter →
//! redact → enrich) with the plugin store on and one change: its `enrich`
//! is a broken rule (`fixture-panic`, which fails every event containing
//! "panic"). This test posts events over HTTP for as long as the browser
//! runs and one poison event before it starts. In the browser the spec signs
//! in, checks the graph, watches the rates move, finds the dead letter with
//! its reason, pushes the real `enrich` through the console, redrives the
//! dead letter, pushes a second version and rolls it back, and previews
//! what the old rule would change, saving
//! screenshots of each view. Afterwards this test checks what the browser
//! cannot see: every accepted event that passes the filter is in the output,
//! none lost, and the poison event is there exactly once, enriched by the
//! fixed rule and stamped as redriven by the `admin` token.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use sluice::schema::SchemaSet;
use sluice_tests::pipeline::{event, post_events};
use sluice_tests::{
    Broker, Sluice, TempDir, browser, free_port, plugins_built, read_all, repo_path,
    resolve_config, topic_size, wait_until, with_custom_section,
};

/// The example's admin token.
const TOKEN: &str = "pipeline-example-token";
const POISON_ID: &str = "evt-poison";
/// Events per POST while the browser runs.
const PER_POST: usize = 20;

/// examples/pipeline/sluice.toml on `bootstrap`, listening on `port`, with
/// its plugins from `plugins` and the plugin store on.
fn config(bootstrap: &str, port: u16, plugins: &std::path::Path) -> anyhow::Result<String> {
    let example = std::fs::read_to_string(repo_path("examples/pipeline/sluice.toml"))?;
    let config = example
        .replace(
            "brokers = \"embedded\"",
            &format!("brokers = \"{bootstrap}\""),
        )
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("../../schemas", "{schemas}")
        .replace(
            "dir = \"../../plugins/dist\"",
            &format!("dir = \"{}\"\nstore = true", plugins.display()),
        );
    anyhow::ensure!(
        config.contains(bootstrap) && config.contains("store = true"),
        "examples/pipeline/sluice.toml changed shape: update tests/tests/console.rs"
    );
    Ok(resolve_config(&config))
}

fn poison() -> Value {
    let mut e = event(0);
    e["event_id"] = json!(POISON_ID);
    e["severity"] = json!("WARN");
    e["attributes"]["note"] = json!("please panic");
    e
}

/// Output records by event id: (value, `sluice-redriven-by`) per copy.
type Delivered = BTreeMap<String, Vec<(Value, Option<String>)>>;

fn delivered(bootstrap: &str) -> anyhow::Result<Delivered> {
    let mut schemas = SchemaSet::default();
    schemas.load(&repo_path("schemas/telemetry_event.avsc"))?;
    let mut out = Delivered::new();
    for record in read_all(bootstrap, "telemetry.clean", Duration::from_secs(60))? {
        let (_, json) = schemas.decode_to_json(&record.value)?;
        let value: Value = serde_json::from_slice(&json)?;
        let id = value["event_id"].as_str().context("event_id")?.to_string();
        out.entry(id)
            .or_default()
            .push((value, record.header("sluice-redriven-by")));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_shows_the_pipeline_and_redrives_a_dead_letter_in_a_browser()
-> anyhow::Result<()> {
    plugins_built(&["filter", "redact", "enrich", "fixture-panic"])?;
    let broker = Broker::shared();
    let bootstrap = broker.bootstrap();
    for topic in ["telemetry.events", "telemetry.clean"] {
        broker.create_topic(topic, 3)?;
    }
    broker.create_topic("telemetry.dlq", 1)?;
    let plugins = TempDir::new("console-plugins");
    for name in ["filter", "redact"] {
        std::fs::copy(
            repo_path(&format!("plugins/dist/{name}.wasm")),
            plugins.path().join(format!("{name}.wasm")),
        )?;
    }
    std::fs::copy(
        repo_path("plugins/dist/fixture-panic.wasm"),
        plugins.path().join("enrich.wasm"),
    )?;
    // The fixed rule under a second hash, for a rollback in the console.
    let fixed_v2 = plugins.path().join("enrich-v2.wasm.upload");
    std::fs::write(
        &fixed_v2,
        with_custom_section(
            std::fs::read(repo_path("plugins/dist/enrich.wasm"))?,
            "console-v2",
            8,
        ),
    )?;
    let port = free_port();
    let sluice = Sluice::start(&config(&bootstrap, port, plugins.path())?, port)?;
    let client = reqwest::Client::new();

    // The poison event is dead-lettered before the browser looks.
    post_events(&client, &sluice.url, &[poison()]).await?;
    wait_until(
        Duration::from_secs(60),
        "the poison event's dead letter",
        || topic_size(&bootstrap, "telemetry.dlq").ok() == Some(1),
    )
    .with_context(|| sluice.log())?;

    // Events flow for as long as the browser runs.
    let posting = Arc::new(AtomicBool::new(true));
    let poster = {
        let (client, url, posting) = (client.clone(), sluice.url.clone(), posting.clone());
        tokio::spawn(async move {
            let mut posted = Vec::new();
            let mut next = 1000;
            while posting.load(Ordering::Relaxed) {
                let events: Vec<Value> = (next..next + PER_POST).map(event).collect();
                next += PER_POST;
                post_events(&client, &url, &events).await?;
                posted.extend(events);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            anyhow::Ok(posted)
        })
    };
    // Screenshots of an earlier run must not pass for this one's.
    const VIEWS: [&str; 7] = [
        "graph",
        "rates",
        "dead-letters",
        "plugins",
        "redriven",
        "preview",
        "console",
    ];
    for view in VIEWS {
        let _ =
            std::fs::remove_file(browser::screenshots_dir().join(format!("console-{view}.png")));
    }
    let spec = tokio::task::spawn_blocking({
        let url = sluice.url.clone();
        move || {
            browser::run_specs(
                "console.spec.mjs",
                &[
                    ("SLUICE_URL", url),
                    ("SLUICE_TOKEN", TOKEN.to_string()),
                    ("SLUICE_POISON_ID", POISON_ID.to_string()),
                    (
                        "SLUICE_FIXED_PLUGIN",
                        repo_path("plugins/dist/enrich.wasm").display().to_string(),
                    ),
                    ("SLUICE_FIXED_PLUGIN_V2", fixed_v2.display().to_string()),
                ],
            )
        }
    })
    .await?;
    posting.store(false, Ordering::Relaxed);
    let posted = poster.await??;
    spec.with_context(|| sluice.log())?;
    for view in VIEWS {
        let png = browser::screenshots_dir().join(format!("console-{view}.png"));
        let bytes = std::fs::read(&png).with_context(|| png.display().to_string())?;
        assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", png.display());
        eprintln!("screenshot {}: {} bytes", png.display(), bytes.len());
    }

    // Everything accepted that passes the filter is delivered, none lost;
    // the poison event once, after the redrive, through the fixed rule.
    let expected: Vec<&str> = posted
        .iter()
        .filter(|e| e["severity"] != "DEBUG")
        .filter_map(|e| e["event_id"].as_str())
        .chain([POISON_ID])
        .collect();
    wait_until(
        Duration::from_secs(60),
        "every posted event in telemetry.clean",
        || topic_size(&bootstrap, "telemetry.clean").ok() >= Some(expected.len() as i64),
    )
    .with_context(|| sluice.log())?;
    let out = delivered(&bootstrap)?;
    let lost: Vec<&&str> = expected
        .iter()
        .filter(|id| !out.contains_key(**id))
        .collect();
    let duplicates = out.values().filter(|copies| copies.len() > 1).count();
    eprintln!(
        "posted={} expected={} delivered={} lost={} duplicates={duplicates}",
        posted.len() + 1,
        expected.len(),
        out.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
    let poison = &out[POISON_ID];
    assert_eq!(poison.len(), 1, "the poison event once: {poison:?}");
    let (value, redriven_by) = &poison[0];
    assert_eq!(
        redriven_by.as_deref(),
        Some("admin"),
        "redriven by the token's name"
    );
    assert_eq!(
        value["attributes"]["team"], "growth",
        "enriched by the fixed rule: {value}"
    );
    assert!(
        value["attributes"]["email"]
            .as_str()
            .is_some_and(|e| e.starts_with("sha256:")),
        "redacted: {value}"
    );
    Ok(())
}
