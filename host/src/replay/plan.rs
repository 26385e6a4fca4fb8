//! Which plugins a replay runs, with which configuration and limits, and
//! which version of each (`--plugin-version`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{LoadedConfig, StageConfig};
use crate::runtime::{Chain, Link, Runtime, TransformPlugin, plugin_config_json, plugin_path};

use super::InputError;

/// Stage label replay's plugin calls carry in logs and metrics.
pub const REPLAY_STAGE: &str = "replay";

/// The chain a replay runs and the settings it borrowed from a stage.
pub struct ChainPlan {
    /// The loaded chain.
    pub chain: Chain,
    /// `name@version` of each plugin, in order.
    pub versions: Vec<String>,
    /// Events per chain call (the source stage's `batch_size`, else 500).
    pub batch_size: usize,
    /// The stage whose chain, plugin configs and limits were used, if any.
    pub stage: Option<String>,
    /// `--diff`: the chain with the old version of one plugin, run on the
    /// same events for comparison.
    pub diff: Option<DiffChain>,
}

/// The comparison chain of `--diff`.
pub struct DiffChain {
    /// The chain with the old plugin version.
    pub chain: Chain,
    /// `name@version` of each of its plugins.
    pub versions: Vec<String>,
}

/// Where one plugin's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// `[plugins] dir/NAME.wasm`.
    Dir,
    /// `--plugin-version NAME=PATH.wasm`.
    File(PathBuf),
    /// `--plugin-version NAME=<12 hex>`: the file in the plugins dir, which
    /// must be that version.
    Version(String),
}

/// Parse `--plugin-version` values (`name=PATH.wasm` or `name=<12 hex>`).
fn parse_overrides(values: &[String]) -> Result<Vec<(String, Source)>, InputError> {
    let mut out: Vec<(String, Source)> = Vec::new();
    for value in values {
        let (name, version) = value.split_once('=').ok_or_else(|| {
            InputError::new(format!(
                "--plugin-version `{value}` is not NAME=PATH.wasm or NAME=<12-hex version>"
            ))
        })?;
        let source = if version.ends_with(".wasm") || version.contains('/') {
            Source::File(PathBuf::from(version))
        } else if version.len() == 12 && version.bytes().all(|b| b.is_ascii_hexdigit()) {
            Source::Version(version.to_ascii_lowercase())
        } else {
            return Err(InputError::new(format!(
                "--plugin-version `{value}`: `{version}` is neither a .wasm file nor a 12-hex-digit version"
            )));
        };
        if out.iter().any(|(n, _)| n == name) {
            return Err(InputError::new(format!(
                "--plugin-version names plugin `{name}` twice"
            )));
        }
        out.push((name.to_string(), source));
    }
    Ok(out)
}

/// The stage a replay borrows its chain and plugin configuration from:
/// `--stage NAME`, else the one stage that reads `topic`, if exactly one does.
fn source_stage<'a>(
    loaded: &'a LoadedConfig,
    stage: Option<&str>,
    topic: &str,
) -> Result<Option<&'a StageConfig>, InputError> {
    let stages = &loaded.config.stages;
    if let Some(name) = stage {
        return stages
            .iter()
            .find(|s| s.name.get_ref() == name)
            .map(Some)
            .ok_or_else(|| {
                let names: Vec<&str> = stages.iter().map(|s| s.name.get_ref().as_str()).collect();
                InputError::new(format!(
                    "--stage `{name}`: no such stage in {} (stages: {})",
                    loaded.path.display(),
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ))
            });
    }
    let mut reading = stages.iter().filter(|s| s.input.get_ref() == topic);
    match (reading.next(), reading.next()) {
        (Some(one), None) => Ok(Some(one)),
        _ => Ok(None),
    }
}

/// The JSON config for `plugin`: the source stage's `[stage.config.NAME]`,
/// else the first stage that configures it, else `{}`.
fn plugin_config(loaded: &LoadedConfig, source: Option<&StageConfig>, plugin: &str) -> String {
    if let Some(stage) = source
        && stage.config.contains_key(plugin)
    {
        return plugin_config_json(stage, plugin);
    }
    loaded
        .config
        .stages
        .iter()
        .find(|s| s.config.contains_key(plugin))
        .map(|s| plugin_config_json(s, plugin))
        .unwrap_or_else(|| "{}".to_string())
}

/// Load the chain: `--chain` names (or the source stage's chain), each from
/// the plugins directory unless `--plugin-version` says otherwise, started
/// with its configuration under the source stage's limits.
pub fn build(
    loaded: &LoadedConfig,
    runtime: &Runtime,
    topic: &str,
    chain: Option<&[String]>,
    stage: Option<&str>,
    overrides: &[String],
) -> anyhow::Result<ChainPlan> {
    let overrides = parse_overrides(overrides)?;
    let source = source_stage(loaded, stage, topic)?;
    let names: Vec<String> = match (chain, source) {
        (Some(names), _) => names
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect(),
        (None, Some(stage)) => stage.chain.iter().map(|n| n.get_ref().clone()).collect(),
        (None, None) => {
            return Err(InputError::new(format!(
                "no chain to run: pass --chain a,b or --stage NAME (no single stage reads `{topic}`)"
            ))
            .into());
        }
    };
    for (name, _) in &overrides {
        if !names.contains(name) {
            return Err(InputError::new(format!(
                "--plugin-version names `{name}`, which is not in the chain ({})",
                names.join(", ")
            ))
            .into());
        }
    }
    assemble(loaded, source, &names, REPLAY_STAGE, |name| {
        let source_of = overrides
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
            .unwrap_or(Source::Dir);
        Ok((load(loaded, runtime, name, &source_of)?, None))
    })
}

/// The chain of `names`, each component from `load` (with the version label
/// its headers carry, else its short hash), configured and limited as
/// `source` (the stage replayed or redriven) says, every plugin started once
/// to check its config. `label` names the chain's calls in logs and metrics.
/// Shared by replay and dead-letter redrive (`crate::dlq`).
pub fn assemble(
    loaded: &LoadedConfig,
    source: Option<&StageConfig>,
    names: &[String],
    label: &str,
    mut load: impl FnMut(&str) -> Result<(TransformPlugin, Option<String>), InputError>,
) -> anyhow::Result<ChainPlan> {
    let limits = source
        .and_then(|s| s.limits)
        .unwrap_or(loaded.config.plugins.limits);
    let mut links = Vec::with_capacity(names.len());
    let mut versions = Vec::with_capacity(names.len());
    for name in names {
        let (plugin, version_label) = load(name)?;
        let config = plugin_config(loaded, source, name);
        plugin
            .instantiate(label, &config, limits)
            .map_err(|e| InputError::new(format!("plugin `{name}`: {e}")))?;
        let version = version_label.unwrap_or_else(|| plugin.version().to_string());
        versions.push(format!("{name}@{version}"));
        let link = Link::new(Arc::new(plugin), config, limits).with_label(version);
        links.push(link);
    }
    Ok(ChainPlan {
        chain: Chain::new(label, links, source.map_or(2, |s| s.retries)),
        versions,
        batch_size: source.map_or(500, |s| s.batch_size).max(1),
        stage: source.map(|s| s.name.get_ref().clone()),
        diff: None,
    })
}

fn load(
    loaded: &LoadedConfig,
    runtime: &Runtime,
    name: &str,
    source: &Source,
) -> Result<TransformPlugin, InputError> {
    let path = match source {
        Source::File(path) => path.clone(),
        Source::Dir | Source::Version(_) => plugin_path(loaded, name),
    };
    if !path.is_file() {
        return Err(InputError::new(match source {
            Source::File(_) => format!("--plugin-version {name}={}: no such file", path.display()),
            _ => format!("plugin `{name}` not found: no file {}", path.display()),
        }));
    }
    let plugin = TransformPlugin::load_file(runtime, name, &path)
        .map_err(|e| InputError::new(format!("plugin `{name}`: {e:#}")))?;
    if let Source::Version(wanted) = source
        && plugin.version() != wanted
    {
        return Err(InputError::new(format!(
            "plugin `{name}` version {wanted} is not available: {} is version {} \
             (replay loads versions from [plugins] dir, not from the plugin store; pass --plugin-version {name}=PATH.wasm)",
            display(&path),
            plugin.version()
        )));
    }
    Ok(plugin)
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_paths_or_versions() {
        let parsed = parse_overrides(&[
            "filter=/tmp/filter-v2.wasm".into(),
            "redact=0123456789AB".into(),
        ])
        .unwrap();
        assert_eq!(
            parsed,
            vec![
                (
                    "filter".to_string(),
                    Source::File("/tmp/filter-v2.wasm".into())
                ),
                ("redact".to_string(), Source::Version("0123456789ab".into())),
            ]
        );
        assert!(parse_overrides(&["filter".into()]).is_err());
        assert!(parse_overrides(&["filter=v2".into()]).is_err());
        assert!(parse_overrides(&["a=x.wasm".into(), "a=y.wasm".into()]).is_err());
    }
}
