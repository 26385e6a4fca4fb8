//! `redact`: masks or hashes sensitive string fields.
//!
//! Config (the stage's `[stage.config.redact]` table, as JSON):
//!
//! ```toml
//! fields = ["attributes.email", "entity_id"]   # dotted paths
//! mode = "hash"                                 # "mask" (default) or "hash"
//! salt = "per-deployment secret"                # required for mode = "hash"
//! detect = ["email", "ipv4"]                    # optional
//! ```
//!
//! Exact formulas (other tests recompute them independently):
//!
//! * mask: the string becomes `***`.
//! * hash: the string becomes `"sha256:"` followed by the first 16 lowercase
//!   hex characters of `SHA-256(salt_bytes ++ value_bytes)` (UTF-8 bytes,
//!   no separator), i.e. `"sha256:" + sha256(salt + value).hexdigest()[:16]`.
//!
//! Only string values are redacted; absent fields and non-string values are
//! left alone. `detect` also redacts every string value directly inside
//! `attributes` whose *whole* value is an e-mail address or an IPv4 address
//! (see [`is_email`] and [`is_ipv4`]). An event in which nothing changes is
//! kept as is (no re-serialization).

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sluice_sdk::json::{self, Edits};
use sluice_sdk::{Config, Event, FieldPath, Outcome, Transform};

/// How values are redacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Replace with `***`.
    #[default]
    Mask,
    /// Replace with a salted, truncated SHA-256 (see [`hash`]).
    Hash,
}

/// Patterns `detect` can find in attribute values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// The whole value is an e-mail address ([`is_email`]).
    Email,
    /// The whole value is a dotted-quad IPv4 address ([`is_ipv4`]).
    Ipv4,
}

impl Detector {
    /// Whether `value` matches this pattern.
    pub fn matches(self, value: &str) -> bool {
        match self {
            Detector::Email => is_email(value),
            Detector::Ipv4 => is_ipv4(value),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    fields: Vec<FieldPath>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    salt: Option<String>,
    #[serde(default)]
    detect: Vec<Detector>,
}

/// The `attributes` object that `detect` scans.
static ATTRIBUTES: std::sync::LazyLock<FieldPath> =
    std::sync::LazyLock::new(|| FieldPath::parse("attributes").expect("a valid path"));

/// The replacement used by `mode = "mask"`.
pub const MASK: &str = "***";

/// `mode = "hash"`: `"sha256:"` + the first 16 lowercase hex characters of
/// SHA-256 over the salt's bytes followed by the value's bytes.
///
/// ```
/// assert_eq!(sluice_redact::hash("pepper", "a@b.com"), "sha256:6354b81cb84adb2e");
/// ```
pub fn hash(salt: &str, value: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update(value.as_bytes());
    let digest = hasher.finalize();
    let mut out = String::with_capacity(7 + 16);
    out.push_str("sha256:");
    for byte in &digest[..8] {
        out.push(char::from_digit(u32::from(byte >> 4), 16).unwrap());
        out.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap());
    }
    out
}

/// Whether the whole of `value` is an e-mail address, i.e. matches
/// `^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$`:
/// a non-empty local part of those characters, one `@`, and a domain of at
/// least two non-empty dot-separated labels of letters, digits and `-`.
pub fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._%+-!#$&'*/=?^`{|}~".contains(&b));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    local_ok && domain_ok
}

/// Whether the whole of `value` is a dotted-quad IPv4 address: four groups of
/// 1 to 3 ASCII digits separated by `.`, each at most 255 (`10.1.2.3`,
/// `010.1.2.3`; not `1.2.3`, `256.1.1.1` or ` 1.2.3.4`).
pub fn is_ipv4(value: &str) -> bool {
    let mut groups = 0;
    for group in value.split('.') {
        groups += 1;
        if groups > 4
            || group.is_empty()
            || group.len() > 3
            || !group.bytes().all(|b| b.is_ascii_digit())
        {
            return false;
        }
        if group.parse::<u16>().map_or(true, |n| n > 255) {
            return false;
        }
    }
    groups == 4
}

/// The redact plugin.
#[derive(Debug, Clone)]
pub struct Redact {
    fields: Vec<FieldPath>,
    mode: Mode,
    salt: String,
    detect: Vec<Detector>,
}

impl Redact {
    /// Builds the plugin from its JSON config.
    pub fn from_config(config: &Value) -> Result<Redact, String> {
        let raw = RawConfig::deserialize(config)
            .map_err(|err| format!("invalid redact config: {err}"))?;
        if raw.fields.is_empty() && raw.detect.is_empty() {
            return Err(
                "invalid redact config: nothing to redact: set `fields` and/or `detect`"
                    .to_string(),
            );
        }
        let salt = match (raw.mode, raw.salt) {
            (Mode::Hash, None) => {
                return Err(
                    "invalid redact config: `salt` is required when mode = \"hash\"".to_string(),
                );
            }
            (Mode::Hash, Some(salt)) if salt.is_empty() => {
                return Err("invalid redact config: `salt` must not be empty".to_string());
            }
            (_, salt) => salt.unwrap_or_default(),
        };
        Ok(Redact {
            fields: raw.fields,
            mode: raw.mode,
            salt,
            detect: raw.detect,
        })
    }

    /// The replacement for one string value.
    pub fn replacement(&self, value: &str) -> String {
        match self.mode {
            Mode::Mask => MASK.to_string(),
            Mode::Hash => hash(&self.salt, value),
        }
    }

    /// Redacts `value` in place; returns whether anything changed.
    pub fn redact(&self, value: &mut Value) -> bool {
        let mut changed = false;
        for path in &self.fields {
            if let Some(Value::String(text)) = path.get_mut(value) {
                changed |= self.replace(text);
            }
        }
        if !self.detect.is_empty()
            && let Some(Value::Object(attributes)) = value.get_mut("attributes")
        {
            for item in attributes.values_mut() {
                if let Value::String(text) = item
                    && self.detect.iter().any(|detector| detector.matches(text))
                {
                    changed |= self.replace(text);
                }
            }
        }
        changed
    }

    fn replace(&self, text: &mut String) -> bool {
        let new = self.replacement(text);
        if *text == new {
            return false;
        }
        *text = new;
        true
    }
}

impl Transform for Redact {
    fn init(config: Config) -> Result<Self, String> {
        Redact::from_config(config.value())
    }

    fn fields(&self) -> Vec<FieldPath> {
        let mut fields = self.fields.clone();
        if !self.detect.is_empty() {
            fields.push(ATTRIBUTES.clone());
        }
        fields
    }

    fn process(&mut self, event: &Event<'_>) -> Outcome {
        // Fast path for objects (every telemetry event): replace the strings
        // the host located, in place on the raw bytes; the tree below gives
        // the same result.
        if event.value.first() == Some(&b'{') {
            let edited = if event.located.is_empty() {
                // Nobody located the fields (a native caller): scan.
                self.edit(event.value)
            } else {
                self.edit_located(event)
            };
            return match edited {
                Ok(Some(value)) => Outcome::modify(event.with_value(value)),
                Ok(None) => Outcome::keep(),
                Err(err) => Outcome::fail(format!("redact: event value is not valid JSON: {err}")),
            };
        }
        let mut value = match event.value_json() {
            Ok(value) => value,
            Err(err) => {
                return Outcome::fail(format!("redact: event value is not valid JSON: {err}"));
            }
        };
        if self.redact(&mut value) {
            Outcome::modify(event.with_value_json(&value))
        } else {
            Outcome::keep()
        }
    }
}

impl Redact {
    /// [`Redact::edit`] from the fields the host located
    /// ([`Transform::fields`]): the `fields` paths, then `attributes`.
    pub fn edit_located(&self, event: &Event<'_>) -> Result<Option<Vec<u8>>, json::ScanError> {
        let fields = (0..self.fields.len())
            .map(|index| event.field(index))
            .collect::<Result<Vec<_>, _>>()?;
        let attributes = if self.detect.is_empty() {
            None
        } else {
            event.field(self.fields.len())?
        };
        self.edit_found(event.value, &fields, attributes)
    }

    /// [`Redact::redact`] on the raw bytes: the redacted value, or `None`
    /// when nothing changes.
    pub fn edit(&self, value: &[u8]) -> Result<Option<Vec<u8>>, json::ScanError> {
        let fields = self
            .fields
            .iter()
            .map(|path| json::find(value, path))
            .collect::<Result<Vec<_>, _>>()?;
        let attributes = if self.detect.is_empty() {
            None
        } else {
            json::find(value, &ATTRIBUTES)?
        };
        self.edit_found(value, &fields, attributes)
    }

    /// The redaction of `value` given where its `fields` and its
    /// `attributes` object are.
    fn edit_found(
        &self,
        value: &[u8],
        fields: &[Option<json::Found<'_>>],
        attributes: Option<json::Found<'_>>,
    ) -> Result<Option<Vec<u8>>, json::ScanError> {
        let mut edits = Edits::new(value);
        let mut done: Vec<usize> = Vec::new();
        let mut redact = |edits: &mut Edits<'_>, found: &json::Found<'_>, text: &str| {
            // A field named in `fields` and also found by `detect` is
            // replaced once, as the tree path does (a hash is no e-mail).
            if done.contains(&found.span.start) {
                return;
            }
            let new = self.replacement(text);
            if new != text && edits.replace(found, json::string(&new)).is_ok() {
                done.push(found.span.start);
            }
        };
        for found in fields.iter().flatten() {
            if let Some(text) = found.as_str() {
                redact(&mut edits, found, &text);
            }
        }
        if let Some(attributes) = attributes
            && let Some(members) = json::members(attributes.raw, None)?
        {
            let base = attributes.span.start;
            for (_, inner) in &members {
                let found = json::Found {
                    raw: inner.raw,
                    span: base + inner.span.start..base + inner.span.end,
                };
                if let Some(text) = found.as_str()
                    && self.detect.iter().any(|detector| detector.matches(&text))
                {
                    redact(&mut edits, &found, &text);
                }
            }
        }
        Ok(edits.finish())
    }
}

sluice_sdk::export_transform!(Redact);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const EVENT: &str = r#"{"event_id":"e-1","type":"page_view","source":"web","entity_id":"user-7","occurred_at":1764400000000,"severity":"INFO","attributes":{"email":"a@b.com","ip":"10.1.2.3","user_agent":"Mozilla/5.0 (X11; Linux x86_64; rv:118.0) Gecko/20100101 Firefox/118.0","region":"eu"},"trace_id":null}"#;

    fn redact(config: Value) -> Redact {
        Redact::from_config(&config).unwrap()
    }

    fn apply(config: Value, event: &str) -> Option<Value> {
        let plugin = redact(config);
        let mut value: Value = serde_json::from_str(event).unwrap();
        plugin.redact(&mut value).then_some(value)
    }

    #[test]
    fn hash_formula_matches_independent_values() {
        // Computed with Python: "sha256:" + hashlib.sha256((salt + value).encode()).hexdigest()[:16]
        assert_eq!(hash("pepper", "a@b.com"), "sha256:6354b81cb84adb2e");
        assert_eq!(hash("pepper", "10.1.2.3"), "sha256:127ef7719aeda568");
        assert_eq!(hash("s3cret", "user-7"), "sha256:59c7b0b7147450fe");
        assert_eq!(hash("pepper", ""), "sha256:8cbbcf29d9cef896");
    }

    #[test]
    fn masks_listed_fields() {
        let out = apply(
            json!({"fields": ["attributes.email", "entity_id"], "mode": "mask"}),
            EVENT,
        )
        .unwrap();
        assert_eq!(out["attributes"]["email"], "***");
        assert_eq!(out["entity_id"], "***");
        assert_eq!(out["attributes"]["ip"], "10.1.2.3");
        assert_eq!(out["source"], "web");
    }

    #[test]
    fn mode_defaults_to_mask() {
        let out = apply(json!({"fields": ["attributes.email"]}), EVENT).unwrap();
        assert_eq!(out["attributes"]["email"], "***");
    }

    #[test]
    fn hashes_listed_fields() {
        let out = apply(
            json!({"fields": ["attributes.email", "entity_id"], "mode": "hash", "salt": "pepper"}),
            EVENT,
        )
        .unwrap();
        assert_eq!(out["attributes"]["email"], "sha256:6354b81cb84adb2e");
        assert_eq!(out["entity_id"], hash("pepper", "user-7"));
    }

    #[test]
    fn detect_redacts_matching_attribute_values_only() {
        let out = apply(
            json!({"detect": ["email", "ipv4"], "mode": "hash", "salt": "pepper"}),
            EVENT,
        )
        .unwrap();
        assert_eq!(out["attributes"]["email"], "sha256:6354b81cb84adb2e");
        assert_eq!(out["attributes"]["ip"], "sha256:127ef7719aeda568");
        // The user agent contains "118.0" but is not an address as a whole.
        assert!(
            out["attributes"]["user_agent"]
                .as_str()
                .unwrap()
                .starts_with("Mozilla/5.0")
        );
        assert_eq!(out["attributes"]["region"], "eu");
        assert_eq!(out["event_id"], "e-1");

        let out = apply(json!({"detect": ["ipv4"]}), EVENT).unwrap();
        assert_eq!(out["attributes"]["ip"], "***");
        assert_eq!(out["attributes"]["email"], "a@b.com");
    }

    #[test]
    fn absent_and_non_string_fields_are_left_alone() {
        let config =
            json!({"fields": ["attributes.phone", "trace_id", "occurred_at", "attributes"]});
        assert_eq!(apply(config, EVENT), None);
    }

    #[test]
    fn already_masked_values_do_not_count_as_changes() {
        let masked = EVENT.replace("a@b.com", "***");
        assert_eq!(
            apply(json!({"fields": ["attributes.email"]}), &masked),
            None
        );
    }

    #[test]
    fn outcomes_through_the_sdk() {
        let config = r#"{"fields":["attributes.email"],"mode":"hash","salt":"pepper"}"#;
        let mut event = Event::new(EVENT);
        event.key = Some(b"user-7");
        let no_email = Event::new(r#"{"event_id":"e-2","attributes":{}}"#);
        let outcomes =
            sluice_sdk::testing::run::<Redact>(config, vec![event, no_email, Event::new("{")])
                .unwrap();
        let modified = outcomes[0].modified().unwrap();
        assert!(modified.edits.is_empty(), "the key stays the host's");
        let value: Value = serde_json::from_slice(modified.value.as_deref().unwrap()).unwrap();
        assert_eq!(value["attributes"]["email"], "sha256:6354b81cb84adb2e");
        assert_eq!(outcomes[1], Outcome::keep());
        assert!(
            outcomes[2]
                .failure()
                .unwrap()
                .starts_with("redact: event value is not valid JSON")
        );
    }

    #[test]
    fn config_errors() {
        let err = |config: Value| Redact::from_config(&config).unwrap_err();
        assert_eq!(
            err(json!({"fields": ["a"], "mode": "hash"})),
            "invalid redact config: `salt` is required when mode = \"hash\""
        );
        assert_eq!(
            err(json!({"fields": ["a"], "mode": "hash", "salt": ""})),
            "invalid redact config: `salt` must not be empty"
        );
        assert_eq!(
            err(json!({})),
            "invalid redact config: nothing to redact: set `fields` and/or `detect`"
        );
        assert!(
            err(json!({"fields": ["a"], "mode": "scramble"}))
                .contains("unknown variant `scramble`")
        );
        assert!(err(json!({"detect": ["phone"]})).contains("unknown variant `phone`"));
        assert!(err(json!({"fields": ["a..b"]})).contains("path has an empty segment"));
        assert!(err(json!({"fields": ["a"], "salts": "x"})).contains("unknown field `salts`"));
    }

    #[test]
    fn email_detection() {
        for ok in [
            "a@b.com",
            "first.last+tag@mail.example.co.uk",
            "x_y-z@host-1.io",
        ] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in [
            "",
            "a@b",
            "@b.com",
            "a@.com",
            "a@b..com",
            "a b@c.com",
            "a@b.com ",
            "a@@b.com",
            "mail me: a@b.com",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn ipv4_detection() {
        for ok in ["10.1.2.3", "0.0.0.0", "255.255.255.255", "010.001.2.3"] {
            assert!(is_ipv4(ok), "{ok}");
        }
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "1.2.3.",
            "a.b.c.d",
            " 1.2.3.4",
            "1.2.3.4/24",
            "1234.1.1.1",
            "+1.2.3.4",
        ] {
            assert!(!is_ipv4(bad), "{bad}");
        }
    }

    /// The in-place edit agrees with the tree path.
    #[test]
    fn edits_on_bytes_equal_the_tree_path() {
        let configs = [
            json!({"fields":["attributes.email","entity_id","attributes.ip"],"mode":"hash","salt":"pepper","detect":["email","ipv4"]}),
            json!({"fields":["attributes.email"],"detect":["ipv4"]}),
            json!({"detect":["email"]}),
        ];
        let events = [
            EVENT,
            r#"{"entity_id":"user-7","attributes":{"email":"a@b.com","ip":"10.1.2.3","other":"x@y.org","n":5}}"#,
            r#"{"attributes":{"email":"***"}}"#,
            r#"{"attributes":{"email":"a\u0040b.com","ip":"256.1.1.1"}}"#,
            r#"{"attributes":"oops","entity_id":7}"#,
            r#"{"x":1}"#,
        ];
        for config in &configs {
            let plugin = Redact::from_config(config).unwrap();
            for event in events {
                let mut tree: Value = serde_json::from_str(event).unwrap();
                let changed = plugin.redact(&mut tree);
                let mut laid_out = sluice_sdk::wire::batch(&[Event::new(event)]);
                sluice_sdk::wire::locate_fields(&mut laid_out, &plugin.fields(), true);
                let views = sluice_sdk::wire::events(&laid_out).unwrap();
                assert_eq!(
                    plugin.edit_located(&views[0]).unwrap(),
                    plugin.edit(event.as_bytes()).unwrap(),
                    "{config} {event}"
                );
                match plugin.edit(event.as_bytes()).unwrap() {
                    Some(bytes) => {
                        assert!(changed, "{config} {event}");
                        let out: Value = serde_json::from_slice(&bytes).unwrap();
                        assert_eq!(out, tree, "{config} {event}");
                    }
                    None => assert!(!changed, "{config} {event}"),
                }
            }
        }
    }
}
