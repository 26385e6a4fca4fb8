//! Sinks: the capabilities a sink plugin writes through, granted per stage in
//! TOML (`[connections.NAME]` listed in the stage's `connections`), and the
//! runner that writes a stage's batches through a sink plugin.
//!
//! * PostgreSQL connections ([`postgres`]): the plugin hands over rows, the
//!   host bulk-loads them with binary `COPY` and upserts on the key columns,
//!   in one transaction per batch, so a redelivered batch leaves one row per
//!   key.
//! * Directories ([`files`]): append-only files, synced before the batch's
//!   offsets are committed.
//!
//! A plugin reaches only what its stage was granted; anything else is refused
//! with an error that says so, and the batch goes to the dead-letter topic.

pub mod files;
pub mod postgres;
mod runner;
mod session;

pub use runner::{SinkRunner, Unavailable};
pub use session::{Grants, Problem, Session};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::{ConnectionConfig, LoadedConfig, StageConfig, interpolate_env};

/// A granted target, opened once per host and shared by every stage that is
/// granted it.
#[derive(Clone)]
pub enum Target {
    /// A PostgreSQL database (a connection pool).
    Postgres(Arc<postgres::Database>),
    /// A directory for files.
    Directory(Arc<files::Directory>),
}

/// Every `[connections.NAME]` of a configuration, opened. Pools connect
/// lazily: a database that is down at start-up delays the first batch, it
/// does not stop the host.
pub struct Connections {
    targets: BTreeMap<String, Target>,
    runtime: tokio::runtime::Handle,
}

impl Connections {
    /// Open every configured connection. Async I/O runs on `runtime`.
    pub fn open(loaded: &LoadedConfig, runtime: tokio::runtime::Handle) -> anyhow::Result<Self> {
        let mut targets = BTreeMap::new();
        for (name, config) in &loaded.config.connections {
            let target = match config {
                ConnectionConfig::Postgres {
                    url,
                    pool_size,
                    query_timeout_ms,
                } => {
                    let url = interpolate_env(url)
                        .map_err(anyhow::Error::msg)
                        .with_context(|| format!("connections.{name}.url"))?;
                    let _guard = runtime.enter();
                    Target::Postgres(Arc::new(
                        postgres::Database::new(
                            name,
                            &url,
                            *pool_size,
                            Duration::from_millis(*query_timeout_ms),
                        )
                        .with_context(|| format!("connections.{name}"))?,
                    ))
                }
                ConnectionConfig::Directory { path } => Target::Directory(Arc::new(
                    files::Directory::open(name, &loaded.resolve(path))
                        .with_context(|| format!("connections.{name}"))?,
                )),
            };
            targets.insert(name.clone(), target);
        }
        Ok(Self { targets, runtime })
    }

    /// The subset a stage was granted.
    pub fn grants_for(&self, stage: &StageConfig) -> Arc<Grants> {
        let granted = stage
            .connections
            .iter()
            .filter_map(|name| {
                let name = name.get_ref();
                self.targets.get(name).map(|t| (name.clone(), t.clone()))
            })
            .collect();
        Arc::new(Grants::new(
            stage.name.get_ref(),
            granted,
            self.targets.keys().cloned().collect(),
            self.runtime.clone(),
        ))
    }
}
