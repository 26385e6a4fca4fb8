//! The Kafka Streams peer of a Sluice stage (`tests/kstreams`, driven by
//! `sluice_tests::kstreams`) applies the benchmark chain's rules exactly as
//! Sluice's plugins do.
//!
//! * `rules_match_the_plugins_byte_for_byte` needs Java 17 and Maven (the
//!   first build resolves the jars from Maven Central), no broker: the
//!   application's rules run through `RulesApp --pipe`.
//! * The others need a real Kafka 4.x broker and are `#[ignore]`d until the
//!   shared harness provides one; run them against any broker with
//!   `SLUICE_KAFKA_BOOTSTRAP=127.0.0.1:9092 cargo test -p sluice-tests --test kstreams -- --ignored --nocapture`
//!   (`SLUICE_KSTREAMS_EVENTS` sets the benchmark's event count, 100000 by default).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use apache_avro::types::Value as Avro;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use sluice::schema::{LoadedSchema, SchemaSet, json_to_avro};
use sluice_sdk::{Event, Transform};
use sluice_tests::kstreams::{self, PipeOutcome, RunOptions, chain_event};

const SALT: &str = kstreams::BENCH_SALT;

/// sluice-bench's CHAIN_CONFIGS.
const FILTER: &str =
    r#"{"mode":"drop","rules":[{"field":"severity","op":"equals","value":"DEBUG"}]}"#;
const REDACT: &str =
    r#"{"fields":["attributes.email","attributes.ip"],"mode":"hash","salt":"bench"}"#;
const ENRICH: &str = r#"{"lookups":[{"from":"source","to":"attributes.team","table":{"web":"growth","checkout":"payments"},"default":"unknown"}],"user_agent_from":"attributes.user_agent","user_agent_to":"attributes.ua_family"}"#;

fn schema() -> LoadedSchema {
    LoadedSchema::from_file(&kstreams::schema_path()).expect("telemetry schema")
}

fn schemas() -> SchemaSet {
    let mut set = SchemaSet::default();
    set.load(&kstreams::schema_path())
        .expect("telemetry schema");
    set
}

/// Inputs that exercise every branch of the three rules.
fn inputs(count: usize) -> Vec<Value> {
    let agents = [
        "Mozilla/5.0 (X11; Linux x86_64; rv:118.0) Gecko/20100101 Firefox/118.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
        "curl/8.5.0",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Spider-Man Firefox/1",
        "CURL/8.0",
        "Wget/1.21",
        "",
        "Ünïcödé bOt",
    ];
    (0..count)
        .map(|i| {
            let mut e = chain_event(i);
            e["attributes"]["user_agent"] = agents[i % agents.len()].into();
            match i % 7 {
                // no user agent, no ip
                3 => {
                    let attributes = e["attributes"].as_object_mut().unwrap();
                    attributes.remove("user_agent");
                    attributes.remove("ip");
                }
                // a non-ASCII e-mail, an empty ip, a team already set
                5 => {
                    e["attributes"]["email"] = "jürgen@example.com".into();
                    e["attributes"]["ip"] = "".into();
                    e["attributes"]["team"] = "growth".into();
                }
                // an unknown source; a ua_family to overwrite
                6 => {
                    e["source"] = "batch-job".into();
                    e["attributes"]["ua_family"] = "stale".into();
                }
                _ => {}
            }
            e
        })
        .collect()
}

/// What Sluice's stage makes of one framed value: decode to natural JSON,
/// run the plugins (linked natively, same code as the wasm components),
/// validate and convert back. `None` when dropped.
fn sluice_output(schemas: &SchemaSet, value: &[u8]) -> Option<Avro> {
    let (loaded, _) = schemas.decode(value).unwrap();
    let mut json = serde_json::to_vec(&schemas.decode_json(value).unwrap()).unwrap();
    if !step::<sluice_filter::Filter>(FILTER, &mut json)
        || !step::<sluice_redact::Redact>(REDACT, &mut json)
    {
        return None;
    }
    assert!(
        step::<sluice_enrich::Enrich>(ENRICH, &mut json),
        "enrich dropped an event"
    );
    let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    Some(json_to_avro(&loaded.schema, &value).unwrap())
}

/// One plugin on the event whose value is `json`, through the SDK's test
/// driver (batch layout, located fields, outcomes by index, as the host
/// does); false when it drops it.
fn step<T: Transform>(config: &str, json: &mut Vec<u8>) -> bool {
    let outcomes = sluice_sdk::testing::run::<T>(config, vec![Event::new(&json[..])]).unwrap();
    let outcome = &outcomes[0];
    assert!(outcome.failure().is_none(), "{:?}", outcome.failure());
    if outcome.is_drop() {
        return false;
    }
    if let Some(new) = outcome.modified().and_then(|c| c.value.clone()) {
        *json = new;
    }
    true
}

/// The Avro binary encoding of `value` with map entries sorted by key: the
/// datum Sluice writes, up to map-entry order (its encoder writes a map in
/// hash-map order).
fn canonical_datum(value: &Avro, out: &mut Vec<u8>) {
    fn long(n: i64, out: &mut Vec<u8>) {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }
    fn bytes(b: &[u8], out: &mut Vec<u8>) {
        long(b.len() as i64, out);
        out.extend_from_slice(b);
    }
    match value {
        Avro::Null => {}
        Avro::Boolean(b) => out.push(u8::from(*b)),
        Avro::Int(i) => long(i64::from(*i), out),
        Avro::Long(l) | Avro::TimestampMillis(l) => long(*l, out),
        Avro::String(s) => bytes(s.as_bytes(), out),
        Avro::Bytes(b) => bytes(b, out),
        Avro::Enum(index, _) => long(i64::from(*index), out),
        Avro::Union(index, inner) => {
            long(i64::from(*index), out);
            canonical_datum(inner, out);
        }
        Avro::Map(map) => {
            if !map.is_empty() {
                long(map.len() as i64, out);
                let sorted: BTreeMap<&String, &Avro> = map.iter().collect();
                for (key, item) in sorted {
                    bytes(key.as_bytes(), out);
                    canonical_datum(item, out);
                }
            }
            out.push(0);
        }
        Avro::Record(fields) => fields.iter().for_each(|(_, v)| canonical_datum(v, out)),
        other => panic!("not in the telemetry schema: {other:?}"),
    }
}

fn string_field(record: &Avro, name: &str) -> Option<String> {
    let Avro::Record(fields) = record else {
        panic!("not a record")
    };
    match &fields.iter().find(|(n, _)| n == name)?.1 {
        Avro::String(s) | Avro::Enum(_, s) => Some(s.clone()),
        Avro::Union(_, inner) => match inner.as_ref() {
            Avro::String(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn attribute(record: &Avro, key: &str) -> Option<String> {
    let Avro::Record(fields) = record else {
        panic!("not a record")
    };
    let Avro::Map(map) = &fields.iter().find(|(n, _)| n == "attributes")?.1 else {
        panic!("attributes is not a map")
    };
    match map.get(key)? {
        Avro::String(s) => Some(s.clone()),
        other => panic!("attribute {key} is {other:?}"),
    }
}

/// Checks one output against its input, computing every rule on its own
/// (not through the plugins): e-mail and ip hashed, team and ua_family set.
fn check_independently(input: &Value, output: &Avro) {
    let id = input["event_id"].as_str().unwrap();
    assert_ne!(input["severity"], "DEBUG", "{id}: a DEBUG event came out");
    assert_eq!(string_field(output, "event_id").as_deref(), Some(id));
    assert_eq!(string_field(output, "severity").unwrap(), input["severity"]);
    for key in ["email", "ip"] {
        let expected = input["attributes"][key]
            .as_str()
            .map(|v| sluice_redact::hash(SALT, v));
        assert_eq!(attribute(output, key), expected, "{id}: attributes.{key}");
    }
    let team = match input["source"].as_str().unwrap() {
        "web" => "growth",
        "checkout" => "payments",
        _ => "unknown",
    };
    assert_eq!(attribute(output, "team").as_deref(), Some(team), "{id}");
    let family = input["attributes"]["user_agent"]
        .as_str()
        .map(|agent| sluice_enrich::ua_family(agent).to_string())
        .or_else(|| input["attributes"]["ua_family"].as_str().map(String::from));
    assert_eq!(attribute(output, "ua_family"), family, "{id}: ua_family");
    for key in ["seq", "region", "user_agent"] {
        assert_eq!(
            attribute(output, key).as_deref(),
            input["attributes"][key].as_str(),
            "{id}: attributes.{key} passes through"
        );
    }
}

#[test]
fn rules_match_the_plugins_byte_for_byte() -> anyhow::Result<()> {
    let app = kstreams::build()?;
    let schema = schema();
    let schemas = schemas();
    let events = inputs(700);
    let mut values: Vec<Vec<u8>> = events
        .iter()
        .map(|e| schema.encode_json(e).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<_>>()?;
    // Malformed input: not framed, and a frame with trailing bytes.
    values.push(b"{\"not\":\"avro\"}".to_vec());
    let mut trailing = values[1].clone();
    trailing.push(0);
    values.push(trailing);

    let outcomes = app.pipe(SALT, &[], &values)?;
    assert_eq!(outcomes.len(), values.len());
    let (mut dropped, mut kept) = (0, 0);
    for ((event, value), outcome) in events.iter().zip(&values).zip(&outcomes) {
        let id = event["event_id"].as_str().unwrap();
        match (sluice_output(&schemas, value), outcome) {
            (None, PipeOutcome::Drop) => dropped += 1,
            (Some(expected), PipeOutcome::Value(bytes)) => {
                let (_, got) = schemas.decode(bytes)?;
                assert_eq!(got, expected, "{id}: field values differ from Sluice's");
                let mut datum = Vec::new();
                canonical_datum(&expected, &mut datum);
                assert_eq!(
                    &bytes[..sluice::schema::HEADER_LEN],
                    &value[..sluice::schema::HEADER_LEN],
                    "{id}: framing"
                );
                assert_eq!(
                    &bytes[sluice::schema::HEADER_LEN..],
                    &datum[..],
                    "{id}: datum differs from Sluice's (map entries sorted)"
                );
                check_independently(event, &got);
                kept += 1;
            }
            (expected, got) => panic!("{id}: Sluice {expected:?}, Kafka Streams {got:?}"),
        }
    }
    assert_eq!(dropped, events.len().div_ceil(10));
    assert_eq!(kept + dropped, events.len());
    for outcome in &outcomes[events.len()..] {
        assert!(
            matches!(outcome, PipeOutcome::Error(_)),
            "malformed input: {outcome:?}"
        );
    }
    Ok(())
}

fn bootstrap() -> String {
    std::env::var("SLUICE_KAFKA_BOOTSTRAP")
        .expect("set SLUICE_KAFKA_BOOTSTRAP=host:port of a Kafka 4.x broker")
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("kstreams-{name}-{}-{nanos}", std::process::id())
}

async fn create_topics(bootstrap: &str, topics: &[&str], partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    for result in admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await?
    {
        result.map_err(|(topic, e)| anyhow::anyhow!("creating {topic}: {e}"))?;
    }
    Ok(())
}

/// Every record of `topic` (read_committed), keyed by event id.
fn read_output(
    bootstrap: &str,
    topic: &str,
    expected: usize,
) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut assignment = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        assignment.add_partition_offset(topic, p.id(), Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // One more second after `expected` to catch duplicates.
    let mut settle = None;
    while std::time::Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            out.push((
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
        if out.len() >= expected && settle.is_none() {
            settle = Some(std::time::Instant::now() + Duration::from_secs(1));
        }
        if settle.is_some_and(|s| std::time::Instant::now() > s) {
            break;
        }
    }
    Ok(out)
}

async fn round_trip(exactly_once: bool) -> anyhow::Result<()> {
    let bootstrap = bootstrap();
    let app = kstreams::build()?;
    let (input, output) = (unique("in"), unique("out"));
    create_topics(&bootstrap, &[&input, &output], 3).await?;
    let events = inputs(300);
    sluice_tests::produce_events(&bootstrap, &input, &events).await?;
    let expected = events.iter().filter(|e| e["severity"] != "DEBUG").count();

    let mut options = RunOptions::new(&bootstrap, &input, &output, expected);
    options.exactly_once = exactly_once;
    options.timeout = Duration::from_secs(180);
    let measured = app.run_with(&options)?;
    println!("{measured:?}");
    assert_eq!(measured.input_records, events.len() as u64);

    let records = read_output(&bootstrap, &output, expected)?;
    assert_eq!(records.len(), expected, "output records");
    let schemas = schemas();
    let by_id: BTreeMap<&str, &Value> = events
        .iter()
        .map(|e| (e["event_id"].as_str().unwrap(), e))
        .collect();
    let mut seen = HashSet::new();
    for (key, value) in &records {
        let (_, got) = schemas.decode(value)?;
        let id = string_field(&got, "event_id").unwrap();
        assert!(seen.insert(id.clone()), "{id} twice");
        let input = by_id[id.as_str()];
        assert_eq!(
            key,
            input["entity_id"].as_str().unwrap().as_bytes(),
            "{id}: key"
        );
        check_independently(input, &got);
        let framed = schema().encode_json(input).map_err(anyhow::Error::msg)?;
        assert_eq!(Some(got), sluice_output(&schemas, &framed), "{id}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kafka 4.x broker: SLUICE_KAFKA_BOOTSTRAP"]
async fn at_least_once_round_trip_on_a_real_broker() -> anyhow::Result<()> {
    round_trip(false).await
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Kafka 4.x broker: SLUICE_KAFKA_BOOTSTRAP"]
async fn exactly_once_round_trip_on_a_real_broker() -> anyhow::Result<()> {
    round_trip(true).await
}

/// The measurement: the Kafka Streams application on the benchmark chain's
/// events, at-least-once and exactly_once_v2, and ProducerPerformance.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark; needs a Kafka 4.x broker: SLUICE_KAFKA_BOOTSTRAP"]
async fn benchmark_on_a_real_broker() -> anyhow::Result<()> {
    let bootstrap = bootstrap();
    let count: usize = std::env::var("SLUICE_KSTREAMS_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let app = kstreams::build()?;
    let (input, alos, eos, perf) = (unique("in"), unique("alos"), unique("eos"), unique("perf"));
    create_topics(&bootstrap, &[&input, &alos, &eos, &perf], 3).await?;
    let events: Vec<Value> = (0..count).map(chain_event).collect();
    sluice_tests::produce_events(&bootstrap, &input, &events).await?;
    let size = schema()
        .encode_json(&events[1])
        .map_err(anyhow::Error::msg)?
        .len();
    let expected = events.iter().filter(|e| e["severity"] != "DEBUG").count();
    println!("events: {count} (framed Avro ~{size} B), 3 partitions, {expected} to keep");
    for (exactly_once, output) in [(false, &alos), (true, &eos)] {
        let mut options = RunOptions::new(&bootstrap, &input, output, expected);
        options.exactly_once = exactly_once;
        let m = app.run_with(&options)?;
        println!(
            "kafka streams {:<16} {:>9.0} events/s  ({:.0}/s after the first third) ({} input events in {:.2} s from first record to last output; JVM CPU {:.2} s = {:.1} µs/event; start-up {:.1} s; {} output)",
            if exactly_once {
                "exactly_once_v2"
            } else {
                "at_least_once"
            },
            m.events_per_sec,
            m.after_warmup_events_per_sec.unwrap_or(f64::NAN),
            m.input_records,
            m.from_first_record.as_secs_f64(),
            m.jvm_cpu.unwrap_or_default().as_secs_f64(),
            m.jvm_cpu.unwrap_or_default().as_secs_f64() * 1e6 / m.input_records as f64,
            m.startup.as_secs_f64(),
            m.output_records
        );
    }
    let summary = app.producer_performance(&bootstrap, &perf, count, size, &[])?;
    println!(
        "ProducerPerformance ({count} x {size} B, acks=all, idempotent): {:.0} records/s\n  {}",
        summary.records_per_sec, summary.line
    );
    Ok(())
}

/// CRC-64-AVRO (the spec's Rabin fingerprint), little-endian as in frames.
fn rabin(text: &str) -> [u8; 8] {
    const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
    let table: Vec<u64> = (0..256u64)
        .map(|i| (0..8).fold(i, |fp, _| (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg())))
        .collect();
    let fp = text.bytes().fold(EMPTY, |fp, b| {
        (fp >> 8) ^ table[((fp ^ u64::from(b)) & 0xff) as usize]
    });
    fp.to_le_bytes()
}

/// Sluice's frames carry the spec's CRC-64-AVRO fingerprint of the Parsing
/// Canonical Form (`"long"` for `occurred_at`), the one Java's Avro computes
/// (`992cbb51b7198644`), since issue 14; before, apache-avro 0.21's form
/// (`{"type":"long"}`) gave `fc76b44391bb6801`, which Sluice still reads.
/// RulesApp accepts the standard one and the one it is given.
#[test]
fn sluice_frames_carry_the_standard_fingerprint() -> anyhow::Result<()> {
    let spec = r#"{"name":"dev.sluice.TelemetryEvent","type":"record","fields":[{"name":"event_id","type":"string"},{"name":"type","type":"string"},{"name":"source","type":"string"},{"name":"entity_id","type":"string"},{"name":"occurred_at","type":"long"},{"name":"severity","type":{"name":"dev.sluice.Severity","type":"enum","symbols":["DEBUG","INFO","WARN","ERROR","FATAL"]}},{"name":"attributes","type":{"type":"map","values":"string"}},{"name":"trace_id","type":["null","string"]}]}"#;
    let legacy_form = spec.replace(
        r#""occurred_at","type":"long""#,
        r#""occurred_at","type":{"type":"long"}"#,
    );
    let schema = schema();
    assert_eq!(schema.fingerprint, rabin(spec));
    assert_ne!(schema.fingerprint, rabin(&legacy_form));
    assert_eq!(kstreams::sluice_fingerprint()?, "992cbb51b7198644");
    let legacy = rabin(&legacy_form);
    assert_eq!(
        legacy
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        "fc76b44391bb6801"
    );

    // Sluice's own frames (now standard) and the same datum framed with the
    // spec's fingerprint are both accepted, and the output keeps the header.
    let framed = schema
        .encode_json(&chain_event(1))
        .map_err(anyhow::Error::msg)?;
    let mut standard = framed.clone();
    standard[2..10].copy_from_slice(&rabin(spec));
    assert_eq!(standard, framed, "Sluice writes the standard fingerprint");
    let mut unknown = framed.clone();
    unknown[2] ^= 0xff;
    let app = kstreams::build()?;
    let out = app.pipe(SALT, &[], &[framed, standard.clone(), unknown])?;
    let (PipeOutcome::Value(a), PipeOutcome::Value(b)) = (&out[0], &out[1]) else {
        panic!("{out:?}")
    };
    assert_eq!(&b[..10], &standard[..10]);
    assert_eq!(a[10..], b[10..]);
    assert!(
        matches!(&out[2], PipeOutcome::Error(e) if e.contains("fingerprint")),
        "{:?}",
        out[2]
    );
    Ok(())
}
