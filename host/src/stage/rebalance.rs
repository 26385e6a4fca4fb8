//! What a stage does when its consumer group rebalances.
//!
//! librdkafka runs the rebalance callback inside `poll`, on the stage's own
//! thread, before partitions move to another member. There the stage
//! settles the work it started on the partitions it is about to lose:
//! at-least-once waits for the in-flight batch's acknowledgements and
//! commits it synchronously; exactly-once commits the open transaction
//! (offsets and all). Records already read from revoked partitions but not
//! yet produced are abandoned (the next owner reads them from the committed
//! offset). When the assignment was *lost* (this member was evicted, e.g.
//! after a stall), nothing is committed: the open transaction is aborted.
//!
//! Exactly-once stages also choose where newly assigned partitions start.
//! They fetch the committed offsets themselves, waiting while a transaction
//! of the partitions' previous owner still holds them (a host killed
//! mid-commit: its transaction stays open until `transaction_timeout_ms`),
//! and assign the partitions at those offsets. Left to librdkafka (2.12),
//! that wait loses its place when the assignment changes again during it:
//! the partition goes back to pending with no offset and starts by
//! `auto.offset.reset`, from the beginning, and every record the previous
//! owners committed comes out a second time (seen in
//! `tests/tests/scale_out.rs`, 1 run in 6 under load: 2 517 duplicates;
//! `tests/tests/exactly_once.rs` reproduces it every time without this).

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// How long a new assignment waits for committed offsets held by another
/// member's open transaction before librdkafka is left to fetch them.
/// Longer than the default `transaction_timeout_ms` (10 s), after which
/// the broker aborts such a transaction.
const COMMITTED_WAIT: Duration = Duration::from_secs(60);

/// The stage's consumer.
pub type StageConsumer = BaseConsumer<StageContext>;

/// A topic and partition.
pub type Partition = (String, i32);

/// Work to settle before partitions are revoked.
pub trait RevokeHook: Send + Sync {
    /// Called inside `poll` before `revoked` leave this member; `lost` when
    /// the member was evicted and may no longer commit.
    fn before_revoke(&self, consumer: &StageConsumer, revoked: &TopicPartitionList, lost: bool);

    /// Whether newly assigned partitions start at committed offsets the
    /// stage fetched itself (stable ones only: see the module doc), rather
    /// than at those librdkafka fetches.
    fn start_at_committed(&self) -> bool {
        false
    }
}

/// The consumer context of a stage: runs its [`RevokeHook`] and remembers
/// what changed for the stage loop.
pub struct StageContext {
    stage: String,
    hook: OnceLock<Box<dyn RevokeHook>>,
    changes: Mutex<Changes>,
}

#[derive(Default)]
struct Changes {
    revoked: BTreeSet<Partition>,
    assignment: Option<Vec<Partition>>,
}

impl StageContext {
    /// A context for `stage`; its hook is set once the stage is built.
    pub fn new(stage: &str) -> Self {
        Self {
            stage: stage.to_string(),
            hook: OnceLock::new(),
            changes: Mutex::new(Changes::default()),
        }
    }

    /// Set what runs before a revocation (once).
    pub fn set_hook(&self, hook: Box<dyn RevokeHook>) {
        if self.hook.set(hook).is_err() {
            tracing::warn!(stage = %self.stage, "rebalance hook already set");
        }
    }

    /// Partitions revoked since the last call.
    pub fn take_revoked(&self) -> BTreeSet<Partition> {
        self.changes
            .lock()
            .map(|mut c| std::mem::take(&mut c.revoked))
            .unwrap_or_default()
    }

    /// The new assignment, if it changed since the last call.
    pub fn take_assignment(&self) -> Option<Vec<Partition>> {
        self.changes
            .lock()
            .ok()
            .and_then(|mut c| c.assignment.take())
    }
}

fn partitions(list: &TopicPartitionList) -> Vec<Partition> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl StageContext {
    /// Set each partition of `assigned` to its committed offset, fetched
    /// with `isolation.level=read_committed` (so the coordinator answers
    /// only once no open transaction holds it), retrying for up to
    /// [`COMMITTED_WAIT`]. A partition with no commit keeps its offset
    /// (librdkafka then applies `auto.offset.reset`).
    fn start_at_committed(&self, consumer: &StageConsumer, assigned: &mut TopicPartitionList) {
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            let why = match committed(consumer, assigned) {
                Ok(offsets) => {
                    let mut at = Vec::new();
                    for (topic, partition, offset) in offsets {
                        if let Err(e) = assigned.set_partition_offset(&topic, partition, offset) {
                            tracing::warn!(stage = %self.stage, topic, partition, error = %e, "cannot set a start offset");
                        }
                        at.push((partition, offset));
                    }
                    tracing::info!(stage = %self.stage, start = ?at, waited_ms = started.elapsed().as_millis(), "new partitions start at their committed offsets");
                    return;
                }
                Err(why) => why,
            };
            if started.elapsed() > COMMITTED_WAIT {
                tracing::warn!(stage = %self.stage, error = %why, "cannot read the committed offsets of the new partitions; librdkafka fetches them");
                return;
            }
            tracing::info!(stage = %self.stage, error = %why, "waiting for the committed offsets of the new partitions");
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }
}

/// The committed offset of each partition of `partitions` that has one, or
/// why they cannot be read yet (a request or partition error, such as
/// `UNSTABLE_OFFSET_COMMIT` while a transaction holds the offset).
fn committed(
    consumer: &StageConsumer,
    partitions: &TopicPartitionList,
) -> Result<Vec<(String, i32, Offset)>, KafkaError> {
    let answer = consumer.committed_offsets(partitions.clone(), Duration::from_secs(10))?;
    let mut offsets = Vec::new();
    for e in answer.elements() {
        e.error()?;
        if let Offset::Offset(o) = e.offset() {
            offsets.push((e.topic().to_string(), e.partition(), Offset::Offset(o)));
        }
    }
    Ok(offsets)
}

impl ClientContext for StageContext {}

impl ConsumerContext for StageContext {
    /// librdkafka's default handling (pre-rebalance, assign or unassign,
    /// post-rebalance), with the start offsets of an exactly-once stage's
    /// new partitions set first.
    fn rebalance(
        &self,
        consumer: &StageConsumer,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            self.pre_rebalance(consumer, &Rebalance::Assign(partitions));
            if partitions.count() > 0 && self.hook.get().is_some_and(|h| h.start_at_committed()) {
                self.start_at_committed(consumer, partitions);
            }
            let assigned = if cooperative {
                consumer.incremental_assign(partitions)
            } else {
                consumer.assign(partitions)
            };
            if let Err(e) = assigned {
                tracing::error!(stage = %self.stage, error = %e, "cannot take the assigned partitions");
            }
            self.post_rebalance(consumer, &Rebalance::Assign(partitions));
            return;
        }
        let rebalance = if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
            Rebalance::Revoke(partitions)
        } else {
            Rebalance::Error(KafkaError::Rebalance(err.into()))
        };
        self.pre_rebalance(consumer, &rebalance);
        let released = if cooperative {
            consumer.incremental_unassign(partitions)
        } else {
            consumer.unassign()
        };
        if let Err(e) = released {
            tracing::error!(stage = %self.stage, error = %e, "cannot release the revoked partitions");
        }
        self.post_rebalance(consumer, &rebalance);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            let lost = consumer.assignment_lost();
            tracing::info!(stage = %self.stage, partitions = ?partitions(revoked), lost, "partitions revoked");
            if let Some(hook) = self.hook.get() {
                hook.before_revoke(consumer, revoked, lost);
            }
            if let Ok(mut changes) = self.changes.lock() {
                changes.revoked.extend(partitions(revoked));
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Error(e) = rebalance {
            tracing::warn!(stage = %self.stage, error = %e, "rebalance error");
        }
        let assignment = consumer
            .assignment()
            .map(|a| partitions(&a))
            .unwrap_or_default();
        tracing::info!(stage = %self.stage, assignment = ?assignment, "assignment now");
        if let Ok(mut changes) = self.changes.lock() {
            changes.assignment = Some(assignment);
        }
    }
}
