//! Request bodies to events: content-type negotiation, JSON, NDJSON and
//! Avro binary.

use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use serde_json::Value as Json;

use super::errors::{ApiError, Rejected};
use crate::schema::{self, JsonDoc, JsonKind, JsonNode, SchemaSet};

/// Body formats ingest reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`: one object (single route) or an array (batch).
    Json,
    /// `application/x-ndjson`: one JSON object per line (batch only).
    Ndjson,
    /// `avro/binary`: one Avro record, single-object encoded or a bare datum
    /// of the default route's schema (single route only).
    Avro,
}

/// Content types `POST /v1/events` accepts.
pub const SINGLE_TYPES: &[&str] = &["application/json", "avro/binary"];
/// Content types `POST /v1/events/batch` accepts.
pub const BATCH_TYPES: &[&str] = &[
    "application/json",
    "application/x-ndjson",
    "application/ndjson",
];

/// The body format named by the request's `Content-Type`, if `accepted`.
pub fn format(headers: &HeaderMap, accepted: &'static [&'static str]) -> Result<Format, ApiError> {
    let raw = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let format = match essence.as_str() {
        "application/json" => Some(Format::Json),
        "application/x-ndjson" | "application/ndjson" => Some(Format::Ndjson),
        "avro/binary" | "application/avro" => Some(Format::Avro),
        _ => None,
    };
    match format {
        Some(f) if accepted.iter().any(|a| content_type_of(f).contains(a)) => Ok(f),
        _ => Err(ApiError::UnsupportedMediaType {
            got: if raw.is_empty() {
                "(none)".into()
            } else {
                raw.to_string()
            },
            accepted,
        }),
    }
}

fn content_type_of(format: Format) -> &'static [&'static str] {
    match format {
        Format::Json => &["application/json"],
        Format::Ndjson => &["application/x-ndjson", "application/ndjson"],
        Format::Avro => &["avro/binary"],
    }
}

/// A single-event body, read.
pub enum Single<'b> {
    /// A JSON document (the event is its root).
    Json(JsonDoc<'b>),
    /// An Avro body: its natural JSON (for routing and, when the route's
    /// schema differs, re-encoding) and, if it was single-object framed with
    /// a known schema, that schema's fingerprint: the body can then be
    /// forwarded as is.
    Avro {
        /// Natural JSON of the record.
        json: Vec<u8>,
        /// Fingerprint of a framed body's (known) schema.
        framed: Option<[u8; 8]>,
    },
}

/// Read a single-event body.
pub fn single<'b>(
    format: Format,
    body: &'b [u8],
    schemas: &SchemaSet,
    default_schema: &schema::LoadedSchema,
) -> Result<Single<'b>, Rejected> {
    match format {
        Format::Json => parse_json(body, 0).map(Single::Json),
        Format::Avro => decode_avro(body, schemas, default_schema),
        Format::Ndjson => Err(Rejected {
            index: 0,
            field: String::new(),
            reason: "NDJSON is accepted on /v1/events/batch only".into(),
        }),
    }
}

/// A batch body, read: one document holding an array, or one per line.
pub enum Batch<'b> {
    /// `application/json`: an array of events.
    Array(JsonDoc<'b>),
    /// NDJSON: each non-blank line, or why it could not be read.
    Lines(Vec<Result<JsonDoc<'b>, Rejected>>),
}

impl Batch<'_> {
    /// The events in order; an event that cannot be read at all comes back
    /// as its rejection.
    pub fn events(&self) -> Vec<Result<JsonNode<'_>, Rejected>> {
        match self {
            Batch::Array(doc) => doc.root().items().map(Ok).collect(),
            Batch::Lines(lines) => lines
                .iter()
                .map(|line| line.as_ref().map(JsonDoc::root).map_err(Clone::clone))
                .collect(),
        }
    }
}

/// Read a batch body without building a tree per event.
pub fn batch(format: Format, body: &[u8]) -> Result<Batch<'_>, Rejected> {
    match format {
        Format::Json => {
            let unreadable = |e: serde_json::Error| Rejected {
                index: 0,
                field: String::new(),
                reason: format!("body is not a JSON array of events: {e}"),
            };
            match JsonDoc::parse(body) {
                Ok(doc) if doc.root().kind() == JsonKind::Array => Ok(Batch::Array(doc)),
                // Not an array, or not JSON: serde_json words the answer as
                // it always did (a cold path).
                _ => match serde_json::from_slice::<Vec<Json>>(body) {
                    Err(e) => Err(unreadable(e)),
                    Ok(items) => JsonDoc::from_value(&Json::Array(items))
                        .map(Batch::Array)
                        .map_err(unreadable),
                },
            }
        }
        Format::Ndjson => {
            let text = std::str::from_utf8(body).map_err(|e| Rejected {
                index: 0,
                field: String::new(),
                reason: format!("body is not UTF-8: {e}"),
            })?;
            Ok(Batch::Lines(
                text.lines()
                    .filter(|line| !line.trim().is_empty())
                    .enumerate()
                    .map(|(index, line)| parse_json(line.as_bytes(), index))
                    .collect(),
            ))
        }
        Format::Avro => Err(Rejected {
            index: 0,
            field: String::new(),
            reason: "Avro binary is accepted on /v1/events only".into(),
        }),
    }
}

fn parse_json(bytes: &[u8], index: usize) -> Result<JsonDoc<'_>, Rejected> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Rejected {
            index,
            field: String::new(),
            reason: "empty body: expected a JSON object".into(),
        });
    }
    JsonDoc::parse(bytes).map_err(|e| Rejected {
        index,
        field: String::new(),
        reason: format!("invalid JSON: {e}"),
    })
}

/// Validate an Avro body in one pass (every length checked before use, no
/// tree) and render its natural JSON.
fn decode_avro<'b>(
    body: &'b [u8],
    schemas: &SchemaSet,
    default_schema: &schema::LoadedSchema,
) -> Result<Single<'b>, Rejected> {
    let reject = |reason: String| Rejected {
        index: 0,
        field: String::new(),
        reason,
    };
    // Framed by its first byte: C3 01 (single-object) or 00 and an id this
    // host knows (Confluent); anything else is a bare datum.
    let confluent = body.len() >= schema::CONFLUENT_HEADER_LEN
        && body[0] == 0
        && schemas
            .by_id(u32::from_be_bytes([body[1], body[2], body[3], body[4]]))
            .is_some();
    let (json, framed) = if body.starts_with(&schema::MAGIC) || confluent {
        schemas
            .decode_to_json(body)
            .map(|(found, json)| (json, Some(found.fingerprint)))
    } else {
        default_schema.datum_to_json(body).map(|json| (json, None))
    }
    .map_err(|e| reject(format!("invalid Avro body: {e:#}")))?;
    Ok(Single::Avro { json, framed })
}
