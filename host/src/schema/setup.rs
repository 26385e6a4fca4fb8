//! The schema set and registry a configuration asks for: which `.avsc`
//! files a host loads, the subjects it writes them under, and whether its
//! registry is built in or external (ids registered or fetched at start).
//! `sluice run` and `sluice replay` both set their schemas up here.

use std::sync::Arc;

use anyhow::Context;

use super::{LoadedSchema, SchemaSet};
use crate::config::LoadedConfig;

/// Every schema the host can decode: the ingest routes' and the `schemas`
/// directory's.
pub fn schema_set(loaded: &LoadedConfig) -> anyhow::Result<SchemaSet> {
    let mut set = SchemaSet::default();
    if let Some(ingest) = &loaded.config.ingest {
        for route in &ingest.routes {
            set.load(&loaded.resolve(route.schema.get_ref()))?;
        }
    }
    if let Some(dir) = &loaded.config.schemas {
        set.load_dir(&loaded.resolve(dir.get_ref()))?;
    }
    // Last, so a reader schema never becomes the default reader of its
    // full name (the first loaded is).
    for stage in &loaded.config.stages {
        if let Some(path) = &stage.reader_schema {
            set.load(&loaded.resolve(path.get_ref()))
                .with_context(|| format!("stage `{}`: reader_schema", stage.name.get_ref()))?;
        }
    }
    Ok(set)
}

/// The set a stage decodes with: `set` with the stage's output framing and
/// its `reader_schema` (loaded into `set` by [`schema_set`]).
pub fn stage_set(
    loaded: &LoadedConfig,
    set: &SchemaSet,
    stage: &crate::config::StageConfig,
) -> anyhow::Result<SchemaSet> {
    Ok(set
        .with_output_framing(stage.framing)
        .with_reader(reader_schema(loaded, set, stage)?))
}

/// A stage's `reader_schema`, as loaded into `set`.
pub fn reader_schema(
    loaded: &LoadedConfig,
    set: &SchemaSet,
    stage: &crate::config::StageConfig,
) -> anyhow::Result<Option<Arc<LoadedSchema>>> {
    let Some(path) = &stage.reader_schema else {
        return Ok(None);
    };
    let path = loaded.resolve(path.get_ref());
    set.loaded(&path).cloned().map(Some).with_context(|| {
        format!(
            "stage `{}`: reader_schema {} is not in the schema set",
            stage.name.get_ref(),
            path.display()
        )
    })
}

/// The built-in schema registry: every schema of the set, and a subject
/// (TopicNameStrategy `<topic>-value` unless configured) for each topic a route writes (its
/// schema) or a stage writes (the schemas of the routes writing its input,
/// else every schema of the set).
pub fn builtin_registry(
    loaded: &LoadedConfig,
    set: &mut SchemaSet,
) -> anyhow::Result<super::registry::Registry> {
    let subjects = subjects(loaded, set, false)?;
    let all: Vec<_> = set.schemas().cloned().collect();
    Ok(super::registry::Registry::builtin(&all, &subjects))
}

/// With `[schema_registry]`: the id of every schema written in Confluent
/// framing, from the registry (registered first with `auto_register`), set
/// in `set`; the registry client then fetches unknown ids for readers.
pub async fn external_registry(
    loaded: &LoadedConfig,
    set: &mut SchemaSet,
    config: &crate::config::SchemaRegistryConfig,
) -> anyhow::Result<super::registry::Registry> {
    use super::registry_client::RegistryClient;
    let client = RegistryClient::from_config(config)?;
    set.clear_ids();
    for (subject, schemas) in subjects(loaded, set, true)? {
        for schema in schemas {
            let id = client
                .id_for(&subject, &schema.canonical_form())
                .await
                .with_context(|| {
                    format!(
                        "schema registry: {} as subject `{subject}`",
                        schema.path.display()
                    )
                })?;
            tracing::info!(subject, id, schema = %schema.path.display(), "schema registry id");
            set.assign_id(&schema.fingerprint, id)?;
        }
    }
    let all: Vec<_> = set.schemas().cloned().collect();
    Ok(super::registry::Registry::external(
        &all,
        client,
        tokio::runtime::Handle::current(),
    ))
}

/// For readers outside `sluice run` (replay): with `[schema_registry]`,
/// Confluent ids are the registry's, so the built-in ids are dropped and
/// every id is fetched (and cached) from the registry on the runtime
/// `handle`, then resolved to the local schema of the same full name.
pub fn external_reader(
    loaded: &LoadedConfig,
    set: &mut SchemaSet,
    handle: tokio::runtime::Handle,
) -> anyhow::Result<()> {
    let Some(config) = &loaded.config.schema_registry else {
        return Ok(());
    };
    let client = super::registry_client::RegistryClient::from_config(config)?;
    set.clear_ids();
    let all: Vec<_> = set.schemas().cloned().collect();
    set.set_registry(Arc::new(super::registry::Registry::external(
        &all, client, handle,
    )));
    Ok(())
}

type Subjects = Vec<(String, Vec<Arc<LoadedSchema>>)>;

/// Subject (named by `[schema_registry] subject_strategy`, default
/// `<topic>-value`, or a route's `subject`) → schemas written to it, for
/// every route and stage output (only those in Confluent framing with
/// `confluent_only`).
fn subjects(
    loaded: &LoadedConfig,
    set: &mut SchemaSet,
    confluent_only: bool,
) -> anyhow::Result<Subjects> {
    use crate::config::Framing;
    let mut subjects: Vec<(String, Vec<Arc<LoadedSchema>>)> = Vec::new();
    let mut add = |subject: String, schema: Arc<LoadedSchema>| match subjects
        .iter_mut()
        .find(|(s, _)| *s == subject)
    {
        Some((_, versions)) => {
            if !versions.iter().any(|v| v.id == schema.id) {
                versions.push(schema)
            }
        }
        None => subjects.push((subject, vec![schema])),
    };
    let strategy = loaded
        .config
        .schema_registry
        .as_ref()
        .map(|r| r.subject_strategy)
        .unwrap_or_default();
    let name =
        |topic: &str, schema: &LoadedSchema| strategy.subject(topic, schema.full_name().as_deref());
    let mut by_topic: Vec<(String, Arc<LoadedSchema>)> = Vec::new();
    if let Some(ingest) = &loaded.config.ingest {
        for route in &ingest.routes {
            let schema = set.load(&loaded.resolve(route.schema.get_ref()))?;
            if !confluent_only || route.framing == Framing::Confluent {
                let subject = match &route.subject {
                    Some(subject) => subject.clone(),
                    None => name(route.topic.get_ref(), &schema),
                };
                add(subject, schema.clone());
            }
            by_topic.push((route.topic.get_ref().clone(), schema));
        }
    }
    for stage in &loaded.config.stages {
        let Some(output) = &stage.output else {
            continue;
        };
        if confluent_only && stage.framing != Framing::Confluent {
            continue;
        }
        let from_routes: Vec<_> = by_topic
            .iter()
            .filter(|(t, _)| t == stage.input.get_ref())
            .map(|(_, s)| s.clone())
            .collect();
        let schemas = if from_routes.is_empty() {
            set.schemas().cloned().collect()
        } else {
            from_routes
        };
        for schema in schemas {
            add(name(output.get_ref(), &schema), schema);
        }
    }
    Ok(subjects)
}
