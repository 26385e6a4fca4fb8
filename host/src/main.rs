//! The `sluice` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Sluice: WebAssembly-extensible event ingestion on Kafka.
#[derive(Parser)]
#[command(name = "sluice", version, about)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// The main job in one go: run the pipeline example (ingest → WASM
    /// chain → output topic) on the embedded broker, post the sample
    /// events and show some transformed; builds the plugins if needed.
    Quickstart(sluice::quickstart::QuickstartArgs),
    /// Replay a window of a topic's history through a plugin chain, without
    /// joining any consumer group; summary on stderr.
    Replay(Box<sluice::replay::ReplayArgs>),
    /// Deploy, list and roll back plugin versions on running hosts through
    /// the admin API.
    Plugin(Box<sluice::plugins::cli::PluginArgs>),
    /// Print the newest records of a topic, decoded to JSON, as a running
    /// host reads them (its admin API).
    Tail(sluice::tail::TailArgs),
    /// Stream live events at an ingest route, a topic, a plugin's output in
    /// a stage's chain or a stage's dead letters, as NDJSON, from a running
    /// host's admin API.
    Tap(sluice::tap::cli::TapArgs),
    /// List a stage's dead letters by plugin and error, show one decoded,
    /// and redrive selected ones to the stage's input, through a running
    /// host's admin API.
    Dlq(sluice::dlq::cli::DlqArgs),
    /// Watch running hosts live in the terminal: per route, stage and
    /// plugin the rates in/out/dropped/failed, p99 latency, lag, dead
    /// letters and plugin versions, from their admin API (`q` quits).
    Top(sluice::top::TopArgs),
    /// Run everything the configuration enables: ingest, stages, metrics.
    Run {
        /// Configuration file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Check a configuration, its schemas and plugins; list every problem.
    Validate {
        /// Configuration file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Run the `[[test]]` cases of a configuration: input events through
    /// the real plugins, compared with the expected outcomes and values.
    Test {
        /// Configuration file.
        #[arg(short, long)]
        config: PathBuf,
        /// Run only the cases whose name contains this text.
        filter: Option<String>,
    },
    /// Print the OpenAPI 3.1 document of the HTTP API (what `/openapi.json`
    /// serves), generated from the handlers.
    Openapi,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_filter = init_logging(cli.log_format);
    match cli.command {
        Command::Replay(args) => sluice::replay::main(&args),
        Command::Plugin(args) => sluice::plugins::cli::main(&args),
        Command::Quickstart(args) => sluice::quickstart::main(&args),
        Command::Tail(args) => sluice::tail::main(&args),
        Command::Tap(args) => sluice::tap::cli::main(&args),
        Command::Openapi => {
            print!("{}", sluice::admin::openapi::json());
            ExitCode::SUCCESS
        }
        Command::Dlq(args) => sluice::dlq::cli::main(&args),
        Command::Top(args) => sluice::top::main(&args),
        Command::Validate { config } => match sluice::validate::validate_with_plugins(&config) {
            Ok((_, plugins)) => {
                for line in plugins {
                    println!("{line}");
                }
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(problems) => {
                eprintln!("{problems}");
                ExitCode::FAILURE
            }
        },
        Command::Test { config, filter } => {
            let loaded = match sluice::config::load(&config) {
                Ok(loaded) => loaded,
                Err(problems) => {
                    eprintln!("{problems}");
                    return ExitCode::FAILURE;
                }
            };
            apply_config_filter(&log_filter, &loaded);
            let mut stdout = std::io::stdout().lock();
            match sluice::pipeline_test::run(&loaded, filter.as_deref(), &mut stdout) {
                Ok(summary) if summary.failed == 0 => ExitCode::SUCCESS,
                Ok(_) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config } => {
            let loaded = match sluice::validate::validate(&config) {
                Ok(loaded) => loaded,
                Err(problems) => {
                    eprintln!("{problems}");
                    return ExitCode::FAILURE;
                }
            };
            apply_config_filter(&log_filter, &loaded);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(sluice::run::run(loaded)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

const DEFAULT_LOG_FILTER: &str = "info,rdkafka=warn,wasmtime=warn,cranelift=warn";

/// Logs to stderr, filtered by `SLUICE_LOG` or the default; the returned
/// handle swaps in a configuration's `[log] filter` once it is loaded.
fn init_logging(format: LogFormat) -> reload::Handle<EnvFilter, Registry> {
    let filter = EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let (filter, handle) = reload::Layer::new(filter);
    let output = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Human => registry.with(output).init(),
        LogFormat::Json => registry.with(output.json()).init(),
    }
    handle
}

/// `[log] filter` applies unless `SLUICE_LOG` is set (validation checked it).
fn apply_config_filter(
    handle: &reload::Handle<EnvFilter, Registry>,
    loaded: &sluice::config::LoadedConfig,
) {
    if std::env::var_os("SLUICE_LOG").is_some() {
        return;
    }
    if let Some(filter) = &loaded.config.log.filter
        && let Ok(filter) = EnvFilter::try_new(filter.get_ref())
        && let Err(e) = handle.reload(filter)
    {
        tracing::warn!(error = %e, "cannot apply [log] filter");
    }
}
