//! Exactly-once stages (`delivery = "exactly-once"`): a batch's output
//! records, its dead letters and its input offsets are written in one Kafka
//! transaction, so a `read_committed` reader sees the results of each input
//! record exactly once, whatever fails in between.
//!
//! The KIP-447 model: one transactional producer per stage per host; input
//! read with `isolation.level=read_committed`; the offsets committed by
//! `send_offsets_to_transaction` with the consumer's group metadata, so the
//! group coordinator refuses the commit of a member whose generation is
//! stale (a stalled host whose partitions moved on): its transaction aborts
//! and nothing it wrote becomes visible. One transaction collects batches
//! for `transaction_interval_ms`, then commits. On any failure the open
//! transaction is aborted (the producer is rebuilt if it was fenced or
//! broke) and the consumer rewinds to the last committed offsets, so the
//! aborted work is done again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use rdkafka::consumer::{Consumer, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer as _;
use rdkafka::{Offset, TopicPartitionList};

use super::output::future_record;
use super::rebalance::{RevokeHook, StageConsumer};
use super::{MAX_RETRY_DELAY, Record, Stage, retry_delays};
use crate::kafka::{
    TRANSACTION_CALL_TIMEOUT, TransactionalProducer, TxnErrorKind, classify_txn_error,
};
use crate::stage::{StageState, StatusBoard};

/// How often a retriable transactional call is tried before the
/// transaction is aborted instead.
const RETRIABLE_ATTEMPTS: u32 = 5;

/// An exactly-once stage's transaction state, shared with the rebalance
/// callback.
pub struct Transactions {
    stage: String,
    producer: TransactionalProducer,
    /// When the open transaction began; `None` when none is open.
    open_since: Option<Instant>,
    /// Next offsets to commit with the open transaction.
    offsets: BTreeMap<(String, i32), i64>,
    /// Set when an abort left the consumer ahead of the committed offsets.
    needs_rewind: bool,
}

/// Shared handle on a stage's [`Transactions`].
pub type SharedTransactions = Arc<Mutex<Transactions>>;

/// Lock, recovering from a poisoned lock (a panic elsewhere leaves the state
/// as consistent as the last completed call made it).
pub fn lock(shared: &SharedTransactions) -> MutexGuard<'_, Transactions> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl Transactions {
    /// Transaction state for `stage` around `producer`.
    pub fn new(stage: &str, producer: TransactionalProducer) -> Self {
        tracing::info!(
            stage,
            transactional_id = producer.transactional_id(),
            "exactly-once: transactions initialised"
        );
        Self {
            stage: stage.to_string(),
            producer,
            open_since: None,
            offsets: BTreeMap::new(),
            needs_rewind: false,
        }
    }

    /// True when the open transaction is older than `interval`.
    pub fn due(&self, interval: Duration) -> bool {
        self.open_since.is_some_and(|t| t.elapsed() >= interval)
    }

    /// True while a transaction is open.
    pub fn is_open(&self) -> bool {
        self.open_since.is_some()
    }

    /// Take the rewind flag.
    pub fn take_rewind(&mut self) -> bool {
        std::mem::take(&mut self.needs_rewind)
    }

    /// Produce a batch's `records` inside the open transaction (beginning
    /// one if needed) and remember its `next_offsets` for the commit.
    pub fn send(
        &mut self,
        records: &[Record],
        next_offsets: BTreeMap<(String, i32), i64>,
    ) -> Result<(), KafkaError> {
        if self.open_since.is_none() {
            self.producer.producer().begin_transaction()?;
            self.open_since = Some(Instant::now());
        }
        let producer = self.producer.producer();
        for record in records {
            let mut future = future_record(record);
            loop {
                match producer.send_result(future) {
                    // Delivery is checked by commit_transaction, which fails
                    // if any record of the transaction was not delivered.
                    Ok(_delivery) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        future = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err((e, _)) => return Err(e),
                }
            }
        }
        for (partition, offset) in next_offsets {
            let entry = self.offsets.entry(partition).or_insert(offset);
            *entry = (*entry).max(offset);
        }
        crate::metrics::producer_queue_depth("stage", producer.in_flight_count());
        Ok(())
    }

    /// Commit the open transaction with its offsets, as of `consumer`'s
    /// group generation. On failure the transaction is aborted (and the
    /// producer rebuilt if needed) and the consumer must rewind.
    pub fn commit(&mut self, consumer: &StageConsumer) -> Result<(), KafkaError> {
        self.commit_as(consumer.group_metadata())
    }

    /// [`Transactions::commit`] with the consumer's group metadata taken
    /// already (`None`: no longer a group member), so it can run off the
    /// stage thread.
    pub fn commit_as(&mut self, metadata: Option<ConsumerGroupMetadata>) -> Result<(), KafkaError> {
        let Some(since) = self.open_since else {
            return Ok(());
        };
        let started = Instant::now();
        let result = self.try_commit(metadata);
        match &result {
            Ok(()) => {
                crate::metrics::stage_transaction(&self.stage, "committed", started.elapsed());
                tracing::debug!(stage = %self.stage, open_for = ?since.elapsed(), "transaction committed");
                self.open_since = None;
                self.offsets.clear();
            }
            Err(e) => {
                tracing::warn!(stage = %self.stage, error = %e, "transaction commit failed; aborting and rewinding to the committed offsets");
                self.abort(classify_txn_error(e));
            }
        }
        result
    }

    fn try_commit(&mut self, metadata: Option<ConsumerGroupMetadata>) -> Result<(), KafkaError> {
        if !self.offsets.is_empty() {
            let mut list = TopicPartitionList::new();
            for ((topic, partition), offset) in &self.offsets {
                list.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
            }
            // No group metadata: not (or no longer) a group member.
            let metadata = metadata.ok_or(KafkaError::ConsumerCommit(RDKafkaErrorCode::State))?;
            retrying(|| {
                self.producer.producer().send_offsets_to_transaction(
                    &list,
                    &metadata,
                    TRANSACTION_CALL_TIMEOUT,
                )
            })?;
        }
        retrying(|| {
            self.producer
                .producer()
                .commit_transaction(TRANSACTION_CALL_TIMEOUT)
        })
    }

    /// Abort the open transaction (or rebuild the producer when `kind` says
    /// it is fenced or broken, or the abort itself fails); the consumer must
    /// then rewind to the committed offsets.
    pub fn abort(&mut self, kind: TxnErrorKind) {
        self.open_since = None;
        self.offsets.clear();
        self.needs_rewind = true;
        crate::metrics::stage_transaction(&self.stage, "aborted", Duration::ZERO);
        if kind != TxnErrorKind::Fatal {
            match retrying(|| {
                self.producer
                    .producer()
                    .abort_transaction(TRANSACTION_CALL_TIMEOUT)
            }) {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(stage = %self.stage, error = %e, "abort failed; rebuilding the transactional producer")
                }
            }
        }
        self.rebuild();
    }

    /// A fresh producer with the same transactional id; its initialisation
    /// fences the old one and aborts what it had open. Retried with backoff
    /// until the coordinator answers (e.g. after a broker outage).
    fn rebuild(&mut self) {
        let mut delays = retry_delays(Duration::from_millis(200)).build();
        loop {
            match self.producer.rebuild() {
                Ok(()) => {
                    crate::metrics::producer_replaced("stage-transactional");
                    tracing::info!(stage = %self.stage, transactional_id = self.producer.transactional_id(), "transactional producer rebuilt");
                    return;
                }
                Err(e) => {
                    tracing::warn!(stage = %self.stage, error = %format!("{e:#}"), "cannot rebuild the transactional producer yet; retrying");
                    std::thread::sleep(delays.next().unwrap_or(MAX_RETRY_DELAY));
                }
            }
        }
    }
}

/// A transaction commit running on a thread of its own.
struct Committing(std::sync::mpsc::Receiver<()>);

impl Committing {
    /// Commit `transactions`' open transaction as of `metadata` on a new
    /// thread. (If a rebalance commits it first, this finds none open.)
    fn start(transactions: SharedTransactions, metadata: Option<ConsumerGroupMetadata>) -> Self {
        let (done, finished) = std::sync::mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name("txn-commit".into())
            .spawn(move || {
                // A failure aborts and flags the rewind itself.
                let _ = lock(&transactions).commit_as(metadata);
                let _ = done.send(());
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a commit thread; the transaction is committed on the stage's next turn");
        }
        Self(finished)
    }
}

/// Wait for the commit in progress, if any, to finish.
fn wait(committing: &mut Option<Committing>) {
    if let Some(Committing(finished)) = committing.take() {
        // Disconnected: the thread ended (or never started).
        let _ = finished.recv();
    }
}

/// Call `f` again while it fails with a retriable error, a few times.
fn retrying(mut f: impl FnMut() -> Result<(), KafkaError>) -> Result<(), KafkaError> {
    let mut attempt = 0;
    loop {
        match f() {
            Err(e)
                if classify_txn_error(&e) == TxnErrorKind::Retriable
                    && attempt + 1 < RETRIABLE_ATTEMPTS =>
            {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(100 * u64::from(attempt)));
            }
            other => return other,
        }
    }
}

/// Before partitions leave an exactly-once stage: commit the open
/// transaction (the generation is still current during the revoke phase),
/// or abort it when the assignment was lost.
pub struct CommitBeforeRevoke(pub SharedTransactions);

impl RevokeHook for CommitBeforeRevoke {
    fn before_revoke(&self, consumer: &StageConsumer, _revoked: &TopicPartitionList, lost: bool) {
        let mut txn = lock(&self.0);
        if !txn.is_open() {
            return;
        }
        if lost {
            tracing::warn!(stage = %txn.stage, "assignment lost with a transaction open: aborting it");
            txn.abort(TxnErrorKind::Abortable);
        } else {
            // A failed commit aborts and flags the rewind itself.
            let _ = txn.commit(consumer);
        }
    }

    fn start_at_committed(&self) -> bool {
        true
    }
}

impl Stage {
    /// The exactly-once loop: read, run the chain, produce into the open
    /// transaction; commit it every `transaction_interval`; on failure abort
    /// and rewind. A commit runs on a thread of its own while the next batch
    /// is read and run through the chain (it is produced only after the
    /// commit finished, into the next transaction).
    pub(super) fn run_exactly_once(
        &mut self,
        transactions: &SharedTransactions,
        board: &StatusBoard,
        stop: &AtomicBool,
    ) {
        let mut last_lag = Instant::now();
        let mut committing: Option<Committing> = None;
        self.apply_updates();
        while !stop.load(Ordering::SeqCst) {
            board.beat(&self.name);
            self.publish_assignment(board);
            // A rebalance inside the poll commits (or aborts) the open
            // transaction itself, waiting for a commit in progress first.
            let batch = match self.poll_batch(stop) {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(stage = %self.name, error = %e, "consumer error");
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            };
            let prepared = if batch.is_empty() {
                None
            } else {
                {
                    let processed = self.process(batch);
                    self.deliver(processed, board, stop)
                }
            };
            wait(&mut committing);
            // An abort (of a failed commit, or in a rebalance) left the
            // consumer ahead of the committed offsets: what was read since
            // is dropped and read again.
            if lock(transactions).take_rewind() {
                self.rewind(board, stop);
                continue;
            }
            let mut txn = lock(transactions);
            if let Some(prepared) = prepared {
                let next = prepared.batch.next_offsets();
                if let Err(e) = txn.send(&prepared.records, next) {
                    tracing::warn!(stage = %self.name, error = %e, "producing into the transaction failed; aborting and rewinding");
                    txn.abort(classify_txn_error(&e));
                    continue;
                }
                crate::metrics::stage_batch(&self.name, prepared.started.elapsed());
            }
            if txn.due(self.transaction_interval) {
                drop(txn);
                committing = Some(Committing::start(
                    transactions.clone(),
                    self.consumer.group_metadata(),
                ));
                // Plugin versions change only between transactions, so one
                // transaction's output comes from one set of versions.
                self.apply_updates();
            }
            if last_lag.elapsed() > Duration::from_secs(5) {
                self.report_lag();
                last_lag = Instant::now();
            }
        }
        wait(&mut committing);
        let mut txn = lock(transactions);
        if txn.is_open()
            && let Err(e) = txn.commit(&self.consumer)
        {
            tracing::warn!(stage = %self.name, error = %e, "final transaction failed; its batches are read again after restart");
        }
        tracing::info!(stage = %self.name, "stage stopped");
    }

    /// Seek every assigned partition back to its committed offset (the
    /// start of the aborted work), retrying until the coordinator answers.
    fn rewind(&mut self, board: &StatusBoard, stop: &AtomicBool) {
        let mut delays = retry_delays(Duration::from_millis(100)).build();
        while !stop.load(Ordering::SeqCst) {
            board.beat(&self.name);
            match self.try_rewind() {
                Ok(list) => {
                    tracing::info!(stage = %self.name, to = ?list, "rewound to the committed offsets");
                    return;
                }
                Err(e) => {
                    board.set(
                        &self.name,
                        StageState::Retrying,
                        format!(
                            "rewinding to the committed offsets after an aborted transaction: {e}"
                        ),
                    );
                    tracing::warn!(stage = %self.name, error = %e, "cannot rewind yet; retrying");
                    std::thread::sleep(delays.next().unwrap_or(MAX_RETRY_DELAY));
                }
            }
        }
    }

    fn try_rewind(&self) -> Result<Vec<(i32, Offset)>, KafkaError> {
        let assignment = self.consumer.assignment()?;
        if assignment.count() == 0 {
            return Ok(Vec::new());
        }
        let committed = self
            .consumer
            .committed_offsets(assignment, TRANSACTION_CALL_TIMEOUT)?;
        let mut seek = TopicPartitionList::new();
        let mut to = Vec::new();
        for e in committed.elements() {
            // Not readable yet (e.g. `UNSTABLE_OFFSET_COMMIT`: a transaction
            // of the partition's previous owner still holds it): retried,
            // never taken for "no commit".
            e.error()?;
            // No commit yet: from the start, as `auto.offset.reset=earliest`.
            let offset = match e.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            seek.add_partition_offset(e.topic(), e.partition(), offset)?;
            to.push((e.partition(), offset));
        }
        let result = self
            .consumer
            .seek_partitions(seek, TRANSACTION_CALL_TIMEOUT)?;
        for e in result.elements() {
            e.error()?;
        }
        Ok(to)
    }
}
