//! Where replayed events go: NDJSON or an Avro container file (to a file or
//! stdout), or a Kafka topic written exactly as a stage writes its output.

use std::time::Duration;

use super::{InputError, ReplayArgs};
use crate::config::LoadedConfig;
use crate::kafka::Kafka;
use std::io::Write;

use anyhow::Context;
use futures::executor::block_on;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureRecord};

use crate::kafka::Producer;
use crate::schema::{LoadedSchema, SchemaSet};
use crate::stage::Record;

/// Where a replayed record came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    /// Input partition.
    pub partition: i32,
    /// Input offset.
    pub offset: i64,
}

/// Deliveries awaited at once before more records are sent.
const MAX_PENDING: usize = 100_000;

/// A destination for output records.
pub enum Sink<'s> {
    /// One JSON object per line: origin, destination topic, key, headers and
    /// the value decoded to natural JSON.
    Ndjson(Box<dyn Write + Send + 's>),
    /// An Avro object container file with one writer schema.
    Avro(
        Box<apache_avro::Writer<'s, Box<dyn Write + Send + 's>>>,
        &'s LoadedSchema,
    ),
    /// A Kafka topic: framed Avro values, keys, headers and timestamps as a
    /// stage would produce them.
    Topic {
        /// The producer.
        producer: Producer,
        /// Destination topic (every record goes here, whatever a plugin routed).
        topic: String,
        /// Deliveries not awaited yet.
        pending: Vec<DeliveryFuture>,
    },
}

impl Sink<'_> {
    /// Write one output record. `json` is the event's natural JSON when the
    /// chain left it unchanged (so it need not be decoded again).
    pub fn write(
        &mut self,
        schemas: &SchemaSet,
        origin: Origin,
        record: Record,
        json: Option<Vec<u8>>,
    ) -> anyhow::Result<Result<(), String>> {
        match self {
            Sink::Ndjson(out) => {
                let json = match json {
                    Some(json) => json,
                    None => match schemas.decode_to_json(&record.value) {
                        Ok((_, json)) => json,
                        Err(e) => return Ok(Err(format!("cannot decode output: {e:#}"))),
                    },
                };
                write_line(out, origin, &record, &json).context("cannot write output")?;
                Ok(Ok(()))
            }
            Sink::Avro(writer, schema) => {
                let (found, value) = match schemas.decode(&record.value) {
                    Ok(decoded) => decoded,
                    Err(e) => return Ok(Err(format!("cannot decode output: {e:#}"))),
                };
                if found.fingerprint != schema.fingerprint {
                    return Ok(Err(format!(
                        "record schema {} is not the file's writer schema {}",
                        found.path.display(),
                        schema.path.display()
                    )));
                }
                writer
                    .append(value)
                    .context("cannot write the Avro container file")?;
                Ok(Ok(()))
            }
            Sink::Topic {
                producer,
                topic,
                pending,
            } => {
                let headers = record.headers.iter().fold(
                    OwnedHeaders::new_with_capacity(record.headers.len()),
                    |h, (k, v)| {
                        h.insert(Header {
                            key: k,
                            value: Some(v.as_slice()),
                        })
                    },
                );
                let mut future = FutureRecord::to(topic.as_str())
                    .payload(&record.value)
                    .headers(headers);
                if let Some(key) = &record.key {
                    future = future.key(key);
                }
                if let Some(ts) = record.timestamp {
                    future = future.timestamp(ts);
                }
                let current = producer.get();
                let delivery = current
                    .send_result(future)
                    .map_err(|(e, _)| e)
                    .with_context(|| format!("cannot produce to {topic}"))?;
                pending.push(delivery);
                if pending.len() >= MAX_PENDING {
                    await_all(pending, topic)?;
                }
                Ok(Ok(()))
            }
        }
    }

    /// Write one JSON line (NDJSON output only, as `--diff` does).
    pub fn write_line(&mut self, line: &serde_json::Value) -> anyhow::Result<()> {
        match self {
            Sink::Ndjson(out) => {
                serde_json::to_writer(&mut *out, line)?;
                out.write_all(b"\n").context("cannot write output")
            }
            _ => anyhow::bail!("only NDJSON output takes JSON lines"),
        }
    }

    /// Flush buffered output and wait for every delivery.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        match self {
            Sink::Ndjson(out) => out.flush().context("cannot write output"),
            Sink::Avro(writer, _) => {
                writer
                    .flush()
                    .context("cannot write the Avro container file")?;
                Ok(())
            }
            Sink::Topic { pending, topic, .. } => await_all(pending, topic),
        }
    }
}

fn await_all(pending: &mut Vec<DeliveryFuture>, topic: &str) -> anyhow::Result<()> {
    for delivery in pending.drain(..) {
        match block_on(delivery) {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => {
                return Err(e).with_context(|| format!("delivery to {topic} failed"));
            }
            Err(_) => anyhow::bail!("delivery to {topic} was cancelled"),
        }
    }
    Ok(())
}

/// `{"partition":0,"offset":12,"timestamp":…,"topic":…,"key":…,"headers":[[k,v]],"value":{…}}`
fn write_line(
    out: &mut dyn Write,
    origin: Origin,
    record: &Record,
    json: &[u8],
) -> std::io::Result<()> {
    write!(
        out,
        "{{\"partition\":{},\"offset\":{},\"timestamp\":",
        origin.partition, origin.offset
    )?;
    match record.timestamp {
        Some(ts) => write!(out, "{ts}")?,
        None => out.write_all(b"null")?,
    }
    out.write_all(b",\"topic\":")?;
    serde_json::to_writer(&mut *out, &record.topic)?;
    out.write_all(b",\"key\":")?;
    let key = record.key.as_deref().map(String::from_utf8_lossy);
    serde_json::to_writer(&mut *out, &key)?;
    out.write_all(b",\"headers\":[")?;
    for (i, (k, v)) in record.headers.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *out, &(k, String::from_utf8_lossy(v)))?;
    }
    out.write_all(b"],\"value\":")?;
    out.write_all(json)?;
    out.write_all(b"}\n")
}

/// The writer schema of an Avro container file: the ingest route's schema
/// for the topic, else the only schema known.
pub(super) fn avro_writer_schema(
    loaded: &LoadedConfig,
    schemas: &crate::schema::SchemaSet,
    topic: &str,
) -> anyhow::Result<std::sync::Arc<LoadedSchema>> {
    let mut set = schemas.clone();
    if let Some(ingest) = &loaded.config.ingest
        && let Some(route) = ingest.routes.iter().find(|r| r.topic.get_ref() == topic)
    {
        return set.load(&loaded.resolve(route.schema.get_ref()));
    }
    let mut all = schemas.schemas();
    match (all.next(), all.next()) {
        (Some(only), None) => Ok(only.clone()),
        _ => Err(InputError::new(format!(
            "--format avro needs one writer schema: no ingest route writes `{topic}` and the schema set has {} schemas",
            schemas.schemas().count()
        ))
        .into()),
    }
}

pub(super) fn open_sink<'s>(
    args: &ReplayArgs,
    kafka: &Kafka,
    writer_schema: Option<&'s LoadedSchema>,
) -> anyhow::Result<Sink<'s>> {
    if let Some(topic) = &args.out_topic {
        return Ok(Sink::Topic {
            producer: kafka.producer("replay", Duration::from_secs(60))?,
            topic: topic.clone(),
            pending: Vec::new(),
        });
    }
    let out: Box<dyn Write + Send> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(path).map_err(|e| {
                InputError::new(format!("--out {}: cannot create: {e}", path.display()))
            })?,
        )),
        None => Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::io::stdout(),
        )),
    };
    Ok(match writer_schema {
        Some(schema) => Sink::Avro(
            Box::new(apache_avro::Writer::new(&schema.schema, out)),
            schema,
        ),
        None => Sink::Ndjson(out),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_line_is_one_json_object() {
        let record = Record {
            topic: "t\"x".into(),
            key: Some(b"user-1".to_vec()),
            value: Vec::new(),
            headers: vec![("sluice-plugins".into(), b"filter@abc".to_vec())],
            timestamp: Some(5),
        };
        let mut out = Vec::new();
        write_line(
            &mut out,
            Origin {
                partition: 2,
                offset: 7,
            },
            &record,
            br#"{"a":1}"#,
        )
        .unwrap();
        assert_eq!(out.last(), Some(&b'\n'));
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"partition":2,"offset":7,"timestamp":5,"topic":"t\"x","key":"user-1",
                "headers":[["sluice-plugins","filter@abc"]],"value":{"a":1}})
        );
    }
}
