//! `sluice tail TOPIC`: the newest records of a topic, decoded to JSON, read
//! by a running host (`GET /admin/topics/{topic}/tail`), so it reaches that
//! host's brokers, its embedded one included.

use std::process::ExitCode;

use clap::Args;

/// `sluice tail` options.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Topic to read.
    pub topic: String,
    /// How many of the newest records (1 to 1000).
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    /// Base URL of a host's HTTP listener.
    #[arg(
        long,
        env = "SLUICE_ADMIN_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// The admin bearer token (`[admin] token`).
    #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the host's JSON array instead of one record per line.
    #[arg(long)]
    pub json: bool,
}

/// Print the records, one JSON object per line, oldest first.
pub fn main(args: &TailArgs) -> ExitCode {
    crate::command::print_outcome(run(args))
}

async fn run(args: &TailArgs) -> anyhow::Result<String> {
    let base = args.url.trim_end_matches('/');
    let mut request = reqwest::Client::new()
        .get(format!("{base}/admin/topics/{}/tail", args.topic))
        .query(&[("limit", args.limit)]);
    if let Some(token) = &args.token {
        request = request.bearer_auth(token);
    }
    let body = crate::command::admin_json(base, request).await?;
    if args.json {
        return Ok(serde_json::to_string_pretty(&body)?);
    }
    let lines: Vec<String> = body
        .as_array()
        .into_iter()
        .flatten()
        .map(|record| record.to_string())
        .collect();
    Ok(lines.join("\n"))
}
