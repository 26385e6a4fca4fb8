//! Dead letters as a workflow: list a stage's dead letters by plugin and
//! error, show one with its headers and decoded value, and redrive selected
//! ones back to the stage's input, optionally through a named plugin chain
//! first (as `sluice replay` runs one). Behind `/admin/dlq` (handlers in
//! `admin/dlq.rs`) and `sluice dlq` ([`cli`]).
//!
//! - **Reading** uses a group-less reader with manual assignment, like
//!   topic tails: it never disturbs stages. Each request reads up to the
//!   high watermarks it found when it started, so a redrive whose records
//!   fail again (and are dead-lettered again) never reads its own output.
//! - **A dead letter belongs to a stage** by its `sluice-stage` header, so
//!   stages sharing one dead-letter topic each see their own.
//! - **Redrive** produces with the host's idempotent producer (`acks=all`)
//!   to the stage's input and answers after every record is acknowledged.
//!   Each redriven record keeps the dead letter's key, value, timestamp,
//!   origin headers and the producer's headers, loses the failure headers,
//!   and gains `sluice-redriven-by` (the admin token's name),
//!   `sluice-redrive-id`, `sluice-redrive-count` and `sluice-redriven-from`.
//!   If it fails again it is dead-lettered again with those headers, and the
//!   operator decides whether to redrive it again: nothing loops by itself.

pub mod api;
pub mod cli;
mod redrive;
pub(crate) use redrive::Through;
pub mod select;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::{LoadedConfig, StageConfig};
use crate::kafka::{Kafka, Producer};
use crate::plugins::PluginService;
use crate::schema::SchemaSet;
use api::{DEFAULT_LIST_LIMIT, ListAnswer, ListQuery, MAX_LIST_LIMIT, ShowAnswer};
use select::{Filter, Groups};

/// How long one broker request (metadata, watermarks) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a read waits for records it knows exist.
const STALL_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the broker may take to acknowledge a redriven record.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a dead-letter request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum DlqError {
    /// What the caller asked for is malformed (HTTP 400).
    BadRequest(String),
    /// No such stage on this host (HTTP 404 `unknown_stage`).
    UnknownStage(String),
    /// No dead letter there (HTTP 404 `not_found`).
    NotFound(String),
    /// The broker could not be read or written (HTTP 503).
    Unavailable(String),
}

impl std::fmt::Display for DlqError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DlqError::BadRequest(m)
            | DlqError::UnknownStage(m)
            | DlqError::NotFound(m)
            | DlqError::Unavailable(m) => f.write_str(m),
        }
    }
}

impl From<anyhow::Error> for DlqError {
    fn from(e: anyhow::Error) -> Self {
        DlqError::Unavailable(format!("{e:#}"))
    }
}

/// The dead letters of this host's stages.
pub struct Dlq {
    loaded: LoadedConfig,
    /// One reader; requests take turns (assignment is per consumer).
    reader: Mutex<BaseConsumer>,
    producer: Producer,
    schemas: Arc<SchemaSet>,
    plugins: Option<Arc<PluginService>>,
    /// One redrive at a time on this host.
    redriving: Mutex<()>,
}

impl Dlq {
    /// The dead letters of `loaded`'s stages on `kafka`, decoded with
    /// `schemas`; `plugins` (the store) resolves `through` versions.
    pub fn new(
        loaded: &LoadedConfig,
        kafka: &Kafka,
        schemas: Arc<SchemaSet>,
        plugins: Option<Arc<PluginService>>,
    ) -> anyhow::Result<Self> {
        let reader: BaseConsumer = kafka
            .reader_config("dlq")
            .set("enable.partition.eof", "true")
            .create()
            .context("cannot create the dead-letter reader")?;
        Ok(Self {
            loaded: loaded.clone(),
            reader: Mutex::new(reader),
            producer: kafka.producer("redrive", DELIVERY_TIMEOUT)?,
            schemas,
            plugins,
            redriving: Mutex::new(()),
        })
    }

    /// The configuration of this host's stage `name`.
    pub(crate) fn stage(&self, name: &str) -> Result<&StageConfig, DlqError> {
        let stages = &self.loaded.config.stages;
        stages
            .iter()
            .find(|s| s.name.get_ref() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = stages.iter().map(|s| s.name.get_ref().as_str()).collect();
                DlqError::UnknownStage(format!(
                    "no stage `{name}` on this host (stages: {})",
                    if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    }
                ))
            })
    }

    /// The group-less reader, one request at a time.
    pub(crate) fn reader(&self) -> Result<std::sync::MutexGuard<'_, BaseConsumer>, DlqError> {
        self.reader
            .lock()
            .map_err(|_| DlqError::Unavailable("the dead-letter reader is poisoned".into()))
    }

    /// `GET /admin/dlq/{stage}`: the stage's dead letters passing the
    /// query's filters, the first `limit` of them, and every match counted
    /// by (plugin, error).
    pub fn list(&self, stage: &str, query: &ListQuery) -> Result<ListAnswer, DlqError> {
        let config = self.stage(stage)?;
        let limit = query.limit.unwrap_or(DEFAULT_LIST_LIMIT);
        if !(1..=MAX_LIST_LIMIT).contains(&limit) {
            return Err(DlqError::BadRequest(format!(
                "`limit` is 1 to {MAX_LIST_LIMIT}, not {limit}"
            )));
        }
        if query.from.is_some_and(|f| f < 0) || query.partition.is_some_and(|p| p < 0) {
            return Err(DlqError::BadRequest(
                "`from` and `partition` are 0 or more".into(),
            ));
        }
        let filter = Filter::new(query.plugin.as_deref(), query.error.as_deref());
        let topic = config.dead_letter_topic();
        let mut answer = ListAnswer {
            stage: stage.to_string(),
            topic: topic.clone(),
            scanned: 0,
            matched: 0,
            entries: Vec::new(),
            truncated: false,
            groups: Vec::new(),
        };
        let mut groups = Groups::default();
        let reader = self.reader()?;
        answer.scanned = scan(
            &reader,
            &topic,
            |p| {
                query
                    .partition
                    .is_none_or(|only| only == p)
                    .then(|| (query.from.unwrap_or(0), None))
            },
            |message| {
                let entry = entry_of(message);
                if entry.stage != stage || !filter.matches(&entry) {
                    return Ok(true);
                }
                answer.matched += 1;
                groups.add(&entry);
                if answer.entries.len() < limit {
                    answer.entries.push(entry);
                } else {
                    answer.truncated = true;
                }
                Ok(true)
            },
        )?;
        answer.entries.sort_by_key(|e| (e.partition, e.offset));
        answer.groups = groups.into_sorted();
        Ok(answer)
    }

    /// `GET /admin/dlq/{stage}/{partition}/{offset}`: one dead letter with
    /// every header and its value decoded to JSON.
    pub fn show(&self, stage: &str, partition: i32, offset: i64) -> Result<ShowAnswer, DlqError> {
        let config = self.stage(stage)?;
        let topic = config.dead_letter_topic();
        let not_found = || {
            DlqError::NotFound(format!(
                "no dead letter of stage `{stage}` at {topic} partition {partition} offset {offset}"
            ))
        };
        if partition < 0 || offset < 0 {
            return Err(not_found());
        }
        let mut found = None;
        let reader = self.reader()?;
        scan(
            &reader,
            &topic,
            |p| (p == partition).then_some((offset, Some(offset + 1))),
            |message| {
                if message.offset() == offset {
                    let headers = crate::kafka::record_headers(message);
                    let value = match message.payload() {
                        Some(payload) => decode(&self.schemas, payload),
                        None => serde_json::Value::Null,
                    };
                    found = Some(ShowAnswer {
                        entry: entry_of(message),
                        headers: headers
                            .into_iter()
                            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                            .collect(),
                        value,
                    });
                }
                Ok(false)
            },
        )?;
        match found {
            Some(shown) if shown.entry.stage == stage => Ok(shown),
            _ => Err(not_found()),
        }
    }
}

/// The value's natural JSON, or why it cannot be decoded.
fn decode(schemas: &SchemaSet, payload: &[u8]) -> serde_json::Value {
    let decoded = schemas.decode_to_json(payload);
    match decoded.and_then(|(_, json)| Ok(serde_json::from_slice(&json)?)) {
        Ok(value) => value,
        Err(e) => serde_json::json!({ "undecodable": format!("{e:#}") }),
    }
}

fn entry_of(message: &BorrowedMessage<'_>) -> api::Entry {
    select::entry(
        message.partition(),
        message.offset(),
        message.timestamp().to_millis(),
        message.key(),
        &crate::kafka::record_headers(message),
    )
}

/// Read `topic` with `consumer`: each partition `window` names, from its
/// first offset (or the oldest kept) to its end offset (or the high
/// watermark when the read started), handing each record to `visit`, which
/// returns false to stop. A topic that does not exist reads as empty.
/// Returns how many records were read.
pub(crate) fn scan(
    consumer: &BaseConsumer,
    topic: &str,
    window: impl Fn(i32) -> Option<(i64, Option<i64>)>,
    mut visit: impl FnMut(&BorrowedMessage<'_>) -> anyhow::Result<bool>,
) -> anyhow::Result<u64> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .with_context(|| format!("cannot read the metadata of {topic}"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut active: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let Some((first, end)) = window(partition) else {
            continue;
        };
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
            .with_context(|| format!("cannot read the offsets of {topic}/{partition}"))?;
        let start = first.max(low);
        let end = end.map_or(high, |e| e.min(high));
        if start < end {
            assignment.add_partition_offset(topic, partition, Offset::Offset(start))?;
            active.insert(partition, end);
        }
    }
    if active.is_empty() {
        return Ok(0);
    }
    consumer
        .assign(&assignment)
        .context("cannot assign partitions")?;
    let result = read_assigned(consumer, &mut active, &mut visit);
    let _ = consumer.unassign();
    result
}

fn read_assigned(
    consumer: &BaseConsumer,
    active: &mut HashMap<i32, i64>,
    visit: &mut impl FnMut(&BorrowedMessage<'_>) -> anyhow::Result<bool>,
) -> anyhow::Result<u64> {
    let mut scanned = 0u64;
    let mut last = Instant::now();
    while !active.is_empty() {
        let message = match consumer.poll(Duration::from_millis(100)) {
            None => {
                anyhow::ensure!(
                    last.elapsed() < STALL_TIMEOUT,
                    "no record arrived for {STALL_TIMEOUT:?} with partitions {:?} unfinished",
                    active.keys().collect::<Vec<_>>()
                );
                continue;
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                active.remove(&p);
                continue;
            }
            Some(Err(e)) => return Err(e).context("cannot read from the broker"),
            Some(Ok(message)) => message,
        };
        last = Instant::now();
        let partition = message.partition();
        let Some(&end) = active.get(&partition) else {
            continue;
        };
        if message.offset() >= end {
            active.remove(&partition);
            continue;
        }
        if message.offset() + 1 >= end {
            active.remove(&partition);
        }
        scanned += 1;
        if !visit(&message)? {
            break;
        }
    }
    Ok(scanned)
}
