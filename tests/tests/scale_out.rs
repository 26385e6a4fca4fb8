//! Scale-out on a real Kafka broker: three hosts in one consumer group
//! share six partitions under steady load; one is killed, then a fourth
//! joins. Every input arrives (at-least-once: duplicates only from the
//! killed host's uncommitted batches, counted and printed; exactly-once:
//! none), and each host's assignment is visible through its admin API
//! while the group changes. A plugin version pushed while the group
//! rebalances reaches every live host, the one that joins after included.

use std::collections::BTreeSet;
use std::time::Duration;

use sluice_tests::delivery::{
    SteadyLoad, assignment, hosts_running, push_plugin, stage_config_with_store, tally,
};
use sluice_tests::pipeline::Names;
use sluice_tests::{Broker, Sluice, free_port, plugins_built, wait_caught_up};

const PARTITIONS: usize = 6;

/// Wait until the live `hosts` hold every partition between them, each
/// exactly once; returns each host's partitions.
async fn wait_shared(hosts: &[&Sluice], what: &str) -> anyhow::Result<Vec<Vec<String>>> {
    let mut last = Vec::new();
    for _ in 0..120 {
        let mut all = Vec::new();
        for host in hosts {
            all.push(assignment(&host.url, "deliver").await.unwrap_or_default());
        }
        let union: BTreeSet<&String> = all.iter().flatten().collect();
        let total: usize = all.iter().map(Vec::len).sum();
        if union.len() == PARTITIONS && total == PARTITIONS && all.iter().all(|a| !a.is_empty()) {
            println!("scale-out {what}: assignments {all:?}");
            return Ok(all);
        }
        last = all;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::bail!("{what}: the hosts never shared the {PARTITIONS} partitions: last {last:?}")
}

/// The `waited_ms` of each "start at their committed offsets" line of a
/// host log.
fn waits_ms(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("start at their committed offsets"))
        .filter_map(|l| {
            l.split("waited_ms=")
                .nth(1)?
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

async fn run(delivery: &str) -> anyhow::Result<()> {
    plugins_built(&["redact", "enrich"])?;
    let broker = Broker::shared();
    let bootstrap = broker.bootstrap();
    let names = Names::unique(&format!("scale-{delivery}"));
    broker.create_topic(&names.input, PARTITIONS as u32)?;
    broker.create_topic(&names.output, PARTITIONS as u32)?;
    broker.create_topic(&names.dlq, 1)?;
    let load = SteadyLoad::start(&bootstrap, &names.input, 3_000)?;

    let store = format!("{}.plugins", names.group);
    let start = |instance: &str| -> anyhow::Result<Sluice> {
        let port = free_port();
        let config =
            stage_config_with_store(&bootstrap, port, &names, delivery, instance, Some(&store));
        Sluice::start(&config, port)
    };
    let h1 = start("h1")?;
    let h2 = start("h2")?;
    let mut h3 = start("h3")?;
    wait_shared(&[&h1, &h2, &h3], "three hosts").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    h3.kill();
    println!(
        "scale-out {delivery}: h3 killed with {} records sent",
        load.sent()
    );
    // Pushed while the group rebalances h3's partitions away: the same
    // enrich under a new hash (a custom section), version 1 of the store.
    let enrich = std::fs::read(sluice_tests::repo_path("plugins/dist/enrich.wasm"))?;
    let (status, body) = push_plugin(
        &h1.url,
        "enrich",
        sluice_tests::with_custom_section(enrich, "scale-out", 64),
    )
    .await?;
    assert_eq!(status, 201, "push: {body}");
    let version = body["version"].as_u64().unwrap_or_default();
    wait_shared(&[&h1, &h2], "after the kill").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let h4 = start("h4")?;
    wait_shared(&[&h1, &h2, &h4], "after h4 joined").await?;
    let live: BTreeSet<String> = ["h1", "h2", "h4"].map(String::from).into();
    let mut running = BTreeSet::new();
    for _ in 0..60 {
        running = hosts_running(&h1.url, "enrich", version).await?;
        if live.is_subset(&running) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "scale-out {delivery}: enrich v{version}, pushed during the rebalance, runs on {running:?}"
    );
    assert!(
        live.is_subset(&running),
        "every live host runs the pushed version: {running:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;

    let inputs = load.finish()?;
    let (bs, n) = (bootstrap.clone(), names.clone());
    tokio::task::spawn_blocking(move || {
        wait_caught_up(&bs, &n.group, &n.input, Duration::from_secs(120))
    })
    .await?
    .map_err(|e| anyhow::anyhow!("{e:#}\n--- h1 ---\n{}", h1.log()))?;
    let counted = tally(&bootstrap, &names, inputs)?;
    // Exactly-once hosts fetch the committed offsets of new partitions
    // themselves, waiting while an open transaction (h3's, when it was
    // killed mid-commit) holds them: the longest wait, from their logs
    // (host/src/stage/rebalance.rs).
    let longest_wait_ms = [&h1, &h2, &h4]
        .iter()
        .flat_map(|h| waits_ms(&h.log()))
        .max();
    let waited = match longest_wait_ms {
        Some(ms) => format!("; longest wait for committed offsets: {ms} ms"),
        None => String::new(),
    };
    println!(
        "scale-out {delivery}: 3 hosts, {PARTITIONS} partitions, kill one, add one: {counted}{waited}"
    );
    assert_eq!(counted.lost, 0, "{counted}");
    assert_eq!(counted.unexpected, 0, "{counted}");
    if delivery == "exactly-once" {
        assert_eq!(counted.duplicates, 0, "{counted}");
    } else {
        // Only the killed host's uncommitted work comes again: the batch in
        // flight, the one whose asynchronous commit had not landed, and the
        // one being prepared (200 records each).
        let bound = 3 * 200;
        assert!(
            counted.duplicates <= bound,
            "duplicates beyond the killed host's uncommitted batches: {counted} (bound {bound})"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn at_least_once_three_hosts_six_partitions_kill_one_add_one() -> anyhow::Result<()> {
    run("at-least-once").await
}

#[tokio::test(flavor = "multi_thread")]
async fn exactly_once_three_hosts_six_partitions_kill_one_add_one() -> anyhow::Result<()> {
    run("exactly-once").await
}
