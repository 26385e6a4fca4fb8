//! One plugin version: loading and type-checking a component, and running
//! calls in a sandboxed store (time bound, memory cap, no ambient WASI).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::transform::sluice::plugin::{host, types};
use super::bindings::transform::{Transform, TransformPre};
use super::bindings::{Event, Level, Outcome};
use super::engine::Runtime;
use crate::config::Limits;

/// Who is calling: used in logs, metrics and dead-letter headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginId {
    /// Plugin name, as chains name it.
    pub name: String,
    /// Version label: the first 12 hex digits of the component's sha256.
    pub version: String,
    /// Stage running it.
    pub stage: String,
}

/// Per-store state: WASI (empty), limits, who the plugin is, and for sink
/// plugins the capabilities their stage was granted.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    id: Arc<PluginId>,
    /// Sink capabilities (connections, directories); `None` for transforms.
    pub(super) session: Option<crate::sink::Session>,
    /// Time spent inside host calls since the last deadline check; it does
    /// not count against the plugin's time bound.
    pub(super) host_time: Duration,
}

impl PluginState {
    /// Who this store runs.
    pub(super) fn id(&self) -> &PluginId {
        &self.id
    }
}

/// A fresh sandboxed store: no files, environment or network, clocks frozen
/// at zero, memory capped at `limits.memory_mb`, and the epoch deadline set
/// to the call bound (which the caller must re-arm before every call).
pub(super) fn new_store(
    runtime: &Runtime,
    id: Arc<PluginId>,
    limits: Limits,
    session: Option<crate::sink::Session>,
) -> Store<PluginState> {
    let wasi = WasiCtxBuilder::new()
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .build();
    let limits_store = StoreLimitsBuilder::new()
        .memory_size(usize::try_from(limits.memory_mb * 1024 * 1024).unwrap_or(usize::MAX))
        .instances(16)
        .build();
    let state = PluginState {
        wasi,
        table: ResourceTable::new(),
        limiter: Limiter {
            limits: limits_store,
            denied: false,
        },
        id,
        session,
        host_time: Duration::ZERO,
    };
    let mut store = Store::new(runtime.engine(), state);
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(Runtime::ticks_for(Duration::from_millis(limits.timeout_ms)));
    store
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for PluginState {}

impl host::Host for PluginState {
    fn log(&mut self, level: Level, message: String) {
        let id = &self.id;
        match level {
            Level::Trace => {
                tracing::trace!(plugin = %id.name, version = %id.version, stage = %id.stage, "{message}")
            }
            Level::Debug => {
                tracing::debug!(plugin = %id.name, version = %id.version, stage = %id.stage, "{message}")
            }
            Level::Info => {
                tracing::info!(plugin = %id.name, version = %id.version, stage = %id.stage, "{message}")
            }
            Level::Warn => {
                tracing::warn!(plugin = %id.name, version = %id.version, stage = %id.stage, "{message}")
            }
            Level::Error => {
                tracing::error!(plugin = %id.name, version = %id.version, stage = %id.stage, "{message}")
            }
        }
    }

    fn counter_add(&mut self, name: String, value: u64) {
        crate::metrics::plugin_counter(&self.id.stage, &self.id.name, &name, value);
    }
}

/// `StoreLimits` plus a note of whether a growth was refused, so an
/// allocation failure can be told apart from other traps.
struct Limiter {
    limits: StoreLimits,
    denied: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        self.denied |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }
}

/// A clock that always reads zero: plugins get no time source unless the
/// operator grants one.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Why a plugin call did not return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The call ran past its time bound.
    Timeout(Duration),
    /// The plugin hit its memory cap.
    Memory(u64),
    /// The plugin panicked or otherwise trapped.
    Trap(String),
    /// `init` refused the configuration.
    Init(String),
}

impl CallError {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Timeout(_) => "timeout",
            CallError::Memory(_) => "memory",
            CallError::Trap(_) => "trap",
            CallError::Init(_) => "init",
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Timeout(d) => {
                write!(f, "plugin exceeded its time bound of {} ms", d.as_millis())
            }
            CallError::Memory(mb) => write!(f, "plugin exceeded its memory cap of {mb} MiB"),
            CallError::Trap(msg) => write!(f, "plugin trapped: {msg}"),
            CallError::Init(msg) => write!(f, "plugin init failed: {msg}"),
        }
    }
}

impl std::error::Error for CallError {}

/// Compile `bytes` (or load them from the cache) and link them against WASI
/// and the host imports `add_world` adds. Errors say whether the file is not
/// WebAssembly, not a component, or imports something the host does not
/// grant.
pub(super) fn link(
    runtime: &Runtime,
    name: &str,
    bytes: &[u8],
    add_world: impl FnOnce(&mut Linker<PluginState>) -> wasmtime::Result<()>,
) -> anyhow::Result<wasmtime::component::InstancePre<PluginState>> {
    if !bytes.starts_with(b"\0asm") {
        anyhow::bail!("`{name}` is not a WebAssembly file (no \\0asm header)");
    }
    let component = runtime
        .compile(bytes)
        .with_context(|| format!("`{name}` is not a valid WebAssembly component"))?;
    let mut linker: Linker<PluginState> = Linker::new(runtime.engine());
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    add_world(&mut linker)?;
    linker
        .instantiate_pre(&component)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("`{name}` imports something the host does not grant"))
}

/// The bytes of a component file.
pub(super) fn read_component(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read plugin file {}", path.display()))
}

/// A world a component can be checked against: the pre-instantiated form
/// bindgen generates for it (`TransformPre`, `SinkPre`).
pub trait World: Sized {
    /// Link and type-check `bytes` (named `name` in errors) against the world.
    fn prepare(runtime: &Runtime, name: &str, bytes: &[u8]) -> anyhow::Result<Self>;
}

impl World for TransformPre<PluginState> {
    fn prepare(runtime: &Runtime, name: &str, bytes: &[u8]) -> anyhow::Result<Self> {
        let instance_pre = link(runtime, name, bytes, |linker| {
            Transform::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |s| s)
        })?;
        TransformPre::new(instance_pre).map_err(anyhow::Error::from).with_context(|| {
            format!("`{name}` does not implement the `sluice:plugin/transform` world (expected export `sluice:plugin/transformer@0.1.0`)")
        })
    }
}

/// A loaded, type-checked component of world `W`.
pub struct Plugin<W> {
    /// Plugin name.
    pub name: String,
    /// Full sha256 of the component bytes, hex.
    pub sha256: String,
    pub(super) pre: W,
    pub(super) runtime: Runtime,
}

/// A transform plugin: a component of the `transform` world.
pub type TransformPlugin = Plugin<TransformPre<PluginState>>;

impl<W: World> Plugin<W> {
    /// Compile (or load from cache) and type-check a component against the
    /// world. Errors name the missing export or the import the host does not
    /// provide.
    pub fn load(runtime: &Runtime, name: &str, bytes: &[u8]) -> anyhow::Result<Self> {
        Ok(Self {
            name: name.to_string(),
            sha256: crate::schema::hex(&Sha256::digest(bytes)),
            pre: W::prepare(runtime, name, bytes)?,
            runtime: runtime.clone(),
        })
    }

    /// Load a component file.
    pub fn load_file(
        runtime: &Runtime,
        name: &str,
        path: &std::path::Path,
    ) -> anyhow::Result<Self> {
        Self::load(runtime, name, &read_component(path)?)
            .with_context(|| format!("plugin file {}", path.display()))
    }

    /// The short version label.
    pub fn version(&self) -> &str {
        &self.sha256[..12]
    }

    /// Who an instance in `stage` is, for logs, metrics and dead letters.
    pub(super) fn id(&self, stage: &str) -> Arc<PluginId> {
        Arc::new(PluginId {
            name: self.name.clone(),
            version: self.version().to_string(),
            stage: stage.to_string(),
        })
    }
}

impl TransformPlugin {
    /// A fresh instance with `config` passed to `init`.
    pub fn instantiate(
        &self,
        stage: &str,
        config: &str,
        limits: Limits,
    ) -> Result<TransformInstance, CallError> {
        let mut store = new_store(&self.runtime, self.id(stage), limits, None);
        let bound = Duration::from_millis(limits.timeout_ms);
        let ticks = Runtime::ticks_for(bound);
        store.epoch_deadline_trap();
        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(e, &store, bound, limits.memory_mb))?;
        let mut instance = TransformInstance {
            store,
            bindings,
            ticks,
            bound,
            memory_mb: limits.memory_mb,
        };
        instance.init(config)?;
        Ok(instance)
    }
}

/// A live instance of a transform plugin. Discard it after any error: a
/// trapped instance cannot be entered again.
pub struct TransformInstance {
    store: Store<PluginState>,
    bindings: Transform,
    ticks: u64,
    bound: Duration,
    memory_mb: u64,
}

impl TransformInstance {
    fn init(&mut self, config: &str) -> Result<(), CallError> {
        self.store.set_epoch_deadline(self.ticks);
        let result = self
            .bindings
            .sluice_plugin_transformer()
            .call_init(&mut self.store, config);
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(CallError::Init(message)),
            Err(e) => Err(classify(e, &self.store, self.bound, self.memory_mb)),
        }
    }

    /// Run `process` on a batch under the time bound and memory cap. The
    /// inner `Err` is the plugin's own batch-level error.
    pub fn process(&mut self, batch: &[Event]) -> Result<Result<Vec<Outcome>, String>, CallError> {
        self.store.set_epoch_deadline(self.ticks);
        self.bindings
            .sluice_plugin_transformer()
            .call_process(&mut self.store, batch)
            .map_err(|e| classify(e, &self.store, self.bound, self.memory_mb))
    }
}

/// Why a call failed: a refused memory growth, the time bound, or a trap.
pub(super) fn classify(
    error: wasmtime::Error,
    store: &Store<PluginState>,
    bound: Duration,
    memory_mb: u64,
) -> CallError {
    if store.data().limiter.denied {
        return CallError::Memory(memory_mb);
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::Timeout(bound),
        Some(trap) => CallError::Trap(trap.to_string()),
        None => CallError::Trap(format!("{error:#}")),
    }
}
