//! Fault suite (c): a corpus of malformed requests against a running host
//! on a real broker. Every one is answered with the expected 4xx and a JSON
//! body giving the reason; the host stays alive and nothing of them reaches
//! Kafka. Also: `/openapi.json` is served.

use std::time::Duration;

use serde_json::{Value, json};
use sluice_tests::{Broker, Sluice, free_port, read_topic, repo_path, sample_event};

const TOPIC: &str = "telemetry.events";

struct Case {
    name: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
}

fn case(
    name: &'static str,
    path: &'static str,
    ct: &'static str,
    body: impl Into<Vec<u8>>,
    status: u16,
) -> Case {
    Case {
        name,
        path,
        content_type: Some(ct),
        body: body.into(),
        status,
    }
}

const ONE: &str = "/v1/events";
const BATCH: &str = "/v1/events/batch";
const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";
const AVRO: &str = "avro/binary";

fn with(field: &str, value: Value) -> Vec<u8> {
    let mut e = sample_event(1, 5);
    e[field] = value;
    e.to_string().into_bytes()
}

fn corpus() -> anyhow::Result<Vec<Case>> {
    let schema =
        sluice::schema::LoadedSchema::from_file(&repo_path("schemas/telemetry_event.avsc"))?;
    let framed = schema
        .encode_json(&sample_event(7, 5))
        .map_err(anyhow::Error::msg)?;
    let (_, datum) = sluice::schema::split_frame(&framed)?;
    let event = sample_event(3, 5).to_string();
    let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let mut deep_attributes = sample_event(2, 5);
    let mut inner = json!("x");
    for _ in 0..100 {
        inner = json!({ "a": inner });
    }
    deep_attributes["attributes"]["deep"] = inner;
    let mut invalid_utf8 = br#"{"event_id":"e-"#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    invalid_utf8
        .extend_from_slice(br#"","type":"t","source":"s","entity_id":"u","occurred_at":0}"#);
    let mut ndjson_bad_utf8 = format!("{event}\n").into_bytes();
    ndjson_bad_utf8.extend_from_slice(&[0x80, 0x81, b'\n']);
    let huge = "x".repeat(5 * 1024 * 1024);
    let empties: Vec<Value> = (0..10_000).map(|_| json!({})).collect();
    let mut ten_k: Vec<Value> = (0..10_000).map(|i| sample_event(i, 50)).collect();
    ten_k[9_999]["severity"] = json!("LOUD");
    let mut unknown_fingerprint = vec![0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8];
    unknown_fingerprint.extend_from_slice(datum);
    let mut trailing = framed.clone();
    trailing.extend_from_slice(b"trailing");
    // A bare datum whose first string claims ~2^62 bytes: must not allocate it.
    let huge_length = vec![0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, b'a'];

    Ok(vec![
        case("empty body", ONE, JSON, "", 400),
        case("whitespace body", ONE, JSON, " \n\t ", 400),
        case(
            "truncated JSON",
            ONE,
            JSON,
            &event.as_bytes()[..event.len() / 2],
            400,
        ),
        case("JSON null", ONE, JSON, "null", 400),
        case("JSON number", ONE, JSON, "42", 400),
        case("JSON string", ONE, JSON, "\"event\"", 400),
        case(
            "array on the single route",
            ONE,
            JSON,
            format!("[{event}]"),
            400,
        ),
        case(
            "wrong type: event_id number",
            ONE,
            JSON,
            with("event_id", json!(123)),
            400,
        ),
        case(
            "wrong type: occurred_at text",
            ONE,
            JSON,
            with("occurred_at", json!("yesterday")),
            400,
        ),
        case(
            "wrong type: attributes array",
            ONE,
            JSON,
            with("attributes", json!([1, 2])),
            400,
        ),
        case(
            "wrong type: attribute value number",
            ONE,
            JSON,
            with("attributes", json!({"n": 1})),
            400,
        ),
        case(
            "wrong type: severity number",
            ONE,
            JSON,
            with("severity", json!(5)),
            400,
        ),
        case(
            "unknown enum symbol",
            ONE,
            JSON,
            with("severity", json!("LOUD")),
            400,
        ),
        case(
            "unknown field",
            ONE,
            JSON,
            with("colour", json!("blue")),
            400,
        ),
        case(
            "missing required field",
            ONE,
            JSON,
            with("entity_id", Value::Null),
            400,
        ),
        case(
            "number out of range",
            ONE,
            JSON,
            with("occurred_at", json!(1e300)),
            400,
        ),
        case(
            "exponent overflow",
            ONE,
            JSON,
            r#"{"event_id":1e999999}"#,
            400,
        ),
        case("deep nesting 100000", ONE, JSON, nested(100_000), 400),
        case(
            "deep nesting in attributes",
            ONE,
            JSON,
            deep_attributes.to_string(),
            400,
        ),
        case(
            "invalid UTF-8 in a string",
            ONE,
            JSON,
            invalid_utf8.clone(),
            400,
        ),
        case(
            "NUL bytes",
            ONE,
            JSON,
            b"{\"event_id\":\"a\0b\"\0}".to_vec(),
            400,
        ),
        case(
            "huge string over the body limit",
            ONE,
            JSON,
            format!("{{\"event_id\":\"{huge}\"}}"),
            413,
        ),
        case("text/plain", ONE, "text/plain", event.clone(), 415),
        case(
            "NDJSON on the single route",
            ONE,
            NDJSON,
            event.clone(),
            415,
        ),
        Case {
            name: "no content type",
            path: ONE,
            content_type: None,
            body: event.clone().into_bytes(),
            status: 415,
        },
        case("batch: empty body", BATCH, JSON, "", 400),
        case("batch: empty array", BATCH, JSON, "[]", 400),
        case(
            "batch: object instead of array",
            BATCH,
            JSON,
            event.clone(),
            400,
        ),
        case("batch: empty NDJSON", BATCH, NDJSON, "\n\n", 400),
        case(
            "batch: NDJSON invalid UTF-8",
            BATCH,
            NDJSON,
            ndjson_bad_utf8,
            400,
        ),
        case(
            "batch: NDJSON truncated last line",
            BATCH,
            NDJSON,
            format!("{event}\n{}", &event[..20]),
            400,
        ),
        case(
            "batch: JSON invalid UTF-8",
            BATCH,
            JSON,
            [b"[".as_slice(), &invalid_utf8, b"]"].concat(),
            400,
        ),
        case("batch: deep nesting", BATCH, JSON, nested(5_000), 400),
        case(
            "batch: 10k empty objects",
            BATCH,
            JSON,
            serde_json::to_vec(&empties)?,
            400,
        ),
        case(
            "batch: 10k events, the last invalid",
            BATCH,
            JSON,
            serde_json::to_vec(&ten_k)?,
            400,
        ),
        case(
            "batch: over the body limit",
            BATCH,
            JSON,
            format!("[{{\"event_id\":\"{huge}\"}}]"),
            413,
        ),
        case("batch: Avro", BATCH, AVRO, framed.clone(), 415),
        case("avro: empty", ONE, AVRO, Vec::new(), 400),
        case("avro: magic only", ONE, AVRO, vec![0xC3, 0x01], 400),
        case(
            "avro: random bytes",
            ONE,
            AVRO,
            (0..64u8).map(|b| b.wrapping_mul(37)).collect::<Vec<_>>(),
            400,
        ),
        case(
            "avro: unknown fingerprint",
            ONE,
            AVRO,
            unknown_fingerprint,
            400,
        ),
        case(
            "avro: truncated datum",
            ONE,
            AVRO,
            framed[..framed.len() - 5].to_vec(),
            400,
        ),
        case("avro: trailing bytes", ONE, AVRO, trailing, 400),
        case(
            "avro: bare datum truncated",
            ONE,
            AVRO,
            datum[..datum.len() / 2].to_vec(),
            400,
        ),
        case("avro: string length 2^62", ONE, AVRO, huge_length, 400),
        case("avro: JSON text", ONE, AVRO, event.clone(), 400),
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn every_malformed_request_gets_a_4xx_with_a_reason_and_the_host_survives()
-> anyhow::Result<()> {
    let broker = Broker::start()?;
    broker.create_topic(TOPIC, 3)?;
    let port = free_port();
    let config = format!(
        "[kafka]\nbrokers = \"{}\"\n\n[ingest]\nlisten = \"127.0.0.1:{port}\"\nmax_body_bytes = 4194304\n\n[[ingest.route]]\ntopic = \"{TOPIC}\"\nschema = \"{{schemas}}/telemetry_event.avsc\"\n",
        broker.bootstrap()
    );
    let sluice = Sluice::start(&config, port)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let corpus = corpus()?;
    let mut failures = Vec::new();
    for case in &corpus {
        let mut request = client
            .post(format!("{}{}", sluice.url, case.path))
            .body(case.body.clone());
        if let Some(ct) = case.content_type {
            request = request.header("content-type", ct);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: no answer: {e}", case.name));
                continue;
            }
        };
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let message = body["message"].as_str().unwrap_or_default();
        if status != case.status || body["error"].as_str().is_none() || message.is_empty() {
            failures.push(format!(
                "{}: want {} with a reason, got {status} {body}",
                case.name, case.status
            ));
        }
        let health = client.get(format!("{}/healthz", sluice.url)).send().await;
        if !health.is_ok_and(|h| h.status() == 200) {
            failures.push(format!("{}: /healthz failed afterwards", case.name));
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}\n{}",
        failures.len(),
        corpus.len(),
        failures.join("\n"),
        sluice.log()
    );

    // The 10k-event batch names the invalid event by index.
    let mut ten_k: Vec<Value> = (0..10_000).map(|i| sample_event(i, 50)).collect();
    ten_k[9_999]["severity"] = json!("LOUD");
    let body: Value = client
        .post(format!("{}{BATCH}", sluice.url))
        .header("content-type", JSON)
        .body(serde_json::to_vec(&ten_k)?)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(body["rejected"][0]["index"], 9_999, "{body}");
    assert_eq!(body["rejected"][0]["field"], "severity", "{body}");

    // Alive and writing: one valid event is accepted, and it is the only
    // record in the topic.
    let ok = client
        .post(format!("{}{ONE}", sluice.url))
        .header("content-type", JSON)
        .body(sample_event(99, 5).to_string())
        .send()
        .await?;
    assert_eq!(ok.status(), 202);
    let bootstrap = broker.bootstrap();
    let stored = tokio::task::spawn_blocking(move || {
        read_topic(&bootstrap, TOPIC, 2, Duration::from_secs(3))
    })
    .await??;
    assert_eq!(
        stored.len(),
        1,
        "nothing of the malformed requests was written"
    );
    println!(
        "malformed: {} cases, each a 4xx with a reason; host alive; 0 records written by them",
        corpus.len()
    );

    let served = client
        .get(format!("{}/openapi.json", sluice.url))
        .send()
        .await?;
    assert_eq!(served.status(), 200);
    let served: Value = served.json().await?;
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_path("docs/openapi.json"))?)?;
    assert_eq!(served, file, "/openapi.json serves docs/openapi.json");
    Ok(())
}
