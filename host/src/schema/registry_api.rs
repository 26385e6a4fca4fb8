//! The built-in registry's HTTP API: the subset of the Confluent Schema
//! Registry REST API that stock serializers and deserializers use, served
//! from a [`Registry`] (see [`router`]), with the types the OpenAPI
//! document shows its requests and answers as.

use std::sync::Arc;

use anyhow::Context;
use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value as Json, json};

use super::framing;
use super::registry::{Registry, RegistryError};

/// A schema posted to register, look up or check.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "documents the request; `schema_text` reads it")]
pub(crate) struct SchemaRequest {
    /// The Avro schema, as JSON text.
    schema: String,
    /// `AVRO` (the default; no other type is served).
    #[schema(rename = "schemaType", value_type = Option<String>, pattern = "^AVRO$")]
    schema_type: Option<String>,
}

/// `{"schema": TEXT}`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "documents the answer")]
pub(crate) struct SchemaText {
    /// The schema, as JSON text.
    schema: String,
}

/// A version of a subject.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "documents the answer")]
pub(crate) struct SubjectVersion {
    /// The subject.
    subject: String,
    /// 1-based version.
    version: u32,
    /// The schema's id.
    id: u32,
    /// The schema, as JSON text.
    schema: String,
}

/// `{"id": N}`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "documents the answer")]
pub(crate) struct RegisteredId {
    /// The schema's id.
    id: u32,
}

/// The answer of a compatibility check.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "documents the answer")]
pub(crate) struct Compatibility {
    /// Whether the posted schema can read the version's records.
    is_compatible: bool,
    /// With `verbose=true`: why not (empty when compatible).
    messages: Option<Vec<String>>,
}

/// `{"compatibilityLevel": "BACKWARD"}`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "documents the answer")]
pub(crate) struct CompatibilityLevel {
    /// Always `BACKWARD`.
    #[schema(rename = "compatibilityLevel", pattern = "^BACKWARD$")]
    compatibility_level: String,
}

/// A registry error, as Confluent's API answers them.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "documents the answer")]
pub(crate) struct RegistryErrorBody {
    /// 40401 unknown subject, 40402 unknown version, 40403 unknown schema,
    /// 42201 invalid schema, 409 incompatible.
    error_code: u32,
    /// Why.
    message: String,
}

/// The subject a registry path names.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(
    dead_code,
    reason = "documents the path; the handlers extract it with axum"
)]
pub(crate) struct SubjectParam {
    /// A subject, e.g. `<topic>-value`.
    subject: String,
}

/// What the registry endpoints that read a posted schema may refuse.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, reason = "documents the answer")]
pub(crate) enum PostedSchemaRefusal {
    /// Not found.
    #[response(
        status = 404,
        description = "Unknown subject (40401), version (40402) or schema (40403).",
        content_type = "application/vnd.schemaregistry.v1+json"
    )]
    NotFound(RegistryErrorBody),
    /// Not an Avro schema.
    #[response(
        status = 422,
        description = "Not a valid Avro schema (42201).",
        content_type = "application/vnd.schemaregistry.v1+json"
    )]
    Invalid(RegistryErrorBody),
}

/// The 404 every registry endpoint may answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, reason = "documents the answer")]
pub(crate) enum RegistryRefusal {
    /// Not found.
    #[response(
        status = 404,
        description = "Unknown subject (40401), version (40402) or schema (40403).",
        content_type = "application/vnd.schemaregistry.v1+json"
    )]
    NotFound(RegistryErrorBody),
}

fn reply(status: StatusCode, body: Json) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            "application/vnd.schemaregistry.v1+json",
        )],
        body.to_string(),
    )
        .into_response()
}

fn not_found(code: u32, message: String) -> Response {
    reply(
        StatusCode::NOT_FOUND,
        json!({"error_code": code, "message": message}),
    )
}

/// Schema types
///
/// `["AVRO"]`.
/// Served only when no `[schema_registry]` is configured (the built-in registry).
#[utoipa::path(get, path = "/schemas/types", tag = "schema registry",
    responses(
        (status = 200, description = "The answer.", body = Vec<String>, content_type = "application/vnd.schemaregistry.v1+json"),
        RegistryRefusal,
    ))]
pub(crate) async fn schema_types() -> Response {
    reply(StatusCode::OK, json!(["AVRO"]))
}

/// Compatibility level
///
/// `{"compatibilityLevel": "BACKWARD"}`.
/// Served only when no `[schema_registry]` is configured (the built-in registry).
#[utoipa::path(get, path = "/config", tag = "schema registry",
    responses(
        (status = 200, description = "The answer.", body = CompatibilityLevel, content_type = "application/vnd.schemaregistry.v1+json"),
        RegistryRefusal,
    ))]
pub(crate) async fn config() -> Response {
    reply(StatusCode::OK, json!({"compatibilityLevel": "BACKWARD"}))
}

/// The registry API, Confluent-compatible subset:
/// `GET /schemas/ids/{id}` (and `/schema`), `GET /schemas/types`,
/// `GET /subjects`, `GET /subjects/{s}/versions`,
/// `GET /subjects/{s}/versions/{v}` (`latest` too) and its `/schema`,
/// `POST /subjects/{s}/versions` (register), `POST /subjects/{s}` (look up),
/// `POST /compatibility/subjects/{s}/versions/{v}` (and `/versions`: the
/// latest, as BACKWARD compares with) and `GET /config`.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/types", get(schema_types))
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", axum::routing::post(lookup))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(version))
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(raw_version),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            axum::routing::post(compatibility),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            axum::routing::post(compatibility_latest),
        )
        .route("/config", get(config))
        .with_state(registry)
}

/// Schema by id
///
/// `{"schema": TEXT}`.
/// Served only when no `[schema_registry]` is configured (the built-in registry).
#[utoipa::path(get, path = "/schemas/ids/{id}", tag = "schema registry",
    params(("id" = u32, Path, description = "A schema id.")),
    responses(
        (status = 200, description = "The answer.", body = SchemaText, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 400, description = "The id is not a number.", body = String, content_type = "text/plain"),
        RegistryRefusal,
    ))]
pub(crate) async fn schema_by_id(
    State(registry): State<Arc<Registry>>,
    Path(id): Path<u32>,
) -> Response {
    match registry.read().texts.get(&id) {
        Some(text) => reply(StatusCode::OK, json!({"schema": text})),
        None => not_found(40403, format!("Schema {id} not found")),
    }
}

/// Schema text by id
///
/// The schema itself.
/// Served only when no `[schema_registry]` is configured (the built-in registry).
#[utoipa::path(get, path = "/schemas/ids/{id}/schema", tag = "schema registry",
    params(("id" = u32, Path, description = "A schema id.")),
    responses(
        (status = 200, description = "The answer.", body = Object, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 400, description = "The id is not a number.", body = String, content_type = "text/plain"),
        RegistryRefusal,
    ))]
pub(crate) async fn raw_schema_by_id(
    State(registry): State<Arc<Registry>>,
    Path(id): Path<u32>,
) -> Response {
    match registry.read().texts.get(&id) {
        Some(text) => reply(
            StatusCode::OK,
            serde_json::from_str(text).unwrap_or(Json::Null),
        ),
        None => not_found(40403, format!("Schema {id} not found")),
    }
}

/// Subjects
///
/// `<topic>-value` of every topic a route or stage writes, and subjects registered since start.
/// Served only when no `[schema_registry]` is configured (the built-in registry).
#[utoipa::path(get, path = "/subjects", tag = "schema registry",
    responses(
        (status = 200, description = "The answer.", body = Vec<String>, content_type = "application/vnd.schemaregistry.v1+json"),
        RegistryRefusal,
    ))]
pub(crate) async fn subjects(State(registry): State<Arc<Registry>>) -> Response {
    let names: Vec<String> = registry.read().subjects.keys().cloned().collect();
    reply(StatusCode::OK, json!(names))
}

/// Versions of a subject
///
/// `[1, 2, ...]`.
/// Served only when no `[schema_registry]` is configured (the built-in registry).
#[utoipa::path(get, path = "/subjects/{subject}/versions", tag = "schema registry",
    params(SubjectParam),
    responses(
        (status = 200, description = "The answer.", body = Vec<u32>, content_type = "application/vnd.schemaregistry.v1+json"),
        RegistryRefusal,
    ))]
pub(crate) async fn versions(
    State(registry): State<Arc<Registry>>,
    Path(subject): Path<String>,
) -> Response {
    match registry.read().subjects.get(&subject) {
        Some(ids) => reply(StatusCode::OK, json!((1..=ids.len()).collect::<Vec<_>>())),
        None => not_found(40401, format!("Subject '{subject}' not found.")),
    }
}

/// The version `version` (1-based, or `latest` / `-1`) of `subject`.
fn find_version(
    registry: &Registry,
    subject: &str,
    version: &str,
) -> Result<(usize, u32, String), Box<Response>> {
    let store = registry.read();
    let Some(ids) = store.subjects.get(subject) else {
        return Err(Box::new(not_found(
            40401,
            format!("Subject '{subject}' not found."),
        )));
    };
    let index = match version {
        "latest" | "-1" => ids.len().checked_sub(1),
        v => v.parse::<usize>().ok().and_then(|v| v.checked_sub(1)),
    };
    match index.and_then(|i| ids.get(i).map(|id| (i + 1, *id))) {
        Some((version, id)) => Ok((
            version,
            id,
            store.texts.get(&id).cloned().unwrap_or_default(),
        )),
        None => Err(Box::new(not_found(
            40402,
            format!("Version {version} not found."),
        ))),
    }
}

/// A version of a subject
///
/// `{subject, version, id, schema}`; `latest` or -1 for the newest.
/// Served only when no `[schema_registry]` is configured (the built-in registry).
#[utoipa::path(get, path = "/subjects/{subject}/versions/{version}", tag = "schema registry",
    params(SubjectParam, ("version" = String, Path, description = "1-based version, `latest` or -1.")),
    responses(
        (status = 200, description = "The answer.", body = SubjectVersion, content_type = "application/vnd.schemaregistry.v1+json"),
        RegistryRefusal,
    ))]
pub(crate) async fn version(
    State(registry): State<Arc<Registry>>,
    Path((subject, version)): Path<(String, String)>,
) -> Response {
    match find_version(&registry, &subject, &version) {
        Ok((version, id, text)) => reply(
            StatusCode::OK,
            json!({"subject": subject, "version": version, "id": id, "schema": text}),
        ),
        Err(response) => *response,
    }
}

/// A version's schema text
///
/// The schema itself.
/// Served only when no `[schema_registry]` is configured (the built-in registry).
#[utoipa::path(get, path = "/subjects/{subject}/versions/{version}/schema", tag = "schema registry",
    params(SubjectParam, ("version" = String, Path, description = "1-based version, `latest` or -1.")),
    responses(
        (status = 200, description = "The answer.", body = Object, content_type = "application/vnd.schemaregistry.v1+json"),
        RegistryRefusal,
    ))]
pub(crate) async fn raw_version(
    State(registry): State<Arc<Registry>>,
    Path((subject, version)): Path<(String, String)>,
) -> Response {
    match find_version(&registry, &subject, &version) {
        Ok((_, _, text)) => reply(
            StatusCode::OK,
            serde_json::from_str(&text).unwrap_or(Json::Null),
        ),
        Err(response) => *response,
    }
}

fn schema_text(body: &[u8]) -> Result<String, Box<Response>> {
    let invalid = |message: String| {
        Box::new(reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"error_code": 42201, "message": message}),
        ))
    };
    let request: Json = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    if let Some(kind) = request.get("schemaType").and_then(Json::as_str)
        && kind != "AVRO"
    {
        return Err(invalid(format!("schema type {kind} is not supported here")));
    }
    request
        .get("schema")
        .and_then(Json::as_str)
        .map(str::to_string)
        .ok_or_else(|| invalid("the request has no `schema` string".into()))
}

/// Register a schema
///
/// Registers a version (in memory; BACKWARD compatibility with the latest version is checked,
/// 409 otherwise) and answers `{"id": N}`. Ids derive from the schema's fingerprint.
/// Served only when no `[schema_registry]` is configured (the built-in registry).
#[utoipa::path(post, path = "/subjects/{subject}/versions", tag = "schema registry",
    params(SubjectParam),
    request_body(content((SchemaRequest = "application/vnd.schemaregistry.v1+json"), (SchemaRequest = "application/json"))),
    responses(
        (status = 200, description = "The answer.", body = RegisteredId, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 409, description = "Incompatible with the subject's latest version.", body = RegistryErrorBody, content_type = "application/vnd.schemaregistry.v1+json"),
        PostedSchemaRefusal,
    ))]
pub(crate) async fn register(
    State(registry): State<Arc<Registry>>,
    Path(subject): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let text = match schema_text(&body) {
        Ok(text) => text,
        Err(response) => return *response,
    };
    match registry.register(&subject, &text) {
        Ok(id) => reply(StatusCode::OK, json!({"id": id})),
        Err(RegistryError::Invalid(message)) => reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"error_code": 42201, "message": message}),
        ),
        Err(RegistryError::Incompatible(message)) => reply(
            StatusCode::CONFLICT,
            json!({"error_code": 409, "message": message}),
        ),
    }
}

/// The query of a compatibility check.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CompatibilityQuery {
    /// Add the reasons (`messages`).
    #[serde(default)]
    verbose: bool,
}

/// Check a schema's compatibility with a version of a subject
///
/// `{"is_compatible": bool}` (BACKWARD: can the posted schema read records written with the
/// version?), with `messages` when `verbose=true`.
/// Served only when no `[schema_registry]` is configured (the built-in registry).
#[utoipa::path(post, path = "/compatibility/subjects/{subject}/versions/{version}", tag = "schema registry",
    params(SubjectParam, ("version" = String, Path, description = "1-based version, or `latest`."), CompatibilityQuery),
    request_body(content((SchemaRequest = "application/vnd.schemaregistry.v1+json"), (SchemaRequest = "application/json"))),
    responses(
        (status = 200, description = "The answer.", body = Compatibility, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 400, description = "The query is malformed (`verbose` is not `true` or `false`).", body = String, content_type = "text/plain"),
        PostedSchemaRefusal,
    ))]
pub(crate) async fn compatibility(
    State(registry): State<Arc<Registry>>,
    Path((subject, version)): Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<CompatibilityQuery>,
    body: axum::body::Bytes,
) -> Response {
    let text = match schema_text(&body) {
        Ok(text) => text,
        Err(response) => return *response,
    };
    let candidate = match Schema::parse_str(&text) {
        Ok(schema) => schema,
        Err(e) => {
            return reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error_code": 42201, "message": format!("Invalid schema: {e}")}),
            );
        }
    };
    let (_, id, _) = match find_version(&registry, &subject, &version) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let Some(old) = registry.writer_schema(id) else {
        return not_found(40403, format!("Schema {id} not found"));
    };
    let mut answer = match SchemaCompatibility::can_read(&old, &candidate) {
        Ok(()) => json!({"is_compatible": true}),
        Err(e) => json!({"is_compatible": false, "reason": e.to_string()}),
    };
    match (query.verbose, answer["reason"].take()) {
        (true, Json::String(reason)) => answer["messages"] = json!([reason]),
        (true, _) => answer["messages"] = json!([]),
        _ => {}
    }
    if let Some(map) = answer.as_object_mut() {
        map.remove("reason");
    }
    reply(StatusCode::OK, answer)
}

/// Check a schema's compatibility with a subject (its latest version)
///
/// `{"is_compatible": bool}` against the latest version (BACKWARD), with `messages` when
/// `verbose=true`.
/// Served only when no `[schema_registry]` is configured (the built-in registry).
#[utoipa::path(post, path = "/compatibility/subjects/{subject}/versions", tag = "schema registry",
    params(SubjectParam, CompatibilityQuery),
    request_body(content((SchemaRequest = "application/vnd.schemaregistry.v1+json"), (SchemaRequest = "application/json"))),
    responses(
        (status = 200, description = "The answer.", body = Compatibility, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 400, description = "The query is malformed (`verbose` is not `true` or `false`).", body = String, content_type = "text/plain"),
        PostedSchemaRefusal,
    ))]
pub(crate) async fn compatibility_latest(
    state: State<Arc<Registry>>,
    Path(subject): Path<String>,
    query: axum::extract::Query<CompatibilityQuery>,
    body: axum::body::Bytes,
) -> Response {
    compatibility(state, Path((subject, "latest".to_string())), query, body).await
}

/// Look up a schema under a subject
///
/// `{subject, version, id, schema}` when the schema is a version of the subject.
/// Served only when no `[schema_registry]` is configured (the built-in registry).
#[utoipa::path(post, path = "/subjects/{subject}", tag = "schema registry",
    params(SubjectParam),
    request_body(content((SchemaRequest = "application/vnd.schemaregistry.v1+json"), (SchemaRequest = "application/json"))),
    responses(
        (status = 200, description = "The answer.", body = SubjectVersion, content_type = "application/vnd.schemaregistry.v1+json"),
        PostedSchemaRefusal,
    ))]
pub(crate) async fn lookup(
    State(registry): State<Arc<Registry>>,
    Path(subject): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let text = match schema_text(&body) {
        Ok(text) => text,
        Err(response) => return *response,
    };
    let id = Schema::parse_str(&text)
        .context("invalid schema")
        .and_then(|s| framing::fingerprint(&s))
        .map(|fp| framing::builtin_id(&fp));
    let store = registry.read();
    match (id, store.subjects.get(&subject)) {
        (Ok(id), Some(ids)) if ids.contains(&id) => {
            let version = ids.iter().position(|i| *i == id).unwrap_or(0) + 1;
            reply(
                StatusCode::OK,
                json!({"subject": subject, "version": version, "id": id, "schema": store.texts[&id]}),
            )
        }
        (_, None) => not_found(40401, format!("Subject '{subject}' not found.")),
        _ => not_found(40403, "Schema not found".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::registry::test_schemas::{newer, telemetry};

    async fn check(
        registry: &Arc<Registry>,
        subject: &str,
        version: &str,
        schema: &str,
    ) -> (u16, Json) {
        let body = json!({ "schema": schema }).to_string();
        let response = compatibility(
            State(registry.clone()),
            Path((subject.to_string(), version.to_string())),
            axum::extract::Query(CompatibilityQuery { verbose: true }),
            axum::body::Bytes::from(body),
        )
        .await;
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn the_compatibility_endpoint_answers_as_registration_would() {
        let local = telemetry();
        let registry = Arc::new(Registry::builtin(
            [&local],
            &[("t-value".into(), vec![local.clone()])],
        ));
        let (status, answer) = check(&registry, "t-value", "latest", &newer()).await;
        assert_eq!(
            (status, &answer["is_compatible"]),
            (200, &json!(true)),
            "{answer}"
        );
        assert_eq!(answer["messages"], json!([]));
        let mut breaking: Json = serde_json::from_str(&newer()).unwrap();
        breaking["fields"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "must", "type": "string"}));
        let (status, answer) = check(&registry, "t-value", "1", &breaking.to_string()).await;
        assert_eq!(
            (status, &answer["is_compatible"]),
            (200, &json!(false)),
            "{answer}"
        );
        assert!(
            answer["messages"][0]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{answer}"
        );
        let (status, answer) = check(&registry, "nope-value", "latest", &newer()).await;
        assert_eq!((status, &answer["error_code"]), (404, &json!(40401)));
        let (status, answer) = check(&registry, "t-value", "7", &newer()).await;
        assert_eq!((status, &answer["error_code"]), (404, &json!(40402)));
        let (status, answer) = check(&registry, "t-value", "latest", "{\"type\": \"nope\"}").await;
        assert_eq!((status, &answer["error_code"]), (422, &json!(42201)));
    }
}
