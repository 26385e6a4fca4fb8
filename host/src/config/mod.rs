//! Configuration: the one TOML file an operator writes, its typed form, and
//! the checks `sluice validate` runs on it.
//!
//! Loading never stops at the first problem: unknown keys, type errors and
//! semantic problems (a missing schema file, a bad listen address, a stage
//! naming an unknown plugin) are all collected as [`Diagnostic`]s that name
//! the file, line, column and key.

mod diagnostics;
mod duration;
mod model;
mod protocols;
mod test_case;

pub use diagnostics::{Diagnostic, Diagnostics};
pub use model::*;
pub use protocols::*;
pub use test_case::{Expectation, ExpectedOutcome, TestCase};

use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A loaded configuration plus where it came from, so relative paths in it
/// (schemas, plugin directories) resolve against the file's directory.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The typed configuration.
    pub config: Config,
    /// The file it was read from.
    pub path: PathBuf,
    /// The file's directory; relative paths in the config are relative to it.
    pub base_dir: PathBuf,
    /// The file's text, so later checks can point at lines.
    pub text: String,
}

impl LoadedConfig {
    /// Resolve a path written in the config file against the file's directory.
    pub fn resolve(&self, relative: &Path) -> PathBuf {
        resolve_against(&self.base_dir, relative)
    }

    /// A problem pointing at a value of this file.
    pub fn problem_at<T>(&self, value: &Spanned<T>, key: &str, message: String) -> Diagnostic {
        let source = Source {
            path: &self.path,
            text: &self.text,
        };
        source.spanned(value, key, message)
    }
}

fn resolve_against(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Read and parse `path`, returning every problem found.
///
/// Semantic checks that need other files (schemas, plugins) are not run here;
/// see [`crate::validate`] for the full `sluice validate` pass.
pub fn load(path: &Path) -> Result<LoadedConfig, Diagnostics> {
    let (loaded, problems) = load_checked(path);
    problems.into_result()?;
    loaded.ok_or_else(|| Diagnostics::from(Diagnostic::file_level(path, "no configuration".into())))
}

/// Read and parse `path`: the typed configuration whenever the file could
/// be deserialized (even if it has problems, so later checks can still run)
/// and every problem found.
pub fn load_checked(path: &Path) -> (Option<LoadedConfig>, Diagnostics) {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_checked(&text, path),
        Err(e) => (
            None,
            Diagnostics::from(Diagnostic::file_level(
                path,
                format!("cannot read config file: {e}"),
            )),
        ),
    }
}

/// Parse configuration text; `path` is used for messages and relative paths.
pub fn parse_str(text: &str, path: &Path) -> Result<LoadedConfig, Diagnostics> {
    let (loaded, problems) = parse_checked(text, path);
    problems.into_result()?;
    loaded.ok_or_else(|| Diagnostics::from(Diagnostic::file_level(path, "no configuration".into())))
}

fn parse_checked(text: &str, path: &Path) -> (Option<LoadedConfig>, Diagnostics) {
    let source = Source { path, text };
    let document = match DeTable::parse(text) {
        Ok(document) => document,
        Err(e) => {
            // Syntax errors carry no key path; name the text they point at.
            let key = e
                .span()
                .and_then(|span| text.get(span))
                .filter(|k| !k.is_empty() && k.len() <= 80 && !k.contains('\n'))
                .unwrap_or_default();
            return (None, source.toml_error(&e, key));
        }
    };
    let mut problems = Diagnostics::default();
    let mut unknown: Vec<Vec<Segment>> = Vec::new();
    let deserializer = toml::de::Deserializer::from(document.clone());
    let parsed: Result<Config, _> = serde_ignored::deserialize(deserializer, |ignored| {
        unknown.push(segments(&ignored));
    });
    for key_path in unknown {
        let dotted = dotted(&key_path);
        let span = find_key_span(document.get_ref(), &key_path);
        problems.push(source.at(span, &dotted, "unknown key".to_string()));
    }
    let config = match parsed {
        Ok(config) => config,
        Err(e) => {
            let key = e
                .span()
                .and_then(|span| key_at(document.get_ref(), &span))
                .unwrap_or_default();
            problems.extend(source.toml_error(&e, &key));
            return (None, problems);
        }
    };
    model::check(&config, &source, &mut problems);
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let loaded = LoadedConfig {
        config,
        path: path.to_path_buf(),
        base_dir,
        text: text.to_string(),
    };
    (Some(loaded), problems)
}

/// The text being checked, to turn byte spans into line and column.
pub(crate) struct Source<'a> {
    pub(crate) path: &'a Path,
    pub(crate) text: &'a str,
}

impl Source<'_> {
    /// A diagnostic at `span` (or the file as a whole when unknown).
    pub(crate) fn at(
        &self,
        span: Option<std::ops::Range<usize>>,
        key: &str,
        message: String,
    ) -> Diagnostic {
        let (line, column) = span.map(|s| line_col(self.text, s.start)).unwrap_or((0, 0));
        Diagnostic {
            file: self.path.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            message,
        }
    }

    /// A diagnostic pointing at a spanned value.
    pub(crate) fn spanned<T>(&self, value: &Spanned<T>, key: &str, message: String) -> Diagnostic {
        self.at(Some(value.span()), key, message)
    }

    fn toml_error(&self, e: &toml::de::Error, key: &str) -> Diagnostics {
        let message = e.message().trim().to_string();
        Diagnostics::from(self.at(e.span(), key, message))
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn segments(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    use serde_ignored::Path;
    let mut out = match path {
        Path::Root => return Vec::new(),
        Path::Seq { parent, .. }
        | Path::Map { parent, .. }
        | Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => segments(parent),
    };
    match path {
        Path::Seq { index, .. } => out.push(Segment::Index(*index)),
        Path::Map { key, .. } => out.push(Segment::Key(key.clone())),
        _ => {}
    }
    out
}

fn dotted(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The span of the last key in `path`, walking the spanned document.
fn find_key_span(table: &DeTable<'_>, path: &[Segment]) -> Option<std::ops::Range<usize>> {
    let (Segment::Key(first), rest) = path.split_first()? else {
        return None;
    };
    let (key, value) = table.iter().find(|(k, _)| k.get_ref() == first)?;
    if rest.is_empty() {
        return Some(key.span());
    }
    find_in_value(value.get_ref(), rest).or(Some(key.span()))
}

fn find_in_value(value: &DeValue<'_>, path: &[Segment]) -> Option<std::ops::Range<usize>> {
    match (value, path.first()?) {
        (DeValue::Table(t), Segment::Key(_)) => find_key_span(t, path),
        (DeValue::Array(items), Segment::Index(i)) => {
            let item = items.get(*i)?;
            if path.len() == 1 {
                Some(item.span())
            } else {
                find_in_value(item.get_ref(), &path[1..])
            }
        }
        _ => None,
    }
}

/// The dotted key whose value is the smallest one containing `span` (for
/// messages about type errors, which carry only the value's span).
fn key_at(table: &DeTable<'_>, span: &std::ops::Range<usize>) -> Option<String> {
    fn walk(
        value: &DeValue<'_>,
        span: &std::ops::Range<usize>,
        prefix: &str,
        best: &mut Option<(usize, String)>,
    ) {
        fn consider(
            best: &mut Option<(usize, String)>,
            span: &std::ops::Range<usize>,
            key: String,
            s: std::ops::Range<usize>,
        ) {
            if s.start <= span.start
                && span.end <= s.end
                && best.as_ref().is_none_or(|(len, _)| s.len() <= *len)
            {
                *best = Some((s.len(), key));
            }
        }
        match value {
            DeValue::Table(t) => {
                for (k, v) in t.iter() {
                    let key = if prefix.is_empty() {
                        k.get_ref().to_string()
                    } else {
                        format!("{prefix}.{}", k.get_ref())
                    };
                    consider(best, span, key.clone(), v.span());
                    walk(v.get_ref(), span, &key, best);
                }
            }
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let key = format!("{prefix}[{i}]");
                    consider(best, span, key.clone(), item.span());
                    walk(item.get_ref(), span, &key, best);
                }
            }
            _ => {}
        }
    }
    let mut best = None;
    walk(&DeValue::Table(table.clone()), span, "", &mut best);
    best.map(|(_, key)| key)
}

/// Expand `${VAR}` references from the environment (used for secrets such as
/// API keys and database URLs); `${VAR:-default}` falls back to `default`
/// when `VAR` is unset. `$${` escapes a literal `${`.
pub fn interpolate_env(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        if rest[..start].ends_with('$') {
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated `${{` in {value:?}"))?;
        let (name, default) = match after[..end].split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (&after[..end], None),
        };
        let resolved = match (std::env::var(name), default) {
            (Ok(value), _) => value,
            (Err(_), Some(default)) => default.to_string(),
            (Err(_), None) => return Err(format!("environment variable `{name}` is not set")),
        };
        out.push_str(&resolved);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests;
