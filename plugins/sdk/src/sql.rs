//! Bulk writes to a database connection granted to the stage (the `sql`
//! import of the `sink` world).
//!
//! The operator declares `[connections.NAME]` and grants it to a stage; a
//! sink names it in [`TableWrite::connection`]. The host writes each
//! [`write`] call's rows in one transaction, as an upsert on
//! [`TableWrite::key_columns`], so a re-delivered batch leaves one row per
//! key. Connections not granted to the stage are refused with an error
//! string.
//!
//! ```
//! use sluice_sdk::sql::{self, SqlValue, TableWrite};
//!
//! let request = TableWrite {
//!     connection: "warehouse".into(),
//!     table: "public.events".into(),
//!     columns: vec!["event_id".into(), "severity".into()],
//!     key_columns: vec!["event_id".into()],
//!     rows: vec![vec![SqlValue::Text("e-1".into()), SqlValue::Text("INFO".into())]],
//! };
//! // Natively this records the request for `sluice_sdk::testing::sql_writes`.
//! assert_eq!(sql::write(&request), Ok(1));
//! # assert_eq!(sluice_sdk::testing::sql_writes(), vec![request]);
//! ```
//!
//! Outside `wasm32` there is no host: [`write`] and [`create_table`] record
//! their arguments on the current thread for [`testing`](crate::testing) and
//! succeed (or fail with the error set by
//! [`testing::set_sql_error`](crate::testing::set_sql_error)).

// The host's import inside a component; an in-memory fake for native tests.
#[cfg(target_arch = "wasm32")]
use crate::sink_bindings::sluice::plugin::sql as imp;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::fake_sql as imp;

/// A column value: `Null`, `Boolean(bool)`, `Int(i64)`, `Float(f64)`,
/// `Text(String)`, `Bytes(Vec<u8>)`, `Json(String)` (JSON text, stored as
/// JSONB) or `TimestampMs(i64)` (TIMESTAMPTZ, milliseconds since the Unix
/// epoch).
pub type SqlValue = crate::sink_bindings::sluice::plugin::sql::SqlValue;

/// A column type for [`create_table`]: `Boolean`, `Int` (BIGINT), `Float`
/// (DOUBLE PRECISION), `Text`, `Bytes` (BYTEA), `Json` (JSONB) or `Timestamp`
/// (TIMESTAMPTZ).
pub type SqlType = crate::sink_bindings::sluice::plugin::sql::SqlType;

/// One column of a table to create: `name`, `kind` ([`SqlType`]) and
/// `nullable` (false adds `NOT NULL`; key columns are always `NOT NULL`).
pub type ColumnDef = crate::sink_bindings::sluice::plugin::sql::ColumnDef;

/// Rows for one table, written by the host in one transaction: `connection`
/// (granted to the stage), `table` (optionally schema-qualified), `columns`,
/// `key_columns` (the upsert key) and `rows` (one value per column each).
pub type TableWrite = crate::sink_bindings::sluice::plugin::sql::TableWrite;

impl SqlType {
    /// Every type, in WIT order.
    pub const ALL: [SqlType; 7] = [
        SqlType::Boolean,
        SqlType::Int,
        SqlType::Float,
        SqlType::Text,
        SqlType::Bytes,
        SqlType::Json,
        SqlType::Timestamp,
    ];

    /// The type's config name: `boolean`, `int`, `float`, `text`, `bytes`,
    /// `json` or `timestamp`.
    pub fn name(self) -> &'static str {
        match self {
            SqlType::Boolean => "boolean",
            SqlType::Int => "int",
            SqlType::Float => "float",
            SqlType::Text => "text",
            SqlType::Bytes => "bytes",
            SqlType::Json => "json",
            SqlType::Timestamp => "timestamp",
        }
    }

    /// The type with this config name (see [`SqlType::name`]), if any.
    ///
    /// ```
    /// use sluice_sdk::sql::SqlType;
    /// assert_eq!(SqlType::from_name("timestamp"), Some(SqlType::Timestamp));
    /// assert_eq!(SqlType::from_name("varchar"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<SqlType> {
        SqlType::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// Writes `request.rows` to `request.table` in one transaction, as an upsert
/// on `request.key_columns`. Returns how many rows were inserted or updated.
///
/// Fails with the host's readable reason when the connection is not granted
/// to the stage, the database rejects the rows, or it stays unreachable.
pub fn write(request: &TableWrite) -> Result<u64, String> {
    imp::write(request)
}

/// Creates `table` on `connection` if it does not exist, with `columns` and
/// `key_columns` as its primary key.
///
/// Call it only when the operator asked for it (for example a
/// `create_table = true` setting); nothing should be created implicitly.
pub fn create_table(
    connection: &str,
    table: &str,
    columns: &[ColumnDef],
    key_columns: &[String],
) -> Result<(), String> {
    imp::create_table(connection, table, columns, key_columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_round_trip() {
        for kind in SqlType::ALL {
            assert_eq!(SqlType::from_name(kind.name()), Some(kind));
        }
        assert_eq!(SqlType::from_name("Text"), None);
        assert_eq!(SqlType::from_name(""), None);
    }
}
