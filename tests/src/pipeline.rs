//! The filter → redact → enrich pipeline of `examples/pipeline`, shared by
//! the stage and replay tests: deterministic input events, the stage config,
//! and the chain's output computed independently of the plugins.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The salt the redact plugin hashes with in [`pipeline_config`].
pub const SALT: &str = "stage-test-salt";
/// User agents and the family enrich derives from each.
pub const AGENTS: [(&str, &str); 7] = [
    (
        "Mozilla/5.0 (X11; Linux x86_64; rv:118.0) Gecko/20100101 Firefox/118.0",
        "Firefox",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
        "Chrome",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 Edg/120.0",
        "Edge",
    ),
    (
        "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15",
        "Safari",
    ),
    ("curl/8.5.0", "curl"),
    (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "bot",
    ),
    ("Lynx/2.9.0", "other"),
];

/// Input event `i`: 97 entities, every fourth one DEBUG.
pub fn event(i: usize) -> Value {
    let severities = ["DEBUG", "INFO", "WARN", "ERROR"];
    let source = ["web", "checkout", "auth", "search", "batch"][i % 5];
    let agent = AGENTS[i % AGENTS.len()].0;
    json!({
        "event_id": format!("evt-{i:06}"),
        "type": "page_view",
        "source": source,
        "entity_id": format!("user-{}", i % 97),
        "occurred_at": 1_764_400_000_000i64 + i as i64,
        "severity": severities[i % 4],
        "attributes": {
            "seq": i.to_string(),
            "email": format!("person{}@example.com", i % 97),
            "ip": format!("10.{}.{}.{}", i % 7, i % 11, i % 13),
            "user_agent": agent,
        },
        "trace_id": null,
    })
}

/// The chain of examples/pipeline computed independently of the plugins:
/// `None` when the filter drops the event.
pub fn expected(input: &Value, timestamp: i64) -> Option<Value> {
    let mut out = redacted(input)?;
    let attributes = out["attributes"].as_object_mut()?;
    let team = match input["source"].as_str()? {
        "web" => "growth",
        "checkout" => "payments",
        "auth" => "identity",
        "search" => "discovery",
        _ => "unknown",
    };
    attributes.insert("team".into(), json!(team));
    let agent = input["attributes"]["user_agent"].as_str()?;
    let family = AGENTS.iter().find(|(a, _)| *a == agent)?.1;
    attributes.insert("ua_family".into(), json!(family));
    attributes.insert("ingested_at".into(), json!(timestamp.to_string()));
    Some(out)
}

/// The first two plugins of the chain (filter, redact) computed
/// independently of the plugins: `None` when the filter drops the event.
pub fn redacted(input: &Value) -> Option<Value> {
    if input["severity"] == "DEBUG" {
        return None;
    }
    let mut out = input.clone();
    let attributes = out["attributes"].as_object_mut()?;
    for field in ["email", "ip"] {
        let value = attributes[field].as_str()?.to_string();
        let digest = Sha256::digest([SALT.as_bytes(), value.as_bytes()].concat());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        attributes.insert(field.into(), json!(format!("sha256:{}", &hex[..16])));
    }
    Some(out)
}

/// The topics and consumer group of the pipeline's stage `clean`.
#[derive(Debug, Clone)]
pub struct Names {
    /// Input topic.
    pub input: String,
    /// Output topic.
    pub output: String,
    /// Dead-letter topic.
    pub dlq: String,
    /// Consumer group.
    pub group: String,
}

impl Default for Names {
    /// `in`, `out`, `dlq` and group `sluice-clean`, for a broker of its own.
    fn default() -> Self {
        Self {
            input: "in".into(),
            output: "out".into(),
            dlq: "dlq".into(),
            group: "sluice-clean".into(),
        }
    }
}

impl Names {
    /// Names no other test of this process uses, for the shared broker.
    pub fn unique(label: &str) -> Self {
        let base = crate::unique(label);
        Self {
            input: format!("{base}.in"),
            output: format!("{base}.out"),
            dlq: format!("{base}.dlq"),
            group: format!("{base}.group"),
        }
    }

    /// Create the three topics (`partitions` each, the DLQ one).
    pub fn create(&self, broker: &crate::Broker, partitions: u32) -> anyhow::Result<()> {
        broker.create_topic(&self.input, partitions)?;
        broker.create_topic(&self.output, partitions)?;
        broker.create_topic(&self.dlq, 1)
    }
}

/// A config with stage `clean` (`in` → `out`, dead letters to `dlq`)
/// running the chain on `bootstrap`, admin on `port`.
pub fn pipeline_config(bootstrap: &str, port: u16, batch_size: usize) -> String {
    pipeline_config_named(bootstrap, port, batch_size, &Names::default())
}

/// [`pipeline_config_named`] (stage `clean`, batch 200) with HTTP ingest on
/// `port` (route `*` → the stage's input) and the admin token `token`.
pub fn ingest_pipeline_config(bootstrap: &str, port: u16, names: &Names, token: &str) -> String {
    pipeline_config_named(bootstrap, port, 200, names).replace(
        &format!("[admin]\nlisten = \"127.0.0.1:{port}\"\n"),
        &format!(
            r#"[ingest]
listen = "127.0.0.1:{port}"

[[ingest.route]]
topic = "{input}"
schema = "{{schemas}}/telemetry_event.avsc"

[admin]
token = "{token}"
"#,
            input = names.input
        ),
    )
}

/// [`pipeline_config`] on the topics and group of `names`.
pub fn pipeline_config_named(
    bootstrap: &str,
    port: u16,
    batch_size: usize,
    names: &Names,
) -> String {
    let head = crate::config_head(bootstrap, port);
    let Names {
        input,
        output,
        dlq,
        group,
    } = names;
    format!(
        r#"{head}
[[stage]]
name = "clean"
input = "{input}"
output = "{output}"
dead_letter = "{dlq}"
group = "{group}"
chain = ["filter", "redact", "enrich"]
batch_size = {batch_size}
batch_wait_ms = 20

[stage.config.filter]
mode = "drop"
rules = [{{ field = "severity", op = "equals", value = "DEBUG" }}]

[stage.config.redact]
fields = ["attributes.email", "attributes.ip"]
mode = "hash"
salt = "{SALT}"

[stage.config.enrich]
lookups = [{{ from = "source", to = "attributes.team", table = {{ web = "growth", checkout = "payments", auth = "identity", search = "discovery" }}, default = "unknown" }}]
ingest_time_to = "attributes.ingested_at"
user_agent_from = "attributes.user_agent"
user_agent_to = "attributes.ua_family"
"#
    )
}

/// POST `events` to the ingest of the host at `url` as NDJSON, in batches
/// of 500 on `client`; every batch must be accepted (202), else the error
/// names the status and the body.
pub async fn post_events(
    client: &reqwest::Client,
    url: &str,
    events: &[Value],
) -> anyhow::Result<()> {
    for chunk in events.chunks(500) {
        let body: String = chunk.iter().map(|e| format!("{e}\n")).collect();
        let response = client
            .post(format!("{url}/v1/events/batch"))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == 202,
            "ingest answered {}: {}",
            response.status(),
            response.text().await?
        );
    }
    Ok(())
}
