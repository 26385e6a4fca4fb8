//! Test harness for Sluice's integration tests: a real Apache Kafka broker
//! process on free loopback ports ([`broker`]), the real `sluice` binary, and
//! helpers to read topics back. Nothing here mocks Kafka.
//!
//! The broker's jars come from `scripts/install-kafka.sh` (cached under
//! `~/.cache/sluice/kafka`). The `sluice` binary is the release build next
//! to the test executable; `SLUICE_BIN` overrides it.

pub mod apicurio;
pub mod broker;
pub mod browser;
pub mod delivery;
pub mod kstreams;
pub mod pipeline;
pub mod postgres;
pub mod python;
pub mod sink_bench;

pub use broker::{Broker, SharedBroker, alter_topic_configs, create_topic, topic_configs, unique};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral loopback port")
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Create one named after `label`.
    pub fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "sluice-{label}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ rand_suffix()
        ));
        std::fs::create_dir_all(&path).expect("creating a temp dir");
        Self(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("SLUICE_KEEP_TMP").is_some() {
            eprintln!("kept {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn wait_for_port(port: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nothing listens on 127.0.0.1:{port} after {timeout:?}")
}

/// Path of the `sluice` binary under test.
pub fn sluice_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("SLUICE_BIN") {
        return PathBuf::from(path);
    }
    // Test executables live in target/<profile>/deps, binaries such as
    // sluice-bench in target/<profile>: look next to the exe, then one up.
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe directory");
    [dir.join("sluice"), dir.join("../sluice")]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "sluice binary not found next to {}: build it first with \
                 `cargo build --release -p sluice-host` (scripts/test.sh does), or set SLUICE_BIN",
                exe.display()
            )
        })
}

/// Path of a file in the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// A running `sluice run` process with its config in a temp dir. Killed on
/// drop; its log is kept in the temp dir and printed if a test fails.
pub struct Sluice {
    child: Option<Child>,
    /// Kills the host if the test process dies (see [`broker::Watchdog`]).
    watchdog: Option<broker::Watchdog>,
    dir: TempDir,
    config: PathBuf,
    /// Base URL of its HTTP listener, e.g. `http://127.0.0.1:41234`.
    pub url: String,
}

/// `config` with `{schemas}` and `{plugins}` replaced by the repository's
/// schema and built-plugin directories.
pub fn resolve_config(config: &str) -> String {
    config
        .replace("{schemas}", &repo_path("schemas").display().to_string())
        .replace(
            "{plugins}",
            &repo_path("plugins/dist").display().to_string(),
        )
}

impl Sluice {
    /// Write `config` (with `{schemas}` and `{plugins}` replaced by the
    /// repository's directories) and start `sluice run` on it. `port` is the
    /// HTTP port the config listens on.
    pub fn start(config: &str, port: u16) -> anyhow::Result<Self> {
        let dir = TempDir::new("host");
        let config_path = dir.path().join("sluice.toml");
        std::fs::write(&config_path, resolve_config(config))?;
        let mut sluice = Self {
            child: None,
            watchdog: None,
            dir,
            config: config_path,
            url: format!("http://127.0.0.1:{port}"),
        };
        sluice.spawn()?;
        wait_for_port(port, Duration::from_secs(60)).with_context(|| sluice.log())?;
        Ok(sluice)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = sluice_bin();
        if !bin.is_file() {
            bail!(
                "sluice binary not found at {}; build it with `cargo build --release -p sluice-host`",
                bin.display()
            );
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("sluice.log"))?;
        let child = Command::new(bin)
            .args(["run", "-c"])
            .arg(&self.config)
            .env(
                "SLUICE_LOG",
                std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "info,rdkafka=warn".into()),
            )
            // A log file, read by tests: fields as `key=value`, no colours.
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start sluice")?;
        self.watchdog = Some(broker::Watchdog::guard(child.id())?);
        self.child = Some(child);
        Ok(())
    }

    /// Start `sluice run` on one of the repository's example configs
    /// (`examples/NAME/sluice.toml`), moved to a free port and pointed at the
    /// repository's schema and plugin directories.
    pub fn start_example(name: &str) -> anyhow::Result<Self> {
        let port = free_port();
        let config = std::fs::read_to_string(repo_path(&format!("examples/{name}/sluice.toml")))?
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
            .replace("../../schemas", "{schemas}")
            .replace("../../plugins/dist", "{plugins}");
        Self::start(&config, port)
    }

    /// Send SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            if let Some(watchdog) = self.watchdog.take() {
                watchdog.disarm();
            }
            let _ = child.wait();
        }
    }

    /// Stop the process where it is (SIGSTOP), as a host stalled by a long
    /// pause or a frozen VM would be.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("-STOP")
    }

    /// Let a paused process run again (SIGCONT).
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("not running")?;
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill {signal} failed: {status}");
        }
        Ok(())
    }

    /// Send SIGTERM and wait for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("not running")?;
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()?;
        let deadline = Instant::now() + timeout;
        // It exits by itself now; the watchdog goes before try_wait reaps
        // the child (after that its pid could be reused).
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.disarm();
        }
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("sluice did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The process log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sluice.log")).unwrap_or_default()
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- sluice log ---\n{}", self.log());
        }
    }
}

/// A record read back from Kafka.
#[derive(Debug, Clone)]
pub struct Consumed {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Vec<u8>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Record timestamp, epoch milliseconds.
    pub timestamp: Option<i64>,
}

impl Consumed {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// A group-less reader of `topic` and the topic's partition ids.
fn topic_reader(bootstrap: &str, topic: &str) -> anyhow::Result<(BaseConsumer, Vec<i32>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "sluice-test-reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        bail!("topic {topic} has no partitions");
    }
    Ok((consumer, partitions))
}

/// How many records `topic` holds: the sum over partitions of high minus
/// low watermark. Cheap, unlike reading them.
pub fn topic_size(bootstrap: &str, topic: &str) -> anyhow::Result<i64> {
    let (consumer, partitions) = topic_reader(bootstrap, topic)?;
    let mut total = 0;
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        total += high - low;
    }
    Ok(total)
}

/// Read every record `topic` holds now: each partition up to the high
/// watermark it had when this started. Fails after `timeout`.
pub fn read_all(bootstrap: &str, topic: &str, timeout: Duration) -> anyhow::Result<Vec<Consumed>> {
    let (consumer, partitions) = topic_reader(bootstrap, topic)?;
    let mut remaining = 0i64;
    let mut highs = std::collections::HashMap::new();
    let mut lows = std::collections::HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        remaining += high - low;
        highs.insert(p, high);
        lows.insert(p, low);
        assignment.add_partition_offset(topic, p, Offset::Offset(low))?;
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::with_capacity(remaining as usize);
    // Done when every partition's position reached its high watermark; a
    // compacted topic has gaps, so counting records is not enough.
    let done = |consumer: &BaseConsumer| -> bool {
        consumer.position().is_ok_and(|positions| {
            highs.iter().all(|(p, high)| {
                positions
                    .find_partition(topic, *p)
                    .is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o >= *high))
                    || lows.get(p) == Some(high)
            })
        })
    };
    while (out.len() as i64) < remaining && !done(&consumer) {
        if Instant::now() > deadline {
            bail!(
                "read {} of {remaining} records of {topic} within {timeout:?}",
                out.len()
            );
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) if m.offset() < highs.get(&m.partition()).copied().unwrap_or(0) => {
                out.push(consumed(&m))
            }
            Some(Ok(_)) | None => {}
            Some(Err(e)) => bail!("reading {topic}: {e}"),
        }
    }
    out.sort_by_key(|c| (c.partition, c.offset));
    Ok(out)
}

fn consumed(m: &rdkafka::message::BorrowedMessage<'_>) -> Consumed {
    Consumed {
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers: m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        timestamp: m.timestamp().to_millis(),
    }
}

/// Read every record of `topic` from the beginning until `expected` arrived
/// or nothing new came for `idle`; returns them in per-partition offset order.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    idle: Duration,
) -> anyhow::Result<Vec<Consumed>> {
    let (consumer, partitions) = topic_reader(bootstrap, topic)?;
    let mut assignment = TopicPartitionList::new();
    for p in partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut out = Vec::new();
    let mut last = Instant::now();
    while out.len() < expected && last.elapsed() < idle {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                out.push(consumed(&m));
                last = Instant::now();
            }
            Some(Err(e)) => bail!("reading {topic}: {e}"),
            None => {}
        }
    }
    out.sort_by_key(|c| (c.partition, c.offset));
    Ok(out)
}

/// A telemetry event as JSON, deterministic from its index.
pub fn sample_event(i: usize, entities: usize) -> serde_json::Value {
    let severities = ["DEBUG", "INFO", "WARN", "ERROR"];
    let source = ["web", "checkout", "search"][i % 3];
    let region = ["eu", "us", "ap"][i % 3];
    serde_json::json!({
        "event_id": format!("evt-{i:07}"),
        "type": if i.is_multiple_of(3) { "login" } else { "page_view" },
        "source": source,
        "entity_id": format!("user-{}", i % entities),
        "occurred_at": 1_764_400_000_000i64 + i as i64,
        "severity": severities[i % severities.len()],
        "attributes": {"seq": i.to_string(), "region": region},
        "trace_id": if i.is_multiple_of(2) { serde_json::Value::Null } else { format!("trace-{i}").into() },
    })
}

/// Produce telemetry events to `topic`, framed exactly as ingest frames them
/// (Avro single-object encoding), keyed by entity id.
pub async fn produce_events(
    bootstrap: &str,
    topic: &str,
    events: &[serde_json::Value],
) -> anyhow::Result<()> {
    produce_events_at(bootstrap, topic, events, None).await
}

/// [`produce_events`] with an explicit Kafka timestamp (epoch ms) per event
/// when `timestamps` is given (same length as `events`).
pub async fn produce_events_at(
    bootstrap: &str,
    topic: &str,
    events: &[serde_json::Value],
    timestamps: Option<&[i64]>,
) -> anyhow::Result<()> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let schema =
        sluice::schema::LoadedSchema::from_file(&repo_path("schemas/telemetry_event.avsc"))?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()?;
    let mut deliveries = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let payload = schema.encode_json(event).map_err(anyhow::Error::msg)?;
        let key = event["entity_id"].as_str().unwrap_or_default().to_string();
        let mut record = FutureRecord::to(topic).key(&key).payload(&payload);
        if let Some(ts) = timestamps.and_then(|t| t.get(i)) {
            record = record.timestamp(*ts);
        }
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
    }
    for delivery in futures::future::join_all(deliveries).await {
        delivery?.map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// Wait until `check` returns true, polling every second, or fail after
/// `timeout` with `what` in the message.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

/// True when the plugin components exist (built by `plugins/build.sh`).
pub fn plugins_built(names: &[&str]) -> anyhow::Result<()> {
    for name in names {
        let path = repo_path(&format!("plugins/dist/{name}.wasm"));
        if !path.is_file() {
            bail!(
                "{} missing: run `bash plugins/build.sh` first",
                path.display()
            );
        }
    }
    Ok(())
}

/// The start of a host config that runs stages against `bootstrap` with its
/// admin listener on `port` and the repository's schemas and plugins; tests
/// append their `[connections]`, `[[stage]]` and other tables.
pub fn config_head(bootstrap: &str, port: u16) -> String {
    format!(
        r#"
schemas = "{{schemas}}"

[kafka]
brokers = "{bootstrap}"
[kafka.client]
"session.timeout.ms" = "8000"

[admin]
listen = "127.0.0.1:{port}"

[plugins]
dir = "{{plugins}}"
"#
    )
}

/// The offsets `group` has committed on `topic`, by partition (`-1` where it
/// committed none).
pub fn committed_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
) -> anyhow::Result<std::collections::BTreeMap<i32, i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut list = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            list.add_partition(topic, p.id());
        }
    }
    let committed = consumer.committed_offsets(list, Duration::from_secs(10))?;
    Ok(committed
        .elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(o) => o,
                _ => -1,
            };
            (e.partition(), offset)
        })
        .collect())
}

/// The consumer lag of `group` on `topic`: the sum over partitions of the
/// high watermark minus the committed offset (the low watermark where none
/// is committed).
pub fn group_lag(bootstrap: &str, group: &str, topic: &str) -> anyhow::Result<i64> {
    let committed = committed_offsets(bootstrap, group, topic)?;
    let (consumer, _) = topic_reader(bootstrap, topic)?;
    let mut lag = 0;
    for (p, offset) in committed {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        lag += high - if offset < 0 { low } else { offset };
    }
    Ok(lag)
}

/// Wait until `group` has committed everything `topic` holds (lag 0): after
/// that nothing it already read can be delivered again by a restart.
pub fn wait_caught_up(
    bootstrap: &str,
    group: &str,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    while Instant::now() < deadline {
        match group_lag(bootstrap, group, topic) {
            Ok(0) => return Ok(()),
            Ok(lag) => last = Some(lag),
            Err(e) => eprintln!("lag of {group} on {topic}: {e:#}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("group {group} still lags {last:?} records behind {topic} after {timeout:?}")
}

/// `component` with a custom section `name` of `payload_len` bytes appended:
/// wasmtime ignores it, so the plugin behaves the same under a new hash
/// (a new version for the plugin store).
pub fn with_custom_section(mut component: Vec<u8>, name: &str, payload_len: usize) -> Vec<u8> {
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name.as_bytes());
    section.extend(std::iter::repeat_n(0x5a_u8, payload_len));
    component.push(0); // custom section id
    let mut size = section.len();
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        if size == 0 {
            component.push(byte);
            break;
        }
        component.push(byte | 0x80);
    }
    component.extend_from_slice(&section);
    component
}
