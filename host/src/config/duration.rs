//! Durations in the configuration. Every duration key takes a number, in
//! the unit its name ends with (`timeout_ms = 500`, `retry_after_secs = 1`,
//! as always), or a duration string (`"500ms"`, `"30s"`, `"2m"`, `"1h 30m"`,
//! parsed by `humantime`). Each key can also be written without its unit
//! suffix (`batch_wait = "50ms"`). Values stay plain integers in the typed
//! configuration, so code reading them does not change.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

struct Units {
    /// What one unit of a bare number is.
    unit: Duration,
    /// Its name in messages.
    name: &'static str,
}

impl Visitor<'_> for Units {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a number of {} or a duration such as \"500ms\", \"30s\" or \"2m\"",
            self.name
        )
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<u64, E> {
        Ok(value)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<u64, E> {
        u64::try_from(value)
            .map_err(|_| E::custom(format!("a duration cannot be negative ({value})")))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<u64, E> {
        let duration = humantime::parse_duration(text.trim()).map_err(|e| {
            E::custom(format!(
                "`{text}` is not a duration ({e}); write a number of {} or a duration such as \"500ms\", \"30s\" or \"2m\"",
                self.name
            ))
        })?;
        let units = duration.as_nanos() / self.unit.as_nanos();
        if duration.as_nanos() % self.unit.as_nanos() != 0 {
            return Err(E::custom(format!(
                "`{text}` is not a whole number of {}",
                self.name
            )));
        }
        u64::try_from(units).map_err(|_| E::custom(format!("`{text}` is too long")))
    }
}

/// A duration in milliseconds: `500` or `"500ms"`, `"2s"`.
pub(crate) fn millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    deserializer.deserialize_any(Units {
        unit: Duration::from_millis(1),
        name: "milliseconds",
    })
}

/// A duration in whole seconds: `1` or `"1s"`, `"2m"`.
pub(crate) fn secs<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    deserializer.deserialize_any(Units {
        unit: Duration::from_secs(1),
        name: "seconds",
    })
}
