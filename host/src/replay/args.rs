//! `sluice replay`'s command line: the options, and the error kind that
//! marks a mistake in what the operator typed (exit code 2).

use std::fmt;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

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
    pub(super) fn setting(self) -> &'static str {
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
