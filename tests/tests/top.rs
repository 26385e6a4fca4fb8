//! `GET /admin/stats` and `sluice top` against a real broker: a pipeline
//! (filter → redact → enrich) takes events over HTTP and a poison record;
//! the stats snapshot equals what `/metrics` says, counter for counter
//! (parsed here independently of the host's parser); then the real
//! `sluice top` runs in tmux (120x40) next to an unreachable host, and the
//! captured screen shows the stage, its plugins and their versions, with
//! totals equal to `/metrics`, updated live after more events, with a
//! non-zero rate while they flow. Also: 401 without the token, the
//! topology, and a wrong token named on the screen.

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::Value;
use sluice_tests::pipeline::{Names, event, ingest_pipeline_config, post_events};
use sluice_tests::{Broker, Sluice, free_port, plugins_built, sluice_bin, wait_caught_up};

const TOKEN: &str = "top-token";

/// Stage `clean` on `names`, HTTP ingest (route `*` → its input) and the
/// admin token, on `port`.
fn config(bootstrap: &str, port: u16, names: &Names) -> String {
    ingest_pipeline_config(bootstrap, port, names, TOKEN)
}

/// `/metrics` parsed: (name, labels) → value.
type Scrape = Vec<(String, BTreeMap<String, String>, f64)>;

async fn scrape(sluice: &Sluice) -> anyhow::Result<Scrape> {
    let text = reqwest::get(format!("{}/metrics", sluice.url))
        .await?
        .text()
        .await?;
    let mut samples = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').context("a sample line")?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().with_context(|| format!("value of {line}"))?,
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let rest = rest.strip_suffix('}').context("closing brace")?;
                let labels = rest
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once("=\"").context("label=\"value\"")?;
                        Ok((k.to_string(), v.trim_end_matches('"').to_string()))
                    })
                    .collect::<anyhow::Result<_>>()?;
                (name.to_string(), labels)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        samples.push((name, labels, value));
    }
    Ok(samples)
}

/// The sum of `name`'s samples whose labels are exactly `labels` (plus, for
/// `partial`, any others).
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)], partial: bool) -> u64 {
    scrape
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
                && (partial || l.len() == labels.len())
        })
        .map(|(_, _, v)| *v)
        .sum::<f64>() as u64
}

fn stage_metric(scrape: &Scrape, plugin: &str, outcome: &str) -> u64 {
    value(
        scrape,
        "sluice_stage_events_total",
        &[("stage", "clean"), ("plugin", plugin), ("outcome", outcome)],
        false,
    )
}

/// The active version label of `plugin` in `/metrics`.
fn active_version(scrape: &Scrape, plugin: &str) -> Option<String> {
    scrape
        .iter()
        .find(|(n, l, v)| {
            n == "sluice_plugin_active"
                && l.get("plugin").map(String::as_str) == Some(plugin)
                && *v == 1.0
        })
        .and_then(|(_, l, _)| l.get("version").cloned())
}

async fn stats(sluice: &Sluice, token: Option<&str>) -> anyhow::Result<reqwest::Response> {
    let mut request = reqwest::Client::new().get(format!("{}/admin/stats", sluice.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Ok(request.send().await?)
}

/// Wait until the group committed all of its input and the host's lag
/// gauges (every 5 s) read 0, so every counter is final.
async fn settle(broker: &Broker, names: &Names, sluice: &Sluice) -> anyhow::Result<Scrape> {
    tokio::task::spawn_blocking({
        let (bootstrap, names) = (broker.bootstrap(), names.clone());
        move || {
            wait_caught_up(
                &bootstrap,
                &names.group,
                &names.input,
                Duration::from_secs(60),
            )
        }
    })
    .await??;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let scrape = scrape(sluice).await?;
        let lag = value(
            &scrape,
            "sluice_stage_consumer_lag",
            &[("stage", "clean")],
            true,
        );
        let partitions = scrape
            .iter()
            .filter(|(n, l, _)| {
                n == "sluice_stage_consumer_lag" && l.get("stage").is_some_and(|s| s == "clean")
            })
            .count();
        if lag == 0 && partitions == 3 {
            return Ok(scrape);
        }
        ensure!(Instant::now() < deadline, "lag gauges never read 0: {lag}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A tmux server of its own (`-L`), running one command in a 120x40 pane.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// tmux must be installed: scripts/test.sh installs it (Debian's).
    fn start(label: &str, command: &str) -> anyhow::Result<Self> {
        let version = Command::new("tmux").arg("-V").output();
        if !version.as_ref().is_ok_and(|o| o.status.success()) {
            panic!(
                "tmux is missing: the sluice top test drives the real terminal UI in tmux; \
                 install it (`apt-get install tmux`; scripts/test.sh does)"
            );
        }
        let socket = format!("sluice-top-{}-{label}", std::process::id());
        let tmux = Self { socket };
        // The command's exit status stays on the screen after it ends.
        let shell = format!("{command}; echo \"top exited $?\"; sleep 600");
        let out = tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "120",
            "-y",
            "40",
            &shell,
        ])?;
        ensure!(
            out.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(tmux)
    }

    fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .env_remove("TMUX")
            .output()
            .context("cannot run tmux")
    }

    /// The pane's text now.
    fn capture(&self) -> anyhow::Result<String> {
        let out = self.run(&["capture-pane", "-p", "-t", "top"])?;
        ensure!(
            out.status.success(),
            "capture-pane: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Capture until `check` accepts the screen (or say what was last seen);
    /// blocks, so the test's other tasks run on the runtime's other threads.
    fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        check: impl FnMut(&str) -> bool,
    ) -> anyhow::Result<String> {
        tokio::task::block_in_place(|| self.poll(what, timeout, check))
    }

    fn poll(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.capture()?;
            if check(&screen) {
                return Ok(screen);
            }
            if Instant::now() > deadline {
                bail!("{what}: not on the screen after {timeout:?}:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The cells of the row whose name is `name` (a stage or `  plugin`).
fn row(screen: &str, name: &str) -> Option<Vec<String>> {
    screen
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cells| cells.first().map(String::as_str) == Some(name))
}

/// Columns at 120 wide: name, in/s, out/s, drop/s, fail/s, dlq/s, p99, lag,
/// in total, out total, state / version.
const IN_RATE: usize = 1;
const IN_TOTAL: usize = 8;
const OUT_TOTAL: usize = 9;
const NOTE: usize = 10;

/// The totals and versions `/metrics` says the screen must show, per row.
fn expected_rows(scrape: &Scrape) -> Vec<(&'static str, u64, u64, Option<String>)> {
    let mut rows = vec![(
        "clean",
        stage_metric(scrape, "", "in"),
        stage_metric(scrape, "", "out"),
        None,
    )];
    for plugin in ["filter", "redact", "enrich"] {
        rows.push((
            plugin,
            stage_metric(scrape, plugin, "in"),
            stage_metric(scrape, plugin, "kept") + stage_metric(scrape, plugin, "modified"),
            active_version(scrape, plugin),
        ));
    }
    rows
}

/// Whether `screen` shows every row of `expected`.
fn shows(screen: &str, expected: &[(&str, u64, u64, Option<String>)]) -> bool {
    expected.iter().all(|(name, total_in, total_out, version)| {
        row(screen, name).is_some_and(|cells| {
            cells.len() > NOTE
                && cells[IN_TOTAL] == total_in.to_string()
                && cells[OUT_TOTAL] == total_out.to_string()
                && version.as_ref().is_none_or(|v| &cells[NOTE] == v)
        })
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_equal_the_metrics_and_sluice_top_shows_them_live() -> anyhow::Result<()> {
    plugins_built(&["filter", "redact", "enrich"])?;
    let broker = Broker::shared();
    let names = Names::unique("top");
    names.create(&broker, 3)?;
    let port = free_port();
    let sluice = Sluice::start(&config(&broker.bootstrap(), port, &names), port)?;

    // Without the token: 401, for both endpoints.
    assert_eq!(stats(&sluice, None).await?.status(), 401);
    assert_eq!(stats(&sluice, Some("wrong")).await?.status(), 401);
    let topology = reqwest::Client::new()
        .get(format!("{}/admin/topology", sluice.url))
        .send()
        .await?;
    assert_eq!(topology.status(), 401);

    let total = 1_000;
    let inputs: Vec<Value> = (0..total).map(event).collect();
    post_events(&reqwest::Client::new(), &sluice.url, &inputs).await?;
    // A record that is not Avro: dead-lettered by the stage.
    {
        use rdkafka::producer::{FutureProducer, FutureRecord};
        let producer: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .create()?;
        producer
            .send(
                FutureRecord::to(&names.input)
                    .key("poison")
                    .payload("not avro"),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    let scrape = settle(&broker, &names, &sluice).await?;

    // The snapshot, counter for counter against /metrics.
    let response = stats(&sluice, Some(TOKEN)).await?;
    assert_eq!(response.status(), 200);
    let snapshot: Value = response.json().await?;
    let debug = inputs.iter().filter(|e| e["severity"] == "DEBUG").count() as u64;
    let stage = &snapshot["stages"][0];
    assert_eq!(stage["name"], "clean", "{snapshot:#}");
    assert_eq!(stage["state"], "running");
    assert_eq!(stage["group"], Value::String(names.group.clone()));
    assert_eq!(stage["assignment"].as_array().map(Vec::len), Some(3));
    let events = &stage["events"];
    assert_eq!(events["in"], stage_metric(&scrape, "", "in"));
    assert_eq!(events["in"], total as u64 + 1, "every record read");
    assert_eq!(events["out"], stage_metric(&scrape, "", "out"));
    assert_eq!(events["out"], total as u64 - debug, "DEBUG dropped");
    assert_eq!(
        events["dead_lettered"],
        stage_metric(&scrape, "", "dead_lettered")
    );
    assert_eq!(events["dead_lettered"], 1, "the poison record");
    assert_eq!(events["dropped"], debug);
    assert_eq!(
        stage["batches"]["count"],
        value(
            &scrape,
            "sluice_stage_batch_seconds_count",
            &[("stage", "clean")],
            false
        )
    );
    assert!(
        stage["batches"]["p99_seconds"]
            .as_f64()
            .is_some_and(|p| p > 0.0),
        "{stage}"
    );
    assert_eq!(
        stage["lag"]["total"],
        value(
            &scrape,
            "sluice_stage_consumer_lag",
            &[("stage", "clean")],
            true
        )
    );
    assert_eq!(stage["lag"]["partitions"].as_array().map(Vec::len), Some(3));
    let plugins = stage["plugins"].as_array().context("plugins")?;
    let names_in_chain: Vec<&str> = plugins.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names_in_chain, ["filter", "redact", "enrich"]);
    for plugin in plugins {
        let name = plugin["name"].as_str().context("name")?;
        for outcome in ["in", "kept", "modified", "dropped", "failed"] {
            assert_eq!(
                plugin["events"][outcome],
                stage_metric(&scrape, name, outcome),
                "{name} {outcome}"
            );
        }
        assert_eq!(
            plugin["calls"]["count"],
            value(
                &scrape,
                "sluice_plugin_call_seconds_count",
                &[("stage", "clean"), ("plugin", name)],
                false
            )
        );
        assert_eq!(
            plugin["version"].as_str().map(str::to_string),
            active_version(&scrape, name),
            "{name}"
        );
    }
    let route = &snapshot["ingest"]["routes"][0];
    assert_eq!(route["topic"], Value::String(names.input.clone()));
    assert_eq!(
        route["accepted"],
        value(
            &scrape,
            "sluice_ingest_events_total",
            &[("topic", &names.input), ("status", "accepted")],
            false
        )
    );
    assert_eq!(route["accepted"], total as u64);
    assert!(
        snapshot["host"]["uptime_ms"]
            .as_u64()
            .is_some_and(|u| u > 0)
    );
    assert_eq!(snapshot["host"]["version"], env!("CARGO_PKG_VERSION"));

    // The topology: route → input → clean (its chain) → output, dead letters.
    let topology: Value = reqwest::Client::new()
        .get(format!("{}/admin/topology", sluice.url))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let edges: Vec<String> = topology["edges"]
        .as_array()
        .context("edges")?
        .iter()
        .map(|e| format!("{} -{}-> {}", e["from"], e["kind"], e["to"]).replace('"', ""))
        .collect();
    assert_eq!(
        edges,
        [
            format!("route:* -produce-> topic:{}", names.input),
            format!("topic:{} -consume-> stage:clean", names.input),
            format!("stage:clean -output-> topic:{}", names.output),
            format!("stage:clean -dead_letter-> topic:{}", names.dlq),
        ]
    );
    let stage_node = topology["nodes"]
        .as_array()
        .context("nodes")?
        .iter()
        .find(|n| n["id"] == "stage:clean")
        .context("the stage node")?;
    assert_eq!(
        stage_node["chain"],
        serde_json::json!(["filter", "redact", "enrich"])
    );

    // The real `sluice top`, next to a host nobody listens on.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let command = format!(
        "'{}' top --admin '{}' --admin '{dead}' --token {TOKEN} --interval 1s",
        sluice_bin().display(),
        sluice.url
    );
    let tmux = Tmux::start("live", &command)?;
    let expected = expected_rows(&scrape);
    let screen = tmux
        .wait_for("totals equal to /metrics", Duration::from_secs(20), |s| {
            shows(s, &expected)
        })
        .with_context(|| format!("expected {expected:?}"))?;
    println!("sluice top, after {total} events:\n{screen}");
    assert!(screen.contains("sluice top · 2 hosts"), "{screen}");
    assert!(screen.contains(&format!("{dead}  unreachable")), "{screen}");
    let host_id = snapshot["host"]["id"].as_str().context("host id")?;
    assert!(screen.contains(host_id), "{screen}");
    let clean = row(&screen, "clean").context("clean row")?;
    assert_eq!(clean[NOTE], "running", "{screen}");
    // From the second snapshot on, rates: 0 while idle.
    tmux.wait_for("in/s 0 while idle", Duration::from_secs(10), |s| {
        row(s, "clean").is_some_and(|c| c[IN_RATE] == "0")
    })?;

    // Live: more events, a rate while they flow, new totals after.
    let more: Vec<Value> = (total..total + 2_000).map(event).collect();
    let posting = tokio::spawn({
        let (url, more) = (sluice.url.clone(), more.clone());
        async move { post_events(&reqwest::Client::new(), &url, &more).await }
    });
    let flowing = tmux.wait_for("a non-zero in/s", Duration::from_secs(20), |s| {
        row(s, "clean").is_some_and(|c| c[IN_RATE] != "0" && c[IN_RATE] != "-")
    })?;
    let rate: f64 = row(&flowing, "clean").context("clean")?[IN_RATE]
        .trim_end_matches('k')
        .parse()
        .context("in/s is a number")?;
    assert!(rate > 0.0, "{flowing}");
    posting.await??;
    let scrape = settle(&broker, &names, &sluice).await?;
    assert_eq!(stage_metric(&scrape, "", "in"), 3_001);
    let expected = expected_rows(&scrape);
    let screen = tmux
        .wait_for("the new totals", Duration::from_secs(20), |s| {
            shows(s, &expected)
        })
        .with_context(|| format!("expected {expected:?}"))?;
    println!("sluice top, after {} more:\n{screen}", more.len());

    // q quits, with exit status 0.
    tmux.run(&["send-keys", "-t", "top", "q"])?;
    tmux.wait_for("top exited 0", Duration::from_secs(10), |s| {
        s.contains("top exited 0")
    })?;

    // A wrong token is named on the screen.
    let command = format!(
        "'{}' top --admin '{}' --token wrong",
        sluice_bin().display(),
        sluice.url
    );
    let wrong = Tmux::start("wrong", &command)?;
    let screen = wrong.wait_for("the 401", Duration::from_secs(20), |s| {
        s.contains("401: wrong or missing admin token")
    })?;
    assert!(screen.contains("no host answered"), "{screen}");
    Ok(())
}
