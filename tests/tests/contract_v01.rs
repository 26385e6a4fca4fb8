//! Components built against `sluice:plugin@0.1.0` keep working: the kept
//! 0.1 builds of `filter` and `ndjson-sink` (plugins/fixtures/v0.1) give
//! exactly the output of their 0.2 builds, in the host's chain, in a stage
//! (topic output and sink), in replay, and `sluice validate` names the
//! contract each component exports.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sluice::config::Limits;
use sluice::runtime::{Chain, Event, Link, Runtime, TransformPlugin};
use sluice::schema::SchemaSet;
use sluice_tests::pipeline::event;
use sluice_tests::{
    Broker, Sluice, TempDir, config_head, free_port, plugins_built, produce_events, read_all,
    repo_path, sluice_bin, wait_until,
};

const FILTER: &str =
    r#"{"mode":"drop","rules":[{"field":"severity","op":"in","value":["DEBUG","WARN"]}]}"#;

fn chain_of(runtime: &Runtime, plugin: &str) -> anyhow::Result<Chain> {
    let loaded = TransformPlugin::load_file(
        runtime,
        "filter",
        &repo_path(&format!("plugins/dist/{plugin}.wasm")),
    )?;
    let limits = Limits {
        timeout_ms: 5_000,
        memory_mb: 64,
    };
    Ok(Chain::new(
        "compat",
        vec![Link::new(Arc::new(loaded), FILTER.to_string(), limits)],
        0,
    ))
}

fn events(values: &[Vec<u8>]) -> Vec<Event> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| Event {
            key: Some(format!("k{i}").into_bytes()),
            value: v.clone().into(),
            headers: Vec::new(),
            timestamp_ms: Some(1_764_400_000_000 + i as i64),
            origin: None,
            topic: None,
        })
        .collect()
}

#[test]
fn the_01_filter_gives_the_output_of_its_02_build_in_the_chain() -> anyhow::Result<()> {
    plugins_built(&["filter", "filter-v0.1"])?;
    let runtime = Runtime::new(None, 64)?;
    let old = TransformPlugin::load_file(
        &runtime,
        "filter",
        &repo_path("plugins/dist/filter-v0.1.wasm"),
    )?;
    let new =
        TransformPlugin::load_file(&runtime, "filter", &repo_path("plugins/dist/filter.wasm"))?;
    assert_eq!(old.contract(), "0.1.0");
    assert_eq!(new.contract(), "0.2.0");

    let mut values: Vec<Vec<u8>> = (0..2_000)
        .map(|i| serde_json::to_vec(&event(i)))
        .collect::<Result<_, _>>()?;
    // Values reach plugins as valid JSON (the host decodes them from Avro
    // and checks what plugins return), but not always objects.
    values.push(b"[1,2]".to_vec());
    values.push(br#"{"severity":7}"#.to_vec());
    let (mut v1, mut v2) = (
        chain_of(&runtime, "filter-v0.1")?,
        chain_of(&runtime, "filter")?,
    );
    let mut kept = 0;
    for chunk in values.chunks(300) {
        let a = v1.run(events(chunk));
        let b = v2.run(events(chunk));
        let summary = |o: &sluice::runtime::ChainOutput| {
            o.items
                .iter()
                .map(|i| (i.source, i.changed, i.event.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(summary(&a), summary(&b));
        assert_eq!(a.dropped, b.dropped);
        let reasons = |o: &sluice::runtime::ChainOutput| {
            o.failures
                .iter()
                .map(|f| (f.source, f.error.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(reasons(&a), reasons(&b));
        kept += a.items.len();
    }
    // The independent computation: INFO and ERROR pass, and so do the array
    // and the event whose severity is a number (no DEBUG/WARN match).
    let expected = (0..2_000).filter(|i| !matches!(i % 4, 0 | 2)).count() + 2;
    assert_eq!(kept, expected);
    Ok(())
}

fn write_config(dir: &TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("sluice.toml");
    let text = sluice_tests::resolve_config(text);
    std::fs::write(&path, text).expect("writing the config");
    path
}

fn stage_config(bootstrap: &str, port: u16, dir: &Path) -> String {
    let mut config = config_head(bootstrap, port);
    config.push_str(&format!(
        r#"
[connections.v1files]
type = "directory"
path = "{v1}"

[connections.v2files]
type = "directory"
path = "{v2}"
"#,
        v1 = dir.join("v1").display(),
        v2 = dir.join("v2").display(),
    ));
    for (name, filter, output) in [
        ("old-chain", "filter-v0.1", r#"output = "out-v1""#),
        ("new-chain", "filter", r#"output = "out-v2""#),
        (
            "old-sink",
            "filter-v0.1",
            "sink = \"ndjson-sink-v0.1\"\nconnections = [\"v1files\"]",
        ),
        (
            "new-sink",
            "filter",
            "sink = \"ndjson-sink\"\nconnections = [\"v2files\"]",
        ),
    ] {
        config.push_str(&format!(
            r#"
[[stage]]
name = "{name}"
input = "in"
group = "compat-{name}"
chain = ["{filter}"]
{output}
dead_letter = "dlq"
batch_size = 200

[stage.config."{filter}"]
mode = "drop"
rules = [{{ field = "severity", op = "in", value = ["DEBUG", "WARN"] }}]
"#
        ));
        if output.contains("sink") {
            let sink = if filter == "filter" {
                "ndjson-sink"
            } else {
                "ndjson-sink-v0.1"
            };
            config.push_str(&format!(
                "\n[stage.config.\"{sink}\"]\nfile = \"events.ndjson\"\nenvelope = true\n"
            ));
        }
    }
    config
}

fn lines(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("events.ndjson")).unwrap_or_default();
    let mut lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    lines.sort_by_key(|l| (l["partition"].as_i64(), l["offset"].as_i64()));
    lines
}

fn by_id(
    set: &SchemaSet,
    records: &[sluice_tests::Consumed],
) -> anyhow::Result<BTreeMap<String, Value>> {
    records
        .iter()
        .map(|r| {
            let value = set.decode_json(&r.value)?;
            Ok((
                value["event_id"].as_str().unwrap_or_default().to_string(),
                value,
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_01_plugins_run_in_stages_and_replay_like_their_02_builds() -> anyhow::Result<()> {
    plugins_built(&["filter", "filter-v0.1", "ndjson-sink", "ndjson-sink-v0.1"])?;
    let broker = Broker::start()?;
    for (topic, partitions) in [("in", 3), ("out-v1", 3), ("out-v2", 3), ("dlq", 1)] {
        broker.create_topic(topic, partitions)?;
    }
    let total = 3_000;
    let inputs: Vec<Value> = (0..total).map(event).collect();
    produce_events(&broker.bootstrap(), "in", &inputs).await?;
    let expected = inputs
        .iter()
        .filter(|e| !matches!(e["severity"].as_str(), Some("DEBUG" | "WARN")))
        .count();

    let dir = TempDir::new("compat");
    let port = free_port();
    let config = write_config(&dir, &stage_config(&broker.bootstrap(), port, dir.path()));
    let validated = Command::new(sluice_bin())
        .args(["validate", "-c"])
        .arg(&config)
        .output()?;
    let said = String::from_utf8_lossy(&validated.stdout).into_owned();
    assert!(
        validated.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&validated.stderr)
    );
    assert!(
        said.contains("stage `old-chain`: plugin `filter-v0.1`")
            && said.contains("exports sluice:plugin@0.1.0 (transform)")
            && said.contains("plugin `ndjson-sink-v0.1`")
            && said.contains("exports sluice:plugin@0.1.0 (sink)")
            && said.contains("exports sluice:plugin@0.2.0 (transform)"),
        "{said}"
    );

    let text = std::fs::read_to_string(&config)?;
    let host = Sluice::start(&text, port)?;
    let bootstrap = broker.bootstrap();
    wait_until(Duration::from_secs(90), "every stage's output", || {
        let done =
            |topic| sluice_tests::topic_size(&bootstrap, topic).unwrap_or(0) >= expected as i64;
        done("out-v1")
            && done("out-v2")
            && lines(&dir.path().join("v1")).len() >= expected
            && lines(&dir.path().join("v2")).len() >= expected
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", host.log()))?;

    let set = sluice_tests_schemas();
    let old = by_id(
        &set,
        &read_all(&bootstrap, "out-v1", Duration::from_secs(10))?,
    )?;
    let new = by_id(
        &set,
        &read_all(&bootstrap, "out-v2", Duration::from_secs(10))?,
    )?;
    assert_eq!(old.len(), expected);
    assert_eq!(old, new, "topic outputs differ");
    let (old_lines, new_lines) = (lines(&dir.path().join("v1")), lines(&dir.path().join("v2")));
    assert_eq!(old_lines.len(), expected);
    assert_eq!(old_lines, new_lines, "sink files differ");
    drop(host);

    // Replay through each build to a file: the same lines.
    let replay = |chain: &str, out: &Path| {
        Command::new(sluice_bin())
            .args(["replay", "-c"])
            .arg(&config)
            .args(["--topic", "in", "--from", "0", "--chain", chain, "--out"])
            .arg(out)
            .env("SLUICE_LOG", "warn")
            .output()
    };
    let (a, b) = (
        dir.path().join("replay-v1.ndjson"),
        dir.path().join("replay-v2.ndjson"),
    );
    for (chain, out) in [("filter-v0.1", &a), ("filter", &b)] {
        let done = replay(chain, out)?;
        assert!(
            done.status.success(),
            "{}",
            String::from_utf8_lossy(&done.stderr)
        );
    }
    let read = |p: &Path| -> anyhow::Result<Vec<Value>> {
        let mut v: Vec<Value> = std::fs::read_to_string(p)?
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        v.sort_by_key(|l| (l["partition"].as_i64(), l["offset"].as_i64()));
        Ok(v)
    };
    let (ra, rb) = (read(&a)?, read(&b)?);
    assert_eq!(ra.len(), expected);
    // The lines name the plugin's version, which differs between builds.
    let strip = |v: Vec<Value>| -> Vec<Value> {
        v.into_iter()
            .map(|mut l| {
                l.as_object_mut().map(|o| o.remove("headers"));
                l
            })
            .collect()
    };
    assert_eq!(strip(ra), strip(rb), "replay outputs differ");
    Ok(())
}

fn sluice_tests_schemas() -> SchemaSet {
    let mut set = SchemaSet::default();
    set.load(&repo_path("schemas/telemetry_event.avsc"))
        .expect("schema");
    set
}
