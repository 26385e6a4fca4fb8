//! Resolving the replay window against the broker: the topic's partitions,
//! the ones `--key`/`--partitions` select, and each bound (offset, time or
//! duration) turned into a per-partition offset range.

use std::collections::BTreeMap;
use std::collections::{BTreeSet, HashMap};

use rdkafka::error::KafkaError;

use anyhow::Context;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::window::Bound;
use super::{InputError, Isolation, REQUEST_TIMEOUT, Range};
use super::{partitioner, window};
use crate::config::LoadedConfig;
use crate::kafka::Kafka;

/// `--from` after `--to`, when that is visible before resolving.
pub(super) fn check_order(from: &Bound, to: Option<&Bound>) -> Result<(), InputError> {
    let Some(to) = to else { return Ok(()) };
    let after = match (from, to) {
        (Bound::Time(f), Bound::Time(t)) if f > t => Some(format!(
            "{} is after {}",
            window::format_ms(*f),
            window::format_ms(*t)
        )),
        (Bound::Offset(f), Bound::Offset(t)) if f > t => Some(format!("offset {f} is after {t}")),
        (Bound::Offsets(f), Bound::Offsets(t)) => f.iter().find_map(|(p, fo)| {
            t.get(p)
                .filter(|to| fo > *to)
                .map(|to| format!("partition {p}: offset {fo} is after {to}"))
        }),
        (Bound::Offset(f), Bound::Offsets(t)) => t
            .iter()
            .find(|(_, to)| f > *to)
            .map(|(p, to)| format!("partition {p}: offset {f} is after {to}")),
        (Bound::Offsets(f), Bound::Offset(t)) => f
            .iter()
            .find(|(_, fo)| *fo > t)
            .map(|(p, fo)| format!("partition {p}: offset {fo} is after {t}")),
        _ => None,
    };
    match after {
        Some(why) => Err(InputError::new(format!("--from is after --to: {why}"))),
        None => Ok(()),
    }
}

/// A group-less consumer for manual assignment: never joins a group, never
/// commits, and reports the end of each partition.
pub(super) type Reader = BaseConsumer<ReaderContext>;

/// The reader's client context: the end of a partition is how replay knows
/// it is done, not an error worth logging (librdkafka reports it as a
/// global error too).
pub(super) struct ReaderContext;

impl rdkafka::ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let end_of_partition = matches!(
            error,
            KafkaError::PartitionEOF(_)
                | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        );
        if !end_of_partition {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ReaderContext {}

/// The replay's [`Reader`], reading with `isolation`.
pub(super) fn reader(kafka: &Kafka, isolation: Isolation) -> anyhow::Result<Reader> {
    let mut config = kafka.reader_config("replay");
    config
        .set("isolation.level", isolation.setting())
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    config
        .create_with_context(ReaderContext)
        .context("cannot create Kafka reader")
}

/// The partition ids of `topic`, or an input error if it does not exist.
pub(super) fn topic_partitions(consumer: &Reader, topic: &str) -> anyhow::Result<Vec<i32>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .with_context(|| format!("cannot read metadata of topic `{topic}`"))?;
    let mut partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(InputError::new(format!("topic `{topic}` does not exist")).into());
    }
    partitions.sort_unstable();
    Ok(partitions)
}

pub(super) fn partitioner_setting(loaded: &LoadedConfig) -> String {
    loaded
        .config
        .kafka
        .client_settings()
        .into_iter()
        .find(|(k, _)| k == "partitioner")
        .map(|(_, v)| v)
        .unwrap_or_else(|| "consistent_random".to_string())
}

/// The keys `--key` keeps, as bytes.
type KeyFilter = BTreeSet<Vec<u8>>;

/// The partitions to read and the key filter: `--partition`, else those an
/// offsets bound names, else all; narrowed to the keys' partitions.
pub(super) fn select_partitions(
    all: &[i32],
    requested: &[i32],
    from: &Bound,
    to: Option<&Bound>,
    keys: &[String],
    partitioner: &str,
) -> Result<(Vec<i32>, Option<KeyFilter>), InputError> {
    for p in requested {
        if !all.contains(p) {
            return Err(InputError::new(format!(
                "--partition {p}: the topic has partitions {}..={}",
                all.first().copied().unwrap_or(0),
                all.last().copied().unwrap_or(0)
            )));
        }
    }
    let mut named: BTreeSet<i32> = from.named_partitions().into_iter().collect();
    named.extend(to.map(Bound::named_partitions).unwrap_or_default());
    for p in &named {
        if !all.contains(p) {
            return Err(InputError::new(format!(
                "p{p}: the topic has no partition {p}"
            )));
        }
    }
    let mut selected: Vec<i32> = if !requested.is_empty() {
        requested.to_vec()
    } else if !named.is_empty() {
        named.into_iter().collect()
    } else {
        all.to_vec()
    };
    selected.sort_unstable();
    selected.dedup();
    if keys.is_empty() {
        return Ok((selected, None));
    }
    let count = all.len() as i32;
    let mut by_key = BTreeSet::new();
    let mut any_partition = false;
    for key in keys {
        match partitioner::partition_for_key(partitioner, key.as_bytes(), count)
            .map_err(InputError::new)?
        {
            Some(p) => {
                if !selected.contains(&p) {
                    return Err(InputError::new(format!(
                        "--key {key} is in partition {p}, which the window does not read"
                    )));
                }
                by_key.insert(p);
            }
            None => any_partition = true,
        }
    }
    if !any_partition {
        selected.retain(|p| by_key.contains(p));
    }
    let keys = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
    Ok((selected, Some(keys)))
}

/// Resolve both bounds to offsets in each selected partition, clamped to
/// what the partition holds now.
pub(super) fn resolve(
    consumer: &Reader,
    topic: &str,
    partitions: &[i32],
    from: &Bound,
    to: Option<&Bound>,
) -> anyhow::Result<Vec<Range>> {
    let mut marks = BTreeMap::new();
    for &p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
            .with_context(|| format!("cannot read the watermarks of {topic}/{p}"))?;
        marks.insert(p, (low, high));
    }
    let starts = offsets(consumer, topic, &marks, from, Side::From)?;
    let ends = match to {
        Some(to) => offsets(consumer, topic, &marks, to, Side::To)?,
        None => marks.iter().map(|(p, (_, high))| (*p, *high)).collect(),
    };
    let mut ranges = Vec::with_capacity(partitions.len());
    for &p in partitions {
        let start = starts[&p];
        let end = ends[&p];
        if start > end {
            return Err(InputError::new(format!(
                "--from is after --to: in partition {p} the window starts at offset {start} and ends at {end}"
            ))
            .into());
        }
        ranges.push(Range {
            partition: p,
            start,
            end,
        });
    }
    Ok(ranges)
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    From,
    To,
}

/// One bound as an offset per partition, within `[low, high]`.
pub(super) fn offsets(
    consumer: &Reader,
    topic: &str,
    marks: &BTreeMap<i32, (i64, i64)>,
    bound: &Bound,
    side: Side,
) -> anyhow::Result<HashMap<i32, i64>> {
    let clamp = |p: i32, o: i64| {
        let (low, high) = marks[&p];
        o.clamp(low, high)
    };
    let mut out = HashMap::new();
    match bound {
        Bound::Offset(o) => {
            for &p in marks.keys() {
                out.insert(p, clamp(p, *o));
            }
        }
        Bound::Offsets(map) => {
            for (&p, &(low, high)) in marks {
                let default = if side == Side::From { low } else { high };
                out.insert(p, clamp(p, map.get(&p).copied().unwrap_or(default)));
            }
        }
        Bound::Time(ts) => {
            let mut request = TopicPartitionList::new();
            for &p in marks.keys() {
                request.add_partition_offset(topic, p, Offset::Offset(*ts))?;
            }
            let answer = consumer
                .offsets_for_times(request, REQUEST_TIMEOUT)
                .with_context(|| {
                    format!(
                        "cannot look up offsets of {topic} at {}",
                        window::format_ms(*ts)
                    )
                })?;
            for element in answer.elements() {
                let p = element.partition();
                let Some(&(_, high)) = marks.get(&p) else {
                    continue;
                };
                if let Some(e) = element.error().err() {
                    anyhow::bail!("offset lookup of {topic}/{p} failed: {e}");
                }
                // Kafka answers "no record at or after T" with -1 (the end).
                let offset = match element.offset() {
                    Offset::Offset(o) if o < high => o,
                    _ => high,
                };
                out.insert(p, clamp(p, offset));
            }
            for &p in marks.keys() {
                if !out.contains_key(&p) {
                    anyhow::bail!("the broker returned no offset for {topic}/{p}");
                }
            }
        }
    }
    Ok(out)
}
