//! Request bodies to events: content-type negotiation, JSON, NDJSON and
//! Avro binary.

use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use serde_json::Value as Json;

use super::errors::{ApiError, Rejected};
use crate::schema::{self, SchemaSet};

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

/// Parse a single-event body.
pub fn single(
    format: Format,
    body: &[u8],
    schemas: &SchemaSet,
    default_schema: &schema::LoadedSchema,
) -> Result<Json, Rejected> {
    match format {
        Format::Json => parse_json(body, 0),
        Format::Avro => decode_avro(body, schemas, default_schema),
        Format::Ndjson => Err(Rejected {
            index: 0,
            field: String::new(),
            reason: "NDJSON is accepted on /v1/events/batch only".into(),
        }),
    }
}

/// Parse a batch body into its events; an event that cannot be read at all
/// comes back as its rejection.
pub fn batch(format: Format, body: &[u8]) -> Result<Vec<Result<Json, Rejected>>, Rejected> {
    match format {
        Format::Json => {
            let items: Vec<Json> = serde_json::from_slice(body).map_err(|e| Rejected {
                index: 0,
                field: String::new(),
                reason: format!("body is not a JSON array of events: {e}"),
            })?;
            Ok(items.into_iter().map(Ok).collect())
        }
        Format::Ndjson => {
            let text = std::str::from_utf8(body).map_err(|e| Rejected {
                index: 0,
                field: String::new(),
                reason: format!("body is not UTF-8: {e}"),
            })?;
            Ok(text
                .lines()
                .filter(|line| !line.trim().is_empty())
                .enumerate()
                .map(|(index, line)| parse_json(line.as_bytes(), index))
                .collect())
        }
        Format::Avro => Err(Rejected {
            index: 0,
            field: String::new(),
            reason: "Avro binary is accepted on /v1/events only".into(),
        }),
    }
}

fn parse_json(bytes: &[u8], index: usize) -> Result<Json, Rejected> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Rejected {
            index,
            field: String::new(),
            reason: "empty body: expected a JSON object".into(),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| Rejected {
        index,
        field: String::new(),
        reason: format!("invalid JSON: {e}"),
    })
}

fn decode_avro(
    body: &[u8],
    schemas: &SchemaSet,
    default_schema: &schema::LoadedSchema,
) -> Result<Json, Rejected> {
    let reject = |reason: String| Rejected {
        index: 0,
        field: String::new(),
        reason,
    };
    let value = if body.starts_with(&schema::MAGIC) {
        schemas.decode(body).map(|(_, v)| v)
    } else {
        default_schema.decode_datum(body)
    }
    .map_err(|e| reject(format!("invalid Avro body: {e:#}")))?;
    schema::avro_to_json(&value).map_err(|e| reject(format!("{e:#}")))
}
