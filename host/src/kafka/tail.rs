//! Reading the last records of a topic, decoded to JSON, for operators
//! (`GET /admin/topics/{topic}/tail`). Uses manual assignment and no
//! consumer group, so it never disturbs stages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::schema::SchemaSet;

/// One record as an operator sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TailRecord {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Timestamp, epoch milliseconds.
    pub timestamp: Option<i64>,
    /// Key as text.
    pub key: Option<String>,
    /// Headers as text, `[name, value]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub headers: Vec<(String, String)>,
    /// The value decoded to natural JSON, or an `{"undecodable": reason}`.
    pub value: serde_json::Value,
}

/// Reads topic tails.
pub struct Tail {
    /// One reader; requests take turns (assignment is per consumer).
    consumer: std::sync::Mutex<BaseConsumer>,
    schemas: Arc<SchemaSet>,
}

impl Tail {
    /// A reader on `kafka` decoding with `schemas`.
    pub fn new(kafka: &super::Kafka, schemas: Arc<SchemaSet>) -> anyhow::Result<Self> {
        Ok(Self {
            consumer: std::sync::Mutex::new(kafka.reader()?),
            schemas,
        })
    }

    /// Up to `limit` of the newest records of every partition of `topic`,
    /// oldest first.
    pub fn last(&self, topic: &str, limit: usize) -> anyhow::Result<Vec<TailRecord>> {
        let consumer = self
            .consumer
            .lock()
            .map_err(|_| anyhow::anyhow!("topic reader is poisoned"))?;
        let timeout = Duration::from_secs(5);
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(UnknownTopic(topic.to_string()).into());
        }
        let mut assignment = TopicPartitionList::new();
        let mut remaining = 0usize;
        for partition in &partitions {
            let (low, high) = consumer.fetch_watermarks(topic, *partition, timeout)?;
            let start = (high - limit as i64).max(low);
            remaining += (high - start) as usize;
            assignment.add_partition_offset(topic, *partition, Offset::Offset(start))?;
        }
        consumer
            .assign(&assignment)
            .context("cannot assign partitions")?;
        let mut out = Vec::with_capacity(remaining);
        let deadline = Instant::now() + timeout;
        while out.len() < remaining && Instant::now() < deadline {
            let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = message?;
            let decoded = message.payload().map(|p| {
                let (_, json) = self.schemas.decode_to_json(p)?;
                Ok::<_, anyhow::Error>(serde_json::from_slice(&json)?)
            });
            let value = match decoded {
                Some(Ok(json)) => json,
                Some(Err(e)) => serde_json::json!({"undecodable": format!("{e:#}")}),
                None => serde_json::Value::Null,
            };
            out.push(TailRecord {
                partition: message.partition(),
                offset: message.offset(),
                timestamp: message.timestamp().to_millis(),
                key: message
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned()),
                headers: super::record_headers(&message)
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                    .collect(),
                value,
            });
        }
        out.sort_by_key(|r| (r.timestamp, r.partition, r.offset));
        let skip = out.len().saturating_sub(limit);
        Ok(out.into_iter().skip(skip).collect())
    }
}

/// A tail of a topic the broker does not have (the admin API answers 404).
#[derive(Debug)]
pub struct UnknownTopic(pub String);

impl std::fmt::Display for UnknownTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "topic `{}` does not exist", self.0)
    }
}

impl std::error::Error for UnknownTopic {}
