//! Operator endpoints: liveness, readiness, Prometheus metrics, and the
//! bearer-protected `/admin` API (the plugin store, topic tails).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

pub mod stats;
mod tap;

use crate::kafka::BrokerHealth;
use crate::stage::{STUCK_AFTER, StageState, StatusBoard};

/// State behind the operator endpoints.
#[derive(Clone)]
pub struct AdminState {
    /// Broker reachability.
    pub health: BrokerHealth,
    /// Reads topics for `/admin/topics/{topic}/tail`.
    pub tail: Option<Arc<crate::kafka::Tail>>,
    /// Bearer token for `/admin`; `None` leaves `/admin` closed.
    pub token: Option<String>,
    /// Stage states.
    pub board: StatusBoard,
    /// Renders `/metrics`; absent when another recorder is installed.
    pub metrics: Option<PrometheusHandle>,
    /// The plugin store behind `/admin/plugins`; `None` unless
    /// `[plugins] store = true`.
    pub plugins: Option<Arc<crate::plugins::PluginService>>,
    /// The points `/admin/tap` may tap on this host.
    pub taps: crate::tap::Known,
}

/// The OpenAPI 3.1 document of the HTTP API (`docs/openapi.json`).
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// `/healthz`, `/readyz`, `/metrics`, `/openapi.json` and `/admin`.
pub fn router(state: AdminState) -> Router {
    let push = axum::routing::put(plugins_push)
        .layer(axum::extract::DefaultBodyLimit::max(PLUGIN_BODY_LIMIT));
    let rollback = axum::routing::post(plugins_rollback);
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/admin/topics/{topic}/tail", get(tail))
        .route("/admin/tap", get(tap::tap))
        .route("/admin/plugins", get(plugins_list))
        .route("/admin/plugins/{name}", push)
        .route("/admin/plugins/{name}/rollback", rollback)
        .with_state(state)
}

#[derive(Serialize)]
struct StageReport {
    state: StageState,
    detail: String,
    /// True when the stage's thread has shown no progress for [`STUCK_AFTER`].
    stuck: bool,
    /// The input partitions this host's consumer holds, as `topic/partition`.
    assignment: Vec<String>,
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    /// True while the host drains on shutdown.
    draining: bool,
    broker: &'static str,
    stages: BTreeMap<String, StageReport>,
    /// Set while a stage holds a batch because the external schema registry
    /// is unreachable (e.g. `unreachable for 12 s: ...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    schema_registry: Option<String>,
}

/// A running stage is stuck when its thread has been quiet past
/// [`STUCK_AFTER`]; retrying and starting stages report their own state.
fn is_stuck(state: &StageState, quiet: Option<Duration>) -> bool {
    *state == StageState::Running && quiet.is_some_and(|quiet| quiet > STUCK_AFTER)
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let broker_ok = state.health.is_reachable();
    let stages: BTreeMap<String, StageReport> = state
        .board
        .snapshot()
        .into_iter()
        .map(|(name, (stage_state, detail))| {
            let stuck = is_stuck(&stage_state, state.board.quiet_for(&name));
            let assignment = state
                .board
                .assignment(&name)
                .into_iter()
                .map(|(topic, partition)| format!("{topic}/{partition}"))
                .collect();
            let report = StageReport {
                state: stage_state,
                detail,
                stuck,
                assignment,
            };
            (name, report)
        })
        .collect();
    let stages_ok = stages
        .values()
        .all(|s| !s.stuck && matches!(s.state, StageState::Running | StageState::Starting));
    let draining = state.board.is_draining();
    let registry = crate::schema::registry_client::outage()
        .map(|(secs, why)| format!("unreachable for {secs} s: {why}"));
    let ready = broker_ok && stages_ok && !draining && registry.is_none();
    let body = Readiness {
        ready,
        draining,
        broker: if broker_ok {
            "reachable"
        } else {
            "unreachable"
        },
        stages,
        schema_registry: registry,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

async fn metrics(State(state): State<AdminState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed").into_response(),
    }
}

/// `None` when the request carries the admin token, else the answer to send.
fn rejection(state: &AdminState, headers: &axum::http::HeaderMap) -> Option<Response> {
    let presented = crate::auth::bearer(headers);
    match (&state.token, presented) {
        (None, _) => Some(
            (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": "admin_disabled", "message": "set [admin] token to enable /admin"})),
        )
            .into_response()),
        (Some(token), Some(given)) if crate::auth::secret_matches(token, given) => None,
        _ => Some(
            (
            StatusCode::UNAUTHORIZED,
            [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(serde_json::json!({"error": "unauthorized", "message": "send `Authorization: Bearer TOKEN`"})),
        )
            .into_response()),
    }
}

#[derive(serde::Deserialize)]
struct TailQuery {
    #[serde(default = "default_tail_limit")]
    limit: usize,
}

fn default_tail_limit() -> usize {
    10
}

async fn tail(
    State(state): State<AdminState>,
    axum::extract::Path(topic): axum::extract::Path<String>,
    query: Result<axum::extract::Query<TailQuery>, axum::extract::rejection::QueryRejection>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(response) = rejection(&state, &headers) {
        return response;
    }
    let error = |status: StatusCode, error: &str, message: String| {
        (
            status,
            axum::Json(serde_json::json!({"error": error, "message": message})),
        )
            .into_response()
    };
    let query = match query {
        Ok(axum::extract::Query(query)) => query,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()),
    };
    let Some(reader) = state.tail.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "tail_unavailable",
            "this host reads no topics".into(),
        );
    };
    let limit = query.limit.clamp(1, 1000);
    match tokio::task::spawn_blocking(move || reader.last(&topic, limit)).await {
        Ok(Ok(records)) => axum::Json(records).into_response(),
        Ok(Err(e)) if e.is::<crate::kafka::UnknownTopic>() => {
            error(StatusCode::NOT_FOUND, "unknown_topic", format!("{e:#}"))
        }
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, "tail_failed", format!("{e:#}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// Largest component `PUT /admin/plugins/{name}` accepts.
const PLUGIN_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// The plugin store, for a caller with the admin token: 401/404 otherwise,
/// or 404 `store_disabled` when `[plugins] store` is off.
#[allow(
    clippy::result_large_err,
    reason = "the error is the HTTP response itself, returned at once by the handler"
)]
fn authorized_store(
    state: &AdminState,
    headers: &axum::http::HeaderMap,
) -> Result<Arc<crate::plugins::PluginService>, Response> {
    if let Some(response) = rejection(state, headers) {
        return Err(response);
    }
    state.plugins.clone().ok_or_else(store_disabled)
}

fn store_disabled() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({"error": "store_disabled", "message": "set [plugins] store = true to deploy plugins"})),
    )
        .into_response()
}

fn refused(e: crate::plugins::Refused) -> Response {
    use crate::plugins::Refused;
    let (status, error) = match &e {
        Refused::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_plugin"),
        Refused::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        Refused::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
    };
    (
        status,
        axum::Json(serde_json::json!({"error": error, "message": e.to_string()})),
    )
        .into_response()
}

/// `GET /admin/plugins`: every plugin in the store.
async fn plugins_list(State(state): State<AdminState>, headers: axum::http::HeaderMap) -> Response {
    match authorized_store(&state, &headers) {
        Ok(service) => axum::Json(service.list()).into_response(),
        Err(response) => response,
    }
}

/// `PUT /admin/plugins/{name}`: the body is a component; validated, then
/// published as the next version and made active.
async fn plugins_push(
    State(state): State<AdminState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let service = match authorized_store(&state, &headers) {
        Ok(service) => service,
        Err(response) => return response,
    };
    let by = service.host().to_string();
    match tokio::task::spawn_blocking(move || service.push(&name, &body, &by)).await {
        Ok(Ok(published)) => {
            let status = if published.changed {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, axum::Json(published)).into_response()
        }
        Ok(Err(e)) => refused(e),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(serde::Deserialize, Default)]
struct RollbackBody {
    #[serde(default)]
    to: Option<u32>,
}

/// `POST /admin/plugins/{name}/rollback`: body `{"to": N}` (optional).
async fn plugins_rollback(
    State(state): State<AdminState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let service = match authorized_store(&state, &headers) {
        Ok(service) => service,
        Err(response) => return response,
    };
    let request: RollbackBody = if body.iter().all(u8::is_ascii_whitespace) {
        RollbackBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(serde_json::json!({"error": "invalid_request", "message": format!("expected {{\"to\": VERSION}}: {e}")})),
                )
                    .into_response();
            }
        }
    };
    let by = service.host().to_string();
    match tokio::task::spawn_blocking(move || service.rollback(&name, request.to, &by)).await {
        Ok(Ok(published)) => axum::Json(published).into_response(),
        Ok(Err(e)) => refused(e),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    /// Every path routed with `.route("PATH", ...)` in the host's source.
    fn routed_paths(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("source dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                routed_paths(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source file");
                for piece in text.split(".route(").skip(1) {
                    let Some(piece) = piece.trim_start().strip_prefix('"') else {
                        continue;
                    };
                    if let Some(end) = piece.find('"')
                        && piece.starts_with('/')
                    {
                        out.insert(piece[..end].to_string());
                    }
                }
            }
        }
    }

    #[test]
    fn the_openapi_document_lists_exactly_the_routes_the_router_has() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let documented: BTreeSet<String> = doc["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .cloned()
            .collect();
        let mut routed = BTreeSet::new();
        routed_paths(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut routed,
        );
        assert!(routed.contains("/v1/events"), "{routed:?}");
        assert_eq!(
            documented, routed,
            "docs/openapi.json paths (left) and the router's routes (right) differ"
        );
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("path item") {
                let responses = operation["responses"].as_object().expect("responses");
                assert!(!responses.is_empty(), "{method} {path} documents no status");
                for (status, response) in responses {
                    assert!(
                        response["description"].is_string(),
                        "{method} {path} {status} has no description"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod stuck_tests {
    use super::*;

    #[test]
    fn a_quiet_running_stage_is_stuck() {
        let long = Some(STUCK_AFTER + Duration::from_secs(1));
        assert!(is_stuck(&StageState::Running, long));
        assert!(!is_stuck(
            &StageState::Running,
            Some(Duration::from_secs(1))
        ));
        assert!(!is_stuck(&StageState::Retrying, long));
        let board = StatusBoard::default();
        board.set("s", StageState::Running, "consuming");
        assert!(
            board
                .quiet_for("s")
                .is_some_and(|q| q < Duration::from_secs(5))
        );
        assert!(board.quiet_for("other").is_none());
    }
}
