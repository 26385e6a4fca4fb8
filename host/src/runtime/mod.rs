//! The WebAssembly runtime: one wasmtime engine per host, plugin components
//! loaded and type-checked against their WIT world, sandboxed instances (time
//! bound by epoch interruption, memory cap by `StoreLimits`, WASI with no
//! files, network, environment or clock), and chains of transforms.

pub mod bindings;
mod capabilities;
mod chain;
mod engine;
mod event;
mod plugin;
mod sink;

pub use capabilities::{Capabilities, NoCapabilities};
pub use chain::{Chain, ChainOutput, Failure, Item, Link};
pub use engine::{Runtime, default_cache_dir};
pub use event::{Edit, Event, Header, Origin, Outcome};
pub use plugin::{
    CallError, Plugin, PluginId, TransformInstance, TransformPlugin, TransformPre, World,
};
pub use sink::{SinkInstance, SinkPlugin, SinkPre};

use std::path::PathBuf;

use crate::config::{Diagnostics, LoadedConfig, StageConfig};

/// The process's one plugin runtime, created on first use with this
/// config's cache directory and the largest memory cap any of its stages
/// grants. Every later caller in the process (validation, stages, the plugin
/// store, replay, `sluice test`) shares it, so a `sluice run` compiles each
/// component once and keeps one engine, one linker and one epoch ticker.
pub fn for_config(loaded: &LoadedConfig) -> anyhow::Result<Runtime> {
    static SHARED: std::sync::OnceLock<Runtime> = std::sync::OnceLock::new();
    if let Some(runtime) = SHARED.get() {
        return Ok(runtime.clone());
    }
    let config = &loaded.config;
    let cap = config
        .stages
        .iter()
        .filter_map(|s| s.limits.map(|l| l.memory_mb))
        .fold(config.plugins.limits.memory_mb, u64::max);
    let runtime = Runtime::new(cache_dir(loaded), cap)?;
    Ok(SHARED.get_or_init(|| runtime).clone())
}

/// The precompiled-component cache for this config: `[plugins] cache_dir`
/// (relative to the file) or the per-user default.
pub fn cache_dir(loaded: &LoadedConfig) -> Option<PathBuf> {
    loaded
        .config
        .plugins
        .cache_dir
        .as_deref()
        .map(|d| loaded.resolve(d))
        .or_else(default_cache_dir)
}

/// Where the component for plugin `name` lives: `[plugins] dir/NAME.wasm`.
pub fn plugin_path(loaded: &LoadedConfig, name: &str) -> PathBuf {
    loaded
        .resolve(loaded.config.plugins.dir.get_ref())
        .join(format!("{name}.wasm"))
}

/// The JSON text passed to a plugin's `init`: its `[stage.config.NAME]`
/// table, or `{}`.
pub fn plugin_config_json(stage: &StageConfig, name: &str) -> String {
    stage
        .config
        .get(name)
        .and_then(|v| serde_json::to_string(v).ok())
        .unwrap_or_else(|| "{}".to_string())
}

/// `sluice validate`'s plugin checks: every chained plugin exists, is a
/// component of the `transform` world, and accepts its stage's config; every
/// sink plugin is a component of the `sink` world and accepts its config.
/// Returns a line per plugin that passed, naming the contract version it
/// exports (``stage `clean`: plugin `filter` 3f2a9c1b0d4e exports
/// sluice:plugin@0.2.0 (transform)``).
pub fn check_plugins(loaded: &LoadedConfig, problems: &mut Diagnostics) -> Vec<String> {
    let mut passed = Vec::new();
    if loaded.config.stages.is_empty() {
        return passed;
    }
    // The same cache as `sluice run`, which validates first: each component
    // is compiled once, not once here and again at start-up.
    let runtime = match for_config(loaded) {
        Ok(runtime) => runtime,
        Err(e) => {
            problems.push(crate::config::Diagnostic::file_level(
                &loaded.path,
                format!("{e:#}"),
            ));
            return passed;
        }
    };
    for (i, stage) in loaded.config.stages.iter().enumerate() {
        let limits = stage.limits.unwrap_or(loaded.config.plugins.limits);
        for name in &stage.chain {
            let key = format!("stage[{i}].chain");
            let path = plugin_path(loaded, name.get_ref());
            if !path.is_file() && loaded.config.plugins.store {
                // The plugin store may hold it; `sluice run` says so if not.
                continue;
            }
            if !path.is_file() {
                problems.push(loaded.problem_at(
                    name,
                    &key,
                    format!(
                        "plugin `{}` not found: no file {}",
                        name.get_ref(),
                        path.display()
                    ),
                ));
                continue;
            }
            let checked = TransformPlugin::load_file(&runtime, name.get_ref(), &path)
                .map_err(|e| format!("{e:#}"))
                .and_then(|plugin| {
                    plugin
                        .instantiate(
                            stage.name.get_ref(),
                            &plugin_config_json(stage, name.get_ref()),
                            limits,
                        )
                        .map(|_| {
                            plugin_line(
                                stage,
                                &plugin.name,
                                plugin.version(),
                                plugin.contract(),
                                "transform",
                            )
                        })
                        .map_err(|e| e.to_string())
                });
            match checked {
                Ok(line) => passed.push(line),
                Err(message) => problems.push(loaded.problem_at(name, &key, message)),
            }
        }
        if let Some(sink) = &stage.sink {
            let key = format!("stage[{i}].sink");
            let path = plugin_path(loaded, sink.get_ref());
            if !path.is_file() {
                problems.push(loaded.problem_at(
                    sink,
                    &key,
                    format!(
                        "sink plugin `{}` not found: no file {}",
                        sink.get_ref(),
                        path.display()
                    ),
                ));
                continue;
            }
            let checked = SinkPlugin::load_file(&runtime, sink.get_ref(), &path)
                .map_err(|e| format!("{e:#}"))
                .and_then(|plugin| {
                    // `init` only checks its config; it gets no capabilities.
                    plugin
                        .instantiate(
                            stage.name.get_ref(),
                            &plugin_config_json(stage, sink.get_ref()),
                            limits,
                            Box::new(NoCapabilities),
                        )
                        .map(|_| {
                            plugin_line(
                                stage,
                                &plugin.name,
                                plugin.version(),
                                plugin.contract(),
                                "sink",
                            )
                        })
                        .map_err(|e| e.to_string())
                });
            match checked {
                Ok(line) => passed.push(line),
                Err(message) => problems.push(loaded.problem_at(sink, &key, message)),
            }
        }
    }
    passed
}

fn plugin_line(
    stage: &StageConfig,
    name: &str,
    version: &str,
    contract: &str,
    world: &str,
) -> String {
    format!(
        "stage `{}`: plugin `{name}` {version} exports sluice:plugin@{contract} ({world})",
        stage.name.get_ref()
    )
}
