//! The JVM peers for the benchmarks: the Kafka Streams application of
//! `tests/kstreams` (the three rules of Sluice's benchmark chain, topic →
//! topic: what a JVM team would run instead of a Sluice stage) and Kafka's own
//! `org.apache.kafka.tools.ProducerPerformance` as a reference line.
//!
//! [`build`] runs the Maven build once per content of `tests/kstreams` (its
//! `pom.xml` and `src/`), into `~/.cache/sluice/kstreams/<hash>/`
//! (`SLUICE_CACHE` moves `~/.cache/sluice`); offline (`mvn -o`) first, so a
//! machine whose `~/.m2` holds the jars needs no network. Needs `java` (17+;
//! `SLUICE_JAVA` or `JAVA_HOME` pick another) and `mvn` (`SLUICE_MVN`).
//!
//! Every JVM started here gets a pipe as stdin and halts when it closes
//! (`Guardian.java`), so it never outlives the process that started it, even
//! one killed with SIGKILL; on drop the child is also killed and reaped.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sha2::{Digest, Sha256};

/// The JVM heap of every JVM started here.
pub const HEAP: &str = "-Xmx256m";
/// The salt of the benchmark chain's redact rule (`CHAIN_CONFIGS`).
pub const BENCH_SALT: &str = "bench";

/// The built Maven project: `sluice-kstreams.jar` and `lib/` in `dir`.
#[derive(Debug, Clone)]
pub struct KStreamsApp {
    dir: PathBuf,
    java: PathBuf,
}

/// What [`KStreamsApp::run_with`] measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// `input_records / from_first_record`, in events per second.
    pub events_per_sec: f64,
    /// Records in the input topic when the run started (sum over partitions
    /// of high − low watermark).
    pub input_records: u64,
    /// Output records seen when the run stopped (at least `expected`).
    pub output_records: u64,
    /// From the first input record reaching the rules (the JVM's clock, as
    /// it prints it) to the moment the output was seen complete here.
    pub from_first_record: Duration,
    /// From spawning the JVM to its first input record: JVM start-up, group
    /// join, task assignment (and `initTransactions` for exactly-once).
    pub startup: Duration,
    /// The rate after JIT warm-up: input records from the progress line at
    /// or past one third of the input to the end, over the time from that
    /// line to the output being complete. `None` when the input is too small
    /// for a progress line (one every 10 000 records) there.
    pub after_warmup_events_per_sec: Option<f64>,
    /// CPU time (user + system) the JVM spent from the first-record line
    /// (as read here, within ~20 ms of it) to the output being complete:
    /// on a shared machine a steadier figure than the rate. `None` where
    /// `/proc` is missing.
    pub jvm_cpu: Option<Duration>,
}

/// How to run the Kafka Streams application (see [`KStreamsApp::run_with`]).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// The input topic (framed Avro telemetry events).
    pub input: String,
    /// The output topic.
    pub output: String,
    /// How many output records make the run complete.
    pub expected: usize,
    /// `processing.guarantee=exactly_once_v2` (else `at_least_once`); output
    /// is then counted with a `read_committed` consumer.
    pub exactly_once: bool,
    /// `application.id` (its consumer group); a fresh one by default.
    pub application_id: String,
    /// The redact salt ([`BENCH_SALT`] by default).
    pub salt: String,
    /// `commit.interval.ms` (100 by default).
    pub commit_interval_ms: u64,
    /// More `RulesApp` arguments, e.g. `["--redact", "attributes.email"]`
    /// or `["--config", "linger.ms=5"]` (see `RulesApp --help`).
    pub extra_args: Vec<String>,
    /// Give up (with the JVM's stderr) after this long.
    pub timeout: Duration,
}

impl RunOptions {
    /// The defaults: the benchmark chain's rules, at-least-once, 100 ms
    /// commit interval, one stream thread, a fresh application id, 10 min.
    pub fn new(bootstrap: &str, input: &str, output: &str, expected: usize) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Self {
            bootstrap: bootstrap.to_string(),
            input: input.to_string(),
            output: output.to_string(),
            expected,
            exactly_once: false,
            application_id: format!("sluice-kstreams-{}-{nanos}", std::process::id()),
            salt: BENCH_SALT.to_string(),
            commit_interval_ms: 100,
            extra_args: Vec::new(),
            timeout: Duration::from_secs(600),
        }
    }
}

/// The outcome of the rules on one value, from [`KStreamsApp::pipe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipeOutcome {
    /// Dropped by the filter.
    Drop,
    /// The output value (the input itself when no rule changed anything).
    Value(Vec<u8>),
    /// Not a framed datum of the schema (Sluice: a dead letter).
    Error(String),
}

/// The time in `sluice-kstreams: first-record epoch_ms=N`, if `line` is that.
fn first_record_line(line: &str) -> anyhow::Result<Option<SystemTime>> {
    let Some(ms) = line.strip_prefix("sluice-kstreams: first-record epoch_ms=") else {
        return Ok(None);
    };
    let ms: u64 = ms.trim().parse().context("first-record line")?;
    Ok(Some(UNIX_EPOCH + Duration::from_millis(ms)))
}

/// `(N, T)` from `sluice-kstreams: consumed N epoch_ms=T`, if `line` is that.
fn progress_line(line: &str) -> anyhow::Result<Option<(u64, SystemTime)>> {
    let Some(rest) = line.strip_prefix("sluice-kstreams: consumed ") else {
        return Ok(None);
    };
    let (n, ms) = rest
        .split_once(" epoch_ms=")
        .context("malformed progress line")?;
    let ms: u64 = ms.trim().parse().context("progress line")?;
    Ok(Some((
        n.parse().context("progress line")?,
        UNIX_EPOCH + Duration::from_millis(ms),
    )))
}

/// `ProducerPerformance`'s summary line, parsed.
#[derive(Debug, Clone)]
pub struct PerfSummary {
    /// Records acknowledged per second over the whole run.
    pub records_per_sec: f64,
    /// Average latency (send to acknowledgement), ms.
    pub avg_latency_ms: f64,
    /// Maximum latency, ms.
    pub max_latency_ms: f64,
    /// The line itself.
    pub line: String,
}

fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("SLUICE_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".cache/sluice")
}

/// `tests/kstreams`, the Maven project.
pub fn project_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kstreams")
}

/// The telemetry schema the application decodes and encodes with.
pub fn schema_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/telemetry_event.avsc")
}

/// The fingerprint bytes Sluice writes in its frames, in hex. Passed to the
/// application as `--fingerprint`. Since issue 14 it is the standard Parsing
/// Canonical Form fingerprint, the one Java's Avro computes itself; before,
/// apache-avro 0.21's canonical form (`{"type":"long"}` for a logical-type
/// primitive) gave another value, which readers still accept.
pub fn sluice_fingerprint() -> anyhow::Result<String> {
    Ok(hex(&sluice::schema::LoadedSchema::from_file(
        &schema_path(),
    )?
    .fingerprint))
}

fn project_files(dir: &Path, relative: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let here = dir.join(relative);
    for entry in std::fs::read_dir(&here).with_context(|| format!("listing {}", here.display()))? {
        let entry = entry?;
        let path = relative.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            project_files(dir, &path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// The first 16 hex characters of SHA-256 over the project's inputs
/// (`pom.xml` and everything under `src/`, by relative path and content).
pub fn project_hash() -> anyhow::Result<String> {
    let dir = project_dir();
    let mut files = vec![PathBuf::from("pom.xml")];
    project_files(&dir, Path::new("src"), &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    for file in &files {
        let bytes = std::fs::read(dir.join(file))
            .with_context(|| format!("reading {}", dir.join(file).display()))?;
        hasher.update(file.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(hex(&hasher.finalize()[..8]))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> anyhow::Result<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        bail!("odd-length hex");
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).context("not hex"))
        .collect()
}

fn java_bin() -> PathBuf {
    if let Some(java) = std::env::var_os("SLUICE_JAVA") {
        return PathBuf::from(java);
    }
    if let Some(home) = std::env::var_os("JAVA_HOME") {
        let java = PathBuf::from(home).join("bin/java");
        if java.is_file() {
            return java;
        }
    }
    PathBuf::from("java")
}

/// Build `tests/kstreams` (once per content; see the module docs) and
/// return the application. Memoized per process.
pub fn build() -> anyhow::Result<KStreamsApp> {
    static BUILT: OnceLock<Result<KStreamsApp, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_uncached().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build_uncached() -> anyhow::Result<KStreamsApp> {
    let hash = project_hash()?;
    let root = cache_root().join("kstreams");
    let dir = root.join(&hash);
    let app = KStreamsApp {
        dir: dir.clone(),
        java: java_bin(),
    };
    if dir.join(".complete").is_file() {
        return Ok(app);
    }
    std::fs::create_dir_all(&root)?;
    let tmp = root.join(format!("{hash}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let mvn = std::env::var_os("SLUICE_MVN").unwrap_or_else(|| "mvn".into());
    let run = |offline: bool| -> anyhow::Result<std::process::Output> {
        let mut command = Command::new(&mvn);
        command.arg("-B").arg("-q");
        if offline {
            command.arg("-o");
        }
        command
            .arg("-f")
            .arg(project_dir().join("pom.xml"))
            .arg(format!("-Dkstreams.out={}", tmp.display()))
            .arg("package")
            .stdin(Stdio::null());
        command
            .output()
            .with_context(|| format!("running {mvn:?} (is Maven installed?)"))
    };
    let started = Instant::now();
    let mut output = run(true)?;
    let offline_miss = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stdout).contains("offline")
            || String::from_utf8_lossy(&o.stderr).contains("offline")
    };
    if !output.status.success() && offline_miss(&output) {
        eprintln!("kstreams: offline Maven build failed; resolving from Maven Central");
        output = run(false)?;
    }
    if !output.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        bail!(
            "mvn package of {} failed ({}):\n{}\n{}",
            project_dir().display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    for garbage in [
        "classes",
        "generated-sources",
        "maven-archiver",
        "maven-status",
    ] {
        let _ = std::fs::remove_dir_all(tmp.join(garbage));
    }
    std::fs::write(tmp.join(".complete"), format!("{hash}\n"))?;
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another process finished the same build first; use its copy.
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.join(".complete").is_file() {
            bail!("cannot move {} to {}", tmp.display(), dir.display());
        }
    }
    eprintln!(
        "kstreams: built {} in {:.1} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(app)
}

/// A JVM child: killed and reaped on drop; stdout lines arrive on `lines`,
/// stderr is kept (its last 256 KiB) for error messages.
struct Jvm {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stdout_log: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

fn keep_tail(log: &Mutex<String>, line: &str) {
    if let Ok(mut log) = log.lock() {
        log.push_str(line);
        log.push('\n');
        if log.len() > 256 * 1024 {
            let mut cut = log.len() - 128 * 1024;
            while !log.is_char_boundary(cut) {
                cut += 1;
            }
            log.drain(..cut);
        }
    }
}

impl Jvm {
    fn spawn(app: &KStreamsApp, main: &str, args: &[String]) -> anyhow::Result<Jvm> {
        let mut command = Command::new(&app.java);
        command
            .arg(HEAP)
            .arg("-Djava.awt.headless=true")
            .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn");
        if let Ok(opts) = std::env::var("SLUICE_KSTREAMS_JAVA_OPTS") {
            command.args(opts.split_whitespace());
        }
        let mut child = command
            .arg("-cp")
            .arg(app.classpath())
            .arg(main)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} (is Java 17+ installed?)", app.java.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("JVM stdout")?;
        let stderr_pipe = child.stderr.take().context("JVM stderr")?;
        let (tx, lines) = channel();
        let stdout_log = Arc::new(Mutex::new(String::new()));
        let log = stdout_log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                keep_tail(&log, &line);
                let _ = tx.send(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { break };
                keep_tail(&log, &line);
            }
        });
        Ok(Jvm {
            child,
            stdin,
            lines,
            stdout_log,
            stderr,
        })
    }

    fn output(&self) -> String {
        format!(
            "--- JVM stdout (tail) ---\n{}--- JVM stderr (tail) ---\n{}",
            self.stdout_log
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default(),
            self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
        )
    }

    /// The JVM's CPU time so far (user + system, `/proc/PID/stat` fields 14
    /// and 15, in USER_HZ = 100 ticks per second as on every Linux).
    fn cpu(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // Fields after the parenthesized command name, which may hold spaces.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(Duration::from_millis(ticks * 10))
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Close stdin (the application closes itself, then halts), wait up to
    /// `grace`, then kill.
    fn stop(&mut self, grace: Duration) {
        self.stdin.take();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Jvm {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Records in `topic` (sum over partitions of high − low watermark).
fn watermark_total(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
) -> anyhow::Result<u64> {
    let mut total = 0;
    for &p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(5))?;
        total += (high - low).max(0) as u64;
    }
    Ok(total)
}

fn partitions_of(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<i32>> {
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        bail!("topic {topic} has no partitions (does it exist?)");
    }
    Ok(partitions)
}

impl KStreamsApp {
    /// The Java classpath: `sluice-kstreams.jar:lib/*`.
    pub fn classpath(&self) -> String {
        format!(
            "{}:{}/*",
            self.dir.join("sluice-kstreams.jar").display(),
            self.dir.join("lib").display()
        )
    }

    /// Where the build lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Run the application from `input` to `output` until `output` holds
    /// `expected` records; returns events/s as [`Measured::events_per_sec`]:
    /// the records of `input` (high − low watermarks at the start) divided by
    /// the time from the first input record reaching the rules (the JVM
    /// prints its wall clock then) to the moment `output` is seen to hold
    /// `expected` records (polled every 20 ms: watermarks for at-least-once,
    /// a `read_committed` consumer counting records for exactly-once).
    /// JVM start-up and group join are not in it ([`Measured::startup`]).
    pub fn run(
        &self,
        bootstrap: &str,
        input: &str,
        output: &str,
        expected: usize,
        exactly_once: bool,
    ) -> anyhow::Result<f64> {
        let mut options = RunOptions::new(bootstrap, input, output, expected);
        options.exactly_once = exactly_once;
        Ok(self.run_with(&options)?.events_per_sec)
    }

    /// [`KStreamsApp::run`] with every option and the whole measurement.
    pub fn run_with(&self, options: &RunOptions) -> anyhow::Result<Measured> {
        let admin: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &options.bootstrap)
            .create()?;
        let input_partitions = partitions_of(&admin, &options.input)?;
        let input_records = watermark_total(&admin, &options.input, &input_partitions)?;
        let output_partitions = partitions_of(&admin, &options.output)?;
        let already = watermark_total(&admin, &options.output, &output_partitions)?;
        if already > 0 {
            bail!(
                "output topic {} already holds {already} records; use a fresh one",
                options.output
            );
        }
        let counter = if options.exactly_once {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &options.bootstrap)
                .set("group.id", format!("{}-count", options.application_id))
                .set("isolation.level", "read_committed")
                .set("enable.auto.commit", "false")
                .set("enable.partition.eof", "false")
                .create()?;
            let mut assignment = TopicPartitionList::new();
            for &p in &output_partitions {
                assignment.add_partition_offset(&options.output, p, Offset::Beginning)?;
            }
            consumer.assign(&assignment)?;
            Some(consumer)
        } else {
            None
        };

        let mut args: Vec<String> = [
            "--schema",
            &schema_path().to_string_lossy(),
            "--bootstrap",
            &options.bootstrap,
            "--input",
            &options.input,
            "--output",
            &options.output,
            "--application-id",
            &options.application_id,
            "--salt",
            &options.salt,
            "--fingerprint",
            &sluice_fingerprint()?,
            "--commit-interval-ms",
            &options.commit_interval_ms.to_string(),
            "--threads",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if options.exactly_once {
            args.push("--exactly-once".to_string());
        }
        args.extend(options.extra_args.iter().cloned());

        let spawned = SystemTime::now();
        let mut jvm = Jvm::spawn(self, "dev.sluice.kstreams.RulesApp", &args)?;
        let deadline = Instant::now() + options.timeout;
        let mut first_record: Option<SystemTime> = None;
        let mut cpu_at_first = None;
        let mut third: Option<(u64, SystemTime)> = None;
        let mut seen: u64 = 0;
        let done_at = loop {
            while let Ok(line) = jvm.lines.try_recv() {
                if let Some(at) = first_record_line(&line)? {
                    first_record = Some(at);
                    cpu_at_first = jvm.cpu();
                }
                if let Some((n, at)) = progress_line(&line)?
                    && third.is_none()
                    && n * 3 >= input_records
                {
                    third = Some((n, at));
                }
            }
            seen = match &counter {
                Some(consumer) => {
                    let mut n = seen;
                    let until = Instant::now() + Duration::from_millis(20);
                    while Instant::now() < until && n < options.expected as u64 {
                        match consumer.poll(Duration::from_millis(5)) {
                            Some(Ok(_)) => n += 1,
                            Some(Err(e)) => bail!("counting {}: {e}", options.output),
                            None => {}
                        }
                    }
                    n
                }
                None => watermark_total(&admin, &options.output, &output_partitions)?,
            };
            if seen >= options.expected as u64 {
                break SystemTime::now();
            }
            if let Some(status) = jvm.exited() {
                bail!(
                    "the Kafka Streams application exited ({status}) after {seen} of {} records\n{}",
                    options.expected,
                    jvm.output()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the Kafka Streams application wrote {seen} of {} records in {:?}\n{}",
                    options.expected,
                    options.timeout,
                    jvm.output()
                );
            }
            if counter.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        let cpu_at_done = jvm.cpu();
        jvm.stop(Duration::from_secs(6));
        // The first-record line is printed before that record is processed,
        // so it has arrived by now unless the pipe lagged; drain it.
        while first_record.is_none() {
            match jvm.lines.recv_timeout(Duration::from_secs(1)) {
                Ok(line) => first_record = first_record_line(&line)?,
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    bail!(
                        "the application never reported its first record\n{}",
                        jvm.output()
                    )
                }
            }
        }
        let first_record = first_record.unwrap_or(spawned);
        let from_first_record = done_at
            .duration_since(first_record)
            .unwrap_or(Duration::from_millis(1))
            .max(Duration::from_millis(1));
        Ok(Measured {
            events_per_sec: input_records as f64 / from_first_record.as_secs_f64(),
            input_records,
            output_records: seen,
            from_first_record,
            startup: first_record.duration_since(spawned).unwrap_or_default(),
            after_warmup_events_per_sec: third.and_then(|(n, at)| {
                let rest = done_at.duration_since(at).ok()?.as_secs_f64();
                (rest > 0.0).then(|| input_records.saturating_sub(n) as f64 / rest)
            }),
            jvm_cpu: cpu_at_first
                .zip(cpu_at_done)
                .map(|(a, b): (Duration, Duration)| b.saturating_sub(a)),
        })
    }

    /// The rules without Kafka: each framed value through `RulesApp --pipe`
    /// with the benchmark chain's rules (plus `extra_args`) and `salt`.
    pub fn pipe(
        &self,
        salt: &str,
        extra_args: &[&str],
        values: &[Vec<u8>],
    ) -> anyhow::Result<Vec<PipeOutcome>> {
        let mut args: Vec<String> = vec![
            "--pipe".into(),
            "--schema".into(),
            schema_path().to_string_lossy().into_owned(),
            "--salt".into(),
            salt.into(),
            "--fingerprint".into(),
            sluice_fingerprint()?,
        ];
        args.extend(extra_args.iter().map(|s| s.to_string()));
        let mut jvm = Jvm::spawn(self, "dev.sluice.kstreams.RulesApp", &args)?;
        let mut stdin = jvm.stdin.take().context("JVM stdin")?;
        let input: String = values.iter().map(|v| hex(v) + "\n").collect();
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let mut out = Vec::with_capacity(values.len());
        while out.len() < values.len() {
            let line = match jvm.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => line,
                Err(_) => bail!(
                    "RulesApp --pipe answered {} of {} values\n{}",
                    out.len(),
                    values.len(),
                    jvm.output()
                ),
            };
            out.push(if line == "DROP" {
                PipeOutcome::Drop
            } else if let Some(reason) = line.strip_prefix("ERROR ") {
                PipeOutcome::Error(reason.to_string())
            } else {
                PipeOutcome::Value(unhex(line.trim())?)
            });
        }
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("stdin writer panicked"))??;
        Ok(out)
    }

    /// Kafka's `ProducerPerformance` on `topic`: `records` records of
    /// `record_size` random bytes, no throttle (`--throughput -1`),
    /// `acks=all enable.idempotence=true` (otherwise the Java producer's
    /// defaults: `linger.ms=5`, `batch.size=16384`, no compression), with
    /// `extra_props` (`key=value`) on top.
    pub fn producer_performance(
        &self,
        bootstrap: &str,
        topic: &str,
        records: usize,
        record_size: usize,
        extra_props: &[&str],
    ) -> anyhow::Result<PerfSummary> {
        let mut args: Vec<String> = [
            "--topic",
            topic,
            "--num-records",
            &records.to_string(),
            "--record-size",
            &record_size.to_string(),
            "--throughput",
            "-1",
            "--producer-props",
            &format!("bootstrap.servers={bootstrap}"),
            "acks=all",
            "enable.idempotence=true",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra_props.iter().map(|s| s.to_string()));
        let mut jvm = Jvm::spawn(self, "dev.sluice.kstreams.Perf", &args)?;
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut summary = None;
        loop {
            match jvm.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    if line.contains(" records sent, ") && line.contains("50th") {
                        summary = Some(line);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() > deadline {
                bail!(
                    "ProducerPerformance did not finish in 10 min\n{}",
                    jvm.output()
                );
            }
        }
        let status = jvm.child.wait()?;
        let Some(line) = summary else {
            bail!(
                "ProducerPerformance printed no summary ({status})\n{}",
                jvm.output()
            );
        };
        parse_perf_summary(&line)
    }
}

/// Parse ProducerPerformance's last line, e.g. `100000 records sent, 85034.0
/// records/sec (8.11 MB/sec), 150.27 ms avg latency, 400.00 ms max latency,
/// 138 ms 50th, 290 ms 95th, 320 ms 99th, 390 ms 99.9th.`
pub fn parse_perf_summary(line: &str) -> anyhow::Result<PerfSummary> {
    let number_before = |marker: &str| -> anyhow::Result<f64> {
        let end = line
            .find(marker)
            .with_context(|| format!("no `{marker}` in {line:?}"))?;
        let start = line[..end]
            .trim_end()
            .rfind([' ', '('])
            .map_or(0, |i| i + 1);
        line[start..end]
            .trim()
            .parse()
            .with_context(|| format!("number before `{marker}` in {line:?}"))
    };
    Ok(PerfSummary {
        records_per_sec: number_before(" records/sec")?,
        avg_latency_ms: number_before(" ms avg latency")?,
        max_latency_ms: number_before(" ms max latency")?,
        line: line.to_string(),
    })
}

/// Kafka's `ProducerPerformance` on `topic` (see
/// [`KStreamsApp::producer_performance`]); returns records/s.
pub fn producer_performance(
    bootstrap: &str,
    topic: &str,
    records: usize,
    record_size: usize,
) -> anyhow::Result<f64> {
    Ok(build()?
        .producer_performance(bootstrap, topic, records, record_size, &[])?
        .records_per_sec)
}

/// Event `i` of the benchmark chain's input (as sluice-bench's `chain`
/// makes it): [`crate::sample_event`] with every 10th event DEBUG, an e-mail
/// address, an IPv4 address and a Firefox user agent in `attributes`.
pub fn chain_event(i: usize) -> serde_json::Value {
    let mut e = crate::sample_event(i, 1000);
    e["severity"] = serde_json::Value::from(if i.is_multiple_of(10) {
        "DEBUG"
    } else {
        "INFO"
    });
    e["attributes"]["email"] = format!("user{}@example.com", i % 1000).into();
    e["attributes"]["ip"] = format!("10.0.{}.{}", i % 200, i % 250).into();
    e["attributes"]["user_agent"] =
        "Mozilla/5.0 (X11; Linux x86_64; rv:118.0) Gecko/20100101 Firefox/118.0".into();
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_summary_line() {
        let s = parse_perf_summary("100000 records sent, 85034.0 records/sec (8.11 MB/sec), 150.27 ms avg latency, 400.00 ms max latency, 138 ms 50th, 290 ms 95th, 320 ms 99th, 390 ms 99.9th.").unwrap();
        assert_eq!(s.records_per_sec, 85034.0);
        assert_eq!(s.avg_latency_ms, 150.27);
        assert_eq!(s.max_latency_ms, 400.0);
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(
            unhex(&hex(&[0, 1, 0xc3, 0xff])).unwrap(),
            vec![0, 1, 0xc3, 0xff]
        );
    }
}
