//! `sluice dlq list|show|redrive`: a running host's `/admin/dlq` from the
//! command line. `list` prints the counts by reason and a table of entries
//! (`--json` for the host's answer); `show` and `redrive` print JSON.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::{ArgGroup, Args, Subcommand};

use super::api::{ListAnswer, RecordRef, RedriveRequest};

/// `sluice dlq` options.
#[derive(Debug, Args)]
pub struct DlqArgs {
    /// Base URL of a host's HTTP listener.
    #[arg(
        long,
        alias = "url",
        env = "SLUICE_ADMIN_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub admin: String,
    /// An admin bearer token (`[admin] token` or one of `[admin.tokens]`);
    /// its name is recorded on what you redrive.
    #[arg(
        long,
        env = "SLUICE_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: DlqCommand,
}

/// The `sluice dlq` subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// A stage's dead letters, counted by plugin and error, then listed.
    List {
        /// Stage name.
        stage: String,
        /// Only this plugin's (`(host)` for decode failures).
        #[arg(long)]
        plugin: Option<String>,
        /// Only those whose error contains this text (case-insensitive).
        #[arg(long)]
        error: Option<String>,
        /// List at most this many (the counts cover all).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Start at this offset in every partition.
        #[arg(long)]
        from: Option<i64>,
        /// Only this partition of the dead-letter topic.
        #[arg(long)]
        partition: Option<i32>,
        /// Print the host's JSON answer instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// One dead letter: its headers and its value decoded to JSON.
    Show {
        /// Stage name.
        stage: String,
        /// Partition of the dead-letter topic.
        partition: i32,
        /// Offset.
        offset: i64,
    },
    /// Send dead letters back to the stage's input (after fixing the
    /// plugin that failed them), optionally through plugins first.
    #[command(group(ArgGroup::new("select").required(true).multiple(true).args(["all", "plugin", "error", "record"])))]
    Redrive {
        /// Stage name.
        stage: String,
        /// Every dead letter of the stage.
        #[arg(long, conflicts_with_all = ["plugin", "error", "record"])]
        all: bool,
        /// Those of this plugin.
        #[arg(long, conflicts_with = "record")]
        plugin: Option<String>,
        /// Those whose error contains this text.
        #[arg(long, conflicts_with = "record")]
        error: Option<String>,
        /// These ones, as PARTITION:OFFSET (repeatable).
        #[arg(long, value_parser = parse_record)]
        record: Vec<RecordRef>,
        /// Only from this offset in every partition (with --all or a filter).
        #[arg(long, conflicts_with = "record")]
        from: Option<i64>,
        /// Run them through these plugins first: `name`, `name@vN` (a
        /// store version) or `name@<sha256 prefix>`, comma-separated.
        #[arg(long, value_delimiter = ',')]
        through: Vec<String>,
    },
}

fn parse_record(text: &str) -> Result<RecordRef, String> {
    let (partition, offset) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not PARTITION:OFFSET"))?;
    Ok(RecordRef {
        partition: partition
            .trim()
            .parse()
            .map_err(|_| format!("`{partition}` is not a partition"))?,
        offset: offset
            .trim()
            .parse()
            .map_err(|_| format!("`{offset}` is not an offset"))?,
    })
}

/// Run a `sluice dlq` subcommand; prints the answer, exits 1 on a refusal.
pub fn main(args: &DlqArgs) -> ExitCode {
    crate::command::print_outcome(run(args))
}

async fn run(args: &DlqArgs) -> anyhow::Result<String> {
    let base = args.admin.trim_end_matches('/');
    let client = reqwest::Client::new();
    let segment = |s: &str| -> String {
        // Stage names are plain, but a path segment must stay one.
        s.replace('%', "%25")
            .replace('/', "%2F")
            .replace('?', "%3F")
            .replace('#', "%23")
    };
    let request = match &args.command {
        DlqCommand::List {
            stage,
            plugin,
            error,
            limit,
            from,
            partition,
            ..
        } => {
            let mut query: Vec<(&str, String)> = vec![("limit", limit.to_string())];
            for (name, value) in [("plugin", plugin), ("error", error)] {
                if let Some(value) = value {
                    query.push((name, value.clone()));
                }
            }
            if let Some(from) = from {
                query.push(("from", from.to_string()));
            }
            if let Some(partition) = partition {
                query.push(("partition", partition.to_string()));
            }
            client
                .get(format!("{base}/admin/dlq/{}", segment(stage)))
                .query(&query)
        }
        DlqCommand::Show {
            stage,
            partition,
            offset,
        } => client.get(format!(
            "{base}/admin/dlq/{}/{partition}/{offset}",
            segment(stage)
        )),
        DlqCommand::Redrive {
            stage,
            all,
            plugin,
            error,
            record,
            from,
            through,
        } => {
            let body = RedriveRequest {
                all: *all,
                plugin: plugin.clone(),
                error: error.clone(),
                records: (!record.is_empty()).then(|| record.clone()),
                from: *from,
                through: through.clone(),
            };
            client
                .post(format!("{base}/admin/dlq/{}/redrive", segment(stage)))
                .json(&body)
        }
    };
    let request = match &args.token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let body = crate::command::admin_json(base, request).await?;
    match &args.command {
        DlqCommand::List { json: false, .. } => Ok(table(&serde_json::from_value(body)?)),
        _ => Ok(serde_json::to_string_pretty(&body)?),
    }
}

/// The human form of a list: counts by reason, then one line per entry.
pub fn table(answer: &ListAnswer) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "stage {} ({}): {} dead letters matched of {} read",
        answer.stage, answer.topic, answer.matched, answer.scanned
    );
    if answer.groups.is_empty() {
        return out.trim_end().to_string();
    }
    let _ = writeln!(out, "\n{:>7}  {:<20}  ERROR", "COUNT", "PLUGIN");
    for group in &answer.groups {
        let _ = writeln!(
            out,
            "{:>7}  {:<20}  {}",
            group.count,
            group.plugin,
            one_line(&group.error, 100)
        );
    }
    let _ = writeln!(
        out,
        "\n{:>9} {:>10}  {:<24}  {:<20}  {:<18}  {:<28}  ERROR",
        "PARTITION", "OFFSET", "TIME", "PLUGIN", "VERSION", "ORIGIN"
    );
    for e in &answer.entries {
        let time = e
            .timestamp
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
            .map(|t| t.to_string())
            .unwrap_or_else(|| "-".into());
        let origin = format!(
            "{}/{}/{}",
            e.origin.topic,
            e.origin.partition.map_or("-".into(), |p| p.to_string()),
            e.origin.offset.map_or("-".into(), |o| o.to_string())
        );
        let _ = writeln!(
            out,
            "{:>9} {:>10}  {:<24}  {:<20}  {:<18}  {:<28}  {}",
            e.partition,
            e.offset,
            time,
            e.plugin,
            e.version,
            origin,
            one_line(&e.error, 80)
        );
    }
    if answer.truncated {
        let _ = writeln!(
            out,
            "(first {} of {}: --limit for more, --from to page)",
            answer.entries.len(),
            answer.matched
        );
    }
    out.trim_end().to_string()
}

fn one_line(text: &str, max: usize) -> String {
    let flat = text.replace(['\n', '\r'], " ");
    match flat.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::api::{Entry, Group, Origin};

    #[test]
    fn records_are_partition_colon_offset() {
        assert_eq!(
            parse_record("2:41"),
            Ok(RecordRef {
                partition: 2,
                offset: 41
            })
        );
        assert!(parse_record("241").is_err());
        assert!(parse_record("a:1").is_err());
    }

    #[test]
    fn the_table_counts_by_reason_then_lists() {
        let answer = ListAnswer {
            stage: "clean".into(),
            topic: "in.dlq".into(),
            scanned: 3,
            matched: 2,
            entries: vec![Entry {
                partition: 0,
                offset: 4,
                timestamp: Some(1_764_400_000_000),
                stage: "clean".into(),
                plugin: "tagger".into(),
                version: "v1-0123456789ab".into(),
                error: "wasm trap:\nunreachable".into(),
                origin: Origin {
                    topic: "in".into(),
                    partition: Some(1),
                    offset: Some(9),
                },
                ..Entry::default()
            }],
            truncated: true,
            groups: vec![Group {
                plugin: "tagger".into(),
                error: "wasm trap:\nunreachable".into(),
                count: 2,
            }],
        };
        let text = table(&answer);
        assert!(
            text.starts_with("stage clean (in.dlq): 2 dead letters matched of 3 read"),
            "{text}"
        );
        assert!(
            text.contains("      2  tagger                wasm trap: unreachable"),
            "{text}"
        );
        assert!(text.contains("in/1/9"), "{text}");
        assert!(text.contains("2025-11-29T"), "{text}");
        assert!(text.contains("(first 1 of 2"), "{text}");
    }
}
