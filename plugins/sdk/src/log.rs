//! Log lines in the host's log, tagged by the host with the plugin's name and
//! version.
//!
//! Inside a component these call the host's `log` import. Outside `wasm32`
//! (native unit tests) they print to stderr and record the line for
//! [`testing::logs`](crate::testing::logs).
//!
//! ```
//! sluice_sdk::log::info("starting");
//! sluice_sdk::log::warn(&format!("unknown region {}", "mars"));
//! ```

use crate::Level;

/// Writes `message` at `level`.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::sluice::plugin::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::record_log(level, message);
}

/// Writes `message` at trace level.
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Writes `message` at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Writes `message` at info level.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Writes `message` at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Writes `message` at error level.
pub fn error(message: &str) {
    log(Level::Error, message);
}
