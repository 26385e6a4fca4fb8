//! `sluice tap` against a real broker: the real CLI tapping a running host.
//! A tap on the second plugin of filter → redact → enrich shows exactly what
//! redact produced (computed independently in Rust); a route tap shows every
//! accepted event; a dead-letter tap shows a poison record with the reason
//! its dead letter carries; sampling, limits, auth and bad points; and the
//! stage delivers the same with taps open.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;
use sluice_tests::pipeline::{Names, event, ingest_pipeline_config, post_events, redacted};
use sluice_tests::{
    Broker, Sluice, TempDir, free_port, plugins_built, produce_events, read_all, read_topic,
    sluice_bin, topic_size, wait_caught_up,
};

const TOKEN: &str = "tap-token";

/// Stage `clean` on `names`, HTTP ingest (route `*` → its input) and the
/// admin token, on `port`.
fn config(bootstrap: &str, port: u16, names: &Names) -> String {
    ingest_pipeline_config(bootstrap, port, names, TOKEN)
}

/// A running `sluice tap`, its stdout in a file.
struct Tap {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    _dir: TempDir,
}

impl Tap {
    /// Start `sluice tap ARGS --admin URL` (with the token unless `token` is false).
    fn start(sluice: &Sluice, args: &[&str], token: bool) -> anyhow::Result<Self> {
        let dir = TempDir::new("tap");
        let (out, err) = (dir.path().join("out"), dir.path().join("err"));
        let mut command = Command::new(sluice_bin());
        command.arg("tap").args(args).args(["--admin", &sluice.url]);
        if token {
            command.args(["--token", TOKEN]);
        }
        let child = command
            .env_remove("SLUICE_ADMIN_TOKEN")
            .stdout(std::fs::File::create(&out)?)
            .stderr(std::fs::File::create(&err)?)
            .stdin(Stdio::null())
            .spawn()
            .context("cannot start sluice tap")?;
        Ok(Self {
            child,
            out,
            err,
            _dir: dir,
        })
    }

    /// The lines printed so far, parsed.
    fn lines(&self) -> anyhow::Result<Vec<Value>> {
        let text = std::fs::read_to_string(&self.out)?;
        text.lines()
            .map(|l| serde_json::from_str(l).with_context(|| format!("tap line {l}")))
            .collect()
    }

    /// Wait for the CLI to exit by itself; its status and stderr.
    fn wait(&mut self, timeout: Duration) -> anyhow::Result<(std::process::ExitStatus, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok((status, std::fs::read_to_string(&self.err)?));
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "sluice tap still running after {timeout:?}; printed {} lines, stderr: {}",
                    self.lines().map(|l| l.len()).unwrap_or(0),
                    std::fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until the printed line count stops growing, then stop the CLI.
    fn settle_and_stop(&mut self) -> anyhow::Result<Vec<Value>> {
        let mut last = usize::MAX;
        loop {
            let now = self.lines()?.len();
            if now == last {
                break;
            }
            last = now;
            std::thread::sleep(Duration::from_secs(2));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.lines()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The host's `/metrics` sample of `name` (summed over labels).
async fn metric(sluice: &Sluice, name: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("{}/metrics", sluice.url))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Wait until the host has `count` taps open (so events sent after this are
/// offered to them).
async fn wait_taps(sluice: &Sluice, count: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(sluice, "sluice_taps_active").await? != count as f64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{count} taps never opened\n{}",
            sluice.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn by_id(values: impl IntoIterator<Item = Value>) -> anyhow::Result<BTreeMap<String, Value>> {
    let mut map = BTreeMap::new();
    for value in values {
        let id = value["event_id"]
            .as_str()
            .context("an event_id")?
            .to_string();
        anyhow::ensure!(map.insert(id.clone(), value).is_none(), "{id} twice");
    }
    Ok(map)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_tap_shows_exactly_what_that_plugin_produced() -> anyhow::Result<()> {
    plugins_built(&["filter", "redact", "enrich"])?;
    let broker = Broker::shared();
    let names = Names::unique("tap-plugin");
    names.create(&broker, 3)?;
    let port = free_port();
    let sluice = Sluice::start(&config(&broker.bootstrap(), port, &names), port)?;
    let total = 2_000;
    let inputs: Vec<Value> = (0..total).map(event).collect();
    let want = by_id(inputs.iter().filter_map(redacted))?;
    let kept = want.len();
    assert!(kept < total, "the filter drops some");

    let limit = kept.to_string();
    let all = total.to_string();
    let mut plugin = Tap::start(
        &sluice,
        &["--stage", "clean", "--plugin", "redact", "--limit", &limit],
        true,
    )?;
    let mut route = Tap::start(&sluice, &["--route", "*", "--limit", &all], true)?;
    wait_taps(&sluice, 2).await?;
    post_events(&reqwest::Client::new(), &sluice.url, &inputs).await?;

    let (status, stderr) = plugin.wait(Duration::from_secs(60))?;
    assert!(status.success(), "{stderr}");
    let tapped = plugin.lines()?;
    assert_eq!(tapped.len(), kept, "the limit was the exact count");
    for line in &tapped {
        assert_eq!(line["point"]["kind"], "plugin");
        assert_eq!(line["topic"], Value::String(names.input.clone()), "{line}");
        assert!(
            line["offset"].is_i64() && line["partition"].is_i64(),
            "{line}"
        );
        assert_eq!(line["key"], line["value"]["entity_id"], "{line}");
    }
    let got = by_id(tapped.into_iter().map(|l| l["value"].clone()))?;
    assert_eq!(got.len(), want.len());
    for (id, value) in &want {
        assert_eq!(got.get(id), Some(value), "event {id} as redact left it");
    }

    let (status, stderr) = route.wait(Duration::from_secs(60))?;
    assert!(status.success(), "{stderr}");
    let routed = by_id(route.lines()?.into_iter().map(|l| l["value"].clone()))?;
    assert_eq!(
        routed,
        by_id(inputs.iter().cloned())?,
        "every accepted event"
    );

    // Taps change nothing downstream: every kept event is delivered once,
    // and the group commits all of the input.
    let records = tokio::task::spawn_blocking({
        let (bootstrap, output) = (broker.bootstrap(), names.output.clone());
        move || read_topic(&bootstrap, &output, kept, Duration::from_secs(60))
    })
    .await??;
    assert_eq!(records.len(), kept, "{}", sluice.log());
    tokio::task::spawn_blocking({
        let (bootstrap, names) = (broker.bootstrap(), names.clone());
        move || {
            wait_caught_up(
                &bootstrap,
                &names.group,
                &names.input,
                Duration::from_secs(30),
            )
        }
    })
    .await??;
    assert_eq!(topic_size(&broker.bootstrap(), &names.output)?, kept as i64);
    assert_eq!(topic_size(&broker.bootstrap(), &names.dlq)?, 0);
    wait_taps(&sluice, 0).await?;

    // No token: 401. A point the host lacks: 400 naming what it has.
    let mut anonymous = Tap::start(&sluice, &["--topic", &names.input], false)?;
    let (status, stderr) = anonymous.wait(Duration::from_secs(30))?;
    assert!(!status.success());
    assert!(stderr.contains("401"), "{stderr}");
    let mut typo = Tap::start(&sluice, &["--stage", "clean", "--plugin", "redcat"], true)?;
    let (status, stderr) = typo.wait(Duration::from_secs(30))?;
    assert!(!status.success());
    assert!(
        stderr.contains("400")
            && stderr.contains(
                "stage `clean` has no plugin `redcat` in its chain (filter → redact → enrich)"
            ),
        "{stderr}"
    );
    let mut no_topic = Tap::start(&sluice, &["--topic", "nope"], true)?;
    let (_, stderr) = no_topic.wait(Duration::from_secs(30))?;
    assert!(
        stderr.contains("no stage on this host reads topic `nope`"),
        "{stderr}"
    );
    let client = reqwest::Client::new();
    let two_points = client
        .get(format!(
            "{}/admin/tap?route=*&topic={}",
            sluice.url, names.input
        ))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    assert_eq!(two_points.status(), 400);
    let bad_sample = client
        .get(format!(
            "{}/admin/tap?topic={}&sample=2",
            sluice.url, names.input
        ))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    assert_eq!(bad_sample.status(), 400);
    assert!(bad_sample.text().await?.contains("sample"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn topic_and_dead_letter_taps_sample_limit_and_give_reasons() -> anyhow::Result<()> {
    plugins_built(&["filter", "redact", "enrich"])?;
    let broker = Broker::shared();
    let names = Names::unique("tap-topic");
    names.create(&broker, 3)?;
    let port = free_port();
    let sluice = Sluice::start(&config(&broker.bootstrap(), port, &names), port)?;
    let total = 2_000;
    let inputs: Vec<Value> = (0..total).map(event).collect();

    let mut half = Tap::start(
        &sluice,
        &[
            "--topic",
            &names.input,
            "--sample",
            "0.5",
            "--limit",
            "100000",
        ],
        true,
    )?;
    let mut dead = Tap::start(&sluice, &["--dead-letters", "clean", "--limit", "1"], true)?;
    wait_taps(&sluice, 2).await?;
    produce_events(&broker.bootstrap(), &names.input, &inputs).await?;
    // A record that is not Avro: the stage dead-letters it.
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

    let (status, stderr) = dead.wait(Duration::from_secs(60))?;
    assert!(status.success(), "{stderr}");
    let letters = dead.lines()?;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter["key"], "poison", "{letter}");
    assert_eq!(letter["value"], Value::Null, "undecodable: {letter}");
    let bootstrap = broker.bootstrap();
    let dlq = tokio::task::spawn_blocking({
        let dlq = names.dlq.clone();
        move || read_all(&bootstrap, &dlq, Duration::from_secs(10))
    })
    .await??;
    assert_eq!(dlq.len(), 1, "{}", sluice.log());
    let reason = dlq[0].header("sluice-error").context("sluice-error")?;
    assert_eq!(
        letter["error"],
        Value::String(format!("(host): {reason}")),
        "the tap gives the dead letter's reason"
    );
    assert_eq!(
        letter["offset"].to_string(),
        dlq[0]
            .header("sluice-origin-offset")
            .context("origin offset")?
    );

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
    let sampled = half.settle_and_stop()?;
    let dropped = metric(&sluice, "sluice_tap_dropped_total").await?;
    let seen = sampled.len() as f64 + dropped;
    // Binomial(2000, 0.5): sd ~ 22; 850..1150 is beyond six of them.
    assert!(
        (850.0..1150.0).contains(&seen),
        "sample 0.5 of {total}: {} printed, {dropped} dropped",
        sampled.len()
    );
    let kept = inputs.iter().filter(|e| e["severity"] != "DEBUG").count();
    assert_eq!(topic_size(&broker.bootstrap(), &names.output)?, kept as i64);

    // --limit: the CLI ends by itself after that many.
    let mut limited = Tap::start(&sluice, &["--topic", &names.input, "--limit", "5"], true)?;
    wait_taps(&sluice, 1).await?;
    produce_events(&broker.bootstrap(), &names.input, &inputs[..100]).await?;
    let (status, stderr) = limited.wait(Duration::from_secs(60))?;
    assert!(status.success(), "{stderr}");
    let first = limited.lines()?;
    assert_eq!(first.len(), 5, "--limit 5");
    assert!(first.iter().all(|l| l["point"]["kind"] == "topic"));
    assert!(
        first
            .iter()
            .all(|l| l["topic"] == Value::String(names.input.clone())),
        "{first:?}"
    );
    Ok(())
}
