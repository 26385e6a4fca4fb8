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
use crate::api::{ErrorBody, ErrorCode, error};
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

/// One host's counters since start: ingest per route, stages, plugins, lag and batch latency
///
/// Counters, not rates (a client computes rates from two snapshots, so
/// several clients do not interfere), read from the same recorder that
/// renders `/metrics`. Histograms carry cumulative buckets and a p99 since
/// start.
#[utoipa::path(get, path = "/admin/stats", tag = "admin", operation_id = "stats",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The snapshot.", body = crate::stats::Stats),
        (status = 401, description = "Missing or wrong admin token.", body = ErrorBody),
        (status = 404, description = "`[admin] token` is not set, so /admin is closed.", body = ErrorBody),
        (status = 503, description = "No metrics recorder in this process.", body = ErrorBody),
    ))]
pub(crate) async fn stats(
    State(state): State<StatsState>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(response) = super::rejection(&state.admin, &headers) {
        return response;
    }
    let Some(handle) = &state.admin.metrics else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "the metrics recorder is not installed in this process",
        );
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

/// The configured pipeline as a graph: routes → topics → stages with their chains → outputs, sinks and dead-letter topics
#[utoipa::path(get, path = "/admin/topology", tag = "admin", operation_id = "topology",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Nodes and edges.", body = crate::stats::Topology),
        (status = 401, description = "Missing or wrong admin token.", body = ErrorBody),
        (status = 404, description = "`[admin] token` is not set, so /admin is closed.", body = ErrorBody),
    ))]
pub(crate) async fn topology(
    State(state): State<StatsState>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(response) = super::rejection(&state.admin, &headers) {
        return response;
    }
    axum::Json(crate::stats::topology(&state.info, crate::stats::now_ms())).into_response()
}
