//! Hot reload through the plugin store, against a real Kafka broker: a push
//! swaps a plugin at a batch boundary without stopping the stage or losing
//! events; bad candidates are rejected with their reason; two hosts
//! converge; rollback; a restarted host restores the store's versions
//! without its plugin directory; the admin API wants its token.
//!
//! The stages chain a plugin named `tagger`. v1 is a copy of `filter`
//! configured to keep everything; v2 is `fixture-add-field`, which keeps
//! everything and sets `attributes.v = "2"` (padded to 1.3 MB, three store
//! chunks, in the two-host test).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use sluice::schema::SchemaSet;
use sluice_tests::{
    Broker, SharedBroker, Sluice, TempDir, free_port, plugins_built, produce_events, read_all,
    repo_path, sample_event, wait_until,
};

const TOKEN: &str = "hot-reload-token";
const BATCH_WAIT_MS: u64 = 100;

fn schemas() -> SchemaSet {
    let mut set = SchemaSet::default();
    set.load(&repo_path("schemas/telemetry_event.avsc"))
        .expect("schema");
    set
}

fn dist(name: &str) -> Vec<u8> {
    std::fs::read(repo_path(&format!("plugins/dist/{name}.wasm"))).expect("built plugin")
}

/// `fixture-add-field` grown past two store chunks (512 KiB each) by a
/// custom section, which wasmtime ignores: exercises chunked publishing.
fn big_add_field() -> Vec<u8> {
    sluice_tests::with_custom_section(dist("fixture-add-field"), "padding", 1_300_000)
}

/// A plugin directory holding `tagger.wasm` = filter (v1).
fn plugin_dir() -> TempDir {
    let dir = TempDir::new("plugins");
    std::fs::write(dir.path().join("tagger.wasm"), dist("filter")).expect("write tagger");
    dir
}

/// A host running stage `s` (`input` → `output`, group `group`) with the
/// chain `["tagger"]`, the plugin store on, admin on `port`.
fn config(
    bootstrap: &str,
    port: u16,
    plugins: &Path,
    t: &Topics,
    group: &str,
    output: &str,
) -> String {
    let Topics {
        input, dlq, store, ..
    } = t;
    let group = format!("{}.{group}", t.prefix);
    format!(
        r#"
schemas = "{{schemas}}"

[kafka]
brokers = "{bootstrap}"
[kafka.client]
"session.timeout.ms" = "8000"

[admin]
listen = "127.0.0.1:{port}"
token = "{TOKEN}"

[plugins]
dir = "{plugins}"
store = true
store_topic = "{store}"

[[stage]]
name = "s"
input = "{input}"
output = "{output}"
dead_letter = "{dlq}"
group = "{group}"
chain = ["tagger"]
batch_size = 200
batch_wait_ms = {BATCH_WAIT_MS}

[stage.config.tagger]
mode = "drop"
rules = [{{ field = "severity", op = "equals", value = "NEVER" }}]
"#,
        plugins = plugins.display()
    )
}

/// One test's topics and name prefix on the shared broker, the plugin
/// store's topic included (the host creates that one, compacted).
struct Topics {
    prefix: String,
    input: String,
    out: String,
    out2: String,
    dlq: String,
    store: String,
}

fn broker(label: &str) -> anyhow::Result<(SharedBroker, Topics)> {
    plugins_built(&[
        "filter",
        "fixture-add-field",
        "fixture-bad-init",
        "fixture-wrong-world",
    ])?;
    let broker = Broker::shared();
    let prefix = sluice_tests::unique(label);
    let t = Topics {
        input: format!("{prefix}.in"),
        out: format!("{prefix}.out"),
        out2: format!("{prefix}.out2"),
        dlq: format!("{prefix}.dlq"),
        store: format!("{prefix}.plugins"),
        prefix,
    };
    broker.create_topic(&t.input, 3)?;
    broker.create_topic(&t.out, 3)?;
    broker.create_topic(&t.out2, 3)?;
    broker.create_topic(&t.dlq, 1)?;
    Ok((broker, t))
}

async fn push(host: &Sluice, name: &str, bytes: Vec<u8>) -> anyhow::Result<(u16, Value)> {
    let response = reqwest::Client::new()
        .put(format!("{}/admin/plugins/{name}", host.url))
        .bearer_auth(TOKEN)
        .body(bytes)
        .send()
        .await?;
    Ok((response.status().as_u16(), response.json().await?))
}

async fn rollback(host: &Sluice, name: &str) -> anyhow::Result<(u16, Value)> {
    let response = reqwest::Client::new()
        .post(format!("{}/admin/plugins/{name}/rollback", host.url))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    Ok((response.status().as_u16(), response.json().await?))
}

async fn list(host: &Sluice) -> anyhow::Result<Value> {
    let response = reqwest::Client::new()
        .get(format!("{}/admin/plugins", host.url))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    anyhow::ensure!(response.status() == 200, "list: {}", response.status());
    Ok(response.json().await?)
}

/// The hosts that report running `version` of `tagger`.
async fn hosts_running(host: &Sluice, version: u64) -> anyhow::Result<Vec<String>> {
    let plugins = list(host).await?;
    Ok(plugins
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == "tagger")
        .flat_map(|p| p["hosts"].as_array().cloned().unwrap_or_default())
        .filter(|h| h["version"].as_u64() == Some(version))
        .filter_map(|h| h["host"].as_str().map(String::from))
        .collect())
}

/// Produces 10 events every 20 ms (one long-lived producer, each tick's
/// deliveries awaited) from index `start` until stopped; returns how many
/// it produced.
fn steady_producer(
    bootstrap: String,
    topic: String,
    start: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<anyhow::Result<usize>> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    tokio::spawn(async move {
        let schema =
            sluice::schema::LoadedSchema::from_file(&repo_path("schemas/telemetry_event.avsc"))?;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("enable.idempotence", "true")
            .set("linger.ms", "1")
            .create()?;
        let mut next = start;
        while !stop.load(Ordering::SeqCst) {
            let mut deliveries = Vec::new();
            for i in next..next + 10 {
                let event = sample_event(i, 50);
                let payload = schema.encode_json(&event).map_err(anyhow::Error::msg)?;
                let key = event["entity_id"].as_str().unwrap_or_default().to_string();
                let record = FutureRecord::to(&topic).key(&key).payload(&payload);
                deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
            }
            for delivery in deliveries {
                delivery.await?.map_err(|(e, _)| e)?;
            }
            next += 10;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(next - start)
    })
}

/// Reads `topic` from the beginning as records arrive, noting when each
/// was seen, until stopped.
fn arrival_reader(
    bootstrap: String,
    topic: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<anyhow::Result<Vec<(Instant, bool, String)>>> {
    std::thread::spawn(move || {
        let set = schemas();
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "hot-reload-reader")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "10")
            .create()?;
        let mut assignment = TopicPartitionList::new();
        for p in 0..3 {
            assignment.add_partition_offset(&topic, p, Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
        let mut seen = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            match consumer.poll(Duration::from_millis(5)) {
                Some(Ok(m)) => {
                    let value = set.decode_json(m.payload().unwrap_or_default())?;
                    let tagged = value["attributes"]["v"] == "2";
                    let id = value["event_id"].as_str().unwrap_or_default().to_string();
                    seen.push((Instant::now(), tagged, id));
                }
                Some(Err(e)) => anyhow::bail!("reading {topic}: {e}"),
                None => {}
            }
        }
        Ok(seen)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_swaps_at_a_batch_boundary_without_a_gap_or_a_lost_event() -> anyhow::Result<()> {
    let (broker, t) = broker("swap")?;
    let bootstrap = broker.bootstrap();
    let plugins = plugin_dir();
    let port = free_port();
    let host = Sluice::start(
        &config(&bootstrap, port, plugins.path(), &t, "g1", &t.out),
        port,
    )?;

    // v1 is the directory's own filter; publishing it changes nothing.
    let (status, body) = push(&host, "tagger", dist("filter")).await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version"], 1, "{body}");
    let (status, body) = push(&host, "tagger", dist("filter")).await?;
    assert_eq!(
        (status, &body["changed"]),
        (200, &Value::Bool(false)),
        "{body}"
    );

    let stop_reader = Arc::new(AtomicBool::new(false));
    let reader = arrival_reader(bootstrap.clone(), t.out.clone(), stop_reader.clone());
    let stop_producer = Arc::new(AtomicBool::new(false));
    let producer = steady_producer(bootstrap.clone(), t.input.clone(), 0, stop_producer.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;

    let pushed = Instant::now();
    let (status, body) = push(&host, "tagger", dist("fixture-add-field")).await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version"], 2, "{body}");
    eprintln!("push answered in {:?}", pushed.elapsed());
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_producer.store(true, Ordering::SeqCst);
    let produced = producer.await??;

    // Everything produced reaches the output.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sluice_tests::topic_size(&bootstrap, &t.out)? < produced as i64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "output incomplete\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_reader.store(true, Ordering::SeqCst);
    let seen = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))??;

    // Exactly once each in this clean run (no rebalance, no restart).
    let ids: HashSet<&str> = seen.iter().map(|(_, _, id)| id.as_str()).collect();
    assert_eq!(seen.len(), produced, "duplicates or losses");
    assert_eq!(ids.len(), produced);

    // Swapped once, at a batch boundary: per partition, untagged records
    // then tagged ones; and with the version in the header.
    let records = read_all(&bootstrap, &t.out, Duration::from_secs(30))?;
    let set = schemas();
    let mut tagged_from: BTreeMap<i32, i64> = BTreeMap::new();
    for record in &records {
        let value = set.decode_json(&record.value)?;
        let tagged = value["attributes"]["v"] == "2";
        let header = record.header("sluice-plugins").unwrap_or_default();
        if tagged {
            assert!(header.starts_with("tagger@v2-"), "{header}");
            tagged_from.entry(record.partition).or_insert(record.offset);
        } else {
            assert!(
                !tagged_from.contains_key(&record.partition),
                "untagged record after tagged ones in partition {} offset {}",
                record.partition,
                record.offset
            );
        }
    }
    assert_eq!(tagged_from.len(), 3, "every partition saw v2");
    let first_tagged = seen.iter().position(|(_, t, _)| *t).expect("tagged");
    assert!(first_tagged > 0, "some output before the swap");
    assert!(
        seen[first_tagged..].iter().all(|(_, t, _)| *t),
        "v1 output after v2's"
    );

    // The stage never stopped. The goal (issue 12): a push adds at most
    // 50 ms to the gap between output batches, measured against the usual
    // gap (the median gap between batches, same run). It is reported, not
    // asserted: a timing on a shared 2-core box is not a pass/fail signal.
    // The assertion only catches a stall: the swap gap may not exceed the
    // usual gap by more than one batch wait + 50 ms.
    let swap_gap = seen[first_tagged].0 - seen[first_tagged - 1].0;
    let mut batch_gaps: Vec<Duration> = seen
        .windows(2)
        .enumerate()
        .filter(|(i, _)| *i + 1 != first_tagged)
        .map(|(_, w)| w[1].0 - w[0].0)
        .filter(|g| *g >= Duration::from_millis(BATCH_WAIT_MS / 2))
        .collect();
    batch_gaps.sort();
    anyhow::ensure!(batch_gaps.len() >= 5, "too few batches: {batch_gaps:?}");
    let usual = batch_gaps[batch_gaps.len() / 2];
    let (largest_at, largest) = seen
        .windows(2)
        .map(|w| (w[1].0 - seen[0].0, w[1].0 - w[0].0))
        .max_by_key(|(_, gap)| *gap)
        .unwrap_or_default();
    let added = swap_gap.saturating_sub(usual);
    println!(
        "hot reload: swap gap {:.1} ms, usual gap between batches {:.1} ms, added {:.1} ms (goal <= 50 ms: {}); largest gap {largest:?} at {largest_at:?}, swap at {:?}; {} records",
        swap_gap.as_secs_f64() * 1e3,
        usual.as_secs_f64() * 1e3,
        added.as_secs_f64() * 1e3,
        if added <= Duration::from_millis(50) {
            "met"
        } else {
            "NOT met"
        },
        seen[first_tagged].0 - seen[0].0,
        seen.len()
    );
    let bound = usual + Duration::from_millis(BATCH_WAIT_MS + 50);
    assert!(
        swap_gap <= bound,
        "output stopped for {swap_gap:?} at the swap (usual {usual:?})"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_candidates_are_rejected_and_the_admin_api_wants_its_token() -> anyhow::Result<()> {
    let (broker, t) = broker("bad")?;
    let bootstrap = broker.bootstrap();
    let plugins = plugin_dir();
    let port = free_port();
    let host = Sluice::start(
        &config(&bootstrap, port, plugins.path(), &t, "g1", &t.out),
        port,
    )?;
    let client = reqwest::Client::new();

    for (request, what) in [
        (client.get(format!("{}/admin/plugins", host.url)), "list"),
        (
            client
                .put(format!("{}/admin/plugins/tagger", host.url))
                .body(dist("fixture-add-field")),
            "push",
        ),
        (
            client.post(format!("{}/admin/plugins/tagger/rollback", host.url)),
            "rollback",
        ),
    ] {
        let response = request.try_clone().expect("clonable").send().await?;
        assert_eq!(response.status(), 401, "{what} without a token");
        let response = request.bearer_auth("wrong").send().await?;
        assert_eq!(response.status(), 401, "{what} with a wrong token");
    }

    for (bytes, reason) in [
        (dist("fixture-bad-init"), "init failed"),
        (
            dist("fixture-wrong-world"),
            "does not implement the `sluice:plugin/transform` world",
        ),
        (b"not a component at all".to_vec(), "not a WebAssembly file"),
    ] {
        let (status, body) = push(&host, "tagger", bytes).await?;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"], "invalid_plugin", "{body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{message}");
    }
    // The same through `sluice plugin`.
    let junk = plugins.path().join("junk.wasm");
    std::fs::write(&junk, b"not a component at all")?;
    let out = cli(&host, &["push", "tagger", &junk.display().to_string()])?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("422") && stderr.contains("not a WebAssembly file"),
        "{stderr}"
    );
    let out = cli(&host, &["list"])?;
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("NAME\tACTIVE"));

    // Nothing was published, and the old version still runs.
    assert_eq!(list(&host).await?, serde_json::json!([]));
    let events: Vec<Value> = (0..50).map(|i| sample_event(i, 5)).collect();
    produce_events(&bootstrap, &t.input, &events).await?;
    let b = bootstrap.clone();
    wait_until(Duration::from_secs(30), "50 outputs", || {
        sluice_tests::topic_size(&b, &t.out).unwrap_or(0) >= 50
    })?;
    let set = schemas();
    for record in read_all(&bootstrap, &t.out, Duration::from_secs(30))? {
        let value = set.decode_json(&record.value)?;
        assert_eq!(value["attributes"]["v"], Value::Null, "old version output");
    }
    assert!(host.log().contains("plugin loaded"), "{}", host.log());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hosts_converge_roll_back_and_a_new_host_restores_from_the_topic() -> anyhow::Result<()>
{
    let (broker, t) = broker("converge")?;
    let bootstrap = broker.bootstrap();
    let (dir_a, dir_b) = (plugin_dir(), plugin_dir());
    let (port_a, port_b) = (free_port(), free_port());
    let a = Sluice::start(
        &config(&bootstrap, port_a, dir_a.path(), &t, "g2", &t.out),
        port_a,
    )?;
    let b = Sluice::start(
        &config(&bootstrap, port_b, dir_b.path(), &t, "g2", &t.out),
        port_b,
    )?;

    // Both in the group and consuming.
    let stop_producer = Arc::new(AtomicBool::new(false));
    let producer = steady_producer(bootstrap.clone(), t.input.clone(), 0, stop_producer.clone());
    let bs = bootstrap.clone();
    wait_until(Duration::from_secs(60), "the output to grow", || {
        sluice_tests::topic_size(&bs, &t.out).unwrap_or(0) > 200
    })?;

    let (status, body) = push(&a, "tagger", dist("filter")).await?;
    assert_eq!(status, 201, "{body}");
    let pushed = Instant::now();
    let (status, body) = push(&a, "tagger", big_add_field()).await?;
    assert_eq!((status, &body["version"]), (201, &Value::from(2)), "{body}");
    let converged = wait_hosts(&b, 2, 2, Duration::from_secs(5)).await;
    eprintln!(
        "v2 running on both hosts {:?} after the push answered",
        pushed.elapsed()
    );
    converged?;

    let rolled = Instant::now();
    let (status, body) = rollback(&b, "tagger").await?;
    assert_eq!((status, &body["version"]), (200, &Value::from(1)), "{body}");
    let converged = wait_hosts(&a, 1, 2, Duration::from_secs(5)).await;
    eprintln!(
        "v1 running on both hosts {:?} after the rollback answered",
        rolled.elapsed()
    );
    converged?;
    let out = cli(&a, &["list"])?;
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(row.starts_with("tagger\tv1\t"), "{table}");
    assert_eq!(row.matches("=v1").count(), 2, "both hosts run v1: {table}");
    let listed = list(&a).await?;
    assert_eq!(listed[0]["active_version"], 1, "{listed}");
    assert_eq!(listed[0]["versions"][1]["chunks"], 3, "{listed}");
    assert_eq!(listed[0]["action"], "rollback", "{listed}");

    // Re-activate v2 (its component is in the store already), stop both.
    let (status, body) = push(&b, "tagger", big_add_field()).await?;
    assert_eq!((status, &body["version"]), (201, &Value::from(2)), "{body}");
    wait_hosts(&a, 2, 2, Duration::from_secs(5)).await?;
    stop_producer.store(true, Ordering::SeqCst);
    producer.await??;
    drop((a, b));

    // A new host with an empty plugin directory runs v2 from the topic.
    let empty = TempDir::new("no-plugins");
    let port_c = free_port();
    let c = Sluice::start(
        &config(&bootstrap, port_c, empty.path(), &t, "g3", &t.out2),
        port_c,
    )?;
    let bs = bootstrap.clone();
    wait_until(Duration::from_secs(60), "output on out2", || {
        sluice_tests::topic_size(&bs, &t.out2).unwrap_or(0) > 0
    })?;
    let set = schemas();
    let records = read_all(&bootstrap, &t.out2, Duration::from_secs(30))?;
    for record in &records {
        let value = set.decode_json(&record.value)?;
        assert_eq!(value["attributes"]["v"], "2", "{}", c.log());
        let header = record.header("sluice-plugins").unwrap_or_default();
        assert!(header.starts_with("tagger@v2-"), "{header}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_file_in_the_watched_directory_is_validated_and_published() -> anyhow::Result<()>
{
    let (broker, t) = broker("watch")?;
    let bootstrap = broker.bootstrap();
    let plugins = plugin_dir();
    let port = free_port();
    let text = config(&bootstrap, port, plugins.path(), &t, "g4", &t.out)
        .replace("store = true", "store = true\nwatch = true");
    let host = Sluice::start(&text, port)?;
    let tagger = plugins.path().join("tagger.wasm");

    // A broken build is rejected and nothing is published.
    std::fs::write(&tagger, dist("fixture-bad-init"))?;
    wait_until(Duration::from_secs(10), "the rejection in the log", || {
        host.log().contains("plugin watch: rejected")
    })?;
    assert_eq!(list(&host).await?, serde_json::json!([]));

    // A good one is published as v1 and swapped in.
    let bytes = dist("fixture-add-field");
    std::fs::write(&tagger, &bytes)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while hosts_running(&host, 1).await?.is_empty() {
        anyhow::ensure!(Instant::now() < deadline, "not swapped in\n{}", host.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = list(&host).await?;
    let sha = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&bytes));
    assert_eq!(listed[0]["sha256"], Value::from(sha), "{listed}");
    let events: Vec<Value> = (0..20).map(|i| sample_event(i, 5)).collect();
    produce_events(&bootstrap, &t.input, &events).await?;
    let b = bootstrap.clone();
    wait_until(Duration::from_secs(30), "20 outputs", || {
        sluice_tests::topic_size(&b, &t.out).unwrap_or(0) >= 20
    })?;
    let set = schemas();
    for record in read_all(&bootstrap, &t.out, Duration::from_secs(30))? {
        assert_eq!(set.decode_json(&record.value)?["attributes"]["v"], "2");
    }
    Ok(())
}

/// Run `sluice plugin ARGS` against `host`.
fn cli(host: &Sluice, args: &[&str]) -> anyhow::Result<std::process::Output> {
    Ok(std::process::Command::new(sluice_tests::sluice_bin())
        .arg("plugin")
        .args(["--url", &host.url, "--token", TOKEN])
        .args(args)
        .output()?)
}

/// Wait until `hosts` hosts report running `version` of `tagger`.
async fn wait_hosts(
    via: &Sluice,
    version: u64,
    hosts: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let running = hosts_running(via, version).await?;
        if running.len() >= hosts {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {running:?} run v{version} after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The plugin store topic is really compacted on Kafka: the host creates it
/// with `cleanup.policy=compact`, and once its segments roll the log cleaner
/// drops superseded `active/…` and `host/…` records; a new host restores
/// the right version from what is left.
#[tokio::test(flavor = "multi_thread")]
async fn the_plugin_store_topic_is_compacted_and_still_restores() -> anyhow::Result<()> {
    let (broker, t) = broker("compact")?;
    let bootstrap = broker.bootstrap();
    let plugins = plugin_dir();
    let port = free_port();
    let host = Sluice::start(
        &config(&bootstrap, port, plugins.path(), &t, "g5", &t.out),
        port,
    )?;
    let configs = sluice_tests::topic_configs(&bootstrap, &t.store)?;
    assert_eq!(
        configs.get("cleanup.policy").map(String::as_str),
        Some("compact"),
        "the host created {} compacted: {configs:?}",
        t.store
    );

    // Small segments and an eager cleaner, so compaction happens within
    // the test (the cleanup policy stays as the host set it).
    sluice_tests::alter_topic_configs(
        &bootstrap,
        &t.store,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "200"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("min.compaction.lag.ms", "0"),
            ("delete.retention.ms", "0"),
        ],
    )?;
    let (status, body) = push(&host, "tagger", dist("filter")).await?;
    assert_eq!(status, 201, "{body}");
    for round in 0..4 {
        // Each push or rollback rewrites `active/tagger` and the host's
        // `host/…/tagger`; wait past segment.ms so every one rolls a segment.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (status, body) = if round % 2 == 0 {
            push(&host, "tagger", dist("fixture-add-field")).await?
        } else {
            rollback(&host, "tagger").await?
        };
        assert!(
            status == 200 || status == 201,
            "round {round}: {status} {body}"
        );
    }
    // Active now: v2 (pushed last). One more record rolls the last segment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = push(&host, "tagger", dist("fixture-add-field")).await?;
    assert!(status == 200 || status == 201, "{status} {body}");

    let partition = format!("{}-0", t.store);
    let cleaned = |log: &str| {
        log.lines()
            .any(|l| l.contains(&partition) && l.to_lowercase().contains("cleaned"))
    };
    let started = Instant::now();
    wait_until(
        Duration::from_secs(60),
        "the log cleaner to compact the store topic",
        || cleaned(&broker.log()),
    )
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", broker.log_tail(80)))?;
    let high = sluice_tests::topic_size(&bootstrap, &t.store)?;
    let kept = read_all(&bootstrap, &t.store, Duration::from_secs(30))?.len();
    println!(
        "plugin store {}: cleanup.policy=compact; cleaned {:.1}s after the last push; {kept} records left of offsets 0..{high}",
        t.store,
        started.elapsed().as_secs_f64()
    );
    assert!(
        (kept as i64) < high,
        "compaction removed superseded records ({kept} of {high})"
    );
    drop(host);

    // A new host with an empty plugin directory restores v2 from it.
    let empty = TempDir::new("no-plugins");
    let port_b = free_port();
    let b = Sluice::start(
        &config(&bootstrap, port_b, empty.path(), &t, "g6", &t.out2),
        port_b,
    )?;
    let events: Vec<Value> = (0..20).map(|i| sample_event(i, 5)).collect();
    produce_events(&bootstrap, &t.input, &events).await?;
    let (bs, out2) = (bootstrap.clone(), t.out2.clone());
    wait_until(Duration::from_secs(60), "output on out2", move || {
        sluice_tests::topic_size(&bs, &out2).unwrap_or(0) >= 20
    })?;
    let set = schemas();
    for record in read_all(&bootstrap, &t.out2, Duration::from_secs(30))? {
        assert_eq!(
            set.decode_json(&record.value)?["attributes"]["v"],
            "2",
            "{}",
            b.log()
        );
    }
    Ok(())
}
