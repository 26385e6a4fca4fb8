//! HTTP ingest: `POST /v1/events` and `POST /v1/events/batch`.
//!
//! A request is authenticated, its body read within `max_body_bytes`, every
//! event validated against its route's Avro schema, and only then produced.
//! With the default `ack = "broker"` the answer is `202` once the broker
//! acknowledged every record (idempotent producer, `acks=all`); a batch with
//! an invalid event writes nothing unless `partial = true`.

mod compression;
mod decode;
pub mod documented;
mod errors;
pub mod otlp;
mod publish;
mod routes;

use documented::Accepted;
pub use errors::{ApiError, Rejected};
use routes::Route;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::config::{
    AckMode, Framing, IngestConfig, LoadedConfig, ProducerCompression, interpolate_env,
};
use crate::kafka::{BrokerHealth, Kafka, Producer};
use crate::schema::{JsonDoc, JsonKind, JsonNode, LoadedSchema, SchemaSet};

/// How much longer than `ack_timeout_ms` a request waits for the broker's
/// acknowledgement before it counts as not acknowledged (see `watch_acks`).
const ACK_GRACE: Duration = Duration::from_secs(1);

/// Oversized bodies up to this multiple of `max_body_bytes` are read and
/// discarded before the 413, so ordinary HTTP clients see the answer.
const DRAIN_FACTOR: usize = 8;

/// An event that passed validation, ready to produce.
struct Prepared {
    route: usize,
    key: Option<String>,
    /// The framed record (a forwarded Avro body shares the request's bytes).
    payload: Bytes,
}

/// Shared state of the ingest routes.
pub struct Ingest {
    routes: Vec<Route>,
    schemas: SchemaSet,
    /// One producer per distinct route compression; index 0 is the first
    /// route's.
    producers: Vec<Producer>,
    health: BrokerHealth,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    ack: AckMode,
    ack_timeout: Duration,
    partial: bool,
    retry_after: u64,
    max_body_bytes: usize,
    api_keys: Vec<String>,
    accepting: AtomicBool,
    /// How `POST /v1/logs` maps log records to events.
    otlp: crate::config::OtlpConfig,
}

impl Ingest {
    /// Build ingest from the configuration: loads the route schemas (from
    /// `known`, the host's set, when it has them),
    /// resolves API keys from the environment and builds the producers
    /// (one per distinct route `compression`).
    pub fn new(
        loaded: &LoadedConfig,
        config: &IngestConfig,
        kafka: &Kafka,
        health: BrokerHealth,
        known: &SchemaSet,
    ) -> anyhow::Result<Self> {
        // The host's schemas, with their registry ids.
        let mut schemas = known.clone();
        let mut routes = Vec::with_capacity(config.routes.len());
        let mut compressions: Vec<Option<ProducerCompression>> = Vec::new();
        let mut producers = Vec::new();
        for route in &config.routes {
            let producer = match compressions.iter().position(|c| *c == route.compression) {
                Some(index) => index,
                None => {
                    producers.push(kafka.producer_compressed(
                        "ingest",
                        ack_timeout(config),
                        route.compression.map(ProducerCompression::as_str),
                    )?);
                    compressions.push(route.compression);
                    producers.len() - 1
                }
            };
            let path = loaded.resolve(route.schema.get_ref());
            let schema = schemas
                .load(&path)
                .with_context(|| format!("route for event type `{}`", route.event_type))?;
            routes.push(Route {
                event_type: route.event_type.clone(),
                topic: route.topic.get_ref().clone(),
                schema,
                key_field: route.key_field.clone(),
                type_field: route.type_field.clone(),
                framing: route.framing,
                producer,
            });
        }
        let api_keys = config
            .api_keys
            .iter()
            .map(|k| interpolate_env(k.get_ref()).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()
            .context("ingest.api_keys")?;
        Ok(Self {
            routes,
            schemas,
            producers,
            health,
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            max_in_flight: config.max_in_flight,
            ack: config.ack,
            ack_timeout: ack_timeout(config),
            partial: config.partial,
            retry_after: config.retry_after_secs,
            max_body_bytes: config.max_body_bytes,
            api_keys,
            accepting: AtomicBool::new(true),
            otlp: config.otlp.clone(),
        })
    }

    /// The ingest routes, ready to merge into the host's router.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/events", post(post_single))
            .route("/v1/events/batch", post(post_batch))
            .route("/v1/logs", post(otlp::post_logs))
            .with_state(self)
    }

    /// Stop accepting new events (graceful shutdown): requests get 503.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    /// Graceful shutdown: stop accepting (new requests get 503), wait until
    /// every accepted event was acknowledged or refused, then flush the
    /// producer. `false` if `deadline` passed first.
    pub async fn drain(self: &Arc<Self>, deadline: tokio::time::Instant) -> bool {
        self.stop_accepting();
        while self.in_flight.available_permits() < self.max_in_flight {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    in_flight = self.max_in_flight - self.in_flight.available_permits(),
                    "ingest events still awaiting the broker at the drain bound"
                );
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let ingest = self.clone();
        let flush = move || {
            ingest
                .producers
                .iter()
                .try_for_each(|producer| producer.flush(left))
        };
        match tokio::task::spawn_blocking(flush).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "ingest producer did not flush within the drain bound");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "ingest producer flush panicked");
                false
            }
        }
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.api_keys.is_empty() {
            return Ok(());
        }
        let presented = crate::auth::bearer(headers)
            .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
        match presented {
            Some(key)
                if self
                    .api_keys
                    .iter()
                    .any(|k| crate::auth::secret_matches(k, key)) =>
            {
                Ok(())
            }
            _ => Err(ApiError::Unauthorized),
        }
    }

    /// Read the body within `max_body_bytes`; a compressed body
    /// (`Content-Encoding`) is decompressed as it arrives, and the limit
    /// bounds its decompressed size.
    async fn read_body(&self, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
        let encoding = compression::encoding(headers)?;
        if encoding != compression::Encoding::Identity {
            return compression::read_compressed(
                encoding,
                body,
                self.max_body_bytes,
                self.max_body_bytes.saturating_mul(DRAIN_FACTOR),
            )
            .await;
        }
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let too_large = ApiError::TooLarge {
            limit: self.max_body_bytes,
        };
        let mut stream = body.into_data_stream();
        let mut collected = Vec::with_capacity(declared.unwrap_or(0).min(self.max_body_bytes));
        let mut seen = 0usize;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| ApiError::Invalid {
                message: "the request body could not be read".into(),
                rejected: Vec::new(),
            })?;
            seen += chunk.len();
            if seen > self.max_body_bytes || declared.is_some_and(|n| n > self.max_body_bytes) {
                // Drain a moderately oversized body so the client reads the
                // 413 instead of a connection reset; give up past a bound.
                if seen > self.max_body_bytes.saturating_mul(DRAIN_FACTOR) {
                    return Err(too_large);
                }
                continue;
            }
            collected.extend_from_slice(&chunk);
        }
        if seen > self.max_body_bytes {
            return Err(too_large);
        }
        Ok(Bytes::from(collected))
    }

    fn unavailable(&self, message: impl Into<String>) -> ApiError {
        ApiError::Unavailable {
            message: message.into(),
            retry_after: self.retry_after,
        }
    }

    /// Route, validate and encode one event, straight from its JSON.
    /// `forward` is a framed Avro body and its schema's fingerprint: when the
    /// route's schema is that schema, the body is produced as is.
    fn prepare(
        &self,
        index: usize,
        event: JsonNode<'_>,
        forward: Option<(&Bytes, [u8; 8])>,
    ) -> Result<Prepared, Rejected> {
        let reject = |field: &str, reason: String| Rejected {
            index,
            field: field.to_string(),
            reason,
        };
        if event.kind() != JsonKind::Object {
            return Err(reject("", "expected a JSON object".into()));
        }
        let (route_index, route) =
            routes::select(&self.routes, &event).map_err(|no| reject(&no.field, no.reason))?;
        let payload = match forward {
            Some((body, fingerprint))
                if fingerprint == route.schema.fingerprint
                    && body.starts_with(route.schema.header(route.framing)) =>
            {
                body.clone()
            }
            _ => route
                .schema
                .encode_node_framed(route.framing, event)
                .map(Bytes::from)
                .map_err(|e| reject(&e.field, e.reason))?,
        };
        let key = event.get(&route.key_field).map(|k| match k.as_str() {
            Some(s) => s.into_owned(),
            None => k.to_value().to_string(),
        });
        if crate::tap::active() {
            let point = Arc::new(crate::tap::Point::Route {
                route: route.event_type.clone(),
            });
            crate::tap::offer(&point, 1, |_| {
                let mut tapped = crate::tap::Tapped::new(
                    point.clone(),
                    key.as_deref().map(str::as_bytes),
                    crate::tap::raw(&event.to_value()),
                );
                tapped.topic = Some(route.topic.clone());
                tapped
            });
        }
        Ok(Prepared {
            route: route_index,
            key,
            payload,
        })
    }
}

fn accepted(accepted: usize, rejected: Vec<Rejected>) -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(Accepted { accepted, rejected }),
    )
        .into_response()
}

fn finish(route: &'static str, started: Instant, result: Result<Response, ApiError>) -> Response {
    let response = result.unwrap_or_else(IntoResponse::into_response);
    crate::metrics::ingest_request(route, response.status().as_u16(), started.elapsed());
    response
}

/// Ingest one event
#[utoipa::path(post, path = "/v1/events", tag = "ingest", operation_id = "postEvent",
    description = documented::COMPRESSED_BODIES,
    security((), ("bearer" = []), ("apiKey" = [])),
    request_body(description = "JSON, or `avro/binary`: Avro single-object encoded (C3 01 + \
        CRC-64-AVRO fingerprint + datum), the Confluent wire format (00 + 4-byte schema id + \
        datum) with an id this host knows, or a bare datum of the first route's schema.",
        content(
            (documented::TelemetryEvent = "application/json"),
            (documented::Binary = "avro/binary"),
        )),
    responses(
        (status = 202, description = "The broker acknowledged the event.", body = Accepted),
        documented::EventRefusals,
    ))]
pub(crate) async fn post_single(
    State(ingest): State<Arc<Ingest>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let result = async {
        ingest.authorize(&headers)?;
        let format = decode::format(&headers, decode::SINGLE_TYPES)?;
        let bytes = ingest.read_body(&headers, body).await?;
        let invalid = |r: Rejected| ApiError::Invalid {
            message: format!("invalid event: {}", describe(&r)),
            rejected: vec![r],
        };
        let single = decode::single(format, &bytes, &ingest.schemas, &ingest.routes[0].schema)
            .map_err(invalid)?;
        let prepared = match &single {
            decode::Single::Json(doc) => ingest.prepare(0, doc.root(), None),
            decode::Single::Avro { json, framed } => {
                let doc = JsonDoc::parse(json).map_err(|e| Rejected {
                    index: 0,
                    field: String::new(),
                    reason: format!("invalid Avro body: {e}"),
                });
                doc.and_then(|doc| ingest.prepare(0, doc.root(), framed.map(|f| (&bytes, f))))
            }
        }
        .map_err(invalid)?;
        let n = ingest.publish_counted(vec![prepared]).await?;
        Ok(accepted(n, Vec::new()))
    }
    .await;
    finish("/v1/events", started, result)
}

/// Ingest a batch of events
#[utoipa::path(post, path = "/v1/events/batch", tag = "ingest", operation_id = "postBatch",
    description = documented::COMPRESSED_BODIES,
    security((), ("bearer" = []), ("apiKey" = [])),
    request_body(description = "A JSON array of events, or NDJSON: one event JSON object per line.",
        content(
            (documented::EventArray = "application/json"),
            (String = "application/x-ndjson"),
        )),
    responses(
        (status = 202, description = "The broker acknowledged every event of the batch.", body = Accepted),
        documented::EventRefusals,
    ))]
pub(crate) async fn post_batch(
    State(ingest): State<Arc<Ingest>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let result = async {
        ingest.authorize(&headers)?;
        let format = decode::format(&headers, decode::BATCH_TYPES)?;
        let bytes = ingest.read_body(&headers, body).await?;
        let parsed = decode::batch(format, &bytes).map_err(|r| ApiError::Invalid {
            message: format!("unreadable batch: {}", r.reason),
            rejected: vec![r],
        })?;
        let events = parsed.events();
        let total = events.len();
        let mut valid = Vec::with_capacity(total);
        let mut rejected = Vec::new();
        for (index, event) in events.into_iter().enumerate() {
            match event.and_then(|node| ingest.prepare(index, node, None)) {
                Ok(prepared) => valid.push(prepared),
                Err(r) => rejected.push(r),
            }
        }
        if total == 0 {
            return Err(ApiError::Invalid {
                message: "the batch holds no events".into(),
                rejected: Vec::new(),
            });
        }
        if !rejected.is_empty() && !ingest.partial {
            crate::metrics::ingest_events("", "rejected", total);
            return Err(ApiError::Invalid {
                message: format!(
                    "{} of {total} events are invalid; nothing was written (first: {})",
                    rejected.len(),
                    describe(&rejected[0])
                ),
                rejected,
            });
        }
        let n = ingest.publish_counted(valid).await?;
        Ok(accepted(n, rejected))
    }
    .await;
    finish("/v1/events/batch", started, result)
}

fn describe(r: &Rejected) -> String {
    if r.field.is_empty() {
        format!("event {}: {}", r.index, r.reason)
    } else {
        format!("event {}: field `{}`: {}", r.index, r.field, r.reason)
    }
}

/// Decode and validate a request body as the ingest routes do, against one
/// schema and without producing anything: the entry point of the fuzz
/// targets and of decoding tests. `batch` applies `/v1/events/batch` rules;
/// the answer is each valid event's framed Avro record, or the error the
/// route would answer (every event must be valid, as with `partial = false`).
pub fn decode_request(
    batch: bool,
    content_type: &str,
    body: &[u8],
    schemas: &SchemaSet,
    schema: &LoadedSchema,
) -> Result<Vec<Vec<u8>>, ApiError> {
    let mut headers = HeaderMap::new();
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    let invalid = |rejected: Vec<Rejected>| ApiError::Invalid {
        message: rejected.first().map(describe).unwrap_or_default(),
        rejected,
    };
    let format = if batch {
        decode::format(&headers, decode::BATCH_TYPES)?
    } else {
        decode::format(&headers, decode::SINGLE_TYPES)?
    };
    let encode = |index: usize, node: JsonNode<'_>| {
        if node.kind() != JsonKind::Object {
            return Err(Rejected {
                index,
                field: String::new(),
                reason: "expected a JSON object".into(),
            });
        }
        schema.encode_node(node).map_err(|e| Rejected {
            index,
            field: e.field,
            reason: e.reason,
        })
    };
    let results: Vec<Result<Vec<u8>, Rejected>> = if batch {
        let parsed = decode::batch(format, body).map_err(|r| invalid(vec![r]))?;
        parsed
            .events()
            .into_iter()
            .enumerate()
            .map(|(index, event)| event.and_then(|node| encode(index, node)))
            .collect()
    } else {
        vec![
            decode::single(format, body, schemas, schema).and_then(|single| match single {
                decode::Single::Json(doc) => encode(0, doc.root()),
                decode::Single::Avro { json, framed } => {
                    let doc = JsonDoc::parse(&json).map_err(|e| Rejected {
                        index: 0,
                        field: String::new(),
                        reason: format!("invalid Avro body: {e}"),
                    })?;
                    // A framed body of this very schema is forwarded as is,
                    // as ingest does.
                    if framed == Some(schema.fingerprint)
                        && body.starts_with(schema.header(Framing::SingleObject))
                    {
                        Ok(body.to_vec())
                    } else {
                        encode(0, doc.root())
                    }
                }
            }),
        ]
    };
    if results.is_empty() {
        return Err(invalid(Vec::new()));
    }
    let mut records = Vec::with_capacity(results.len());
    let mut rejected = Vec::new();
    for result in results {
        match result {
            Ok(record) => records.push(record),
            Err(r) => rejected.push(r),
        }
    }
    if rejected.is_empty() {
        Ok(records)
    } else {
        Err(invalid(rejected))
    }
}

/// How long the ingest producer waits for the broker's acknowledgement.
pub fn ack_timeout(config: &IngestConfig) -> Duration {
    Duration::from_millis(config.ack_timeout_ms)
}

#[cfg(test)]
mod tests;
