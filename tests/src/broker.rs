//! A real single-node Apache Kafka 4.x broker (KRaft, combined broker and
//! controller) for the integration tests and benchmarks.
//!
//! Its jars come from `scripts/install-kafka.sh` (Maven Central, cached under
//! `~/.cache/sluice/kafka/<version>/libs`); `SLUICE_KAFKA_LIBS` overrides the
//! directory, `SLUICE_JAVA` the `java` binary (Java 17 or newer).
//!
//! [`Broker::start`] gives a test a broker of its own (for tests that stop,
//! restart or pause it); [`Broker::shared`] gives every test of one test
//! binary the same broker, so those tests must use unique topic and group
//! names ([`unique`]). No JVM outlives its test process: each one has a
//! watchdog process that kills it when the test process's end of a pipe
//! closes, which happens however the test process ends (panic, exit, SIGKILL).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::{TempDir, free_port};

/// The Kafka version `scripts/install-kafka.sh` installs by default.
pub const KAFKA_VERSION: &str = "4.4.0";

/// Directory of the broker's jars.
pub fn kafka_libs() -> PathBuf {
    if let Some(path) = std::env::var_os("SLUICE_KAFKA_LIBS") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("SLUICE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default()
                .join(".cache/sluice")
        });
    let version = std::env::var("SLUICE_KAFKA_VERSION").unwrap_or_else(|_| KAFKA_VERSION.into());
    cache.join("kafka").join(version).join("libs")
}

fn java() -> String {
    std::env::var("SLUICE_JAVA").unwrap_or_else(|_| "java".into())
}

/// A name unique in this test process: `prefix` plus a counter and the pid.
/// Tests on the shared broker name their topics and groups with it.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A running JVM and the watchdog that kills it if this process dies.
struct Jvm {
    java: Child,
    watchdog: Watchdog,
}

/// A `sh` process blocked reading a pipe whose write end only this process
/// holds (Rust creates pipes close-on-exec, so no other child inherits it).
/// When this process ends in any way, SIGKILL included, the pipe closes and
/// the watchdog SIGKILLs `pid`. Disarm it before reaping `pid` (until then
/// the pid cannot be reused: it is our unreaped child).
pub(crate) struct Watchdog {
    sh: Child,
    _lifeline: ChildStdin,
}

impl Watchdog {
    pub(crate) fn guard(pid: u32) -> anyhow::Result<Self> {
        Self::guard_and_remove(pid, None)
    }

    /// [`Watchdog::guard`], and after the kill remove `dir` (unless
    /// `SLUICE_KEEP_TMP` is set): the shared broker is never dropped, so
    /// this is what cleans up its data directory when the test binary exits.
    pub(crate) fn guard_and_remove(pid: u32, dir: Option<&Path>) -> anyhow::Result<Self> {
        let remove = match dir {
            Some(dir) if std::env::var_os("SLUICE_KEEP_TMP").is_none() => {
                format!("; sleep 1; rm -rf '{}'", dir.display())
            }
            _ => String::new(),
        };
        let mut sh = Command::new("sh")
            .args([
                "-c",
                &format!("read -r _ || true; kill -9 {pid} 2>/dev/null{remove}; exit 0"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start a watchdog process")?;
        let lifeline = sh.stdin.take().context("watchdog stdin")?;
        Ok(Self {
            sh,
            _lifeline: lifeline,
        })
    }

    pub(crate) fn disarm(mut self) {
        let _ = self.sh.kill();
        let _ = self.sh.wait();
    }
}

/// A Kafka broker process with its data and log in a temp dir. Killed on
/// drop; its log is printed when a test that owns it panics.
pub struct Broker {
    port: u16,
    controller_port: u16,
    dir: TempDir,
    jvm: Option<Jvm>,
}

impl Broker {
    /// Format and start a fresh broker on free loopback ports, and wait until
    /// it answers a metadata request.
    pub fn start() -> anyhow::Result<Self> {
        let libs = kafka_libs();
        if !libs.join("..").join(".complete").is_file()
            && std::env::var_os("SLUICE_KAFKA_LIBS").is_none()
        {
            bail!(
                "Kafka jars not found at {}; run `bash scripts/install-kafka.sh` (or set SLUICE_KAFKA_LIBS)",
                libs.display()
            );
        }
        // A free port is bound and released, so another process (the other
        // test runner starts brokers and hosts too) can take it before the
        // JVM binds it: start again on fresh ports when that happens.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut broker = Self {
                port: free_port(),
                controller_port: free_port(),
                dir: TempDir::new("kafka"),
                jvm: None,
            };
            broker.write_config()?;
            broker.format()?;
            match broker.launch() {
                Ok(()) => return Ok(broker),
                Err(e) if attempt < 3 && format!("{e:#}").contains("Address already in use") => {
                    eprintln!("kafka: a port was taken before the broker bound it; new ports");
                    broker.stop();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The broker shared by every test of this test binary, started on first
    /// use. Tests on it must use unique topic and group names ([`unique`]);
    /// the returned handle prints the end of the broker's log if the test
    /// holding it panics.
    pub fn shared() -> SharedBroker {
        static SHARED: OnceLock<Result<Broker, String>> = OnceLock::new();
        match SHARED.get_or_init(|| Broker::start().map_err(|e| format!("{e:#}"))) {
            Ok(broker) => SharedBroker(broker),
            Err(e) => panic!("the shared Kafka broker did not start: {e}"),
        }
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn write_config(&self) -> anyhow::Result<()> {
        let dir = self.dir.path();
        let data = dir.join("data");
        let (port, cport) = (self.port, self.controller_port);
        let properties = format!(
            "\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{cport}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
# Transactions a killed or stalled client left open are aborted after their
# timeout; the broker looks for them every 10 s by default.
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=33554432
log.cleaner.backoff.ms=1000
# A restart after SIGKILL waits for the old incarnation's session to expire
# before the broker registers again (default 9 s).
broker.session.timeout.ms=2000
broker.heartbeat.interval.ms=500
",
            data = data.display()
        );
        std::fs::write(dir.join("server.properties"), properties)?;
        let log4j = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="file" fileName="{log}" append="true">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <!-- The config dumps (thousands of lines per start) say nothing a test needs. -->
    <Logger name="org.apache.kafka.common.config.AbstractConfig" level="WARN"/>
    <Logger name="kafka.server.KafkaConfig" level="WARN"/>
    <Logger name="kafka.log.LogCleaner" level="INFO"/>
    <Root level="INFO"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
"#,
            log = dir.join("server.log").display()
        );
        std::fs::write(dir.join("log4j2.xml"), log4j)?;
        Ok(())
    }

    fn classpath() -> String {
        format!("{}/*", kafka_libs().display())
    }

    fn format(&self) -> anyhow::Result<()> {
        let dir = self.dir.path();
        // Any URL-safe base64 of 16 random bytes is a valid cluster id
        // (what `StorageTool random-uuid` prints); no extra JVM start.
        let raw = crate::rand_suffix()
            ^ (u128::from(self.port) << 64)
            ^ (u128::from(std::process::id()) << 96)
            | 1 << 127;
        let cluster_id = base64_url(&raw.to_be_bytes());
        let output = Command::new(java())
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                dir.join("log4j2.xml").display()
            ))
            .args([
                "-Xmx128m",
                "-cp",
                &Self::classpath(),
                "kafka.tools.StorageTool",
            ])
            .args(["format", "-t", &cluster_id, "-c"])
            .arg(dir.join("server.properties"))
            .output()
            .context("cannot run java (Java 17 or newer is needed; SLUICE_JAVA overrides it)")?;
        if !output.status.success() {
            bail!(
                "kafka-storage format failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        let dir = self.dir.path().to_path_buf();
        let dir = dir.as_path();
        let started = Instant::now();
        // Readiness looks for this start's "Kafka Server started" only.
        let log_start = std::fs::metadata(dir.join("server.log")).map_or(0, |m| m.len() as usize);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("stdout.log"))?;
        let java = Command::new(java())
            .current_dir(dir)
            .args([
                "-Xms64m",
                "-Xmx384m",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                // Two cores shared by several JVMs and compilers.
                "-XX:ParallelGCThreads=1",
                "-XX:ConcGCThreads=1",
                "-XX:CICompilerCount=2",
                "-XX:TieredStopAtLevel=1",
                "-Xss512k",
                "-Djava.awt.headless=true",
            ])
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                dir.join("log4j2.xml").display()
            ))
            .args(["-cp", &Self::classpath(), "kafka.Kafka"])
            .arg(dir.join("server.properties"))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("cannot start the Kafka broker (java)")?;
        // If this process dies, the watchdog kills the JVM.
        let watchdog = Watchdog::guard_and_remove(java.id(), Some(dir))?;
        self.jvm = Some(Jvm { java, watchdog });
        self.wait_ready(log_start, Duration::from_secs(120))?;
        let line = format!(
            "kafka {} ready on {} after {:.1} s",
            KAFKA_VERSION,
            self.bootstrap(),
            started.elapsed().as_secs_f64()
        );
        eprintln!("{line}");
        let _ = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("stdout.log"))
            .and_then(|mut f| writeln!(f, "{line}"));
        Ok(())
    }

    /// Ready means a metadata request is answered with this broker in it;
    /// an open port is not enough (the socket is bound before requests are
    /// served).
    fn wait_ready(&mut self, log_start: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("socket.connection.setup.timeout.ms", "1000")
            .set("reconnect.backoff.max.ms", "200")
            .set("log_level", "0")
            .create()?;
        loop {
            if let Some(jvm) = self.jvm.as_mut()
                && let Some(status) = jvm.java.try_wait()?
            {
                bail!(
                    "the Kafka broker exited ({status}) before it was ready:\n{}",
                    self.log_tail(60)
                );
            }
            if let Ok(metadata) = consumer.fetch_metadata(None, Duration::from_millis(500))
                && !metadata.brokers().is_empty()
                && self.started_since(log_start)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the Kafka broker was not ready after {timeout:?}:\n{}",
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn started_since(&self, offset: usize) -> bool {
        std::fs::read(self.dir.path().join("server.log"))
            .map(|log| {
                log.get(offset..)
                    .is_some_and(|new| new.windows(20).any(|w| w == b"Kafka Server started"))
            })
            .unwrap_or(false)
    }

    /// Kill the broker process (SIGKILL; data stays on disk).
    pub fn stop(&mut self) {
        if let Some(mut jvm) = self.jvm.take() {
            let _ = jvm.java.kill();
            jvm.watchdog.disarm();
            let _ = jvm.java.wait();
        }
    }

    /// Start it again on the same ports with the same data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.launch()
    }

    /// Create a topic with `partitions` partitions and wait until every
    /// partition has a leader.
    pub fn create_topic(&self, name: &str, partitions: u32) -> anyhow::Result<()> {
        self.create_topic_with(name, partitions, &[])
    }

    /// [`Broker::create_topic`] with topic configs, e.g.
    /// `("cleanup.policy", "compact")`.
    pub fn create_topic_with(
        &self,
        name: &str,
        partitions: u32,
        configs: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        create_topic(&self.bootstrap(), name, partitions, configs)
    }

    /// Freeze the broker process (SIGSTOP): connections stay open and
    /// nothing is answered, like a hung broker or a network partition.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("-STOP")
    }

    /// Let a paused broker run again (SIGCONT).
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let jvm = self.jvm.as_ref().context("the broker is not running")?;
        let pid = jvm.java.id();
        let status = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .context("cannot run kill")?;
        if !status.success() {
            bail!("kill {signal} {pid} failed");
        }
        Ok(())
    }

    /// The broker's log so far (every start, at INFO, config dumps left out).
    pub fn log(&self) -> String {
        let dir = self.dir.path();
        let mut log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        if let Ok(out) = std::fs::read_to_string(dir.join("stdout.log"))
            && !out.trim().is_empty()
        {
            log.push_str("--- stdout/stderr ---\n");
            log.push_str(&out);
        }
        log
    }

    /// The last `lines` lines of [`Broker::log`].
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The broker's data directory (`log.dirs`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- kafka log ---\n{}", self.log_tail(400));
        }
    }
}

/// The per-binary shared broker as one test holds it: derefs to [`Broker`],
/// prints the end of its log if the test panics.
pub struct SharedBroker(&'static Broker);

impl std::ops::Deref for SharedBroker {
    type Target = Broker;
    fn deref(&self) -> &Broker {
        self.0
    }
}

impl Drop for SharedBroker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- kafka log (shared broker, last 200 lines) ---\n{}",
                self.0.log_tail(200)
            );
        }
    }
}

/// Create `name` on the broker at `bootstrap` with the admin client, then
/// wait until its metadata shows every partition with a leader.
pub fn create_topic(
    bootstrap: &str,
    name: &str,
    partitions: u32,
    configs: &[(&str, &str)],
) -> anyhow::Result<()> {
    let admin = admin(bootstrap)?;
    let mut topic = NewTopic::new(name, partitions as i32, TopicReplication::Fixed(1));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = block_on(admin.create_topics([&topic], &options))??;
    for result in results {
        if let Err((topic, code)) = result {
            bail!("creating topic {topic}: {code}");
        }
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metadata = consumer.fetch_metadata(Some(name), Duration::from_secs(5))?;
        let ready = metadata.topics().iter().any(|t| {
            t.error().is_none()
                && t.partitions().len() == partitions as usize
                && t.partitions()
                    .iter()
                    .all(|p| p.leader() >= 0 && p.error().is_none())
        });
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("topic {name} has no leader for every partition after 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait for an admin-client future from sync and async tests alike: on a
/// thread of its own, outside any runtime.
fn block_on<F: std::future::Future + Send>(future: F) -> anyhow::Result<F::Output>
where
    F::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> anyhow::Result<F::Output> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                Ok(runtime.block_on(future))
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the admin-client thread panicked"))?
    })
}

fn admin(bootstrap: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?)
}

/// The configs of `topic` as the broker describes them (defaults included).
pub fn topic_configs(
    bootstrap: &str,
    topic: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let admin = admin(bootstrap)?;
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let results = block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &options))??;
    let mut out = std::collections::BTreeMap::new();
    for result in results {
        let resource = result.map_err(|code| anyhow::anyhow!("describing {topic}: {code}"))?;
        for entry in resource.entries {
            if let Some(value) = entry.value {
                out.insert(entry.name, value);
            }
        }
    }
    Ok(out)
}

/// Set the dynamic configs of `topic` to `configs` (AlterConfigs replaces
/// every dynamic config of the topic, so pass all that should stay).
pub fn alter_topic_configs(
    bootstrap: &str,
    topic: &str,
    configs: &[(&str, &str)],
) -> anyhow::Result<()> {
    let admin = admin(bootstrap)?;
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for (key, value) in configs {
        alter = alter.set(key, value);
    }
    for result in block_on(admin.alter_configs([&alter], &options))?? {
        result.map_err(|(_, code)| anyhow::anyhow!("altering {topic}: {code}"))?;
    }
    Ok(())
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}
