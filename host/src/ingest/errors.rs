//! Every way ingest can say no, and the JSON body each answer carries.

use crate::api::{ErrorBody, ErrorCode};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub use crate::api::Rejected;

/// An ingest failure, rendered as an HTTP status and a JSON body.
#[derive(Debug)]
pub enum ApiError {
    /// 400: one or more events are invalid; nothing was written.
    Invalid {
        /// Summary sentence.
        message: String,
        /// Each rejected event.
        rejected: Vec<Rejected>,
    },
    /// 401: the API key is missing or wrong.
    Unauthorized,
    /// 413: the body exceeds `max_body_bytes`.
    TooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// 415: the content type is not one ingest reads.
    UnsupportedMediaType {
        /// What the request said.
        got: String,
        /// What the route accepts.
        accepted: &'static [&'static str],
    },
    /// 415: the content coding (`Content-Encoding`) is not one ingest
    /// decodes.
    UnsupportedEncoding {
        /// What the request said.
        got: String,
        /// The codings ingest decodes.
        accepted: &'static [&'static str],
    },
    /// 429: too many events in flight (OTLP's answer to backpressure); try
    /// again after `retry_after` seconds.
    TooManyRequests {
        /// Why.
        message: String,
        /// Seconds for `Retry-After`.
        retry_after: u64,
    },
    /// 503: the broker did not take the events; try again after
    /// `retry_after` seconds.
    Unavailable {
        /// Why.
        message: String,
        /// Seconds for `Retry-After`.
        retry_after: u64,
    },
}

impl ApiError {
    /// The HTTP status, the error code and the message of the answer.
    pub fn parts(&self) -> (StatusCode, ErrorCode, String) {
        match self {
            ApiError::Invalid { message, .. } => (
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidEvent,
                message.clone(),
            ),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "missing or unknown API key: send `Authorization: Bearer KEY` or `X-Api-Key: KEY`"
                    .into(),
            ),
            ApiError::TooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::BodyTooLarge,
                format!("request body exceeds the limit of {limit} bytes; split the batch"),
            ),
            ApiError::UnsupportedMediaType { got, accepted } => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                format!(
                    "content type `{got}` is not accepted here; use one of: {}",
                    accepted.join(", ")
                ),
            ),
            ApiError::UnsupportedEncoding { got, accepted } => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedContentEncoding,
                format!(
                    "content encoding `{got}` is not accepted; use one of: {}",
                    accepted.join(", ")
                ),
            ),
            ApiError::TooManyRequests { message, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyRequests,
                message.clone(),
            ),
            ApiError::Unavailable { message, .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                message.clone(),
            ),
        }
    }

    /// Seconds for `Retry-After`, for the answers that carry it.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::Unavailable { retry_after, .. }
            | ApiError::TooManyRequests { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        let (field, reason, rejected) = match &self {
            ApiError::Invalid { rejected, .. } if rejected.len() == 1 => (
                Some(rejected[0].field.clone()),
                Some(rejected[0].reason.clone()),
                Some(rejected.clone()),
            ),
            ApiError::Invalid { rejected, .. } => (None, None, Some(rejected.clone())),
            _ => (None, None, None),
        };
        let body = ErrorBody {
            error: code,
            message,
            field,
            reason,
            rejected,
            accepted: Some(0),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(retry_after) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        if let ApiError::Unauthorized = self {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
