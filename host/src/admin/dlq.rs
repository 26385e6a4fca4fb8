//! `/admin/dlq`: a stage's dead letters listed and counted by reason, one
//! shown with its headers and decoded value, and selected ones redriven to
//! the stage's input (the logic is in [`crate::dlq`]); and the preview of a
//! plugin version on the stage's recent input ([`crate::preview`]), which
//! reads with the same service. Every answer that
//! is not a success is `{"error", "message"}`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AdminState;
use crate::api::{ErrorBody, ErrorCode, error};
use crate::dlq::api::{ListAnswer, ListQuery, RedriveAnswer, RedriveRequest, ShowAnswer};
use crate::dlq::{Dlq, DlqError};
use crate::preview::{PreviewAnswer, PreviewRequest};

fn refused(e: DlqError) -> Response {
    match e {
        DlqError::BadRequest(m) => error(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, m),
        DlqError::UnknownStage(m) => error(StatusCode::NOT_FOUND, ErrorCode::UnknownStage, m),
        DlqError::NotFound(m) => error(StatusCode::NOT_FOUND, ErrorCode::NotFound, m),
        DlqError::Unavailable(m) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::DlqUnavailable,
            m,
        ),
    }
}

/// The caller's token name and the dead-letter service, or the answer.
#[allow(
    clippy::result_large_err,
    reason = "the error is the HTTP response itself, returned at once by the handler"
)]
fn authorized(
    state: &AdminState,
    headers: &axum::http::HeaderMap,
) -> Result<(String, Arc<Dlq>), Response> {
    let by = super::caller(state, headers)?;
    let dlq = state.dlq.clone().ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownStage,
            "this host runs no stages",
        )
    })?;
    Ok((by, dlq))
}

/// The JSON body as `T`, or 400 `invalid_request` saying the body
/// `expected` and why it is not that.
#[allow(
    clippy::result_large_err,
    reason = "the error is the HTTP response itself, returned at once by the handler"
)]
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8], expected: &str) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            format!("expected {expected}: {e}"),
        )
    })
}

async fn blocking<T: serde::Serialize + Send + 'static>(
    work: impl FnOnce() -> Result<T, DlqError> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(answer)) => axum::Json(answer).into_response(),
        Ok(Err(e)) => refused(e),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            e.to_string(),
        ),
    }
}

/// A stage's dead letters: counts by (plugin, error) of every match and the first `limit` entries
#[utoipa::path(get, path = "/admin/dlq/{stage}", tag = "admin", operation_id = "listDeadLetters",
    security(("bearer" = [])),
    params(("stage" = String, Path, description = "A stage of this host."), ListQuery),
    responses(
        (status = 200, description = "The matches, counted and listed.", body = ListAnswer),
        (status = 400, description = "A query parameter is malformed or out of range.", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token.", body = ErrorBody),
        (status = 404, description = "No such stage on this host (`unknown_stage`), or `[admin] token` is not set (`admin_disabled`).", body = ErrorBody),
        (status = 503, description = "The dead-letter topic could not be read, or a redriven record was not acknowledged (`dlq_unavailable`).", body = ErrorBody),
    ))]
pub(crate) async fn list(
    State(state): State<AdminState>,
    Path(stage): Path<String>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
    headers: axum::http::HeaderMap,
) -> Response {
    let (_, dlq) = match authorized(&state, &headers) {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let query = match query {
        Ok(Query(query)) => query,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidQuery,
                e.body_text(),
            );
        }
    };
    blocking(move || dlq.list(&stage, &query)).await
}

/// One dead letter with every header and its value decoded to JSON
#[utoipa::path(get, path = "/admin/dlq/{stage}/{partition}/{offset}", tag = "admin", operation_id = "showDeadLetter",
    security(("bearer" = [])),
    params(
        ("stage" = String, Path, description = "A stage of this host."),
        ("partition" = i32, Path, description = "Partition of the dead-letter topic.", minimum = 0),
        ("offset" = i64, Path, description = "Offset in it.", minimum = 0),
    ),
    responses(
        (status = 200, description = "The dead letter.", body = ShowAnswer),
        (status = 400, description = "Partition or offset is not an integer.", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token.", body = ErrorBody),
        (status = 404, description = "No such stage (`unknown_stage`), no dead letter of the stage there (`not_found`), or `[admin] token` is not set.", body = ErrorBody),
        (status = 503, description = "The dead-letter topic could not be read, or a redriven record was not acknowledged (`dlq_unavailable`).", body = ErrorBody),
    ))]
pub(crate) async fn show(
    State(state): State<AdminState>,
    path: Result<Path<(String, i32, i64)>, axum::extract::rejection::PathRejection>,
    headers: axum::http::HeaderMap,
) -> Response {
    let (_, dlq) = match authorized(&state, &headers) {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let (stage, partition, offset) = match path {
        Ok(Path(path)) => path,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidRequest,
                e.body_text(),
            );
        }
    };
    blocking(move || dlq.show(&stage, partition, offset)).await
}

/// Produce selected dead letters back to the stage's input (idempotent producer, acks=all), optionally through plugins first; each record records who (the token's name) and which redrive
#[utoipa::path(post, path = "/admin/dlq/{stage}/redrive", tag = "admin", operation_id = "redriveDeadLetters",
    security(("bearer" = [])),
    params(("stage" = String, Path, description = "A stage of this host.")),
    request_body(content = RedriveRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Every redriven record was acknowledged.", body = RedriveAnswer),
        (status = 400, description = "The body selects no records or several ways, is not JSON, or names a `through` plugin or version that is not there.", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token.", body = ErrorBody),
        (status = 404, description = "No such stage on this host (`unknown_stage`), or `[admin] token` is not set.", body = ErrorBody),
        (status = 503, description = "The dead-letter topic could not be read, or a redriven record was not acknowledged (`dlq_unavailable`).", body = ErrorBody),
    ))]
pub(crate) async fn redrive(
    State(state): State<AdminState>,
    Path(stage): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (by, dlq) = match authorized(&state, &headers) {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let request: RedriveRequest = match json_body(
        &body,
        "a JSON object selecting dead letters ({\"all\": true}, {\"plugin\": P, \"error\": E} or {\"records\": [{\"partition\": P, \"offset\": O}]}, optionally \"through\": [\"name@vN\"])",
    ) {
        Ok(request) => request,
        Err(response) => return response,
    };
    blocking(move || dlq.redrive(&stage, &request, &by)).await
}

/// What a plugin version would change: the stage's input since `since` run through its chain as it runs now and with the candidate version, and the events whose outcome differs (nothing is produced or committed)
#[utoipa::path(post, path = "/admin/preview/{stage}", tag = "admin", operation_id = "previewPluginVersion",
    security(("bearer" = [])),
    params(("stage" = String, Path, description = "A stage of this host.")),
    request_body(content = PreviewRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Both chains ran over the window.", body = PreviewAnswer),
        (status = 400, description = "The body is not JSON of this shape, names a plugin outside the stage's chain or a version that is not there, or a bound is out of range.", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token.", body = ErrorBody),
        (status = 404, description = "No such stage on this host (`unknown_stage`), or `[admin] token` is not set.", body = ErrorBody),
        (status = 503, description = "The stage's input could not be read (`dlq_unavailable`).", body = ErrorBody),
    ))]
pub(crate) async fn preview(
    State(state): State<AdminState>,
    Path(stage): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (_, dlq) = match authorized(&state, &headers) {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let request: PreviewRequest = match json_body(
        &body,
        "{\"plugin\": NAME, \"version\": \"vN\", \"since\": \"1h\"}",
    ) {
        Ok(request) => request,
        Err(response) => return response,
    };
    blocking(move || crate::preview::preview(&dlq, &stage, &request)).await
}
