//! `sluice top`: live rates, latency, lag and plugin versions of running
//! hosts, side by side, in a terminal. Each `--interval` it fetches every
//! host's `GET /admin/stats` (cumulative counters), computes rates from the
//! last two snapshots ([`rates`]) and redraws ([`render`]).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

pub mod rates;
pub mod render;

use rates::Host;

/// `sluice top` options.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Base URL of a host's HTTP listener; repeat (or separate with commas)
    /// to watch several hosts of a group side by side.
    #[arg(
        long,
        alias = "url",
        env = "SLUICE_ADMIN_URL",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    pub admin: Vec<String>,
    /// The admin bearer token (`[admin] token`), the same for every host.
    #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// How often to fetch and redraw (`1s`, `500ms`).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
}

/// Run until `q`, Esc or Ctrl-C.
pub fn main(args: &TopArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &TopArgs) -> anyhow::Result<()> {
    if !std::io::stdout().is_terminal() {
        bail!(
            "sluice top draws on a terminal; for the numbers as JSON, GET {}/admin/stats with the admin token",
            args.admin
                .first()
                .map(|a| a.trim_end_matches('/'))
                .unwrap_or("")
        );
    }
    let interval = args.interval.max(Duration::from_millis(100));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let client = reqwest::Client::builder()
        .timeout(interval.clamp(Duration::from_secs(1), Duration::from_secs(5)))
        .build()
        .context("cannot build the HTTP client")?;
    let mut hosts: Vec<Host> = args.admin.iter().map(Host::new).collect();
    let mut terminal = ratatui::init();
    let result = watch(
        &mut terminal,
        &runtime,
        &client,
        &mut hosts,
        args.token.as_deref(),
        interval,
    );
    ratatui::restore();
    result
}

/// Fetch, draw, wait for the next tick or a key; until `q`, Esc or Ctrl-C.
fn watch(
    terminal: &mut ratatui::DefaultTerminal,
    runtime: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    hosts: &mut [Host],
    token: Option<&str>,
    interval: Duration,
) -> anyhow::Result<()> {
    loop {
        let fetched = runtime.block_on(futures::future::join_all(
            hosts.iter().map(|h| fetch(client, &h.url, token)),
        ));
        for (host, result) in hosts.iter_mut().zip(fetched) {
            host.update(result);
        }
        terminal.draw(|frame| render::draw(frame, hosts, interval))?;
        let next = Instant::now() + interval;
        while let Some(left) = next.checked_duration_since(Instant::now()) {
            if !event::poll(left)? {
                break;
            }
            match event::read()? {
                Event::Key(key) if key.kind != KeyEventKind::Release => {
                    let ctrl_c = key.modifiers.contains(KeyModifiers::CONTROL)
                        && key.code == KeyCode::Char('c');
                    if ctrl_c || matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) {
                        return Ok(());
                    }
                }
                Event::Resize(..) => {
                    terminal.draw(|frame| render::draw(frame, hosts, interval))?;
                }
                _ => {}
            }
        }
    }
}

/// One host's `/admin/stats`, or a one-line reason it has none.
async fn fetch(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> Result<crate::stats::Stats, String> {
    let base = url.trim_end_matches('/');
    let mut request = client.get(format!("{base}/admin/stats"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| {
        let why = if e.is_timeout() {
            "no answer in time".to_string()
        } else if e.is_connect() {
            "connection refused or no route".to_string()
        } else {
            e.to_string()
        };
        format!("unreachable: {why}")
    })?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    if status.is_success() {
        return serde_json::from_str(&text).map_err(|e| format!("unexpected answer: {e}"));
    }
    Err(refusal(status.as_u16(), &text))
}

/// Why a host refused, for one line of the screen.
pub fn refusal(status: u16, body: &str) -> String {
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let error = json.as_ref().and_then(|v| v["error"].as_str());
    match (status, error) {
        (401, _) => "401: wrong or missing admin token (--token or SLUICE_ADMIN_TOKEN)".into(),
        (404, Some("admin_disabled")) => "404: /admin is closed there (no [admin] token)".into(),
        (404, _) => "404: no /admin/stats there (an older sluice?)".into(),
        _ => {
            let message = json
                .as_ref()
                .and_then(|v| v["message"].as_str())
                .map(str::to_string)
                .unwrap_or_else(|| body.trim().to_string());
            format!("{status}: {message}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_what_to_fix() {
        assert!(refusal(401, r#"{"error":"unauthorized"}"#).contains("--token"));
        assert!(
            refusal(404, r#"{"error":"admin_disabled","message":"x"}"#).contains("[admin] token")
        );
        assert_eq!(
            refusal(503, r#"{"error":"unavailable","message":"no recorder"}"#),
            "503: no recorder"
        );
        assert_eq!(refusal(500, "boom\n"), "500: boom");
    }
}
