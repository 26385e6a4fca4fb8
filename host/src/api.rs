//! The JSON error body every Sluice endpoint answers with (ingest and
//! `/admin`), its error codes, and the response that carries it. The
//! OpenAPI document (`admin::openapi`) describes errors with these types,
//! so what the document promises is what the handlers send.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// What went wrong, as a stable machine-readable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// One or more events are invalid.
    InvalidEvent,
    /// The credential is missing or wrong.
    Unauthorized,
    /// The (decompressed) body is over the limit.
    BodyTooLarge,
    /// A content type the endpoint does not read.
    UnsupportedMediaType,
    /// A content coding ingest does not decode.
    UnsupportedContentEncoding,
    /// Too many events in flight.
    TooManyRequests,
    /// The broker did not take the events, or the host is shutting down.
    Unavailable,
    /// `[admin] token` is not set, so `/admin` is closed.
    AdminDisabled,
    /// The query string is malformed.
    InvalidQuery,
    /// The request (body or query) is malformed or names nothing known.
    InvalidRequest,
    /// The topic does not exist.
    UnknownTopic,
    /// This host reads no topics.
    TailUnavailable,
    /// The topic could not be read.
    TailFailed,
    /// `[plugins] store` is off.
    StoreDisabled,
    /// The component failed validation.
    InvalidPlugin,
    /// No such plugin or version.
    NotFound,
    /// The plugin store topic could not be written or read back.
    StoreUnavailable,
    /// No such stage on this host.
    UnknownStage,
    /// The dead-letter topic could not be read or written to.
    DlqUnavailable,
    /// A failure inside the host.
    Internal,
}

/// One rejected event of an ingest request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Rejected {
    /// Position of the event in the request (0-based; for NDJSON, the
    /// position among non-empty lines).
    pub index: usize,
    /// Dotted path of the failing field; empty when the event as a whole is
    /// unreadable.
    pub field: String,
    /// Why it was rejected.
    pub reason: String,
}

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorCode,
    /// A sentence for a person.
    pub message: String,
    /// An ingest error with exactly one rejected event: its failing field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// An ingest error with exactly one rejected event: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// An ingest error: each rejected event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<Vec<Rejected>>,
    /// An ingest error: how many events were written (always 0: nothing of
    /// a refused request is written).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 0)]
    pub accepted: Option<usize>,
}

impl ErrorBody {
    /// A body with just a code and a message.
    pub fn new(error: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error,
            message: message.into(),
            field: None,
            reason: None,
            rejected: None,
            accepted: None,
        }
    }
}

/// The answer `status` with an [`ErrorBody`] of `error` and `message`.
pub fn error(status: StatusCode, error: ErrorCode, message: impl Into<String>) -> Response {
    (status, axum::Json(ErrorBody::new(error, message))).into_response()
}
