//! Shared by the fault, shutdown and malformed-input tests: a host config
//! with HTTP ingest feeding a stage, a steady HTTP load that remembers which
//! event ids were answered `202`, and reading event ids back from a topic.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use sluice::schema::SchemaSet;
use sluice_tests::{read_all, repo_path, sample_event};

/// Input topic of the test pipeline (written by ingest).
pub const INPUT: &str = "in";
/// Output topic of its stage.
pub const OUTPUT: &str = "out";
/// Dead-letter topic of its stage.
pub const DLQ: &str = "dlq";

/// True when the slow fault suite is enabled (`SLUICE_FAULT=1`).
pub fn fault_enabled(test: &str) -> bool {
    let on = std::env::var("SLUICE_FAULT").is_ok_and(|v| !v.is_empty() && v != "0");
    if !on {
        eprintln!("{test}: skipped; set SLUICE_FAULT=1 to run the fault suite");
    }
    on
}

/// Ingest on `port` into `in`, stage `clean` (filter drops DEBUG, redact
/// hashes attributes.region) into `out`; `extra` is appended verbatim.
pub fn host_config(bootstrap: &str, port: u16, extra: &str) -> String {
    format!(
        r#"
schemas = "{{schemas}}"

[kafka]
brokers = "{bootstrap}"
[kafka.client]
"session.timeout.ms" = "8000"

[ingest]
listen = "127.0.0.1:{port}"
ack_timeout_ms = 3000

[[ingest.route]]
topic = "{INPUT}"
schema = "{{schemas}}/telemetry_event.avsc"

[plugins]
dir = "{{plugins}}"

[[stage]]
name = "clean"
input = "{INPUT}"
output = "{OUTPUT}"
dead_letter = "{DLQ}"
chain = ["filter", "redact"]
batch_size = 200
batch_wait_ms = 20
# Shorter than the 30 s broker outage, so the outage test exercises the
# stage's retry of a batch whose deliveries timed out and the replacement
# of its producer, not only librdkafka's own retries.
delivery_timeout_ms = 10000

[stage.config.filter]
mode = "drop"
rules = [{{ field = "severity", op = "equals", value = "DEBUG" }}]

[stage.config.redact]
fields = ["attributes.region"]
mode = "hash"
salt = "fault-salt"
{extra}
"#
    )
}

/// Whether the stage of [`host_config`] writes event `i` to `out`.
pub fn passes_stage(event: &Value) -> bool {
    event["severity"] != "DEBUG"
}

/// What a [`Load`] saw.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// Event ids answered 202.
    pub accepted: HashSet<String>,
    /// Every event sent, by id, for checking what reached the output.
    pub sent: BTreeMap<String, Value>,
    /// Answers by HTTP status.
    pub statuses: BTreeMap<u16, usize>,
    /// Requests that got no HTTP answer (connection refused or reset).
    pub no_answer: usize,
    /// 503 answers without `Retry-After`.
    pub unavailable_without_retry_after: usize,
}

/// Steady HTTP ingest load: batches of `batch` events with fresh ids,
/// posted one after another until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<LoadReport>>,
    task: tokio::task::JoinHandle<()>,
    sent: Arc<AtomicUsize>,
}

impl Load {
    /// Start posting to `url` (the host's base URL); event indexes start at
    /// `first` so several loads never reuse an id.
    pub fn start(url: &str, batch: usize, pause: Duration, first: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let sent = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (stop, report, sent) = (stop.clone(), report.clone(), sent.clone());
            let url = format!("{url}/v1/events/batch");
            async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .expect("HTTP client");
                let mut next = first;
                while !stop.load(Ordering::SeqCst) {
                    let events: Vec<Value> =
                        (next..next + batch).map(|i| sample_event(i, 40)).collect();
                    next += batch;
                    sent.fetch_add(batch, Ordering::SeqCst);
                    let body = serde_json::to_vec(&events).expect("JSON");
                    let answer = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    let answer = match answer {
                        Ok(response) => Some((
                            response.status().as_u16(),
                            response.headers().get("retry-after").is_some(),
                        )),
                        Err(_) => None,
                    };
                    {
                        let mut r = report.lock().expect("report lock");
                        for e in &events {
                            r.sent.insert(id_of(e), e.clone());
                        }
                        match answer {
                            Some((status, retry_after)) => {
                                *r.statuses.entry(status).or_default() += 1;
                                if status == 202 {
                                    r.accepted.extend(events.iter().map(id_of));
                                }
                                if status == 503 && !retry_after {
                                    r.unavailable_without_retry_after += 1;
                                }
                            }
                            None => r.no_answer += 1,
                        }
                    }
                    tokio::time::sleep(pause).await;
                }
            }
        });
        Self {
            stop,
            report,
            task,
            sent,
        }
    }

    /// What it saw so far.
    pub fn snapshot(&self) -> LoadReport {
        self.report.lock().expect("report lock").clone()
    }

    /// Stop after the request in flight and return what it saw.
    pub async fn finish(self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        let report = self.report.clone();
        let _ = self.task.await;
        report.lock().expect("report lock").clone()
    }
}

/// The `event_id` of an event.
pub fn id_of(event: &Value) -> String {
    event["event_id"].as_str().unwrap_or_default().to_string()
}

/// The telemetry schema, to decode records.
pub fn schemas() -> SchemaSet {
    let mut set = SchemaSet::default();
    set.load(&repo_path("schemas/telemetry_event.avsc"))
        .expect("schema");
    set
}

/// The event id of every record of `topic`, duplicates included.
pub fn ids_in(bootstrap: &str, topic: &str) -> anyhow::Result<Vec<String>> {
    let set = schemas();
    read_all(bootstrap, topic, Duration::from_secs(120))?
        .iter()
        .map(|r| set.decode_json(&r.value).map(|v| id_of(&v)))
        .collect()
}

/// Accepted, delivered, duplicates and lost, for the suite's printed counts.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    /// Events answered 202 that the stage passes on.
    pub accepted: usize,
    /// Of those, how many are in the output.
    pub delivered: usize,
    /// Output records beyond the first of their event id.
    pub duplicates: usize,
    /// Accepted events missing from the output.
    pub lost: usize,
}

/// Compare the output topic's ids with the accepted events that pass the stage.
pub fn count(report: &LoadReport, output_ids: &[String]) -> Counts {
    let expected: HashSet<&String> = report
        .accepted
        .iter()
        .filter(|id| report.sent.get(*id).is_some_and(passes_stage))
        .collect();
    let distinct: HashSet<&String> = output_ids.iter().collect();
    let delivered = expected.iter().filter(|id| distinct.contains(**id)).count();
    Counts {
        accepted: expected.len(),
        delivered,
        duplicates: output_ids.len() - distinct.len(),
        lost: expected.len() - delivered,
    }
}

/// Wait until every accepted event that passes the stage is in `out`, then
/// return the output's ids. On timeout, returns what is there (the caller's
/// counts then show the loss).
pub fn wait_delivered(bootstrap: &str, report: &LoadReport, timeout: Duration) -> Vec<String> {
    let expected = report
        .accepted
        .iter()
        .filter(|id| report.sent.get(*id).is_some_and(passes_stage))
        .count();
    let mut ids = Vec::new();
    let _ = sluice_tests::wait_until(timeout, "accepted events in the output", || {
        match sluice_tests::topic_size(bootstrap, OUTPUT) {
            Ok(size) if size >= expected as i64 => {}
            _ => return false,
        }
        match ids_in(bootstrap, OUTPUT) {
            Ok(read) => ids = read,
            Err(e) => {
                eprintln!("reading {OUTPUT}: {e:#}");
                return false;
            }
        }
        count(report, &ids).lost == 0
    });
    if ids.is_empty() {
        ids = ids_in(bootstrap, OUTPUT).unwrap_or_default();
    }
    ids
}

/// A broker with the pipeline's topics.
pub fn broker() -> anyhow::Result<sluice_tests::Broker> {
    sluice_tests::plugins_built(&["filter", "redact"])?;
    let broker = sluice_tests::Broker::start()?;
    broker.create_topic(INPUT, 3)?;
    broker.create_topic(OUTPUT, 3)?;
    broker.create_topic(DLQ, 1)?;
    Ok(broker)
}
