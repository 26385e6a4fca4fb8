//! `filter`: keeps or drops events by rules on their fields.
//!
//! Config (the stage's `[stage.config.filter]` table, as JSON):
//!
//! ```toml
//! mode = "keep"            # "keep": keep events matching ALL rules, drop the rest
//!                          # "drop": drop events matching ALL rules, keep the rest
//! rules = [
//!   { field = "severity", op = "in", value = ["WARN", "ERROR"] },
//!   { field = "attributes.region", op = "equals", value = "eu" },
//! ]
//! ```
//!
//! See `plugins/README.md` for the operators and their exact semantics. Only
//! the fields the rules name are parsed from each event; the event is never
//! re-serialized (the outcome is always `keep`, `drop` or `fail`).

use std::cmp::Ordering;
use std::fmt;

use regex_lite::Regex;
use serde::Deserialize;
use serde_json::{Number, Value};
use sluice_sdk::{Config, Event, FieldPath, Outcome, Selector, Transform};

/// What to do with events that match all rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Keep events matching all rules; drop the others.
    Keep,
    /// Drop events matching all rules; keep the others.
    Drop,
}

/// A rule operator with its (validated) operand.
#[derive(Debug, Clone)]
pub enum Op {
    /// Field equals the value (numbers and numeric strings compare as numbers).
    Equals(Value),
    /// Negation of [`Op::Equals`] (also true when the field is absent).
    NotEquals(Value),
    /// Field equals any element of the list.
    In(Vec<Value>),
    /// Field (a string, or a number/boolean as its JSON text) contains a match.
    Regex(Regex),
    /// Field, as a number, is greater than the value.
    Gt(f64),
    /// Field, as a number, is greater than or equal to the value.
    Gte(f64),
    /// Field, as a number, is less than the value.
    Lt(f64),
    /// Field, as a number, is less than or equal to the value.
    Lte(f64),
    /// Field is present and not null.
    Exists,
    /// Field is absent or null.
    NotExists,
}

/// One validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The dotted path the rule tests.
    pub field: FieldPath,
    /// The operator and operand.
    pub op: Op,
}

impl Rule {
    /// Whether the rule holds for `value`, the field's value in the event
    /// (`None` when absent).
    pub fn matches(&self, value: Option<&Value>) -> bool {
        let present = value.filter(|v| !v.is_null());
        match &self.op {
            Op::Equals(expected) => present.is_some_and(|v| loose_eq(v, expected)),
            Op::NotEquals(expected) => !present.is_some_and(|v| loose_eq(v, expected)),
            Op::In(options) => present.is_some_and(|v| options.iter().any(|o| loose_eq(v, o))),
            Op::Regex(regex) => present.is_some_and(|v| match v {
                Value::String(s) => regex.is_match(s),
                Value::Number(_) | Value::Bool(_) => regex.is_match(&v.to_string()),
                _ => false,
            }),
            Op::Gt(limit) => compare(present, *limit, Ordering::is_gt),
            Op::Gte(limit) => compare(present, *limit, Ordering::is_ge),
            Op::Lt(limit) => compare(present, *limit, Ordering::is_lt),
            Op::Lte(limit) => compare(present, *limit, Ordering::is_le),
            Op::Exists => present.is_some(),
            Op::NotExists => present.is_none(),
        }
    }
}

/// The filter plugin.
#[derive(Debug, Clone)]
pub struct Filter {
    mode: Mode,
    rules: Vec<Rule>,
    selector: Selector,
}

/// Whether an event is kept or dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Pass the event on.
    Keep,
    /// Drop the event.
    Drop,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    mode: Mode,
    rules: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    field: String,
    op: String,
    #[serde(default)]
    value: Option<Value>,
}

/// The operators, as written in config.
pub const OPS: &[&str] = &[
    "equals",
    "not_equals",
    "in",
    "regex",
    "gt",
    "gte",
    "lt",
    "lte",
    "exists",
    "not_exists",
];

struct RuleError<'a> {
    index: usize,
    field: Option<&'a str>,
    message: String,
}

impl fmt::Display for RuleError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(field) => write!(
                f,
                "rules[{}] (field \"{field}\"): {}",
                self.index, self.message
            ),
            None => write!(f, "rules[{}]: {}", self.index, self.message),
        }
    }
}

impl Filter {
    /// Builds the filter from its JSON config; errors name the rule index and
    /// field.
    pub fn from_config(config: &Value) -> Result<Filter, String> {
        let raw: RawConfig = RawConfig::deserialize(config)
            .map_err(|err| format!("invalid filter config: {err}"))?;
        if raw.rules.is_empty() {
            return Err("invalid filter config: `rules` must not be empty".to_string());
        }
        let rules = raw
            .rules
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                parse_rule(index, rule).map_err(|err| format!("invalid filter config: {err}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let selector = Selector::from_paths(rules.iter().map(|rule| rule.field.clone()).collect());
        Ok(Filter {
            mode: raw.mode,
            rules,
            selector,
        })
    }

    /// The configured mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The validated rules, in config order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Decides for one event value (JSON text). Errors when it is not JSON.
    pub fn decide(&self, value: &[u8]) -> Result<Decision, String> {
        let selected = self
            .selector
            .select(value)
            .map_err(|err| format!("filter: event value is not valid JSON: {err}"))?;
        let all = self
            .rules
            .iter()
            .enumerate()
            .all(|(index, rule)| rule.matches(selected.get(index)));
        Ok(match (self.mode, all) {
            (Mode::Keep, true) | (Mode::Drop, false) => Decision::Keep,
            (Mode::Keep, false) | (Mode::Drop, true) => Decision::Drop,
        })
    }
}

impl Filter {
    /// [`Filter::decide`] from the fields the host located
    /// ([`Transform::fields`]: one per rule, in rule order), parsing only
    /// each rule's own value.
    pub fn decide_located(&self, event: &Event<'_>) -> Result<Decision, String> {
        let invalid =
            |err: &dyn std::fmt::Display| format!("filter: event value is not valid JSON: {err}");
        let mut all = true;
        for (index, rule) in self.rules.iter().enumerate() {
            let found = event.field(index).map_err(|e| invalid(&e))?;
            let value = found
                .map(|f| f.to_value())
                .transpose()
                .map_err(|e| invalid(&e))?;
            if !rule.matches(value.as_ref()) {
                all = false;
                break;
            }
        }
        Ok(match (self.mode, all) {
            (Mode::Keep, true) | (Mode::Drop, false) => Decision::Keep,
            (Mode::Keep, false) | (Mode::Drop, true) => Decision::Drop,
        })
    }
}

impl Transform for Filter {
    fn init(config: Config) -> Result<Self, String> {
        Filter::from_config(config.value())
    }

    fn fields(&self) -> Vec<FieldPath> {
        self.rules.iter().map(|rule| rule.field.clone()).collect()
    }

    fn process(&mut self, event: &Event<'_>) -> Outcome {
        let decision = if event.located.is_empty() && !self.rules.is_empty() {
            // Nobody located the fields (a native caller): scan.
            self.decide(event.value)
        } else {
            self.decide_located(event)
        };
        match decision {
            Ok(Decision::Keep) => Outcome::keep(),
            Ok(Decision::Drop) => Outcome::drop(),
            Err(reason) => Outcome::fail(reason),
        }
    }
}

sluice_sdk::export_transform!(Filter);

fn parse_rule(index: usize, raw: &Value) -> Result<Rule, String> {
    let field_hint = raw.get("field").and_then(Value::as_str);
    let error = |message: String| {
        RuleError {
            index,
            field: field_hint,
            message,
        }
        .to_string()
    };
    let rule = RawRule::deserialize(raw).map_err(|err| error(err.to_string()))?;
    let field = FieldPath::parse(&rule.field).map_err(|err| error(err.message().to_string()))?;
    let op_name = rule.op.as_str();
    let needs_value = !matches!(op_name, "exists" | "not_exists");
    let value = match (needs_value, rule.value) {
        (true, None) => return Err(error(format!("op \"{op_name}\" needs a `value`"))),
        (false, Some(_)) => return Err(error(format!("op \"{op_name}\" takes no `value`"))),
        (_, value) => value.unwrap_or(Value::Null),
    };
    let number = |value: &Value| {
        as_number(value).ok_or_else(|| {
            error(format!(
                "op \"{op_name}\" needs a number or a numeric string, got {value}"
            ))
        })
    };
    let op = match op_name {
        "equals" => Op::Equals(value),
        "not_equals" => Op::NotEquals(value),
        "in" => match value {
            Value::Array(items) if !items.is_empty() => Op::In(items),
            other => {
                return Err(error(format!(
                    "op \"in\" needs a non-empty list, got {other}"
                )));
            }
        },
        "regex" => match &value {
            Value::String(pattern) => Op::Regex(
                Regex::new(pattern).map_err(|err| error(format!("invalid regex: {err}")))?,
            ),
            other => {
                return Err(error(format!(
                    "op \"regex\" needs a string pattern, got {other}"
                )));
            }
        },
        "gt" => Op::Gt(number(&value)?),
        "gte" => Op::Gte(number(&value)?),
        "lt" => Op::Lt(number(&value)?),
        "lte" => Op::Lte(number(&value)?),
        "exists" => Op::Exists,
        "not_exists" => Op::NotExists,
        other => {
            return Err(error(format!(
                "unknown op \"{other}\" (expected one of: {})",
                OPS.join(", ")
            )));
        }
    };
    Ok(Rule { field, op })
}

/// A JSON number, or a string holding a finite decimal number, as `f64`.
pub fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
        _ => None,
    }
}

fn compare(value: Option<&Value>, limit: f64, accept: fn(Ordering) -> bool) -> bool {
    value
        .and_then(as_number)
        .and_then(|n| n.partial_cmp(&limit))
        .is_some_and(accept)
}

/// Equality used by `equals`, `not_equals` and `in`: two strings compare as
/// strings; when at least one side is a number and both sides are numeric
/// (numbers or numeric strings) they compare as numbers; anything else uses
/// JSON equality.
pub fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => numbers_eq(x, y),
        (Value::Number(_), Value::String(_)) | (Value::String(_), Value::Number(_)) => {
            match (as_exact(a), as_exact(b)) {
                (Some(Exact::Int(x)), Some(Exact::Int(y))) => x == y,
                _ => match (as_number(a), as_number(b)) {
                    (Some(x), Some(y)) => x == y,
                    _ => false,
                },
            }
        }
        _ => a == b,
    }
}

enum Exact {
    Int(i128),
}

fn as_exact(value: &Value) -> Option<Exact> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or(n.as_u64().map(i128::from))
            .map(Exact::Int),
        Value::String(s) => s.trim().parse::<i128>().ok().map(Exact::Int),
        _ => None,
    }
}

fn numbers_eq(x: &Number, y: &Number) -> bool {
    if let (Some(a), Some(b)) = (x.as_i64(), y.as_i64()) {
        return a == b;
    }
    if let (Some(a), Some(b)) = (x.as_u64(), y.as_u64()) {
        return a == b;
    }
    x.as_f64() == y.as_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const EVENT: &str = r#"{"event_id":"e-1","type":"page_view","source":"web","entity_id":"user-7","occurred_at":1764400000000,"severity":"INFO","attributes":{"email":"a@b.com","ip":"10.1.2.3","user_agent":"Mozilla/5.0 ... Firefox/118.0","region":"eu","status":"503","ratio":"0.25"},"trace_id":null}"#;

    fn filter(config: Value) -> Filter {
        Filter::from_config(&config).unwrap()
    }

    fn config_error(config: Value) -> String {
        Filter::from_config(&config).unwrap_err()
    }

    fn rule(op: &str, field: &str, value: Option<Value>) -> Rule {
        let mut raw = json!({"field": field, "op": op});
        if let Some(value) = value {
            raw["value"] = value;
        }
        parse_rule(0, &raw).unwrap()
    }

    fn holds(op: &str, field: &str, value: Option<Value>) -> bool {
        let rule = rule(op, field, value);
        let event: Value = serde_json::from_str(EVENT).unwrap();
        rule.matches(rule.field.get(&event))
    }

    #[test]
    fn equals_and_not_equals() {
        assert!(holds("equals", "source", Some(json!("web"))));
        assert!(!holds("equals", "source", Some(json!("Web"))));
        assert!(holds("equals", "attributes.status", Some(json!(503))));
        assert!(holds("equals", "attributes.status", Some(json!("503"))));
        assert!(!holds("equals", "attributes.status", Some(json!("503.0"))));
        assert!(holds("equals", "attributes.status", Some(json!(503.0))));
        assert!(holds(
            "equals",
            "occurred_at",
            Some(json!(1_764_400_000_000u64))
        ));
        assert!(holds("equals", "occurred_at", Some(json!("1764400000000"))));
        assert!(!holds("equals", "missing", Some(json!("x"))));
        assert!(holds("not_equals", "source", Some(json!("checkout"))));
        assert!(!holds("not_equals", "source", Some(json!("web"))));
        assert!(holds("not_equals", "missing", Some(json!("x"))));
    }

    #[test]
    fn in_list() {
        assert!(holds("in", "severity", Some(json!(["WARN", "INFO"]))));
        assert!(!holds("in", "severity", Some(json!(["WARN", "ERROR"]))));
        assert!(holds("in", "attributes.status", Some(json!([500, 503]))));
        assert!(!holds("in", "missing", Some(json!(["x"]))));
    }

    #[test]
    fn regex_searches_strings() {
        assert!(holds(
            "regex",
            "attributes.user_agent",
            Some(json!("Firefox/\\d+"))
        ));
        assert!(holds(
            "regex",
            "attributes.email",
            Some(json!("^[^@]+@b\\.com$"))
        ));
        assert!(!holds("regex", "attributes.email", Some(json!("^b"))));
        assert!(holds("regex", "occurred_at", Some(json!("^1764"))));
        assert!(!holds("regex", "missing", Some(json!(".*"))));
        assert!(!holds("regex", "attributes", Some(json!(".*"))));
    }

    #[test]
    fn numeric_comparisons_accept_numeric_strings() {
        assert!(holds("gt", "attributes.status", Some(json!(500))));
        assert!(holds("gte", "attributes.status", Some(json!("503"))));
        assert!(!holds("gt", "attributes.status", Some(json!(503))));
        assert!(holds("lt", "attributes.ratio", Some(json!(0.5))));
        assert!(holds("lte", "attributes.ratio", Some(json!("0.25"))));
        assert!(!holds("lt", "attributes.ratio", Some(json!(0.25))));
        assert!(holds(
            "gte",
            "occurred_at",
            Some(json!(1_764_400_000_000u64))
        ));
        assert!(!holds("gt", "source", Some(json!(1))));
        assert!(!holds("lt", "missing", Some(json!(1))));
    }

    #[test]
    fn exists_and_not_exists() {
        assert!(holds("exists", "attributes.region", None));
        assert!(!holds("exists", "attributes.nope", None));
        assert!(!holds("exists", "trace_id", None));
        assert!(holds("not_exists", "trace_id", None));
        assert!(holds("not_exists", "attributes.nope", None));
        assert!(!holds("not_exists", "source", None));
    }

    #[test]
    fn keep_mode_keeps_events_matching_all_rules() {
        let f = filter(json!({
            "mode": "keep",
            "rules": [
                {"field": "severity", "op": "in", "value": ["INFO", "WARN"]},
                {"field": "attributes.region", "op": "equals", "value": "eu"},
            ]
        }));
        assert_eq!(f.decide(EVENT.as_bytes()).unwrap(), Decision::Keep);
        let other = EVENT.replace(r#""region":"eu""#, r#""region":"us""#);
        assert_eq!(f.decide(other.as_bytes()).unwrap(), Decision::Drop);
    }

    #[test]
    fn drop_mode_drops_events_matching_all_rules() {
        let f = filter(json!({
            "mode": "drop",
            "rules": [
                {"field": "type", "op": "equals", "value": "page_view"},
                {"field": "attributes.user_agent", "op": "regex", "value": "(?i)firefox"},
            ]
        }));
        assert_eq!(f.decide(EVENT.as_bytes()).unwrap(), Decision::Drop);
        let other = EVENT.replace("page_view", "login");
        assert_eq!(f.decide(other.as_bytes()).unwrap(), Decision::Keep);
    }

    #[test]
    fn outcomes_through_the_sdk() {
        let outcomes = sluice_sdk::testing::run::<Filter>(
            r#"{"mode":"keep","rules":[{"field":"severity","op":"equals","value":"INFO"}]}"#,
            vec![
                Event::new(EVENT),
                Event::new(&EVENT.replace("INFO", "DEBUG")),
                Event::new("not json"),
            ],
        )
        .unwrap();
        assert_eq!(outcomes[0], Outcome::keep());
        assert_eq!(outcomes[1], Outcome::drop());
        let reason = outcomes[2].failure().unwrap();
        assert!(
            reason.starts_with("filter: event value is not valid JSON"),
            "{reason}"
        );
    }

    #[test]
    fn config_errors_name_rule_and_field() {
        let err = config_error(json!({"mode": "keep", "rules": [
            {"field": "severity", "op": "exists"},
            {"field": "attributes.region", "op": "matches", "value": "eu"},
        ]}));
        assert!(
            err.starts_with("invalid filter config: rules[1] (field \"attributes.region\"): unknown op \"matches\""),
            "{err}"
        );

        let err = config_error(json!({"mode": "keep", "rules": [
            {"field": "attributes.ua", "op": "regex", "value": "(unclosed"},
        ]}));
        assert!(
            err.starts_with(
                "invalid filter config: rules[0] (field \"attributes.ua\"): invalid regex"
            ),
            "{err}"
        );

        let err =
            config_error(json!({"mode": "keep", "rules": [{"field": "severity", "op": "equals"}]}));
        assert_eq!(
            err,
            "invalid filter config: rules[0] (field \"severity\"): op \"equals\" needs a `value`"
        );

        let err = config_error(
            json!({"mode": "keep", "rules": [{"field": "a", "op": "exists", "value": 1}]}),
        );
        assert_eq!(
            err,
            "invalid filter config: rules[0] (field \"a\"): op \"exists\" takes no `value`"
        );

        let err = config_error(
            json!({"mode": "keep", "rules": [{"field": "a", "op": "gt", "value": "abc"}]}),
        );
        assert!(
            err.contains("rules[0] (field \"a\"): op \"gt\" needs a number"),
            "{err}"
        );

        let err = config_error(
            json!({"mode": "keep", "rules": [{"field": "a", "op": "in", "value": "x"}]}),
        );
        assert!(
            err.contains("rules[0] (field \"a\"): op \"in\" needs a non-empty list"),
            "{err}"
        );

        let err =
            config_error(json!({"mode": "keep", "rules": [{"field": "a..b", "op": "exists"}]}));
        assert!(
            err.contains("rules[0] (field \"a..b\"): path has an empty segment"),
            "{err}"
        );

        let err = config_error(json!({"mode": "keep", "rules": [{"op": "exists"}]}));
        assert!(err.contains("rules[0]: missing field `field`"), "{err}");

        let err = config_error(
            json!({"mode": "keep", "rules": [{"field": "a", "op": "exists", "extra": 1}]}),
        );
        assert!(
            err.contains("rules[0] (field \"a\"): unknown field `extra`"),
            "{err}"
        );
    }

    #[test]
    fn config_errors_at_top_level() {
        assert!(config_error(json!({"rules": []})).contains("missing field `mode`"));
        assert!(
            config_error(json!({"mode": "maybe", "rules": []})).contains("unknown variant `maybe`")
        );
        assert!(
            config_error(json!({"mode": "keep", "rules": []}))
                .contains("`rules` must not be empty")
        );
        assert!(config_error(json!({"mode": "keep"})).contains("missing field `rules`"));
        let err = sluice_sdk::testing::init::<Filter>("{}").err().unwrap();
        assert!(
            err.starts_with("invalid filter config: missing field `mode`"),
            "{err}"
        );
    }

    #[test]
    fn loose_equality() {
        assert!(loose_eq(&json!(1), &json!(1.0)));
        assert!(loose_eq(&json!("10"), &json!(10)));
        assert!(!loose_eq(&json!("10"), &json!("10.0")));
        assert!(loose_eq(&json!(true), &json!(true)));
        assert!(!loose_eq(&json!("true"), &json!(true)));
        assert!(!loose_eq(&json!("x"), &json!(1)));
        assert!(loose_eq(
            &json!("9007199254740993"),
            &json!(9_007_199_254_740_993u64)
        ));
        assert!(!loose_eq(
            &json!("9007199254740993"),
            &json!(9_007_199_254_740_992u64)
        ));
    }
}
