//! `enrich`: adds fields from lookup tables, the Kafka record timestamp and the
//! user-agent family. Uses no clock.
//!
//! Config (the stage's `[stage.config.enrich]` table, as JSON):
//!
//! ```toml
//! lookups = [
//!   { from = "source", to = "attributes.team", table = { checkout = "payments", web = "growth" }, default = "unknown" },
//! ]
//! ingest_time_to = "attributes.ingested_at"      # optional
//! user_agent_from = "attributes.user_agent"      # optional, together with user_agent_to
//! user_agent_to = "attributes.ua_family"
//! ```
//!
//! Steps run in this order on each event: `ingest_time_to`, then the user
//! agent, then `lookups` in config order (a lookup sees what earlier steps
//! wrote). Every written value is a string. An event in which nothing changes
//! is kept as is (no re-serialization). See `plugins/README.md` for details.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use sluice_sdk::json::{self, EditError, Edits};
use sluice_sdk::{Config, Event, FieldPath, Outcome, Transform};

/// Top-level string fields of the telemetry schema that enrich may overwrite;
/// anything else must be written under `attributes.KEY`.
pub const STRING_FIELDS: &[&str] = &[
    "event_id",
    "type",
    "source",
    "entity_id",
    "severity",
    "trace_id",
];

/// The user-agent family of `user_agent`, by the first rule that matches:
///
/// 1. contains `bot`, `crawler` or `spider` (ASCII case-insensitive) → `bot`
/// 2. contains `Edg/` → `Edge`
/// 3. contains `Firefox/` → `Firefox`
/// 4. contains `Chrome/` → `Chrome`
/// 5. contains `Safari/` → `Safari`
/// 6. contains `curl/` → `curl`
/// 7. otherwise → `other`
///
/// Rules 2–6 are case-sensitive.
///
/// ```
/// assert_eq!(sluice_enrich::ua_family("Mozilla/5.0 (X11; Linux x86_64; rv:118.0) Gecko/20100101 Firefox/118.0"), "Firefox");
/// assert_eq!(sluice_enrich::ua_family("Googlebot/2.1 (+http://www.google.com/bot.html)"), "bot");
/// ```
pub fn ua_family(user_agent: &str) -> &'static str {
    let lower = user_agent.to_ascii_lowercase();
    if ["bot", "crawler", "spider"]
        .iter()
        .any(|word| lower.contains(word))
    {
        "bot"
    } else if user_agent.contains("Edg/") {
        "Edge"
    } else if user_agent.contains("Firefox/") {
        "Firefox"
    } else if user_agent.contains("Chrome/") {
        "Chrome"
    } else if user_agent.contains("Safari/") {
        "Safari"
    } else if user_agent.contains("curl/") {
        "curl"
    } else {
        "other"
    }
}

/// One lookup table.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    /// Path whose value is looked up.
    pub from: FieldPath,
    /// Path the result is written to.
    pub to: FieldPath,
    /// Exact-match table from the `from` value to the written value.
    pub table: BTreeMap<String, String>,
    /// Written when nothing matches; when `None`, nothing is written.
    pub default: Option<String>,
}

impl Lookup {
    /// The value to write for `value`, the `from` field's value (`None` when
    /// absent). Strings are looked up as they are; numbers and booleans by
    /// their JSON text (`42`, `true`); anything else matches nothing.
    pub fn resolve(&self, value: Option<&Value>) -> Option<&str> {
        key_of(value)
            .and_then(|key| self.table.get(key.as_ref()))
            .or(self.default.as_ref())
            .map(String::as_str)
    }

    /// [`Lookup::resolve`] for a value found on the raw bytes: a string is
    /// read without a tree, anything else as [`key_of`] reads it.
    pub fn resolve_found(&self, found: Option<&json::Found<'_>>) -> Option<&str> {
        let key = match found {
            Some(f) if f.is_string() => f.as_str(),
            Some(f) => f
                .to_value()
                .ok()
                .and_then(|v| key_of(Some(&v)).map(|k| k.into_owned().into())),
            None => None,
        };
        key.and_then(|key| self.table.get(key.as_ref()))
            .or(self.default.as_ref())
            .map(String::as_str)
    }
}

/// The text a value is looked up by.
pub fn key_of(value: Option<&Value>) -> Option<std::borrow::Cow<'_, str>> {
    match value? {
        Value::String(text) => Some(text.as_str().into()),
        number @ Value::Number(_) => Some(number.to_string().into()),
        Value::Bool(flag) => Some(flag.to_string().into()),
        _ => None,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    lookups: Vec<Value>,
    #[serde(default)]
    ingest_time_to: Option<String>,
    #[serde(default)]
    user_agent_from: Option<String>,
    #[serde(default)]
    user_agent_to: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLookup {
    from: String,
    to: String,
    table: BTreeMap<String, String>,
    #[serde(default)]
    default: Option<String>,
}

/// The enrich plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct Enrich {
    lookups: Vec<Lookup>,
    ingest_time_to: Option<FieldPath>,
    user_agent: Option<(FieldPath, FieldPath)>,
    /// No step reads or writes what an earlier step wrote, so every step
    /// can read the input bytes and edit them in place ([`Enrich::edit`]).
    independent: bool,
    /// The paths the host locates for [`Enrich::edit_located`], and per
    /// step the indices of what it reads, writes and writes into.
    fields: Vec<FieldPath>,
    steps: Vec<Step>,
}

/// One step's located fields: indices into `Enrich::fields`.
#[derive(Debug, Clone, PartialEq)]
struct Step {
    from: Option<usize>,
    to: usize,
    /// The object holding `to` (`attributes`), or `None` for a top-level
    /// field (the value itself).
    parent: Option<usize>,
}

/// Whether one path is the other or lies inside it.
fn overlap(a: &FieldPath, b: &FieldPath) -> bool {
    let (a, b) = (a.segments(), b.segments());
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// Validates an output path: `attributes.KEY` or a top-level string field.
fn output_path(path: &str) -> Result<FieldPath, String> {
    let parsed = FieldPath::parse(path).map_err(|err| err.message().to_string())?;
    match parsed.segments() {
        [first, _] if first == "attributes" => Ok(parsed),
        [field] if STRING_FIELDS.contains(&field.as_str()) => Ok(parsed),
        _ => Err(format!(
            "can only write `attributes.KEY` or one of the string fields {}",
            STRING_FIELDS.join(", ")
        )),
    }
}

impl Enrich {
    /// Builds the plugin from its JSON config.
    pub fn from_config(config: &Value) -> Result<Enrich, String> {
        let fail = |message: String| format!("invalid enrich config: {message}");
        let raw = RawConfig::deserialize(config).map_err(|err| fail(err.to_string()))?;
        let mut lookups = Vec::with_capacity(raw.lookups.len());
        for (index, item) in raw.lookups.iter().enumerate() {
            let context = match item.get("to").and_then(Value::as_str) {
                Some(to) => format!("lookups[{index}] (to \"{to}\")"),
                None => format!("lookups[{index}]"),
            };
            let lookup =
                RawLookup::deserialize(item).map_err(|err| fail(format!("{context}: {err}")))?;
            let from = FieldPath::parse(&lookup.from)
                .map_err(|err| fail(format!("{context}: `from`: {}", err.message())))?;
            let to =
                output_path(&lookup.to).map_err(|err| fail(format!("{context}: `to`: {err}")))?;
            lookups.push(Lookup {
                from,
                to,
                table: lookup.table,
                default: lookup.default,
            });
        }
        let ingest_time_to = raw
            .ingest_time_to
            .map(|path| {
                output_path(&path).map_err(|err| fail(format!("ingest_time_to \"{path}\": {err}")))
            })
            .transpose()?;
        let user_agent = match (raw.user_agent_from, raw.user_agent_to) {
            (None, None) => None,
            (Some(from), Some(to)) => Some((
                FieldPath::parse(&from).map_err(|err| {
                    fail(format!("user_agent_from \"{from}\": {}", err.message()))
                })?,
                output_path(&to).map_err(|err| fail(format!("user_agent_to \"{to}\": {err}")))?,
            )),
            _ => {
                return Err(fail(
                    "set both `user_agent_from` and `user_agent_to`, or neither".to_string(),
                ));
            }
        };
        if lookups.is_empty() && ingest_time_to.is_none() && user_agent.is_none() {
            return Err(fail(
                "nothing to do: set `lookups`, `ingest_time_to` and/or `user_agent_from` + `user_agent_to`"
                    .to_string(),
            ));
        }
        let mut enrich = Enrich {
            lookups,
            ingest_time_to,
            user_agent,
            independent: false,
            fields: Vec::new(),
            steps: Vec::new(),
        };
        enrich.independent = enrich.steps_are_independent();
        enrich.locate_steps();
        Ok(enrich)
    }

    /// Fill `fields` and `steps`: what each step reads and writes, in step
    /// order (ingest time, user agent, lookups).
    fn locate_steps(&mut self) {
        let mut fields: Vec<FieldPath> = Vec::new();
        let mut index = |path: &FieldPath| match fields.iter().position(|f| f == path) {
            Some(i) => i,
            None => {
                fields.push(path.clone());
                fields.len() - 1
            }
        };
        let mut steps = Vec::new();
        let mut step = |from: Option<&FieldPath>,
                        to: &FieldPath,
                        index: &mut dyn FnMut(&FieldPath) -> usize| {
            let parent = match to.segments() {
                [first, _] => FieldPath::parse(first).ok().map(|p| index(&p)),
                _ => None,
            };
            steps.push(Step {
                from: from.map(&mut *index),
                to: index(to),
                parent,
            });
        };
        if let Some(to) = &self.ingest_time_to {
            step(None, to, &mut index);
        }
        if let Some((from, to)) = &self.user_agent {
            step(Some(from), to, &mut index);
        }
        for lookup in &self.lookups {
            step(Some(&lookup.from), &lookup.to, &mut index);
        }
        self.fields = fields;
        self.steps = steps;
    }

    /// [`Enrich::edit`] from the fields the host located
    /// ([`Transform::fields`]); the same contract.
    fn edit_located(&self, event: &Event<'_>) -> Result<Option<Vec<u8>>, Option<String>> {
        let invalid =
            |e: json::ScanError| Some(format!("enrich: event value is not valid JSON: {e}"));
        let value = event.value;
        let mut edits = Edits::new(value);
        let root_start = value
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(0);
        let root_end = value
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        let root = json::Found {
            raw: &value[root_start..root_end],
            span: root_start..root_end,
        };
        let write = |edits: &mut Edits<'_>, step: &Step, path: &FieldPath, text: &str| {
            let existing = event.field(step.to).map_err(invalid)?;
            if existing.as_ref().and_then(|f| f.as_str()).as_deref() == Some(text) {
                return Ok(());
            }
            let result = match existing {
                Some(found) => edits.replace(&found, json::string(text)),
                None => {
                    let parent = match step.parent {
                        Some(i) => event.field(i).map_err(invalid)?,
                        None => Some(root.clone()),
                    };
                    let key = path
                        .segments()
                        .last()
                        .map(String::as_str)
                        .unwrap_or_default();
                    match parent {
                        Some(object) => edits.insert(&object, key, json::string(text)),
                        // A missing `attributes` is created by the tree path.
                        None => return Err(None),
                    }
                }
            };
            match result {
                Ok(()) => Ok(()),
                Err(EditError::Scan(e)) => Err(invalid(e)),
                Err(_) => Err(None),
            }
        };
        let mut steps = self.steps.iter();
        if let (Some(to), Some(timestamp)) = (&self.ingest_time_to, event.timestamp_ms) {
            let step = steps.next().ok_or(None)?;
            write(&mut edits, step, to, &timestamp.to_string())?;
        } else if self.ingest_time_to.is_some() {
            steps.next();
        }
        if let Some((_, to)) = &self.user_agent {
            let step = steps.next().ok_or(None)?;
            if let Some(agent) = step
                .from
                .map(|i| event.field(i))
                .transpose()
                .map_err(invalid)?
                .flatten()
                && let Some(agent) = agent.as_str()
            {
                write(&mut edits, step, to, ua_family(&agent))?;
            }
        }
        for lookup in &self.lookups {
            let step = steps.next().ok_or(None)?;
            let found = step
                .from
                .map(|i| event.field(i))
                .transpose()
                .map_err(invalid)?
                .flatten();
            let result = lookup.resolve_found(found.as_ref());
            if let Some(result) = result {
                write(&mut edits, step, &lookup.to, result)?;
            }
        }
        Ok(edits.finish())
    }

    /// True when no step reads or writes a path an earlier step writes.
    fn steps_are_independent(&self) -> bool {
        let mut steps: Vec<(Option<&FieldPath>, &FieldPath)> = Vec::new();
        if let Some(to) = &self.ingest_time_to {
            steps.push((None, to));
        }
        if let Some((from, to)) = &self.user_agent {
            steps.push((Some(from), to));
        }
        steps.extend(self.lookups.iter().map(|l| (Some(&l.from), &l.to)));
        steps.iter().enumerate().all(|(i, (reads, writes))| {
            steps[..i].iter().all(|(_, earlier)| {
                !overlap(earlier, writes) && !reads.is_some_and(|r| overlap(earlier, r))
            })
        })
    }

    /// The enriched value, edited on the raw bytes: `Ok(None)` when nothing
    /// changes, `Err(None)` when only the tree path ([`Enrich::enrich`]) can
    /// say what happens (a value on the way is not an object), `Err(Some)`
    /// when the value is not valid JSON.
    fn edit(
        &self,
        value: &[u8],
        timestamp_ms: Option<i64>,
    ) -> Result<Option<Vec<u8>>, Option<String>> {
        let invalid =
            |e: json::ScanError| Some(format!("enrich: event value is not valid JSON: {e}"));
        let mut edits = Edits::new(value);
        let write = |edits: &mut Edits<'_>, path: &FieldPath, text: &str| {
            let existing = json::find(value, path).map_err(invalid)?;
            if existing.as_ref().and_then(|f| f.as_str()).as_deref() == Some(text) {
                return Ok(());
            }
            match edits.set(path, json::string(text)) {
                Ok(()) => Ok(()),
                Err(EditError::Scan(e)) => Err(invalid(e)),
                // Not writable, or two steps creating one missing object:
                // the tree path says what happens.
                Err(_) => Err(None),
            }
        };
        if let (Some(to), Some(timestamp)) = (&self.ingest_time_to, timestamp_ms) {
            write(&mut edits, to, &timestamp.to_string())?;
        }
        if let Some((from, to)) = &self.user_agent
            && let Some(agent) = json::find(value, from).map_err(invalid)?
            && let Some(agent) = agent.as_str()
        {
            write(&mut edits, to, ua_family(&agent))?;
        }
        for lookup in &self.lookups {
            let found = json::find(value, &lookup.from).map_err(invalid)?;
            let result = lookup.resolve_found(found.as_ref());
            if let Some(result) = result {
                write(&mut edits, &lookup.to, result)?;
            }
        }
        Ok(edits.finish())
    }

    /// Applies every step to `value`; `timestamp_ms` is the Kafka record
    /// timestamp. Returns whether anything changed.
    pub fn enrich(&self, value: &mut Value, timestamp_ms: Option<i64>) -> Result<bool, String> {
        let mut changed = false;
        if let (Some(to), Some(timestamp)) = (&self.ingest_time_to, timestamp_ms) {
            changed |= write(value, to, timestamp.to_string())?;
        }
        if let Some((from, to)) = &self.user_agent
            && let Some(Value::String(agent)) = from.get(value)
        {
            let family = ua_family(agent);
            changed |= write(value, to, family.to_string())?;
        }
        for lookup in &self.lookups {
            if let Some(result) = lookup.resolve(lookup.from.get(value)) {
                let result = result.to_string();
                changed |= write(value, &lookup.to, result)?;
            }
        }
        Ok(changed)
    }
}

/// Writes a string; returns whether the value changed.
fn write(value: &mut Value, path: &FieldPath, text: String) -> Result<bool, String> {
    if path.get(value).and_then(Value::as_str) == Some(text.as_str()) {
        return Ok(false);
    }
    path.set(value, Value::String(text))
        .map_err(|err| format!("enrich: cannot write {err}"))?;
    Ok(true)
}

impl Transform for Enrich {
    fn init(config: Config) -> Result<Self, String> {
        Enrich::from_config(config.value())
    }

    fn fields(&self) -> Vec<FieldPath> {
        self.fields.clone()
    }

    fn process(&mut self, event: &Event<'_>) -> Outcome {
        // Fast path: edit the bytes in place, from the fields the host
        // located, when every step reads the input (the common case); the
        // tree below gives the same result.
        if self.independent && event.value.first() == Some(&b'{') {
            let edited = if event.located.is_empty() {
                // Nobody located the fields (a native caller): scan.
                self.edit(event.value, event.timestamp_ms)
            } else {
                self.edit_located(event)
            };
            match edited {
                Ok(Some(value)) => return Outcome::modify(event.with_value(value)),
                Ok(None) => return Outcome::keep(),
                Err(Some(reason)) => return Outcome::fail(reason),
                Err(None) => {}
            }
        }
        let mut value = match event.value_json() {
            Ok(value) => value,
            Err(err) => {
                return Outcome::fail(format!("enrich: event value is not valid JSON: {err}"));
            }
        };
        match self.enrich(&mut value, event.timestamp_ms) {
            Ok(true) => Outcome::modify(event.with_value_json(&value)),
            Ok(false) => Outcome::keep(),
            Err(reason) => Outcome::fail(reason),
        }
    }
}

sluice_sdk::export_transform!(Enrich);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const EVENT: &str = r#"{"event_id":"e-1","type":"page_view","source":"web","entity_id":"user-7","occurred_at":1764400000000,"severity":"INFO","attributes":{"email":"a@b.com","ip":"10.1.2.3","user_agent":"Mozilla/5.0 (X11; Linux x86_64; rv:118.0) Gecko/20100101 Firefox/118.0","region":"eu"},"trace_id":null}"#;

    fn enrich(config: Value) -> Enrich {
        Enrich::from_config(&config).unwrap()
    }

    fn apply(config: Value, event: &str, timestamp: Option<i64>) -> Option<Value> {
        let plugin = enrich(config);
        let mut value: Value = serde_json::from_str(event).unwrap();
        plugin
            .enrich(&mut value, timestamp)
            .unwrap()
            .then_some(value)
    }

    fn team_lookup() -> Value {
        json!({"lookups": [{
            "from": "source",
            "to": "attributes.team",
            "table": {"checkout": "payments", "web": "growth"},
            "default": "unknown"
        }]})
    }

    #[test]
    fn ua_family_order() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:118.0) Gecko/20100101 Firefox/118.0",
                "Firefox",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
                "Edge",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                "Chrome",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
                "Safari",
            ),
            ("curl/8.5.0", "curl"),
            (
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                "bot",
            ),
            ("Mozilla/5.0 Chrome/120.0 (compatible; bingBOT/2.0)", "bot"),
            ("SomeCrawler/1.0 curl/8.0", "bot"),
            ("Spider-Man Firefox/1", "bot"),
            ("Wget/1.21", "other"),
            ("", "other"),
            ("firefox/118.0", "other"),
            ("CURL/8.0", "other"),
        ];
        for (agent, family) in cases {
            assert_eq!(ua_family(agent), family, "{agent}");
        }
    }

    #[test]
    fn lookup_matches_and_defaults() {
        let out = apply(team_lookup(), EVENT, None).unwrap();
        assert_eq!(out["attributes"]["team"], "growth");
        let out = apply(
            team_lookup(),
            &EVENT.replace(r#""source":"web""#, r#""source":"checkout""#),
            None,
        )
        .unwrap();
        assert_eq!(out["attributes"]["team"], "payments");
        let out = apply(
            team_lookup(),
            &EVENT.replace(r#""source":"web""#, r#""source":"batch""#),
            None,
        )
        .unwrap();
        assert_eq!(out["attributes"]["team"], "unknown");
        let out = apply(team_lookup(), r#"{"attributes":{}}"#, None).unwrap();
        assert_eq!(out["attributes"]["team"], "unknown");
    }

    #[test]
    fn lookup_without_default_writes_nothing_on_miss() {
        let config = json!({"lookups": [{"from": "source", "to": "attributes.team", "table": {"checkout": "payments"}}]});
        assert_eq!(apply(config, EVENT, None), None);
    }

    #[test]
    fn lookup_keys_numbers_and_booleans_by_json_text() {
        let config = json!({"lookups": [{"from": "attributes.code", "to": "attributes.kind", "table": {"42": "answer", "true": "yes"}}]});
        let out = apply(config.clone(), r#"{"attributes":{"code":42}}"#, None).unwrap();
        assert_eq!(out["attributes"]["kind"], "answer");
        let out = apply(config.clone(), r#"{"attributes":{"code":true}}"#, None).unwrap();
        assert_eq!(out["attributes"]["kind"], "yes");
        assert_eq!(apply(config, r#"{"attributes":{"code":null}}"#, None), None);
    }

    #[test]
    fn lookups_chain_in_order() {
        let config = json!({
            "user_agent_from": "attributes.user_agent",
            "user_agent_to": "attributes.ua_family",
            "lookups": [
                {"from": "attributes.ua_family", "to": "attributes.browser", "table": {"Firefox": "yes", "bot": "no"}},
                {"from": "attributes.browser", "to": "attributes.human", "table": {"yes": "true"}, "default": "false"},
            ]
        });
        let out = apply(config, EVENT, None).unwrap();
        assert_eq!(out["attributes"]["ua_family"], "Firefox");
        assert_eq!(out["attributes"]["browser"], "yes");
        assert_eq!(out["attributes"]["human"], "true");
    }

    #[test]
    fn ingest_time_is_the_record_timestamp_as_decimal() {
        let config = json!({"ingest_time_to": "attributes.ingested_at"});
        let out = apply(config.clone(), EVENT, Some(1_764_400_000_123)).unwrap();
        assert_eq!(out["attributes"]["ingested_at"], "1764400000123");
        let out = apply(config.clone(), EVENT, Some(-5)).unwrap();
        assert_eq!(out["attributes"]["ingested_at"], "-5");
        assert_eq!(apply(config, EVENT, None), None);
    }

    #[test]
    fn user_agent_absent_writes_nothing() {
        let config = json!({"user_agent_from": "attributes.user_agent", "user_agent_to": "attributes.ua_family"});
        assert_eq!(apply(config.clone(), r#"{"attributes":{}}"#, None), None);
        assert_eq!(
            apply(config, r#"{"attributes":{"user_agent":7}}"#, None),
            None
        );
    }

    #[test]
    fn unchanged_values_keep_the_event() {
        let config = json!({"lookups": [{"from": "source", "to": "attributes.region", "table": {"web": "eu"}}]});
        assert_eq!(apply(config, EVENT, None), None);
    }

    #[test]
    fn top_level_string_fields_can_be_rewritten() {
        let config =
            json!({"lookups": [{"from": "source", "to": "type", "table": {"web": "web_view"}}]});
        let out = apply(config, EVENT, None).unwrap();
        assert_eq!(out["type"], "web_view");
    }

    #[test]
    fn outcomes_through_the_sdk() {
        let config = r#"{"ingest_time_to":"attributes.ingested_at","user_agent_from":"attributes.user_agent","user_agent_to":"attributes.ua_family","lookups":[{"from":"source","to":"attributes.team","table":{"web":"growth"}}]}"#;
        let mut event = Event::new(EVENT);
        event.timestamp_ms = Some(1_764_400_000_999);
        event.key = Some(b"user-7");
        let bad_attributes = Event::new(r#"{"source":"web","attributes":"oops"}"#);
        let outcomes = sluice_sdk::testing::run::<Enrich>(
            config,
            vec![
                event,
                Event::new(r#"{"source":"batch","attributes":{}}"#),
                bad_attributes,
                Event::new("x"),
            ],
        )
        .unwrap();
        let modified = outcomes[0].modified().unwrap();
        assert!(
            modified.edits.is_empty(),
            "key and timestamp stay the host's"
        );
        let value: Value = serde_json::from_slice(modified.value.as_deref().unwrap()).unwrap();
        assert_eq!(value["attributes"]["ingested_at"], "1764400000999");
        assert_eq!(value["attributes"]["ua_family"], "Firefox");
        assert_eq!(value["attributes"]["team"], "growth");
        assert_eq!(value["attributes"]["email"], "a@b.com");
        assert_eq!(outcomes[1], Outcome::keep());
        assert_eq!(
            outcomes[2].failure(),
            Some(
                "enrich: cannot write path `attributes.team`: `attributes` is a string, not an object"
            )
        );
        assert!(
            outcomes[3]
                .failure()
                .unwrap()
                .starts_with("enrich: event value is not valid JSON")
        );
    }

    #[test]
    fn config_errors() {
        let err = |config: Value| Enrich::from_config(&config).unwrap_err();
        assert!(err(json!({})).starts_with("invalid enrich config: nothing to do"));
        assert_eq!(
            err(json!({"user_agent_from": "attributes.user_agent"})),
            "invalid enrich config: set both `user_agent_from` and `user_agent_to`, or neither"
        );
        assert!(
            err(json!({"lookups": [{"from": "source", "to": "occurred_at", "table": {}}]}))
                .starts_with("invalid enrich config: lookups[0] (to \"occurred_at\"): `to`: can only write `attributes.KEY`")
        );
        assert!(
            err(json!({"lookups": [{"from": "source", "to": "attributes.a.b", "table": {}}]}))
                .starts_with("invalid enrich config: lookups[0] (to \"attributes.a.b\"): `to`: can only write")
        );
        assert!(
            err(json!({"lookups": [{"from": "source", "to": "attributes.t"}]}))
                .contains("lookups[0] (to \"attributes.t\"): missing field `table`")
        );
        assert!(
            err(json!({"lookups": [{"from": "", "to": "attributes.t", "table": {}}]}))
                .contains("lookups[0] (to \"attributes.t\"): `from`: path is empty")
        );
        assert!(
            err(json!({"lookups": [{"from": "source", "to": "attributes.t", "table": {"a": 1}}]}))
                .contains(
                    "lookups[0] (to \"attributes.t\"): invalid type: integer `1`, expected a string"
                )
        );
        assert!(
            err(json!({"ingest_time_to": "ingested_at"})).starts_with(
                "invalid enrich config: ingest_time_to \"ingested_at\": can only write"
            )
        );
        assert!(err(json!({"lookup": []})).contains("unknown field `lookup`"));
    }

    /// The in-place edit agrees with the tree path on every event shape the
    /// tests use, including escapes, missing objects and number keys.
    #[test]
    fn edits_on_bytes_equal_the_tree_path() {
        let configs = [
            json!({"lookups":[{"from":"source","to":"attributes.team","table":{"web":"growth","7":"seven","true":"yes"},"default":"unknown"}],"user_agent_from":"attributes.user_agent","user_agent_to":"attributes.ua_family","ingest_time_to":"attributes.ingested_at"}),
            json!({"lookups":[{"from":"attributes.code","to":"type","table":{"7":"seven"}}]}),
        ];
        let events = [
            EVENT,
            r#"{"source":"web"}"#,
            r#"{"source":7,"attributes":{"code":7}}"#,
            r#"{"source":true,"attributes":{"user_agent":"curl/8","team":"unknown"}}"#,
            r#"{"source":"w\u0065b","attributes":{"user_agent":"Edg/1 \"x\""}}"#,
            r#"{"attributes":{},"type":"seven"}"#,
            r#"{"attributes":"oops","source":"web"}"#,
            r#" { "source" : "web" , "attributes" : { } } "#,
        ];
        for config in &configs {
            let plugin = enrich(config.clone());
            assert!(plugin.independent);
            for event in events {
                let mut tree: Value = serde_json::from_str(event).unwrap();
                let expected = plugin.enrich(&mut tree, Some(5));
                let fast = plugin.edit(event.as_bytes(), Some(5));
                let mut view = Event::new(event);
                view.timestamp_ms = Some(5);
                let mut laid_out = sluice_sdk::wire::batch(&[view]);
                sluice_sdk::wire::locate_fields(&mut laid_out, &plugin.fields(), true);
                let views = sluice_sdk::wire::events(&laid_out).unwrap();
                let located = plugin.edit_located(&views[0]);
                match (&fast, &located) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b, "{config} {event}"),
                    (Err(Some(_)), Err(Some(_))) => {}
                    // The located path may give up where the scanning one
                    // could insert; both then leave it to the tree.
                    (_, Err(None)) => {}
                    (a, b) => panic!("{config} {event}: {a:?} vs {b:?}"),
                }
                match (expected, fast) {
                    (Ok(true), Ok(Some(bytes))) => {
                        let out: Value = serde_json::from_slice(&bytes).unwrap();
                        assert_eq!(out, tree, "{config} {event}");
                    }
                    (Ok(false), Ok(None)) => {}
                    (_, Err(None)) => {}
                    (expected, fast) => panic!("{config} {event}: {expected:?} vs {fast:?}"),
                }
            }
        }
    }

    #[test]
    fn dependent_steps_use_the_tree() {
        let plugin = enrich(json!({"lookups":[
            {"from":"source","to":"attributes.team","table":{"web":"growth"}},
            {"from":"attributes.team","to":"type","table":{"growth":"g"}}
        ]}));
        assert!(!plugin.independent);
        let outcomes = sluice_sdk::testing::run::<Enrich>(
            &json!({"lookups":[
                {"from":"source","to":"attributes.team","table":{"web":"growth"}},
                {"from":"attributes.team","to":"type","table":{"growth":"g"}}
            ]})
            .to_string(),
            vec![Event::new(r#"{"source":"web","attributes":{}}"#)],
        )
        .unwrap();
        let value: Value =
            serde_json::from_slice(outcomes[0].modified().unwrap().value.as_deref().unwrap())
                .unwrap();
        assert_eq!(value["type"], "g");
    }
}
