//! The one wasmtime `Engine` of a host, its epoch ticker, and the cache of
//! precompiled components.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::plugin::{PluginState, add_imports};

/// How often the epoch advances; a call's time bound is rounded up to it.
pub const TICK: Duration = Duration::from_millis(5);

/// Plugin instances the pooling allocator has slots for, process-wide.
/// Each stage keeps one live instance per chained plugin, plus one being
/// validated during a hot reload; a slot costs address space, not memory.
const POOLED_INSTANCES: u32 = 256;

/// The process's one wasmtime engine, its one linker (WASI with an empty
/// context plus the host imports of every contract version), its epoch
/// ticker and where precompiled components are cached. Clones share all of
/// it; `main` creates it once and hands it to everything that runs plugins.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<PluginState>>,
    cache_dir: Option<PathBuf>,
    _ticker: Arc<Ticker>,
}

struct Ticker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Runtime {
    /// Build the engine (epoch interruption on, pooling instance allocator
    /// with copy-on-write memory images, each linear memory capped at
    /// `memory_cap_mb`) and start its ticker. `cache_dir` holds precompiled
    /// components; `None` disables the cache.
    pub fn new(cache_dir: Option<PathBuf>, memory_cap_mb: u64) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let mut pool = PoolingAllocationConfig::new();
        // A Rust component holds a few core instances (the module plus the
        // component adapter's shims), each with a memory or tables.
        pool.total_component_instances(POOLED_INSTANCES)
            .total_core_instances(POOLED_INSTANCES * 8)
            .total_memories(POOLED_INSTANCES * 2)
            .total_tables(POOLED_INSTANCES * 8)
            .max_memories_per_module(1)
            .max_memory_size(
                usize::try_from(memory_cap_mb.max(1) * 1024 * 1024).unwrap_or(usize::MAX),
            );
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        config.memory_init_cow(true);
        // `SLUICE_WASM_PERFMAP=1` names JIT-compiled plugin functions for
        // `perf` (/tmp/perf-PID.map), to profile guest code.
        if std::env::var_os("SLUICE_WASM_PERFMAP").is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("cannot create the wasmtime engine")?;
        let mut linker: Linker<PluginState> = Linker::new(&engine);
        add_imports(&mut linker)
            .map_err(anyhow::Error::from)
            .context("cannot link the host imports")?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ticking = engine.clone();
        let stop_flag = stop.clone();
        std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while !stop_flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    ticking.increment_epoch();
                }
            })
            .context("cannot start the epoch ticker")?;
        if let Some(dir) = &cache_dir
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "component cache disabled");
        }
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            cache_dir,
            _ticker: Arc::new(Ticker { stop }),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linker every plugin is instantiated with.
    pub(super) fn linker(&self) -> &Linker<PluginState> {
        &self.linker
    }

    /// Epoch ticks that cover `bound`.
    pub fn ticks_for(bound: Duration) -> u64 {
        (bound.as_millis() as u64)
            .div_ceil(TICK.as_millis() as u64)
            .max(1)
            + 1
    }

    /// Compile a component, or load it precompiled from the cache. The cache
    /// key covers the component bytes and the engine's compatibility hash
    /// (wasmtime version and settings), so a stale entry is never loaded.
    pub fn compile(&self, bytes: &[u8]) -> anyhow::Result<Component> {
        let Some(dir) = &self.cache_dir else {
            return Ok(Component::new(&self.engine, bytes)?);
        };
        let path = dir.join(format!("{}.cwasm", self.cache_key(bytes)));
        if path.is_file() {
            // SAFETY: the file was written by `precompile_component` of an
            // engine with the same compatibility hash (part of the name) in
            // a directory only this host writes.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring bad cache entry")
                }
            }
        }
        let compiled = self.engine.precompile_component(bytes)?;
        write_atomically(&path, &compiled);
        // SAFETY: `compiled` was produced just now by this engine.
        Ok(unsafe { Component::deserialize(&self.engine, &compiled) }?)
    }

    fn cache_key(&self, bytes: &[u8]) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        let engine = hasher.finish();
        format!(
            "{}-{engine:016x}",
            crate::schema::hex(&Sha256::digest(bytes))
        )
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "cannot cache precompiled component");
        let _ = std::fs::remove_file(&tmp);
    }
}

/// The default cache directory: `$XDG_CACHE_HOME/sluice/components` or
/// `~/.cache/sluice/components`.
pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|base| base.join("sluice").join("components"))
}
