//! Helpers for native unit tests of plugin logic.
//!
//! [`run`] and [`init`] drive a [`Transform`] exactly as the exported
//! component does (config JSON → `init` → `process_batch`, with the
//! one-outcome-per-event check). Outside `wasm32`, [`counter`] and [`logs`]
//! read what [`counter_add`](crate::counter_add) and [`log`](crate::log)
//! recorded on the current thread.

use crate::{Config, Event, Outcome, Transform};

/// Creates the plugin from config JSON text, as the host's `init` call does.
pub fn init<T: Transform>(config_json: &str) -> Result<T, String> {
    T::init(Config::from_json_str(config_json)?)
}

/// Creates the plugin from config JSON text and runs one batch through it, as
/// the host's `init` and `process` calls do.
///
/// ```
/// use sluice_sdk::{Config, Event, Outcome, Transform};
///
/// struct DropAll;
/// impl Transform for DropAll {
///     fn init(_: Config) -> Result<Self, String> { Ok(DropAll) }
///     fn process(&mut self, _: &Event) -> Outcome { Outcome::drop() }
/// }
///
/// let outcomes = sluice_sdk::testing::run::<DropAll>("{}", vec![Event::new("{}")]).unwrap();
/// assert_eq!(outcomes, vec![Outcome::drop()]);
/// ```
pub fn run<T: Transform>(config_json: &str, batch: Vec<Event>) -> Result<Vec<Outcome>, String> {
    let mut instance = init::<T>(config_json)?;
    crate::__private::run_batch(&mut instance, batch)
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use crate::Level;

    thread_local! {
        static COUNTERS: RefCell<BTreeMap<String, u64>> = const { RefCell::new(BTreeMap::new()) };
        static LOGS: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
    }

    pub(crate) fn record_counter(name: &str, value: u64) {
        COUNTERS.with(|counters| {
            let mut counters = counters.borrow_mut();
            let total = counters.entry(name.to_string()).or_default();
            *total = total.saturating_add(value);
        });
    }

    pub(crate) fn record_log(level: Level, message: &str) {
        eprintln!("[sluice plugin {level:?}] {message}");
        LOGS.with(|logs| logs.borrow_mut().push((level, message.to_string())));
    }

    /// Total added to counter `name` on this thread (native builds only).
    pub fn counter(name: &str) -> u64 {
        COUNTERS.with(|counters| counters.borrow().get(name).copied().unwrap_or(0))
    }

    /// The log lines written on this thread so far, oldest first (native
    /// builds only).
    pub fn logs() -> Vec<(Level, String)> {
        LOGS.with(|logs| logs.borrow().clone())
    }

    /// Forgets the counters and log lines recorded on this thread (native
    /// builds only).
    pub fn reset() {
        COUNTERS.with(|counters| counters.borrow_mut().clear());
        LOGS.with(|logs| logs.borrow_mut().clear());
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::{counter, logs, reset};
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use native::{record_counter, record_log};

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::Level;

    struct Tagger {
        tag: String,
    }

    impl Transform for Tagger {
        fn init(config: Config) -> Result<Self, String> {
            #[derive(serde::Deserialize)]
            struct Settings {
                tag: String,
            }
            let settings: Settings = config.parse()?;
            Ok(Tagger { tag: settings.tag })
        }

        fn process(&mut self, event: &Event) -> Outcome {
            crate::counter_add("seen", 1);
            match event.value_json() {
                Ok(mut value) => {
                    crate::set_path(&mut value, "attributes.tag", self.tag.clone().into()).unwrap();
                    Outcome::modify(event.with_value_json(&value))
                }
                Err(err) => {
                    crate::log::warn("bad event");
                    Outcome::fail(err.to_string())
                }
            }
        }
    }

    struct Broken;

    impl Transform for Broken {
        fn init(_: Config) -> Result<Self, String> {
            Ok(Broken)
        }

        fn process(&mut self, _: &Event) -> Outcome {
            Outcome::keep()
        }

        fn process_batch(&mut self, _: Vec<Event>) -> Result<Vec<Outcome>, String> {
            Ok(vec![])
        }
    }

    #[test]
    fn run_drives_init_and_process() {
        reset();
        let outcomes = run::<Tagger>(
            r#"{"tag":"x"}"#,
            vec![Event::new(r#"{"attributes":{}}"#), Event::new("nope")],
        )
        .unwrap();
        assert_eq!(
            outcomes[0],
            Outcome::modify(Event::new(r#"{"attributes":{"tag":"x"}}"#))
        );
        assert!(outcomes[1].failure().is_some());
        assert_eq!(counter("seen"), 2);
        assert_eq!(counter("other"), 0);
        assert_eq!(logs(), vec![(Level::Warn, "bad event".to_string())]);
        reset();
        assert_eq!(counter("seen"), 0);
        assert!(logs().is_empty());
    }

    #[test]
    fn run_reports_config_errors() {
        let err = run::<Tagger>("{}", vec![]).err().unwrap();
        assert!(
            err.starts_with("invalid config: missing field `tag`"),
            "{err}"
        );
        let err = run::<Tagger>("{", vec![]).err().unwrap();
        assert!(err.starts_with("config is not valid JSON"), "{err}");
    }

    #[test]
    fn outcome_count_is_checked() {
        let err = run::<Broken>("{}", vec![Event::new("{}")]).unwrap_err();
        assert_eq!(err, "plugin returned 0 outcomes for a batch of 1 events");
    }
}
