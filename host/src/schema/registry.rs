//! Schemas by registry id, and the built-in Confluent-compatible registry
//! API.
//!
//! A host whose config has no `[schema_registry]` is its own registry for
//! the schemas it writes: each schema's id is derived from its fingerprint
//! ([`super::framing::builtin_id`]), so every host gives the same schema the
//! same id with nothing stored, and the subjects are `<topic>-value`
//! (TopicNameStrategy) of every topic a route or stage writes. It serves
//! the subset of the Confluent REST API stock serializers and deserializers
//! use (see [`router`]). Schemas that other producers register through it
//! (a newer, compatible version of a subject's schema) are kept in memory:
//! this process's stages decode their records, resolving the writer's schema
//! to the local schema of the same full name (the reader schema). Production
//! points at a real registry.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value as Json, json};

use super::{LoadedSchema, framing};

/// A writer schema known by id that is not one of the local files, with
/// the local schema its records are read as.
#[derive(Debug)]
pub struct Remote {
    /// Registry id.
    pub id: u32,
    /// The writer schema.
    pub writer: Schema,
    /// Its text, as registered.
    pub text: String,
    /// The local schema of the same full name, if any (the reader schema).
    pub reader: Option<Arc<LoadedSchema>>,
}

#[derive(Debug, Default)]
struct Store {
    /// Schema text by id (local and registered).
    texts: BTreeMap<u32, String>,
    /// Registered writer schemas that are not local files.
    remote: HashMap<u32, Arc<Remote>>,
    /// Subject → ids, one per version in order.
    subjects: BTreeMap<String, Vec<u32>>,
}

/// Every schema this host knows by registry id.
#[derive(Debug, Default)]
pub struct Registry {
    store: RwLock<Store>,
    /// Local schemas by record full name: the reader schemas.
    readers: HashMap<String, Arc<LoadedSchema>>,
    /// Local schemas by id.
    local: HashMap<u32, Arc<LoadedSchema>>,
    /// An external registry to fetch unknown ids from, and the runtime its
    /// client runs on.
    external: Option<(
        super::registry_client::RegistryClient,
        tokio::runtime::Handle,
    )>,
}

impl Registry {
    /// The built-in registry for `subjects`: subject name → the local
    /// schemas written under it, in version order.
    pub fn builtin<'a>(
        schemas: impl IntoIterator<Item = &'a Arc<LoadedSchema>>,
        subjects: &[(String, Vec<Arc<LoadedSchema>>)],
    ) -> Self {
        let mut registry = Self::default();
        let store = registry.store.get_mut().expect("fresh lock");
        for schema in schemas {
            store.texts.insert(schema.id, schema.canonical_form());
            registry.local.insert(schema.id, schema.clone());
            if let Some(name) = schema.full_name() {
                registry
                    .readers
                    .entry(name)
                    .or_insert_with(|| schema.clone());
            }
        }
        for (subject, versions) in subjects {
            let ids = store.subjects.entry(subject.clone()).or_default();
            for schema in versions {
                store.texts.insert(schema.id, schema.canonical_form());
                if !ids.contains(&schema.id) {
                    ids.push(schema.id);
                }
            }
        }
        registry
    }

    /// A cache of an external registry: `schemas` are the local ones (with
    /// the external ids assigned); unknown ids are fetched with `client`.
    pub fn external<'a>(
        schemas: impl IntoIterator<Item = &'a Arc<LoadedSchema>>,
        client: super::registry_client::RegistryClient,
        handle: tokio::runtime::Handle,
    ) -> Self {
        let mut registry = Self::builtin(schemas, &[]);
        registry.external = Some((client, handle));
        registry
    }

    /// A registered writer schema that is not a local file.
    pub fn remote(&self, id: u32) -> Option<Arc<Remote>> {
        self.read().remote.get(&id).cloned()
    }

    /// [`Registry::remote`], fetching an unknown id from the external
    /// registry (and caching it). `hold`: wait out a registry outage (a
    /// stage holding its batch) instead of failing. `Ok(None)`: no external
    /// registry and no such schema here.
    pub fn fetched(&self, id: u32, hold: bool) -> anyhow::Result<Option<Arc<Remote>>> {
        if let Some(found) = self.remote(id) {
            return Ok(Some(found));
        }
        let Some((client, handle)) = &self.external else {
            return Ok(None);
        };
        let text = super::registry_client::fetch_blocking(client, handle, id, hold)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let writer = Schema::parse_str(&text)
            .with_context(|| format!("schema {id} from the registry is not a valid Avro schema"))?;
        let reader = match &writer {
            Schema::Record(record) => self.readers.get(&record.name.fullname(None)).cloned(),
            _ => None,
        };
        let remote = Arc::new(Remote {
            id,
            writer,
            text: text.clone(),
            reader,
        });
        let mut store = self.write();
        store.texts.entry(id).or_insert(text);
        Ok(Some(store.remote.entry(id).or_insert(remote).clone()))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Register `text` under `subject` (POST /subjects/{s}/versions): the
    /// schema must parse, and a subject's new version must be able to read
    /// its latest (BACKWARD compatibility). Returns the id; registering a
    /// schema again returns its id.
    pub fn register(&self, subject: &str, text: &str) -> Result<u32, RegistryError> {
        let writer = Schema::parse_str(text).map_err(|e| RegistryError::Invalid(e.to_string()))?;
        let fingerprint =
            framing::fingerprint(&writer).map_err(|e| RegistryError::Invalid(e.to_string()))?;
        let id = framing::builtin_id(&fingerprint);
        let latest = self
            .read()
            .subjects
            .get(subject)
            .and_then(|ids| ids.last().copied());
        if let Some(latest) = latest
            && latest != id
            && !self.read().subjects[subject].contains(&id)
        {
            let old = self
                .writer_schema(latest)
                .ok_or_else(|| RegistryError::Invalid("latest version unreadable".into()))?;
            SchemaCompatibility::can_read(&old, &writer).map_err(|e| {
                RegistryError::Incompatible(format!(
                    "the schema cannot read version {} of `{subject}` (BACKWARD): {e}",
                    self.read().subjects[subject].len()
                ))
            })?;
        }
        let reader = match &writer {
            Schema::Record(record) => self.readers.get(&record.name.fullname(None)).cloned(),
            _ => None,
        };
        if let Some(reader) = &reader
            && reader.id != id
        {
            SchemaCompatibility::can_read(&writer, &reader.schema).map_err(|e| {
                RegistryError::Incompatible(format!(
                    "this host's schema {} cannot read it: {e}",
                    reader.path.display()
                ))
            })?;
        }
        let mut store = self.write();
        if let Some(existing) = store.texts.get(&id)
            && !self.local.contains_key(&id)
            && framing::fingerprint(&Schema::parse_str(existing).map_err(|e| {
                RegistryError::Invalid(format!("stored schema {id} unreadable: {e}"))
            })?)
            .ok()
                != Some(fingerprint)
        {
            return Err(RegistryError::Invalid(format!(
                "id {id} is taken by another schema"
            )));
        }
        store.texts.entry(id).or_insert_with(|| text.to_string());
        if !self.local.contains_key(&id) {
            store.remote.entry(id).or_insert_with(|| {
                Arc::new(Remote {
                    id,
                    writer,
                    text: text.to_string(),
                    reader,
                })
            });
        }
        let ids = store.subjects.entry(subject.to_string()).or_default();
        if !ids.contains(&id) {
            ids.push(id);
        }
        Ok(id)
    }

    fn writer_schema(&self, id: u32) -> Option<Schema> {
        if let Some(local) = self.local.get(&id) {
            return Some(local.schema.clone());
        }
        self.read().remote.get(&id).map(|r| r.writer.clone())
    }
}

/// Why a registration was refused.
#[derive(Debug)]
pub enum RegistryError {
    /// 422, error code 42201: not a valid Avro schema.
    Invalid(String),
    /// 409: incompatible with the subject's latest version.
    Incompatible(String),
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
        .route(
            "/schemas/types",
            get(|| async { reply(StatusCode::OK, json!(["AVRO"])) }),
        )
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
        .route(
            "/config",
            get(|| async { reply(StatusCode::OK, json!({"compatibilityLevel": "BACKWARD"})) }),
        )
        .with_state(registry)
}

async fn schema_by_id(State(registry): State<Arc<Registry>>, Path(id): Path<u32>) -> Response {
    match registry.read().texts.get(&id) {
        Some(text) => reply(StatusCode::OK, json!({"schema": text})),
        None => not_found(40403, format!("Schema {id} not found")),
    }
}

async fn raw_schema_by_id(State(registry): State<Arc<Registry>>, Path(id): Path<u32>) -> Response {
    match registry.read().texts.get(&id) {
        Some(text) => reply(
            StatusCode::OK,
            serde_json::from_str(text).unwrap_or(Json::Null),
        ),
        None => not_found(40403, format!("Schema {id} not found")),
    }
}

async fn subjects(State(registry): State<Arc<Registry>>) -> Response {
    let names: Vec<String> = registry.read().subjects.keys().cloned().collect();
    reply(StatusCode::OK, json!(names))
}

async fn versions(State(registry): State<Arc<Registry>>, Path(subject): Path<String>) -> Response {
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

async fn version(
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

async fn raw_version(
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

async fn register(
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

/// The query of a compatibility check: `verbose=true` adds the reasons.
#[derive(Debug, serde::Deserialize)]
struct CompatibilityQuery {
    #[serde(default)]
    verbose: bool,
}

/// `POST /compatibility/subjects/{s}/versions/{v}`: can the posted schema
/// read records written with version `v` (BACKWARD)? `{"is_compatible":
/// bool}`, with `messages` when `verbose=true`.
async fn compatibility(
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

/// `POST /compatibility/subjects/{s}/versions`: under BACKWARD, the same
/// as against the latest version.
async fn compatibility_latest(
    state: State<Arc<Registry>>,
    Path(subject): Path<String>,
    query: axum::extract::Query<CompatibilityQuery>,
    body: axum::body::Bytes,
) -> Response {
    compatibility(state, Path((subject, "latest".to_string())), query, body).await
}

async fn lookup(
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

    fn telemetry() -> Arc<LoadedSchema> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../schemas/telemetry_event.avsc");
        Arc::new(LoadedSchema::from_file(&path).unwrap())
    }

    fn newer() -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../schemas/telemetry_event.avsc");
        let mut schema: Json =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        schema["fields"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "region", "type": ["null", "string"], "default": null}));
        schema.to_string()
    }

    #[test]
    fn a_compatible_newer_version_registers_and_resolves_to_the_local_reader() {
        let local = telemetry();
        let registry = Registry::builtin(
            [&local],
            &[("telemetry.events-value".into(), vec![local.clone()])],
        );
        assert_eq!(
            registry
                .register("telemetry.events-value", &local.canonical_form())
                .unwrap(),
            local.id
        );
        let id = registry
            .register("telemetry.events-value", &newer())
            .unwrap();
        assert_ne!(id, local.id);
        assert_eq!(
            registry
                .register("telemetry.events-value", &newer())
                .unwrap(),
            id
        );
        let remote = registry.remote(id).unwrap();
        assert_eq!(remote.reader.as_ref().unwrap().id, local.id);
        assert_eq!(
            registry.read().subjects["telemetry.events-value"],
            vec![local.id, id]
        );
        // A required field without default cannot read the old version.
        let mut breaking: Json = serde_json::from_str(&newer()).unwrap();
        breaking["fields"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "must", "type": "string"}));
        assert!(matches!(
            registry.register("telemetry.events-value", &breaking.to_string()),
            Err(RegistryError::Incompatible(_))
        ));
        assert!(matches!(
            registry.register("x-value", "{\"type\": \"nope\"}"),
            Err(RegistryError::Invalid(_))
        ));
    }

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
