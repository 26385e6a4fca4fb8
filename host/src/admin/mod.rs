//! Operator endpoints: liveness, readiness, Prometheus metrics, and the
//! bearer-protected `/admin` API (the plugin store, topic tails, taps, dead
//! letters, stats), and the web console at `/console` that reads it.

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

mod console;
mod dlq;
pub mod openapi;
pub mod stats;
mod tap;

use crate::api::{ErrorBody, ErrorCode, error};
use crate::kafka::BrokerHealth;
use crate::stage::{STUCK_AFTER, StageState, StatusBoard};

/// State behind the operator endpoints.
#[derive(Clone)]
pub struct AdminState {
    /// Broker reachability.
    pub health: BrokerHealth,
    /// Reads topics for `/admin/topics/{topic}/tail`.
    pub tail: Option<Arc<crate::kafka::Tail>>,
    /// Bearer tokens for `/admin`, by name; none leaves `/admin` closed.
    pub tokens: crate::auth::Tokens,
    /// Stage states.
    pub board: StatusBoard,
    /// Renders `/metrics`; absent when another recorder is installed.
    pub metrics: Option<PrometheusHandle>,
    /// The plugin store behind `/admin/plugins`; `None` unless
    /// `[plugins] store = true`.
    pub plugins: Option<Arc<crate::plugins::PluginService>>,
    /// The points `/admin/tap` may tap on this host.
    pub taps: crate::tap::Known,
    /// Dead letters of this host's stages, behind `/admin/dlq`.
    pub dlq: Option<Arc<crate::dlq::Dlq>>,
}

/// `/healthz`, `/readyz`, `/metrics`, `/openapi.json` and `/admin`.
pub fn router(state: AdminState) -> Router {
    let push = axum::routing::put(plugins_push)
        .layer(axum::extract::DefaultBodyLimit::max(PLUGIN_BODY_LIMIT));
    let rollback = axum::routing::post(plugins_rollback);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/admin/topics/{topic}/tail", get(tail))
        .route("/admin/tap", get(tap::tap))
        .route("/admin/plugins", get(plugins_list))
        .route("/admin/plugins/{name}", push)
        .route("/admin/plugins/{name}/rollback", rollback)
        .route("/admin/dlq/{stage}", get(dlq::list))
        .route("/admin/dlq/{stage}/{partition}/{offset}", get(dlq::show))
        .route(
            "/admin/dlq/{stage}/redrive",
            axum::routing::post(dlq::redrive),
        )
        .route("/admin/preview/{stage}", axum::routing::post(dlq::preview))
        .route("/console", get(console::page))
        .route("/console/{asset}", get(console::asset))
        .with_state(state)
}

/// One stage in [`Readiness`].
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct StageReport {
    state: StageState,
    /// What the stage is doing, or why it is retrying.
    detail: String,
    /// True when the stage's thread has shown no progress for [`STUCK_AFTER`].
    stuck: bool,
    /// The input partitions this host's consumer holds, as `topic/partition`.
    assignment: Vec<String>,
}

/// The answer of `/readyz`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Readiness {
    /// Broker reachable, every stage starting or running and not stuck, not
    /// draining, the schema registry reachable.
    ready: bool,
    /// True while the host drains on shutdown.
    draining: bool,
    /// Whether the broker answers.
    #[schema(value_type = BrokerState)]
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

/// Whether the broker answers, in [`Readiness`].
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code, reason = "documents the values of `Readiness::broker`")]
enum BrokerState {
    Reachable,
    Unreachable,
}

/// The answer of `/healthz`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// Always `ok`.
    #[schema(value_type = String, pattern = "^ok$")]
    status: &'static str,
}

/// Liveness
///
/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations", operation_id = "healthz",
    responses((status = 200, description = "The process is up.", body = Health)))]
pub(crate) async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// Readiness: broker reachable, no stage failing or retrying, not shutting down
#[utoipa::path(get, path = "/readyz", tag = "operations", operation_id = "readyz",
    responses(
        (status = 200, description = "Ready.", body = Readiness),
        (status = 503, description = "Not ready; the body says which part.", body = Readiness),
    ))]
pub(crate) async fn readyz(State(state): State<AdminState>) -> Response {
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

/// This document
#[utoipa::path(get, path = "/openapi.json", tag = "operations", operation_id = "openapi",
    responses((status = 200, description = "OpenAPI 3.1 document.", body = Object)))]
pub(crate) async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        openapi::json(),
    )
        .into_response()
}

/// Prometheus metrics
///
/// Every metric Sluice records is described at start, so a fresh host lists
/// the whole set at zero.
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4.", body = String, content_type = "text/plain"),
        (status = 404, description = "No metrics recorder in this process.", body = String, content_type = "text/plain"),
    ))]
pub(crate) async fn metrics(State(state): State<AdminState>) -> Response {
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

/// `None` when the request carries an admin token, else the answer to send.
fn rejection(state: &AdminState, headers: &axum::http::HeaderMap) -> Option<Response> {
    caller(state, headers).err()
}

/// The name of the admin token the request carries (`admin` for
/// `[admin] token`), else the answer to send.
#[allow(
    clippy::result_large_err,
    reason = "the error is the HTTP response itself, returned at once by the handler"
)]
fn caller(state: &AdminState, headers: &axum::http::HeaderMap) -> Result<String, Response> {
    if state.tokens.is_empty() {
        return Err(error(
            StatusCode::NOT_FOUND,
            ErrorCode::AdminDisabled,
            "set [admin] token to enable /admin",
        ));
    }
    match crate::auth::bearer(headers).and_then(|given| state.tokens.identify(given)) {
        Some(name) => Ok(name.to_string()),
        None => Err((
            StatusCode::UNAUTHORIZED,
            [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(ErrorBody::new(
                ErrorCode::Unauthorized,
                "send `Authorization: Bearer TOKEN`",
            )),
        )
            .into_response()),
    }
}

/// The query of `GET /admin/topics/{topic}/tail`.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TailQuery {
    /// How many of the newest records (1 to 1000).
    #[serde(default = "default_tail_limit")]
    #[param(minimum = 1, maximum = 1000, default = 10)]
    limit: usize,
}

fn default_tail_limit() -> usize {
    10
}

/// The newest records of a topic, decoded to JSON (manual assignment, no consumer group)
#[utoipa::path(get, path = "/admin/topics/{topic}/tail", tag = "admin", operation_id = "tailTopic",
    security(("bearer" = [])),
    params(("topic" = String, Path, description = "The topic."), TailQuery),
    responses(
        (status = 200, description = "Records, oldest first.", body = Vec<crate::kafka::TailRecord>),
        (status = 400, description = "The query is malformed or `limit` is outside 1..1000 (`invalid_query`), or the topic could not be read (`tail_failed`).", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token.", body = ErrorBody),
        (status = 404, description = "`[admin] token` is not set, so /admin is closed (`admin_disabled`), the topic does not exist (`unknown_topic`), or this host reads no topics (`tail_unavailable`).", body = ErrorBody),
    ))]
pub(crate) async fn tail(
    State(state): State<AdminState>,
    axum::extract::Path(topic): axum::extract::Path<String>,
    query: Result<axum::extract::Query<TailQuery>, axum::extract::rejection::QueryRejection>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(response) = rejection(&state, &headers) {
        return response;
    }
    let query = match query {
        Ok(axum::extract::Query(query)) => query,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidQuery,
                e.body_text(),
            );
        }
    };
    let Some(reader) = state.tail.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            ErrorCode::TailUnavailable,
            "this host reads no topics",
        );
    };
    if !(1..=1000).contains(&query.limit) {
        return error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidQuery,
            format!("limit is 1 to 1000, not {}", query.limit),
        );
    }
    let limit = query.limit;
    match tokio::task::spawn_blocking(move || reader.last(&topic, limit)).await {
        Ok(Ok(records)) => axum::Json(records).into_response(),
        Ok(Err(e)) if e.is::<crate::kafka::UnknownTopic>() => error(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownTopic,
            format!("{e:#}"),
        ),
        Ok(Err(e)) => error(
            StatusCode::BAD_REQUEST,
            ErrorCode::TailFailed,
            format!("{e:#}"),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            e.to_string(),
        ),
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

/// Who deploys (`token@host`: the admin token's name on this host) and the
/// plugin store, or the refusal.
#[allow(
    clippy::result_large_err,
    reason = "the error is the HTTP response itself, returned at once by the handler"
)]
fn deployer(
    state: &AdminState,
    headers: &axum::http::HeaderMap,
) -> Result<(String, Arc<crate::plugins::PluginService>), Response> {
    let token = caller(state, headers)?;
    let service = state.plugins.clone().ok_or_else(store_disabled)?;
    let by = format!("{token}@{}", service.host());
    Ok((by, service))
}

fn store_disabled() -> Response {
    error(
        StatusCode::NOT_FOUND,
        ErrorCode::StoreDisabled,
        "set [plugins] store = true to deploy plugins",
    )
}

fn refused(e: crate::plugins::Refused) -> Response {
    use crate::plugins::Refused;
    let (status, code) = match &e {
        Refused::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidPlugin),
        Refused::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
        Refused::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::StoreUnavailable),
    };
    self::error(status, code, e.to_string())
}

/// Every plugin in the store: active version, sha256, when and by whom it was deployed, every version, and what each host runs
#[utoipa::path(get, path = "/admin/plugins", tag = "admin", operation_id = "listPlugins",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One object per plugin.", body = Vec<crate::plugins::PluginReport>),
        (status = 401, description = "Missing or wrong admin token.", body = ErrorBody),
        (status = 404, description = "`/admin` disabled (no token, `admin_disabled`) or `[plugins] store` off (`store_disabled`).", body = ErrorBody),
    ))]
pub(crate) async fn plugins_list(
    State(state): State<AdminState>,
    headers: axum::http::HeaderMap,
) -> Response {
    match authorized_store(&state, &headers) {
        Ok(service) => axum::Json(service.list()).into_response(),
        Err(response) => response,
    }
}

/// Push a component (the body) as the next version of plugin `name`
///
/// Validated on this host (a component of the transform world whose init
/// accepts each local stage's config), published to the plugin store topic,
/// and swapped in by every host at its next batch.
#[utoipa::path(put, path = "/admin/plugins/{name}", tag = "admin", operation_id = "pushPlugin",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The plugin's name.")),
    request_body(content = crate::ingest::documented::Binary, content_type = "application/wasm", description = "A WebAssembly component."),
    responses(
        (status = 201, description = "Published and active (`changed: true`).", body = crate::plugins::Published),
        (status = 200, description = "That component is already the active version (`changed: false`).", body = crate::plugins::Published),
        (status = 401, description = "Missing or wrong admin token.", body = ErrorBody),
        (status = 404, description = "`/admin` disabled (no token) or `[plugins] store` off.", body = ErrorBody),
        (status = 422, description = "Validation failed (`invalid_plugin`); `message` gives the reason. Nothing was published.", body = ErrorBody),
        (status = 503, description = "The store topic could not be written or read back.", body = ErrorBody),
    ))]
pub(crate) async fn plugins_push(
    State(state): State<AdminState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (by, service) = match deployer(&state, &headers) {
        Ok(ok) => ok,
        Err(response) => return response,
    };
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
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            e.to_string(),
        ),
    }
}

/// The body of `POST /admin/plugins/{name}/rollback`.
#[derive(serde::Deserialize, Default, utoipa::ToSchema)]
pub(crate) struct RollbackBody {
    /// The version to make active; default the highest below the active one.
    #[serde(default)]
    #[schema(minimum = 1)]
    to: Option<u32>,
}

/// Make an earlier version of plugin `name` active on every host
///
/// Body `{"to": VERSION}` (optional; default the highest version below the
/// active one).
#[utoipa::path(post, path = "/admin/plugins/{name}/rollback", tag = "admin", operation_id = "rollbackPlugin",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The plugin's name.")),
    request_body(content = Option<RollbackBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "Active.", body = crate::plugins::Published),
        (status = 400, description = "The body is not `{\"to\": VERSION}`.", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token.", body = ErrorBody),
        (status = 404, description = "No such plugin or version, or no earlier version (`not_found`), or `/admin` or the store disabled.", body = ErrorBody),
        (status = 422, description = "The target version fails validation on this host.", body = ErrorBody),
        (status = 503, description = "The store topic could not be written or read back.", body = ErrorBody),
    ))]
pub(crate) async fn plugins_rollback(
    State(state): State<AdminState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (by, service) = match deployer(&state, &headers) {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let request: RollbackBody = if body.iter().all(u8::is_ascii_whitespace) {
        RollbackBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidRequest,
                    format!("expected {{\"to\": VERSION}}: {e}"),
                );
            }
        }
    };
    match tokio::task::spawn_blocking(move || service.rollback(&name, request.to, &by)).await {
        Ok(Ok(published)) => axum::Json(published).into_response(),
        Ok(Err(e)) => refused(e),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            e.to_string(),
        ),
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
