//! The replay read pipeline: fetch and decode each range's records on one
//! thread while a worker runs the previous batch through the chain and
//! writes it to the sink, in order.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use indicatif::ProgressBar;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;

use super::offsets::Reader;
use super::output::{Origin, Sink};
use super::{Range, STALL_TIMEOUT, Summary, plan};
use crate::stage::Batch;

/// Everything the read loop works with.
pub(super) struct ReplayRun<'a, 's> {
    pub(super) consumer: &'a Reader,
    pub(super) topic: &'a str,
    pub(super) ranges: &'a [Range],
    pub(super) plan: &'a mut plan::ChainPlan,
    pub(super) schemas: &'a crate::schema::SchemaSet,
    pub(super) sink: &'a mut Sink<'s>,
    pub(super) key_filter: Option<&'a BTreeSet<Vec<u8>>>,
    pub(super) out_topic: &'a str,
    pub(super) progress: &'a ProgressBar,
    pub(super) summary: &'a mut Summary,
}

/// A batch read and decoded, on its way to the chain.
pub(super) struct Decoded {
    batch: Batch,
    origins: Vec<Origin>,
    events: Vec<(usize, crate::runtime::bindings::Event)>,
    failures: Vec<crate::runtime::Failure>,
}

/// Batches decoded ahead of the chain.
pub(super) const PIPELINE_DEPTH: usize = 4;

/// Read every range to its end and run it through the chain to the sink.
/// Two threads: this one fetches and decodes batch N+1 while a worker runs
/// batch N through the chain and writes it (in order: one worker, FIFO).
pub(super) fn replay_ranges(run: ReplayRun<'_, '_>) -> anyhow::Result<()> {
    let ReplayRun {
        consumer,
        topic,
        ranges,
        plan,
        schemas,
        sink,
        key_filter,
        out_topic,
        progress,
        summary,
    } = run;
    let mut active: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for range in ranges.iter().filter(|r| r.end > r.start) {
        assignment.add_partition_offset(topic, range.partition, Offset::Offset(range.start))?;
        active.insert(range.partition, range.end);
    }
    if active.is_empty() {
        return Ok(());
    }
    consumer
        .assign(&assignment)
        .context("cannot assign partitions")?;
    let batch_size = plan.batch_size;
    let versions = plan.versions.join(",");
    let (tx, rx) = std::sync::mpsc::sync_channel::<Decoded>(PIPELINE_DEPTH);
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("replay-chain".into())
            .spawn_scoped(scope, move || {
                let mut outcomes = Summary::default();
                for decoded in rx {
                    run_chain(
                        decoded,
                        plan,
                        schemas,
                        sink,
                        out_topic,
                        &versions,
                        &mut outcomes,
                    )?;
                }
                Ok::<_, anyhow::Error>(outcomes)
            })
            .context("cannot start the replay chain thread")?;
        let read = read_loop(
            consumer,
            topic,
            &mut active,
            key_filter,
            batch_size,
            schemas,
            &tx,
            progress,
            summary,
        );
        drop(tx);
        let outcomes = worker
            .join()
            .map_err(|_| anyhow::anyhow!("the replay chain thread panicked"))?;
        // A failed worker closes the channel, which stops the reader: its
        // error is the cause.
        let outcomes = outcomes?;
        read?;
        summary.add_outcomes(outcomes);
        Ok(())
    })
}

/// Fetch until every active partition reached its end, decoding full
/// batches and handing them to the chain thread.
#[allow(clippy::too_many_arguments)]
pub(super) fn read_loop(
    consumer: &Reader,
    topic: &str,
    active: &mut HashMap<i32, i64>,
    key_filter: Option<&BTreeSet<Vec<u8>>>,
    batch_size: usize,
    schemas: &crate::schema::SchemaSet,
    tx: &std::sync::mpsc::SyncSender<Decoded>,
    progress: &ProgressBar,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let mut batch = Batch::with_capacity(batch_size);
    let mut origins: Vec<Origin> = Vec::with_capacity(batch_size);
    let mut last_record = Instant::now();
    // Set per record, turned into a time only when a poll comes back empty:
    // reading the clock per record cost more than the rest of the loop.
    let mut got_record = false;
    let mut pending_progress = 0u64;
    let send = |batch: &mut Batch, origins: &mut Vec<Origin>| -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut full = std::mem::replace(batch, Batch::with_capacity(batch_size));
        let (events, failures) = full.decode(schemas);
        let decoded = Decoded {
            batch: full,
            origins: std::mem::replace(origins, Vec::with_capacity(batch_size)),
            events,
            failures,
        };
        tx.send(decoded)
            .map_err(|_| anyhow::anyhow!("the replay chain thread stopped"))
    };
    while !active.is_empty() {
        let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
            if std::mem::take(&mut got_record) {
                last_record = Instant::now();
            }
            send(&mut batch, &mut origins)?;
            progress.inc(std::mem::take(&mut pending_progress));
            if last_record.elapsed() > STALL_TIMEOUT {
                anyhow::bail!(
                    "no record arrived for {STALL_TIMEOUT:?} with partitions {:?} unfinished",
                    active.keys().collect::<Vec<_>>()
                );
            }
            continue;
        };
        let message = match polled {
            Ok(message) => message,
            Err(KafkaError::PartitionEOF(p)) => {
                done(consumer, topic, p, active);
                continue;
            }
            Err(e) => return Err(e).context("cannot read from the broker"),
        };
        let p = message.partition();
        let offset = message.offset();
        let Some(&end) = active.get(&p) else { continue };
        if offset >= end {
            done(consumer, topic, p, active);
            continue;
        }
        got_record = true;
        summary.read(p, offset);
        pending_progress += 1;
        if offset + 1 >= end {
            done(consumer, topic, p, active);
        }
        if let Some(keys) = key_filter
            && !message.key().is_some_and(|k| keys.contains(k))
        {
            summary.skipped_key += 1;
            continue;
        }
        batch.push(&message);
        origins.push(Origin {
            partition: p,
            offset,
        });
        if batch.len() >= batch_size {
            send(&mut batch, &mut origins)?;
            progress.inc(std::mem::take(&mut pending_progress));
        }
    }
    send(&mut batch, &mut origins)?;
    progress.inc(pending_progress);
    Ok(())
}

/// Stop reading partition `p`.
pub(super) fn done(consumer: &Reader, topic: &str, p: i32, active: &mut HashMap<i32, i64>) {
    if active.remove(&p).is_some() {
        let mut tpl = TopicPartitionList::new();
        if tpl.add_partition(topic, p).set_offset(Offset::End).is_ok() {
            let _ = consumer.pause(&tpl);
        }
    }
}

/// Run one decoded batch through the chain and write its output, counting
/// outcomes into `outcomes`.
pub(super) fn run_chain(
    decoded: Decoded,
    plan: &mut plan::ChainPlan,
    schemas: &crate::schema::SchemaSet,
    sink: &mut Sink<'_>,
    out_topic: &str,
    versions: &str,
    outcomes: &mut Summary,
) -> anyhow::Result<()> {
    let Decoded {
        batch,
        origins,
        events,
        failures,
    } = decoded;
    for failure in &failures {
        outcomes.fail(&failure.plugin, &failure.error);
    }
    let sources: Vec<usize> = events.iter().map(|(i, _)| *i).collect();
    let events: Vec<crate::runtime::bindings::Event> = events.into_iter().map(|(_, e)| e).collect();
    if let Some(diff) = plan.diff.as_mut() {
        let keys: Vec<Option<Vec<u8>>> = events.iter().map(|e| e.key.clone()).collect();
        let old = diff.chain.run(events.clone());
        let new = plan.chain.run(events);
        outcomes.kept += new.items.len() as u64;
        outcomes.dropped += new.dropped as u64;
        for failure in &new.failures {
            outcomes.fail(&failure.plugin, &failure.error);
        }
        let (old, new) = (fates(&old, keys.len()), fates(&new, keys.len()));
        for (i, key) in keys.iter().enumerate() {
            if old[i] != new[i] {
                outcomes.differ += 1;
                let line = serde_json::json!({
                    "partition": origins[sources[i]].partition,
                    "offset": origins[sources[i]].offset,
                    "key": key.as_deref().map(String::from_utf8_lossy),
                    "old": old[i],
                    "new": new[i],
                });
                sink.write_line(&line)?;
            }
        }
        return Ok(());
    }
    let output = plan.chain.run(events);
    outcomes.dropped += output.dropped as u64;
    for failure in &output.failures {
        outcomes.fail(&failure.plugin, &failure.error);
    }
    for mut item in output.items {
        let source = sources[item.source];
        // An unchanged event's JSON goes to the sink as is (no decode);
        // a resolved record needs it for its re-encoding, so it stays.
        let json = (!item.changed && !batch.resolved(source))
            .then(|| Vec::from(std::mem::take(&mut item.event.value)));
        match batch.output_record(source, item, out_topic, versions) {
            Ok(record) => match sink.write(schemas, origins[source], record, json)? {
                Ok(()) => outcomes.kept += 1,
                Err(reason) => outcomes.fail("(output)", &reason),
            },
            Err(failure) => outcomes.fail(&failure.plugin, &failure.error),
        }
    }
    Ok(())
}

/// What the chain made of each input event, as JSON for `--diff`:
/// `{"kept": [values]}`, `"dropped"`, or `{"failed": {"plugin", "error"}}`.
pub fn fates(output: &crate::runtime::ChainOutput, inputs: usize) -> Vec<serde_json::Value> {
    let mut kept: Vec<Vec<serde_json::Value>> = vec![Vec::new(); inputs];
    let mut out = vec![serde_json::Value::from("dropped"); inputs];
    for item in &output.items {
        let value = serde_json::from_slice(&item.event.value).unwrap_or_else(|_| {
            serde_json::Value::from(String::from_utf8_lossy(&item.event.value).into_owned())
        });
        if let Some(slot) = kept.get_mut(item.source) {
            slot.push(value);
        }
    }
    for (i, values) in kept.into_iter().enumerate() {
        if !values.is_empty() {
            out[i] = serde_json::json!({ "kept": values });
        }
    }
    for failure in &output.failures {
        if let Some(slot) = out.get_mut(failure.source) {
            *slot =
                serde_json::json!({"failed": {"plugin": failure.plugin, "error": failure.error}});
        }
    }
    out
}
