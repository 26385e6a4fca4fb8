//! Stage status: the board where each stage posts its state, heartbeat and
//! partition assignment. The stages write it; `/readyz`, the admin API and
//! the console read it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

/// What a stage reports about itself for `/readyz` and the admin API.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StageState {
    /// Joining its consumer group and loading plugins.
    Starting,
    /// Consuming and processing.
    Running,
    /// Retrying a batch the chain or sink could not finish (e.g. the
    /// database is down); consumption paused, nothing committed.
    Retrying,
    /// Stopped on shutdown after committing its last batch.
    Stopped,
}

/// The shared board where stages post their state.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    stages: Arc<RwLock<BTreeMap<String, (StageState, String)>>>,
    beats: Arc<RwLock<BTreeMap<String, Instant>>>,
    assignments: Arc<RwLock<BTreeMap<String, Vec<super::Partition>>>>,
    draining: Arc<AtomicBool>,
}

/// A running stage whose thread has not shown progress for this long is
/// reported stuck, and `/readyz` fails (e.g. a call that never returns).
pub const STUCK_AFTER: Duration = Duration::from_secs(60);

impl StatusBoard {
    /// Mark the host as shutting down: `/readyz` answers 503 from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// True once shutdown began.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Record a stage's state with a human-readable detail.
    pub fn set(&self, stage: &str, state: StageState, detail: impl Into<String>) {
        if let Ok(mut stages) = self.stages.write() {
            stages.insert(stage.to_string(), (state, detail.into()));
        }
        self.beat(stage);
    }

    /// Record that a stage's thread is making progress (called every poll
    /// loop and every retry).
    pub fn beat(&self, stage: &str) {
        if let Ok(mut beats) = self.beats.write() {
            beats.insert(stage.to_string(), Instant::now());
        }
    }

    /// Record the partitions a stage's consumer holds now.
    pub fn set_assignment(&self, stage: &str, partitions: Vec<super::Partition>) {
        if let Ok(mut assignments) = self.assignments.write() {
            assignments.insert(stage.to_string(), partitions);
        }
    }

    /// The partitions `stage` holds, as last reported.
    pub fn assignment(&self, stage: &str) -> Vec<super::Partition> {
        self.assignments
            .read()
            .ok()
            .and_then(|a| a.get(stage).cloned())
            .unwrap_or_default()
    }

    /// How long ago `stage` last showed progress.
    pub fn quiet_for(&self, stage: &str) -> Option<Duration> {
        self.beats
            .read()
            .ok()
            .and_then(|b| b.get(stage).map(Instant::elapsed))
    }

    /// Every stage's state and detail, by name.
    pub fn snapshot(&self) -> BTreeMap<String, (StageState, String)> {
        self.stages.read().map(|s| s.clone()).unwrap_or_default()
    }
}
