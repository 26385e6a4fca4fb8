//! The plugin store topic: its record format, a follower that rebuilds the
//! history from the beginning, and publishing.
//!
//! Every record lives in partition 0 of one topic (created with
//! `cleanup.policy=compact`), so every host reads the same history in the
//! same order. Keys and values:
//!
//! | key | value |
//! | --- | --- |
//! | `chunk/SHA256/I` | bytes `I*512KiB..` of the component whose sha256 is `SHA256` |
//! | `version/NAME/N` | JSON [`VersionRecord`]: version `N` of plugin `NAME` (its chunks come first) |
//! | `active/NAME` | JSON [`ActiveRecord`]: which version of `NAME` every host should run |
//! | `host/HOST/NAME` | JSON [`HostRecord`]: host `HOST` now runs that version of `NAME` |
//!
//! Every key is unique per fact, so compaction keeps the whole version
//! history and only the latest `active/NAME` and `host/HOST/NAME`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures::executor::block_on;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::kafka::{Kafka, Producer};

/// How long a store record may wait for the broker's acknowledgement.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// Component bytes per chunk record: below librdkafka's default 1 MB
/// `message.max.bytes` with room for the record overhead.
pub const CHUNK_BYTES: usize = 512 * 1024;

/// One published version of a plugin.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct VersionRecord {
    /// Plugin name.
    pub name: String,
    /// Version number, from 1, increasing per name.
    pub version: u32,
    /// Full sha256 of the component, hex.
    pub sha256: String,
    /// Component size in bytes.
    pub size: usize,
    /// Number of `chunk/SHA256/I` records holding it.
    pub chunks: u32,
    /// When it was published, epoch milliseconds.
    pub published_at_ms: i64,
    /// The host that validated and published it.
    pub published_by: String,
    /// The contract version the component exports (`0.2.0`); absent in
    /// records written before hosts recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<String>,
}

/// Which version of a plugin every host should run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ActiveRecord {
    /// Plugin name.
    pub name: String,
    /// The version to run.
    pub version: u32,
    /// `publish` (a push) or `rollback`.
    pub action: String,
    /// When, epoch milliseconds.
    pub at_ms: i64,
    /// The host that published it.
    pub by: String,
}

/// A host's report that it swapped a version in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct HostRecord {
    /// Host id.
    pub host: String,
    /// Plugin name.
    pub name: String,
    /// Version number it runs (0: from its plugin directory, not the store).
    pub version: u32,
    /// sha256 of what it runs.
    pub sha256: String,
    /// Stages running it there.
    pub stages: Vec<String>,
    /// When it swapped it in, epoch milliseconds.
    pub at_ms: i64,
}

/// A version and, once all its chunks were read, its bytes.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Its record.
    pub record: VersionRecord,
    /// The component, `None` if chunks were missing.
    pub bytes: Option<Arc<Vec<u8>>>,
}

/// Everything read from the store topic so far.
#[derive(Debug, Default)]
pub struct StoreState {
    chunks: HashMap<(String, u32), Vec<u8>>,
    /// Versions per plugin name.
    pub versions: BTreeMap<String, BTreeMap<u32, Stored>>,
    /// The active version per plugin name.
    pub active: BTreeMap<String, ActiveRecord>,
    /// What each host runs, by (host, name).
    pub hosts: BTreeMap<(String, String), HostRecord>,
    /// Next offset to read.
    pub next_offset: i64,
}

impl StoreState {
    /// Apply one record; returns the plugin name whose active version
    /// changed, if any.
    pub fn apply(&mut self, key: &str, value: &[u8]) -> anyhow::Result<Option<String>> {
        let mut parts = key.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("chunk"), Some(sha), Some(index)) => {
                let index: u32 = index.parse().context("chunk index")?;
                self.chunks.insert((sha.to_string(), index), value.to_vec());
                Ok(None)
            }
            (Some("version"), Some(_), Some(_)) => {
                let record: VersionRecord =
                    serde_json::from_slice(value).context("version record")?;
                let bytes = self.assemble(&record);
                if bytes.is_none() {
                    tracing::warn!(plugin = %record.name, version = record.version, "plugin store: chunks of this version are missing");
                }
                self.versions
                    .entry(record.name.clone())
                    .or_default()
                    .insert(record.version, Stored { record, bytes });
                Ok(None)
            }
            (Some("active"), Some(name), None) => {
                let record: ActiveRecord =
                    serde_json::from_slice(value).context("active record")?;
                let changed = self.active.get(name) != Some(&record);
                self.active.insert(name.to_string(), record);
                Ok(changed.then(|| name.to_string()))
            }
            (Some("host"), Some(host), Some(name)) => {
                let record: HostRecord = serde_json::from_slice(value).context("host record")?;
                self.hosts
                    .insert((host.to_string(), name.to_string()), record);
                Ok(None)
            }
            _ => bail!("unknown plugin store key `{key}`"),
        }
    }

    fn assemble(&mut self, record: &VersionRecord) -> Option<Arc<Vec<u8>>> {
        let mut bytes = Vec::with_capacity(record.size);
        for i in 0..record.chunks {
            bytes.extend_from_slice(self.chunks.get(&(record.sha256.clone(), i))?);
        }
        for i in 0..record.chunks {
            self.chunks.remove(&(record.sha256.clone(), i));
        }
        let sha = crate::schema::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        (sha == record.sha256).then(|| Arc::new(bytes))
    }

    /// The active version of `name` with its bytes.
    pub fn active_version(&self, name: &str) -> Option<&Stored> {
        let active = self.active.get(name)?;
        self.versions.get(name)?.get(&active.version)
    }

    /// The highest version number of `name` (0 if none).
    pub fn latest(&self, name: &str) -> u32 {
        self.versions
            .get(name)
            .and_then(|v| v.keys().next_back().copied())
            .unwrap_or(0)
    }

    /// The version of `name` whose component has this sha256.
    pub fn by_sha(&self, name: &str, sha256: &str) -> Option<u32> {
        self.versions
            .get(name)?
            .values()
            .find(|s| s.record.sha256 == sha256)
            .map(|s| s.record.version)
    }
}

/// The store topic, followed by a background thread and written to by
/// pushes, rollbacks and host reports.
pub struct Store {
    topic: String,
    producer: Producer,
    shared: Arc<(Mutex<StoreState>, Condvar)>,
    stop: Arc<AtomicBool>,
    follower: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Now, epoch milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl Store {
    /// Create the topic if needed (one partition, compacted), start the
    /// follower, and wait until it read everything the topic held.
    /// `changes` gets the name of every plugin whose active version changes
    /// after that.
    pub async fn open(kafka: &Kafka, topic: &str, changes: Sender<String>) -> anyhow::Result<Self> {
        kafka
            .ensure_compacted_topic(topic)
            .await
            .with_context(|| format!("plugin store topic {topic}"))?;
        // Replaceable like the ingest and stage producers: a publish that
        // failed with the broker unreachable leaves stale idempotence state.
        let producer = kafka
            .producer("plugin-store", PUBLISH_TIMEOUT)
            .context("cannot create the plugin store producer")?;
        // Group-less, manually assigned; short fetch waits so a push
        // reaches every host quickly (one fetch every 100 ms when idle).
        let mut reader_config = kafka.reader_config("plugin-store");
        reader_config.set("fetch.wait.max.ms", "100");
        let reader: BaseConsumer = reader_config
            .create()
            .context("cannot create the plugin store reader")?;
        let (_, high) = fetch_high(&reader, topic)?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
        reader
            .assign(&assignment)
            .with_context(|| format!("cannot read plugin store topic {topic}"))?;
        let shared = Arc::new((Mutex::new(StoreState::default()), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let caught_up = Arc::new(AtomicBool::new(high == 0));
        let follower_caught_up = caught_up.clone();
        let follower_shared = shared.clone();
        let follower_stop = stop.clone();
        let follower = std::thread::Builder::new()
            .name("plugin-store".into())
            .spawn(move || {
                follow(
                    reader,
                    follower_shared,
                    follower_stop,
                    high,
                    follower_caught_up,
                    changes,
                )
            })
            .context("cannot start the plugin store follower")?;
        let store = Self {
            topic: topic.to_string(),
            producer,
            shared,
            stop,
            follower: Mutex::new(Some(follower)),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !caught_up.load(Ordering::SeqCst) {
            if Instant::now() > deadline {
                bail!("plugin store: could not read {topic} up to offset {high} within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(topic, records = high, "plugin store read");
        Ok(store)
    }

    /// The state read so far.
    pub fn state(&self) -> MutexGuard<'_, StoreState> {
        self.shared.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait until `done` holds for the state read, up to `timeout`.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&StoreState) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state();
        loop {
            if done(&state) {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            state = match self.shared.1.wait_timeout(state, left) {
                Ok((s, _)) => s,
                Err(p) => p.into_inner().0,
            };
        }
    }

    fn send(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let record = FutureRecord::to(&self.topic)
            .key(key)
            .payload(value)
            .partition(0);
        let producer = self.producer.get();
        let delivery = producer
            .send_result(record)
            .map_err(|(e, _)| {
                self.producer.on_failure(&producer, &e);
                e
            })
            .with_context(|| format!("cannot publish {key} to {}", self.topic))?;
        match block_on(delivery) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => {
                self.producer.on_failure(&producer, &e);
                Err(e).with_context(|| format!("publishing {key} to {}", self.topic))
            }
            Err(_) => bail!("publishing {key} to {}: cancelled", self.topic),
        }
    }

    /// Publish a new version: its chunks, then its record (blocking).
    pub fn publish_version(&self, record: &VersionRecord, bytes: &[u8]) -> anyhow::Result<()> {
        for (i, chunk) in bytes.chunks(CHUNK_BYTES).enumerate() {
            self.send(&format!("chunk/{}/{i}", record.sha256), chunk)?;
        }
        self.send(
            &format!("version/{}/{}", record.name, record.version),
            &serde_json::to_vec(record)?,
        )
    }

    /// Make `record` the active version of its plugin (blocking).
    pub fn publish_active(&self, record: &ActiveRecord) -> anyhow::Result<()> {
        self.send(
            &format!("active/{}", record.name),
            &serde_json::to_vec(record)?,
        )
    }

    /// Report what this host runs (blocking).
    pub fn publish_host(&self, record: &HostRecord) -> anyhow::Result<()> {
        self.send(
            &format!("host/{}/{}", record.host, record.name),
            &serde_json::to_vec(record)?,
        )
    }
}

impl Store {
    /// Stop following the topic (before the broker connection goes away on
    /// shutdown); waits for the follower's current poll to end.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let follower = self.follower.lock().ok().and_then(|mut f| f.take());
        if let Some(follower) = follower {
            let _ = follower.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn fetch_high(reader: &BaseConsumer, topic: &str) -> anyhow::Result<(i64, i64)> {
    reader
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .with_context(|| format!("cannot read the offsets of plugin store topic {topic}"))
}

fn follow(
    reader: BaseConsumer,
    shared: Arc<(Mutex<StoreState>, Condvar)>,
    stop: Arc<AtomicBool>,
    high: i64,
    caught_up: Arc<AtomicBool>,
    changes: Sender<String>,
) {
    while !stop.load(Ordering::SeqCst) {
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let key = message
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default();
                let value = message.payload().unwrap_or_default();
                let changed = {
                    let mut state = shared.0.lock().unwrap_or_else(|p| p.into_inner());
                    state.next_offset = message.offset() + 1;
                    match state.apply(&key, value) {
                        Ok(changed) => changed,
                        Err(e) => {
                            tracing::warn!(key, offset = message.offset(), error = %format!("{e:#}"), "plugin store: skipping a record");
                            None
                        }
                    }
                };
                shared.1.notify_all();
                if message.offset() + 1 >= high {
                    caught_up.store(true, Ordering::SeqCst);
                }
                if let Some(name) = changed
                    && caught_up.load(Ordering::SeqCst)
                    && changes.send(name).is_err()
                {
                    return;
                }
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "plugin store: read error");
                std::thread::sleep(Duration::from_millis(200));
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(name: &str, version: u32, bytes: &[u8]) -> VersionRecord {
        VersionRecord {
            name: name.into(),
            version,
            sha256: crate::schema::hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes)),
            size: bytes.len(),
            chunks: bytes.chunks(4).count() as u32,
            published_at_ms: 1,
            published_by: "h".into(),
            contract: Some("0.2.0".into()),
        }
    }

    #[test]
    fn chunks_assemble_into_a_version_and_active_changes_are_reported() {
        let mut state = StoreState::default();
        let bytes = b"\0asm-0123456789";
        let record = version("tagger", 1, bytes);
        for (i, chunk) in bytes.chunks(4).enumerate() {
            let key = format!("chunk/{}/{i}", record.sha256);
            assert_eq!(state.apply(&key, chunk).expect("chunk"), None);
        }
        let key = "version/tagger/1";
        state
            .apply(key, &serde_json::to_vec(&record).expect("json"))
            .expect("version");
        let active = ActiveRecord {
            name: "tagger".into(),
            version: 1,
            action: "publish".into(),
            at_ms: 2,
            by: "h".into(),
        };
        let value = serde_json::to_vec(&active).expect("json");
        assert_eq!(
            state.apply("active/tagger", &value).expect("active"),
            Some("tagger".into())
        );
        // The same record again is no change.
        assert_eq!(state.apply("active/tagger", &value).expect("active"), None);
        let stored = state.active_version("tagger").expect("active version");
        assert_eq!(stored.bytes.as_deref().map(Vec::as_slice), Some(&bytes[..]));
        assert_eq!(state.latest("tagger"), 1);
        assert_eq!(state.by_sha("tagger", &record.sha256), Some(1));
    }

    #[test]
    fn a_version_with_a_missing_chunk_has_no_bytes() {
        let mut state = StoreState::default();
        let bytes = b"\0asm-0123456789";
        let record = version("tagger", 1, bytes);
        state
            .apply(&format!("chunk/{}/0", record.sha256), &bytes[..4])
            .expect("chunk");
        state
            .apply(
                "version/tagger/1",
                &serde_json::to_vec(&record).expect("json"),
            )
            .expect("version");
        assert!(state.versions["tagger"][&1].bytes.is_none());
        assert!(state.apply("bogus/x", b"").is_err());
    }
}
