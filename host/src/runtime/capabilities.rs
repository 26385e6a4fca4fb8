//! What a sink plugin's `sql` and `files` imports reach: a trait the runtime
//! calls and the sink module implements ([`crate::sink::Session`]), so the
//! runtime knows nothing of databases or directories.

use std::any::Any;

use super::bindings::{ColumnDef, TableWrite};

/// The capabilities granted to one sink instance, for the batch in progress.
pub trait Capabilities: Send + 'static {
    /// `sql.write`: a bulk upsert; the rows written.
    fn write(&mut self, request: TableWrite) -> Result<u64, String>;
    /// `sql.create-table`.
    fn create_table(
        &mut self,
        connection: &str,
        table: &str,
        columns: &[ColumnDef],
        key_columns: &[String],
    ) -> Result<(), String>;
    /// `files.append`.
    fn append(&mut self, path: &str, data: &[u8]) -> Result<(), String>;
    /// `files.size`: `None` when the file does not exist.
    fn size(&mut self, path: &str) -> Result<Option<u64>, String>;
    /// `files.rename`.
    fn rename(&mut self, from: &str, to: &str) -> Result<(), String>;
    /// Roll back whatever the calls so far left open (e.g. after `init`,
    /// which may not leave a transaction open).
    fn discard(&mut self);
    /// The implementation, for its owner to finish a batch with.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// No capabilities: what a sink's `init` gets when `sluice validate` checks
/// its config. Every call fails with a message saying so.
#[derive(Debug, Default)]
pub struct NoCapabilities;

const NONE: &str = "no sink capabilities are granted while validating";

impl Capabilities for NoCapabilities {
    fn write(&mut self, _: TableWrite) -> Result<u64, String> {
        Err(NONE.into())
    }
    fn create_table(
        &mut self,
        _: &str,
        _: &str,
        _: &[ColumnDef],
        _: &[String],
    ) -> Result<(), String> {
        Err(NONE.into())
    }
    fn append(&mut self, _: &str, _: &[u8]) -> Result<(), String> {
        Err(NONE.into())
    }
    fn size(&mut self, _: &str) -> Result<Option<u64>, String> {
        Err(NONE.into())
    }
    fn rename(&mut self, _: &str, _: &str) -> Result<(), String> {
        Err(NONE.into())
    }
    fn discard(&mut self) {}
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
