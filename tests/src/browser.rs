//! Browser tests: the Playwright specs of `tests/browser/specs`, run by
//! Playwright's test runner in Debian's headless Chromium
//! (`tests/browser/playwright.config.mjs`).
//!
//! Both come from `scripts/install-browser.sh`: Chromium from Debian
//! (`/usr/bin/chromium`; `SLUICE_CHROMIUM` overrides it), `@playwright/test`
//! from npm into `~/.cache/sluice/browser`, with `tests/browser/node_modules`
//! a symlink to it. Nothing is fetched at test time. A missing install is an
//! error saying to run the script, never a skipped test.
//!
//! Results (failure screenshots, traces) and the screenshots the specs take
//! go under `tests/browser/output/` (`SLUICE_BROWSER_OUT` overrides it), laid
//! out as `tests/browser/paths.mjs` says.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::repo_path;

const INSTALL: &str = "run `bash scripts/install-browser.sh` first";

/// `tests/browser`, where the config, the specs and `node_modules` are.
fn browser_dir() -> PathBuf {
    repo_path("tests/browser")
}

/// The Chromium binary the specs run in: `SLUICE_CHROMIUM`, else `chromium`
/// on `PATH`, else `/usr/bin/chromium` (which may not exist).
pub fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("SLUICE_CHROMIUM") {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Where the browser tests write: `SLUICE_BROWSER_OUT`, default
/// `tests/browser/output`.
pub fn output_dir() -> PathBuf {
    match std::env::var_os("SLUICE_BROWSER_OUT") {
        Some(dir) => std::path::absolute(PathBuf::from(dir)).unwrap_or_default(),
        None => browser_dir().join("output"),
    }
}

/// The screenshots the specs take on purpose (`screenshotsDir` of
/// `tests/browser/paths.mjs`), kept across runs.
pub fn screenshots_dir() -> PathBuf {
    output_dir().join("screenshots")
}

/// Run the specs matching `spec` (a file name under `tests/browser/specs`,
/// or a path or regex Playwright filters files by) with `env` added to the
/// environment (`SLUICE_URL` for the host under test, say), and
/// `SLUICE_CHROMIUM`. Prints the runner's output (stdout and stderr
/// interleaved, also kept in `output/<spec>.log`) and returns it; an error
/// with the output when any spec failed.
///
/// Each call gets its own results directory (`output/results/<spec>`):
/// Playwright empties it at start, so two runs at once do not clear each
/// other's.
pub fn run_specs(spec: &str, env: &[(&str, String)]) -> anyhow::Result<String> {
    let dir = browser_dir();
    let playwright = dir.join("node_modules/.bin/playwright");
    if !playwright.is_file() {
        bail!("{} missing: {INSTALL}", playwright.display());
    }
    let chromium = chromium();
    if !chromium.is_file() {
        bail!("Chromium not found at {}: {INSTALL}", chromium.display());
    }
    let label = label(spec);
    let out_dir = output_dir();
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let log_path = out_dir.join(format!("{label}.log"));
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let status = Command::new(&playwright)
        .arg("test")
        .arg(spec)
        .arg("-c")
        .arg(dir.join("playwright.config.mjs"))
        .arg("--output")
        .arg(out_dir.join("results").join(&label))
        .current_dir(&dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("SLUICE_CHROMIUM", &chromium)
        .env("SLUICE_BROWSER_OUT", &out_dir)
        // Plain text for the test log.
        .env("FORCE_COLOR", "0")
        .env_remove("PLAYWRIGHT_HTML_OPEN")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("cannot run {}", playwright.display()))?;
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    eprintln!("--- playwright test {spec} ({status}) ---\n{output}");
    if !status.success() {
        bail!("playwright test {spec} failed ({status}):\n{output}");
    }
    Ok(output)
}

/// A file-name-safe label for `spec`: its file name without `.spec.mjs`.
fn label(spec: &str) -> String {
    let name = Path::new(spec)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| spec.to_string());
    let stem = name
        .trim_end_matches(".mjs")
        .trim_end_matches(".js")
        .trim_end_matches(".ts")
        .trim_end_matches(".spec");
    stem.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
