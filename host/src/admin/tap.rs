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
use crate::tap::{Point, Subscription};

/// Copies a tap buffers for a slow reader before it drops them.
const TAP_CAPACITY: usize = 1024;

/// The query of `GET /admin/tap`: exactly one of `route`, `topic`,
/// `stage` + `plugin`, `dead_letters`.
#[derive(Debug, Deserialize)]
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
    pub sample: f64,
    /// Stop after this many events (1 to 100000).
    #[serde(default = "default_limit")]
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

/// `GET /admin/tap`.
pub(super) async fn tap(
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
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(
                    serde_json::json!({"error": "invalid_request", "message": e.body_text()}),
                ),
            )
                .into_response();
        }
    };
    let point = match point(&query).and_then(|p| state.taps.check(&p).map(|()| p)) {
        Ok(point) => point,
        Err(message) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(serde_json::json!({"error": "invalid_request", "message": message})),
            )
                .into_response();
        }
    };
    if !(0.0..=1.0).contains(&query.sample) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"error": "invalid_request", "message": "sample is a share from 0 to 1"})),
        )
            .into_response();
    }
    let limit = query.limit.clamp(1, 100_000);
    let subscription = crate::tap::subscribe(point, query.sample, TAP_CAPACITY);
    let lines = futures::stream::unfold(
        (subscription, limit),
        |(mut subscription, left): (Subscription, usize)| async move {
            if left == 0 {
                return None;
            }
            let tapped = subscription.receiver.recv().await?;
            let mut line = serde_json::to_vec(&tapped).unwrap_or_default();
            line.push(b'\n');
            Some((
                Ok::<_, std::convert::Infallible>(Bytes::from(line)),
                (subscription, left - 1),
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
