//! Consumer lag, measured off the stage thread: asking the group coordinator
//! for committed offsets and the leaders for watermarks takes broker round
//! trips, and a stage must not stall its batches for them.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::Kafka;

/// The stage's handle: hands assignments to the reporter thread, never waits.
pub struct LagReporter {
    requests: SyncSender<TopicPartitionList>,
}

impl LagReporter {
    /// Start a reporter for `stage`, reading `group`'s committed offsets with
    /// a client of its own (it does not join the group). The thread ends when
    /// the reporter is dropped.
    pub fn start(kafka: &Kafka, stage: &str, group: &str) -> anyhow::Result<Self> {
        let client: BaseConsumer = kafka
            .group_consumer(group)
            .context("cannot create the lag reporter's client")?;
        let (requests, incoming) = std::sync::mpsc::sync_channel(1);
        let stage = stage.to_string();
        std::thread::Builder::new()
            .name(format!("lag-{stage}"))
            .spawn(move || report(&client, &stage, &incoming))
            .context("cannot start the lag reporter thread")?;
        Ok(Self { requests })
    }

    /// Report lag for `assignment` soon; skipped if a report is still running.
    pub fn request(&self, assignment: TopicPartitionList) {
        // Full: the previous report is still running, and this one would
        // say the same. Disconnected: the reporter thread is gone.
        if let Err(TrySendError::Disconnected(_)) = self.requests.try_send(assignment) {
            tracing::debug!("lag reporter has stopped");
        }
    }
}

fn report(client: &BaseConsumer, stage: &str, incoming: &Receiver<TopicPartitionList>) {
    for assignment in incoming {
        let Ok(committed) = client.committed_offsets(assignment, Duration::from_secs(5)) else {
            continue;
        };
        for element in committed.elements() {
            let Ok((low, high)) = client.fetch_watermarks(
                element.topic(),
                element.partition(),
                Duration::from_secs(5),
            ) else {
                continue;
            };
            // Nothing committed yet: everything retained is behind.
            let committed = match element.offset() {
                Offset::Offset(o) => o,
                _ => low,
            };
            crate::metrics::consumer_lag(
                stage,
                element.topic(),
                element.partition(),
                (high - committed).max(0),
            );
        }
    }
}
