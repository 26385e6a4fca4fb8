//! `GET /admin/stats` and `GET /admin/topology`: glue between the admin
//! state and [`crate::stats`], which builds the JSON. Both need the admin
//! token. The router is merged into the admin router by `run`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AdminState;
use crate::stats::{HostInfo, StageStatus};

/// What the two endpoints read: the admin state and the host's own shape.
#[derive(Clone)]
pub struct StatsState {
    /// Token, metrics handle, status board, plugin store.
    pub admin: AdminState,
    /// Identity and configured pipeline.
    pub info: Arc<HostInfo>,
}

/// `/admin/stats` and `/admin/topology`.
pub fn router(state: StatsState) -> Router {
    Router::new()
        .route("/admin/stats", get(stats))
        .route("/admin/topology", get(topology))
        .with_state(state)
}

async fn stats(State(state): State<StatsState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(response) = super::rejection(&state.admin, &headers) {
        return response;
    }
    let Some(handle) = &state.admin.metrics else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"error": "unavailable", "message": "the metrics recorder is not installed in this process"})),
        )
            .into_response();
    };
    let board = &state.admin.board;
    let status: BTreeMap<String, StageStatus> = board
        .snapshot()
        .into_iter()
        .map(|(name, (stage_state, detail))| {
            let stuck = super::is_stuck(&stage_state, board.quiet_for(&name));
            let state = serde_json::to_value(&stage_state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let assignment = board.assignment(&name);
            let status = StageStatus {
                state,
                detail,
                stuck,
                assignment,
            };
            (name, status)
        })
        .collect();
    let mut store_versions = BTreeMap::new();
    if let Some(service) = &state.admin.plugins {
        for report in service.list() {
            for host in report.hosts.iter().filter(|h| h.host == state.info.id()) {
                for stage in &host.stages {
                    store_versions.insert((stage.clone(), report.name.clone()), host.version);
                }
            }
        }
    }
    let at_ms = crate::stats::now_ms();
    let text = handle.render();
    axum::Json(crate::stats::stats(
        &state.info,
        &text,
        &status,
        &store_versions,
        at_ms,
    ))
    .into_response()
}

async fn topology(State(state): State<StatsState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(response) = super::rejection(&state.admin, &headers) {
        return response;
    }
    axum::Json(crate::stats::topology(&state.info, crate::stats::now_ms())).into_response()
}
