//! What the delivery tests need: a steady load of uniquely numbered events
//! (with a share of undecodable records that must be dead-lettered), a
//! stage config in either delivery mode, readers that see a topic as a
//! `read_committed` (or `read_uncommitted`) consumer does, and the counts
//! that say whether each input arrived exactly once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::pipeline::{Names, event};
use crate::repo_path;

/// Every `BAD_EVERY`th record of a load is not Avro: the stage dead-letters it.
pub const BAD_EVERY: usize = 40;

/// The value of the `i`th record of a load: an event, or an undecodable
/// record `bad-<i>`.
pub fn load_value(schema: &sluice::schema::LoadedSchema, i: usize) -> anyhow::Result<Vec<u8>> {
    if i % BAD_EVERY == BAD_EVERY - 1 {
        return Ok(format!("bad-{i:07}").into_bytes());
    }
    schema.encode_json(&event(i)).map_err(anyhow::Error::msg)
}

/// The id of a record of a load, from an output value (its `event_id`) or a
/// dead letter (the undecodable bytes themselves).
pub fn load_id(schemas: &sluice::schema::SchemaSet, value: &[u8]) -> Option<String> {
    if value.starts_with(b"bad-") {
        return String::from_utf8(value.to_vec()).ok();
    }
    let json = schemas.decode_json(value).ok()?;
    json["event_id"].as_str().map(str::to_string)
}

/// The id [`load_id`] gives the `i`th record of a load.
pub fn expected_id(i: usize) -> String {
    if i % BAD_EVERY == BAD_EVERY - 1 {
        format!("bad-{i:07}")
    } else {
        event(i)["event_id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// Records produced at a steady rate on a thread of its own until stopped.
pub struct SteadyLoad {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    thread: Option<JoinHandle<anyhow::Result<usize>>>,
}

impl SteadyLoad {
    /// Produce to `topic` at about `per_second` records a second (keys
    /// spread over the partitions), idempotently and with a delivery
    /// timeout long enough to outlast a broker restart.
    pub fn start(bootstrap: &str, topic: &str, per_second: usize) -> anyhow::Result<Self> {
        let schema =
            sluice::schema::LoadedSchema::from_file(&repo_path("schemas/telemetry_event.avsc"))?;
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "300000")
            .create()?;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let (topic, flag, counter) = (topic.to_string(), stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || -> anyhow::Result<usize> {
            let started = Instant::now();
            let mut i = 0usize;
            while !flag.load(Ordering::SeqCst) {
                let due = (started.elapsed().as_secs_f64() * per_second as f64) as usize;
                while i < due {
                    let value = load_value(&schema, i)?;
                    let key = format!("user-{}", i % 97);
                    let mut record = BaseRecord::to(&topic).key(&key).payload(&value);
                    loop {
                        match producer.send(record) {
                            Ok(()) => break,
                            Err((KafkaError::MessageProduction(_), back)) => {
                                record = back;
                                producer.poll(Duration::from_millis(10));
                            }
                            Err((e, _)) => bail!("load: {e}"),
                        }
                    }
                    i += 1;
                    counter.store(i, Ordering::SeqCst);
                }
                producer.poll(Duration::from_millis(5));
            }
            producer
                .flush(Duration::from_secs(300))
                .context("load: not every record was acknowledged")?;
            Ok(i)
        });
        Ok(Self {
            stop,
            sent,
            thread: Some(thread),
        })
    }

    /// Records handed to the producer so far.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::SeqCst)
    }

    /// Stop, wait until every record is acknowledged; returns how many
    /// (records `0..n` of the load).
    pub fn finish(mut self) -> anyhow::Result<usize> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("load thread panicked"))?,
            None => bail!("already finished"),
        }
    }
}

impl Drop for SteadyLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Read every record of `topic` a consumer with `isolation`
/// (`read_committed` or `read_uncommitted`) sees, up to the end of each
/// partition (for `read_committed`, the last stable offset: records of
/// aborted transactions and transaction markers are skipped).
pub fn read_isolated_at(
    bootstrap: &str,
    topic: &str,
    isolation: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<(i32, i64, Vec<u8>)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "sluice-test-isolated-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation)
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut assignment = TopicPartitionList::new();
    let mut open = std::collections::BTreeSet::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            assignment.add_partition_offset(topic, p.id(), Offset::Beginning)?;
            open.insert(p.id());
        }
    }
    if open.is_empty() {
        bail!("topic {topic} has no partitions");
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while !open.is_empty() {
        if Instant::now() > deadline {
            bail!("reading {topic}: partitions {open:?} did not reach their end in {timeout:?}");
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push((
                m.partition(),
                m.offset(),
                m.payload().unwrap_or_default().to_vec(),
            )),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => bail!("reading {topic}: {e}"),
            None => {}
        }
    }
    Ok(out)
}

/// [`read_isolated_at`] without the positions.
pub fn read_isolated(
    bootstrap: &str,
    topic: &str,
    isolation: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<Vec<u8>>> {
    Ok(read_isolated_at(bootstrap, topic, isolation, timeout)?
        .into_iter()
        .map(|(_, _, value)| value)
        .collect())
}

/// How the results of a load's `inputs` records came out.
#[derive(Debug)]
pub struct Tally {
    /// Records produced to the input.
    pub inputs: usize,
    /// Records in the output topic.
    pub outputs: usize,
    /// Records in the dead-letter topic.
    pub dead_letters: usize,
    /// Input records seen more than once (extra copies counted).
    pub duplicates: usize,
    /// Input records seen in neither topic.
    pub lost: usize,
    /// Records in output and dead-letter topics that no input explains.
    pub unexpected: usize,
    /// Where the duplicates are, when there are any (empty otherwise): how
    /// many per output partition, the range of input indices they come
    /// from, and the positions of the first few, so a failure says which
    /// partitions and which part of the load to look at in the host logs.
    pub duplicates_at: String,
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "inputs={} outputs={} dead_letters={} duplicates={} lost={} unexpected={}",
            self.inputs,
            self.outputs,
            self.dead_letters,
            self.duplicates,
            self.lost,
            self.unexpected
        )?;
        if !self.duplicates_at.is_empty() {
            write!(f, "; duplicates: {}", self.duplicates_at)?;
        }
        Ok(())
    }
}

/// Count, as a `read_committed` consumer sees them, how the `inputs`
/// records of a load came out of `names`' output and dead-letter topics.
pub fn tally(bootstrap: &str, names: &Names, inputs: usize) -> anyhow::Result<Tally> {
    let Seen {
        at: seen,
        unreadable,
        outputs,
        dead_letters,
    } = seen_committed(bootstrap, names, Duration::from_secs(120))?;
    let mut unexpected = unreadable;
    let expected: HashMap<String, usize> = (0..inputs).map(|i| (expected_id(i), i)).collect();
    let lost = expected.keys().filter(|id| !seen.contains_key(*id)).count();
    unexpected += seen.keys().filter(|id| !expected.contains_key(*id)).count();
    let duplicates = seen.values().map(|at| at.len().saturating_sub(1)).sum();
    let duplicates_at = describe_duplicates(&seen, &expected);
    Ok(Tally {
        inputs,
        outputs,
        dead_letters,
        duplicates,
        lost,
        unexpected,
        duplicates_at,
    })
}

/// Where a record was read: `out` or `dlq`, partition, offset.
pub type Position = (&'static str, i32, i64);

/// What a `read_committed` consumer sees in a stage's output and
/// dead-letter topics.
pub struct Seen {
    /// Each load id (see [`load_id`]), where it was read.
    pub at: HashMap<String, Vec<Position>>,
    /// Records no load id could be read from.
    pub unreadable: usize,
    /// Records in the output topic.
    pub outputs: usize,
    /// Records in the dead-letter topic.
    pub dead_letters: usize,
}

/// Read `names.output` and `names.dlq` as a `read_committed` consumer and
/// note where each load id is.
pub fn seen_committed(bootstrap: &str, names: &Names, timeout: Duration) -> anyhow::Result<Seen> {
    let mut schemas = sluice::schema::SchemaSet::default();
    schemas.load(&repo_path("schemas/telemetry_event.avsc"))?;
    let outputs = read_isolated_at(bootstrap, &names.output, "read_committed", timeout)?;
    let dead = read_isolated_at(bootstrap, &names.dlq, "read_committed", timeout)?;
    let mut seen = Seen {
        at: HashMap::new(),
        unreadable: 0,
        outputs: outputs.len(),
        dead_letters: dead.len(),
    };
    let all = outputs
        .iter()
        .map(|r| ("out", r))
        .chain(dead.iter().map(|r| ("dlq", r)));
    for (topic, (partition, offset, value)) in all {
        match load_id(&schemas, value) {
            Some(id) => seen
                .at
                .entry(id)
                .or_default()
                .push((topic, *partition, *offset)),
            None => seen.unreadable += 1,
        }
    }
    Ok(seen)
}

/// [`Tally::duplicates_at`] of the ids `seen` more than once.
fn describe_duplicates(
    seen: &HashMap<String, Vec<Position>>,
    expected: &HashMap<String, usize>,
) -> String {
    let mut repeated: Vec<(usize, &Vec<Position>)> = seen
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(id, at)| (expected.get(id).copied().unwrap_or(usize::MAX), at))
        .collect();
    if repeated.is_empty() {
        return String::new();
    }
    repeated.sort();
    let mut per_partition: BTreeMap<(&str, i32), usize> = BTreeMap::new();
    for (_, at) in &repeated {
        for &(topic, partition, _) in at.iter().skip(1) {
            *per_partition.entry((topic, partition)).or_default() += 1;
        }
    }
    let first: Vec<String> = repeated
        .iter()
        .take(3)
        .map(|(i, at)| {
            let at: Vec<String> = at.iter().map(|(t, p, o)| format!("{t}/{p}@{o}")).collect();
            format!("input #{i} at {}", at.join(" and "))
        })
        .collect();
    format!(
        "{} ids from input #{} to #{}; extra copies per partition {per_partition:?}; {}",
        repeated.len(),
        repeated[0].0,
        repeated[repeated.len() - 1].0,
        first.join("; ")
    )
}

/// The admin token of [`stage_config`]'s hosts.
pub const ADMIN_TOKEN: &str = "delivery-token";

/// A host config running one stage over `names` (chain `redact, enrich`:
/// every decodable event comes out, every undecodable one is dead-lettered)
/// with `delivery` (`"at-least-once"` or `"exactly-once"`), admin on
/// `port`, and `instance` as its `[plugins] host_id`.
pub fn stage_config(
    bootstrap: &str,
    port: u16,
    names: &Names,
    delivery: &str,
    instance: &str,
) -> String {
    stage_config_with_store(bootstrap, port, names, delivery, instance, None)
}

/// [`stage_config`] with the plugin store on, in `store_topic`, when given.
pub fn stage_config_with_store(
    bootstrap: &str,
    port: u16,
    names: &Names,
    delivery: &str,
    instance: &str,
    store_topic: Option<&str>,
) -> String {
    let store = store_topic
        .map(|t| format!("store = true\nstore_topic = \"{t}\"\n"))
        .unwrap_or_default();
    let Names {
        input,
        output,
        dlq,
        group,
    } = names;
    format!(
        r#"
schemas = "{{schemas}}"

[kafka]
brokers = "{bootstrap}"
[kafka.client]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"

[admin]
listen = "127.0.0.1:{port}"
token = "{ADMIN_TOKEN}"

[plugins]
dir = "{{plugins}}"
host_id = "{instance}"
{store}
[[stage]]
name = "deliver"
input = "{input}"
output = "{output}"
dead_letter = "{dlq}"
group = "{group}"
chain = ["redact", "enrich"]
batch_size = 200
batch_wait_ms = 20
delivery = "{delivery}"
transaction_interval_ms = 100
transaction_timeout_ms = 10000

[stage.config.redact]
fields = ["attributes.email", "attributes.ip"]
mode = "hash"
salt = "delivery-tests"

[stage.config.enrich]
lookups = [{{ from = "source", to = "attributes.team", table = {{ web = "growth", checkout = "payments" }}, default = "unknown" }}]
"#
    )
}

/// The input partitions a host's stage `stage` holds, from its `/readyz`.
pub async fn assignment(admin_url: &str, stage: &str) -> anyhow::Result<Vec<String>> {
    let body: serde_json::Value = reqwest::get(format!("{admin_url}/readyz"))
        .await?
        .json()
        .await?;
    Ok(body["stages"][stage]["assignment"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// A counter's value in a host's `/metrics` (summed over label sets that
/// contain every `labels` pair).
pub async fn metric(admin_url: &str, name: &str, labels: &[(&str, &str)]) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("{admin_url}/metrics"))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |sum, v| sum + v))
}

/// Publish `component` as plugin `name` through a host's admin API; the
/// store's answer (status, body).
pub async fn push_plugin(
    admin_url: &str,
    name: &str,
    component: Vec<u8>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let response = reqwest::Client::new()
        .put(format!("{admin_url}/admin/plugins/{name}"))
        .bearer_auth(ADMIN_TOKEN)
        .body(component)
        .send()
        .await?;
    Ok((response.status().as_u16(), response.json().await?))
}

/// The hosts that report running `version` of plugin `name`, from a host's
/// admin API.
pub async fn hosts_running(
    admin_url: &str,
    name: &str,
    version: u64,
) -> anyhow::Result<BTreeSet<String>> {
    let plugins: serde_json::Value = reqwest::Client::new()
        .get(format!("{admin_url}/admin/plugins"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .json()
        .await?;
    Ok(plugins
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == name)
        .flat_map(|p| p["hosts"].as_array().cloned().unwrap_or_default())
        .filter(|h| h["version"].as_u64() == Some(version))
        .filter_map(|h| h["host"].as_str().map(String::from))
        .collect())
}
