//! `GET /admin/tap`: live events at a route, a topic, a plugin's output in
//! a stage's chain or a stage's dead letters, streamed as NDJSON (one
//! [`crate::tap::Tapped`] per line, sent as each arrives) until `limit`
//! events or the client hangs up.

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AdminState;
use crate::api::{ErrorBody, ErrorCode, error};
use crate::tap::{Point, Subscription};

/// Copies a tap buffers for a slow reader before it drops them.
const TAP_CAPACITY: usize = 4096;

/// Size above which queued copies go out as the next chunk.
const CHUNK_BYTES: usize = 64 * 1024;

/// The query of `GET /admin/tap`: exactly one of `route`, `topic`,
/// `stage` + `plugin`, `dead_letters`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TapQuery {
    /// An ingest route's event type.
    pub route: Option<String>,
    /// A topic a stage on this host reads.
    pub topic: Option<String>,
    /// A stage, with `plugin`.
    pub stage: Option<String>,
    /// A plugin in `stage`'s chain.
    pub plugin: Option<String>,
    /// A stage whose dead letters to tap.
    pub dead_letters: Option<String>,
    /// Share of events copied, 0 to 1.
    #[serde(default = "one")]
    #[param(minimum = 0, maximum = 1, default = 1)]
    pub sample: f64,
    /// Stop after this many events (1 to 100000).
    #[serde(default = "default_limit")]
    #[param(minimum = 1, maximum = 100000, default = 100)]
    pub limit: usize,
}

fn one() -> f64 {
    1.0
}

fn default_limit() -> usize {
    100
}

/// The tap point a query names, or why it names none.
pub fn point(query: &TapQuery) -> Result<Point, String> {
    let mut points = Vec::new();
    if let Some(route) = &query.route {
        points.push(Point::Route {
            route: route.clone(),
        });
    }
    if let Some(topic) = &query.topic {
        points.push(Point::Topic {
            topic: topic.clone(),
        });
    }
    match (&query.stage, &query.plugin) {
        (Some(stage), Some(plugin)) => points.push(Point::Plugin {
            stage: stage.clone(),
            plugin: plugin.clone(),
        }),
        (None, None) => {}
        _ => return Err("`stage` and `plugin` go together".into()),
    }
    if let Some(stage) = &query.dead_letters {
        points.push(Point::DeadLetters {
            stage: stage.clone(),
        });
    }
    match points.len() {
        1 => Ok(points.remove(0)),
        _ => Err("name exactly one of: route, topic, stage + plugin, dead_letters".into()),
    }
}

/// Live events at an ingest route, a topic, a plugin's output in a stage's chain or a stage's dead letters, streamed as NDJSON until `limit` events
#[utoipa::path(get, path = "/admin/tap", tag = "admin", operation_id = "tap",
    security(("bearer" = [])),
    params(TapQuery),
    responses(
        (status = 200, description = "One JSON object per line, sent as each event passes the point.", body = crate::tap::Tapped, content_type = "application/x-ndjson"),
        (status = 400, description = "Not exactly one tap point, a point this host does not have, or `sample` outside 0..1.", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token.", body = ErrorBody),
        (status = 404, description = "`[admin] token` is not set, so /admin is closed.", body = ErrorBody),
    ))]
pub(crate) async fn tap(
    State(state): State<AdminState>,
    query: Result<Query<TapQuery>, axum::extract::rejection::QueryRejection>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(response) = super::rejection(&state, &headers) {
        return response;
    }
    let query = match query {
        Ok(Query(query)) => query,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidRequest,
                e.body_text(),
            );
        }
    };
    let point = match point(&query).and_then(|p| state.taps.check(&p).map(|()| p)) {
        Ok(point) => point,
        Err(message) => return error(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message),
    };
    if !(0.0..=1.0).contains(&query.sample) {
        return error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            "sample is a share from 0 to 1",
        );
    }
    let limit = query.limit.clamp(1, 100_000);
    let subscription = crate::tap::subscribe(point, query.sample, TAP_CAPACITY);
    let lines = futures::stream::unfold(
        (subscription, limit),
        |(mut subscription, left): (Subscription, usize)| async move {
            if left == 0 {
                return None;
            }
            // Wait for one copy, then take what else is already queued, so
            // a busy tap writes a few large chunks rather than one per event.
            let first = subscription.receiver.recv().await?;
            let mut chunk = Vec::with_capacity(CHUNK_BYTES);
            let mut taken = 0;
            let mut next = Some(first);
            while let Some(tapped) = next.take() {
                if serde_json::to_writer(&mut chunk, &tapped).is_ok() {
                    chunk.push(b'\n');
                }
                taken += 1;
                if taken < left && chunk.len() < CHUNK_BYTES {
                    next = subscription.receiver.try_recv().ok();
                }
            }
            Some((
                Ok::<_, std::convert::Infallible>(Bytes::from(chunk)),
                (subscription, left - taken),
            ))
        },
    );
    (
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &str) -> TapQuery {
        let uri: axum::http::Uri = format!("/admin/tap?{pairs}").parse().expect("uri");
        Query::<TapQuery>::try_from_uri(&uri).expect("query").0
    }

    #[test]
    fn a_query_names_exactly_one_point() {
        let q = query("stage=enrich&plugin=redact&sample=0.5");
        assert_eq!(
            point(&q),
            Ok(Point::Plugin {
                stage: "enrich".into(),
                plugin: "redact".into()
            })
        );
        assert_eq!(q.sample, 0.5);
        assert_eq!(q.limit, 100);
        assert_eq!(
            point(&query("dead_letters=s")),
            Ok(Point::DeadLetters { stage: "s".into() })
        );
        assert!(point(&query("stage=s")).is_err());
        assert!(point(&query("route=a&topic=b")).is_err());
        assert!(point(&query("")).is_err());
    }
}
