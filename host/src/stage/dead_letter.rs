//! Dead-letter records: the original input record plus headers that say
//! which stage and plugin failed it, why, and where it came from.

use super::batch::{Batch, Record};
use crate::runtime::Failure;

/// Prefix of every header Sluice adds to a dead letter.
pub const HEADER_PREFIX: &str = "sluice-";

/// Prefix of the headers a redrive adds (`sluice-redriven-by`,
/// `sluice-redrive-id`, ...; see `crate::dlq`): a redriven record that fails
/// again keeps them, so its new dead letter still says who redrove it.
pub const REDRIVE_PREFIX: &str = "sluice-redrive";

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
        .retain(|(k, _)| !k.starts_with(HEADER_PREFIX) || k.starts_with(REDRIVE_PREFIX));
    record.headers.extend(
        added
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into_bytes())),
    );
    record.topic = topic.to_string();
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

    #[test]
    fn a_dead_letter_replaces_failure_headers_and_keeps_redrive_headers() {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "trace",
                value: Some("t"),
            })
            .insert(Header {
                key: "sluice-error",
                value: Some("old"),
            })
            .insert(Header {
                key: "sluice-redriven-by",
                value: Some("alice"),
            })
            .insert(Header {
                key: "sluice-redrive-id",
                value: Some("r-1"),
            });
        let message = OwnedMessage::new(
            Some(b"v".to_vec()),
            Some(b"k".to_vec()),
            "in".into(),
            Timestamp::CreateTime(5),
            0,
            7,
            Some(headers),
        );
        let mut batch = Batch::with_capacity(1);
        batch.push(&message);
        let failure = Failure {
            source: 0,
            plugin: "tagger".into(),
            version: "v1".into(),
            error: "new".into(),
        };
        let record = record(&batch, "s", "in.dlq", &failure);
        let get = |name: &str| -> Vec<String> {
            record
                .headers
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .collect()
        };
        assert_eq!(get("trace"), vec!["t"]);
        assert_eq!(get("sluice-error"), vec!["new"]);
        assert_eq!(get("sluice-redriven-by"), vec!["alice"]);
        assert_eq!(get("sluice-redrive-id"), vec!["r-1"]);
        assert_eq!(get("sluice-origin-offset"), vec!["7"]);
        assert_eq!(record.topic, "in.dlq");
    }
}
