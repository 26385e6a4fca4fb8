//! The plugin store and hot reload: every plugin version is published to a
//! compacted topic (see [`store`]), every host follows it, validates the
//! active version of each plugin its stages use, and hands it to the stages,
//! which swap it in at their next batch boundary.
//!
//! Deploy path: `sluice plugin push NAME FILE.wasm` → `PUT
//! /admin/plugins/NAME` → [`PluginService::push`] validates the candidate
//! on this host (it is a component, of the `transform` world, and `init`
//! succeeds with the config of every local stage that chains NAME), then
//! publishes it; a rejected candidate never reaches the topic, so no stage
//! anywhere sees it.

pub mod cli;
pub mod scaffold;
pub mod store;
mod watch;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::config::{Limits, LoadedConfig};
use crate::kafka::Kafka;
use crate::runtime::{Runtime, TransformPlugin, plugin_config_json};
use store::{ActiveRecord, HostRecord, Store, VersionRecord, now_ms};

pub use watch::watch_dir;

/// A validated plugin version handed to stages.
#[derive(Clone)]
pub struct Candidate {
    /// The loaded component.
    pub plugin: Arc<TransformPlugin>,
    /// Store version number.
    pub version: u32,
}

impl Candidate {
    /// The label output headers carry: `v2-3f2a9c1b0d4e`.
    pub fn label(&self) -> String {
        format!("v{}-{}", self.version, self.plugin.version())
    }
}

/// A stage's report that it swapped a version in.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Stage name.
    pub stage: String,
    /// Plugin name.
    pub name: String,
    /// Store version (0: the plugin directory's file).
    pub version: u32,
    /// Full sha256.
    pub sha256: String,
}

/// The active versions stages should run, shared between the activator
/// and stage threads. Stages look at [`Updates::generation`] at the top of
/// every loop iteration (an atomic load) and never wait on the store.
#[derive(Clone)]
pub struct Updates {
    generation: Arc<AtomicU64>,
    plugins: Arc<Mutex<BTreeMap<String, Candidate>>>,
    applied: Sender<Applied>,
}

impl Updates {
    /// The current generation; it changes whenever a version is set.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The active candidates by plugin name.
    pub fn snapshot(&self) -> BTreeMap<String, Candidate> {
        self.plugins.lock().map(|p| p.clone()).unwrap_or_default()
    }

    fn set(&self, name: &str, candidate: Candidate) {
        if let Ok(mut plugins) = self.plugins.lock() {
            plugins.insert(name.to_string(), candidate);
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Report a swap (never blocks).
    pub fn applied(&self, applied: Applied) {
        let _ = self.applied.send(applied);
    }
}

/// How one local stage uses plugins, for validation.
struct StageUse {
    stage: String,
    chain: Vec<String>,
    sink: Option<String>,
    configs: BTreeMap<String, String>,
    limits: Limits,
}

/// One row of `sluice plugin list`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PluginReport {
    /// Plugin name.
    pub name: String,
    /// The active version number.
    pub active_version: Option<u32>,
    /// Its sha256.
    pub sha256: Option<String>,
    /// The contract version it exports (`0.2.0`, `0.1.0`).
    pub contract: Option<String>,
    /// When it was made active, epoch ms.
    pub deployed_at_ms: Option<i64>,
    /// Who made it active: the admin token's name and the host it went
    /// through (`ops@host-1`).
    pub deployed_by: Option<String>,
    /// `publish` or `rollback`.
    pub action: Option<String>,
    /// Every version in the store.
    pub versions: Vec<VersionRecord>,
    /// What each host reported running.
    pub hosts: Vec<HostRecord>,
}

/// What the store holds of one plugin ([`PluginService::stored`]).
#[derive(Debug, Default)]
pub struct StoredVersions {
    /// The active version number.
    pub active: Option<u32>,
    /// Every version.
    pub versions: Vec<StoredVersion>,
}

/// One version in [`StoredVersions`].
#[derive(Debug, Clone)]
pub struct StoredVersion {
    /// Its number.
    pub version: u32,
    /// Its sha256.
    pub sha256: String,
    /// The component, once all its chunks were read.
    pub bytes: Option<Arc<Vec<u8>>>,
}

/// Why a push or rollback was refused.
#[derive(Debug)]
pub enum Refused {
    /// The candidate failed validation (HTTP 422).
    Invalid(String),
    /// No such plugin or version (HTTP 404).
    NotFound(String),
    /// The store could not be written or read (HTTP 503).
    Unavailable(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Invalid(m) | Refused::NotFound(m) | Refused::Unavailable(m) => f.write_str(m),
        }
    }
}

/// What a push or rollback did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Published {
    /// Plugin name.
    pub name: String,
    /// The version now active.
    pub version: u32,
    /// Its sha256.
    pub sha256: String,
    /// False when that version was already active.
    pub changed: bool,
}

/// The plugin store, validation and activation for one host.
pub struct PluginService {
    host: String,
    runtime: Runtime,
    stages: Vec<StageUse>,
    store: Store,
    updates: Updates,
    /// Serialises pushes and rollbacks on this host (version numbering).
    publishing: Mutex<()>,
}

impl PluginService {
    /// Open the store, read it, and validate the active version of every
    /// plugin the local stages chain. Returns the service and the receiver
    /// of stage swap reports; call [`PluginService::start`] once the stages
    /// were built.
    pub async fn open(
        loaded: &LoadedConfig,
        kafka: &Kafka,
        runtime: &Runtime,
    ) -> anyhow::Result<(Arc<Self>, Receiver<String>, Receiver<Applied>)> {
        let plugins = &loaded.config.plugins;
        let (changes_tx, changes_rx) = std::sync::mpsc::channel();
        let (applied_tx, applied_rx) = std::sync::mpsc::channel();
        let store = Store::open(kafka, &plugins.store_topic, changes_tx).await?;
        let stages = loaded
            .config
            .stages
            .iter()
            .map(|s| StageUse {
                stage: s.name.get_ref().clone(),
                chain: s.chain.iter().map(|c| c.get_ref().clone()).collect(),
                sink: s.sink.as_ref().map(|c| c.get_ref().clone()),
                configs: s
                    .chain
                    .iter()
                    .map(|c| (c.get_ref().clone(), plugin_config_json(s, c.get_ref())))
                    .collect(),
                limits: s.limits.unwrap_or(plugins.limits),
            })
            .collect();
        let service = Arc::new(Self {
            host: loaded.config.host_id(),
            runtime: runtime.clone(),
            stages,
            store,
            updates: Updates {
                generation: Arc::new(AtomicU64::new(0)),
                plugins: Arc::new(Mutex::new(BTreeMap::new())),
                applied: applied_tx,
            },
            publishing: Mutex::new(()),
        });
        let names: Vec<String> = service.store.state().active.keys().cloned().collect();
        for name in names {
            if service.used_locally(&name) {
                service.activate(&name);
            }
        }
        Ok((service, changes_rx, applied_rx))
    }

    /// Start the threads that apply store changes and report swaps.
    pub fn start(
        self: &Arc<Self>,
        changes: Receiver<String>,
        applied: Receiver<Applied>,
    ) -> anyhow::Result<()> {
        let service = self.clone();
        std::thread::Builder::new()
            .name("plugin-activator".into())
            .spawn(move || {
                for name in changes {
                    if service.used_locally(&name) {
                        service.activate(&name);
                    }
                }
            })
            .context("cannot start the plugin activator")?;
        let service = self.clone();
        std::thread::Builder::new()
            .name("plugin-reporter".into())
            .spawn(move || {
                let mut running: BTreeMap<String, HostRecord> = BTreeMap::new();
                for a in applied {
                    let record = running.entry(a.name.clone()).or_insert_with(|| HostRecord {
                        host: service.host.clone(),
                        name: a.name.clone(),
                        version: a.version,
                        sha256: a.sha256.clone(),
                        stages: Vec::new(),
                        at_ms: 0,
                    });
                    if record.sha256 != a.sha256 {
                        record.stages.clear();
                    }
                    record.version = a.version;
                    record.sha256 = a.sha256;
                    if !record.stages.contains(&a.stage) {
                        record.stages.push(a.stage);
                    }
                    record.at_ms = now_ms();
                    if let Err(e) = service.store.publish_host(record) {
                        tracing::warn!(error = %format!("{e:#}"), "plugin store: cannot report what this host runs");
                    }
                }
            })
            .context("cannot start the plugin reporter")?;
        Ok(())
    }

    /// What stages watch for new versions.
    pub fn updates(&self) -> Updates {
        self.updates.clone()
    }

    /// Stop following the store (on shutdown, before the broker handle is
    /// dropped); stages keep the versions they run.
    pub fn stop(&self) {
        self.store.stop();
    }

    /// This host's id in the store.
    pub fn host(&self) -> &str {
        &self.host
    }

    fn used_locally(&self, name: &str) -> bool {
        self.stages
            .iter()
            .any(|s| s.chain.iter().any(|c| c == name))
    }

    /// Load the active version of `name` from the store, validate it with
    /// the local stages' configs and hand it to them. A version that fails
    /// here is logged and the old one keeps running.
    fn activate(&self, name: &str) {
        let (version, bytes) = {
            let state = self.store.state();
            match state.active_version(name) {
                Some(stored) => (stored.record.version, stored.bytes.clone()),
                None => {
                    tracing::warn!(
                        plugin = name,
                        "plugin store: the active version is not in the store"
                    );
                    return;
                }
            }
        };
        let Some(bytes) = bytes else {
            tracing::warn!(
                plugin = name,
                version,
                "plugin store: the active version's component is incomplete"
            );
            return;
        };
        if let Some(current) = self.updates.snapshot().get(name)
            && current.version == version
        {
            return;
        }
        match self.validate(name, &bytes) {
            Ok(plugin) => {
                tracing::info!(plugin = name, version, sha256 = %plugin.sha256, "plugin version validated; stages swap it in at their next batch");
                self.updates.set(
                    name,
                    Candidate {
                        plugin: Arc::new(plugin),
                        version,
                    },
                );
            }
            Err(reason) => {
                tracing::error!(plugin = name, version, reason = %reason, "plugin version rejected on this host; the old version keeps running");
            }
        }
    }

    /// Validate a candidate for `name`: a component of the `transform`
    /// world whose `init` accepts the config of every local stage that
    /// chains it.
    pub fn validate(&self, name: &str, bytes: &[u8]) -> Result<TransformPlugin, String> {
        if let Some(stage) = self.stages.iter().find(|s| s.sink.as_deref() == Some(name)) {
            return Err(format!(
                "`{name}` is the sink plugin of stage `{}`; sink plugins are not hot-reloaded (restart the host)",
                stage.stage
            ));
        }
        let plugin =
            TransformPlugin::load(&self.runtime, name, bytes).map_err(|e| format!("{e:#}"))?;
        for stage in self
            .stages
            .iter()
            .filter(|s| s.chain.iter().any(|c| c == name))
        {
            let config = stage.configs.get(name).map_or("{}", String::as_str);
            plugin
                .instantiate(&stage.stage, config, stage.limits)
                .map_err(|e| format!("stage `{}`: `{name}` init failed: {e}", stage.stage))?;
        }
        Ok(plugin)
    }

    /// Validate `bytes` as the next version of `name`, publish it and make
    /// it active; waits until this host's follower read it back.
    pub fn push(&self, name: &str, bytes: &[u8], by: &str) -> Result<Published, Refused> {
        check_name(name).map_err(Refused::Invalid)?;
        let plugin = self.validate(name, bytes).map_err(Refused::Invalid)?;
        let _guard = self.publishing.lock().unwrap_or_else(|p| p.into_inner());
        let (existing, active, next) = {
            let state = self.store.state();
            (
                state.by_sha(name, &plugin.sha256),
                state.active.get(name).map(|a| a.version),
                state.latest(name) + 1,
            )
        };
        let version = match existing {
            Some(v) if active == Some(v) => {
                return Ok(Published {
                    name: name.into(),
                    version: v,
                    sha256: plugin.sha256,
                    changed: false,
                });
            }
            Some(v) => v,
            None => {
                let record = VersionRecord {
                    name: name.into(),
                    version: next,
                    sha256: plugin.sha256.clone(),
                    size: bytes.len(),
                    chunks: bytes.chunks(store::CHUNK_BYTES).count() as u32,
                    published_at_ms: now_ms(),
                    published_by: self.host.clone(),
                    contract: Some(plugin.contract().to_string()),
                };
                self.store
                    .publish_version(&record, bytes)
                    .map_err(|e| Refused::Unavailable(format!("{e:#}")))?;
                next
            }
        };
        self.make_active(name, version, "publish", by)?;
        tracing::info!(plugin = name, version, sha256 = %plugin.sha256, by, "plugin version published");
        Ok(Published {
            name: name.into(),
            version,
            sha256: plugin.sha256,
            changed: true,
        })
    }

    /// Make version `to` of `name` active again (default: the highest
    /// version below the active one), after validating it on this host.
    pub fn rollback(&self, name: &str, to: Option<u32>, by: &str) -> Result<Published, Refused> {
        let _guard = self.publishing.lock().unwrap_or_else(|p| p.into_inner());
        let (target, bytes, sha256) = {
            let state = self.store.state();
            let versions = state
                .versions
                .get(name)
                .ok_or_else(|| Refused::NotFound(format!("plugin `{name}` is not in the store")))?;
            let active = state.active.get(name).map(|a| a.version);
            let target = match (to, active) {
                (Some(to), _) => to,
                (None, Some(active)) => versions
                    .keys()
                    .rev()
                    .copied()
                    .find(|v| *v < active)
                    .ok_or_else(|| {
                        Refused::NotFound(format!(
                            "plugin `{name}` has no version before v{active} to roll back to"
                        ))
                    })?,
                (None, None) => {
                    return Err(Refused::NotFound(format!(
                        "plugin `{name}` has no active version"
                    )));
                }
            };
            let stored = versions.get(&target).ok_or_else(|| {
                Refused::NotFound(format!("plugin `{name}` has no version v{target}"))
            })?;
            let bytes = stored.bytes.clone().ok_or_else(|| {
                Refused::Unavailable(format!(
                    "plugin `{name}` v{target}: component incomplete in the store"
                ))
            })?;
            (target, bytes, stored.record.sha256.clone())
        };
        self.validate(name, &bytes).map_err(Refused::Invalid)?;
        self.make_active(name, target, "rollback", by)?;
        tracing::info!(plugin = name, version = target, by, "plugin rolled back");
        Ok(Published {
            name: name.into(),
            version: target,
            sha256,
            changed: true,
        })
    }

    fn make_active(&self, name: &str, version: u32, action: &str, by: &str) -> Result<(), Refused> {
        let record = ActiveRecord {
            name: name.into(),
            version,
            action: action.into(),
            at_ms: now_ms(),
            by: by.into(),
        };
        self.store
            .publish_active(&record)
            .map_err(|e| Refused::Unavailable(format!("{e:#}")))?;
        let seen = self.store.wait_for(Duration::from_secs(10), |s| {
            s.active.get(name) == Some(&record)
        });
        if !seen {
            return Err(Refused::Unavailable(format!(
                "published, but this host did not read `{name}` v{version} back within 10 s"
            )));
        }
        Ok(())
    }

    /// The store's versions of `name` (number, sha256, the component when
    /// complete) and which one is active, for callers that run a named
    /// version themselves (dead-letter redrive `through`).
    pub fn stored(&self, name: &str) -> StoredVersions {
        let state = self.store.state();
        StoredVersions {
            active: state.active.get(name).map(|a| a.version),
            versions: state
                .versions
                .get(name)
                .map(|v| {
                    v.values()
                        .map(|s| StoredVersion {
                            version: s.record.version,
                            sha256: s.record.sha256.clone(),
                            bytes: s.bytes.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Every plugin in the store with its active version and hosts.
    pub fn list(&self) -> Vec<PluginReport> {
        let state = self.store.state();
        let mut names: Vec<&String> = state.versions.keys().collect();
        names.extend(state.active.keys());
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let active = state.active.get(name);
                let stored = state.active_version(name);
                PluginReport {
                    name: name.clone(),
                    active_version: active.map(|a| a.version),
                    sha256: stored.map(|s| s.record.sha256.clone()),
                    contract: stored.and_then(|s| s.record.contract.clone()),
                    deployed_at_ms: active.map(|a| a.at_ms),
                    deployed_by: active.map(|a| a.by.clone()),
                    action: active.map(|a| a.action.clone()),
                    versions: state
                        .versions
                        .get(name)
                        .map(|v| v.values().map(|s| s.record.clone()).collect())
                        .unwrap_or_default(),
                    hosts: state
                        .hosts
                        .iter()
                        .filter(|((_, n), _)| n == name)
                        .map(|(_, h)| h.clone())
                        .collect(),
                }
            })
            .collect()
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "plugin name `{name}` must be non-empty ASCII letters, digits, `-` or `_`"
        ));
    }
    Ok(())
}

/// Load the active store versions for stage building: the plugins the
/// store holds win over the plugin directory.
pub fn overrides(service: Option<&Arc<PluginService>>) -> BTreeMap<String, Candidate> {
    service.map(|s| s.updates.snapshot()).unwrap_or_default()
}

/// Refuse a store configuration that cannot work.
pub fn check_config(loaded: &LoadedConfig) -> anyhow::Result<()> {
    let plugins = &loaded.config.plugins;
    if plugins.watch && !plugins.store {
        bail!(
            "[plugins] watch = true needs store = true (a changed file is published like a push)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_are_plain() {
        assert!(check_name("tagger").is_ok());
        assert!(check_name("fixture-add_field2").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name("../x").is_err());
    }
}
