//! `sluice test`: the `[[test]]` cases of a configuration, run like unit
//! tests of a pipeline. Each case sends its input events through a chain of
//! the real WebAssembly plugins (a stage's chain with its config and limits,
//! or a chain of its own) exactly as a stage would: inputs validated and
//! normalised with the Avro schema, one batch, retries and isolation of
//! failing events, modified outputs re-encoded with the schema. Then every
//! event's outcome and value are compared with the expectations, and a
//! failure prints a diff of expected (`-`) against actual (`+`) JSON.
//!
//! No broker is involved: nothing is read from or written to Kafka.

mod diff;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::Value as Json;

use crate::config::{Expectation, ExpectedOutcome, LoadedConfig, StageConfig, TestCase};
use crate::runtime::bindings::{Event, Origin};
use crate::runtime::{Chain, Link, Runtime, TransformPlugin, plugin_path};
use crate::schema::LoadedSchema;

/// How a run went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Cases whose every event matched.
    pub passed: usize,
    /// Cases with a mismatch or an error.
    pub failed: usize,
}

/// What the chain made of one input event.
#[derive(Debug, Clone, PartialEq)]
enum Actual {
    Keep(Json),
    Modify(Json),
    Drop,
    Fail(String),
    FanOut(Vec<Json>),
}

impl Actual {
    fn outcome(&self) -> ExpectedOutcome {
        match self {
            Actual::Keep(_) => ExpectedOutcome::Keep,
            Actual::Modify(_) => ExpectedOutcome::Modify,
            Actual::Drop => ExpectedOutcome::Drop,
            Actual::Fail(_) => ExpectedOutcome::Fail,
            Actual::FanOut(_) => ExpectedOutcome::FanOut,
        }
    }

    fn values(&self) -> Vec<&Json> {
        match self {
            Actual::Keep(v) | Actual::Modify(v) => vec![v],
            Actual::FanOut(vs) => vs.iter().collect(),
            Actual::Drop | Actual::Fail(_) => Vec::new(),
        }
    }
}

/// Run every case whose name contains `filter` (all without one), writing a
/// test-runner report to `out`.
pub fn run(
    loaded: &LoadedConfig,
    filter: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<Summary> {
    let cases: Vec<&TestCase> = loaded
        .config
        .tests
        .iter()
        .filter(|c| filter.is_none_or(|f| c.name.get_ref().contains(f)))
        .collect();
    writeln!(
        out,
        "running {} test{} from {}",
        cases.len(),
        if cases.len() == 1 { "" } else { "s" },
        loaded.path.display()
    )?;
    let runtime = crate::runtime::for_config(loaded)?;
    let mut plugins: BTreeMap<String, Arc<TransformPlugin>> = BTreeMap::new();
    let mut summary = Summary::default();
    let mut failures: Vec<(String, String)> = Vec::new();
    for case in cases {
        let name = case.name.get_ref().clone();
        let report = run_case(loaded, case, &runtime, &mut plugins)
            .unwrap_or_else(|e| Some(format!("error: {e:#}\n")));
        match report {
            None => {
                summary.passed += 1;
                writeln!(out, "test {name} ... ok")?;
            }
            Some(report) => {
                summary.failed += 1;
                writeln!(out, "test {name} ... FAILED")?;
                failures.push((name, report));
            }
        }
    }
    if !failures.is_empty() {
        writeln!(out, "\nfailures:")?;
        for (name, report) in &failures {
            let (line, _) = line_of(loaded, name);
            writeln!(out, "\n---- {name} ({}:{line}) ----", loaded.path.display())?;
            write!(out, "{report}")?;
        }
    }
    writeln!(
        out,
        "\nsluice test: {}. {} passed; {} failed",
        if summary.failed == 0 { "ok" } else { "FAILED" },
        summary.passed,
        summary.failed
    )?;
    Ok(summary)
}

/// Line and column of a case's `name` in the file.
fn line_of(loaded: &LoadedConfig, name: &str) -> (usize, usize) {
    loaded
        .config
        .tests
        .iter()
        .find(|c| c.name.get_ref() == name)
        .map(|c| {
            let d = loaded.problem_at(&c.name, "", String::new());
            (d.line, d.column)
        })
        .unwrap_or((0, 0))
}

/// `None` when the case passes, else the failure report.
fn run_case(
    loaded: &LoadedConfig,
    case: &TestCase,
    runtime: &Runtime,
    plugins: &mut BTreeMap<String, Arc<TransformPlugin>>,
) -> anyhow::Result<Option<String>> {
    let config = &loaded.config;
    let stage: Option<&StageConfig> = match &case.stage {
        Some(name) => Some(
            config
                .stages
                .iter()
                .find(|s| s.name.get_ref() == name.get_ref())
                .with_context(|| format!("no stage named `{}`", name.get_ref()))?,
        ),
        None => None,
    };
    let chain_names: Vec<String> = match (stage, &case.chain) {
        (Some(stage), _) => stage.chain.iter().map(|n| n.get_ref().clone()).collect(),
        (None, Some(chain)) => chain.get_ref().clone(),
        (None, None) => bail!("the test names neither `stage` nor `chain`"),
    };
    let limits = stage
        .and_then(|s| s.limits)
        .unwrap_or(config.plugins.limits);
    let retries = stage.map_or(0, |s| s.retries);
    let stage_name = stage.map_or_else(
        || format!("test:{}", case.name.get_ref()),
        |s| s.name.get_ref().clone(),
    );
    let mut links = Vec::with_capacity(chain_names.len());
    for plugin_name in &chain_names {
        let plugin = match plugins.get(plugin_name) {
            Some(plugin) => plugin.clone(),
            None => {
                let path = plugin_path(loaded, plugin_name);
                let plugin = Arc::new(
                    TransformPlugin::load_file(runtime, plugin_name, &path)
                        .with_context(|| format!("plugin `{plugin_name}`"))?,
                );
                plugins.insert(plugin_name.clone(), plugin.clone());
                plugin
            }
        };
        let plugin_config = match stage {
            Some(stage) => crate::runtime::plugin_config_json(stage, plugin_name),
            None => case
                .config
                .get(plugin_name)
                .map(serde_json::to_string)
                .transpose()?
                .unwrap_or_else(|| "{}".into()),
        };
        links.push(Link::new(plugin, plugin_config, limits));
    }

    let route = route_for(loaded, stage);
    let schema = match (&case.schema, route) {
        (Some(path), _) => Some(LoadedSchema::from_file(&loaded.resolve(path.get_ref()))?),
        (None, Some(route)) => Some(LoadedSchema::from_file(
            &loaded.resolve(route.schema.get_ref()),
        )?),
        (None, None) => None,
    };
    let key_field = route.map_or("entity_id", |r| r.key_field.as_str());

    let inputs = match (&case.input, &case.input_file) {
        (Some(inline), _) => inline
            .iter()
            .map(json_of)
            .collect::<anyhow::Result<Vec<_>>>()?,
        (None, Some(file)) => read_values(&loaded.resolve(file.get_ref()))?,
        (None, None) => bail!("the test has neither `input` nor `input_file`"),
    };
    let expectations: Vec<Expectation> = match (&case.expect, &case.expect_file) {
        (Some(inline), _) => inline.clone(),
        (None, Some(file)) => read_values(&loaded.resolve(file.get_ref()))?
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let mut unknown = Vec::new();
                let expectation: Expectation =
                    serde_ignored::deserialize(v, |path| unknown.push(path.to_string()))
                        .with_context(|| {
                            format!("expectation {i} of {}", file.get_ref().display())
                        })?;
                if !unknown.is_empty() {
                    bail!(
                        "expectation {i} of {}: unknown key `{}`",
                        file.get_ref().display(),
                        unknown.join("`, `")
                    );
                }
                Ok(expectation)
            })
            .collect::<anyhow::Result<_>>()?,
        (None, None) => bail!("the test has neither `expect` nor `expect_file`"),
    };
    if inputs.len() != expectations.len() {
        bail!(
            "{} input events but {} expectations: give one per event",
            inputs.len(),
            expectations.len()
        );
    }

    let input_topic = stage.map_or_else(|| "test".to_string(), |s| s.input.get_ref().clone());
    let mut events = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let value = match &schema {
            Some(schema) => normalise(schema, input).with_context(|| {
                format!("input event {i} does not match {}", schema.path.display())
            })?,
            None => input.clone(),
        };
        let key = value.get(key_field).map(|k| match k {
            Json::String(s) => s.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        });
        events.push(Event {
            key,
            value: serde_json::to_vec(&value)?.into(),
            headers: Vec::new(),
            timestamp_ms: case.timestamp_ms,
            origin: Some(Origin {
                topic: input_topic.as_str().into(),
                partition: 0,
                offset: i as i64,
            }),
            topic: None,
        });
    }

    let output = Chain::new(&stage_name, links, retries).run(events);
    let mut actual: Vec<Option<Actual>> = vec![None; inputs.len()];
    for failure in output.failures {
        let error = if failure.plugin.is_empty() {
            failure.error
        } else {
            format!("{}: {}", failure.plugin, failure.error)
        };
        actual[failure.source] = Some(Actual::Fail(error));
    }
    let mut produced: BTreeMap<usize, Vec<(bool, Json)>> = BTreeMap::new();
    for item in output.items {
        let value: anyhow::Result<Json> = serde_json::from_slice(&item.event.value)
            .map_err(|e| anyhow::anyhow!("plugin output is not JSON: {e}"));
        let value = match (value, &schema) {
            (Ok(v), Some(schema)) if item.changed => normalise(schema, &v).map_err(|e| {
                anyhow::anyhow!(
                    "plugin output does not match schema {}: {e:#}",
                    schema.path.display()
                )
            }),
            (v, _) => v,
        };
        match value {
            Ok(v) => produced
                .entry(item.source)
                .or_default()
                .push((item.changed, v)),
            Err(e) => actual[item.source] = Some(Actual::Fail(format!("{e:#}"))),
        }
    }
    for (i, slot) in actual.iter_mut().enumerate() {
        if slot.is_some() {
            continue;
        }
        let mut outputs = produced.remove(&i).unwrap_or_default();
        *slot = Some(match outputs.len() {
            0 => Actual::Drop,
            1 => {
                let (changed, value) = outputs.remove(0);
                if changed {
                    Actual::Modify(value)
                } else {
                    Actual::Keep(value)
                }
            }
            _ => Actual::FanOut(outputs.into_iter().map(|(_, v)| v).collect()),
        });
    }

    let mut report = String::new();
    for (i, (expected, actual)) in expectations.iter().zip(actual.iter()).enumerate() {
        let Some(actual) = actual else { continue };
        let label = match inputs[i].get("event_id").and_then(Json::as_str) {
            Some(id) => format!("event {i} ({id})"),
            None => format!("event {i}"),
        };
        compare(&label, expected, actual, &mut report);
    }
    Ok((!report.is_empty()).then_some(report))
}

/// The ingest route that writes the stage's input topic, else the first.
fn route_for<'a>(
    loaded: &'a LoadedConfig,
    stage: Option<&StageConfig>,
) -> Option<&'a crate::config::RouteConfig> {
    let routes = &loaded.config.ingest.as_ref()?.routes;
    stage
        .and_then(|s| {
            routes
                .iter()
                .find(|r| r.topic.get_ref() == s.input.get_ref())
        })
        .or_else(|| routes.first())
}

/// Append to `report` what differs between `expected` and `actual`.
fn compare(label: &str, expected: &Expectation, actual: &Actual, report: &mut String) {
    if expected.outcome != actual.outcome() {
        report.push_str(&format!(
            "{label}: expected outcome `{}`, got `{}`\n",
            expected.outcome.as_str(),
            actual.outcome().as_str()
        ));
        match actual {
            Actual::Fail(error) => report.push_str(&format!("    error: {error}\n")),
            other => {
                for value in other.values() {
                    report.push_str(&format!("    output: {value}\n"));
                }
            }
        }
        return;
    }
    if let (Some(want), Actual::Fail(error)) = (&expected.error_contains, actual)
        && !error.contains(want.as_str())
    {
        report.push_str(&format!(
            "{label}: error does not contain {want:?}\n    error: {error}\n"
        ));
    }
    let values = actual.values();
    let mut wanted: Vec<Json> = Vec::new();
    if let Some(value) = &expected.value {
        wanted.push(value.clone());
    }
    if let Some(values) = &expected.values {
        wanted.extend(values.iter().cloned());
    }
    if !wanted.is_empty() {
        let wanted: Vec<Json> = wanted
            .iter()
            .map(|v| json_of(v).unwrap_or_else(|_| v.clone()))
            .collect();
        let got: Vec<Json> = values.iter().map(|v| (*v).clone()).collect();
        if wanted != got {
            let (expected_text, actual_text) = if wanted.len() == 1 && got.len() == 1 {
                (diff::canonical(&wanted[0]), diff::canonical(&got[0]))
            } else {
                (
                    diff::canonical(&Json::Array(wanted)),
                    diff::canonical(&Json::Array(got)),
                )
            };
            report.push_str(&format!("{label}: value differs (- expected, + actual):\n"));
            report.push_str(&diff::unified(&expected_text, &actual_text, "    "));
        }
    }
    for (path, want) in &expected.fields {
        for (n, value) in values.iter().enumerate() {
            let got = lookup(value, path);
            if got != Some(want) {
                let got = got.map_or_else(|| "(missing)".to_string(), Json::to_string);
                let which = if values.len() > 1 {
                    format!(" output {n}")
                } else {
                    String::new()
                };
                report.push_str(&format!(
                    "{label}{which}: field `{path}`\n    - expected: {want}\n    + actual:   {got}\n"
                ));
            }
        }
    }
}

/// The value at a dotted path (`attributes.team`).
fn lookup<'a>(value: &'a Json, path: &str) -> Option<&'a Json> {
    path.split('.').try_fold(value, |v, key| v.get(key))
}

/// A config value as event JSON: strings hold JSON text (TOML has no null).
fn json_of(value: &Json) -> anyhow::Result<Json> {
    match value {
        Json::String(text) => {
            serde_json::from_str(text).with_context(|| format!("not JSON: {text}"))
        }
        other => Ok(other.clone()),
    }
}

/// Validate `json` against `schema` and return its natural JSON, as a stage
/// would see it after ingest (defaults filled, timestamps as epoch millis).
fn normalise(schema: &LoadedSchema, json: &Json) -> anyhow::Result<Json> {
    let framed = schema
        .encode_json(json)
        .map_err(|e| anyhow::anyhow!("field `{}`: {}", e.field, e.reason))?;
    let (_, datum) = crate::schema::split_frame(&framed)?;
    Ok(serde_json::from_slice(&schema.datum_to_json(datum)?)?)
}

/// Events or expectations from a file: a JSON array, or one value per line.
fn read_values(path: &Path) -> anyhow::Result<Vec<Json>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JSON array", path.display()));
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not JSON", path.display(), n + 1))
        })
        .collect()
}
