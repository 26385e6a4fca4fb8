//! `/admin/dlq`: a stage's dead letters listed and counted by reason, one
//! shown with its headers and decoded value, and selected ones redriven to
//! the stage's input (the logic is in [`crate::dlq`]). Every answer that
//! is not a success is `{"error", "message"}`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AdminState;
use crate::dlq::api::{ListQuery, RedriveRequest};
use crate::dlq::{Dlq, DlqError};

fn error(status: StatusCode, error: &str, message: String) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"error": error, "message": message})),
    )
        .into_response()
}

fn refused(e: DlqError) -> Response {
    match e {
        DlqError::BadRequest(m) => error(StatusCode::BAD_REQUEST, "invalid_request", m),
        DlqError::UnknownStage(m) => error(StatusCode::NOT_FOUND, "unknown_stage", m),
        DlqError::NotFound(m) => error(StatusCode::NOT_FOUND, "not_found", m),
        DlqError::Unavailable(m) => error(StatusCode::SERVICE_UNAVAILABLE, "dlq_unavailable", m),
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
            "unknown_stage",
            "this host runs no stages".into(),
        )
    })?;
    Ok((by, dlq))
}

async fn blocking<T: serde::Serialize + Send + 'static>(
    work: impl FnOnce() -> Result<T, DlqError> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(answer)) => axum::Json(answer).into_response(),
        Ok(Err(e)) => refused(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// `GET /admin/dlq/{stage}?plugin=&error=&limit=&from=&partition=`.
pub(super) async fn list(
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
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()),
    };
    blocking(move || dlq.list(&stage, &query)).await
}

/// `GET /admin/dlq/{stage}/{partition}/{offset}`.
pub(super) async fn show(
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
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()),
    };
    blocking(move || dlq.show(&stage, partition, offset)).await
}

/// `POST /admin/dlq/{stage}/redrive`, body [`RedriveRequest`].
pub(super) async fn redrive(
    State(state): State<AdminState>,
    Path(stage): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (by, dlq) = match authorized(&state, &headers) {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let request: RedriveRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!(
                    "expected a JSON object selecting dead letters ({{\"all\": true}}, {{\"plugin\": P, \"error\": E}} or {{\"records\": [{{\"partition\": P, \"offset\": O}}]}}, optionally \"through\": [\"name@vN\"]): {e}"
                ),
            );
        }
    };
    blocking(move || dlq.redrive(&stage, &request, &by)).await
}
