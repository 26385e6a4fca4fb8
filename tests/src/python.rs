//! The cached Python venv (`scripts/install-python.sh`) with the third-party
//! clients the protocol tests drive Sluice with, and the scripts of
//! `tests/python` run in it.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, bail};

use crate::repo_path;

/// The venv's python, installed once per test process.
pub fn python() -> anyhow::Result<PathBuf> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let out = Command::new("bash")
                .arg(repo_path("scripts/install-python.sh"))
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).into_owned());
            }
            let stdout = String::from_utf8_lossy(&out.stdout);
            Ok(PathBuf::from(stdout.lines().last().unwrap_or("").trim()))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Run a script of `tests/python` with the venv's python; its stdout.
pub fn run_python(script: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(python()?)
        .arg(repo_path(&format!("tests/python/{script}")))
        .args(args)
        .output()
        .with_context(|| format!("cannot run {script}"))?;
    eprintln!("{script}: {}", String::from_utf8_lossy(&out.stderr).trim());
    if !out.status.success() {
        bail!("{script} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}
