//! `sluice dlq` against a real broker: the real CLI on a running host. A
//! stage whose plugin (`tagger` v0 = `fixture-panic`) fails every fifth
//! event dead-letters them; `dlq list` counts them by reason (beside three
//! undecodable records), `dlq show` decodes one; a fixed `tagger`
//! (`fixture-add-field`) is pushed and `dlq redrive --plugin tagger` sends
//! them back: every event is then in the output exactly once, none lost,
//! and the redriven ones say who redrove them. A redriven record that fails
//! again is dead-lettered again with its redrive headers; `--through` runs
//! a named store version first; auth and bad input are refused.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use sluice::schema::SchemaSet;
use sluice_tests::{
    Broker, Sluice, TempDir, free_port, plugins_built, produce_events, read_all, repo_path,
    sample_event, topic_size, wait_until,
};

const TOKEN: &str = "dlq-admin-token";
const ALICE: &str = "dlq-alice-token";
/// Events posted; every fifth asks `fixture-panic` to panic.
const TOTAL: usize = 600;
const GARBAGE: usize = 3;

fn poison(i: usize) -> bool {
    i.is_multiple_of(5)
}

fn events() -> Vec<Value> {
    (0..TOTAL)
        .map(|i| {
            let mut e = sample_event(i, 50);
            if poison(i) {
                e["attributes"]["note"] = json!("please panic");
            }
            e
        })
        .collect()
}

fn dist(name: &str) -> Vec<u8> {
    std::fs::read(repo_path(&format!("plugins/dist/{name}.wasm"))).expect("built plugin")
}

fn schemas() -> SchemaSet {
    let mut set = SchemaSet::default();
    set.load(&repo_path("schemas/telemetry_event.avsc"))
        .expect("schema");
    set
}

struct Topics {
    input: String,
    output: String,
    dlq: String,
    store: String,
    group: String,
}

fn config(bootstrap: &str, port: u16, plugins: &std::path::Path, t: &Topics) -> String {
    let Topics {
        input,
        output,
        dlq,
        store,
        group,
    } = t;
    format!(
        r#"
schemas = "{{schemas}}"

[kafka]
brokers = "{bootstrap}"
[kafka.client]
"session.timeout.ms" = "8000"

[admin]
listen = "127.0.0.1:{port}"
token = "{TOKEN}"
[admin.tokens]
alice = "{ALICE}"

[plugins]
dir = "{plugins}"
store = true
store_topic = "{store}"

[[stage]]
name = "s"
input = "{input}"
output = "{output}"
dead_letter = "{dlq}"
group = "{group}"
chain = ["tagger"]
batch_size = 200
batch_wait_ms = 20
retries = 0
"#,
        plugins = plugins.display()
    )
}

/// `sluice dlq ARGS --admin URL [--token T]`: exit status, stdout, stderr.
fn dlq(
    sluice: &Sluice,
    token: Option<&str>,
    args: &[&str],
) -> anyhow::Result<(bool, String, String)> {
    let mut command = Command::new(sluice_tests::sluice_bin());
    command.arg("dlq").args(args).args(["--admin", &sluice.url]);
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    let out = command
        .env_remove("SLUICE_ADMIN_TOKEN")
        .env_remove("SLUICE_ADMIN_URL")
        .output()
        .context("cannot run sluice dlq")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn dlq_json(sluice: &Sluice, token: &str, args: &[&str]) -> anyhow::Result<Value> {
    let (ok, stdout, stderr) = dlq(sluice, Some(token), args)?;
    anyhow::ensure!(ok, "sluice dlq {args:?} failed: {stderr}\n{}", sluice.log());
    serde_json::from_str(&stdout).with_context(|| format!("sluice dlq {args:?} printed {stdout}"))
}

/// Produce `count` records that are not Avro to `topic`.
async fn produce_garbage(bootstrap: &str, topic: &str, count: usize) -> anyhow::Result<()> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    for i in 0..count {
        let key = format!("garbage-{i}");
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload("not avro at all"),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// Output records by event id: (value, `sluice-redriven-by`, `sluice-redrive-id`, origin offset header).
type Delivered = BTreeMap<String, Vec<(Value, Option<String>, Option<String>, Option<String>)>>;

fn delivered(bootstrap: &str, topic: &str) -> anyhow::Result<Delivered> {
    let schemas = schemas();
    let mut out = Delivered::new();
    for record in read_all(bootstrap, topic, Duration::from_secs(30))? {
        let (_, json) = schemas.decode_to_json(&record.value)?;
        let value: Value = serde_json::from_slice(&json)?;
        let id = value["event_id"].as_str().context("event_id")?.to_string();
        out.entry(id).or_default().push((
            value,
            record.header("sluice-redriven-by"),
            record.header("sluice-redrive-id"),
            record.header("sluice-origin-offset"),
        ));
    }
    Ok(out)
}

/// Wait until the host's stage runs store version `version` of `tagger`.
async fn wait_running(sluice: &Sluice, version: u64) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for _ in 0..300 {
        let plugins: Value = client
            .get(format!("{}/admin/plugins", sluice.url))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .json()
            .await?;
        let running = plugins
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["name"] == "tagger")
            .flat_map(|p| p["hosts"].as_array().cloned().unwrap_or_default())
            .any(|h| h["version"].as_u64() == Some(version));
        if running {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the stage never ran tagger v{version}\n{}", sluice.log())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_lettered_batch_is_listed_by_reason_and_redriven_after_a_fix() -> anyhow::Result<()>
{
    plugins_built(&["fixture-panic", "fixture-add-field"])?;
    let broker = Broker::shared();
    let prefix = sluice_tests::unique("dlq");
    let t = Topics {
        input: format!("{prefix}.in"),
        output: format!("{prefix}.out"),
        dlq: format!("{prefix}.dlq"),
        store: format!("{prefix}.plugins"),
        group: format!("{prefix}.group"),
    };
    broker.create_topic(&t.input, 3)?;
    broker.create_topic(&t.output, 3)?;
    broker.create_topic(&t.dlq, 2)?;
    let plugins = TempDir::new("dlq-plugins");
    std::fs::write(plugins.path().join("tagger.wasm"), dist("fixture-panic"))?;
    let port = free_port();
    let sluice = Sluice::start(&config(&broker.bootstrap(), port, plugins.path(), &t), port)?;
    let bootstrap = broker.bootstrap();

    // v0 panics on every fifth event: those are dead-lettered, the rest delivered.
    let inputs = events();
    let poisoned: Vec<String> = (0..TOTAL)
        .filter(|i| poison(*i))
        .map(|i| {
            inputs[i]["event_id"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    produce_events(&bootstrap, &t.input, &inputs).await?;
    produce_garbage(&bootstrap, &t.input, GARBAGE).await?;
    let dead = poisoned.len() + GARBAGE;
    wait_until(Duration::from_secs(90), "the dead letters", || {
        topic_size(&bootstrap, &t.dlq).ok() == Some(dead as i64)
            && topic_size(&bootstrap, &t.output).ok() == Some((TOTAL - poisoned.len()) as i64)
    })
    .with_context(|| sluice.log())?;

    // List: grouped by reason, most frequent first.
    let list = dlq_json(&sluice, ALICE, &["list", "s", "--json", "--limit", "1000"])?;
    println!("dlq list groups: {}", list["groups"]);
    assert_eq!(list["matched"], dead, "{list}");
    assert_eq!(list["entries"].as_array().map(Vec::len), Some(dead));
    let groups = list["groups"].as_array().context("groups")?;
    assert_eq!(groups.len(), 2, "one reason per plugin: {list}");
    assert_eq!(groups[0]["plugin"], "tagger");
    assert_eq!(groups[0]["count"], poisoned.len());
    assert_eq!(groups[1]["plugin"], "(host)");
    assert_eq!(groups[1]["count"], GARBAGE);
    assert!(
        groups[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot decode record")),
        "{list}"
    );
    let (ok, table, stderr) = dlq(&sluice, Some(ALICE), &["list", "s"])?;
    assert!(ok, "{stderr}");
    println!("{table}");
    assert!(
        table.contains(&format!("{} dead letters matched of {dead} read", dead)),
        "{table}"
    );
    assert!(
        table.contains("COUNT") && table.contains(&format!("{:>7}  tagger", poisoned.len())),
        "{table}"
    );
    let filtered = dlq_json(
        &sluice,
        ALICE,
        &["list", "s", "--json", "--plugin", "tagger", "--limit", "5"],
    )?;
    assert_eq!(filtered["matched"], poisoned.len());
    assert_eq!(filtered["entries"].as_array().map(Vec::len), Some(5));
    assert_eq!(filtered["truncated"], true);
    let by_error = dlq_json(
        &sluice,
        ALICE,
        &["list", "s", "--json", "--error", "CANNOT DECODE"],
    )?;
    assert_eq!(by_error["matched"], GARBAGE);

    // Show: headers and the decoded value.
    let first = &filtered["entries"][0];
    let (p, o) = (first["partition"].to_string(), first["offset"].to_string());
    let shown = dlq_json(&sluice, ALICE, &["show", "s", &p, &o])?;
    assert_eq!(shown["plugin"], "tagger");
    assert_eq!(shown["origin"]["topic"], t.input.as_str());
    assert_eq!(
        shown["value"]["attributes"]["note"], "please panic",
        "{shown}"
    );
    let id = shown["value"]["event_id"].as_str().context("event_id")?;
    assert!(poisoned.iter().any(|p| p == id), "{shown}");
    assert!(
        shown["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|h| h[0] == "sluice-error" && h[1] == shown["error"]),
        "{shown}"
    );

    // The fix: tagger v1 keeps everything (and marks attributes.v = "2").
    let pushed = reqwest::Client::new()
        .put(format!("{}/admin/plugins/tagger", sluice.url))
        .bearer_auth(TOKEN)
        .body(dist("fixture-add-field"))
        .send()
        .await?;
    assert_eq!(pushed.status(), 201, "{}", pushed.text().await?);
    wait_running(&sluice, 1).await?;

    let redrive = dlq_json(&sluice, ALICE, &["redrive", "s", "--plugin", "tagger"])?;
    println!("dlq redrive: {redrive}");
    assert_eq!(redrive["by"], "alice");
    assert_eq!(redrive["selected"], poisoned.len());
    assert_eq!(redrive["redriven"], poisoned.len());
    assert_eq!(redrive["not_redriven"], json!([]));
    let redrive_id = redrive["redrive_id"].as_str().context("id")?.to_string();

    // Every event once in the output, none lost; the redriven ones through
    // the fix, saying who redrove them.
    wait_until(Duration::from_secs(60), "the redriven events", || {
        topic_size(&bootstrap, &t.output).ok() == Some(TOTAL as i64)
    })
    .with_context(|| sluice.log())?;
    let out = delivered(&bootstrap, &t.output)?;
    let duplicates = out.values().filter(|v| v.len() > 1).count();
    let lost = inputs
        .iter()
        .filter(|e| !out.contains_key(e["event_id"].as_str().unwrap_or_default()))
        .count();
    println!(
        "dlq redrive: events={TOTAL} dead_lettered={} redriven={} delivered={} duplicates={duplicates} lost={lost}",
        poisoned.len(),
        redrive["redriven"],
        out.len()
    );
    assert_eq!((out.len(), duplicates, lost), (TOTAL, 0, 0));
    for id in &poisoned {
        let (value, by, rid, origin) = &out[id][0];
        assert_eq!(value["attributes"]["v"], "2", "{id} went through the fix");
        assert_eq!(by.as_deref(), Some("alice"), "{id}");
        assert_eq!(rid.as_deref(), Some(redrive_id.as_str()), "{id}");
        assert!(origin.is_some(), "{id} keeps its origin headers");
    }
    let redriven_headers = out.values().filter(|v| v[0].1.is_some()).count();
    assert_eq!(
        redriven_headers,
        poisoned.len(),
        "only redriven events carry the header"
    );
    assert_eq!(
        topic_size(&bootstrap, &t.dlq)?,
        dead as i64,
        "nothing failed again"
    );
    let metric = sluice_tests::delivery::metric(
        &sluice.url,
        "sluice_dlq_redriven_total",
        &[("by", "alice")],
    )
    .await?;
    assert_eq!(metric, poisoned.len() as f64);

    // A redriven record that fails again (an undecodable one) is dead-lettered
    // again with its redrive headers: listed with who redrove it.
    let garbage = dlq_json(
        &sluice,
        TOKEN,
        &["list", "s", "--json", "--plugin", "(host)"],
    )?;
    let g = &garbage["entries"][0];
    let record = format!("{}:{}", g["partition"], g["offset"]);
    let again = dlq_json(&sluice, TOKEN, &["redrive", "s", "--record", &record])?;
    assert_eq!(
        (again["redriven"].as_u64(), again["by"].as_str()),
        (Some(1), Some("admin"))
    );
    wait_until(Duration::from_secs(30), "the record to fail again", || {
        topic_size(&bootstrap, &t.dlq).ok() == Some(dead as i64 + 1)
    })?;
    let relisted = dlq_json(
        &sluice,
        TOKEN,
        &["list", "s", "--json", "--plugin", "(host)"],
    )?;
    let refailed: Vec<&Value> = relisted["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["redriven_by"] == "admin")
        .collect();
    assert_eq!(refailed.len(), 1, "{relisted}");
    assert_eq!(refailed[0]["redrive_id"], again["redrive_id"]);

    // --through runs a named store version first (here the fix itself).
    let through = dlq_json(
        &sluice,
        ALICE,
        &[
            "redrive",
            "s",
            "--record",
            &format!("{p}:{o}"),
            "--through",
            "tagger@v1",
        ],
    )?;
    assert_eq!(through["redriven"], 1, "{through}");
    let versions = through["through"].as_array().context("through")?;
    assert!(
        versions.len() == 1
            && versions[0]
                .as_str()
                .is_some_and(|v| v.starts_with("tagger@v1-")),
        "{through}"
    );
    wait_until(
        Duration::from_secs(30),
        "the event through the named version",
        || topic_size(&bootstrap, &t.output).ok() == Some(TOTAL as i64 + 1),
    )?;
    assert_eq!(delivered(&bootstrap, &t.output)?[id].len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letter_routes_want_a_token_a_known_stage_and_a_selection() -> anyhow::Result<()> {
    plugins_built(&["fixture-panic"])?;
    let broker = Broker::shared();
    let prefix = sluice_tests::unique("dlq-auth");
    let t = Topics {
        input: format!("{prefix}.in"),
        output: format!("{prefix}.out"),
        dlq: format!("{prefix}.dlq"),
        store: format!("{prefix}.plugins"),
        group: format!("{prefix}.group"),
    };
    broker.create_topic(&t.input, 1)?;
    broker.create_topic(&t.output, 1)?;
    let plugins = TempDir::new("dlq-plugins");
    std::fs::write(plugins.path().join("tagger.wasm"), dist("fixture-panic"))?;
    let port = free_port();
    let sluice = Sluice::start(&config(&broker.bootstrap(), port, plugins.path(), &t), port)?;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", sluice.url);

    // 401 without a token or with a wrong one; the CLI says so.
    let anonymous = client.get(url("/admin/dlq/s")).send().await?;
    assert_eq!(anonymous.status(), 401);
    let wrong = client
        .get(url("/admin/dlq/s"))
        .bearer_auth("nope")
        .send()
        .await?;
    assert_eq!(wrong.status(), 401);
    let (ok, _, stderr) = dlq(&sluice, None, &["list", "s"])?;
    assert!(!ok && stderr.contains("401"), "{stderr}");

    // A dead-letter topic nobody wrote yet lists empty.
    let empty: Value = client
        .get(url("/admin/dlq/s"))
        .bearer_auth(ALICE)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        (empty["matched"].as_u64(), empty["scanned"].as_u64()),
        (Some(0), Some(0)),
        "{empty}"
    );

    // 404 for a stage the host does not have, naming the ones it has.
    for response in [
        client
            .get(url("/admin/dlq/nope"))
            .bearer_auth(TOKEN)
            .send()
            .await?,
        client
            .get(url("/admin/dlq/nope/0/0"))
            .bearer_auth(TOKEN)
            .send()
            .await?,
        client
            .post(url("/admin/dlq/nope/redrive"))
            .bearer_auth(TOKEN)
            .json(&json!({"all": true}))
            .send()
            .await?,
    ] {
        assert_eq!(response.status(), 404);
        let body: Value = response.json().await?;
        assert_eq!(body["error"], "unknown_stage");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("stages: s")),
            "{body}"
        );
    }
    let missing = client
        .get(url("/admin/dlq/s/0/12345"))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await?["error"], "not_found");

    // 400 for a body that selects nothing, several ways, or is not JSON,
    // for a `through` plugin that is not there, and for a bad query.
    for body in [
        json!({}),
        json!({"all": true, "plugin": "tagger"}),
        json!({"records": []}),
        json!({"all": true, "colour": "blue"}),
        json!({"all": true, "through": ["nope@v9"]}),
        json!({"all": true, "through": ["tagger@v3"]}),
    ] {
        let response = client
            .post(url("/admin/dlq/s/redrive"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let answer: Value = response.json().await?;
        println!("redrive {body} → {status} {answer}");
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"], "invalid_request");
        assert!(answer["message"].is_string());
    }
    let not_json = client
        .post(url("/admin/dlq/s/redrive"))
        .bearer_auth(TOKEN)
        .body("all")
        .send()
        .await?;
    assert_eq!(not_json.status(), 400);
    let bad_limit = client
        .get(url("/admin/dlq/s?limit=0"))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    assert_eq!(bad_limit.status(), 400);
    let bad_query = client
        .get(url("/admin/dlq/s?limit=x"))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    assert_eq!(bad_query.status(), 400);
    assert_eq!(bad_query.json::<Value>().await?["error"], "invalid_query");
    Ok(())
}
