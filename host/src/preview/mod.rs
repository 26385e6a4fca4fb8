//! What a plugin version would change: a stage's recent input run through
//! its chain twice, as it runs now and with one plugin at another version,
//! and the events whose outcome differs. The console's replay-diff view
//! ("what would version 2 of this rule change in the last hour"), behind
//! `POST /admin/preview/{stage}` (handler in `admin/preview.rs`); the same
//! comparison `sluice replay --diff` writes as NDJSON.
//!
//! - **Never disturbs the stage.** The window is read with the dead-letter
//!   service's group-less reader (manual assignment, no commit), and nothing
//!   is produced: not the output, not dead letters.
//! - **Same chain as the stage.** Both chains are built as redrive's
//!   `through` is ([`crate::dlq::Dlq::through`]): the stage's plugin
//!   configs and limits, each plugin at the store's active version (else
//!   the plugin directory's file), the candidate at the version named.
//! - **Bounded.** At most `max_events` records are read and `limit`
//!   differences listed; the answer says when either bound cut it short.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::dlq::{Dlq, DlqError, Through};
use crate::replay::{Bound, fates, parse_bound, window};
use crate::stage::Batch;

/// Label of the preview's plugin calls in logs and metrics.
const PREVIEW_LABEL: &str = "preview";
/// How long one broker request (metadata, offsets) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default and largest number of differences listed.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;
/// Default and largest number of records read.
const DEFAULT_MAX_EVENTS: u64 = 100_000;
const MAX_MAX_EVENTS: u64 = 1_000_000;

/// The body of `POST /admin/preview/{stage}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// A plugin of the stage's chain.
    pub plugin: String,
    /// The candidate version: `vN` (a plugin-store version) or a sha256
    /// prefix of 6 to 64 hex digits.
    #[schema(example = "v2")]
    pub version: String,
    /// Start of the window: a duration back from now (`1h`, `90m`) or an
    /// RFC 3339 time; the window ends at the input's end when the preview
    /// starts. Default `1h`.
    #[serde(default)]
    #[schema(example = "1h")]
    pub since: Option<String>,
    /// Differences to list (1..=1000, default 50); all are counted.
    #[serde(default, deserialize_with = "crate::dlq::api::optional_integer")]
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Records to read at most (1..=1000000, default 100000).
    #[serde(default, deserialize_with = "crate::dlq::api::optional_integer")]
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_events: Option<i64>,
}

/// What each chain made of the window's events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Fates {
    /// Events passed on (changed or not).
    pub kept: u64,
    /// Events a plugin dropped.
    pub dropped: u64,
    /// Events a plugin failed (a live stage would dead-letter them).
    pub failed: u64,
}

/// One event whose outcome differs between the two chains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Difference {
    /// Partition of the input record.
    pub partition: i32,
    /// Offset of the input record.
    pub offset: i64,
    /// Its key, as text.
    pub key: Option<String>,
    /// What the current chain made of it: `{"kept": [values]}`, `"dropped"`
    /// or `{"failed": {"plugin", "error"}}`.
    #[schema(value_type = Object)]
    pub current: serde_json::Value,
    /// What the chain with the candidate version made of it, same forms.
    #[schema(value_type = Object)]
    pub candidate: serde_json::Value,
}

/// The answer of `POST /admin/preview/{stage}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PreviewAnswer {
    /// The stage.
    pub stage: String,
    /// Its input topic, which was read.
    pub topic: String,
    /// Start of the window, epoch milliseconds.
    pub since_ms: i64,
    /// The chain as the stage runs it, `name@version` each.
    pub current: Vec<String>,
    /// The chain with the candidate version.
    pub candidate: Vec<String>,
    /// Records read.
    pub read: u64,
    /// Records that could not be decoded (neither chain saw them).
    pub undecodable: u64,
    /// Events whose outcome differs.
    pub differ: u64,
    /// Outcomes under the current chain.
    pub current_fates: Fates,
    /// Outcomes under the candidate chain.
    pub candidate_fates: Fates,
    /// The first `limit` differences, in read order.
    pub differences: Vec<Difference>,
    /// True when more differ than are listed.
    pub truncated: bool,
    /// True when `max_events` stopped the read before the window's end.
    pub capped: bool,
}

/// The request's bounds, checked.
struct Bounds {
    since_ms: i64,
    limit: usize,
    max_events: u64,
}

impl Bounds {
    fn of(request: &PreviewRequest, now: i64) -> Result<Self, DlqError> {
        let since = request.since.as_deref().unwrap_or("1h");
        let since_ms = match parse_bound("since", since, now).map_err(DlqError::BadRequest)? {
            Bound::Time(ms) => ms,
            _ => {
                return Err(DlqError::BadRequest(format!(
                    "since `{since}`: expected a duration back from now (`1h`, `90m`) or an RFC 3339 time"
                )));
            }
        };
        let limit = request.limit.unwrap_or(DEFAULT_LIMIT as i64);
        if !(1..=MAX_LIMIT as i64).contains(&limit) {
            return Err(DlqError::BadRequest(format!(
                "limit {limit} is outside 1..={MAX_LIMIT}"
            )));
        }
        let max_events = request.max_events.unwrap_or(DEFAULT_MAX_EVENTS as i64);
        if !(1..=MAX_MAX_EVENTS as i64).contains(&max_events) {
            return Err(DlqError::BadRequest(format!(
                "max_events {max_events} is outside 1..={MAX_MAX_EVENTS}"
            )));
        }
        let (limit, max_events) = (limit as usize, max_events as u64);
        Ok(Self {
            since_ms,
            limit,
            max_events,
        })
    }
}

/// Run the preview `request` asks for on `stage` of `dlq`'s host.
pub fn preview(
    dlq: &Dlq,
    stage: &str,
    request: &PreviewRequest,
) -> Result<PreviewAnswer, DlqError> {
    let config = dlq.stage(stage)?;
    let names: Vec<String> = config.chain.iter().map(|n| n.get_ref().clone()).collect();
    if !names.contains(&request.plugin) {
        return Err(DlqError::BadRequest(format!(
            "plugin `{}` is not in stage `{stage}`'s chain ({})",
            request.plugin,
            if names.is_empty() {
                "empty".to_string()
            } else {
                names.join(", ")
            }
        )));
    }
    let bounds = Bounds::of(request, window::now_ms())?;
    let candidate_specs: Vec<String> = names
        .iter()
        .map(|n| {
            if *n == request.plugin {
                format!("{n}@{}", request.version)
            } else {
                n.clone()
            }
        })
        .collect();
    let chain = |specs: &[String]| -> Result<Through, DlqError> {
        dlq.through(config, specs, PREVIEW_LABEL)?
            .ok_or_else(|| DlqError::BadRequest(format!("stage `{stage}` has no chain")))
    };
    let mut current = chain(&names)?;
    let mut candidate = chain(&candidate_specs)?;
    let topic = config.input.get_ref().clone();
    let mut answer = PreviewAnswer {
        stage: stage.to_string(),
        topic: topic.clone(),
        since_ms: bounds.since_ms,
        current: current.plan.versions.clone(),
        candidate: candidate.plan.versions.clone(),
        read: 0,
        undecodable: 0,
        differ: 0,
        current_fates: Fates::default(),
        candidate_fates: Fates::default(),
        differences: Vec::new(),
        truncated: false,
        capped: false,
    };
    let reader = dlq.reader()?;
    let starts = start_offsets(&reader, &topic, bounds.since_ms)?;
    let batch_size = current.plan.batch_size;
    let mut batch = Batch::with_capacity(batch_size);
    let mut run_batch = |batch: &mut Batch, answer: &mut PreviewAnswer| {
        compare(batch, &mut current, &mut candidate, bounds.limit, answer);
    };
    crate::dlq::scan(
        &reader,
        &topic,
        |p| starts.get(&p).map(|&start| (start, None)),
        |message| {
            if answer.read >= bounds.max_events {
                answer.capped = true;
                return Ok(false);
            }
            answer.read += 1;
            batch.push(message);
            if batch.len() >= batch_size {
                let mut full = std::mem::replace(&mut batch, Batch::with_capacity(batch_size));
                run_batch(&mut full, &mut answer);
            }
            Ok(true)
        },
    )?;
    run_batch(&mut batch, &mut answer);
    tracing::info!(
        stage,
        plugin = %request.plugin,
        version = %request.version,
        read = answer.read,
        differ = answer.differ,
        "preview of a plugin version"
    );
    Ok(answer)
}

/// The first offset at or after `since_ms` in each partition of `topic`
/// (the end where nothing is that recent); a missing topic has none.
fn start_offsets(
    reader: &BaseConsumer,
    topic: &str,
    since_ms: i64,
) -> Result<BTreeMap<i32, i64>, DlqError> {
    let metadata = reader
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(|e| DlqError::Unavailable(format!("cannot read the metadata of {topic}: {e}")))?;
    let mut request = TopicPartitionList::new();
    let mut highs = BTreeMap::new();
    for t in metadata.topics().iter().filter(|t| t.error().is_none()) {
        for p in t.partitions() {
            let (_, high) = reader
                .fetch_watermarks(topic, p.id(), REQUEST_TIMEOUT)
                .map_err(|e| {
                    DlqError::Unavailable(format!("cannot read the offsets of {topic}: {e}"))
                })?;
            highs.insert(p.id(), high);
            request
                .add_partition_offset(topic, p.id(), Offset::Offset(since_ms))
                .map_err(|e| DlqError::Unavailable(e.to_string()))?;
        }
    }
    if highs.is_empty() {
        return Ok(highs);
    }
    let found = reader
        .offsets_for_times(request, REQUEST_TIMEOUT)
        .map_err(|e| DlqError::Unavailable(format!("cannot look up offsets of {topic}: {e}")))?;
    let mut starts = BTreeMap::new();
    for element in found.elements() {
        let high = highs.get(&element.partition()).copied().unwrap_or(0);
        // Kafka answers "no record at or after T" with -1 (the end).
        let start = match element.offset() {
            Offset::Offset(o) if o < high => o,
            _ => high,
        };
        starts.insert(element.partition(), start);
    }
    Ok(starts)
}

/// Run one batch through both chains and count and record what differs.
fn compare(
    batch: &mut Batch,
    current: &mut Through,
    candidate: &mut Through,
    limit: usize,
    answer: &mut PreviewAnswer,
) {
    if batch.is_empty() {
        return;
    }
    let origins: Vec<(i32, i64)> = batch.positions().collect();
    let (events, failures) = batch.decode(&current.schemas);
    answer.undecodable += failures.len() as u64;
    let sources: Vec<usize> = events.iter().map(|(i, _)| *i).collect();
    let events: Vec<_> = events.into_iter().map(|(_, e)| e).collect();
    let keys: Vec<Option<String>> = events
        .iter()
        .map(|e| {
            e.key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned())
        })
        .collect();
    let old = fates(&current.plan.chain.run(events.clone()), keys.len());
    let new = fates(&candidate.plan.chain.run(events), keys.len());
    count(&old, &mut answer.current_fates);
    count(&new, &mut answer.candidate_fates);
    for (i, key) in keys.into_iter().enumerate() {
        if old[i] == new[i] {
            continue;
        }
        answer.differ += 1;
        if answer.differences.len() >= limit {
            answer.truncated = true;
            continue;
        }
        let (partition, offset) = origins[sources[i]];
        answer.differences.push(Difference {
            partition,
            offset,
            key,
            current: old[i].clone(),
            candidate: new[i].clone(),
        });
    }
}

/// Add the outcomes [`fates`] describes to `into`.
fn count(outcomes: &[serde_json::Value], into: &mut Fates) {
    for outcome in outcomes {
        match outcome {
            serde_json::Value::String(_) => into.dropped += 1,
            serde_json::Value::Object(o) if o.contains_key("failed") => into.failed += 1,
            _ => into.kept += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(since: Option<&str>, limit: Option<i64>, max: Option<i64>) -> PreviewRequest {
        PreviewRequest {
            plugin: "redact".into(),
            version: "v2".into(),
            since: since.map(str::to_string),
            limit,
            max_events: max,
        }
    }

    #[test]
    fn bounds_default_to_the_last_hour() {
        let now = 10 * 3_600_000;
        let bounds = Bounds::of(&request(None, None, None), now).unwrap();
        assert_eq!(bounds.since_ms, now - 3_600_000);
        assert_eq!(bounds.limit, DEFAULT_LIMIT);
        assert_eq!(bounds.max_events, DEFAULT_MAX_EVENTS);
        let bounds = Bounds::of(&request(Some("90m"), Some(5), Some(10)), now).unwrap();
        assert_eq!(bounds.since_ms, now - 90 * 60_000);
        assert_eq!((bounds.limit, bounds.max_events), (5, 10));
    }

    #[test]
    fn bounds_refuse_offsets_and_out_of_range_limits() {
        let refused = |r: PreviewRequest| match Bounds::of(&r, 3_600_000) {
            Err(DlqError::BadRequest(m)) => m,
            other => panic!("expected a bad request, got {:?}", other.err()),
        };
        assert!(refused(request(Some("1200"), None, None)).contains("since `1200`"));
        assert!(refused(request(Some("soon"), None, None)).contains("soon"));
        assert!(refused(request(None, Some(0), None)).contains("limit 0"));
        assert!(refused(request(None, Some(1001), None)).contains("limit 1001"));
        assert!(refused(request(None, None, Some(0))).contains("max_events 0"));
    }

    #[test]
    fn integral_floats_are_integers_as_json_schema_says() {
        let parsed: PreviewRequest = serde_json::from_str(
            r#"{"plugin": "redact", "version": "v2", "limit": 350.0, "max_events": 4703}"#,
        )
        .unwrap();
        assert_eq!((parsed.limit, parsed.max_events), (Some(350), Some(4703)));
        assert!(
            serde_json::from_str::<PreviewRequest>(
                r#"{"plugin": "redact", "version": "v2", "limit": 1.5}"#
            )
            .is_err()
        );
    }

    #[test]
    fn outcomes_are_counted_by_kind() {
        let mut fates = Fates::default();
        count(
            &[
                serde_json::json!({"kept": [{"a": 1}]}),
                serde_json::json!("dropped"),
                serde_json::json!({"failed": {"plugin": "p", "error": "e"}}),
                serde_json::json!({"kept": [{"a": 2}, {"a": 3}]}),
            ],
            &mut fates,
        );
        assert_eq!(
            fates,
            Fates {
                kept: 2,
                dropped: 1,
                failed: 1
            }
        );
    }
}
