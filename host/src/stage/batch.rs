//! A batch of consumed records: decoding them for the chain once, building
//! output records, and the offsets to commit.

use std::collections::BTreeMap;
use std::sync::Arc;

use rdkafka::Message;

use crate::config::Framing;
use crate::runtime::bindings::{Event, Header, Origin};
use crate::runtime::{Failure, Item};
use crate::schema::{LoadedSchema, SchemaSet};

/// A record to produce.
#[derive(Debug, Clone)]
pub struct Record {
    /// Destination topic.
    pub topic: String,
    /// Kafka key.
    pub key: Option<Vec<u8>>,
    /// Framed Avro value.
    pub value: Vec<u8>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Timestamp in epoch milliseconds.
    pub timestamp: Option<i64>,
}

struct Consumed {
    /// Shared by the records of one topic in a batch, not copied per record.
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp: Option<i64>,
    schema: Option<Arc<LoadedSchema>>,
    /// Where the datum starts in `value`, when its framing differs from the
    /// output framing (the record is re-framed on output).
    reframe: Option<usize>,
    /// Written with a registered schema and read as `schema`: re-encoded
    /// with `schema` on output, changed or not.
    resolved: bool,
}

/// Records read from Kafka for one round of the chain.
#[derive(Default)]
pub struct Batch {
    records: Vec<Consumed>,
    /// Framing of output records (the decoding set's output framing).
    framing: Framing,
}

impl Batch {
    /// An empty batch.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            records: Vec::with_capacity(n),
            framing: Framing::default(),
        }
    }

    /// Add a consumed message (borrowed from the consumer, or owned).
    pub fn push<M: Message>(&mut self, message: &M) {
        let headers = crate::kafka::record_headers(message);
        let topic = match self.records.last() {
            Some(last) if &*last.topic == message.topic() => last.topic.clone(),
            _ => Arc::from(message.topic()),
        };
        self.records.push(Consumed {
            topic,
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers,
            timestamp: message.timestamp().to_millis(),
            schema: None,
            reframe: None,
            resolved: false,
        });
    }

    /// Keep only the records whose topic and partition pass `keep` (drops
    /// what was read from partitions revoked while the batch filled).
    pub fn retain_partitions(&mut self, mut keep: impl FnMut(&str, i32) -> bool) {
        self.records.retain(|r| keep(&r.topic, r.partition));
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Where each record was read, `(partition, offset)`, in batch order.
    pub fn positions(&self) -> impl Iterator<Item = (i32, i64)> + '_ {
        self.records.iter().map(|r| (r.partition, r.offset))
    }

    /// True when nothing was read.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Decode every record's Avro value to the JSON plugins read, once.
    /// Undecodable records come back as failures (for the dead-letter topic).
    /// Records are read in either framing; output records are framed as
    /// `schemas.output_framing()` says.
    pub fn decode(&mut self, schemas: &SchemaSet) -> (Vec<(usize, Event)>, Vec<Failure>) {
        let mut events = Vec::with_capacity(self.records.len());
        let mut failures = Vec::new();
        self.framing = schemas.output_framing();
        for (index, record) in self.records.iter_mut().enumerate() {
            // One pass from the Avro datum to JSON bytes, no value trees.
            let decoded = schemas.decode_to_json(&record.value);
            match decoded {
                Ok((schema, json)) => {
                    record.resolved = !SchemaSet::written_with(&record.value, &schema);
                    let header = schema.header(self.framing);
                    record.reframe = (!record.value.starts_with(header))
                        .then(|| crate::schema::framing::split(&record.value).ok())
                        .flatten()
                        .map(|(_, datum)| record.value.len() - datum.len());
                    record.schema = Some(schema);
                    events.push((index, event_of(record, json)));
                }
                Err(e) => failures.push(Failure {
                    source: index,
                    plugin: String::new(),
                    version: String::new(),
                    error: format!("cannot decode record: {e:#}"),
                }),
            }
        }
        (events, failures)
    }

    /// True when record `index` was read as another schema than it was
    /// written with (a reader schema, or a registered writer schema), so its
    /// output is re-encoded from the event's JSON even when unchanged.
    pub fn resolved(&self, index: usize) -> bool {
        self.records.get(index).is_some_and(|r| r.resolved)
    }

    /// The output record for a chain result derived from input `source`:
    /// the input bytes reused when no plugin changed the event, else the new
    /// JSON re-encoded with the input's schema.
    pub fn output_record(
        &self,
        source: usize,
        item: Item,
        default_topic: &str,
        versions: &str,
    ) -> Result<Record, Failure> {
        let input = &self.records[source];
        let value = if item.changed || input.resolved {
            reencode(input, &item.event.value, self.framing).map_err(|error| {
                let (plugin, version) = item.changed_by.as_deref().cloned().unwrap_or_default();
                Failure {
                    source,
                    plugin,
                    version,
                    error,
                }
            })?
        } else if let (Some(start), Some(schema)) = (input.reframe, &input.schema) {
            // Unchanged, but framed otherwise than the output: the same
            // datum under the output's header.
            let header = schema.header(self.framing);
            let mut value = Vec::with_capacity(header.len() + input.value.len() - start);
            value.extend_from_slice(header);
            value.extend_from_slice(&input.value[start..]);
            value
        } else {
            input.value.clone()
        };
        let mut headers: Vec<(String, Vec<u8>)> = item
            .event
            .headers
            .into_iter()
            .filter(|h| h.key != super::PLUGINS_HEADER)
            .map(|h| (h.key, h.value))
            .collect();
        headers.push((
            super::PLUGINS_HEADER.to_string(),
            versions.as_bytes().to_vec(),
        ));
        Ok(Record {
            topic: item
                .event
                .topic
                .unwrap_or_else(|| default_topic.to_string()),
            key: item.event.key,
            value,
            headers,
            timestamp: item.event.timestamp_ms.or(input.timestamp),
        })
    }

    /// The original record at `index`, as read (for dead letters).
    pub(super) fn original(&self, index: usize) -> Record {
        let r = &self.records[index];
        Record {
            topic: r.topic.to_string(),
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
            timestamp: r.timestamp,
        }
    }

    /// Origin of the record at `index`.
    pub(super) fn origin(&self, index: usize) -> (&str, i32, i64) {
        let r = &self.records[index];
        (&r.topic, r.partition, r.offset)
    }

    /// The offset to commit per partition: one past the highest read.
    pub fn next_offsets(&self) -> BTreeMap<(String, i32), i64> {
        // A batch spans a few partitions: a short list beats a map keyed by
        // a fresh String per record.
        let mut next: Vec<(&Arc<str>, i32, i64)> = Vec::new();
        for r in &self.records {
            match next
                .iter_mut()
                .find(|(t, p, _)| *p == r.partition && **t == r.topic)
            {
                Some(entry) => entry.2 = entry.2.max(r.offset + 1),
                None => next.push((&r.topic, r.partition, r.offset + 1)),
            }
        }
        next.into_iter()
            .map(|(t, p, o)| ((t.to_string(), p), o))
            .collect()
    }
}

fn reencode(input: &Consumed, json: &[u8], framing: Framing) -> Result<Vec<u8>, String> {
    let schema = input
        .schema
        .as_ref()
        .ok_or_else(|| "input record has no schema".to_string())?;
    // Validated and encoded in one pass from the plugin's JSON bytes.
    schema.encode_json_bytes_framed(framing, json).map_err(|e| {
        format!(
            "plugin output does not match schema {}: {e}",
            schema.path.display()
        )
    })
}

fn event_of(record: &Consumed, value: Vec<u8>) -> Event {
    Event {
        key: record.key.clone(),
        value: value.into(),
        headers: record
            .headers
            .iter()
            .map(|(k, v)| Header {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        timestamp_ms: record.timestamp,
        origin: Some(Origin {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
        }),
        topic: None,
    }
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
