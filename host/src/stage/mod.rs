//! Stages: a consumer group reading an input topic in batches, running the
//! plugin chain, producing results (or writing them through a sink plugin)
//! and dead letters, and committing offsets only after every record of the
//! batch was acknowledged or written (at-least-once). While a sink's database
//! is down the stage retries the same batch and commits nothing.
//! Commits are asynchronous while running and synchronous for the last batch
//! on shutdown.
//!
//! Each stage runs on a thread of its own: plugin calls are synchronous
//! (bounded by epoch interruption). While one batch's records await their
//! acknowledgements, the next batch is read and run through the chain; its
//! records are produced only after the previous batch is acknowledged and
//! committed, so per-key order holds and commits stay in order.

mod batch;
mod dead_letter;
mod lag;

pub use batch::{Batch, Record};
pub use dead_letter::HEADER_PREFIX;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use backon::BackoffBuilder;
use futures::executor::block_on;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureRecord, Producer as _};

use crate::admin::{StageState, StatusBoard};
use crate::config::{LoadedConfig, StageConfig};
use crate::kafka::{Kafka, Producer};
use crate::runtime::bindings::Event;
use crate::runtime::{
    Chain, Failure, Link, Runtime, SinkPlugin, TransformPlugin, plugin_config_json, plugin_path,
};
use crate::schema::SchemaSet;
use crate::sink::{Connections, SinkRunner, Unavailable};

/// Header naming the plugin versions that produced an output record.
pub const PLUGINS_HEADER: &str = "sluice-plugins";

/// Everything a stage thread needs, built before it starts so configuration
/// errors surface at start-up.
pub struct Stage {
    name: String,
    input: String,
    output: String,
    dead_letter: String,
    batch_size: usize,
    batch_wait: Duration,
    chain: Chain,
    sink: Option<SinkRunner>,
    schemas: Arc<SchemaSet>,
    consumer: BaseConsumer,
    producer: Producer,
    last_commit: Option<TopicPartitionList>,
    lag: lag::LagReporter,
    /// Plugin versions from the store, applied between batches.
    updates: Option<crate::plugins::Updates>,
    seen_generation: u64,
}

impl Stage {
    /// Load the stage's plugins and connect its consumer and producer; a
    /// sink stage writes through the `connections` it was granted.
    pub fn build(
        loaded: &LoadedConfig,
        config: &StageConfig,
        kafka: &Kafka,
        runtime: &Runtime,
        connections: &Connections,
        schemas: Arc<SchemaSet>,
    ) -> anyhow::Result<Self> {
        Self::build_with(
            loaded,
            config,
            kafka,
            runtime,
            connections,
            schemas,
            &Default::default(),
        )
    }

    /// [`Stage::build`], running the plugin store's active versions
    /// (`overrides`, by plugin name) instead of `[plugins] dir`'s files.
    pub fn build_with(
        loaded: &LoadedConfig,
        config: &StageConfig,
        kafka: &Kafka,
        runtime: &Runtime,
        connections: &Connections,
        schemas: Arc<SchemaSet>,
        overrides: &std::collections::BTreeMap<String, crate::plugins::Candidate>,
    ) -> anyhow::Result<Self> {
        let name = config.name.get_ref().clone();
        let limits = config.limits.unwrap_or(loaded.config.plugins.limits);
        let mut links = Vec::with_capacity(config.chain.len());
        for plugin_name in &config.chain {
            let plugin_name = plugin_name.get_ref();
            let stored = overrides.get(plugin_name);
            let plugin = match stored {
                Some(candidate) => candidate.plugin.clone(),
                None => Arc::new(
                    TransformPlugin::load_file(
                        runtime,
                        plugin_name,
                        &plugin_path(loaded, plugin_name),
                    )
                    .with_context(|| format!("stage `{name}`"))?,
                ),
            };
            let plugin_config = plugin_config_json(config, plugin_name);
            // Prove the plugin starts with this config before taking traffic.
            plugin
                .instantiate(&name, &plugin_config, limits)
                .with_context(|| format!("stage `{name}`: plugin `{plugin_name}`"))?;
            tracing::info!(stage = %name, plugin = plugin_name, version = plugin.version(), store_version = stored.map(|c| c.version), "plugin loaded");
            crate::metrics::plugin_active(&name, plugin_name, plugin.version());
            let link = Link::new(plugin, plugin_config, limits);
            links.push(match stored {
                Some(candidate) => link.with_label(candidate.label()),
                None => link,
            });
        }
        let sink = match &config.sink {
            Some(sink_name) => {
                let sink_name = sink_name.get_ref();
                let path = plugin_path(loaded, sink_name);
                let plugin = SinkPlugin::load_file(runtime, sink_name, &path)
                    .with_context(|| format!("stage `{name}`"))?;
                tracing::info!(stage = %name, plugin = sink_name, version = plugin.version(), "sink plugin loaded");
                crate::metrics::plugin_active(&name, sink_name, plugin.version());
                Some(SinkRunner::new(
                    &name,
                    Arc::new(plugin),
                    plugin_config_json(config, sink_name),
                    limits,
                    connections.grants_for(config),
                    config.retries,
                ))
            }
            None => None,
        };
        if sink.is_none() && config.output.is_none() {
            bail!("stage `{name}` has neither `output` nor `sink`");
        }
        let lag = lag::LagReporter::start(kafka, &name, &config.group_id())
            .with_context(|| format!("stage `{name}`"))?;
        let consumer: BaseConsumer = kafka
            .group_consumer(&config.group_id())
            .with_context(|| format!("stage `{name}`"))?;
        consumer
            .subscribe(&[config.input.get_ref()])
            .with_context(|| {
                format!(
                    "stage `{name}`: cannot subscribe to {}",
                    config.input.get_ref()
                )
            })?;
        let producer =
            kafka.producer("stage", Duration::from_millis(config.delivery_timeout_ms))?;
        Ok(Self {
            input: config.input.get_ref().clone(),
            output: config
                .output
                .as_ref()
                .map(|o| o.get_ref().clone())
                .unwrap_or_default(),
            dead_letter: config.dead_letter_topic(),
            batch_size: config.batch_size,
            batch_wait: Duration::from_millis(config.batch_wait_ms),
            chain: Chain::new(&name, links, config.retries),
            sink,
            schemas,
            consumer,
            producer,
            last_commit: None,
            lag,
            updates: None,
            seen_generation: 0,
            name,
        })
    }

    /// Follow the plugin store: swap in new versions at batch boundaries.
    /// Reports what the stage runs now.
    pub fn follow(&mut self, updates: crate::plugins::Updates) {
        self.seen_generation = updates.generation();
        let active = updates.snapshot();
        for link in self.chain.links_mut() {
            let plugin = link.plugin();
            let version = active
                .get(&plugin.name)
                .filter(|c| c.plugin.sha256 == plugin.sha256)
                .map_or(0, |c| c.version);
            updates.applied(crate::plugins::Applied {
                stage: self.name.clone(),
                name: plugin.name.clone(),
                version,
                sha256: plugin.sha256.clone(),
            });
        }
        self.updates = Some(updates);
    }

    /// Between batches: swap in plugin versions the store activated since
    /// the last look. Instantiates first; on failure keeps the old one.
    fn apply_updates(&mut self) {
        let Some(updates) = &self.updates else {
            return;
        };
        let generation = updates.generation();
        if generation == self.seen_generation {
            return;
        }
        self.seen_generation = generation;
        for (name, candidate) in updates.snapshot() {
            for link in self.chain.links_mut() {
                if link.plugin().name != name {
                    continue;
                }
                if link.plugin().sha256 == candidate.plugin.sha256 {
                    // The same component, now numbered by the store.
                    if link.label() != candidate.label() {
                        link.relabel(candidate.label());
                        updates.applied(crate::plugins::Applied {
                            stage: self.name.clone(),
                            name: name.clone(),
                            version: candidate.version,
                            sha256: candidate.plugin.sha256.clone(),
                        });
                    }
                    continue;
                }
                let old = link.label().to_string();
                match link.swap(
                    &self.name,
                    candidate.plugin.clone(),
                    Some(candidate.label()),
                ) {
                    Ok(()) => {
                        tracing::info!(stage = %self.name, plugin = %name, from = %old, to = %candidate.label(), "plugin swapped at a batch boundary");
                        crate::metrics::plugin_active(
                            &self.name,
                            &name,
                            candidate.plugin.version(),
                        );
                        updates.applied(crate::plugins::Applied {
                            stage: self.name.clone(),
                            name: name.clone(),
                            version: candidate.version,
                            sha256: candidate.plugin.sha256.clone(),
                        });
                    }
                    Err(e) => {
                        tracing::error!(stage = %self.name, plugin = %name, version = %candidate.label(), error = %e, "new plugin version failed to start; keeping the old one");
                    }
                }
            }
        }
    }

    /// Run on a thread of its own until `stop` is set; the batch in flight
    /// then finishes and commits before the thread ends.
    pub fn spawn(
        mut self,
        board: StatusBoard,
        stop: Arc<AtomicBool>,
    ) -> anyhow::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name(format!("stage-{}", self.name))
            .spawn(move || {
                board.set(
                    &self.name,
                    StageState::Running,
                    format!("consuming {}", self.input),
                );
                self.run(&board, &stop);
                board.set(&self.name, StageState::Stopped, "stopped");
            })
            .context("cannot start stage thread")
    }

    fn run(&mut self, board: &StatusBoard, stop: &AtomicBool) {
        let mut last_lag = Instant::now();
        let mut in_flight: Option<InFlight> = None;
        while !stop.load(Ordering::SeqCst) {
            board.beat(&self.name);
            self.apply_updates();
            let batch = match self.poll_batch(stop) {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(stage = %self.name, error = %e, "consumer error");
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            };
            // Batch N+1 is read and run through the chain while N's records
            // are on their way; N is acknowledged and committed before N+1's
            // records are produced, so per-key order and at-least-once hold.
            let prepared = if batch.is_empty() {
                None
            } else {
                self.prepare(batch, board, stop)
            };
            if let Some(previous) = in_flight.take() {
                self.finish(previous, board, stop);
            }
            in_flight = prepared.map(|p| self.launch(p));
            // Also while idle, so the gauge falls to zero once caught up.
            if last_lag.elapsed() > Duration::from_secs(5) {
                self.report_lag();
                last_lag = Instant::now();
            }
        }
        if let Some(last) = in_flight.take() {
            self.finish(last, board, stop);
        }
        self.commit_last_sync();
        tracing::info!(stage = %self.name, "stage stopped");
    }

    fn poll_batch(&self, stop: &AtomicBool) -> anyhow::Result<Batch> {
        let mut batch = Batch::with_capacity(self.batch_size);
        let mut deadline = None::<Instant>;
        while batch.len() < self.batch_size && !stop.load(Ordering::SeqCst) {
            let wait = match deadline {
                None => Duration::from_millis(100),
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) => left,
                    None => break,
                },
            };
            match self.consumer.poll(wait) {
                Some(Ok(message)) => {
                    batch.push(&message);
                    deadline.get_or_insert_with(|| Instant::now() + self.batch_wait);
                }
                Some(Err(e)) => {
                    if batch.is_empty() {
                        return Err(e.into());
                    }
                    tracing::warn!(stage = %self.name, error = %e, "consumer error while filling a batch");
                    break;
                }
                None if deadline.is_none() => return Ok(batch),
                None => {}
            }
        }
        Ok(batch)
    }

    /// Decode, run the chain (and write through the sink), and build the
    /// batch's output records and dead letters. `None` if asked to stop
    /// while a sink target was down (nothing to commit).
    fn prepare(
        &mut self,
        mut batch: Batch,
        board: &StatusBoard,
        stop: &AtomicBool,
    ) -> Option<Prepared> {
        let started = Instant::now();
        crate::metrics::stage_events(&self.name, "", "in", batch.len());
        let (events, mut failures) = batch.decode(&self.schemas);
        let decoded: Vec<usize> = events.iter().map(|(i, _)| *i).collect();
        let output = self.chain.run(events.into_iter().map(|(_, e)| e).collect());
        for failure in output.failures {
            let mut failure = failure;
            failure.source = decoded[failure.source];
            failures.push(failure);
        }
        let mut records = Vec::with_capacity(output.items.len());
        if self.sink.is_some() {
            let sources: Vec<usize> = output.items.iter().map(|i| decoded[i.source]).collect();
            let events: Vec<Event> = output.items.into_iter().map(|i| i.event).collect();
            // Stopped while the sink's target was down: nothing committed.
            let sink_failures = self.write_to_sink(&events, &batch, board, stop)?;
            let written = events.len() - sink_failures.len();
            crate::metrics::stage_events(&self.name, "", "out", written);
            if let Some(sink) = &self.sink {
                crate::metrics::stage_events(&self.name, sink.name(), "in", events.len());
                crate::metrics::stage_events(&self.name, sink.name(), "written", written);
                crate::metrics::stage_events(
                    &self.name,
                    sink.name(),
                    "failed",
                    sink_failures.len(),
                );
            }
            failures.extend(
                sink_failures
                    .into_iter()
                    .map(|(index, error)| self.sink_failure(sources[index], error)),
            );
        } else {
            let versions = self.chain.versions().join(",");
            for item in output.items {
                let source = decoded[item.source];
                match batch.output_record(source, item, &self.output, &versions) {
                    Ok(record) => records.push(record),
                    Err(failure) => failures.push(failure),
                }
            }
            crate::metrics::stage_events(&self.name, "", "out", records.len());
        }
        for failure in &failures {
            records.push(dead_letter::record(
                &batch,
                &self.name,
                &self.dead_letter,
                failure,
            ));
        }
        crate::metrics::stage_events(&self.name, "", "dead_lettered", failures.len());
        Some(Prepared {
            batch,
            records,
            started,
        })
    }

    /// Hand a prepared batch's records to the producer.
    fn launch(&self, prepared: Prepared) -> InFlight {
        let sent = self.send(&prepared.records.iter().collect::<Vec<_>>());
        InFlight { prepared, sent }
    }

    /// Wait for a batch's records to be acknowledged, then commit it.
    fn finish(&mut self, in_flight: InFlight, board: &StatusBoard, stop: &AtomicBool) {
        let InFlight {
            prepared:
                Prepared {
                    batch,
                    records,
                    started,
                },
            sent,
        } = in_flight;
        if !self.deliver(&records, sent, board, stop) {
            // Shutting down with records unacknowledged: do not commit; the
            // batch is read again after restart (at-least-once).
            return;
        }
        self.commit(&batch);
        crate::metrics::stage_batch(&self.name, started.elapsed());
    }

    fn sink_failure(&self, source: usize, error: String) -> Failure {
        let sink = self.sink.as_ref();
        Failure {
            source,
            plugin: sink.map(|s| s.name().to_string()).unwrap_or_default(),
            version: sink.map(|s| s.version().to_string()).unwrap_or_default(),
            error,
        }
    }

    /// Write the chain's output through the sink, retrying with backoff for
    /// as long as a target is unavailable (the batch stays uncommitted, so
    /// consumer lag grows and nothing is lost). Returns the events that
    /// failed for good, or `None` if asked to stop first.
    fn write_to_sink(
        &mut self,
        events: &[Event],
        batch: &Batch,
        board: &StatusBoard,
        stop: &AtomicBool,
    ) -> Option<Vec<(usize, String)>> {
        let mut delays = retry_delays(Duration::from_millis(200))
            .with_jitter()
            .build();
        let mut outage: Option<Instant> = None;
        let mut last_lag = Instant::now();
        loop {
            let sink = self.sink.as_mut()?;
            match sink.write(events) {
                Ok(failures) => {
                    if let Some(since) = outage {
                        tracing::info!(stage = %self.name, down_for = ?since.elapsed(), "sink target reachable again; resuming");
                        board.set(
                            &self.name,
                            StageState::Running,
                            format!("consuming {}", self.input),
                        );
                    }
                    return Some(failures);
                }
                Err(Unavailable(reason)) => {
                    crate::metrics::sink_unavailable(&self.name);
                    if outage.is_none() {
                        tracing::warn!(stage = %self.name, error = %reason, events = events.len(), "sink target unavailable; holding the batch and retrying");
                    }
                    let since = *outage.get_or_insert_with(Instant::now);
                    board.set(
                        &self.name,
                        StageState::Retrying,
                        format!(
                            "sink target unavailable for {} s ({} offsets held at {}): {reason}",
                            since.elapsed().as_secs(),
                            batch.len(),
                            self.input
                        ),
                    );
                }
            }
            let delay = delays.next().unwrap_or(MAX_RETRY_DELAY);
            let wake = Instant::now() + delay;
            while Instant::now() < wake {
                if stop.load(Ordering::SeqCst) {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if last_lag.elapsed() > Duration::from_secs(2) {
                self.report_lag();
                last_lag = Instant::now();
            }
        }
    }

    /// Hand `records` to the producer without waiting for the broker.
    fn send(&self, records: &[&Record]) -> InFlightSend {
        let producer = self.producer.get();
        let deliveries = records
            .iter()
            .map(|record| {
                let mut future = FutureRecord::to(&record.topic).payload(&record.value);
                if let Some(key) = &record.key {
                    future = future.key(key);
                }
                if let Some(ts) = record.timestamp {
                    future = future.timestamp(ts);
                }
                future = future.headers(headers(&record.headers));
                producer.send_result(future).map_err(|(e, _)| e)
            })
            .collect();
        crate::metrics::producer_queue_depth("stage", producer.in_flight_count());
        InFlightSend {
            producer,
            deliveries,
        }
    }

    /// Wait for the broker's answer to every record of a send; true for each
    /// acknowledged one.
    fn settle(&self, sent: InFlightSend) -> Vec<bool> {
        let InFlightSend {
            producer,
            deliveries,
        } = sent;
        deliveries
            .into_iter()
            .map(|d| {
                let error = match d {
                    Ok(delivery) => match block_on(delivery) {
                        Ok(Ok(_)) => return true,
                        Ok(Err((e, _))) => e,
                        Err(_) => rdkafka::error::KafkaError::Canceled,
                    },
                    Err(e) => e,
                };
                self.producer.on_failure(&producer, &error);
                false
            })
            .collect()
    }

    /// Wait until every record of `sent` (the records in `records`) is
    /// acknowledged, producing failed ones again with backoff. Returns false
    /// if asked to stop first.
    fn deliver(
        &self,
        records: &[Record],
        sent: InFlightSend,
        board: &StatusBoard,
        stop: &AtomicBool,
    ) -> bool {
        let mut pending: Vec<&Record> = records.iter().collect();
        let mut sent = sent;
        let mut delays = retry_delays(Duration::from_millis(100)).build();
        let mut retried = false;
        loop {
            let results = self.settle(sent);
            pending = pending
                .into_iter()
                .zip(results)
                .filter_map(|(r, ok)| (!ok).then_some(r))
                .collect();
            if pending.is_empty() {
                if retried {
                    board.set(
                        &self.name,
                        StageState::Running,
                        format!("consuming {}", self.input),
                    );
                    tracing::info!(stage = %self.name, "output acknowledged again; resuming");
                }
                return true;
            }
            if stop.load(Ordering::SeqCst) {
                return false;
            }
            board.set(
                &self.name,
                StageState::Retrying,
                format!("{} records not acknowledged; retrying", pending.len()),
            );
            tracing::warn!(stage = %self.name, pending = pending.len(), "output not acknowledged; retrying");
            std::thread::sleep(delays.next().unwrap_or(MAX_RETRY_DELAY));
            retried = true;
            sent = self.send(&pending);
        }
    }

    /// Commit the batch's offsets. Asynchronously while running (the batch's
    /// records are already acknowledged, so this saves a round trip without
    /// weakening at-least-once); the last one again synchronously on stop.
    fn commit(&mut self, batch: &Batch) {
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), offset) in batch.next_offsets() {
            if let Err(e) = offsets.add_partition_offset(&topic, partition, Offset::Offset(offset))
            {
                tracing::error!(stage = %self.name, error = %e, "cannot build commit");
                return;
            }
        }
        if let Err(e) = self.consumer.commit(&offsets, CommitMode::Async) {
            // The partitions moved to another member, which re-reads from the
            // last commit: duplicates, never loss.
            tracing::warn!(stage = %self.name, error = %e, "offset commit failed; the batch may be redelivered");
        }
        self.last_commit = Some(offsets);
    }

    /// Make sure the last batch's commit reached the coordinator.
    fn commit_last_sync(&mut self) {
        if let Some(offsets) = self.last_commit.take()
            && let Err(e) = self.consumer.commit(&offsets, CommitMode::Sync)
        {
            tracing::warn!(stage = %self.name, error = %e, "final offset commit failed; the last batch may be redelivered");
        }
    }

    fn report_lag(&self) {
        if let Ok(assignment) = self.consumer.assignment() {
            self.lag.request(assignment);
        }
    }
}

/// The longest wait between two attempts at an output or a sink write.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Retry delays for outputs and sink writes: from `first`, doubling, at most
/// [`MAX_RETRY_DELAY`], for as long as it takes (nothing is given up on).
fn retry_delays(first: Duration) -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(first)
        .with_max_delay(MAX_RETRY_DELAY)
        .without_max_times()
}

/// Records handed to the producer, with their delivery futures.
struct InFlightSend {
    producer: Arc<rdkafka::producer::FutureProducer>,
    deliveries: Vec<Result<rdkafka::producer::DeliveryFuture, rdkafka::error::KafkaError>>,
}

/// A batch run through its chain, with the records to produce.
struct Prepared {
    batch: Batch,
    records: Vec<Record>,
    started: Instant,
}

/// A batch whose records are on their way to the broker.
struct InFlight {
    prepared: Prepared,
    sent: InFlightSend,
}

fn headers(pairs: &[(String, Vec<u8>)]) -> OwnedHeaders {
    pairs
        .iter()
        .fold(OwnedHeaders::new_with_capacity(pairs.len()), |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v.as_slice()),
            })
        })
}
