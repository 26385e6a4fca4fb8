//! Append-only files in the directory the operator granted to the stage (the
//! `files` import of the `sink` world).
//!
//! Every path is relative to that directory; the host refuses paths that
//! leave it (absolute paths, `..`).
//!
//! ```
//! use sluice_sdk::files;
//!
//! files::append("out.ndjson", b"{\"a\":1}\n").unwrap();
//! assert_eq!(files::size("out.ndjson"), Ok(Some(8)));
//! files::rename("out.ndjson", "out.1.ndjson").unwrap();
//! assert_eq!(files::size("out.ndjson"), Ok(None));
//! ```
//!
//! Outside `wasm32` there is no host: these functions work on an in-memory
//! directory of the current thread that [`testing::files`](crate::testing::files)
//! reads, refusing the same escaping paths as the host.

// The host's import inside a component; an in-memory fake for native tests.
#[cfg(target_arch = "wasm32")]
use crate::sink_bindings::sluice::plugin::files as imp;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::fake_files as imp;

/// Appends `data` to `path` (creating it if needed).
pub fn append(path: &str, data: &[u8]) -> Result<(), String> {
    imp::append(path, data)
}

/// The size of `path` in bytes, or `None` if it does not exist.
pub fn size(path: &str) -> Result<Option<u64>, String> {
    imp::size(path)
}

/// Atomically renames `old_path` to `new_path` (used to rotate files).
pub fn rename(old_path: &str, new_path: &str) -> Result<(), String> {
    imp::rename(old_path, new_path)
}
