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

mod args;
mod offsets;
mod output;
pub mod partitioner;
mod pipeline;
pub mod plan;
mod summary;
pub mod window;

pub use args::{Format, InputError, Isolation, ReplayArgs, exit_code};
pub use output::Origin;
pub use pipeline::fates;
pub use summary::{PartitionRange, Summary};
pub use window::{Bound, parse_bound};

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::kafka::Kafka;
use offsets::{
    check_order, partitioner_setting, reader, resolve, select_partitions, topic_partitions,
};
use output::{avro_writer_schema, open_sink};
use pipeline::{ReplayRun, replay_ranges};

/// How long one broker request (metadata, watermarks, offsets) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long replay waits for records it knows exist before giving up.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

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
    let mut schemas = crate::schema::setup::schema_set(&loaded)?;
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
        crate::schema::setup::external_reader(&loaded, &mut schemas, runtime.handle().clone())?;
    }
    // A replay of a stage reads records as that stage does (its
    // reader_schema) and frames --out-topic records as it does, unless
    // --framing says otherwise.
    let stage = args.stage.as_deref().and_then(|name| {
        loaded
            .config
            .stages
            .iter()
            .find(|s| s.name.get_ref() == name)
    });
    let reader_schema = match stage {
        Some(stage) => crate::schema::setup::reader_schema(&loaded, &schemas, stage)?,
        None => None,
    };
    let framing = args
        .framing
        .or(stage.map(|s| s.framing))
        .unwrap_or_default();
    let schemas = schemas.framed_as(framing).with_reader(reader_schema);
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
