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

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

use rdkafka::ClientContext;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};

/// The stage's consumer.
pub type StageConsumer = BaseConsumer<StageContext>;

/// A topic and partition.
pub type Partition = (String, i32);

/// Work to settle before partitions are revoked.
pub trait RevokeHook: Send + Sync {
    /// Called inside `poll` before `revoked` leave this member; `lost` when
    /// the member was evicted and may no longer commit.
    fn before_revoke(&self, consumer: &StageConsumer, revoked: &TopicPartitionList, lost: bool);
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

impl ClientContext for StageContext {}

impl ConsumerContext for StageContext {
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
