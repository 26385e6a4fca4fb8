//! Sink plugins: components of the `sink` world, whose `sql` and `files`
//! imports the host serves from the capabilities granted to the stage.
//!
//! Time spent inside those host calls (a bulk load can take a while) does not
//! count against the plugin's time bound; only the plugin's own running does.

use std::time::{Duration, Instant};

use anyhow::Context;
use wasmtime::component::HasSelf;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::Event;
use super::bindings::sink::sluice::plugin::{files, sql};
use super::bindings::sink::{Sink, SinkPre};
use super::engine::Runtime;
use super::plugin::{CallError, Plugin, PluginState, World, classify, link, new_store};
use crate::config::Limits;
use crate::sink::Session;

impl PluginState {
    fn with_session<T>(
        &mut self,
        call: impl FnOnce(&mut Session) -> Result<T, String>,
    ) -> Result<T, String> {
        let started = Instant::now();
        let result = match self.session.as_mut() {
            Some(session) => call(session),
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

impl World for SinkPre<PluginState> {
    fn prepare(runtime: &Runtime, name: &str, bytes: &[u8]) -> anyhow::Result<Self> {
        let instance_pre = link(runtime, name, bytes, |linker| {
            Sink::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |s| s)
        })?;
        SinkPre::new(instance_pre).map_err(anyhow::Error::from).with_context(|| {
            format!("`{name}` does not implement the `sluice:plugin/sink` world (expected export `sluice:plugin/sinker@0.1.0`)")
        })
    }
}

/// A sink plugin: a component of the `sink` world.
pub type SinkPlugin = Plugin<SinkPre<PluginState>>;

impl SinkPlugin {
    /// A fresh instance writing through `session`, with `config` passed to
    /// `init`.
    pub fn instantiate(
        &self,
        stage: &str,
        config: &str,
        limits: Limits,
        session: Session,
    ) -> Result<SinkInstance, CallError> {
        let mut store = new_store(&self.runtime, self.id(stage), limits, Some(session));
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
        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(e, &store, bound, limits.memory_mb))?;
        let mut instance = SinkInstance {
            store,
            bindings,
            ticks: Runtime::ticks_for(bound),
            bound,
            memory_mb: limits.memory_mb,
        };
        instance.arm();
        let result = instance
            .bindings
            .sluice_plugin_sinker()
            .call_init(&mut instance.store, config);
        match result {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return Err(CallError::Init(message)),
            Err(e) => return Err(instance.classify(e)),
        }
        // `init` may not leave a transaction open.
        if let Some(session) = instance.store.data_mut().session.as_mut() {
            let _ = session.finish(false);
        }
        Ok(instance)
    }
}

/// A live sink instance. Discard it after a trap.
pub struct SinkInstance {
    store: Store<PluginState>,
    bindings: Sink,
    ticks: u64,
    bound: Duration,
    memory_mb: u64,
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
    /// the batch with [`SinkInstance::session`]`.finish(..)`.
    pub fn write(&mut self, batch: &[Event]) -> Result<Result<(), String>, CallError> {
        self.arm();
        let result = self
            .bindings
            .sluice_plugin_sinker()
            .call_write(&mut self.store, batch);
        result.map_err(|e| self.classify(e))
    }

    /// The instance's capabilities and open transactions.
    pub fn session(&mut self) -> &mut Session {
        self.store
            .data_mut()
            .session
            .as_mut()
            .expect("sink instances are created with a session")
    }
}
