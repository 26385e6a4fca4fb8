//! Dead-letter records: the original input record plus headers that say
//! which stage and plugin failed it, why, and where it came from.

use super::batch::{Batch, Record};
use crate::runtime::Failure;

/// Prefix of every header Sluice adds to a dead letter.
pub const HEADER_PREFIX: &str = "sluice-";

/// The dead-letter record for `failure`, bound for `topic`.
pub fn record(batch: &Batch, stage: &str, topic: &str, failure: &Failure) -> Record {
    let mut record = batch.original(failure.source);
    let (origin_topic, partition, offset) = batch.origin(failure.source);
    let plugin = if failure.plugin.is_empty() {
        "(host)"
    } else {
        &failure.plugin
    };
    let added = [
        ("sluice-stage", stage.to_string()),
        ("sluice-plugin", plugin.to_string()),
        ("sluice-plugin-version", failure.version.clone()),
        ("sluice-error", failure.error.clone()),
        ("sluice-origin-topic", origin_topic.to_string()),
        ("sluice-origin-partition", partition.to_string()),
        ("sluice-origin-offset", offset.to_string()),
    ];
    record
        .headers
        .retain(|(k, _)| !k.starts_with(HEADER_PREFIX));
    record.headers.extend(
        added
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into_bytes())),
    );
    record.topic = topic.to_string();
    record
}
