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

use super::bindings::{v1, v2};
use super::engine::Runtime;
use super::event::{Edit, Event, Header, Origin, Outcome};
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
    pub(super) session: Option<Box<dyn super::Capabilities>>,
    /// Time spent inside host calls since the last deadline check; it does
    /// not count against the plugin's time bound.
    pub(super) host_time: Duration,
    /// The SDK's panic line (`plugin panicked at …`), logged just before
    /// the instance traps: [`classify`] puts it into the trap's error, so a
    /// dead letter says why the plugin panicked, not only `unreachable`.
    last_panic: Option<String>,
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
    session: Option<Box<dyn super::Capabilities>>,
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
        last_panic: None,
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

impl v2::transform::sluice::plugin::types::Host for PluginState {}
impl v1::transform::sluice::plugin::types::Host for PluginState {}

/// The longest panic line kept for a trap's error (the rest is in the log).
const PANIC_LINE_MAX: usize = 512;

impl PluginState {
    fn log_line(&mut self, level: v2::transform::sluice::plugin::types::Level, message: &str) {
        use v2::transform::sluice::plugin::types::Level;
        if matches!(level, Level::Error) && message.starts_with("plugin panicked") {
            let mut line = message.lines().next().unwrap_or_default().to_string();
            if line.len() > PANIC_LINE_MAX {
                line.truncate(line.floor_char_boundary(PANIC_LINE_MAX));
                line.push('…');
            }
            self.last_panic = Some(line);
        }
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
}

impl v2::transform::sluice::plugin::host::Host for PluginState {
    fn log(&mut self, level: v2::transform::sluice::plugin::types::Level, message: String) {
        self.log_line(level, &message);
    }

    fn counter_add(&mut self, name: String, value: u64) {
        crate::metrics::plugin_counter(&self.id.stage, &self.id.name, &name, value);
    }
}

impl v1::transform::sluice::plugin::host::Host for PluginState {
    fn log(&mut self, level: v1::transform::sluice::plugin::types::Level, message: String) {
        use v1::transform::sluice::plugin::types::Level as Old;
        use v2::transform::sluice::plugin::types::Level;
        let level = match level {
            Old::Trace => Level::Trace,
            Old::Debug => Level::Debug,
            Old::Info => Level::Info,
            Old::Warn => Level::Warn,
            Old::Error => Level::Error,
        };
        self.log_line(level, &message);
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

/// Compile `bytes` (or load them from the cache) and pre-instantiate them
/// with the runtime's one linker (WASI with an empty context plus every
/// contract version's host imports). Errors say whether the file is not
/// WebAssembly, not a component, or imports something the host does not
/// grant.
pub(super) fn link(
    runtime: &Runtime,
    name: &str,
    bytes: &[u8],
) -> anyhow::Result<wasmtime::component::InstancePre<PluginState>> {
    if !bytes.starts_with(b"\0asm") {
        anyhow::bail!("`{name}` is not a WebAssembly file (no \\0asm header)");
    }
    let component = runtime
        .compile(bytes)
        .with_context(|| format!("`{name}` is not a valid WebAssembly component"))?;
    runtime
        .linker()
        .instantiate_pre(&component)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("`{name}` imports something the host does not grant"))
}

/// Add every import a plugin of any contract version may use to `linker`.
pub(super) fn add_imports(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    v2::sink::Sink::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |s| s)?;
    v1::sink::Sink::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |s| s)?;
    Ok(())
}

/// The bytes of a component file.
pub(super) fn read_component(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read plugin file {}", path.display()))
}

/// A world a component can be checked against: the pre-instantiated form
/// bindgen generates for it, in each contract version the host runs.
pub trait World: Sized {
    /// Link and type-check `bytes` (named `name` in errors) against the world.
    fn prepare(runtime: &Runtime, name: &str, bytes: &[u8]) -> anyhow::Result<Self>;

    /// The contract version the component exports (`0.2.0`, `0.1.0`).
    fn contract(&self) -> &'static str;
}

/// A transform component, pre-instantiated, in the contract version it
/// exports.
#[derive(Clone)]
pub enum TransformPre {
    /// `sluice:plugin/transformer@0.2.0`.
    V2(v2::transform::TransformPre<PluginState>),
    /// `sluice:plugin/transformer@0.1.0`.
    V1(v1::transform::TransformPre<PluginState>),
}

impl World for TransformPre {
    fn prepare(runtime: &Runtime, name: &str, bytes: &[u8]) -> anyhow::Result<Self> {
        let instance_pre = link(runtime, name, bytes)?;
        if let Ok(pre) = v2::transform::TransformPre::new(instance_pre.clone()) {
            return Ok(TransformPre::V2(pre));
        }
        v1::transform::TransformPre::new(instance_pre)
            .map(TransformPre::V1)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!("`{name}` does not implement the `sluice:plugin/transform` world (expected export `sluice:plugin/transformer@0.2.0`, or `@0.1.0`)")
            })
    }

    fn contract(&self) -> &'static str {
        match self {
            TransformPre::V2(_) => "0.2.0",
            TransformPre::V1(_) => "0.1.0",
        }
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
pub type TransformPlugin = Plugin<TransformPre>;

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

    /// The contract version the component exports (`0.2.0`, `0.1.0`).
    pub fn contract(&self) -> &'static str {
        self.pre.contract()
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
        let bindings = match &self.pre {
            TransformPre::V2(pre) => pre.instantiate(&mut store).map(Bindings::V2),
            TransformPre::V1(pre) => pre.instantiate(&mut store).map(Bindings::V1),
        }
        .map_err(|e| classify(e, &store, bound, limits.memory_mb))?;
        let mut instance = TransformInstance {
            store,
            bindings,
            ticks,
            bound,
            memory_mb: limits.memory_mb,
            info: Info::default(),
            scratch: Scratch::default(),
        };
        instance.init(config)?;
        Ok(instance)
    }
}

pub(super) type Needs = v2::transform::sluice::plugin::types::Needs;

/// What a 0.2 plugin's `init` declared: what to send beyond keys, values
/// and timestamps, and the fields to locate in every value.
pub(super) struct Info {
    pub(super) needs: Needs,
    pub(super) fields: Vec<sluice_sdk::FieldPath>,
}

impl Default for Info {
    fn default() -> Self {
        Info {
            needs: Needs::empty(),
            fields: Vec::new(),
        }
    }
}

impl Info {
    /// Parse `init`'s answer; a field that is not a dotted path rejects the
    /// plugin.
    pub(super) fn from_wire(
        info: v2::transform::sluice::plugin::types::PluginInfo,
    ) -> Result<Info, String> {
        let fields = info
            .fields
            .iter()
            .map(|f| sluice_sdk::FieldPath::parse(f).map_err(|e| format!("declared field: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Info {
            needs: info.needs,
            fields,
        })
    }
}

enum Bindings {
    V2(v2::transform::Transform),
    V1(v1::transform::Transform),
}

/// Buffers reused from batch to batch to lay out a 0.2 batch.
#[derive(Default)]
pub(super) struct Scratch {
    values: Vec<u8>,
    value_lens: Vec<u32>,
    keys: Vec<u8>,
    key_lens: Vec<i32>,
    timestamps: Vec<i64>,
    field_spans: Vec<i32>,
}

/// A live instance of a transform plugin. Discard it after any error: a
/// trapped instance cannot be entered again.
pub struct TransformInstance {
    store: Store<PluginState>,
    bindings: Bindings,
    ticks: u64,
    bound: Duration,
    memory_mb: u64,
    info: Info,
    scratch: Scratch,
}

impl TransformInstance {
    fn init(&mut self, config: &str) -> Result<(), CallError> {
        self.store.set_epoch_deadline(self.ticks);
        let result = match &self.bindings {
            Bindings::V2(b) => b
                .sluice_plugin_transformer()
                .call_init(&mut self.store, config)
                .map(|r| r.and_then(|info| Info::from_wire(info).map(|i| self.info = i))),
            Bindings::V1(b) => b
                .sluice_plugin_transformer()
                .call_init(&mut self.store, config),
        };
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(CallError::Init(message)),
            Err(e) => Err(classify(e, &self.store, self.bound, self.memory_mb)),
        }
    }

    /// Run `process` on a batch under the time bound and memory cap. The
    /// inner `Err` is the plugin's own batch-level error, or outcomes that
    /// break the contract (not one per event).
    pub fn process(&mut self, batch: &[Event]) -> Result<Result<Vec<Outcome>, String>, CallError> {
        self.store.set_epoch_deadline(self.ticks);
        match &self.bindings {
            Bindings::V2(b) => {
                let lowered = lower_v2(batch, &self.info, &mut self.scratch);
                let result = b
                    .sluice_plugin_transformer()
                    .call_process(&mut self.store, &lowered);
                reclaim(lowered, &mut self.scratch);
                let result =
                    result.map_err(|e| classify(e, &self.store, self.bound, self.memory_mb))?;
                Ok(result.and_then(|outcomes| lift_v2(outcomes, batch.len())))
            }
            Bindings::V1(b) => {
                let events: Vec<v1::transform::sluice::plugin::types::Event> =
                    batch.iter().map(to_v1).collect();
                let result = b
                    .sluice_plugin_transformer()
                    .call_process(&mut self.store, &events)
                    .map_err(|e| classify(e, &self.store, self.bound, self.memory_mb))?;
                Ok(result.and_then(|outcomes| {
                    if outcomes.len() != batch.len() {
                        return Err(format!(
                            "plugin returned {} outcomes for {} events",
                            outcomes.len(),
                            batch.len()
                        ));
                    }
                    Ok(outcomes.into_iter().map(from_v1_outcome).collect())
                }))
            }
        }
    }
}

type V2Batch = v2::transform::sluice::plugin::types::Batch;

/// Lay a batch out as 0.2's flat buffers, reusing `scratch`'s allocations.
pub(super) fn lower_v2(batch: &[Event], info: &Info, scratch: &mut Scratch) -> V2Batch {
    let needs = info.needs;
    let mut values = std::mem::take(&mut scratch.values);
    let mut value_lens = std::mem::take(&mut scratch.value_lens);
    let mut keys = std::mem::take(&mut scratch.keys);
    let mut key_lens = std::mem::take(&mut scratch.key_lens);
    let mut timestamps = std::mem::take(&mut scratch.timestamps);
    let mut field_spans = std::mem::take(&mut scratch.field_spans);
    field_spans.clear();
    values.clear();
    value_lens.clear();
    keys.clear();
    key_lens.clear();
    timestamps.clear();
    for event in batch {
        values.extend_from_slice(&event.value);
        value_lens.push(u32::try_from(event.value.len()).unwrap_or(u32::MAX));
        match &event.key {
            Some(key) => {
                keys.extend_from_slice(key);
                key_lens.push(i32::try_from(key.len()).unwrap_or(i32::MAX));
            }
            None => key_lens.push(-1),
        }
        timestamps.push(event.timestamp_ms.unwrap_or(-1));
        if !info.fields.is_empty() {
            // Located natively here, so the plugin need not scan for them.
            sluice_sdk::json::locate(&event.value, &info.fields, &mut field_spans);
        }
    }
    let headers = if needs.contains(Needs::HEADERS) {
        batch
            .iter()
            .map(|e| e.headers.iter().map(Into::into).collect())
            .collect()
    } else {
        Vec::new()
    };
    let origins = if needs.contains(Needs::ORIGINS) {
        batch
            .iter()
            .map(|e| match &e.origin {
                Some(o) => v2::transform::sluice::plugin::types::Origin {
                    topic: o.topic.to_string(),
                    partition: o.partition,
                    offset: o.offset,
                },
                None => v2::transform::sluice::plugin::types::Origin {
                    topic: String::new(),
                    partition: -1,
                    offset: -1,
                },
            })
            .collect()
    } else {
        Vec::new()
    };
    V2Batch {
        values,
        value_lens,
        keys,
        key_lens,
        timestamps,
        headers,
        origins,
        field_spans,
    }
}

pub(super) fn reclaim(batch: V2Batch, scratch: &mut Scratch) {
    scratch.values = batch.values;
    scratch.value_lens = batch.value_lens;
    scratch.keys = batch.keys;
    scratch.key_lens = batch.key_lens;
    scratch.timestamps = batch.timestamps;
    scratch.field_spans = batch.field_spans;
}

/// Turn 0.2's outcomes-by-index into one [`Outcome`] per event, checking
/// that they fit the batch.
fn lift_v2(
    outcomes: v2::transform::sluice::plugin::types::Outcomes,
    count: usize,
) -> Result<Vec<Outcome>, String> {
    use v2::transform::sluice::plugin::types as t;
    if outcomes.codes.len() != count {
        return Err(format!(
            "plugin returned {} outcomes for {} events",
            outcomes.codes.len(),
            count
        ));
    }
    let mut edits: Vec<Vec<Edit>> = Vec::new();
    if !outcomes.edits.is_empty() {
        edits.resize_with(count, Vec::new);
        for e in outcomes.edits {
            let slot = edits
                .get_mut(e.index as usize)
                .ok_or_else(|| format!("plugin edited event {} of {count}", e.index))?;
            slot.push(match e.edit {
                t::Edit::SetTopic(topic) => Edit::SetTopic(topic),
                t::Edit::SetHeader(h) => Edit::SetHeader(h.into()),
                t::Edit::RemoveHeader(key) => Edit::RemoveHeader(key),
            });
        }
    }
    let mut failures: Vec<Option<String>> = Vec::new();
    if !outcomes.failures.is_empty() {
        failures.resize(count, None);
        for f in outcomes.failures {
            let slot = failures
                .get_mut(f.index as usize)
                .ok_or_else(|| format!("plugin failed event {} of {count}", f.index))?;
            *slot = Some(f.reason);
        }
    }
    let mut fan_outs: Vec<Option<Vec<t::NewEvent>>> = Vec::new();
    if !outcomes.fan_outs.is_empty() {
        fan_outs.resize_with(count, || None);
        for f in outcomes.fan_outs {
            let slot = fan_outs
                .get_mut(f.index as usize)
                .ok_or_else(|| format!("plugin fanned out event {} of {count}", f.index))?;
            *slot = Some(f.events);
        }
    }
    let all_values = bytes::Bytes::from(outcomes.values);
    let mut values = outcomes.value_lens.iter().scan(0usize, |at, &len| {
        let start = *at;
        *at += len as usize;
        Some((start, *at))
    });
    let mut out = Vec::with_capacity(count);
    for (i, code) in outcomes.codes.iter().enumerate() {
        let edits = edits.get_mut(i).map(std::mem::take).unwrap_or_default();
        out.push(match code {
            0 => Outcome::Keep(edits),
            1 => Outcome::Drop,
            2 => {
                let (start, end) = values
                    .next()
                    .ok_or_else(|| format!("event {i} is marked modified but has no value"))?;
                if end > all_values.len() {
                    return Err(format!("modified values overrun their buffer at event {i}"));
                }
                Outcome::Modify(all_values.slice(start..end), edits)
            }
            3 => Outcome::Fail(
                failures
                    .get_mut(i)
                    .and_then(Option::take)
                    .unwrap_or_else(|| "plugin failed the event without a reason".to_string()),
            ),
            4 => Outcome::FanOut(
                fan_outs
                    .get_mut(i)
                    .and_then(Option::take)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|e| Event {
                        key: e.key,
                        value: e.value.into(),
                        headers: e.headers.into_iter().map(Into::into).collect(),
                        timestamp_ms: e.timestamp_ms,
                        origin: None,
                        topic: e.topic,
                    })
                    .collect(),
            ),
            other => Outcome::Fail(format!("plugin returned unknown outcome code {other}")),
        });
    }
    Ok(out)
}

/// Headers between the host's type and each contract version's: the same
/// two fields under generated names.
macro_rules! header_conversions {
    ($($wire:ty),*) => {$(
        impl From<&Header> for $wire {
            fn from(h: &Header) -> Self {
                Self {
                    key: h.key.clone(),
                    value: h.value.clone(),
                }
            }
        }

        impl From<$wire> for Header {
            fn from(h: $wire) -> Self {
                Header {
                    key: h.key,
                    value: h.value,
                }
            }
        }
    )*};
}

header_conversions!(
    v2::transform::sluice::plugin::types::Header,
    v1::transform::sluice::plugin::types::Header
);

/// A host event as contract 0.1 lowers it.
pub(super) fn to_v1(event: &Event) -> v1::transform::sluice::plugin::types::Event {
    use v1::transform::sluice::plugin::types as t;
    t::Event {
        key: event.key.clone(),
        value: event.value.to_vec(),
        headers: event.headers.iter().map(Into::into).collect(),
        timestamp_ms: event.timestamp_ms,
        origin: event.origin.as_ref().map(|o| t::Origin {
            topic: o.topic.to_string(),
            partition: o.partition,
            offset: o.offset,
        }),
        topic: event.topic.clone(),
    }
}

fn from_v1(event: v1::transform::sluice::plugin::types::Event) -> Event {
    Event {
        key: event.key,
        value: event.value.into(),
        headers: event.headers.into_iter().map(Into::into).collect(),
        timestamp_ms: event.timestamp_ms,
        origin: event.origin.map(|o| Origin {
            topic: o.topic.into(),
            partition: o.partition,
            offset: o.offset,
        }),
        topic: event.topic,
    }
}

fn from_v1_outcome(outcome: v1::transform::sluice::plugin::types::Outcome) -> Outcome {
    use v1::transform::sluice::plugin::types::Outcome as Old;
    match outcome {
        Old::Keep => Outcome::Keep(Vec::new()),
        Old::Modify(event) => Outcome::Replace(from_v1(event)),
        Old::Drop => Outcome::Drop,
        Old::Fail(reason) => Outcome::Fail(reason),
        Old::FanOut(events) => Outcome::FanOut(events.into_iter().map(from_v1).collect()),
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
    let trap = match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => return CallError::Timeout(bound),
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    };
    match &store.data().last_panic {
        Some(panic) => CallError::Trap(format!("{trap}; {panic}")),
        None => CallError::Trap(trap),
    }
}
