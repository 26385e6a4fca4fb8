//! Sink plugins: components of the `sink` world, whose `sql` and `files`
//! imports the host serves from the capabilities granted to the stage.
//!
//! Time spent inside those host calls (a bulk load can take a while) does not
//! count against the plugin's time bound; only the plugin's own running does.

use std::time::{Duration, Instant};

use anyhow::Context;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::Capabilities;
use super::bindings::v2::sink::sluice::plugin::{files, sql};
use super::bindings::{v1, v2};
use super::engine::Runtime;
use super::event::Event;
use super::plugin::{
    CallError, Info, Plugin, PluginState, Scratch, World, classify, link, lower_v2, new_store,
    reclaim, to_v1,
};
use crate::config::Limits;

impl PluginState {
    fn with_session<T>(
        &mut self,
        call: impl FnOnce(&mut dyn Capabilities) -> Result<T, String>,
    ) -> Result<T, String> {
        let started = Instant::now();
        let result = match self.session.as_mut() {
            Some(session) => call(session.as_mut()),
            None => Err(format!(
                "plugin `{}` has no sink capabilities",
                self.id().name
            )),
        };
        self.host_time += started.elapsed();
        result
    }
}

impl sql::Host for PluginState {
    fn write(&mut self, request: sql::TableWrite) -> Result<u64, String> {
        self.with_session(|s| s.write(request))
    }

    fn create_table(
        &mut self,
        connection: String,
        table: String,
        columns: Vec<sql::ColumnDef>,
        key_columns: Vec<String>,
    ) -> Result<(), String> {
        self.with_session(|s| s.create_table(&connection, &table, &columns, &key_columns))
    }
}

impl files::Host for PluginState {
    fn append(&mut self, path: String, data: Vec<u8>) -> Result<(), String> {
        self.with_session(|s| s.append(&path, &data))
    }

    fn size(&mut self, path: String) -> Result<Option<u64>, String> {
        self.with_session(|s| s.size(&path))
    }

    fn rename(&mut self, old_path: String, new_path: String) -> Result<(), String> {
        self.with_session(|s| s.rename(&old_path, &new_path))
    }
}

/// Contract 0.1's `sql` and `files` imports: the same calls, converted.
mod v1_imports {
    use super::super::bindings::v1::sink::sluice::plugin::{files as old_files, sql as old};
    use super::{PluginState, files, sql};

    fn value(v: old::SqlValue) -> sql::SqlValue {
        match v {
            old::SqlValue::Null => sql::SqlValue::Null,
            old::SqlValue::Boolean(b) => sql::SqlValue::Boolean(b),
            old::SqlValue::Int(i) => sql::SqlValue::Int(i),
            old::SqlValue::Float(f) => sql::SqlValue::Float(f),
            old::SqlValue::Text(t) => sql::SqlValue::Text(t),
            old::SqlValue::Bytes(b) => sql::SqlValue::Bytes(b),
            old::SqlValue::Json(j) => sql::SqlValue::Json(j),
            old::SqlValue::TimestampMs(t) => sql::SqlValue::TimestampMs(t),
        }
    }

    fn kind(k: old::SqlType) -> sql::SqlType {
        match k {
            old::SqlType::Boolean => sql::SqlType::Boolean,
            old::SqlType::Int => sql::SqlType::Int,
            old::SqlType::Float => sql::SqlType::Float,
            old::SqlType::Text => sql::SqlType::Text,
            old::SqlType::Bytes => sql::SqlType::Bytes,
            old::SqlType::Json => sql::SqlType::Json,
            old::SqlType::Timestamp => sql::SqlType::Timestamp,
        }
    }

    impl old::Host for PluginState {
        fn write(&mut self, r: old::TableWrite) -> Result<u64, String> {
            sql::Host::write(
                self,
                sql::TableWrite {
                    connection: r.connection,
                    table: r.table,
                    columns: r.columns,
                    key_columns: r.key_columns,
                    rows: r
                        .rows
                        .into_iter()
                        .map(|row| row.into_iter().map(value).collect())
                        .collect(),
                },
            )
        }

        fn create_table(
            &mut self,
            connection: String,
            table: String,
            columns: Vec<old::ColumnDef>,
            key_columns: Vec<String>,
        ) -> Result<(), String> {
            let columns = columns
                .into_iter()
                .map(|c| sql::ColumnDef {
                    name: c.name,
                    kind: kind(c.kind),
                    nullable: c.nullable,
                })
                .collect();
            sql::Host::create_table(self, connection, table, columns, key_columns)
        }
    }

    impl old_files::Host for PluginState {
        fn append(&mut self, path: String, data: Vec<u8>) -> Result<(), String> {
            files::Host::append(self, path, data)
        }

        fn size(&mut self, path: String) -> Result<Option<u64>, String> {
            files::Host::size(self, path)
        }

        fn rename(&mut self, old_path: String, new_path: String) -> Result<(), String> {
            files::Host::rename(self, old_path, new_path)
        }
    }
}

/// A sink component, pre-instantiated, in the contract version it exports.
#[derive(Clone)]
pub enum SinkPre {
    /// `sluice:plugin/sinker@0.2.0`.
    V2(v2::sink::SinkPre<PluginState>),
    /// `sluice:plugin/sinker@0.1.0`.
    V1(v1::sink::SinkPre<PluginState>),
}

impl World for SinkPre {
    fn prepare(runtime: &Runtime, name: &str, bytes: &[u8]) -> anyhow::Result<Self> {
        let instance_pre = link(runtime, name, bytes)?;
        if let Ok(pre) = v2::sink::SinkPre::new(instance_pre.clone()) {
            return Ok(SinkPre::V2(pre));
        }
        v1::sink::SinkPre::new(instance_pre).map(SinkPre::V1).map_err(anyhow::Error::from).with_context(|| {
            format!("`{name}` does not implement the `sluice:plugin/sink` world (expected export `sluice:plugin/sinker@0.2.0`, or `@0.1.0`)")
        })
    }

    fn contract(&self) -> &'static str {
        match self {
            SinkPre::V2(_) => "0.2.0",
            SinkPre::V1(_) => "0.1.0",
        }
    }
}

/// A sink plugin: a component of the `sink` world.
pub type SinkPlugin = Plugin<SinkPre>;

impl SinkPlugin {
    /// A fresh instance writing through `capabilities`, with `config`
    /// passed to `init`.
    pub fn instantiate(
        &self,
        stage: &str,
        config: &str,
        limits: Limits,
        capabilities: Box<dyn Capabilities>,
    ) -> Result<SinkInstance, CallError> {
        let mut store = new_store(&self.runtime, self.id(stage), limits, Some(capabilities));
        // Past the deadline, credit the time the plugin spent waiting on the
        // host, then trap if nothing is left.
        store.epoch_deadline_callback(|mut context| {
            let credit = std::mem::take(&mut context.data_mut().host_time);
            if credit.is_zero() {
                Err(Trap::Interrupt.into())
            } else {
                Ok(UpdateDeadline::Continue(Runtime::ticks_for(credit)))
            }
        });
        let bound = Duration::from_millis(limits.timeout_ms);
        let bindings = match &self.pre {
            SinkPre::V2(pre) => pre.instantiate(&mut store).map(SinkBindings::V2),
            SinkPre::V1(pre) => pre.instantiate(&mut store).map(SinkBindings::V1),
        }
        .map_err(|e| classify(e, &store, bound, limits.memory_mb))?;
        let mut instance = SinkInstance {
            store,
            bindings,
            ticks: Runtime::ticks_for(bound),
            bound,
            memory_mb: limits.memory_mb,
            info: Info::default(),
            scratch: Scratch::default(),
        };
        instance.arm();
        let result = match &instance.bindings {
            SinkBindings::V2(b) => b
                .sluice_plugin_sinker()
                .call_init(&mut instance.store, config)
                .map(|r| r.and_then(|info| Info::from_wire(info).map(|i| instance.info = i))),
            SinkBindings::V1(b) => b
                .sluice_plugin_sinker()
                .call_init(&mut instance.store, config),
        };
        match result {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return Err(CallError::Init(message)),
            Err(e) => return Err(instance.classify(e)),
        }
        // `init` may not leave a transaction open.
        if let Some(session) = instance.store.data_mut().session.as_mut() {
            session.discard();
        }
        Ok(instance)
    }
}

/// A live sink instance. Discard it after a trap.
pub struct SinkInstance {
    store: Store<PluginState>,
    bindings: SinkBindings,
    ticks: u64,
    bound: Duration,
    memory_mb: u64,
    info: Info,
    scratch: Scratch,
}

enum SinkBindings {
    V2(v2::sink::Sink),
    V1(v1::sink::Sink),
}

impl SinkInstance {
    fn arm(&mut self) {
        self.store.data_mut().host_time = Duration::ZERO;
        self.store.set_epoch_deadline(self.ticks);
    }

    fn classify(&self, error: wasmtime::Error) -> CallError {
        classify(error, &self.store, self.bound, self.memory_mb)
    }

    /// Run `write` on a batch under the time bound and memory cap. The inner
    /// `Err` is the plugin's own batch-level error. The caller must then end
    /// the batch through [`SinkInstance::capabilities`].
    pub fn write(&mut self, batch: &[Event]) -> Result<Result<(), String>, CallError> {
        self.arm();
        let result = match &self.bindings {
            SinkBindings::V2(b) => {
                let lowered = lower_v2(batch, &self.info, &mut self.scratch);
                let result = b
                    .sluice_plugin_sinker()
                    .call_write(&mut self.store, &lowered);
                reclaim(lowered, &mut self.scratch);
                result
            }
            SinkBindings::V1(b) => {
                let events: Vec<_> = batch.iter().map(to_v1).collect();
                b.sluice_plugin_sinker()
                    .call_write(&mut self.store, &events)
            }
        };
        result.map_err(|e| self.classify(e))
    }

    /// The instance's capabilities, as the type they were granted as
    /// (`None` for another type): their owner ends each batch through them.
    pub fn capabilities<C: Capabilities>(&mut self) -> Option<&mut C> {
        self.store
            .data_mut()
            .session
            .as_mut()
            .and_then(|c| c.as_any_mut().downcast_mut::<C>())
    }
}
