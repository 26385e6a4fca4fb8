//! `sluice replay`: run a window of a topic's history through a plugin chain,
//! for incident response ("what happened to entity X between 14:00 and 15:00,
//! and what would the new filter have made of it?").
//!
//! - **Window.** `--from` and `--to` are offsets (`1200` for every partition,
//!   `p0:1200,p2:80` per partition), RFC 3339 timestamps (resolved per
//!   partition with `offsets_for_times`), or durations back from now (`2h`).
//!   The window is half-open: `--from` included, `--to` excluded. `--to`
//!   defaults to each partition's high watermark at start, so a replay ends.
//! - **Never disturbs live stages.** Partitions are assigned manually; no
//!   consumer group is joined and no offset is committed. Nothing goes to
//!   dead-letter topics; failures are counted in the summary instead.
//! - **Same runtime as stages.** The chain runs in the same sandbox with the
//!   same limits and value encoding ([`crate::stage::Batch`] decodes each
//!   record once and builds output records exactly as a stage does).
//! - **`--key`** reads only the partition the producer's partitioner maps the
//!   key to (see [`partitioner`]) and keeps only records with that key.
//! - **Output.** NDJSON (default) or an Avro container file, to `--out FILE`
//!   or stdout; or `--out-topic`, written like a stage's output.
//! - **Errors in what the operator typed** (an unknown topic, plugin or stage,
//!   an unparseable time, `--from` after `--to`) are one line and exit code 2.

mod output;
pub mod partitioner;
pub mod plan;
mod summary;
pub mod window;

pub use output::Origin;
pub use summary::{PartitionRange, Summary};
pub use window::{Bound, parse_bound};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::LoadedConfig;
use crate::kafka::Kafka;
use crate::schema::LoadedSchema;
use crate::stage::Batch;
use output::Sink;

/// How long one broker request (metadata, watermarks, offsets) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long replay waits for records it knows exist before giving up.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// `sluice replay` options.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// Configuration file (brokers, schemas, plugins, stages).
    #[arg(short, long)]
    pub config: PathBuf,
    /// Brokers to read from instead of `[kafka] brokers`, e.g. the embedded
    /// broker of a running host (`sluice run` and `sluice quickstart` print
    /// its address).
    #[arg(long, env = "SLUICE_BROKERS")]
    pub brokers: Option<String>,
    /// Topic to replay.
    #[arg(long)]
    pub topic: String,
    /// Start of the window (included): an offset (`1200`, `p0:1200,p1:80`),
    /// an RFC 3339 timestamp, or a duration ago (`2h`).
    #[arg(long, allow_hyphen_values = true)]
    pub from: String,
    /// End of the window (excluded), same forms; default: the high
    /// watermark of each partition at start.
    #[arg(long, allow_hyphen_values = true)]
    pub to: Option<String>,
    /// Read only these partitions (repeatable).
    #[arg(long = "partition", value_name = "P")]
    pub partitions: Vec<i32>,
    /// Keep only records with this key (entity id); reads only its
    /// partition (repeatable).
    #[arg(long = "key", value_name = "K")]
    pub keys: Vec<String>,
    /// Plugins to run, in order (default: the `--stage`'s chain, or that of
    /// the one stage reading the topic); configs come from `--stage` if given.
    #[arg(long, value_delimiter = ',')]
    pub chain: Option<Vec<String>>,
    /// Use this stage's chain, plugin configuration and limits.
    #[arg(long)]
    pub stage: Option<String>,
    /// `NAME=PATH.wasm` or `NAME=<12-hex version>` (repeatable).
    #[arg(long = "plugin-version", value_name = "NAME=V")]
    pub plugin_versions: Vec<String>,
    /// Write to this file instead of stdout.
    #[arg(long, conflicts_with = "out_topic")]
    pub out: Option<PathBuf>,
    /// Produce to this topic (framed Avro, like a stage's output).
    #[arg(long)]
    pub out_topic: Option<String>,
    /// Output format for a file or stdout.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// `NAME=OLD` (a .wasm file or 12-hex version): also run the window with
    /// that version of plugin NAME and write only the events whose outcome
    /// differs (NDJSON `{partition, offset, key, old, new}`).
    #[arg(long, value_name = "NAME=OLD")]
    pub diff: Option<String>,
    /// Resolve the window and load the chain, print the plan, read nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Which records of transactional producers (exactly-once stages) to
    /// read: only committed ones (the default, what consumers downstream
    /// saw), or also those of aborted and open transactions (forensics of
    /// what a failed attempt wrote).
    #[arg(long, value_enum, default_value_t = Isolation::ReadCommitted)]
    pub isolation: Isolation,
}

/// `--isolation`: Kafka's `isolation.level` for the replay's reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Isolation {
    /// Only records of committed transactions (and non-transactional ones).
    ReadCommitted,
    /// Every record, including those of aborted or open transactions.
    ReadUncommitted,
}

impl Isolation {
    fn setting(self) -> &'static str {
        match self {
            Self::ReadCommitted => "read_committed",
            Self::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// Output format of `--out` and stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object per line, the value decoded to natural JSON.
    Ndjson,
    /// An Avro object container file.
    Avro,
}

/// A problem with what the operator asked for (not with the broker or the
/// machine): reported as one line with exit code 2.
#[derive(Debug)]
pub struct InputError(String);

impl InputError {
    /// An input error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// Exit code for a replay error: 2 for input errors, 1 otherwise.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if error.chain().any(|e| e.is::<InputError>()) {
        2
    } else {
        1
    }
}

/// Run `sluice replay`: the summary (or the error, on one line) on stderr.
pub fn main(args: &ReplayArgs) -> ExitCode {
    match run(args) {
        Ok(summary) => {
            eprint!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let message = format!("{e:#}").replace('\n', "; ");
            eprintln!("error: {message}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// One partition's part of the window, resolved to offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// Partition.
    pub partition: i32,
    /// First offset to read.
    pub start: i64,
    /// One past the last offset to read.
    pub end: i64,
}

/// Replay as `args` says; returns what happened.
pub fn run(args: &ReplayArgs) -> anyhow::Result<Summary> {
    let now = window::now_ms();
    let from = parse_bound("--from", &args.from, now).map_err(InputError::new)?;
    let to = args
        .to
        .as_deref()
        .map(|t| parse_bound("--to", t, now))
        .transpose()
        .map_err(InputError::new)?;
    check_order(&from, to.as_ref())?;
    if args.out_topic.is_some() && args.format == Some(Format::Ndjson) {
        return Err(InputError::new(
            "--out-topic writes framed Avro as a stage does; --format ndjson applies to --out and stdout",
        )
        .into());
    }
    if args.out_topic.as_deref() == Some(args.topic.as_str()) {
        return Err(InputError::new("--out-topic must not be the replayed topic").into());
    }
    let mut loaded = crate::config::load(&args.config)
        .map_err(|d| InputError::new(d.to_string().replace('\n', "; ")))?;
    if let Some(brokers) = &args.brokers {
        loaded.config.kafka.brokers = toml::Spanned::new(0..0, brokers.clone());
    }
    if loaded.config.kafka.is_embedded() {
        return Err(InputError::new(
            "replay needs a running broker: a new embedded broker (brokers = \"embedded\") would be empty; \
             pass --brokers with the address of the running host's embedded broker (its log and \
             `sluice quickstart` print it)",
        )
        .into());
    }
    let runtime = crate::runtime::for_config(&loaded)?;
    let mut plan = plan::build(
        &loaded,
        &runtime,
        &args.topic,
        args.chain.as_deref(),
        args.stage.as_deref(),
        &args.plugin_versions,
    )?;
    if let Some(diff) = &args.diff {
        if args.out_topic.is_some() || args.format == Some(Format::Avro) {
            return Err(InputError::new(
                "--diff writes NDJSON differences: it does not combine with --out-topic or --format avro",
            )
            .into());
        }
        let name = diff.split_once('=').map(|(n, _)| n).unwrap_or(diff);
        if !plan
            .versions
            .iter()
            .any(|v| v.split_once('@').map(|(n, _)| n) == Some(name))
        {
            return Err(InputError::new(format!(
                "--diff {diff}: `{name}` is not in the chain ({})",
                plan.versions.join(", ")
            ))
            .into());
        }
        let mut old_versions: Vec<String> = args
            .plugin_versions
            .iter()
            .filter(|v| v.split_once('=').map(|(n, _)| n) != Some(name))
            .cloned()
            .collect();
        old_versions.push(diff.clone());
        let old = plan::build(
            &loaded,
            &runtime,
            &args.topic,
            args.chain.as_deref(),
            args.stage.as_deref(),
            &old_versions,
        )
        .context("--diff")?;
        plan.diff = Some(plan::DiffChain {
            chain: old.chain,
            versions: old.versions,
        });
    }
    let mut schemas = crate::run::schema_set(&loaded)?;
    // With [schema_registry], writer schemas are fetched by id on a runtime
    // of their own (replay itself runs none).
    let registry_runtime = match &loaded.config.schema_registry {
        Some(_) => Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .context("cannot start the schema registry client's runtime")?,
        ),
        None => None,
    };
    if let Some(runtime) = &registry_runtime {
        crate::run::external_reader(&loaded, &mut schemas, runtime.handle().clone())?;
    }
    let kafka = futures::executor::block_on(Kafka::start(&loaded.config.kafka, &[]))?;
    let consumer = reader(&kafka, args.isolation)?;
    let all = topic_partitions(&consumer, &args.topic)?;
    let partitioner = partitioner_setting(&loaded);
    let (selected, key_filter) = select_partitions(
        &all,
        &args.partitions,
        &from,
        to.as_ref(),
        &args.keys,
        &partitioner,
    )?;
    let ranges = resolve(&consumer, &args.topic, &selected, &from, to.as_ref())?;
    if let Some(out_topic) = &args.out_topic {
        topic_partitions(&consumer, out_topic).context("--out-topic")?;
    }

    let mut summary = Summary {
        topic: args.topic.clone(),
        key_filter: key_filter.is_some(),
        diff_against: plan.diff.as_ref().map(|d| d.versions.join(",")),
        ..Summary::default()
    };
    for range in &ranges {
        summary.partitions.insert(
            range.partition,
            PartitionRange {
                start: range.start,
                end: range.end,
                ..PartitionRange::default()
            },
        );
    }
    if args.dry_run {
        print_plan(args, &plan, &ranges, &summary)?;
        return Ok(summary);
    }

    let writer_schema = match (&args.out_topic, args.format) {
        (None, Some(Format::Avro)) => Some(avro_writer_schema(&loaded, &schemas, &args.topic)?),
        _ => None,
    };
    let mut sink = open_sink(args, &kafka, writer_schema.as_deref())?;
    let total: i64 = ranges.iter().map(|r| r.end - r.start).sum();
    let progress = progress_bar(total.max(0) as u64);
    let started = Instant::now();
    let result = replay_ranges(ReplayRun {
        consumer: &consumer,
        topic: &args.topic,
        ranges: &ranges,
        plan: &mut plan,
        schemas: &schemas,
        sink: &mut sink,
        key_filter: key_filter.as_ref(),
        out_topic: args.out_topic.as_deref().unwrap_or(&args.topic),
        progress: &progress,
        summary: &mut summary,
    });
    progress.finish_and_clear();
    result?;
    sink.finish()?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// `--from` after `--to`, when that is visible before resolving.
fn check_order(from: &Bound, to: Option<&Bound>) -> Result<(), InputError> {
    let Some(to) = to else { return Ok(()) };
    let after = match (from, to) {
        (Bound::Time(f), Bound::Time(t)) if f > t => Some(format!(
            "{} is after {}",
            window::format_ms(*f),
            window::format_ms(*t)
        )),
        (Bound::Offset(f), Bound::Offset(t)) if f > t => Some(format!("offset {f} is after {t}")),
        (Bound::Offsets(f), Bound::Offsets(t)) => f.iter().find_map(|(p, fo)| {
            t.get(p)
                .filter(|to| fo > *to)
                .map(|to| format!("partition {p}: offset {fo} is after {to}"))
        }),
        (Bound::Offset(f), Bound::Offsets(t)) => t
            .iter()
            .find(|(_, to)| f > *to)
            .map(|(p, to)| format!("partition {p}: offset {f} is after {to}")),
        (Bound::Offsets(f), Bound::Offset(t)) => f
            .iter()
            .find(|(_, fo)| *fo > t)
            .map(|(p, fo)| format!("partition {p}: offset {fo} is after {t}")),
        _ => None,
    };
    match after {
        Some(why) => Err(InputError::new(format!("--from is after --to: {why}"))),
        None => Ok(()),
    }
}

/// A group-less consumer for manual assignment: never joins a group, never
/// commits, and reports the end of each partition.
type Reader = BaseConsumer<ReaderContext>;

/// The reader's client context: the end of a partition is how replay knows
/// it is done, not an error worth logging (librdkafka reports it as a
/// global error too).
struct ReaderContext;

impl rdkafka::ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let end_of_partition = matches!(
            error,
            KafkaError::PartitionEOF(_)
                | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        );
        if !end_of_partition {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ReaderContext {}

/// The replay's [`Reader`], reading with `isolation`.
fn reader(kafka: &Kafka, isolation: Isolation) -> anyhow::Result<Reader> {
    let mut config = kafka.client_config();
    config
        .set("group.id", "sluice-replay-unused")
        .set("isolation.level", isolation.setting())
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    config
        .create_with_context(ReaderContext)
        .context("cannot create Kafka reader")
}

/// The partition ids of `topic`, or an input error if it does not exist.
fn topic_partitions(consumer: &Reader, topic: &str) -> anyhow::Result<Vec<i32>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .with_context(|| format!("cannot read metadata of topic `{topic}`"))?;
    let mut partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(InputError::new(format!("topic `{topic}` does not exist")).into());
    }
    partitions.sort_unstable();
    Ok(partitions)
}

fn partitioner_setting(loaded: &LoadedConfig) -> String {
    loaded
        .config
        .kafka
        .client_settings()
        .into_iter()
        .find(|(k, _)| k == "partitioner")
        .map(|(_, v)| v)
        .unwrap_or_else(|| "consistent_random".to_string())
}

/// The keys `--key` keeps, as bytes.
type KeyFilter = BTreeSet<Vec<u8>>;

/// The partitions to read and the key filter: `--partition`, else those an
/// offsets bound names, else all; narrowed to the keys' partitions.
fn select_partitions(
    all: &[i32],
    requested: &[i32],
    from: &Bound,
    to: Option<&Bound>,
    keys: &[String],
    partitioner: &str,
) -> Result<(Vec<i32>, Option<KeyFilter>), InputError> {
    for p in requested {
        if !all.contains(p) {
            return Err(InputError::new(format!(
                "--partition {p}: the topic has partitions {}..={}",
                all.first().copied().unwrap_or(0),
                all.last().copied().unwrap_or(0)
            )));
        }
    }
    let mut named: BTreeSet<i32> = from.named_partitions().into_iter().collect();
    named.extend(to.map(Bound::named_partitions).unwrap_or_default());
    for p in &named {
        if !all.contains(p) {
            return Err(InputError::new(format!(
                "p{p}: the topic has no partition {p}"
            )));
        }
    }
    let mut selected: Vec<i32> = if !requested.is_empty() {
        requested.to_vec()
    } else if !named.is_empty() {
        named.into_iter().collect()
    } else {
        all.to_vec()
    };
    selected.sort_unstable();
    selected.dedup();
    if keys.is_empty() {
        return Ok((selected, None));
    }
    let count = all.len() as i32;
    let mut by_key = BTreeSet::new();
    let mut any_partition = false;
    for key in keys {
        match partitioner::partition_for_key(partitioner, key.as_bytes(), count)
            .map_err(InputError::new)?
        {
            Some(p) => {
                if !selected.contains(&p) {
                    return Err(InputError::new(format!(
                        "--key {key} is in partition {p}, which the window does not read"
                    )));
                }
                by_key.insert(p);
            }
            None => any_partition = true,
        }
    }
    if !any_partition {
        selected.retain(|p| by_key.contains(p));
    }
    let keys = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
    Ok((selected, Some(keys)))
}

/// Resolve both bounds to offsets in each selected partition, clamped to
/// what the partition holds now.
fn resolve(
    consumer: &Reader,
    topic: &str,
    partitions: &[i32],
    from: &Bound,
    to: Option<&Bound>,
) -> anyhow::Result<Vec<Range>> {
    let mut marks = BTreeMap::new();
    for &p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
            .with_context(|| format!("cannot read the watermarks of {topic}/{p}"))?;
        marks.insert(p, (low, high));
    }
    let starts = offsets(consumer, topic, &marks, from, Side::From)?;
    let ends = match to {
        Some(to) => offsets(consumer, topic, &marks, to, Side::To)?,
        None => marks.iter().map(|(p, (_, high))| (*p, *high)).collect(),
    };
    let mut ranges = Vec::with_capacity(partitions.len());
    for &p in partitions {
        let start = starts[&p];
        let end = ends[&p];
        if start > end {
            return Err(InputError::new(format!(
                "--from is after --to: in partition {p} the window starts at offset {start} and ends at {end}"
            ))
            .into());
        }
        ranges.push(Range {
            partition: p,
            start,
            end,
        });
    }
    Ok(ranges)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    From,
    To,
}

/// One bound as an offset per partition, within `[low, high]`.
fn offsets(
    consumer: &Reader,
    topic: &str,
    marks: &BTreeMap<i32, (i64, i64)>,
    bound: &Bound,
    side: Side,
) -> anyhow::Result<HashMap<i32, i64>> {
    let clamp = |p: i32, o: i64| {
        let (low, high) = marks[&p];
        o.clamp(low, high)
    };
    let mut out = HashMap::new();
    match bound {
        Bound::Offset(o) => {
            for &p in marks.keys() {
                out.insert(p, clamp(p, *o));
            }
        }
        Bound::Offsets(map) => {
            for (&p, &(low, high)) in marks {
                let default = if side == Side::From { low } else { high };
                out.insert(p, clamp(p, map.get(&p).copied().unwrap_or(default)));
            }
        }
        Bound::Time(ts) => {
            let mut request = TopicPartitionList::new();
            for &p in marks.keys() {
                request.add_partition_offset(topic, p, Offset::Offset(*ts))?;
            }
            let answer = consumer
                .offsets_for_times(request, REQUEST_TIMEOUT)
                .with_context(|| {
                    format!(
                        "cannot look up offsets of {topic} at {}",
                        window::format_ms(*ts)
                    )
                })?;
            for element in answer.elements() {
                let p = element.partition();
                let Some(&(_, high)) = marks.get(&p) else {
                    continue;
                };
                if let Some(e) = element.error().err() {
                    anyhow::bail!("offset lookup of {topic}/{p} failed: {e}");
                }
                // Kafka answers "no record at or after T" with -1 (the end).
                let offset = match element.offset() {
                    Offset::Offset(o) if o < high => o,
                    _ => high,
                };
                out.insert(p, clamp(p, offset));
            }
            for &p in marks.keys() {
                if !out.contains_key(&p) {
                    anyhow::bail!("the broker returned no offset for {topic}/{p}");
                }
            }
        }
    }
    Ok(out)
}

/// The writer schema of an Avro container file: the ingest route's schema
/// for the topic, else the only schema known.
fn avro_writer_schema(
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

fn open_sink<'s>(
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

fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} {per_sec} ETA {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

fn print_plan(
    args: &ReplayArgs,
    plan: &plan::ChainPlan,
    ranges: &[Range],
    summary: &Summary,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "dry run: replay {} (nothing read)", args.topic)?;
    writeln!(
        out,
        "chain: {}{}",
        if plan.versions.is_empty() {
            "(none)".to_string()
        } else {
            plan.versions.join(" → ")
        },
        plan.stage
            .as_deref()
            .map(|s| format!(" (config and limits of stage `{s}`)"))
            .unwrap_or_default()
    )?;
    for range in ranges {
        writeln!(
            out,
            "partition {}: offsets {}..{} ({} records)",
            range.partition,
            range.start,
            range.end,
            range.end - range.start
        )?;
    }
    if summary.key_filter {
        writeln!(out, "keys: {}", args.keys.join(", "))?;
    }
    let destination = match (&args.out_topic, &args.out) {
        (Some(topic), _) => format!("topic {topic} (framed Avro)"),
        (None, Some(path)) => format!(
            "{} ({:?})",
            path.display(),
            args.format.unwrap_or(Format::Ndjson)
        ),
        (None, None) => format!("stdout ({:?})", args.format.unwrap_or(Format::Ndjson)),
    };
    writeln!(out, "output: {destination}")?;
    Ok(())
}

/// Everything the read loop works with.
struct ReplayRun<'a, 's> {
    consumer: &'a Reader,
    topic: &'a str,
    ranges: &'a [Range],
    plan: &'a mut plan::ChainPlan,
    schemas: &'a crate::schema::SchemaSet,
    sink: &'a mut Sink<'s>,
    key_filter: Option<&'a BTreeSet<Vec<u8>>>,
    out_topic: &'a str,
    progress: &'a ProgressBar,
    summary: &'a mut Summary,
}

/// A batch read and decoded, on its way to the chain.
struct Decoded {
    batch: Batch,
    origins: Vec<Origin>,
    events: Vec<(usize, crate::runtime::bindings::Event)>,
    failures: Vec<crate::runtime::Failure>,
}

/// Batches decoded ahead of the chain.
const PIPELINE_DEPTH: usize = 4;

/// Read every range to its end and run it through the chain to the sink.
/// Two threads: this one fetches and decodes batch N+1 while a worker runs
/// batch N through the chain and writes it (in order: one worker, FIFO).
fn replay_ranges(run: ReplayRun<'_, '_>) -> anyhow::Result<()> {
    let ReplayRun {
        consumer,
        topic,
        ranges,
        plan,
        schemas,
        sink,
        key_filter,
        out_topic,
        progress,
        summary,
    } = run;
    let mut active: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for range in ranges.iter().filter(|r| r.end > r.start) {
        assignment.add_partition_offset(topic, range.partition, Offset::Offset(range.start))?;
        active.insert(range.partition, range.end);
    }
    if active.is_empty() {
        return Ok(());
    }
    consumer
        .assign(&assignment)
        .context("cannot assign partitions")?;
    let batch_size = plan.batch_size;
    let versions = plan.versions.join(",");
    let (tx, rx) = std::sync::mpsc::sync_channel::<Decoded>(PIPELINE_DEPTH);
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("replay-chain".into())
            .spawn_scoped(scope, move || {
                let mut outcomes = Summary::default();
                for decoded in rx {
                    run_chain(
                        decoded,
                        plan,
                        schemas,
                        sink,
                        out_topic,
                        &versions,
                        &mut outcomes,
                    )?;
                }
                Ok::<_, anyhow::Error>(outcomes)
            })
            .context("cannot start the replay chain thread")?;
        let read = read_loop(
            consumer,
            topic,
            &mut active,
            key_filter,
            batch_size,
            schemas,
            &tx,
            progress,
            summary,
        );
        drop(tx);
        let outcomes = worker
            .join()
            .map_err(|_| anyhow::anyhow!("the replay chain thread panicked"))?;
        // A failed worker closes the channel, which stops the reader: its
        // error is the cause.
        let outcomes = outcomes?;
        read?;
        summary.add_outcomes(outcomes);
        Ok(())
    })
}

/// Fetch until every active partition reached its end, decoding full
/// batches and handing them to the chain thread.
#[allow(clippy::too_many_arguments)]
fn read_loop(
    consumer: &Reader,
    topic: &str,
    active: &mut HashMap<i32, i64>,
    key_filter: Option<&BTreeSet<Vec<u8>>>,
    batch_size: usize,
    schemas: &crate::schema::SchemaSet,
    tx: &std::sync::mpsc::SyncSender<Decoded>,
    progress: &ProgressBar,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let mut batch = Batch::with_capacity(batch_size);
    let mut origins: Vec<Origin> = Vec::with_capacity(batch_size);
    let mut last_record = Instant::now();
    // Set per record, turned into a time only when a poll comes back empty:
    // reading the clock per record cost more than the rest of the loop.
    let mut got_record = false;
    let mut pending_progress = 0u64;
    let send = |batch: &mut Batch, origins: &mut Vec<Origin>| -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut full = std::mem::replace(batch, Batch::with_capacity(batch_size));
        let (events, failures) = full.decode(schemas);
        let decoded = Decoded {
            batch: full,
            origins: std::mem::replace(origins, Vec::with_capacity(batch_size)),
            events,
            failures,
        };
        tx.send(decoded)
            .map_err(|_| anyhow::anyhow!("the replay chain thread stopped"))
    };
    while !active.is_empty() {
        let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
            if std::mem::take(&mut got_record) {
                last_record = Instant::now();
            }
            send(&mut batch, &mut origins)?;
            progress.inc(std::mem::take(&mut pending_progress));
            if last_record.elapsed() > STALL_TIMEOUT {
                anyhow::bail!(
                    "no record arrived for {STALL_TIMEOUT:?} with partitions {:?} unfinished",
                    active.keys().collect::<Vec<_>>()
                );
            }
            continue;
        };
        let message = match polled {
            Ok(message) => message,
            Err(KafkaError::PartitionEOF(p)) => {
                done(consumer, topic, p, active);
                continue;
            }
            Err(e) => return Err(e).context("cannot read from the broker"),
        };
        let p = message.partition();
        let offset = message.offset();
        let Some(&end) = active.get(&p) else { continue };
        if offset >= end {
            done(consumer, topic, p, active);
            continue;
        }
        got_record = true;
        summary.read(p, offset);
        pending_progress += 1;
        if offset + 1 >= end {
            done(consumer, topic, p, active);
        }
        if let Some(keys) = key_filter
            && !message.key().is_some_and(|k| keys.contains(k))
        {
            summary.skipped_key += 1;
            continue;
        }
        batch.push(&message);
        origins.push(Origin {
            partition: p,
            offset,
        });
        if batch.len() >= batch_size {
            send(&mut batch, &mut origins)?;
            progress.inc(std::mem::take(&mut pending_progress));
        }
    }
    send(&mut batch, &mut origins)?;
    progress.inc(pending_progress);
    Ok(())
}

/// Stop reading partition `p`.
fn done(consumer: &Reader, topic: &str, p: i32, active: &mut HashMap<i32, i64>) {
    if active.remove(&p).is_some() {
        let mut tpl = TopicPartitionList::new();
        if tpl.add_partition(topic, p).set_offset(Offset::End).is_ok() {
            let _ = consumer.pause(&tpl);
        }
    }
}

/// Run one decoded batch through the chain and write its output, counting
/// outcomes into `outcomes`.
fn run_chain(
    decoded: Decoded,
    plan: &mut plan::ChainPlan,
    schemas: &crate::schema::SchemaSet,
    sink: &mut Sink<'_>,
    out_topic: &str,
    versions: &str,
    outcomes: &mut Summary,
) -> anyhow::Result<()> {
    let Decoded {
        batch,
        origins,
        events,
        failures,
    } = decoded;
    for failure in &failures {
        outcomes.fail(&failure.plugin, &failure.error);
    }
    let sources: Vec<usize> = events.iter().map(|(i, _)| *i).collect();
    let events: Vec<crate::runtime::bindings::Event> = events.into_iter().map(|(_, e)| e).collect();
    if let Some(diff) = plan.diff.as_mut() {
        let keys: Vec<Option<Vec<u8>>> = events.iter().map(|e| e.key.clone()).collect();
        let old = diff.chain.run(events.clone());
        let new = plan.chain.run(events);
        outcomes.kept += new.items.len() as u64;
        outcomes.dropped += new.dropped as u64;
        for failure in &new.failures {
            outcomes.fail(&failure.plugin, &failure.error);
        }
        let (old, new) = (fates(&old, keys.len()), fates(&new, keys.len()));
        for (i, key) in keys.iter().enumerate() {
            if old[i] != new[i] {
                outcomes.differ += 1;
                let line = serde_json::json!({
                    "partition": origins[sources[i]].partition,
                    "offset": origins[sources[i]].offset,
                    "key": key.as_deref().map(String::from_utf8_lossy),
                    "old": old[i],
                    "new": new[i],
                });
                sink.write_line(&line)?;
            }
        }
        return Ok(());
    }
    let output = plan.chain.run(events);
    outcomes.dropped += output.dropped as u64;
    for failure in &output.failures {
        outcomes.fail(&failure.plugin, &failure.error);
    }
    for mut item in output.items {
        let source = sources[item.source];
        let json = (!item.changed).then(|| Vec::from(std::mem::take(&mut item.event.value)));
        match batch.output_record(source, item, out_topic, versions) {
            Ok(record) => match sink.write(schemas, origins[source], record, json)? {
                Ok(()) => outcomes.kept += 1,
                Err(reason) => outcomes.fail("(output)", &reason),
            },
            Err(failure) => outcomes.fail(&failure.plugin, &failure.error),
        }
    }
    Ok(())
}

/// What the chain made of each input event, as JSON for `--diff`:
/// `{"kept": [values]}`, `"dropped"`, or `{"failed": {"plugin", "error"}}`.
fn fates(output: &crate::runtime::ChainOutput, inputs: usize) -> Vec<serde_json::Value> {
    let mut kept: Vec<Vec<serde_json::Value>> = vec![Vec::new(); inputs];
    let mut out = vec![serde_json::Value::from("dropped"); inputs];
    for item in &output.items {
        let value = serde_json::from_slice(&item.event.value).unwrap_or_else(|_| {
            serde_json::Value::from(String::from_utf8_lossy(&item.event.value).into_owned())
        });
        if let Some(slot) = kept.get_mut(item.source) {
            slot.push(value);
        }
    }
    for (i, values) in kept.into_iter().enumerate() {
        if !values.is_empty() {
            out[i] = serde_json::json!({ "kept": values });
        }
    }
    for failure in &output.failures {
        if let Some(slot) = out.get_mut(failure.source) {
            *slot =
                serde_json::json!({"failed": {"plugin": failure.plugin, "error": failure.error}});
        }
    }
    out
}
