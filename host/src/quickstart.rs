//! `sluice quickstart`: the product's main job in one command. It runs the
//! pipeline example (`examples/pipeline/sluice.toml`: ingest → stage `clean`
//! with the WebAssembly chain filter → redact → enrich → `telemetry.clean`)
//! on the embedded broker, building the first-party plugins first when
//! `plugins/dist` lacks them, posts the sample events, shows a few of them
//! transformed, and keeps running (with the broker's address printed for
//! `sluice replay --brokers`) until Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use crate::config::LoadedConfig;

/// `sluice quickstart` options.
#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// The Sluice repository (default: the one this binary was built from,
    /// else the current directory).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// HTTP listen address (ingest, `/metrics`, `/admin`).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// How many transformed events to show.
    #[arg(long, default_value_t = 3)]
    pub show: usize,
}

/// The pipeline example, relative to the repository.
const CONFIG: &str = "examples/pipeline/sluice.toml";
/// The sample events posted.
const EVENTS: &str = "examples/quickstart/events.ndjson";

/// Run the quickstart; returns when the host has drained after Ctrl-C.
pub fn main(args: &QuickstartArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &QuickstartArgs) -> anyhow::Result<()> {
    let repo = repo_dir(args.repo.as_deref())?;
    let config_path = repo.join(CONFIG);
    let (loaded, _) = crate::config::load_checked(&config_path);
    let loaded = loaded.with_context(|| format!("cannot read {}", config_path.display()))?;
    ensure_plugins(&repo, &loaded)?;
    let mut loaded = crate::validate::validate(&config_path)
        .map_err(|problems| anyhow::anyhow!("{problems}"))?;
    let ingest = loaded
        .config
        .ingest
        .as_mut()
        .context("the pipeline example has no [ingest]")?;
    ingest.listen = toml::Spanned::new(0..0, args.listen.clone());
    let token = loaded
        .config
        .admin
        .token
        .as_deref()
        .map(crate::config::interpolate_env)
        .transpose()
        .map_err(|e| anyhow::anyhow!("[admin] token: {e}"))?
        .context("the pipeline example has no [admin] token")?;
    let stage = loaded.config.stages.first().context("no [[stage]]")?;
    let output = stage
        .output
        .as_ref()
        .context("the first stage has no output topic")?
        .get_ref()
        .clone();
    let chain: Vec<String> = stage.chain.iter().map(|c| c.get_ref().clone()).collect();
    let events_path = repo.join(EVENTS);
    let events = std::fs::read_to_string(&events_path)
        .with_context(|| format!("cannot read {}", events_path.display()))?;

    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let host = tokio::spawn(crate::run::run_until(loaded, crate::run::shutdown_signal()));
        let url = format!("http://{}", args.listen);
        let demo = demo(&url, &token, &output, &chain, &events, args.show);
        tokio::pin!(demo);
        let mut host = host;
        tokio::select! {
            finished = &mut host => {
                return finished.context("the host panicked")?.context("the host stopped");
            }
            shown = &mut demo => shown?,
        }
        let bootstrap = crate::kafka::embedded_bootstrap().unwrap_or_else(|| "BOOTSTRAP".into());
        println!(
            "\nTry it:\n\
             \x20 curl -X POST {url}/v1/events/batch -H 'content-type: application/x-ndjson' --data-binary @{EVENTS}\n\
             \x20 sluice tail {output} --url {url} --token {token} --limit 5\n\
             \x20 curl -s {url}/metrics | grep sluice_stage_events_total\n\
             \x20 sluice replay -c {CONFIG} --brokers {bootstrap} --topic telemetry.events --from 0 --key user-2\n\
             (`sluice` is `cargo run --release -p sluice-host --`; run them from {repo}.)\n\
             The embedded Kafka broker at {bootstrap} keeps everything in memory: Ctrl-C stops it all.",
            repo = repo.display(),
        );
        host.await.context("the host panicked")?
    })
}

/// The repository: `--repo`, else where this binary was built from, else
/// the current directory; it must hold the pipeline example.
fn repo_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let candidates: Vec<PathBuf> = match given {
        Some(dir) => vec![dir.to_path_buf()],
        None => vec![PathBuf::from("."), built_from],
    };
    for dir in &candidates {
        if dir.join(CONFIG).is_file() && dir.join(EVENTS).is_file() {
            return Ok(std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone()));
        }
    }
    bail!(
        "no Sluice repository at {}: the quickstart runs {CONFIG} from a checkout (pass --repo DIR)",
        candidates
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(" or ")
    )
}

/// Build the first-party plugins the example chains into `[plugins] dir`
/// (`plugins/dist`) when any is missing, as `plugins/build.sh` would.
fn ensure_plugins(repo: &Path, loaded: &LoadedConfig) -> anyhow::Result<()> {
    let dir = loaded.resolve(loaded.config.plugins.dir.get_ref());
    let missing: Vec<String> = loaded
        .config
        .stages
        .iter()
        .flat_map(|s| s.chain.iter().map(|c| c.get_ref().clone()))
        .filter(|name| !dir.join(format!("{name}.wasm")).is_file())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let workspace = repo.join("plugins");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { repo.join(t) })
        .unwrap_or_else(|| workspace.join("target"));
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .current_dir(&workspace)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target);
    for name in &missing {
        if !workspace.join(name).join("Cargo.toml").is_file() {
            bail!(
                "plugin `{name}` is not in {} and is not a first-party plugin",
                dir.display()
            );
        }
        command.args(["-p", &format!("sluice-{name}")]);
    }
    eprintln!(
        "building the plugins {} for wasm32-wasip2 (once; about a minute)...",
        missing.join(", ")
    );
    let status = command.status().context("cannot run cargo")?;
    if !status.success() {
        bail!(
            "building the plugins failed; is the wasm32-wasip2 target installed? \
             `rustup target add wasm32-wasip2`, or `bash ../shared/toolchain/install-wasm32-wasip2.sh` \
             next to the repository"
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for name in &missing {
        let built = target
            .join("wasm32-wasip2/release")
            .join(format!("sluice_{}.wasm", name.replace('-', "_")));
        std::fs::copy(&built, dir.join(format!("{name}.wasm")))
            .with_context(|| format!("cannot copy {}", built.display()))?;
    }
    Ok(())
}

/// Wait for the host, post the sample events, show a few transformed.
async fn demo(
    url: &str,
    token: &str,
    output: &str,
    chain: &[String],
    events: &str,
    show: usize,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = client.get(format!("{url}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the host did not get ready at {url}/readyz within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bootstrap = crate::kafka::embedded_bootstrap().unwrap_or_else(|| "?".into());
    println!(
        "Sluice is running the pipeline example: ingest → stage `clean` ({}, WebAssembly) → {output}\n\
         \x20 POST events to        {url}/v1/events (one JSON event), {url}/v1/events/batch (NDJSON or a JSON array)\n\
         \x20 Kafka (embedded)      {bootstrap} (in memory only)\n\
         \x20 metrics, readiness    {url}/metrics, {url}/readyz",
        chain.join(" → ")
    );
    let count = events.lines().filter(|l| !l.trim().is_empty()).count();
    let response = client
        .post(format!("{url}/v1/events/batch"))
        .header("content-type", "application/x-ndjson")
        .body(events.to_string())
        .send()
        .await
        .context("cannot post the sample events")?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    println!("\nposted {count} events from {EVENTS}: {status} {body}");
    if !status.is_success() {
        bail!("ingest refused the sample events");
    }
    // The stage drops some (DEBUG) and transforms the rest; wait until its
    // output stops growing.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last: Vec<serde_json::Value> = Vec::new();
    let mut stable_since = Instant::now();
    loop {
        let records: Vec<serde_json::Value> = client
            .get(format!("{url}/admin/topics/{output}/tail?limit=1000"))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await
            .unwrap_or_default();
        if records.len() != last.len() {
            last = records;
            stable_since = Instant::now();
        } else if !last.is_empty() && stable_since.elapsed() > Duration::from_millis(1500) {
            break;
        }
        if Instant::now() > deadline {
            if last.is_empty() {
                bail!("no event reached {output} within 30 s");
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // In the order they happened (the stage's output interleaves partitions).
    last.sort_by_key(|r| r["value"]["occurred_at"].as_i64());
    println!(
        "{} of them reached {output}, transformed (DEBUG dropped, email/ip hashed, team/ua_family/ingested_at added); {} of them:",
        last.len(),
        show.min(last.len())
    );
    for record in last.iter().take(show) {
        println!("  {}", record["value"]);
    }
    Ok(())
}
