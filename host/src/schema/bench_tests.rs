//! Timing of the one-pass transcoders against the tree path, on telemetry
//! events of about 300 bytes. Ignored by default (no timing in pass/fail
//! tests); run with
//! `cargo test --release -p sluice-host --lib transcode_timing -- --ignored --nocapture`.

use std::hint::black_box;
use std::time::Instant;

use super::*;
use serde_json::{Value as Json, json};

fn event(i: usize) -> Json {
    let severity = ["DEBUG", "INFO", "WARN", "ERROR"][i % 4];
    let source = ["web", "checkout", "search"][i % 3];
    let region = ["eu", "us", "ap"][i % 3];
    json!({
        "event_id": format!("evt-{i:07}-6f1c2a9e-41d3-4b8e"),
        "type": if i.is_multiple_of(3) { "login" } else { "page_view" },
        "source": source,
        "entity_id": format!("user-{}", i % 1000),
        "occurred_at": 1_764_400_000_000i64 + i as i64,
        "severity": severity,
        "attributes": {
            "seq": i.to_string(), "region": region,
            "path": "/products/123/reviews", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        },
        "trace_id": if i.is_multiple_of(2) { Json::Null } else { format!("trace-{i:016x}").into() },
    })
}

fn rate(label: &str, events: usize, rounds: usize, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    let n = (events * rounds) as f64;
    eprintln!(
        "{label:<34} {:>8.0} ns/event {:>10.0} events/s",
        secs * 1e9 / n,
        n / secs
    );
}

#[test]
#[ignore = "timing, run by hand"]
fn transcode_timing() {
    let schema = LoadedSchema::from_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/telemetry_event.avsc"),
    )
    .expect("schema parses");
    let texts: Vec<Vec<u8>> = (0..1000)
        .map(|i| serde_json::to_vec(&event(i)).unwrap())
        .collect();
    let framed: Vec<Vec<u8>> = texts
        .iter()
        .map(|t| schema.encode_json_bytes(t).unwrap())
        .collect();
    let avg = texts.iter().map(Vec::len).sum::<usize>() / texts.len();
    let avg_avro = framed.iter().map(Vec::len).sum::<usize>() / framed.len();
    eprintln!("telemetry events: {avg} bytes of JSON, {avg_avro} bytes framed Avro");
    let rounds = 200;
    for _ in 0..2 {
        let started = Instant::now();
        for _ in 0..rounds {
            for f in &framed {
                let value = schema.decode_datum(&f[HEADER_LEN..]).unwrap();
                black_box(serde_json::to_vec(&avro_to_json(&value).unwrap()).unwrap());
            }
        }
        rate("Avro -> JSON, tree path", framed.len(), rounds, started);
        let started = Instant::now();
        for _ in 0..rounds {
            for f in &framed {
                black_box(schema.datum_to_json(&f[HEADER_LEN..]).unwrap());
            }
        }
        rate("Avro -> JSON, one pass", framed.len(), rounds, started);
        let started = Instant::now();
        for _ in 0..rounds {
            for t in &texts {
                let json: Json = serde_json::from_slice(t).unwrap();
                let value = json_to_avro(&schema.schema, &json).unwrap();
                black_box(schema.encode(value).unwrap());
            }
        }
        rate("JSON -> Avro, tree path", texts.len(), rounds, started);
        let started = Instant::now();
        for _ in 0..rounds {
            for t in &texts {
                black_box(schema.encode_json_bytes(t).unwrap());
            }
        }
        rate("JSON -> Avro, one pass", texts.len(), rounds, started);
    }
}
