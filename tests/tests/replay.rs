//! `sluice replay` against a real Kafka broker: a window chosen by timestamp,
//! duration or key returns exactly its events, in per-partition offset
//! order, equal to an independent computation of the chain; a live stage's
//! committed offsets are untouched; bad input is one line and exit code 2.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use sluice::replay::window::format_ms;
use sluice::schema::SchemaSet;
use sluice_tests::pipeline::{Names, event, expected, pipeline_config, pipeline_config_named};
use sluice_tests::{
    Broker, Sluice, TempDir, free_port, plugins_built, produce_events, produce_events_at, read_all,
    repo_path, sluice_bin, topic_size, wait_until,
};

const HOUR: i64 = 3_600_000;
const SPAN: usize = 10_000;

/// Write `config` (with the repository's schema and plugin dirs) to `dir`.
fn write_config(dir: &TempDir, config: &str) -> PathBuf {
    let path = dir.path().join("sluice.toml");
    let text = sluice_tests::resolve_config(config);
    std::fs::write(&path, text).expect("writing the config");
    path
}

/// Run `sluice replay -c CONFIG ARGS...` to completion.
fn replay(config: &Path, args: &[&str]) -> Output {
    Command::new(sluice_bin())
        .arg("replay")
        .arg("-c")
        .arg(config)
        .args(args)
        .env("SLUICE_LOG", "warn")
        .output()
        .expect("running sluice replay")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// One NDJSON output line.
struct Line {
    partition: i32,
    offset: i64,
    timestamp: i64,
    key: String,
    value: Value,
}

fn read_lines(path: &Path) -> anyhow::Result<Vec<Line>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line)?;
            Ok(Line {
                partition: v["partition"].as_i64().unwrap_or(-1) as i32,
                offset: v["offset"].as_i64().unwrap_or(-1),
                timestamp: v["timestamp"].as_i64().unwrap_or(-1),
                key: v["key"].as_str().unwrap_or_default().to_string(),
                value: v["value"].clone(),
            })
        })
        .collect()
}

/// The chain's output for `inputs` computed in the test, by event id.
fn expected_by_id<'a>(
    inputs: impl Iterator<Item = (&'a Value, i64)>,
) -> BTreeMap<String, (Value, i64)> {
    inputs
        .filter_map(|(input, ts)| {
            let id = input["event_id"].as_str()?.to_string();
            expected(input, ts).map(|out| (id, (out, ts)))
        })
        .collect()
}

/// Output lines equal `want` exactly (values and record timestamps), and
/// each partition's offsets ascend.
fn assert_output(lines: &[Line], want: &BTreeMap<String, (Value, i64)>, what: &str) {
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    let mut got = BTreeMap::new();
    for line in lines {
        let previous = last.insert(line.partition, line.offset).unwrap_or(-1);
        assert!(
            line.offset > previous,
            "{what}: partition {} offsets out of order ({previous} then {})",
            line.partition,
            line.offset
        );
        let id = line.value["event_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(
            line.key,
            line.value["entity_id"].as_str().unwrap_or_default(),
            "{what}: key"
        );
        assert!(
            got.insert(id.clone(), (line.value.clone(), line.timestamp))
                .is_none(),
            "{what}: {id} twice"
        );
    }
    assert_eq!(got.len(), want.len(), "{what}: number of events");
    for (id, want) in want {
        assert_eq!(got.get(id), Some(want), "{what}: event {id}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn windows_by_time_duration_and_key_equal_an_independent_chain() -> anyhow::Result<()> {
    plugins_built(&["filter", "redact", "enrich"])?;
    let broker = Broker::shared();
    let names = Names::unique("window");
    let replayed = format!("{}.replayed", names.input);
    broker.create_topic(&names.input, 3)?;
    broker.create_topic(&replayed, 3)?;
    // Three spans of 10k events, one hour apart, ending an hour ago.
    let base = sluice::replay::window::now_ms() / 1000 * 1000 - 3 * HOUR;
    let inputs: Vec<Value> = (0..3 * SPAN).map(event).collect();
    let stamps: Vec<i64> = (0..3 * SPAN)
        .map(|i| base + (i / SPAN) as i64 * HOUR + (i % SPAN) as i64)
        .collect();
    produce_events_at(&broker.bootstrap(), &names.input, &inputs, Some(&stamps)).await?;

    let dir = TempDir::new("replay");
    let config = write_config(
        &dir,
        &pipeline_config_named(&broker.bootstrap(), free_port(), 500, &names),
    );
    let middle = expected_by_id(
        inputs
            .iter()
            .zip(stamps.iter().copied())
            .skip(SPAN)
            .take(SPAN),
    );
    assert_eq!(middle.len(), SPAN * 3 / 4, "the filter drops every DEBUG");

    // The middle span by RFC 3339 timestamps.
    let out = dir.path().join("middle.ndjson");
    let from = format_ms(base + HOUR);
    let to = format_ms(base + 2 * HOUR);
    let result = replay(
        &config,
        &[
            "--topic",
            &names.input,
            "--from",
            &from,
            "--to",
            &to,
            "--stage",
            "clean",
            "--out",
            out.to_str().unwrap_or_default(),
        ],
    );
    let summary = stderr(&result);
    assert!(result.status.success(), "{summary}");
    assert!(
        summary.contains(&format!(
            "read {SPAN}, kept {}, dropped {}, failed 0",
            SPAN * 3 / 4,
            SPAN / 4
        )),
        "{summary}"
    );
    assert_output(&read_lines(&out)?, &middle, "timestamps");

    // The same span as an Avro container file, `--chain` with `--stage`'s
    // plugin configs.
    let out = dir.path().join("middle.avro");
    let result = replay(
        &config,
        &[
            "--topic",
            &names.input,
            "--from",
            &from,
            "--to",
            &to,
            "--stage",
            "clean",
            "--chain",
            "filter,redact,enrich",
            "--format",
            "avro",
            "--out",
            out.to_str().unwrap_or_default(),
        ],
    );
    assert!(result.status.success(), "{}", stderr(&result));
    let reader = apache_avro::Reader::new(std::fs::File::open(&out)?)?;
    let mut from_avro = BTreeMap::new();
    for value in reader {
        let json = sluice::schema::avro_to_json(&value?)?;
        let id = json["event_id"].as_str().unwrap_or_default().to_string();
        from_avro.insert(id, json);
    }
    let middle_values: BTreeMap<String, Value> = middle
        .iter()
        .map(|(id, (value, _))| (id.clone(), value.clone()))
        .collect();
    assert_eq!(
        from_avro, middle_values,
        "the Avro file holds the same events"
    );

    // The same span by durations back from now.
    let out = dir.path().join("durations.ndjson");
    let result = replay(
        &config,
        &[
            "--topic",
            &names.input,
            "--from",
            "150m",
            "--to",
            "90m",
            "--stage",
            "clean",
            "--out",
            out.to_str().unwrap_or_default(),
        ],
    );
    assert!(result.status.success(), "{}", stderr(&result));
    assert_output(&read_lines(&out)?, &middle, "durations");

    // After the last record: an empty window, not the whole topic (Kafka
    // answers such a time lookup with -1, the end).
    let result = replay(
        &config,
        &["--topic", &names.input, "--from", "30m", "--stage", "clean"],
    );
    let summary = stderr(&result);
    assert!(result.status.success(), "{summary}");
    assert!(summary.contains("read 0, kept 0"), "{summary}");
    assert!(result.stdout.is_empty(), "nothing on stdout");

    // One entity over all of history: only its partition is read.
    let entity = "user-5";
    let all = read_all(&broker.bootstrap(), &names.input, Duration::from_secs(60))?;
    let home: BTreeSet<i32> = all
        .iter()
        .filter(|r| r.key.as_deref() == Some(entity.as_bytes()))
        .map(|r| r.partition)
        .collect();
    assert_eq!(home.len(), 1, "one key, one partition");
    let out = dir.path().join("key.ndjson");
    let result = replay(
        &config,
        &[
            "--topic",
            &names.input,
            "--from",
            "0",
            "--key",
            entity,
            "--stage",
            "clean",
            "--out",
            out.to_str().unwrap_or_default(),
        ],
    );
    let summary = stderr(&result);
    assert!(result.status.success(), "{summary}");
    let partition_lines: Vec<&str> = summary
        .lines()
        .filter(|l| l.trim_start().starts_with("partition "))
        .collect();
    assert_eq!(partition_lines.len(), 1, "{summary}");
    let home = home.into_iter().next().unwrap_or(-1);
    assert!(
        partition_lines[0].contains(&format!("partition {home}:")),
        "{summary}"
    );
    let lines = read_lines(&out)?;
    let want = expected_by_id(
        inputs
            .iter()
            .zip(stamps.iter().copied())
            .filter(|(e, _)| e["entity_id"] == entity),
    );
    assert!(!want.is_empty());
    assert_output(&lines, &want, "key");
    let seqs: Vec<i64> = lines
        .iter()
        .map(|l| {
            l.value["attributes"]["seq"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(-1)
        })
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "the entity's events in order"
    );

    // The middle span to a topic, framed like a stage's output.
    let result = replay(
        &config,
        &[
            "--topic",
            &names.input,
            "--from",
            &from,
            "--to",
            &to,
            "--stage",
            "clean",
            "--out-topic",
            &replayed,
        ],
    );
    assert!(result.status.success(), "{}", stderr(&result));
    let records = read_all(&broker.bootstrap(), &replayed, Duration::from_secs(60))?;
    let mut set = SchemaSet::default();
    set.load(&repo_path("schemas/telemetry_event.avsc"))?;
    let mut got = BTreeMap::new();
    for record in &records {
        let value = set.decode_json(&record.value)?;
        assert!(
            record
                .header("sluice-plugins")
                .is_some_and(|h| h.contains("filter@") && h.contains("enrich@"))
        );
        let id = value["event_id"].as_str().unwrap_or_default().to_string();
        got.insert(id, (value, record.timestamp.unwrap_or_default()));
    }
    assert_eq!(got, middle, "--out-topic equals the independent chain");
    Ok(())
}

/// The group's committed offsets for `topic`'s partitions.
fn committed(bootstrap: &str, group: &str, topic: &str) -> anyhow::Result<Vec<(i32, Offset)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition(topic, p);
    }
    let offsets = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok(offsets
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_leaves_a_live_stage_and_its_offsets_alone() -> anyhow::Result<()> {
    plugins_built(&["filter", "redact", "enrich"])?;
    let broker = Broker::shared();
    let names = Names::unique("live");
    names.create(&broker, 3)?;
    let total = 4_000;
    let inputs: Vec<Value> = (0..total).map(event).collect();
    produce_events(&broker.bootstrap(), &names.input, &inputs).await?;
    let port = free_port();
    let config_text = pipeline_config_named(&broker.bootstrap(), port, 200, &names);
    let sluice = Sluice::start(&config_text, port)?;
    let kept = (total * 3 / 4) as i64;
    let bootstrap = broker.bootstrap();
    let highs: Vec<(i32, Offset)> = {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()?;
        (0..3)
            .map(|p| {
                consumer
                    .fetch_watermarks(&names.input, p, Duration::from_secs(10))
                    .map(|(_, high)| (p, Offset::Offset(high)))
            })
            .collect::<Result<_, _>>()?
    };
    wait_until(
        Duration::from_secs(120),
        "the stage to process and commit everything",
        || {
            topic_size(&bootstrap, &names.output).is_ok_and(|n| n >= kept)
                && committed(&bootstrap, &names.group, &names.input).is_ok_and(|c| c == highs)
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}\n{}", sluice.log()))?;

    let dir = TempDir::new("replay-live");
    let config = write_config(&dir, &config_text);
    let out = dir.path().join("all.ndjson");
    let result = replay(
        &config,
        &[
            "--topic",
            &names.input,
            "--from",
            "0",
            "--stage",
            "clean",
            "--out",
            out.to_str().unwrap_or_default(),
        ],
    );
    assert!(result.status.success(), "{}", stderr(&result));
    assert_eq!(read_lines(&out)?.len() as i64, kept);
    assert_eq!(
        committed(&bootstrap, &names.group, &names.input)?,
        highs,
        "the live group's committed offsets did not move"
    );
    let replay_group = committed(&bootstrap, "sluice-replay-unused", &names.input)?;
    assert!(
        replay_group
            .iter()
            .all(|(_, o)| matches!(o, Offset::Invalid)),
        "replay committed nothing: {replay_group:?}"
    );

    // The stage still owns its partitions: new input still flows through it.
    let more: Vec<Value> = (total..total + 400).map(event).collect();
    produce_events(&bootstrap, &names.input, &more).await?;
    wait_until(
        Duration::from_secs(60),
        "the stage to keep consuming",
        || topic_size(&bootstrap, &names.output).is_ok_and(|n| n >= kept + 300),
    )
    .map_err(|e| anyhow::anyhow!("{e}\n{}", sluice.log()))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_one_line_and_exit_code_2() -> anyhow::Result<()> {
    plugins_built(&["filter", "redact", "enrich"])?;
    // Topic `in` and stage `clean` (no host runs it) are this test's alone.
    let broker = Broker::shared();
    broker.create_topic("in", 3)?;
    let inputs: Vec<Value> = (0..300).map(event).collect();
    produce_events(&broker.bootstrap(), "in", &inputs).await?;
    let dir = TempDir::new("replay-bad");
    let config = write_config(
        &dir,
        &pipeline_config(&broker.bootstrap(), free_port(), 100),
    );
    let cases: [(&[&str], &str); 6] = [
        (
            &["--topic", "nope", "--from", "0", "--stage", "clean"],
            "topic `nope` does not exist",
        ),
        (
            &[
                "--topic",
                "in",
                "--from",
                "2025-11-29T10:00:00Z",
                "--to",
                "2025-11-29T09:00:00Z",
                "--stage",
                "clean",
            ],
            "--from is after --to",
        ),
        (
            &[
                "--topic", "in", "--from", "200", "--to", "100", "--stage", "clean",
            ],
            "--from is after --to",
        ),
        (
            &["--topic", "in", "--from", "yesterday", "--stage", "clean"],
            "--from `yesterday` is not an offset",
        ),
        (
            &["--topic", "in", "--from", "0", "--chain", "filter,nosuch"],
            "plugin `nosuch` not found",
        ),
        (
            &[
                "--topic",
                "in",
                "--from",
                "0",
                "--stage",
                "clean",
                "--plugin-version",
                "filter=000000000000",
            ],
            "plugin `filter` version 000000000000 is not available",
        ),
    ];
    for (args, message) in cases {
        let result = replay(&config, args);
        let text = stderr(&result);
        assert_eq!(result.status.code(), Some(2), "{args:?}: {text}");
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line, got:\n{text}");
        assert!(lines[0].starts_with("error: "), "{args:?}: {text}");
        assert!(lines[0].contains(message), "{args:?}: {text}");
        assert!(
            !text.contains("panicked") && !text.to_lowercase().contains("backtrace"),
            "{text}"
        );
    }

    // --diff: the same window through another version of a plugin; only
    // the events whose outcome differs are written. Here "fixture-panic"
    // (keeps everything) is compared with the template's alert plugin
    // under the same name, which tags ERROR events.
    plugins_built(&["fixture-panic", "template"])?;
    let out = dir.path().join("diff.ndjson");
    let template = repo_path("plugins/dist/template.wasm");
    let result = replay(
        &config,
        &[
            "--topic",
            "in",
            "--from",
            "0",
            "--chain",
            "fixture-panic",
            "--diff",
            &format!("fixture-panic={}", template.display()),
            "--out",
            out.to_str().unwrap_or_default(),
        ],
    );
    let summary = stderr(&result);
    assert!(result.status.success(), "{summary}");
    let errors = inputs.iter().filter(|e| e["severity"] == "ERROR").count();
    assert!(
        summary.contains(&format!(
            "{errors} events' outcomes differ from fixture-panic@"
        )),
        "{summary}"
    );
    let text = std::fs::read_to_string(&out)?;
    let lines: Vec<Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), errors);
    for line in &lines {
        let old = &line["old"]["kept"][0];
        let new = &line["new"]["kept"][0];
        assert_eq!(new["severity"], "ERROR", "{line}");
        assert_eq!(old["attributes"]["alert"], "true", "{line}");
        assert!(new["attributes"].get("alert").is_none(), "{line}");
        assert_eq!(line["key"], new["entity_id"], "{line}");
    }

    // A dry run resolves and plans without reading.
    let result = replay(
        &config,
        &[
            "--topic",
            "in",
            "--from",
            "p1:10",
            "--stage",
            "clean",
            "--plugin-version",
            &format!("filter={}", repo_path("plugins/dist/filter.wasm").display()),
            "--dry-run",
        ],
    );
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "{}", stderr(&result));
    assert!(stdout.contains("filter@"), "{stdout}");
    assert!(stdout.contains("partition 1: offsets 10.."), "{stdout}");
    assert!(!stdout.contains("partition 0:"), "{stdout}");
    Ok(())
}
