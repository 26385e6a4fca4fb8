//! Stages against a real Kafka broker: a 3-plugin chain's output equals an
//! independent computation; misbehaving plugins cost dead letters, never the
//! host; a SIGKILLed host loses nothing on restart; the same host restarted
//! rejoins its group and resumes at its committed offsets.
//!
//! Every test here runs on the binary's shared broker with its own topics
//! and consumer group.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};
use sluice::schema::SchemaSet;
use sluice_tests::pipeline::{Names, event, expected, pipeline_config_named};
use sluice_tests::{
    Broker, SharedBroker, Sluice, committed_offsets, free_port, plugins_built, produce_events,
    read_all, read_topic, repo_path, topic_size, wait_caught_up, wait_until,
};

fn schemas() -> SchemaSet {
    let mut set = SchemaSet::default();
    set.load(&repo_path("schemas/telemetry_event.avsc"))
        .expect("schema");
    set
}

/// The shared broker with this test's own input, output and dead-letter
/// topics (and group), and `total` events in the input.
async fn pipeline_inputs(
    label: &str,
    total: usize,
) -> anyhow::Result<(SharedBroker, Names, Vec<Value>)> {
    plugins_built(&["filter", "redact", "enrich"])?;
    let broker = Broker::shared();
    let names = Names::unique(label);
    names.create(&broker, 3)?;
    let inputs: Vec<Value> = (0..total).map(event).collect();
    produce_events(&broker.bootstrap(), &names.input, &inputs).await?;
    Ok((broker, names, inputs))
}

#[tokio::test(flavor = "multi_thread")]
async fn chain_output_equals_an_independent_computation() -> anyhow::Result<()> {
    let total = 20_000;
    let (broker, names, inputs) = pipeline_inputs("chain", total).await?;
    let port = free_port();
    let sluice = Sluice::start(
        &pipeline_config_named(&broker.bootstrap(), port, 500, &names),
        port,
    )?;

    let expected_count = inputs.iter().filter(|e| e["severity"] != "DEBUG").count();
    let bootstrap = broker.bootstrap();
    let out = names.output.clone();
    let records = tokio::task::spawn_blocking(move || {
        read_topic(&bootstrap, &out, expected_count, Duration::from_secs(60))
    })
    .await??;
    assert_eq!(records.len(), expected_count, "{}", sluice.log());

    let set = schemas();
    let by_id: BTreeMap<String, &Value> = inputs
        .iter()
        .map(|e| (e["event_id"].as_str().unwrap_or_default().to_string(), e))
        .collect();
    let mut seen = HashSet::new();
    let mut last_seq: BTreeMap<(i32, String), i64> = BTreeMap::new();
    for record in &records {
        let output = set.decode_json(&record.value)?;
        let id = output["event_id"].as_str().unwrap_or_default().to_string();
        let input = by_id
            .get(&id)
            .copied()
            .ok_or_else(|| anyhow::anyhow!("unexpected event {id}"))?;
        let want = expected(input, record.timestamp.unwrap_or_default());
        assert_eq!(Some(&output), want.as_ref(), "event {id}");
        assert!(
            seen.insert(id.clone()),
            "{id} delivered twice in a clean run"
        );
        assert!(
            record
                .header("sluice-plugins")
                .unwrap_or_default()
                .contains("redact@")
        );
        let entity = output["entity_id"].as_str().unwrap_or_default().to_string();
        let seq: i64 = output["attributes"]["seq"]
            .as_str()
            .unwrap_or("0")
            .parse()?;
        let previous = last_seq
            .insert((record.partition, entity.clone()), seq)
            .unwrap_or(-1);
        assert!(
            seq > previous,
            "{entity}: order broken in partition {}",
            record.partition
        );
    }
    // Caught up (lag 0), so no dead letter is still on its way.
    let bootstrap = broker.bootstrap();
    let names2 = names.clone();
    tokio::task::spawn_blocking(move || {
        wait_caught_up(
            &bootstrap,
            &names2.group,
            &names2.input,
            Duration::from_secs(30),
        )
    })
    .await??;
    assert_eq!(
        topic_size(&broker.bootstrap(), &names.dlq)?,
        0,
        "no dead letters in a clean run"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn misbehaving_plugins_cost_dead_letters_not_the_host() -> anyhow::Result<()> {
    plugins_built(&["fixture-panic", "fixture-spin", "fixture-hog"])?;
    // Topic and group names (sluice-s-KIND) used by no other test here.
    let broker = Broker::shared();
    broker.create_topic("sandbox.in", 2)?;
    let fixtures = [
        // The trap's error carries the panic line the SDK logged before
        // the instance trapped.
        ("panic", "fixture-panic: event asked to panic"),
        ("spin", "time bound"),
        ("hog", "memory cap"),
    ];
    for (kind, _) in fixtures {
        broker.create_topic(&format!("out.{kind}"), 1)?;
        broker.create_topic(&format!("dlq.{kind}"), 1)?;
    }
    let total = 400;
    let triggers: BTreeMap<usize, &str> = [
        (37, "panic"),
        (38, "panic"),
        (150, "spin"),
        (260, "hog"),
        (333, "panic"),
    ]
    .into();
    let inputs: Vec<Value> = (0..total)
        .map(|i| {
            let mut e = sluice_tests::sample_event(i, 13);
            if let Some(kind) = triggers.get(&i) {
                e["attributes"]["trigger"] = json!(kind);
            }
            e
        })
        .collect();
    produce_events(&broker.bootstrap(), "sandbox.in", &inputs).await?;

    let port = free_port();
    let mut config = format!(
        "schemas = \"{{schemas}}\"\n[kafka]\nbrokers = \"{}\"\n[admin]\nlisten = \"127.0.0.1:{port}\"\n[plugins]\ndir = \"{{plugins}}\"\n",
        broker.bootstrap()
    );
    for (kind, _) in fixtures {
        config.push_str(&format!(
            "\n[[stage]]\nname = \"s-{kind}\"\ninput = \"sandbox.in\"\noutput = \"out.{kind}\"\ndead_letter = \"dlq.{kind}\"\nchain = [\"fixture-{kind}\"]\nbatch_size = 100\nbatch_wait_ms = 20\nretries = 1\nlimits = {{ timeout_ms = 300, memory_mb = 64 }}\n"
        ));
    }
    let sluice = Sluice::start(&config, port)?;

    let set = schemas();
    for (kind, reason) in fixtures {
        let affected: HashSet<String> = triggers
            .iter()
            .filter(|(_, k)| **k == kind)
            .map(|(i, _)| format!("evt-{i:07}"))
            .collect();
        let bootstrap = broker.bootstrap();
        let topic = format!("dlq.{kind}");
        let want = affected.len();
        let dead = tokio::task::spawn_blocking(move || {
            read_topic(&bootstrap, &topic, want, Duration::from_secs(60))
        })
        .await??;
        let dead_ids: HashSet<String> = dead
            .iter()
            .map(|r| {
                set.decode_json(&r.value)
                    .map(|v| v["event_id"].as_str().unwrap_or_default().to_string())
            })
            .collect::<anyhow::Result<_>>()?;
        assert_eq!(
            dead_ids,
            affected,
            "{kind}: exactly the affected events are dead-lettered\n{}",
            sluice.log()
        );
        for record in &dead {
            assert_eq!(
                record.header("sluice-stage").as_deref(),
                Some(format!("s-{kind}").as_str())
            );
            assert_eq!(
                record.header("sluice-plugin").as_deref(),
                Some(format!("fixture-{kind}").as_str())
            );
            assert_eq!(
                record.header("sluice-plugin-version").map(|v| v.len()),
                Some(12)
            );
            let error = record.header("sluice-error").unwrap_or_default();
            assert!(
                error.contains(reason),
                "{kind}: error header `{error}` should say `{reason}`"
            );
            assert_eq!(
                record.header("sluice-origin-topic").as_deref(),
                Some("sandbox.in")
            );
            assert!(
                record
                    .header("sluice-origin-partition")
                    .is_some_and(|p| p.parse::<i32>().is_ok())
            );
            assert!(
                record
                    .header("sluice-origin-offset")
                    .is_some_and(|o| o.parse::<i64>().is_ok())
            );
        }
        let bootstrap = broker.bootstrap();
        let topic = format!("out.{kind}");
        let want = total - affected.len();
        let kept = tokio::task::spawn_blocking(move || {
            read_topic(&bootstrap, &topic, want, Duration::from_secs(60))
        })
        .await??;
        assert_eq!(
            kept.len(),
            total - affected.len(),
            "{kind}: every other event passes"
        );
    }
    let ready: Value = reqwest::get(format!("{}/readyz", sluice.url))
        .await?
        .json()
        .await?;
    assert_eq!(
        ready["ready"], true,
        "host alive and ready after the faults: {ready}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_run_loses_nothing() -> anyhow::Result<()> {
    let total = 20_000;
    let (broker, names, inputs) = pipeline_inputs("sigkill", total).await?;
    let expected: HashSet<String> = inputs
        .iter()
        .filter(|e| e["severity"] != "DEBUG")
        .map(|e| e["event_id"].as_str().unwrap_or_default().to_string())
        .collect();

    let port = free_port();
    let config = pipeline_config_named(&broker.bootstrap(), port, 200, &names);
    let mut sluice = Sluice::start(&config, port)?;
    let bootstrap = broker.bootstrap();
    let out = names.output.clone();
    let partial = tokio::task::spawn_blocking(move || {
        read_topic(&bootstrap, &out, 2_000, Duration::from_secs(60))
    })
    .await??;
    assert!(
        partial.len() >= 2_000,
        "the stage made progress before the kill"
    );
    sluice.kill();
    let before = read_topic(
        &broker.bootstrap(),
        &names.output,
        usize::MAX,
        Duration::from_secs(2),
    )?
    .len();
    assert!(
        before < expected.len(),
        "killed halfway: {before} of {} written",
        expected.len()
    );

    // Restart at once: the killed member is still in the group until its
    // session (8 s) expires; Kafka's coordinator rebalances it away and the
    // new member gets every partition from the committed offsets.
    let restarted = Sluice::start(&config, port)?;
    let set = schemas();
    let mut delivered = HashSet::new();
    let mut records = 0;
    wait_until(
        Duration::from_secs(120),
        "every event after the restart",
        || {
            // Poll the cheap watermark sum; read everything only once
            // enough records exist.
            match topic_size(&broker.bootstrap(), &names.output) {
                Ok(size) if size >= expected.len() as i64 => {}
                _ => return false,
            }
            let all = match read_all(&broker.bootstrap(), &names.output, Duration::from_secs(60)) {
                Ok(all) => all,
                Err(e) => {
                    eprintln!("reading out: {e:#}");
                    return false;
                }
            };
            records = all.len();
            delivered = all
                .iter()
                .filter_map(|r| set.decode_json(&r.value).ok())
                .map(|v| v["event_id"].as_str().unwrap_or_default().to_string())
                .collect();
            delivered.len() >= expected.len()
        },
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}: {} of {} delivered\n{}",
            delivered.len(),
            expected.len(),
            restarted.log()
        )
    })?;
    assert_eq!(
        delivered, expected,
        "every input event reached the output at least once"
    );
    println!(
        "sigkill: inputs={} expected={} delivered_distinct={} records={} duplicates={} lost=0",
        total,
        expected.len(),
        delivered.len(),
        records,
        records - delivered.len()
    );
    Ok(())
}

/// The same host (same config, same group, same host id), stopped with
/// SIGTERM and started again, rejoins its group and resumes at the offsets
/// it committed: events produced while it was down all arrive, none of those
/// it had already processed arrive again, and the group ends at lag 0.
#[tokio::test(flavor = "multi_thread")]
async fn the_same_host_restarted_rejoins_its_group_and_resumes_at_its_commits() -> anyhow::Result<()>
{
    let first = 6_000;
    let (broker, names, inputs) = pipeline_inputs("rejoin", first).await?;
    let bootstrap = broker.bootstrap();
    let port = free_port();
    let config = pipeline_config_named(&bootstrap, port, 200, &names);
    let mut sluice = Sluice::start(&config, port)?;

    let passes = |events: &[Value]| events.iter().filter(|e| e["severity"] != "DEBUG").count();
    let (bs, n) = (bootstrap.clone(), names.clone());
    tokio::task::spawn_blocking(move || {
        wait_caught_up(&bs, &n.group, &n.input, Duration::from_secs(90))
    })
    .await?
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", sluice.log()))?;
    let before = topic_size(&bootstrap, &names.output)?;
    assert_eq!(
        before,
        passes(&inputs) as i64,
        "first run complete, no duplicates"
    );
    let committed = committed_offsets(&bootstrap, &names.group, &names.input)?;
    let status = sluice.terminate(Duration::from_secs(30))?;
    assert!(
        status.success(),
        "graceful exit: {status:?}\n{}",
        sluice.log()
    );

    // Produced while the host is down.
    let more: Vec<Value> = (first..first + 3_000).map(event).collect();
    produce_events(&bootstrap, &names.input, &more).await?;

    let restarted_at = std::time::Instant::now();
    let restarted = Sluice::start(&config, port)?;
    let (bs, n) = (bootstrap.clone(), names.clone());
    tokio::task::spawn_blocking(move || {
        wait_caught_up(&bs, &n.group, &n.input, Duration::from_secs(90))
    })
    .await?
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", restarted.log()))?;
    let caught_up = restarted_at.elapsed();

    let set = schemas();
    let records = read_all(&bootstrap, &names.output, Duration::from_secs(60))?;
    let ids: Vec<String> = records
        .iter()
        .map(|r| {
            set.decode_json(&r.value)
                .map(|v| v["event_id"].as_str().unwrap_or_default().to_string())
        })
        .collect::<anyhow::Result<_>>()?;
    let distinct: HashSet<&String> = ids.iter().collect();
    let expected: HashSet<String> = inputs
        .iter()
        .chain(&more)
        .filter(|e| e["severity"] != "DEBUG")
        .map(|e| e["event_id"].as_str().unwrap_or_default().to_string())
        .collect();
    let lost = expected.iter().filter(|id| !distinct.contains(id)).count();
    println!(
        "rejoin: committed before the stop {committed:?}; after the restart caught up in {:.1}s; records={} distinct={} expected={} duplicates={} lost={lost}",
        caught_up.as_secs_f64(),
        ids.len(),
        distinct.len(),
        expected.len(),
        ids.len() - distinct.len()
    );
    assert_eq!(lost, 0, "every event arrived\n{}", restarted.log());
    assert_eq!(
        ids.len(),
        distinct.len(),
        "nothing committed was processed again\n{}",
        restarted.log()
    );
    let after = committed_offsets(&bootstrap, &names.group, &names.input)?;
    for (partition, offset) in &committed {
        assert!(
            after.get(partition).is_some_and(|a| a >= offset),
            "partition {partition}: committed offset went back ({offset} -> {:?})",
            after.get(partition)
        );
    }
    Ok(())
}
