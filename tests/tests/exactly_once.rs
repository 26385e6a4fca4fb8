//! Exactly-once stages on a real Kafka broker: whatever happens to the host
//! (SIGKILL three times under load, a stall long enough for another host to
//! take over its partitions) or to the broker (a restart in the middle of a
//! transaction), a `read_committed` consumer of the output and dead-letter
//! topics sees the result of each input record exactly once.
//!
//! The load mixes events with undecodable records (every 40th), so dead
//! letters are covered by the same count. Each test prints its tally.
//!
//! A host that takes over partitions whose committed offsets an open
//! transaction still holds (their previous owner died mid-commit) waits for
//! that transaction and starts where it leaves them, even when the group
//! changes during the wait.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use sluice_tests::delivery::{
    SteadyLoad, assignment, expected_id, load_value, metric, read_isolated, seen_committed,
    stage_config, tally,
};
use sluice_tests::pipeline::Names;
use sluice_tests::{
    Broker, Sluice, free_port, plugins_built, topic_size, wait_caught_up, wait_until,
};

/// Wait until `names.output` grew by `by` records past `from` (as counted
/// by watermarks, so aborted records count too: this only shows progress).
fn wait_progress(
    bootstrap: &str,
    names: &Names,
    from: i64,
    by: i64,
    host: &Sluice,
) -> anyhow::Result<i64> {
    let mut size = from;
    wait_until(Duration::from_secs(90), "the stage made progress", || {
        size = topic_size(bootstrap, &names.output).unwrap_or(from);
        size >= from + by
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", host.log()))?;
    Ok(size)
}

async fn caught_up(bootstrap: &str, names: &Names, host: &Sluice) -> anyhow::Result<()> {
    let (bs, n) = (bootstrap.to_string(), names.clone());
    tokio::task::spawn_blocking(move || {
        wait_caught_up(&bs, &n.group, &n.input, Duration::from_secs(120))
    })
    .await?
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", host.log()))
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_three_times_under_load_each_input_exactly_once() -> anyhow::Result<()> {
    plugins_built(&["redact", "enrich"])?;
    let broker = Broker::shared();
    let bootstrap = broker.bootstrap();
    let names = Names::unique("eos-kill");
    names.create(&broker, 3)?;
    let load = SteadyLoad::start(&bootstrap, &names.input, 3_000)?;

    let port = free_port();
    // The same instance id each time: the restarted host fences the killed
    // one's producer and aborts its open transaction at once.
    let config = stage_config(&bootstrap, port, &names, "exactly-once", "eos-kill-a");
    let mut host = Sluice::start(&config, port)?;
    let mut size = 0;
    for kill in 1..=3 {
        size = wait_progress(&bootstrap, &names, size, 1_500, &host)?;
        host.kill();
        println!(
            "exactly-once sigkill {kill}: killed with {} records sent, {size} output records (incl. aborted)",
            load.sent()
        );
        host = Sluice::start(&config, port)?;
    }
    wait_progress(&bootstrap, &names, size, 1_500, &host)?;
    let inputs = load.finish()?;
    caught_up(&bootstrap, &names, &host).await?;

    let counted = tally(&bootstrap, &names, inputs)?;
    let uncommitted = read_isolated(
        &bootstrap,
        &names.output,
        "read_uncommitted",
        Duration::from_secs(60),
    )?
    .len();
    println!(
        "exactly-once sigkill x3: {counted}; output records a read_uncommitted reader sees: {uncommitted} ({} from aborted transactions)",
        uncommitted.saturating_sub(counted.outputs)
    );
    assert!(
        counted.dead_letters > 0,
        "the load's undecodable records were dead-lettered"
    );
    assert_eq!(counted.lost, 0, "{counted}\n{}", host.log());
    assert_eq!(counted.duplicates, 0, "{counted}\n{}", host.log());
    assert_eq!(counted.unexpected, 0, "{counted}");

    // Replay reads what read_committed consumers saw by default, and what
    // the aborted attempts wrote too with --isolation read-uncommitted.
    let dir = sluice_tests::TempDir::new("eos-replay");
    let replay_config = dir.path().join("sluice.toml");
    std::fs::write(
        &replay_config,
        sluice_tests::resolve_config(&stage_config(
            &bootstrap,
            free_port(),
            &names,
            "exactly-once",
            "replayer",
        )),
    )?;
    for (isolation, expected) in [
        ("read-committed", counted.outputs),
        ("read-uncommitted", uncommitted),
    ] {
        let out = dir.path().join(format!("{isolation}.ndjson"));
        let status = std::process::Command::new(sluice_tests::sluice_bin())
            .args(["replay", "-c"])
            .arg(&replay_config)
            .args([
                "--topic",
                &names.output,
                "--from",
                "0",
                "--chain",
                "redact",
                "--isolation",
                isolation,
                "--out",
            ])
            .arg(&out)
            .status()?;
        assert!(status.success(), "replay --isolation {isolation}: {status}");
        let replayed = std::fs::read_to_string(&out)?.lines().count();
        println!(
            "exactly-once sigkill x3: replay --isolation {isolation} read {replayed} output records"
        );
        assert_eq!(replayed, expected, "replay --isolation {isolation}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_host_is_fenced_and_nothing_it_writes_becomes_visible() -> anyhow::Result<()> {
    plugins_built(&["redact", "enrich"])?;
    let broker = Broker::shared();
    let bootstrap = broker.bootstrap();
    let names = Names::unique("eos-stall");
    names.create(&broker, 3)?;
    let load = SteadyLoad::start(&bootstrap, &names.input, 2_000)?;

    let (port_a, port_b) = (free_port(), free_port());
    let a = Sluice::start(
        &stage_config(&bootstrap, port_a, &names, "exactly-once", "stall-a"),
        port_a,
    )?;
    let size = wait_progress(&bootstrap, &names, 0, 1_000, &a)?;
    a.pause()?;
    println!(
        "exactly-once stall: host a paused with {} records sent",
        load.sent()
    );

    // b joins; once a's session expired, b holds every partition (a's open
    // transaction is aborted by the broker at its timeout).
    let b = Sluice::start(
        &stage_config(&bootstrap, port_b, &names, "exactly-once", "stall-b"),
        port_b,
    )?;
    let mut held = Vec::new();
    for _ in 0..120 {
        held = assignment(&b.url, "deliver").await.unwrap_or_default();
        if held.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        held.len(),
        3,
        "b took over every partition: {held:?}\n{}",
        b.log()
    );
    wait_progress(&bootstrap, &names, size, 1_000, &b)?;

    // a wakes up believing it still owns its partitions, with a batch and a
    // transaction open: it must be fenced.
    a.resume()?;
    println!("exactly-once stall: host a resumed after b took over {held:?}");
    let mut aborted = 0.0;
    for _ in 0..60 {
        aborted = metric(
            &a.url,
            "sluice_stage_transactions_total",
            &[("result", "aborted")],
        )
        .await
        .unwrap_or(0.0);
        if aborted >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let inputs = load.finish()?;
    caught_up(&bootstrap, &names, &b).await?;
    let counted = tally(&bootstrap, &names, inputs)?;
    println!(
        "exactly-once stall: {counted}; host a aborted {aborted} transaction(s) after resuming"
    );
    // Fenced either way: its open transaction aborted, or (when it stalled
    // between two transactions) its assignment declared lost before it
    // produced again.
    assert!(
        aborted >= 1.0 || a.log().contains("lost=true"),
        "the resumed host was fenced\n{}",
        a.log()
    );
    assert_eq!(counted.lost, 0, "{counted}\n{}", b.log());
    assert_eq!(
        counted.duplicates,
        0,
        "{counted}\n--- a ---\n{}\n--- b ---\n{}",
        a.log(),
        b.log()
    );
    assert_eq!(counted.unexpected, 0, "{counted}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_restart_mid_transaction_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    plugins_built(&["redact", "enrich"])?;
    let mut broker = Broker::start()?;
    let bootstrap = broker.bootstrap();
    let names = Names::unique("eos-broker");
    names.create(&broker, 3)?;
    let load = SteadyLoad::start(&bootstrap, &names.input, 2_000)?;
    let port = free_port();
    let host = Sluice::start(
        &stage_config(&bootstrap, port, &names, "exactly-once", "broker-a"),
        port,
    )?;
    wait_progress(&bootstrap, &names, 0, 2_000, &host)?;
    // Transactions commit every 100 ms under steady load: one is open now.
    broker.restart()?;
    println!(
        "exactly-once broker restart: broker back with {} records sent",
        load.sent()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let inputs = load.finish()?;
    caught_up(&bootstrap, &names, &host).await?;
    let counted = tally(&bootstrap, &names, inputs)?;
    let aborted = metric(
        &host.url,
        "sluice_stage_transactions_total",
        &[("result", "aborted")],
    )
    .await?;
    println!("exactly-once broker restart: {counted}; aborted transactions={aborted}");
    assert_eq!(counted.lost, 0, "{counted}\n{}", host.log());
    assert_eq!(counted.duplicates, 0, "{counted}\n{}", host.log());
    assert_eq!(counted.unexpected, 0, "{counted}");
    Ok(())
}

/// Records per input partition in the held-offsets test, and the offset
/// the previous owner's open transaction commits for each partition.
const HELD_RECORDS: usize = 20;
const HELD_AT: usize = 10;

#[tokio::test(flavor = "multi_thread")]
async fn offsets_held_by_an_open_transaction_are_waited_for_while_the_group_changes()
-> anyhow::Result<()> {
    plugins_built(&["redact", "enrich"])?;
    let broker = Broker::shared();
    let bootstrap = broker.bootstrap();
    let names = Names::unique("eos-held");
    names.create(&broker, 2)?;
    let timeout = Duration::from_secs(30);

    // 20 records in each of the two input partitions: load record
    // `p * 20 + i` at offset `i` of partition `p`.
    let schema = sluice::schema::LoadedSchema::from_file(&sluice_tests::repo_path(
        "schemas/telemetry_event.avsc",
    ))?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .create()?;
    for partition in 0..2 {
        for i in 0..HELD_RECORDS {
            let value = load_value(&schema, partition * HELD_RECORDS + i)?;
            let record = BaseRecord::<(), _>::to(&names.input)
                .partition(partition as i32)
                .payload(&value);
            producer.send(record).map_err(|(e, _)| e)?;
        }
    }
    producer.flush(timeout)?;

    // The previous owner did the first 10 of each partition and died while
    // committing them: its transaction holds offset 10 of both partitions
    // in the group, and stays open (a minute, its timeout) until it ends
    // below.
    let previous: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("transactional.id", format!("{}.previous", names.group))
        .set("transaction.timeout.ms", "60000")
        .create()?;
    previous.init_transactions(timeout)?;
    previous.begin_transaction()?;
    let outside: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &names.group)
        .create()?;
    // Generation -1: a commit from outside the group's membership, which
    // the coordinator takes while the group has no members.
    let metadata = outside.group_metadata().context("group metadata")?;
    let mut held = TopicPartitionList::new();
    for partition in 0..2 {
        held.add_partition_offset(&names.input, partition, Offset::Offset(HELD_AT as i64))?;
    }
    previous.send_offsets_to_transaction(&held, &metadata, timeout)?;

    // Host a takes both partitions and waits for the held offsets; host b
    // joins during the wait, which changes a's assignment while it waits.
    let start = |instance: &str| -> anyhow::Result<Sluice> {
        let port = free_port();
        Sluice::start(
            &stage_config(&bootstrap, port, &names, "exactly-once", instance),
            port,
        )
    };
    let a = start("held-a")?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let b = start("held-b")?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let ended = Instant::now();
    previous.commit_transaction(timeout)?;
    caught_up(&bootstrap, &names, &a).await?;

    // Exactly records 10..20 of each partition came out, once each (the
    // undecodable one, load record 39, as a dead letter).
    let committed = seen_committed(&bootstrap, &names, timeout)?;
    let mut seen: BTreeMap<String, usize> = committed
        .at
        .iter()
        .map(|(id, at)| (id.clone(), at.len()))
        .collect();
    if committed.unreadable > 0 {
        seen.insert("(unreadable)".into(), committed.unreadable);
    }
    let expected: BTreeMap<String, usize> = (0..2)
        .flat_map(|p| (HELD_AT..HELD_RECORDS).map(move |i| p * HELD_RECORDS + i))
        .map(|i| (expected_id(i), 1))
        .collect();
    let before_held: Vec<&String> = seen
        .keys()
        .filter(|id| !expected.contains_key(*id))
        .collect();
    println!(
        "exactly-once held offsets: {} records out ({} expected), {} from before the held offsets; started {:?} after the transaction ended",
        seen.values().sum::<usize>(),
        expected.len(),
        before_held.len(),
        ended.elapsed()
    );
    assert_eq!(
        seen,
        expected,
        "only the records after the held offsets, once each\n--- a ---\n{}\n--- b ---\n{}",
        a.log(),
        b.log()
    );
    Ok(())
}
