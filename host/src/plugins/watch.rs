//! `[plugins] watch = true`: a changed `dir/NAME.wasm`, for a plugin a local
//! stage chains, is validated and published like `sluice plugin push`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use anyhow::Context;
use notify::{RecursiveMode, Watcher};

use super::PluginService;

/// Quiet time after the last change to a file before it is read: editors
/// and `cargo build` write in several steps.
const SETTLE: Duration = Duration::from_millis(500);

/// Watch `dir` on a thread of its own for as long as the process runs.
pub fn watch_dir(service: Arc<PluginService>, dir: PathBuf) -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && (event.kind.is_create() || event.kind.is_modify())
        {
            for path in event.paths {
                let _ = tx.send(path);
            }
        }
    })
    .context("cannot start the plugin directory watcher")?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch plugin directory {}", dir.display()))?;
    tracing::info!(dir = %dir.display(), "watching the plugin directory");
    std::thread::Builder::new()
        .name("plugin-watch".into())
        .spawn(move || {
            let _watcher = watcher;
            let mut pending = BTreeSet::new();
            loop {
                match rx.recv_timeout(SETTLE) {
                    Ok(path) => {
                        pending.insert(path);
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        for path in std::mem::take(&mut pending) {
                            publish(&service, &path);
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        })
        .context("cannot start the plugin directory watcher")?;
    Ok(())
}

fn publish(service: &PluginService, path: &Path) {
    if path.extension().is_none_or(|e| e != "wasm") {
        return;
    }
    let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
        return;
    };
    if !service.used_locally(name) {
        return;
    }
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "plugin watch: cannot read");
            return;
        }
    };
    let by = format!("{} (watch)", service.host());
    match service.push(name, &bytes, &by) {
        Ok(published) if published.changed => {
            tracing::info!(
                plugin = name,
                version = published.version,
                "plugin watch: published a changed file"
            )
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(plugin = name, path = %path.display(), reason = %e, "plugin watch: rejected; the old version keeps running")
        }
    }
}
