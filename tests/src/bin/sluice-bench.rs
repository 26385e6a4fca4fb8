//! `sluice-bench`: load benchmarks against a real Apache Kafka broker, each reported
//! as a ratio to a baseline measured in the same run on the same broker
//! (these machines are noisy; absolute numbers drift, ratios much less).
//!
//! ```sh
//! bash scripts/bench.sh ingest    # HTTP ingest vs the raw librdkafka producer
//! bash scripts/bench.sh stage     # a 3-plugin stage vs raw consume→produce
//! bash scripts/bench.sh chain     # the 3-plugin chain in wasm vs the same rules native
//! bash scripts/bench.sh replay    # replay through a 1-plugin filter to a file vs raw fetch
//! bash scripts/bench.sh sink      # postgres-sink into PostgreSQL vs a plain binary COPY
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use hdrhistogram::Histogram;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::Value;
use sluice::schema::LoadedSchema;
use sluice_tests::{Broker, Sluice, free_port, repo_path, sample_event};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let which = std::env::args().nth(1).unwrap_or_else(|| "ingest".into());
    let scale: f64 = std::env::var("SLUICE_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    match which.as_str() {
        "ingest" => ingest(scale).await,
        "stage" => stage(scale).await,
        "tap" => tap(scale).await,
        "chain" => chain(scale),
        "replay" => replay(scale).await,
        "sink" => sluice_tests::sink_bench::run(scale).await,
        other => {
            bail!("unknown benchmark `{other}`: use ingest, stage, tap, chain, replay or sink")
        }
    }
}

/// The broker a benchmark runs against: Apache Kafka (a real single-node
/// KRaft broker process started by the test harness, the default) or
/// librdkafka's mock cluster hosted in this process
/// (`SLUICE_BENCH_BROKER=mock`), which is fast enough to show Sluice's own
/// costs instead of the broker's.
enum BenchBroker {
    Kafka(Broker),
    Mock(rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>),
}

impl BenchBroker {
    fn start() -> anyhow::Result<Self> {
        match std::env::var("SLUICE_BENCH_BROKER").as_deref() {
            Ok("mock") => Ok(Self::Mock(rdkafka::mocking::MockCluster::new(1)?)),
            _ => Ok(Self::Kafka(Broker::start()?)),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Kafka(_) => "Apache Kafka 4.4.0 KRaft single node (separate JVM process)",
            Self::Mock(_) => "librdkafka mock cluster (in the bench process)",
        }
    }

    fn bootstrap(&self) -> String {
        match self {
            Self::Kafka(b) => b.bootstrap(),
            Self::Mock(m) => m.bootstrap_servers(),
        }
    }

    fn create_topic(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        match self {
            Self::Kafka(b) => b.create_topic(name, partitions as u32),
            Self::Mock(m) => Ok(m.create_topic(name, partitions, 1)?),
        }
    }
}

fn scaled(n: usize, scale: f64) -> usize {
    ((n as f64) * scale).max(1.0) as usize
}

fn schema() -> anyhow::Result<LoadedSchema> {
    LoadedSchema::from_file(&repo_path("schemas/telemetry_event.avsc"))
}

fn producer(bootstrap: &str) -> anyhow::Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("producer")
}

/// Raw librdkafka: produce pre-encoded records as fast as acks come back.
async fn raw_produce(
    bootstrap: &str,
    topic: &str,
    payloads: &[(String, Vec<u8>)],
) -> anyhow::Result<f64> {
    let producer = producer(bootstrap)?;
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(payloads.len());
    for (key, payload) in payloads {
        loop {
            match producer.send_result(FutureRecord::to(topic).key(key).payload(payload)) {
                Ok(d) => {
                    deliveries.push(d);
                    break;
                }
                Err((_, _)) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }
    for d in futures::future::join_all(deliveries).await {
        d?.map_err(|(e, _)| e)?;
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(payloads.len() as f64 / started.elapsed().as_secs_f64())
}

struct Load {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
}

/// Send `requests` through `concurrency` connections; returns the rate of
/// `unit`s (events) per second and request latency percentiles.
/// POST every body (URL, content type, body, events in it) with
/// `concurrency` requests in flight. A content type `TYPE|CODING` sends
/// `Content-Type: TYPE` and `Content-Encoding: CODING`.
async fn http_load(
    bodies: Vec<(String, &'static str, Vec<u8>, usize)>,
    concurrency: usize,
) -> anyhow::Result<Load> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let histogram = Arc::new(std::sync::Mutex::new(Histogram::<u64>::new(3)?));
    let errors = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let units: usize = bodies.iter().map(|b| b.3).sum();
    let started = Instant::now();
    futures::stream::iter(bodies)
        .for_each_concurrent(concurrency, |(url, content_type, body, _)| {
            let client = client.clone();
            let histogram = histogram.clone();
            let errors = errors.clone();
            async move {
                let t = Instant::now();
                let (content_type, coding) = match content_type.split_once('|') {
                    Some((t, c)) => (t, Some(c)),
                    None => (content_type, None),
                };
                let mut request = client.post(url).header("content-type", content_type);
                if let Some(coding) = coding {
                    request = request.header("content-encoding", coding);
                }
                let ok = request
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status() == 202)
                    .unwrap_or(false);
                if !ok {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                if let Ok(mut h) = histogram.lock() {
                    let _ = h.record(t.elapsed().as_micros() as u64);
                }
            }
        })
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let h = histogram.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    Ok(Load {
        per_second: units as f64 / elapsed,
        p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
        errors: errors.load(std::sync::atomic::Ordering::Relaxed),
    })
}

async fn ingest(scale: f64) -> anyhow::Result<()> {
    let broker = BenchBroker::start()?;
    broker.create_topic("bench.raw", 3)?;
    broker.create_topic("telemetry.events", 3)?;
    let schema = schema()?;
    let events: Vec<Value> = (0..scaled(100_000, scale))
        .map(|i| sample_event(i, 1000))
        .collect();
    let payloads: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|e| {
            Ok((
                e["entity_id"].as_str().unwrap_or_default().to_string(),
                schema.encode_json(e)?,
            ))
        })
        .collect::<Result<_, sluice::schema::FieldError>>()
        .map_err(anyhow::Error::msg)?;
    let avg_json = events.iter().map(|e| e.to_string().len()).sum::<usize>() / events.len();
    let avg_avro = payloads.iter().map(|p| p.1.len()).sum::<usize>() / payloads.len();
    println!(
        "events: {} (JSON ~{avg_json} B, framed Avro ~{avg_avro} B), broker: {}, 3 partitions",
        events.len(),
        broker.name()
    );

    let raw = raw_produce(&broker.bootstrap(), "bench.raw", &payloads).await?;
    println!("baseline  raw idempotent librdkafka producer: {raw:>10.0} events/s");

    let port = free_port();
    let config = format!(
        "[kafka]\nbrokers = \"{}\"\n[ingest]\nlisten = \"127.0.0.1:{port}\"\nmax_in_flight = 1000000\n[[ingest.route]]\ntopic = \"telemetry.events\"\nschema = \"{{schemas}}/telemetry_event.avsc\"\n",
        broker.bootstrap()
    );
    let sluice = Sluice::start(&config, port)?;
    let batch_url = format!("{}/v1/events/batch", sluice.url);
    let batch_bodies: Vec<_> = events
        .chunks(500)
        .map(|chunk| {
            let body: String = chunk.iter().map(|e| format!("{e}\n")).collect();
            (
                batch_url.clone(),
                "application/x-ndjson",
                body.into_bytes(),
                chunk.len(),
            )
        })
        .collect();
    let batch = http_load(batch_bodies, 8).await?;
    println!(
        "sluice    batch POST (500/req, 8 conns):      {:>10.0} events/s  p50 {:.1} ms  p99 {:.1} ms  errors {}  ratio {:.2}x raw",
        batch.per_second,
        batch.p50_ms,
        batch.p99_ms,
        batch.errors,
        batch.per_second / raw
    );
    let single_url = format!("{}/v1/events", sluice.url);
    let singles: Vec<_> = events
        .iter()
        .take(scaled(30_000, scale))
        .map(|e| {
            (
                single_url.clone(),
                "application/json",
                e.to_string().into_bytes(),
                1,
            )
        })
        .collect();
    let single = http_load(singles, 64).await?;
    println!(
        "sluice    single POST (64 conns):             {:>10.0} req/s     p50 {:.1} ms  p99 {:.1} ms  errors {}  ratio {:.2}x raw",
        single.per_second,
        single.p50_ms,
        single.p99_ms,
        single.errors,
        single.per_second / raw
    );
    drop(sluice);

    // Issue 14: the same batch load with Confluent framing, with zstd
    // producer compression, and with gzip-compressed request bodies (each
    // on a host and topic of its own).
    let ndjson: Vec<Vec<u8>> = events
        .chunks(500)
        .map(|chunk| {
            chunk
                .iter()
                .map(|e| format!("{e}\n"))
                .collect::<String>()
                .into_bytes()
        })
        .collect();
    let gzipped: Vec<Vec<u8>> = ndjson
        .iter()
        .map(|body| {
            use std::io::Write as _;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(body)?;
            e.finish()
        })
        .collect::<Result<_, _>>()?;
    let raw_bytes: usize = ndjson.iter().map(Vec::len).sum();
    let gzip_bytes: usize = gzipped.iter().map(Vec::len).sum();
    for (label, topic, route_extra, gzip) in [
        (
            "confluent framing",
            "bench.confluent",
            "framing = \"confluent\"",
            false,
        ),
        (
            "zstd producer compression",
            "bench.zstd",
            "compression = \"zstd\"",
            false,
        ),
        (
            "lz4 producer compression (default)",
            "bench.lz4",
            "compression = \"lz4\"",
            false,
        ),
        ("gzip request bodies", "bench.gzip", "", true),
    ] {
        broker.create_topic(topic, 3)?;
        let port = free_port();
        let config = format!(
            "[kafka]\nbrokers = \"{}\"\n[ingest]\nlisten = \"127.0.0.1:{port}\"\nmax_in_flight = 1000000\n[[ingest.route]]\ntopic = \"{topic}\"\nschema = \"{{schemas}}/telemetry_event.avsc\"\n{route_extra}\n",
            broker.bootstrap()
        );
        let sluice = Sluice::start(&config, port)?;
        let url = format!("{}/v1/events/batch", sluice.url);
        let bodies: Vec<_> = events
            .chunks(500)
            .zip(if gzip { &gzipped } else { &ndjson })
            .map(|(chunk, body)| {
                let content_type = if gzip {
                    "application/x-ndjson|gzip"
                } else {
                    "application/x-ndjson"
                };
                (url.clone(), content_type, body.clone(), chunk.len())
            })
            .collect();
        let load = http_load(bodies, 8).await?;
        println!(
            "sluice    batch POST, {label:<36} {:>10.0} events/s  p50 {:.1} ms  p99 {:.1} ms  errors {}  ratio {:.2}x raw{}",
            load.per_second,
            load.p50_ms,
            load.p99_ms,
            load.errors,
            load.per_second / raw,
            if gzip {
                format!("  (bodies {raw_bytes} B -> {gzip_bytes} B gzip)")
            } else {
                String::new()
            }
        );
        drop(sluice);
    }
    Ok(())
}

/// Raw consume→produce: read every record of `input` and write it unchanged
/// to `output`, committing nothing: the floor any stage pays.
fn raw_copy(bootstrap: &str, input: &str, output: &str, count: usize) -> anyhow::Result<f64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-raw-copy")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[input])?;
    let producer = producer(bootstrap)?;
    // Timed from the first record, as the stage is (from its first output):
    // the group join (~3 s on Kafka) is not the copy's cost.
    let mut started = None;
    let mut deliveries = Vec::with_capacity(count);
    while deliveries.len() < count {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            started.get_or_insert_with(Instant::now);
            let mut record = FutureRecord::to(output).payload(m.payload().unwrap_or_default());
            if let Some(k) = m.key() {
                record = record.key(k);
            }
            deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
        }
    }
    for d in futures::executor::block_on(futures::future::join_all(deliveries)) {
        d?.map_err(|(e, _)| e)?;
    }
    let elapsed = started.map(|s| s.elapsed()).unwrap_or_default();
    Ok(count as f64 / elapsed.as_secs_f64())
}

fn topic_total(bootstrap: &str, topic: &str) -> anyhow::Result<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let mut total = 0;
    for t in metadata.topics() {
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(5))?;
            total += high - low;
        }
    }
    Ok(total)
}

async fn stage(scale: f64) -> anyhow::Result<()> {
    sluice_tests::plugins_built(&["filter", "redact", "enrich"])?;
    let broker = BenchBroker::start()?;
    for (topic, partitions) in [("in", 3), ("raw.out", 3), ("out", 3), ("dlq", 1)] {
        broker.create_topic(topic, partitions)?;
    }
    let count = scaled(100_000, scale);
    // The chain benchmark's events and rules (email and ip hashed, team and
    // user-agent family added), so the Kafka Streams peer runs the same.
    let events: Vec<Value> = (0..count)
        .map(sluice_tests::kstreams::chain_event)
        .collect();
    sluice_tests::produce_events(&broker.bootstrap(), "in", &events).await?;
    let size = schema()?
        .encode_json(&events[0])
        .map_err(anyhow::Error::msg)?
        .len();
    println!(
        "events: {count} (framed Avro ~{size} B), broker: {}, 3 partitions",
        broker.name()
    );

    let bootstrap = broker.bootstrap();
    let raw =
        tokio::task::spawn_blocking(move || raw_copy(&bootstrap, "in", "raw.out", count)).await??;
    println!("baseline  raw consume→produce:                {raw:>10.0} events/s");

    let expected = events.iter().filter(|e| e["severity"] != "DEBUG").count();
    let at_least_once = run_stage(&broker, "at-least-once", "out", count, false).await?;
    println!(
        "sluice    stage filter→redact→enrich:         {at_least_once:>10.0} events/s  (at-least-once; input events / time from first output to the group's commit of the last input)  ratio {:.2}x raw",
        at_least_once / raw
    );
    let mut exactly_once = None;
    if let BenchBroker::Kafka(_) = &broker {
        broker.create_topic("out.eos", 3)?;
        let rate = run_stage(&broker, "exactly-once", "out.eos", count, false).await?;
        println!(
            "sluice    same stage, exactly-once (100 ms):   {rate:>10.0} events/s  ratio {:.2}x at-least-once, {:.2}x raw",
            rate / at_least_once,
            rate / raw
        );
        exactly_once = Some(rate);
    }
    if let BenchBroker::Kafka(_) = &broker {
        kafka_peers(
            &broker.bootstrap(),
            count,
            expected,
            at_least_once,
            exactly_once,
            size,
        )?;
    }
    Ok(())
}

/// The stage's throughput on the same input without a tap and with `sluice
/// tap --stage bench --plugin redact` at 100 % sampling (its reader, the real
/// CLI, writing to a pipe this process drains), in one run, and the ratio.
async fn tap(scale: f64) -> anyhow::Result<()> {
    sluice_tests::plugins_built(&["filter", "redact", "enrich"])?;
    let broker = BenchBroker::start()?;
    // Rounds of one run with and one without the tap, the order alternating
    // (the broker's JIT warms up and the machine's noise drifts during the
    // benchmark); the ratio is of the medians.
    let rounds: usize = std::env::var("SLUICE_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
        .max(1);
    broker.create_topic("in", 3)?;
    broker.create_topic("dlq", 1)?;
    for round in 0..rounds {
        broker.create_topic(&format!("out.plain.{round}"), 3)?;
        broker.create_topic(&format!("out.tapped.{round}"), 3)?;
    }
    let count = scaled(100_000, scale);
    let events: Vec<Value> = (0..count)
        .map(sluice_tests::kstreams::chain_event)
        .collect();
    sluice_tests::produce_events(&broker.bootstrap(), "in", &events).await?;
    println!(
        "events: {count}, broker: {}, 3 partitions, {rounds} rounds (tap and no tap, order alternating)",
        broker.name()
    );
    let (mut plain, mut tapped) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for with_tap in [round % 2 == 1, round % 2 == 0] {
            let output = format!("out.{}.{round}", if with_tap { "tapped" } else { "plain" });
            let rate = run_stage(&broker, "at-least-once", &output, count, with_tap).await?;
            println!(
                "          round {round}: {:<7} {rate:>10.0} events/s",
                if with_tap { "tap" } else { "no tap" }
            );
            if with_tap { &mut tapped } else { &mut plain }.push(rate);
        }
    }
    let (plain, tapped) = (median(&mut plain), median(&mut tapped));
    println!("sluice    stage, no tap (median):               {plain:>10.0} events/s");
    println!(
        "sluice    stage, tap on redact at sample 1 (median): {tapped:>6.0} events/s  ratio {:.2}x no tap",
        tapped / plain
    );
    Ok(())
}

/// Run the benchmark's stage with `delivery` from `in` to `output` until its
/// group committed every input record; the rate is input events over the
/// time from the first output record to that commit. With `tap`, a `sluice
/// tap` on the chain's second plugin (sample 1) runs from start-up on.
async fn run_stage(
    broker: &BenchBroker,
    delivery: &str,
    output: &str,
    count: usize,
    tap: bool,
) -> anyhow::Result<f64> {
    let port = free_port();
    let group = format!("bench-{delivery}-{output}");
    let config = format!(
        r#"schemas = "{{schemas}}"
[kafka]
brokers = "{}"
[admin]
listen = "127.0.0.1:{port}"
token = "bench"
[plugins]
dir = "{{plugins}}"
[[stage]]
name = "bench"
input = "in"
output = "{output}"
dead_letter = "dlq"
group = "{group}"
chain = ["filter", "redact", "enrich"]
batch_size = 1000
batch_wait_ms = 20
delivery = "{delivery}"
transaction_interval_ms = 100
[stage.config.filter]
mode = "drop"
rules = [{{ field = "severity", op = "equals", value = "DEBUG" }}]
[stage.config.redact]
fields = ["attributes.email", "attributes.ip"]
mode = "hash"
salt = "bench"
[stage.config.enrich]
lookups = [{{ from = "source", to = "attributes.team", table = {{ web = "growth", checkout = "payments" }}, default = "unknown" }}]
user_agent_from = "attributes.user_agent"
user_agent_to = "attributes.ua_family"
"#,
        broker.bootstrap()
    );
    let started = Instant::now();
    let sluice = Sluice::start(&config, port)?;
    let reader = if tap {
        Some(TapReader::start(&sluice.url, count)?)
    } else {
        None
    };
    let mut first_output = None;
    loop {
        if first_output.is_none() && topic_total(&broker.bootstrap(), output)? > 0 {
            first_output = Some(Instant::now());
        }
        let committed: i64 = sluice_tests::committed_offsets(&broker.bootstrap(), &group, "in")?
            .values()
            .map(|o| (*o).max(0))
            .sum();
        if committed >= count as i64 {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!(
                "{delivery} stage did not finish: {committed} of {count} committed\n{}",
                sluice.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let from_first = first_output.map(|t| t.elapsed()).unwrap_or_default();
    println!(
        "          ({delivery}: {:.1} s incl. start-up and group join)",
        started.elapsed().as_secs_f64()
    );
    if let Some(reader) = reader {
        let dropped = metric_sum(&sluice.url, "sluice_tap_dropped_total").await?;
        println!(
            "          (tap: {} events read by `sluice tap`, {dropped} dropped by the host)",
            reader.stop()
        );
    }
    drop(sluice);
    Ok(count as f64 / from_first.as_secs_f64())
}

/// `sluice tap --stage bench --plugin redact` with a thread counting the
/// lines it prints as fast as they come.
struct TapReader {
    child: std::process::Child,
    lines: std::thread::JoinHandle<usize>,
}

impl TapReader {
    fn start(url: &str, count: usize) -> anyhow::Result<Self> {
        use std::io::BufRead;
        let mut child = std::process::Command::new(sluice_tests::sluice_bin())
            .args([
                "tap", "--stage", "bench", "--plugin", "redact", "--token", "bench",
            ])
            .args(["--admin", url, "--limit", &count.min(100_000).to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("tap stdout"))?;
        let lines = std::thread::spawn(move || std::io::BufReader::new(stdout).lines().count());
        Ok(Self { child, lines })
    }

    /// Stop the CLI; the lines it printed.
    fn stop(mut self) -> usize {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.lines.join().unwrap_or(0)
    }
}

/// The sum of a metric's samples on a host's `/metrics`.
async fn metric_sum(url: &str, name: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// On the real broker, in the same run: the Kafka Streams application doing
/// the same three rules topic → topic (the peer a JVM team would pick), and
/// Kafka's own `ProducerPerformance` as a reference line.
fn kafka_peers(
    bootstrap: &str,
    count: usize,
    expected: usize,
    stage_rate: f64,
    exactly_once_rate: Option<f64>,
    record_size: usize,
) -> anyhow::Result<()> {
    let app = sluice_tests::kstreams::build()?;
    sluice_tests::create_topic(bootstrap, "ks.out", 3, &[])?;
    let mut options = sluice_tests::kstreams::RunOptions::new(bootstrap, "in", "ks.out", expected);
    options.salt = "bench".into();
    options.extra_args = [
        "--redact",
        "attributes.email,attributes.ip",
        "--table",
        "web=growth,checkout=payments",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let measured = app.run_with(&options)?;
    let warm = measured
        .after_warmup_events_per_sec
        .map_or("-".to_string(), |r| format!("{r:.0}"));
    println!(
        "peer      Kafka Streams same rules (1 thread): {:>10.0} events/s  (first record to output complete; after JIT warm-up {warm}; start-up {:.1} s not counted)",
        measured.events_per_sec,
        measured.startup.as_secs_f64()
    );
    println!(
        "sluice    stage / Kafka Streams:               {:.2}x",
        stage_rate / measured.events_per_sec
    );
    if let Some(eos_rate) = exactly_once_rate {
        sluice_tests::create_topic(bootstrap, "ks.out.eos", 3, &[])?;
        let mut eos = options.clone();
        eos.output = "ks.out.eos".into();
        eos.exactly_once = true;
        eos.application_id = format!("{}-eos", options.application_id);
        let measured = app.run_with(&eos)?;
        println!(
            "peer      Kafka Streams exactly_once_v2 (100 ms): {:>7.0} events/s  (start-up {:.1} s not counted)",
            measured.events_per_sec,
            measured.startup.as_secs_f64()
        );
        println!(
            "sluice    exactly-once stage / Kafka Streams exactly_once_v2: {:.2}x",
            eos_rate / measured.events_per_sec
        );
    }
    sluice_tests::create_topic(bootstrap, "perf", 3, &[])?;
    let perf = app.producer_performance(bootstrap, "perf", count, record_size, &[])?;
    println!(
        "reference Kafka ProducerPerformance (acks=all, idempotent, {record_size} B): {:>10.0} records/s",
        perf.records_per_sec
    );
    Ok(())
}

const CHAIN_CONFIGS: [(&str, &str); 3] = [
    (
        "filter",
        r#"{"mode":"drop","rules":[{"field":"severity","op":"equals","value":"DEBUG"}]}"#,
    ),
    (
        "redact",
        r#"{"fields":["attributes.email","attributes.ip"],"mode":"hash","salt":"bench"}"#,
    ),
    (
        "enrich",
        r#"{"lookups":[{"from":"source","to":"attributes.team","table":{"web":"growth","checkout":"payments"},"default":"unknown"}],"user_agent_from":"attributes.user_agent","user_agent_to":"attributes.ua_family"}"#,
    ),
];

/// The same three rules, once as wasm components through the host's chain
/// and once linked natively through the SDK's `Transform` impls, over the
/// same JSON values (as the host hands them to plugins), batch 1000. Then
/// the filter alone, both ways.
fn chain(scale: f64) -> anyhow::Result<()> {
    sluice_tests::plugins_built(&["filter", "redact", "enrich"])?;
    let count = scaled(200_000, scale);
    let values: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let mut e = sample_event(i, 1000);
            e["severity"] = Value::from(if i % 10 == 0 { "DEBUG" } else { "INFO" });
            e["attributes"]["email"] = Value::from(format!("user{}@example.com", i % 1000));
            e["attributes"]["ip"] = Value::from(format!("10.0.{}.{}", i % 200, i % 250));
            e["attributes"]["user_agent"] = Value::from(
                "Mozilla/5.0 (X11; Linux x86_64; rv:118.0) Gecko/20100101 Firefox/118.0",
            );
            serde_json::to_vec(&e)
        })
        .collect::<Result<_, _>>()?;
    println!(
        "events: {count} (JSON ~{} B), batch 1000, one core",
        values[0].len()
    );
    let rounds = 3;
    let mut native_rates = Vec::new();
    let mut wasm_rates = Vec::new();
    let mut outputs = (0, 0);
    let shared: Vec<bytes::Bytes> = values.iter().cloned().map(bytes::Bytes::from).collect();
    let mut wasm_three = wasm_chain(&CHAIN_CONFIGS)?;
    let mut wasm_filter = wasm_chain(&CHAIN_CONFIGS[..1])?;
    let mut native_filter_rates = Vec::new();
    let mut wasm_filter_rates = Vec::new();
    // Alternate the two so drift on a noisy machine hits both alike.
    for _ in 0..rounds {
        let (rate, out) = native_rules(&values, 3)?;
        native_rates.push(rate);
        outputs.0 = out;
        let (rate, out) = run_wasm(&mut wasm_three, &shared)?;
        wasm_rates.push(rate);
        outputs.1 = out;
        native_filter_rates.push(native_rules(&values, 1)?.0);
        wasm_filter_rates.push(run_wasm(&mut wasm_filter, &shared)?.0);
    }
    anyhow::ensure!(
        outputs.0 == outputs.1,
        "wasm kept {} events, native {}",
        outputs.1,
        outputs.0
    );
    let (native, wasm) = (median(&mut native_rates), median(&mut wasm_rates));
    let (native_f, wasm_f) = (
        median(&mut native_filter_rates),
        median(&mut wasm_filter_rates),
    );
    println!("medians of {rounds} alternating rounds:");
    println!("baseline  native filter→redact→enrich:        {native:>10.0} events/s");
    println!(
        "sluice    wasm   filter→redact→enrich:        {wasm:>10.0} events/s  ratio {:.2}x native",
        wasm / native
    );
    println!("baseline  native filter:                      {native_f:>10.0} events/s");
    println!(
        "sluice    wasm   filter:                      {wasm_f:>10.0} events/s  ratio {:.2}x native",
        wasm_f / native_f
    );
    Ok(())
}

fn median(rates: &mut [f64]) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// The host's chain over the first plugins of the benchmark's rules, with
/// the sandbox on (epoch deadline, memory cap).
fn wasm_chain(configs: &[(&str, &str)]) -> anyhow::Result<sluice::runtime::Chain> {
    let runtime = sluice::runtime::Runtime::new(None, 256)?;
    let limits = sluice::config::Limits {
        timeout_ms: 5_000,
        memory_mb: 256,
    };
    let links = configs
        .iter()
        .map(|(name, config)| {
            let plugin = sluice::runtime::TransformPlugin::load_file(
                &runtime,
                name,
                &repo_path(&format!("plugins/dist/{name}.wasm")),
            )?;
            Ok(sluice::runtime::Link::new(
                Arc::new(plugin),
                (*config).to_string(),
                limits,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(sluice::runtime::Chain::new("bench", links, 0))
}

/// The host's chain over `values` (shared buffers, as the stage hands them
/// over after decoding; the native run borrows them likewise).
fn run_wasm(
    chain: &mut sluice::runtime::Chain,
    values: &[bytes::Bytes],
) -> anyhow::Result<(f64, usize)> {
    use sluice::runtime::Event;
    let started = Instant::now();
    let mut out = 0usize;
    for chunk in values.chunks(1000) {
        let batch: Vec<Event> = chunk
            .iter()
            .map(|v| Event {
                key: None,
                value: v.clone(),
                headers: Vec::new(),
                timestamp_ms: None,
                origin: None,
                topic: None,
            })
            .collect();
        let output = chain.run(batch);
        anyhow::ensure!(
            output.failures.is_empty(),
            "chain failures: {:?}",
            output.failures.first()
        );
        out += output.items.len();
    }
    Ok((values.len() as f64 / started.elapsed().as_secs_f64(), out))
}

/// The first `rules` of filter → redact → enrich, natively: the same rule
/// code through the SDK's `Transform` impls on views of the same flat
/// buffers with the same located fields the host sends, outcomes applied as
/// the host's chain applies them (modified values checked to be JSON, as the
/// host does); no sandbox and no boundary.
fn native_rules(values: &[Vec<u8>], rules: usize) -> anyhow::Result<(f64, usize)> {
    use sluice_sdk::Transform;
    use std::borrow::Cow;
    let config = |i: usize| {
        sluice_sdk::Config::from_json_str(CHAIN_CONFIGS[i].1).map_err(anyhow::Error::msg)
    };
    let mut filter = sluice_filter::Filter::init(config(0)?).map_err(anyhow::Error::msg)?;
    let mut redact = sluice_redact::Redact::init(config(1)?).map_err(anyhow::Error::msg)?;
    let mut enrich = sluice_enrich::Enrich::init(config(2)?).map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let mut out = 0usize;
    for chunk in values.chunks(1000) {
        let mut batch: Vec<Cow<'_, [u8]>> = chunk.iter().map(|v| Cow::Borrowed(&v[..])).collect();
        for rule in 0..rules {
            let outcomes = {
                // As the host lays a batch out for a plugin: flat buffers
                // plus the spans of the rule's declared fields, located here
                // natively, as the host does for the wasm run.
                let views: Vec<sluice_sdk::Event<'_>> = batch
                    .iter()
                    .map(|v| sluice_sdk::Event::new(&v[..]))
                    .collect();
                let mut laid_out = sluice_sdk::wire::batch(&views);
                let fields = match rule {
                    0 => filter.fields(),
                    1 => redact.fields(),
                    _ => enrich.fields(),
                };
                sluice_sdk::wire::locate_fields(&mut laid_out, &fields, false);
                let views = sluice_sdk::wire::events(&laid_out).map_err(anyhow::Error::msg)?;
                match rule {
                    0 => filter.process_batch(&views),
                    1 => redact.process_batch(&views),
                    _ => enrich.process_batch(&views),
                }
                .map_err(anyhow::Error::msg)?
            };
            batch = apply_native(batch, outcomes);
        }
        out += batch.len();
    }
    Ok((values.len() as f64 / started.elapsed().as_secs_f64(), out))
}

/// Apply outcomes the way the host's chain does.
fn apply_native<'a>(
    batch: Vec<std::borrow::Cow<'a, [u8]>>,
    outcomes: Vec<sluice_sdk::Outcome>,
) -> Vec<std::borrow::Cow<'a, [u8]>> {
    use std::borrow::Cow;
    let mut next = Vec::with_capacity(batch.len());
    for (value, outcome) in batch.into_iter().zip(outcomes) {
        match outcome {
            sluice_sdk::Outcome::Keep => next.push(value),
            sluice_sdk::Outcome::Modify(change) => match change.value {
                Some(new) if serde_json::from_slice::<serde::de::IgnoredAny>(&new).is_ok() => {
                    next.push(Cow::Owned(new))
                }
                Some(_) => {}
                None => next.push(value),
            },
            sluice_sdk::Outcome::FanOut(new) => {
                next.extend(new.into_iter().map(|e| Cow::Owned(e.value)))
            }
            sluice_sdk::Outcome::Drop | sluice_sdk::Outcome::Fail(_) => {}
        }
    }
    next
}

/// Raw fetch: a group-less consumer assigned every partition of `topic` from
/// its low watermark, polling until each high watermark; returns the rate.
fn raw_fetch(bootstrap: &str, topic: &str) -> anyhow::Result<(usize, f64)> {
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-raw-fetch-unused")
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut assignment = TopicPartitionList::new();
    let mut ends = std::collections::HashMap::new();
    let mut total = 0usize;
    for t in metadata.topics() {
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
            assignment.add_partition_offset(topic, p.id(), Offset::Offset(low))?;
            ends.insert(p.id(), high);
            total += (high - low) as usize;
        }
    }
    let started = Instant::now();
    consumer.assign(&assignment)?;
    let mut read = 0usize;
    let mut bytes = 0usize;
    while read < total {
        if started.elapsed() > Duration::from_secs(600) {
            bail!("raw fetch read {read} of {total}");
        }
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            if m.offset() < ends.get(&m.partition()).copied().unwrap_or(0) {
                bytes += m.payload().map_or(0, <[u8]>::len);
                read += 1;
            }
        }
    }
    std::hint::black_box(bytes);
    Ok((read, read as f64 / started.elapsed().as_secs_f64()))
}

/// `sluice replay` of a whole topic through a one-plugin filter chain to an
/// NDJSON file, against a raw fetch of the same window in the same run.
async fn replay(scale: f64) -> anyhow::Result<()> {
    sluice_tests::plugins_built(&["filter"])?;
    let broker = BenchBroker::start()?;
    broker.create_topic("in", 3)?;
    let count = scaled(300_000, scale);
    let events: Vec<Value> = (0..count)
        .map(|i| {
            let mut e = sample_event(i, 1000);
            e["severity"] = Value::from(if i % 10 == 0 { "DEBUG" } else { "INFO" });
            e
        })
        .collect();
    for chunk in events.chunks(50_000) {
        sluice_tests::produce_events(&broker.bootstrap(), "in", chunk).await?;
    }
    let size = schema()?
        .encode_json(&events[0])
        .map_err(anyhow::Error::msg)?
        .len();
    println!(
        "events: {count} (framed Avro ~{size} B), broker: {}, 3 partitions",
        broker.name()
    );
    let bootstrap = broker.bootstrap();
    let (read, raw) = tokio::task::spawn_blocking(move || raw_fetch(&bootstrap, "in")).await??;
    anyhow::ensure!(read == count, "raw fetch read {read} of {count}");
    println!("baseline  raw fetch (librdkafka, no decode):  {raw:>10.0} events/s");

    let dir = sluice_tests::TempDir::new("bench-replay");
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            r#"schemas = "{schemas}"
[kafka]
brokers = "{bootstrap}"
[plugins]
dir = "{plugins}"
[[stage]]
name = "bench"
input = "in"
output = "out"
chain = ["filter"]
batch_size = 1000
[stage.config.filter]
mode = "drop"
rules = [{{ field = "severity", op = "equals", value = "DEBUG" }}]
"#,
            schemas = repo_path("schemas").display(),
            plugins = repo_path("plugins/dist").display(),
            bootstrap = broker.bootstrap(),
        ),
    )?;
    let out = dir.path().join("out.ndjson");
    let started = Instant::now();
    let output = tokio::process::Command::new(sluice_tests::sluice_bin())
        .args([
            "replay", "--topic", "in", "--from", "0", "--stage", "bench", "-c",
        ])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .env("SLUICE_LOG", "warn")
        .output()
        .await?;
    let wall = started.elapsed().as_secs_f64();
    let summary = String::from_utf8_lossy(&output.stderr);
    anyhow::ensure!(output.status.success(), "replay failed: {summary}");
    let lines = std::fs::read_to_string(&out)?.lines().count();
    let expected = events.iter().filter(|e| e["severity"] != "DEBUG").count();
    anyhow::ensure!(
        lines == expected,
        "replay wrote {lines} lines, expected {expected}: {summary}"
    );
    // The summary's own rate: first fetch to last write, without start-up.
    let internal: f64 = summary
        .split(" s (")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    let process = count as f64 / wall;
    println!(
        "sluice    replay filter → NDJSON file:        {internal:>10.0} events/s  ratio {:.2}x raw (summary: first fetch to last write)",
        internal / raw
    );
    println!(
        "sluice    replay, whole process:              {process:>10.0} events/s  ratio {:.2}x raw ({wall:.2} s incl. start-up and plugin load)",
        process / raw
    );
    print!("{summary}");
    Ok(())
}
