//! `POST /admin/dlq/{stage}/redrive`: selected dead letters back to the
//! stage's input, in chunks, each chunk acknowledged before the next is
//! read; optionally through a plugin chain first (replay's chain builder,
//! [`crate::replay::plan::assemble`]).

use std::collections::BTreeSet;

use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use super::api::{NotRedriven, RedriveAnswer, RedriveRequest};
use super::select::{self, Selection, Stamp, Version};
use super::{Dlq, DlqError, scan};
use crate::config::StageConfig;
use crate::replay::InputError;
use crate::replay::plan::{ChainPlan, assemble};
use crate::runtime::{Runtime, TransformPlugin, plugin_path};
use crate::schema::SchemaSet;
use crate::stage::{Batch, Record};

/// Dead letters produced (and acknowledged) per round.
const CHUNK: usize = 500;

/// Label of `through` plugin calls in logs and metrics.
const REDRIVE_LABEL: &str = "redrive";

/// A chain of named plugin versions (`through`) and the schemas its
/// stage's records are decoded and its output encoded with.
pub(crate) struct Through {
    /// The loaded chain.
    pub plan: ChainPlan,
    /// The stage's schema set (its reader schema, if any).
    pub schemas: SchemaSet,
}

/// One chunk of selected dead letters.
#[derive(Default)]
struct Chunk {
    /// The records as read (for `through`).
    batch: Batch,
    /// Records to produce as they are (no `through`).
    records: Vec<Record>,
    /// Where each one was in the dead-letter topic, by batch index.
    positions: Vec<(i32, i64)>,
    /// Their headers, by batch index.
    headers: Vec<Vec<(String, Vec<u8>)>>,
}

impl Dlq {
    /// Send the dead letters `request` selects back to `stage`'s input,
    /// recorded as redriven by `by`.
    pub fn redrive(
        &self,
        stage: &str,
        request: &RedriveRequest,
        by: &str,
    ) -> Result<RedriveAnswer, DlqError> {
        let config = self.stage(stage)?;
        let selection = Selection::of(request).map_err(DlqError::BadRequest)?;
        let input = config.input.get_ref().clone();
        let topic = config.dead_letter_topic();
        if input == topic {
            return Err(DlqError::BadRequest(format!(
                "stage `{stage}` reads its own dead-letter topic `{topic}`: a redrive would loop"
            )));
        }
        let mut through = self.through(config, &request.through, REDRIVE_LABEL)?;
        let id = format!(
            "{}-{:08x}",
            crate::plugins::store::now_ms(),
            rand::random::<u32>()
        );
        let mut answer = RedriveAnswer {
            redrive_id: id.clone(),
            by: by.to_string(),
            stage: stage.to_string(),
            topic: input.clone(),
            scanned: 0,
            selected: 0,
            redriven: 0,
            dropped: 0,
            not_redriven: Vec::new(),
            through: through
                .as_ref()
                .map(|t| t.plan.versions.clone())
                .unwrap_or_default(),
        };
        let _one_at_a_time = self.redriving.lock().unwrap_or_else(|p| p.into_inner());
        let reader = self.reader()?;
        let mut seen = BTreeSet::new();
        let mut chunk = Chunk::default();
        let mut failure = None;
        let scanned = scan(
            &reader,
            &topic,
            |p| selection.window(p),
            |message| {
                let entry = super::entry_of(message);
                if entry.stage != stage || !selection.selects(&entry) {
                    return Ok(true);
                }
                seen.insert((entry.partition, entry.offset));
                answer.selected += 1;
                chunk.add(message, &input, through.is_some());
                if chunk.len() >= CHUNK {
                    let full = std::mem::take(&mut chunk);
                    if let Err(e) =
                        self.send(full, &input, &topic, &id, by, &mut through, &mut answer)
                    {
                        failure = Some(e);
                        return Ok(false);
                    }
                }
                Ok(true)
            },
        );
        let result = match (scanned, failure) {
            (_, Some(e)) => Err(e),
            (Err(e), None) => Err(DlqError::from(e)),
            (Ok(scanned), None) => {
                answer.scanned = scanned;
                self.send(chunk, &input, &topic, &id, by, &mut through, &mut answer)
            }
        };
        for missing in selection.missing(&seen) {
            answer.not_redriven.push(NotRedriven {
                partition: missing.partition,
                offset: missing.offset,
                reason: format!("no dead letter of stage `{stage}` there"),
            });
        }
        crate::metrics::dlq_redriven(stage, by, answer.redriven);
        match &result {
            Ok(()) => tracing::info!(
                redrive_id = %id,
                stage,
                by,
                input = %input,
                dead_letters = %topic,
                selected = answer.selected,
                redriven = answer.redriven,
                dropped = answer.dropped,
                not_redriven = answer.not_redriven.len(),
                through = %answer.through.join(","),
                "dead letters redriven"
            ),
            Err(e) => tracing::warn!(
                redrive_id = %id,
                stage,
                by,
                redriven = answer.redriven,
                error = %e,
                "redrive stopped"
            ),
        }
        let redriven = answer.redriven;
        result.map(|()| answer).map_err(|e| match e {
            DlqError::Unavailable(why) => DlqError::Unavailable(format!(
                "redrive {id} stopped after {redriven} records were redriven and acknowledged: {why}"
            )),
            other => other,
        })
    }

    /// The `through` chain (`name`, `name@vN`, `name@<hash>` each), with
    /// the stage's plugin configs and limits, its calls labelled `label`;
    /// `None` for no names. Shared
    /// with [`crate::preview`].
    pub(crate) fn through(
        &self,
        stage: &StageConfig,
        specs: &[String],
        label: &str,
    ) -> Result<Option<Through>, DlqError> {
        if specs.is_empty() {
            return Ok(None);
        }
        let mut names = Vec::with_capacity(specs.len());
        let mut versions = Vec::with_capacity(specs.len());
        for spec in specs {
            let (name, version) = select::parse_through(spec).map_err(DlqError::BadRequest)?;
            names.push(name);
            versions.push(version);
        }
        let runtime = crate::runtime::for_config(&self.loaded)?;
        let mut next = versions.into_iter();
        let plan = assemble(&self.loaded, Some(stage), &names, label, |name| {
            let version = next.next().unwrap_or(Version::Current);
            self.load(&runtime, name, &version)
        })
        .map_err(|e| match e.downcast::<InputError>() {
            Ok(input) => DlqError::BadRequest(input.to_string()),
            Err(e) => DlqError::from(e),
        })?;
        let schemas = crate::schema::setup::stage_set(&self.loaded, &self.schemas, stage)?;
        Ok(Some(Through { plan, schemas }))
    }

    /// A `through` plugin: a store version, else the plugin directory's file.
    fn load(
        &self,
        runtime: &Runtime,
        name: &str,
        version: &Version,
    ) -> Result<(TransformPlugin, Option<String>), InputError> {
        let stored = self
            .plugins
            .as_ref()
            .map(|p| p.stored(name))
            .unwrap_or_default();
        let number = match version {
            Version::Number(n) => Some(*n),
            Version::Hash(prefix) => stored
                .versions
                .iter()
                .find(|v| v.sha256.starts_with(prefix.as_str()))
                .map(|v| v.version),
            Version::Current => stored.active,
        };
        if let Some(number) = number {
            let Some(found) = stored.versions.iter().find(|v| v.version == number) else {
                let known: Vec<String> = stored
                    .versions
                    .iter()
                    .map(|v| format!("v{}", v.version))
                    .collect();
                return Err(InputError::new(if self.plugins.is_none() {
                    format!(
                        "`{name}@v{number}` names a plugin store version, and this host has no plugin store ([plugins] store = false)"
                    )
                } else {
                    format!(
                        "plugin `{name}` has no store version v{number} (store versions: {})",
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    )
                }));
            };
            let bytes = found.bytes.as_ref().ok_or_else(|| {
                InputError::new(format!(
                    "plugin `{name}` v{number}: component incomplete in the store"
                ))
            })?;
            let plugin = TransformPlugin::load(runtime, name, bytes)
                .map_err(|e| InputError::new(format!("plugin `{name}` v{number}: {e:#}")))?;
            let label = format!("v{number}-{}", plugin.version());
            return Ok((plugin, Some(label)));
        }
        let path = plugin_path(&self.loaded, name);
        if !path.is_file() {
            return Err(InputError::new(format!(
                "plugin `{name}` not found: not in the plugin store, no file {}",
                path.display()
            )));
        }
        let plugin = TransformPlugin::load_file(runtime, name, &path)
            .map_err(|e| InputError::new(format!("plugin `{name}`: {e:#}")))?;
        if let Version::Hash(prefix) = version
            && !plugin.sha256.starts_with(prefix.as_str())
        {
            return Err(InputError::new(format!(
                "plugin `{name}` version {prefix} is neither in the plugin store nor {} (version {})",
                path.display(),
                plugin.version()
            )));
        }
        Ok((plugin, None))
    }

    /// Run a chunk through `through` (if any), stamp it and produce it to
    /// `input`, waiting for every acknowledgement.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        chunk: Chunk,
        input: &str,
        dlq_topic: &str,
        id: &str,
        by: &str,
        through: &mut Option<Through>,
        answer: &mut RedriveAnswer,
    ) -> Result<(), DlqError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let Chunk {
            mut batch,
            records,
            positions,
            headers,
        } = chunk;
        let stamp = |index: usize| {
            let (partition, offset) = positions[index];
            Stamp {
                by,
                id,
                from: format!("{dlq_topic}/{partition}/{offset}"),
            }
        };
        let mut out = Vec::with_capacity(positions.len());
        match through {
            None => {
                for (index, mut record) in records.into_iter().enumerate() {
                    record.headers = select::redriven_headers(&headers[index], &stamp(index));
                    out.push(record);
                }
            }
            Some(Through { plan, schemas }) => {
                let mut not_redriven = |index: usize, plugin: &str, error: &str| {
                    let (partition, offset) = positions[index];
                    answer.not_redriven.push(NotRedriven {
                        partition,
                        offset,
                        reason: if plugin.is_empty() {
                            error.to_string()
                        } else {
                            format!("{plugin}: {error}")
                        },
                    });
                };
                let (events, failures) = batch.decode(schemas);
                for failure in &failures {
                    not_redriven(failure.source, &failure.plugin, &failure.error);
                }
                let sources: Vec<usize> = events.iter().map(|(i, _)| *i).collect();
                let events = events.into_iter().map(|(_, e)| e).collect();
                let output = plan.chain.run(events);
                answer.dropped += output.dropped as u64;
                for failure in &output.failures {
                    not_redriven(sources[failure.source], &failure.plugin, &failure.error);
                }
                let versions = plan.versions.join(",");
                for item in output.items {
                    let source = sources[item.source];
                    match batch.output_record(source, item, input, &versions) {
                        Ok(mut record) => {
                            record.topic = input.to_string();
                            record.headers =
                                select::redriven_headers(&record.headers, &stamp(source));
                            out.push(record);
                        }
                        Err(failure) => not_redriven(source, &failure.plugin, &failure.error),
                    }
                }
            }
        }
        answer.redriven += self.produce(&out)?;
        Ok(())
    }

    /// Produce `records` and wait for every acknowledgement; how many were
    /// acknowledged, or the first failure.
    fn produce(&self, records: &[Record]) -> Result<u64, DlqError> {
        let producer = self.producer.get();
        let mut pending = Vec::with_capacity(records.len());
        for record in records {
            let headers = record.headers.iter().fold(
                OwnedHeaders::new_with_capacity(record.headers.len()),
                |h, (k, v)| {
                    h.insert(Header {
                        key: k,
                        value: Some(v.as_slice()),
                    })
                },
            );
            let mut future = FutureRecord::to(&record.topic)
                .payload(&record.value)
                .headers(headers);
            if let Some(key) = &record.key {
                future = future.key(key);
            }
            if let Some(ts) = record.timestamp {
                future = future.timestamp(ts);
            }
            match producer.send_result(future) {
                Ok(delivery) => pending.push(delivery),
                Err((e, _)) => {
                    return Err(DlqError::Unavailable(format!(
                        "cannot produce to {}: {e}",
                        record.topic
                    )));
                }
            }
        }
        let mut acknowledged = 0;
        let mut first_error = None;
        for delivery in futures::executor::block_on(futures::future::join_all(pending)) {
            match delivery {
                Ok(Ok(_)) => acknowledged += 1,
                Ok(Err((e, _))) => {
                    self.producer.on_failure(&producer, &e);
                    first_error.get_or_insert_with(|| e.to_string());
                }
                Err(_) => {
                    first_error.get_or_insert_with(|| "the producer was dropped".to_string());
                }
            }
        }
        match first_error {
            None => Ok(acknowledged),
            Some(e) => Err(DlqError::Unavailable(format!(
                "{acknowledged} of {} records acknowledged, then: {e}",
                records.len()
            ))),
        }
    }
}

impl Chunk {
    fn add(&mut self, message: &BorrowedMessage<'_>, input: &str, through: bool) {
        let headers = crate::kafka::record_headers(message);
        if through {
            self.batch.push(message);
        } else {
            self.records.push(Record {
                topic: input.to_string(),
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                headers: Vec::new(),
                timestamp: message.timestamp().to_millis(),
            });
        }
        self.positions.push((message.partition(), message.offset()));
        self.headers.push(headers);
    }

    fn len(&self) -> usize {
        self.positions.len()
    }

    fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }
}
