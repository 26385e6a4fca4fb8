//! The shapes of ingest's requests and answers as the OpenAPI document
//! shows them, where the handler's own type is bytes: the event (the JSON
//! of the bundled Avro schema, `schemas/telemetry_event.avsc`), the OTLP
//! messages.

use std::borrow::Cow;

use utoipa::openapi::{RefOr, Schema};

use crate::api::ErrorBody;

/// The natural JSON of an event of the route's Avro schema; documented for
/// the bundled `schemas/telemetry_event.avsc`.
pub struct TelemetryEvent;

/// The Avro schema the document shows events of.
const BUNDLED_SCHEMA: &str = include_str!("../../../schemas/telemetry_event.avsc");

impl utoipa::PartialSchema for TelemetryEvent {
    fn schema() -> RefOr<Schema> {
        let mut json = apache_avro::Schema::parse_str(BUNDLED_SCHEMA)
            .map(|schema| crate::schema::json_schema::of(&schema))
            .unwrap_or_else(
                |e| serde_json::json!({"description": format!("unreadable bundled schema: {e}")}),
            );
        json["description"] = serde_json::json!(
            "The natural JSON of an event of the route's Avro schema (shown: \
             schemas/telemetry_event.avsc): records and maps as objects, enums as symbols, \
             unions as the plain value, timestamp-millis as epoch milliseconds (RFC 3339 \
             strings accepted). Fields the schema does not have are rejected."
        );
        serde_json::from_value(json).unwrap_or_else(|_| RefOr::T(Schema::default()))
    }
}

impl utoipa::ToSchema for TelemetryEvent {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("TelemetryEvent")
    }
}

/// Bytes of a binary media type (Avro, protobuf, WebAssembly).
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Binary,
            )))
            .into()
    }
}

impl utoipa::ToSchema for Binary {}

/// `POST /v1/events/batch` as JSON: at least one event (an empty array
/// gets 400 "the batch holds no events", so a client that sends nothing is
/// not told it succeeded).
#[derive(utoipa::ToSchema)]
#[schema(min_items = 1)]
#[allow(
    dead_code,
    reason = "documents the request body; the handler reads bytes"
)]
pub struct EventArray(Vec<TelemetryEvent>);

/// The answer to accepted events.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// How many events the broker acknowledged.
    pub accepted: usize,
    /// With `partial = true`: the events that were not written.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<super::Rejected>,
}

/// An OTLP/JSON `ExportLogsServiceRequest`.
#[derive(utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "documents the request body; the handler reads bytes"
)]
pub struct ExportLogsJson {
    /// The OTLP `resourceLogs`.
    #[schema(value_type = Vec<Object>, rename = "resourceLogs", required = false)]
    resource_logs: Vec<serde_json::Value>,
}

/// The OTLP/JSON `ExportLogsServiceResponse`.
#[derive(utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "documents the answer; the handler encodes it with prost"
)]
pub struct ExportLogsResponseJson {
    /// Present when some records were rejected.
    #[schema(rename = "partialSuccess")]
    partial_success: Option<PartialSuccessJson>,
}

/// How many records were rejected, and why.
#[derive(utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "documents the answer; the handler encodes it with prost"
)]
pub struct PartialSuccessJson {
    /// The count, an int64 as a JSON string (OTLP/JSON).
    #[schema(rename = "rejectedLogRecords")]
    rejected_log_records: Option<String>,
    /// Why.
    #[schema(rename = "errorMessage")]
    error_message: Option<String>,
}

/// The refusals `/v1/events` and `/v1/events/batch` share.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, reason = "documents the answers; ApiError is what is sent")]
pub enum EventRefusals {
    /// Invalid event(s).
    #[response(
        status = 400,
        description = "Invalid event(s): each rejected event with its index, failing field and \
                       reason. Nothing of the request was written (unless `partial = true`)."
    )]
    Invalid(ErrorBody),
    /// No or wrong API key.
    #[response(
        status = 401,
        description = "API keys are configured and the request has none or a wrong one.",
        headers(("WWW-Authenticate" = String, description = "`Bearer`"))
    )]
    Unauthorized(ErrorBody),
    /// Too large.
    #[response(
        status = 413,
        description = "Body (decompressed) over `max_body_bytes`."
    )]
    TooLarge(ErrorBody),
    /// Unreadable content type or coding.
    #[response(
        status = 415,
        description = "A content type this route does not read, or a `Content-Encoding` other \
                       than gzip, deflate and zstd."
    )]
    Unsupported(ErrorBody),
    /// Not taken.
    #[response(
        status = 503,
        description = "The broker is unreachable, did not acknowledge within `ack_timeout_ms`, \
                       `max_in_flight` is reached, or the host is shutting down. Nothing was \
                       accepted.",
        headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))
    )]
    Unavailable(ErrorBody),
}

/// Said of every ingest endpoint's body.
pub const COMPRESSED_BODIES: &str = "Bodies may be compressed (`Content-Encoding: gzip`, \
    `deflate` or `zstd`): decompressed as they arrive, their decompressed size bounded by \
    `max_body_bytes` (413 above it); another coding gets 415.";
