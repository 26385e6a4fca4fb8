//! `[[test]]`: pipeline test cases that `sluice test` runs, and the checks
//! `sluice validate` makes on them.
//!
//! ```toml
//! [[test]]
//! name = "debug events are dropped"
//! stage = "clean"                      # that stage's chain, plugin config and limits
//! # chain = ["filter"]                 # or a chain of its own, with
//! # config.filter = { mode = "drop" }  # its plugins' config
//! timestamp_ms = 1764400000123         # the Kafka timestamp plugins see (default: none)
//! input = [{ event_id = "e1", type = "log", source = "web", entity_id = "u1", occurred_at = 0, severity = "DEBUG" }]
//! # input_file = "events.ndjson"       # NDJSON or a JSON array, relative to this file
//! expect = [{ outcome = "drop" }]
//! # expect_file = "expected.ndjson"    # one expectation object per line
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{Config, Diagnostics, Source};

/// One `[[test]]` case: input events through a chain, and what should come out.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TestCase {
    /// Name printed by the runner; unique in the file.
    pub name: Spanned<String>,
    /// Run this stage's chain with its plugin config and limits.
    #[serde(default)]
    pub stage: Option<Spanned<String>>,
    /// Or run this chain of plugins (from `[plugins] dir`).
    #[serde(default)]
    pub chain: Option<Spanned<Vec<String>>>,
    /// Plugin config for a `chain` test, by plugin name (as `[stage.config]`).
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
    /// Avro schema the input is validated and normalised with, and modified
    /// output re-encoded with (as the stage does). Default: the schema of
    /// the ingest route writing the stage's input topic, else of the first
    /// route; none when the file has no ingest routes.
    #[serde(default)]
    pub schema: Option<Spanned<PathBuf>>,
    /// The Kafka record timestamp the plugins see, in epoch milliseconds.
    #[serde(default)]
    pub timestamp_ms: Option<i64>,
    /// Input events, inline: tables, or strings holding JSON (TOML has no null).
    #[serde(default)]
    pub input: Option<Vec<serde_json::Value>>,
    /// Or a file of input events (NDJSON or a JSON array), relative to the config.
    #[serde(default)]
    pub input_file: Option<Spanned<PathBuf>>,
    /// One expectation per input event, in order.
    #[serde(default)]
    pub expect: Option<Vec<Expectation>>,
    /// Or a file of expectations (NDJSON or a JSON array of the same objects).
    #[serde(default)]
    pub expect_file: Option<Spanned<PathBuf>>,
}

/// What should become of one input event.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Expectation {
    /// The chain's outcome for the event.
    pub outcome: ExpectedOutcome,
    /// The whole output value (`keep`, `modify`), compared as JSON.
    #[serde(default)]
    pub value: Option<serde_json::Value>,
    /// The output values of a `fan_out`, in order.
    #[serde(default)]
    pub values: Option<Vec<serde_json::Value>>,
    /// Only these fields of the output (dotted paths), compared as JSON.
    #[serde(default)]
    pub fields: BTreeMap<String, serde_json::Value>,
    /// For `fail`: text the error must contain.
    #[serde(default)]
    pub error_contains: Option<String>,
}

/// An event's fate in a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedOutcome {
    /// Passed every plugin unchanged.
    Keep,
    /// Some plugin changed it.
    Modify,
    /// Some plugin dropped it.
    Drop,
    /// Some plugin failed it (it would go to the dead-letter topic).
    Fail,
    /// Some plugin turned it into several events.
    FanOut,
}

impl ExpectedOutcome {
    /// The word used in the config and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Modify => "modify",
            Self::Drop => "drop",
            Self::Fail => "fail",
            Self::FanOut => "fan_out",
        }
    }
}

/// Checks on `[[test]]` that need only the configuration text.
pub(super) fn check(config: &Config, source: &Source<'_>, problems: &mut Diagnostics) {
    let stages: BTreeSet<&str> = config
        .stages
        .iter()
        .map(|s| s.name.get_ref().as_str())
        .collect();
    let mut names = BTreeSet::new();
    for (i, case) in config.tests.iter().enumerate() {
        let key = format!("test[{i}]");
        let at_name = |field: &str, message: String| {
            source.spanned(&case.name, &format!("{key}{field}"), message)
        };
        if !names.insert(case.name.get_ref().clone()) {
            problems.push(at_name(
                ".name",
                format!("duplicate test name `{}`", case.name.get_ref()),
            ));
        }
        match (&case.stage, &case.chain) {
            (None, None) => problems.push(at_name("", "a test needs `stage` or `chain`".into())),
            (Some(_), Some(_)) => problems.push(at_name(
                "",
                "set either `stage` or `chain`, not both".into(),
            )),
            (Some(stage), None) if !stages.contains(stage.get_ref().as_str()) => {
                problems.push(source.spanned(
                    stage,
                    &format!("{key}.stage"),
                    format!("no `[[stage]]` is named `{}`", stage.get_ref()),
                ));
            }
            (None, Some(chain)) if chain.get_ref().is_empty() => {
                problems.push(source.spanned(
                    chain,
                    &format!("{key}.chain"),
                    "name at least one plugin".into(),
                ));
            }
            _ => {}
        }
        if case.stage.is_some() && !case.config.is_empty() {
            problems.push(at_name(
                ".config",
                "`config` is for `chain` tests; a `stage` test uses the stage's config".into(),
            ));
        }
        match (&case.input, &case.input_file) {
            (None, None) => {
                problems.push(at_name("", "a test needs `input` or `input_file`".into()))
            }
            (Some(_), Some(_)) => problems.push(at_name(
                "",
                "set either `input` or `input_file`, not both".into(),
            )),
            _ => {}
        }
        match (&case.expect, &case.expect_file) {
            (None, None) => {
                problems.push(at_name("", "a test needs `expect` or `expect_file`".into()))
            }
            (Some(_), Some(_)) => problems.push(at_name(
                "",
                "set either `expect` or `expect_file`, not both".into(),
            )),
            _ => {}
        }
        if let (Some(input), Some(expect)) = (&case.input, &case.expect)
            && input.len() != expect.len()
        {
            problems.push(at_name(
                ".expect",
                format!(
                    "{} input events but {} expectations: give one per event",
                    input.len(),
                    expect.len()
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const BASE: &str = r#"
[kafka]
brokers = "embedded"

[[stage]]
name = "clean"
input = "in"
output = "out"
chain = ["filter"]
"#;

    fn problems(tests: &str) -> String {
        match crate::config::parse_str(&format!("{BASE}{tests}"), Path::new("sluice.toml")) {
            Ok(_) => String::new(),
            Err(problems) => problems.to_string(),
        }
    }

    #[test]
    fn a_good_case_parses() {
        let text = format!(
            "{BASE}\n[[test]]\nname = \"t\"\nstage = \"clean\"\ninput = [{{ a = 1 }}, '{{\"b\": null}}']\nexpect = [{{ outcome = \"drop\" }}, {{ outcome = \"modify\", fields = {{ \"a.b\" = 2 }} }}]\n"
        );
        let loaded = crate::config::parse_str(&text, Path::new("sluice.toml")).expect("valid");
        let case = &loaded.config.tests[0];
        assert_eq!(case.input.as_ref().map(Vec::len), Some(2));
        let expect = case.expect.as_ref().expect("expect");
        assert_eq!(expect[1].outcome, super::ExpectedOutcome::Modify);
        assert_eq!(expect[1].fields["a.b"], serde_json::json!(2));
    }

    #[test]
    fn unknown_keys_in_a_case_and_its_expectations_name_file_and_line() {
        let rendered = problems(
            "\n[[test]]\nname = \"t\"\nstage = \"clean\"\ncolour = 1\ninput = [{ a = 1 }]\nexpect = [{ outcome = \"keep\", vlaue = 1 }]\n",
        );
        assert!(
            rendered.contains("sluice.toml:14:1: key `test[0].colour`: unknown key"),
            "{rendered}"
        );
        assert!(
            rendered.contains("key `test[0].expect[0].vlaue`: unknown key"),
            "{rendered}"
        );
    }

    #[test]
    fn semantic_problems_are_reported_together() {
        let rendered = problems(
            "\n[[test]]\nname = \"t\"\nstage = \"nope\"\ninput = [{ a = 1 }, { a = 2 }]\nexpect = [{ outcome = \"keep\" }]\n\n[[test]]\nname = \"t\"\nchain = [\"filter\"]\nexpect_file = \"e.ndjson\"\n",
        );
        assert!(
            rendered.contains("no `[[stage]]` is named `nope`"),
            "{rendered}"
        );
        assert!(
            rendered.contains("2 input events but 1 expectations"),
            "{rendered}"
        );
        assert!(rendered.contains("duplicate test name `t`"), "{rendered}");
        assert!(
            rendered.contains("a test needs `input` or `input_file`"),
            "{rendered}"
        );
        assert!(rendered.contains("4 problems found"), "{rendered}");
    }

    #[test]
    fn an_unknown_outcome_is_an_error() {
        let rendered = problems(
            "\n[[test]]\nname = \"t\"\nstage = \"clean\"\ninput = [{ a = 1 }]\nexpect = [{ outcome = \"explode\" }]\n",
        );
        assert!(rendered.contains("explode"), "{rendered}");
    }
}
