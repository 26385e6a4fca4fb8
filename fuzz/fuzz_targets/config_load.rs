//! Fuzz target: arbitrary text through the configuration loader
//! (`sluice::config::parse_str`): every outcome is a config or a list of
//! diagnostics with file and line, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(problems) = sluice::config::parse_str(text, Path::new("fuzz.toml")) {
        assert!(!problems.to_string().is_empty());
    }
});
