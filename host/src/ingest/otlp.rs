//! `POST /v1/logs`: OpenTelemetry logs over OTLP/HTTP (protobuf or JSON),
//! each log record mapped to a telemetry event and produced like a posted
//! event (same routes, validation, acknowledgement and backpressure).
//!
//! The request and response types are `opentelemetry-proto`'s generated
//! ones (prost for protobuf, its serde derive for OTLP/JSON).
//!
//! Mapping of one log record (README, "OTLP logs"):
//!
//! | event field | from |
//! | --- | --- |
//! | `event_id` | the `log.record.uid` attribute, else a digest of the resource and the record (a retried export gets the same ids) |
//! | `type` | `event_name`, else `[ingest.otlp] event_type` (`log`) |
//! | `source` | resource `service.name`, else the scope name, else `otlp` |
//! | `entity_id` | the `[ingest.otlp] entity_attribute` (`entity.id`) of the record, else of the resource, else `service.name`, else `unknown_service` |
//! | `occurred_at` | `time_unix_nano`, else `observed_time_unix_nano`, else now (milliseconds) |
//! | `severity` | `severity_number` 1–8 → DEBUG, 9–12 INFO, 13–16 WARN, 17–20 ERROR, 21–24 FATAL; unset: `severity_text` if it names one (TRACE → DEBUG, WARNING → WARN, CRITICAL → FATAL), else INFO |
//! | `attributes` | the record's attributes; the resource's as `resource.KEY`; `body`; `severity_text`; `span_id`; `scope.name`; non-string values as JSON (bytes as hex) |
//! | `trace_id` | the trace id in lower-case hex, or null when absent or invalid |

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::{Map, Value as Json, json};
use sha2::{Digest, Sha256};

use super::{ApiError, Ingest, Rejected, describe};
use crate::config::OtlpConfig;
use crate::schema::JsonDoc;

/// The two OTLP/HTTP encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json` (OTLP/JSON).
    Json,
}

const ACCEPTED: &[&str] = &["application/x-protobuf", "application/json"];

fn encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        _ => Err(ApiError::UnsupportedMediaType {
            got: if raw.is_empty() {
                "(none)".into()
            } else {
                raw.to_string()
            },
            accepted: ACCEPTED,
        }),
    }
}

/// google.rpc.Status, the body OTLP/HTTP error responses carry (fields 1
/// and 2; `details` is left empty). Derived with prost like the generated
/// types; opentelemetry-proto does not ship it.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize, utoipa::ToSchema)]
#[schema(as = RpcStatus)]
pub struct Status {
    /// The gRPC status code.
    #[prost(int32, tag = "1")]
    code: i32,
    /// Why.
    #[prost(string, tag = "2")]
    message: String,
}

/// Why a body is not an export request, and where in it (`field`, a path
/// such as `resourceLogs[0].scopeLogs[1]`; empty for the body as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAnExport {
    /// Where in the body.
    pub field: String,
    /// What is wrong there.
    pub reason: String,
}

impl NotAnExport {
    fn whole(reason: String) -> Self {
        NotAnExport {
            field: String::new(),
            reason,
        }
    }
}

/// Decode an export request.
pub fn decode(encoding: Encoding, body: &[u8]) -> Result<ExportLogsServiceRequest, NotAnExport> {
    const NOT_JSON: &str = "the body is not OTLP/JSON ExportLogsServiceRequest";
    match encoding {
        Encoding::Protobuf => ExportLogsServiceRequest::decode(body).map_err(|e| {
            NotAnExport::whole(format!(
                "the body is not an OTLP ExportLogsServiceRequest: {e}"
            ))
        }),
        Encoding::Json => {
            let json: Json = serde_json::from_slice(body)
                .map_err(|e| NotAnExport::whole(format!("{NOT_JSON}: {e}")))?;
            let mut path = String::new();
            objects_only(&json, Shape::ExportLogsServiceRequest, &mut path).map_err(|message| {
                NotAnExport {
                    reason: format!(
                        "{NOT_JSON}: {} is a JSON array; OTLP/JSON has a {message:?} object there",
                        if path.is_empty() { "the body" } else { &path }
                    ),
                    field: path.clone(),
                }
            })?;
            serde_json::from_value(json).map_err(|e| NotAnExport::whole(format!("{NOT_JSON}: {e}")))
        }
    }
}

/// The messages of an OTLP/JSON logs export (the proto message names),
/// for [`objects_only`].
#[derive(Debug, Clone, Copy)]
enum Shape {
    ExportLogsServiceRequest,
    ResourceLogs,
    Resource,
    EntityRef,
    ScopeLogs,
    InstrumentationScope,
    LogRecord,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

impl Shape {
    /// The fields of this message that hold a message, each with that
    /// message and whether the field is a list of them.
    fn message_fields(self) -> &'static [(&'static str, Shape, bool)] {
        use Shape as S;
        match self {
            S::ExportLogsServiceRequest => &[("resourceLogs", S::ResourceLogs, true)],
            S::ResourceLogs => &[
                ("resource", S::Resource, false),
                ("scopeLogs", S::ScopeLogs, true),
            ],
            S::Resource => &[
                ("attributes", S::KeyValue, true),
                ("entityRefs", S::EntityRef, true),
            ],
            S::EntityRef => &[],
            S::ScopeLogs => &[
                ("scope", S::InstrumentationScope, false),
                ("logRecords", S::LogRecord, true),
            ],
            S::InstrumentationScope => &[("attributes", S::KeyValue, true)],
            S::LogRecord => &[
                ("body", S::AnyValue, false),
                ("attributes", S::KeyValue, true),
            ],
            S::KeyValue => &[("value", S::AnyValue, false)],
            S::AnyValue => &[
                ("arrayValue", S::ArrayValue, false),
                ("kvlistValue", S::KeyValueList, false),
            ],
            S::ArrayValue => &[("values", S::AnyValue, true)],
            S::KeyValueList => &[("values", S::KeyValue, true)],
        }
    }
}

/// Refuse a JSON array where OTLP/JSON has a message: serde's derive reads
/// a struct from an array too (its fields in order, all defaulted), so
/// `{"resourceLogs": [[]]}` would otherwise pass as one empty ResourceLogs.
/// On error `path` names the array and the `Err` the message expected
/// there. Everything else (wrong scalar types, unknown fields) is left to
/// serde, which reports or ignores it as the OTLP/JSON mapping says.
fn objects_only(value: &Json, message: Shape, path: &mut String) -> Result<(), Shape> {
    let fields = match value {
        Json::Array(_) => return Err(message),
        Json::Object(fields) => fields,
        _ => return Ok(()),
    };
    for &(name, inner, list) in message.message_fields() {
        let Some(field) = fields.get(name) else {
            continue;
        };
        let at = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(name);
        match (list, field) {
            (true, Json::Array(items)) => {
                for (index, item) in items.iter().enumerate() {
                    let at = path.len();
                    path.push_str(&format!("[{index}]"));
                    objects_only(item, inner, path)?;
                    path.truncate(at);
                }
            }
            (true, _) => {}
            (false, field) => objects_only(field, inner, path)?,
        }
        path.truncate(at);
    }
    Ok(())
}

/// Every log record of a request as a telemetry event (natural JSON).
pub fn events(request: &ExportLogsServiceRequest, config: &OtlpConfig) -> Vec<Json> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut out = Vec::new();
    for resource_logs in &request.resource_logs {
        let resource = resource_logs.resource.as_ref();
        let resource_attrs: &[KeyValue] = resource.map(|r| &r.attributes[..]).unwrap_or(&[]);
        let resource_digest = resource.map(Resource::encode_to_vec).unwrap_or_default();
        let service = string_attr(resource_attrs, "service.name");
        for scope_logs in &resource_logs.scope_logs {
            let scope = scope_logs.scope.as_ref().map(|s| s.name.as_str());
            for record in &scope_logs.log_records {
                out.push(event(
                    record,
                    resource_attrs,
                    &resource_digest,
                    service.as_deref(),
                    scope.filter(|s| !s.is_empty()),
                    config,
                    now_ms,
                ));
            }
        }
    }
    out
}

fn event(
    record: &LogRecord,
    resource_attrs: &[KeyValue],
    resource_digest: &[u8],
    service: Option<&str>,
    scope: Option<&str>,
    config: &OtlpConfig,
    now_ms: i64,
) -> Json {
    let event_id = string_attr(&record.attributes, "log.record.uid").unwrap_or_else(|| {
        let mut digest = Sha256::new();
        digest.update((resource_digest.len() as u64).to_le_bytes());
        digest.update(resource_digest);
        digest.update(record.encode_to_vec());
        crate::schema::hex(&digest.finalize()[..16])
    });
    let event_type = if record.event_name.is_empty() {
        config.event_type.clone()
    } else {
        record.event_name.clone()
    };
    let entity = string_attr(&record.attributes, &config.entity_attribute)
        .or_else(|| string_attr(resource_attrs, &config.entity_attribute))
        .or_else(|| service.map(str::to_string))
        .unwrap_or_else(|| "unknown_service".into());
    let source = service
        .or(scope)
        .map(str::to_string)
        .unwrap_or_else(|| "otlp".into());
    let nanos = if record.time_unix_nano != 0 {
        record.time_unix_nano
    } else {
        record.observed_time_unix_nano
    };
    let occurred_at = if nanos == 0 {
        now_ms
    } else {
        (nanos / 1_000_000) as i64
    };
    let mut attributes = Map::new();
    for kv in resource_attrs {
        attributes.insert(
            format!("resource.{}", kv.key),
            Json::String(text(&kv.value)),
        );
    }
    for kv in &record.attributes {
        attributes.insert(kv.key.clone(), Json::String(text(&kv.value)));
    }
    if record.body.is_some() {
        attributes.insert("body".into(), Json::String(text(&record.body)));
    }
    if !record.severity_text.is_empty() {
        attributes.insert(
            "severity_text".into(),
            Json::String(record.severity_text.clone()),
        );
    }
    if valid_id(&record.span_id, 8) {
        attributes.insert(
            "span_id".into(),
            Json::String(crate::schema::hex(&record.span_id)),
        );
    }
    if let Some(scope) = scope {
        attributes.insert("scope.name".into(), Json::String(scope.into()));
    }
    let trace_id = if valid_id(&record.trace_id, 16) {
        Json::String(crate::schema::hex(&record.trace_id))
    } else {
        Json::Null
    };
    json!({
        "event_id": event_id,
        "type": event_type,
        "source": source,
        "entity_id": entity,
        "occurred_at": occurred_at,
        "severity": severity(record.severity_number, &record.severity_text),
        "attributes": attributes,
        "trace_id": trace_id,
    })
}

/// An id of the right length that is not all zeroes (OTLP: anything else
/// is invalid).
fn valid_id(id: &[u8], len: usize) -> bool {
    id.len() == len && id.iter().any(|b| *b != 0)
}

/// The telemetry severity of an OTLP severity number and text.
pub fn severity(number: i32, text: &str) -> &'static str {
    match number {
        1..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARN",
        17..=20 => "ERROR",
        21..=24 => "FATAL",
        _ => match text.trim().to_ascii_uppercase().as_str() {
            "TRACE" | "DEBUG" => "DEBUG",
            "WARN" | "WARNING" => "WARN",
            "ERROR" => "ERROR",
            "FATAL" | "CRITICAL" => "FATAL",
            _ => "INFO",
        },
    }
}

fn string_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| text(&kv.value))
        .filter(|s| !s.is_empty())
}

/// An attribute value as text: strings as they are, anything else as JSON.
fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(_) => to_json(value).to_string(),
        None => String::new(),
    }
}

fn to_json(value: &Option<AnyValue>) -> Json {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        None => Json::Null,
        Some(any_value::Value::StringValue(s)) => Json::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Json::Bool(*b),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(d)) => json!(d),
        Some(any_value::Value::BytesValue(b)) => Json::String(crate::schema::hex(b)),
        Some(any_value::Value::ArrayValue(a)) => {
            Json::Array(a.values.iter().map(|v| to_json(&Some(v.clone()))).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => Json::Object(
            kv.values
                .iter()
                .map(|kv| (kv.key.clone(), to_json(&kv.value)))
                .collect(),
        ),
        Some(any_value::Value::StringValueStrindex(i)) => json!(i),
    }
}

fn respond(
    encoding: Encoding,
    status: StatusCode,
    response: &ExportLogsServiceResponse,
) -> Response {
    let (body, content_type) = match encoding {
        Encoding::Protobuf => (response.encode_to_vec(), "application/x-protobuf"),
        Encoding::Json => {
            // OTLP/JSON leaves unset fields out (`{}` for full success).
            let mut value = serde_json::to_value(response).unwrap_or_else(|_| json!({}));
            if let Some(map) = value.as_object_mut() {
                map.retain(|_, v| !v.is_null());
            }
            (value.to_string().into_bytes(), "application/json")
        }
    };
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// An OTLP error: a google.rpc.Status body in the request's encoding, with
/// the status code (and `Retry-After`) ingest would answer.
fn error(encoding: Encoding, e: ApiError) -> Response {
    let (status, _, message) = e.parts();
    let retry_after = e.retry_after().map(HeaderValue::from);
    // gRPC codes: INVALID_ARGUMENT, UNAUTHENTICATED, RESOURCE_EXHAUSTED,
    // UNAVAILABLE.
    let code = match status {
        StatusCode::UNAUTHORIZED => 16,
        StatusCode::TOO_MANY_REQUESTS => 8,
        StatusCode::SERVICE_UNAVAILABLE => 14,
        _ => 3,
    };
    status_response(encoding, status, code, message, retry_after)
}

fn status_response(
    encoding: Encoding,
    status: StatusCode,
    code: i32,
    message: String,
    retry_after: Option<HeaderValue>,
) -> Response {
    let rpc = Status { code, message };
    let (body, content_type) = match encoding {
        Encoding::Protobuf => (rpc.encode_to_vec(), "application/x-protobuf"),
        Encoding::Json => (
            serde_json::to_vec(&rpc).unwrap_or_default(),
            "application/json",
        ),
    };
    let mut response = (status, [(header::CONTENT_TYPE, content_type)], body).into_response();
    if let Some(value) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// OpenTelemetry logs (OTLP/HTTP)
///
/// An OTLP ExportLogsServiceRequest (protobuf or OTLP/JSON). Each log record
/// becomes a telemetry event by the mapping in the README (OTLP logs) and is
/// routed, validated and produced like a posted event. Bodies may be
/// compressed (`Content-Encoding: gzip`, `deflate` or `zstd`): decompressed
/// as they arrive, their decompressed size bounded by `max_body_bytes` (413
/// above it); another coding gets 415.
#[utoipa::path(post, path = "/v1/logs", tag = "ingest", operation_id = "postLogs",
    security((), ("bearer" = []), ("apiKey" = [])),
    request_body(description = "opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest, as protobuf or OTLP/JSON.",
        content(
            (super::documented::Binary = "application/x-protobuf"),
            (super::documented::ExportLogsJson = "application/json"),
        )),
    responses(
        (status = 200, description = "Every accepted record was acknowledged by the broker. \
            `partialSuccess` counts the records that were rejected (invalid after mapping) and says why \
            (an ExportLogsServiceResponse, as protobuf or OTLP/JSON).",
            content(
                (super::documented::Binary = "application/x-protobuf"),
                (super::documented::ExportLogsResponseJson = "application/json"),
            )),
        (status = 400, description = "The payload cannot be decoded (or decompressed); nothing was written. The body is a google.rpc.Status.",
            content((super::documented::Binary = "application/x-protobuf"), (Status = "application/json"))),
        (status = 401, description = "API keys are configured and the request has none or a wrong one.",
            content((super::documented::Binary = "application/x-protobuf"), (Status = "application/json"))),
        (status = 413, description = "Body (decompressed) over `max_body_bytes`.",
            content((super::documented::Binary = "application/x-protobuf"), (Status = "application/json"))),
        (status = 415, description = "Content type other than application/x-protobuf or application/json, or an unknown Content-Encoding.",
            content((super::documented::Binary = "application/x-protobuf"), (Status = "application/json"))),
        (status = 429, description = "Too many events in flight (`max_in_flight`); nothing was written.",
            content((super::documented::Binary = "application/x-protobuf"), (Status = "application/json")),
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))),
        (status = 503, description = "The broker is unreachable or did not acknowledge, or the host is shutting down; nothing was accepted.",
            content((super::documented::Binary = "application/x-protobuf"), (Status = "application/json")),
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))),
    ))]
pub(crate) async fn post_logs(
    State(ingest): State<Arc<Ingest>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    // Errors before the encoding is known answer in protobuf, OTLP's default.
    let encoding = match encoding(&headers) {
        Ok(e) => e,
        Err(e) => {
            let response = error(Encoding::Protobuf, e);
            crate::metrics::ingest_request(
                "/v1/logs",
                response.status().as_u16(),
                started.elapsed(),
            );
            return response;
        }
    };
    let response = match handle(&ingest, &headers, body, encoding).await {
        Ok(response) => response,
        Err(e) => error(encoding, e),
    };
    crate::metrics::ingest_request("/v1/logs", response.status().as_u16(), started.elapsed());
    response
}

async fn handle(
    ingest: &Arc<Ingest>,
    headers: &HeaderMap,
    body: Body,
    encoding: Encoding,
) -> Result<Response, ApiError> {
    ingest.authorize(headers)?;
    let bytes: Bytes = ingest.read_body(headers, body).await?;
    let request = decode(encoding, &bytes).map_err(|error| ApiError::Invalid {
        message: error.reason.clone(),
        rejected: vec![Rejected {
            index: 0,
            field: error.field,
            reason: error.reason,
        }],
    })?;
    let events = events(&request, &ingest.otlp);
    let total = events.len();
    let mut valid = Vec::with_capacity(total);
    let mut rejected = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let prepared = JsonDoc::from_value(event)
            .map_err(|e| Rejected {
                index,
                field: String::new(),
                reason: e.to_string(),
            })
            .and_then(|doc| ingest.prepare(index, doc.root(), None));
        match prepared {
            Ok(p) => valid.push(p),
            Err(r) => rejected.push(r),
        }
    }
    // Backpressure before anything is produced: OTLP clients retry 429.
    if valid.len() > ingest.in_flight.available_permits() {
        return Err(ApiError::TooManyRequests {
            message: "too many events in flight to the broker; nothing was written".into(),
            retry_after: ingest.retry_after,
        });
    }
    ingest.publish_counted(valid).await?;
    let partial_success = (!rejected.is_empty()).then(|| ExportLogsPartialSuccess {
        rejected_log_records: rejected.len() as i64,
        error_message: format!(
            "{} of {total} log records were rejected (first: {})",
            rejected.len(),
            describe(&rejected[0])
        ),
    });
    if !rejected.is_empty() {
        crate::metrics::ingest_events("", "rejected", rejected.len());
    }
    Ok(respond(
        encoding,
        StatusCode::OK,
        &ExportLogsServiceResponse { partial_success },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn request() -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv(
                            "service.name",
                            any_value::Value::StringValue("checkout".into()),
                        ),
                        kv("host.cores", any_value::Value::IntValue(2)),
                    ],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(
                        opentelemetry_proto::tonic::common::v1::InstrumentationScope {
                            name: "app.logger".into(),
                            ..Default::default()
                        },
                    ),
                    log_records: vec![LogRecord {
                        time_unix_nano: 1_764_400_000_123_456_789,
                        severity_number: 17,
                        severity_text: "ERROR".into(),
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("payment failed".into())),
                        }),
                        attributes: vec![
                            kv("entity.id", any_value::Value::StringValue("order-9".into())),
                            kv("retry", any_value::Value::BoolValue(true)),
                        ],
                        trace_id: (1..=16).collect(),
                        span_id: (1..=8).collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn a_log_record_maps_to_a_telemetry_event() {
        let mapped = events(&request(), &OtlpConfig::default());
        assert_eq!(mapped.len(), 1);
        let e = &mapped[0];
        assert_eq!(e["type"], "log");
        assert_eq!(e["source"], "checkout");
        assert_eq!(e["entity_id"], "order-9");
        assert_eq!(e["occurred_at"], 1_764_400_000_123i64);
        assert_eq!(e["severity"], "ERROR");
        assert_eq!(e["trace_id"], "0102030405060708090a0b0c0d0e0f10");
        assert_eq!(e["attributes"]["body"], "payment failed");
        assert_eq!(e["attributes"]["retry"], "true");
        assert_eq!(e["attributes"]["resource.host.cores"], "2");
        assert_eq!(e["attributes"]["span_id"], "0102030405060708");
        assert_eq!(e["attributes"]["scope.name"], "app.logger");
        assert_eq!(e["event_id"].as_str().unwrap().len(), 32);
        // The same record gets the same id (a retried export upserts).
        assert_eq!(
            events(&request(), &OtlpConfig::default())[0]["event_id"],
            e["event_id"]
        );
    }

    #[test]
    fn protobuf_and_json_decode_to_the_same_request() {
        let request = request();
        let proto = decode(Encoding::Protobuf, &request.encode_to_vec()).unwrap();
        assert_eq!(proto, request);
        let json = serde_json::to_vec(&request).unwrap();
        let text = String::from_utf8(json.clone()).unwrap();
        // OTLP/JSON: hex ids, camelCase keys, 64-bit integers as strings.
        assert!(
            text.contains(r#""traceId":"0102030405060708090a0b0c0d0e0f10""#),
            "{text}"
        );
        assert!(
            text.contains(r#""timeUnixNano":"1764400000123456789""#),
            "{text}"
        );
        assert_eq!(decode(Encoding::Json, &json).unwrap(), request);
        assert!(decode(Encoding::Protobuf, b"\xff\xff\xff\xff").is_err());
        assert!(decode(Encoding::Json, b"{\"resourceLogs\": 7}").is_err());
        // A JSON array is not an export request, even an empty one.
        assert!(decode(Encoding::Json, b"[]").is_err());
        assert!(decode(Encoding::Json, b" [[]]").is_err());
        assert!(decode(Encoding::Json, b" {}").is_ok());
        // Nor is an array anywhere OTLP/JSON has a message (Schemathesis
        // sent `{"resourceLogs": [[], []]}` and got 200).
        for (body, field) in [
            (r#"{"resourceLogs": [[], []]}"#, "resourceLogs[0]"),
            (
                r#"{"resourceLogs": [{"resource": []}]}"#,
                "resourceLogs[0].resource",
            ),
            (
                r#"{"resourceLogs": [{"scopeLogs": [{}, {"logRecords": [{}, []]}]}]}"#,
                "resourceLogs[0].scopeLogs[1].logRecords[1]",
            ),
            (
                r#"{"resourceLogs": [{"scopeLogs": [{"scope": {"attributes": [[]]}}]}]}"#,
                "resourceLogs[0].scopeLogs[0].scope.attributes[0]",
            ),
            (
                r#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"arrayValue": {"values": [{}, []]}}}]}]}]}"#,
                "resourceLogs[0].scopeLogs[0].logRecords[0].body.arrayValue.values[1]",
            ),
        ] {
            let error = decode(Encoding::Json, body.as_bytes()).unwrap_err();
            assert_eq!(error.field, field, "{body}: {error:?}");
            assert!(error.reason.contains("is a JSON array"), "{error:?}");
        }
        // Unknown fields are ignored, arrays in them too (OTLP/JSON mapping).
        let request = decode(
            Encoding::Json,
            br#"{"resourceLogs": [{"future": [[1]], "scopeLogs": [{"logRecords": [{"body": {"stringValue": "x", "future": 1}}]}]}]}"#,
        )
        .unwrap();
        assert_eq!(request.resource_logs[0].scope_logs[0].log_records.len(), 1);
    }

    #[test]
    fn severities_map_by_number_then_text() {
        assert_eq!(severity(1, ""), "DEBUG");
        assert_eq!(severity(9, "whatever"), "INFO");
        assert_eq!(severity(13, ""), "WARN");
        assert_eq!(severity(20, ""), "ERROR");
        assert_eq!(severity(24, ""), "FATAL");
        assert_eq!(severity(0, "warning"), "WARN");
        assert_eq!(severity(0, "CRITICAL"), "FATAL");
        assert_eq!(severity(0, ""), "INFO");
    }
}
