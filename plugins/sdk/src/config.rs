//! Plugin configuration.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// A plugin's configuration: the stage's `[stage.config.NAME]` TOML table,
/// rendered by the host as JSON (`{}` when the table is absent).
///
/// ```
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Settings {
///     field: String,
///     #[serde(default)]
///     limit: Option<u32>,
/// }
///
/// let config = sluice_sdk::Config::from_json_str(r#"{"field":"source"}"#).unwrap();
/// let settings: Settings = config.parse().unwrap();
/// assert_eq!(settings.field, "source");
/// assert_eq!(settings.limit, None);
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    value: Value,
}

impl Config {
    /// Wraps an already parsed JSON value.
    pub fn from_value(value: Value) -> Self {
        Config { value }
    }

    /// Parses the JSON text the host passes to `init`.
    ///
    /// An empty (or all-whitespace) string is treated as `{}`.
    pub fn from_json_str(json: &str) -> Result<Self, String> {
        if json.trim().is_empty() {
            return Ok(Config::from_value(Value::Object(Default::default())));
        }
        serde_json::from_str(json)
            .map(Config::from_value)
            .map_err(|err| format!("config is not valid JSON: {err}"))
    }

    /// The configuration as a JSON value.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// Consumes the configuration, returning its JSON value.
    pub fn into_value(self) -> Value {
        self.value
    }

    /// Deserializes the configuration into the plugin's own settings type.
    ///
    /// The error is a readable message starting with `invalid config: `,
    /// ready to return from [`Transform::init`](crate::Transform::init).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        T::deserialize(&self.value).map_err(|err| format!("invalid config: {err}"))
    }
}

impl From<Value> for Config {
    fn from(value: Value) -> Self {
        Config::from_value(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        name: String,
        #[serde(default)]
        count: u32,
    }

    #[test]
    fn parses_typed_settings() {
        let config = Config::from_json_str(r#"{"name":"x","count":3}"#).unwrap();
        let settings: Settings = config.parse().unwrap();
        assert_eq!(
            settings,
            Settings {
                name: "x".into(),
                count: 3
            }
        );
    }

    #[test]
    fn empty_string_is_empty_object() {
        let config = Config::from_json_str("  ").unwrap();
        assert_eq!(config.value(), &serde_json::json!({}));
    }

    #[test]
    fn invalid_json_is_an_error() {
        let err = Config::from_json_str("{nope").unwrap_err();
        assert!(err.starts_with("config is not valid JSON"), "{err}");
    }

    #[test]
    fn wrong_shape_names_the_problem() {
        let config = Config::from_json_str(r#"{"name":"x","extra":1}"#).unwrap();
        let err = config.parse::<Settings>().unwrap_err();
        assert!(err.starts_with("invalid config: "), "{err}");
        assert!(err.contains("extra"), "{err}");
    }
}
