//! Schemas by registry id, and the built-in Confluent-compatible registry
//! API.
//!
//! A host whose config has no `[schema_registry]` is its own registry for
//! the schemas it writes: each schema's id is derived from its fingerprint
//! ([`super::framing::builtin_id`]), so every host gives the same schema the
//! same id with nothing stored, and the subjects are `<topic>-value`
//! (TopicNameStrategy) of every topic a route or stage writes. It serves
//! the subset of the Confluent REST API stock serializers and deserializers
//! use (see [`super::registry_api::router`]). Schemas that other producers register through it
//! (a newer, compatible version of a subject's schema) are kept in memory:
//! this process's stages decode their records, resolving the writer's schema
//! to the local schema of the same full name (the reader schema). Production
//! points at a real registry.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;

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
pub(super) struct Store {
    /// Schema text by id (local and registered).
    pub(super) texts: BTreeMap<u32, String>,
    /// Registered writer schemas that are not local files.
    remote: HashMap<u32, Arc<Remote>>,
    /// Subject → ids, one per version in order.
    pub(super) subjects: BTreeMap<String, Vec<u32>>,
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

    pub(super) fn read(&self) -> std::sync::RwLockReadGuard<'_, Store> {
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

    pub(super) fn writer_schema(&self, id: u32) -> Option<Schema> {
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

/// The schemas the registry's tests (here and in `registry_api`) use.
#[cfg(test)]
pub(super) mod test_schemas {
    use std::sync::Arc;

    use serde_json::{Value as Json, json};

    use crate::schema::LoadedSchema;

    /// The bundled telemetry schema.
    pub fn telemetry() -> Arc<LoadedSchema> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../schemas/telemetry_event.avsc");
        Arc::new(LoadedSchema::from_file(&path).unwrap())
    }

    /// A compatible newer version of it (an optional `region`).
    pub fn newer() -> String {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value as Json, json};
    use test_schemas::{newer, telemetry};

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
}
