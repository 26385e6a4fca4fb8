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
//!
//! `delivery = "exactly-once"` stages run [`exactly_once`]'s loop instead:
//! output, dead letters and offsets in one Kafka transaction.
//!
//! Hosts in one consumer group share the input's partitions (cooperative
//! rebalancing); before partitions leave, the stage settles what it started
//! on them ([`rebalance`]), so no batch is lost or committed out of order.

mod batch;
mod dead_letter;
mod exactly_once;
mod lag;
mod output;
mod pipeline;
mod process;
mod rebalance;
mod status;
mod tap;

pub use batch::{Batch, Record};
pub use dead_letter::HEADER_PREFIX;
pub use rebalance::Partition;
pub use status::{STUCK_AFTER, StageState, StatusBoard};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{CommitMode, Consumer};

use self::exactly_once::{CommitBeforeRevoke, SharedTransactions, Transactions};
use self::output::{InFlight, InFlightSlot, Output};
use self::rebalance::{RevokeHook, StageConsumer, StageContext};
use crate::config::{Delivery, LoadedConfig, StageConfig};
use crate::kafka::Kafka;
use crate::runtime::{
    Chain, Link, Runtime, SinkPlugin, TransformPlugin, plugin_config_json, plugin_path,
};
use crate::schema::SchemaSet;
use crate::sink::{Connections, SinkRunner};

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
    consumer: StageConsumer,
    delivery: DeliveryMode,
    transaction_interval: Duration,
    last_commit: Option<TopicPartitionList>,
    lag: lag::LagReporter,
    /// Plugin versions from the store, applied between batches.
    updates: Option<crate::plugins::Updates>,
    seen_generation: u64,
}

impl Stage {
    /// Load the stage's plugins and connect its consumer and producer; a
    /// sink stage writes through the `connections` it was granted. Plugins
    /// named in `overrides` run the plugin store's active version instead of
    /// `[plugins] dir`'s file.
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
        let consumer: StageConsumer = kafka
            .group_consumer_with(&config.group_id(), StageContext::new(&name))
            .with_context(|| format!("stage `{name}`"))?;
        consumer
            .subscribe(&[config.input.get_ref()])
            .with_context(|| {
                format!(
                    "stage `{name}`: cannot subscribe to {}",
                    config.input.get_ref()
                )
            })?;
        let delivery_timeout = Duration::from_millis(config.delivery_timeout_ms);
        let delivery = match config.delivery() {
            Delivery::AtLeastOnce => DeliveryMode::AtLeastOnce {
                output: Arc::new(Output::new(
                    &name,
                    config.input.get_ref(),
                    kafka.producer("stage", delivery_timeout)?,
                )),
                in_flight: InFlightSlot::default(),
            },
            Delivery::ExactlyOnce => {
                if sink.is_some() {
                    bail!("stage `{name}`: exactly-once needs a topic output, not a sink");
                }
                let producer = kafka
                    .transactional_producer(
                        transactional_id(&config.group_id(), &name, &loaded.config.host_id()),
                        Duration::from_millis(config.transaction_timeout_ms),
                        delivery_timeout,
                    )
                    .with_context(|| format!("stage `{name}`"))?;
                DeliveryMode::ExactlyOnce(Arc::new(Mutex::new(Transactions::new(&name, producer))))
            }
        };
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
            delivery,
            transaction_interval: Duration::from_millis(config.transaction_interval_ms),
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
    /// (or the open transaction) then finishes and commits before the
    /// thread ends.
    pub fn spawn(
        mut self,
        board: StatusBoard,
        stop: Arc<AtomicBool>,
    ) -> anyhow::Result<JoinHandle<()>> {
        let hook: Box<dyn RevokeHook> = match &self.delivery {
            DeliveryMode::AtLeastOnce { output, in_flight } => Box::new(FinishBeforeRevoke {
                stage: self.name.clone(),
                output: output.clone(),
                in_flight: in_flight.clone(),
                board: board.clone(),
                stop: stop.clone(),
            }),
            DeliveryMode::ExactlyOnce(transactions) => {
                Box::new(CommitBeforeRevoke(transactions.clone()))
            }
        };
        self.consumer.context().set_hook(hook);
        std::thread::Builder::new()
            .name(format!("stage-{}", self.name))
            .spawn(move || {
                board.set(
                    &self.name,
                    StageState::Running,
                    format!("consuming {}", self.input),
                );
                match &self.delivery {
                    DeliveryMode::AtLeastOnce { output, in_flight } => {
                        let (output, in_flight) = (output.clone(), in_flight.clone());
                        self.run_at_least_once(&output, &in_flight, &board, &stop);
                    }
                    DeliveryMode::ExactlyOnce(transactions) => {
                        let transactions = transactions.clone();
                        self.run_exactly_once(&transactions, &board, &stop);
                    }
                }
                board.set(&self.name, StageState::Stopped, "stopped");
            })
            .context("cannot start stage thread")
    }

    fn run_at_least_once(
        &mut self,
        output: &Output,
        in_flight: &InFlightSlot,
        board: &StatusBoard,
        stop: &AtomicBool,
    ) {
        let mut last_lag = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            board.beat(&self.name);
            self.publish_assignment(board);
            self.apply_updates();
            // A rebalance inside this poll finishes and commits the batch in
            // flight first (see [`FinishBeforeRevoke`]).
            let batch = match self.poll_batch(stop) {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(stage = %self.name, error = %e, "consumer error");
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            };
            // Batch N+1 runs through the chain while N's records are on
            // their way; `pipeline::turn` orders the rest (N committed before
            // N+1 is produced or written to a sink).
            let processed = (!batch.is_empty()).then(|| self.process(batch));
            let sink = self.sink.is_some();
            let previous = take(in_flight);
            let mut phases = LoopPhases {
                stage: self,
                output,
                board,
                stop,
            };
            if let Some(next) = pipeline::turn(&mut phases, processed, sink, previous) {
                put(in_flight, next);
            }
            // Also while idle, so the gauge falls to zero once caught up.
            if last_lag.elapsed() > Duration::from_secs(5) {
                self.report_lag();
                last_lag = Instant::now();
            }
        }
        if let Some(last) = take(in_flight) {
            self.finish(output, last, board, stop);
        }
        self.commit_last_sync();
        tracing::info!(stage = %self.name, "stage stopped");
    }

    /// Post the consumer's assignment when a rebalance changed it.
    fn publish_assignment(&self, board: &StatusBoard) {
        if let Some(assignment) = self.consumer.context().take_assignment() {
            crate::metrics::stage_assignment(&self.name, &assignment);
            board.set_assignment(&self.name, assignment);
        }
    }

    /// Read up to `batch_size` records, waiting at most `batch_wait` after
    /// the first. Records of partitions revoked meanwhile are dropped: they
    /// were not produced, and their next owner reads them from the commit.
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
            let polled = self.consumer.poll(wait);
            // The rebalance callback runs inside poll: what it revoked goes
            // before the record this poll returned (from a partition still
            // assigned) is added.
            let revoked = self.consumer.context().take_revoked();
            if !revoked.is_empty() {
                let before = batch.len();
                batch.retain_partitions(|topic, partition| {
                    !revoked.contains(&(topic.to_string(), partition))
                });
                if batch.len() != before {
                    tracing::info!(stage = %self.name, abandoned = before - batch.len(), "records of revoked partitions dropped from the batch being read");
                }
            }
            match polled {
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

    /// Wait for a batch's records to be acknowledged, then commit it.
    fn finish(
        &mut self,
        output: &Output,
        in_flight: InFlight,
        board: &StatusBoard,
        stop: &AtomicBool,
    ) {
        // Shutting down with records unacknowledged: not committed; the
        // batch is read again after restart (at-least-once).
        if let Some(prepared) = output.settle(in_flight, board, stop) {
            self.last_commit = commit(
                &self.name,
                &self.consumer,
                &prepared.batch,
                CommitMode::Async,
            );
            crate::metrics::stage_batch(&self.name, prepared.started.elapsed());
        }
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

/// How a stage delivers: its producer and the work it has started.
enum DeliveryMode {
    /// Acknowledged output, then an offset commit; one batch in flight.
    AtLeastOnce {
        output: Arc<Output>,
        in_flight: InFlightSlot,
    },
    /// Output, dead letters and offsets in one transaction.
    ExactlyOnce(SharedTransactions),
}

/// `<group>.<stage>.<host id>`: unique per stage and host, and stable
/// across restarts of a host (see [`crate::config::Config::host_id`]).
fn transactional_id(group: &str, stage: &str, host: &str) -> String {
    format!("{group}.{stage}.{host}")
}

/// Commit a batch's offsets (asynchronously while running: its records are
/// already acknowledged, so this saves a round trip without weakening
/// at-least-once). Returns what was committed, for a last synchronous
/// commit on stop.
/// The at-least-once loop's phases on a real stage (see [`pipeline`]).
struct LoopPhases<'a> {
    stage: &'a mut Stage,
    output: &'a Output,
    board: &'a StatusBoard,
    stop: &'a AtomicBool,
}

impl pipeline::Phases for LoopPhases<'_> {
    type Processed = process::Processed;
    type Ready = output::Prepared;
    type InFlight = InFlight;

    fn deliver(&mut self, processed: process::Processed) -> Option<output::Prepared> {
        self.stage.deliver(processed, self.board, self.stop)
    }

    fn finish(&mut self, in_flight: InFlight) {
        self.stage
            .finish(self.output, in_flight, self.board, self.stop);
    }

    fn launch(&mut self, ready: output::Prepared) -> InFlight {
        self.output.launch(ready)
    }
}

fn commit(
    stage: &str,
    consumer: &StageConsumer,
    batch: &Batch,
    mode: CommitMode,
) -> Option<TopicPartitionList> {
    let mut offsets = TopicPartitionList::new();
    for ((topic, partition), offset) in batch.next_offsets() {
        if let Err(e) = offsets.add_partition_offset(&topic, partition, Offset::Offset(offset)) {
            tracing::error!(stage, error = %e, "cannot build commit");
            return None;
        }
    }
    if let Err(e) = consumer.commit(&offsets, mode) {
        // The partitions moved to another member, which re-reads from the
        // last commit: duplicates, never loss.
        tracing::warn!(stage, error = %e, "offset commit failed; the batch may be redelivered");
    }
    Some(offsets)
}

fn take(slot: &InFlightSlot) -> Option<InFlight> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

fn put(slot: &InFlightSlot, in_flight: InFlight) {
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(in_flight);
}

/// Before partitions leave an at-least-once stage: wait for the batch in
/// flight to be acknowledged and commit it synchronously, so the next owner
/// starts after it. When the assignment was lost, the commit would be
/// refused: the batch is read again by the next owner (duplicates only).
struct FinishBeforeRevoke {
    stage: String,
    output: Arc<Output>,
    in_flight: InFlightSlot,
    board: StatusBoard,
    stop: Arc<AtomicBool>,
}

impl RevokeHook for FinishBeforeRevoke {
    fn before_revoke(&self, consumer: &StageConsumer, _revoked: &TopicPartitionList, lost: bool) {
        let Some(in_flight) = take(&self.in_flight) else {
            return;
        };
        if lost {
            tracing::warn!(stage = %self.stage, "assignment lost with a batch in flight: not committing it; the next owner reads it again");
            return;
        }
        if let Some(prepared) = self.output.settle(in_flight, &self.board, &self.stop) {
            commit(&self.stage, consumer, &prepared.batch, CommitMode::Sync);
            crate::metrics::stage_batch(&self.stage, prepared.started.elapsed());
            tracing::info!(stage = %self.stage, "batch in flight committed before the revocation");
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
