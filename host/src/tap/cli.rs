//! `sluice tap`: print a running host's live tap (`GET /admin/tap`) as
//! NDJSON on stdout, each line as the host sends it.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{ArgGroup, Args};

/// `sluice tap` options.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("point").required(true).args(["route", "topic", "plugin", "dead_letters"])))]
pub struct TapArgs {
    /// Tap an ingest route (its event type).
    #[arg(long)]
    pub route: Option<String>,
    /// Tap a topic as a stage on the host reads it.
    #[arg(long)]
    pub topic: Option<String>,
    /// The stage whose plugin output to tap (with `--plugin`).
    #[arg(long, requires = "plugin")]
    pub stage: Option<String>,
    /// Tap this plugin's output in `--stage`'s chain.
    #[arg(long, requires = "stage")]
    pub plugin: Option<String>,
    /// Tap this stage's dead letters.
    #[arg(long)]
    pub dead_letters: Option<String>,
    /// Share of events to copy, 0 to 1.
    #[arg(long, default_value_t = 1.0)]
    pub sample: f64,
    /// Stop after this many events.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Base URL of a host's HTTP listener.
    #[arg(
        long,
        alias = "url",
        env = "SLUICE_ADMIN_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub admin: String,
    /// The admin bearer token (`[admin] token`).
    #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Stream the tap to stdout until the limit or the host ends it.
pub fn main(args: &TapArgs) -> ExitCode {
    crate::command::run_outcome(run(args))
}

fn query(args: &TapArgs) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    let named = [
        ("route", &args.route),
        ("topic", &args.topic),
        ("stage", &args.stage),
        ("plugin", &args.plugin),
        ("dead_letters", &args.dead_letters),
    ];
    for (name, value) in named {
        if let Some(value) = value {
            query.push((name, value.clone()));
        }
    }
    query.push(("sample", args.sample.to_string()));
    query.push(("limit", args.limit.to_string()));
    query
}

async fn run(args: &TapArgs) -> anyhow::Result<()> {
    let base = args.admin.trim_end_matches('/');
    let mut request = reqwest::Client::new()
        .get(format!("{base}/admin/tap"))
        .query(&query(args));
    if let Some(token) = &args.token {
        request = request.bearer_auth(token);
    }
    let mut response = request
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        bail!("{base} answered {status}: {}", message.trim());
    }
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("reading the tap from {base}"))?
    {
        match stdout.write_all(&chunk).and_then(|()| stdout.flush()) {
            Ok(()) => {}
            // A closed pipe (`| head`) ends the tap, as the reader asked.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e).context("writing to stdout"),
        }
    }
    Ok(())
}
