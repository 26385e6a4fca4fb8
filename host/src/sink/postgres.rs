//! The `sql` capability on PostgreSQL: a connection pool per
//! `[connections.NAME]`, bulk loads by binary `COPY` into a temporary table
//! and an idempotent `INSERT ... ON CONFLICT` upsert on the key columns, and
//! `CREATE TABLE IF NOT EXISTS` when a plugin's operator asked for it.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::BytesMut;
use deadpool_postgres::{Object, Pool, PoolConfig, PoolError, Runtime, Timeouts};
use tokio_postgres::NoTls;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::runtime::bindings::{ColumnDef, SqlType, SqlValue, TableWrite};

/// How long to wait for a connection before calling the database unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A database connection, pooled.
pub struct Database {
    name: String,
    pool: Pool,
    query_timeout: Duration,
}

/// Why a database call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbError {
    /// The database is down, restarting or unreachable: retry later.
    Unavailable(String),
    /// The database (or the host, before sending) rejected the request: the
    /// same rows will fail again.
    Rejected(String),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Unavailable(m) => write!(f, "database unavailable: {m}"),
            DbError::Rejected(m) => write!(f, "{m}"),
        }
    }
}

impl Database {
    /// A pool of at most `pool_size` connections to `url`; connects lazily.
    /// Each call on a connection gets at most `query_timeout` to answer.
    /// Must be called inside a tokio runtime.
    pub fn new(
        name: &str,
        url: &str,
        pool_size: usize,
        query_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut config = deadpool_postgres::Config::new();
        config.url = Some(url.to_string());
        config.connect_timeout = Some(CONNECT_TIMEOUT);
        config.pool = Some(PoolConfig {
            max_size: pool_size.max(1),
            timeouts: Timeouts {
                wait: Some(CONNECT_TIMEOUT),
                create: Some(CONNECT_TIMEOUT),
                recycle: Some(CONNECT_TIMEOUT),
            },
            ..PoolConfig::default()
        });
        let pool = config
            .create_pool(Some(Runtime::Tokio1), NoTls)
            .context("invalid PostgreSQL connection settings")?;
        Ok(Self {
            name: name.to_string(),
            pool,
            query_timeout,
        })
    }

    /// The connection name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection with a transaction open on it. Every call on it is
    /// bounded by the connection's `query_timeout_ms`.
    pub async fn begin(&self) -> Result<Transaction, DbError> {
        let client = self.pool.get().await.map_err(|e| match e {
            PoolError::Backend(e) => classify(&e),
            PoolError::Timeout(_) => DbError::Unavailable(format!(
                "no connection to `{}` within {} s",
                self.name,
                CONNECT_TIMEOUT.as_secs()
            )),
            other => DbError::Unavailable(other.to_string()),
        })?;
        let mut transaction = Transaction {
            client: Some(client),
            connection: self.name.clone(),
            timeout: self.query_timeout,
        };
        transaction.execute("BEGIN").await?;
        Ok(transaction)
    }
}

/// A transaction open on one pooled connection. A call that gets no answer
/// within the time bound (a hung network, a locked table) fails as
/// [`DbError::Unavailable`], and the connection is thrown away rather than
/// handed back to the pool, since its state is unknown.
pub struct Transaction {
    client: Option<Object>,
    connection: String,
    timeout: Duration,
}

impl Transaction {
    /// Run `call` on the connection under the time bound.
    async fn bounded<T>(
        &mut self,
        call: impl AsyncFnOnce(&Object) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let Some(client) = self.client.as_ref() else {
            return Err(DbError::Unavailable(format!(
                "the connection to `{}` was dropped after an earlier timeout",
                self.connection
            )));
        };
        match tokio::time::timeout(self.timeout, call(client)).await {
            Ok(result) => result,
            Err(_) => {
                if let Some(client) = self.client.take() {
                    drop(Object::take(client));
                }
                Err(DbError::Unavailable(format!(
                    "no answer from `{}` within {} ms (query_timeout_ms)",
                    self.connection,
                    self.timeout.as_millis()
                )))
            }
        }
    }

    /// Bulk-write `request` in this transaction; see [`write`].
    pub async fn write(&mut self, seq: u64, request: &TableWrite) -> Result<u64, DbError> {
        self.bounded(async |client: &Object| write(client, seq, request).await)
            .await
    }

    /// `CREATE TABLE IF NOT EXISTS` in this transaction; see [`create_table`].
    pub async fn create_table(
        &mut self,
        table: &str,
        columns: &[ColumnDef],
        key_columns: &[String],
    ) -> Result<(), DbError> {
        self.bounded(async |client: &Object| {
            create_table(client, table, columns, key_columns).await
        })
        .await
    }

    /// Run one statement without results, under the time bound.
    async fn execute(&mut self, sql: &str) -> Result<(), DbError> {
        self.bounded(async |client: &Object| {
            client.batch_execute(sql).await.map_err(|e| classify(&e))
        })
        .await
    }

    /// Commit. A commit that timed out may or may not have landed.
    pub async fn commit(mut self) -> Result<(), DbError> {
        self.execute("COMMIT").await
    }

    /// Roll back (best effort: a broken connection has rolled back already).
    pub async fn rollback(mut self) {
        if let Err(e) = self.execute("ROLLBACK").await {
            tracing::debug!(error = %e, "rollback failed");
        }
    }
}

/// Check a write before sending anything.
pub fn check(request: &TableWrite) -> Result<(), String> {
    if request.columns.is_empty() {
        return Err("no columns given".into());
    }
    if request.key_columns.is_empty() {
        return Err(
            "no key columns given: without an idempotency key a redelivered batch would insert its rows twice"
                .into(),
        );
    }
    for key in &request.key_columns {
        if !request.columns.contains(key) {
            return Err(format!("key column `{key}` is not among the columns"));
        }
    }
    for (i, row) in request.rows.iter().enumerate() {
        if row.len() != request.columns.len() {
            return Err(format!(
                "row {i} has {} values for {} columns",
                row.len(),
                request.columns.len()
            ));
        }
    }
    quote_table(&request.table)?;
    Ok(())
}

/// Bulk-write `request` on `client` (inside its open transaction): `COPY`
/// into a temporary table shaped like the target, then one upsert. Rows that
/// repeat a key within the batch keep the last one. `seq` makes the
/// temporary table's name unique within the transaction.
async fn write(client: &Object, seq: u64, request: &TableWrite) -> Result<u64, DbError> {
    check(request).map_err(DbError::Rejected)?;
    let table = quote_table(&request.table).map_err(DbError::Rejected)?;
    let columns = request
        .columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let temp = format!("\"_sluice_load_{seq}\"");
    let context = |e: tokio_postgres::Error| with_table(classify(&e), &request.table);
    client
        .batch_execute(&format!(
            "CREATE TEMP TABLE {temp} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
        ))
        .await
        .map_err(context)?;
    let shape = client
        .prepare(&format!("SELECT {columns} FROM {temp}"))
        .await
        .map_err(context)?;
    let types: Vec<Type> = shape.columns().iter().map(|c| c.type_().clone()).collect();
    let sink = client
        .copy_in(&format!("COPY {temp} ({columns}) FROM STDIN BINARY"))
        .await
        .map_err(context)?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    for row in last_per_key(request) {
        let values: Vec<PgValue<'_>> = row
            .iter()
            .zip(&request.columns)
            .map(|(value, column)| PgValue { value, column })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        writer.as_mut().write(&refs).await.map_err(context)?;
    }
    writer.finish().await.map_err(context)?;
    let keys = request
        .key_columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let updates: Vec<String> = request
        .columns
        .iter()
        .filter(|c| !request.key_columns.contains(c))
        .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(c)))
        .collect();
    let action = if updates.is_empty() {
        "DO NOTHING".to_string()
    } else {
        format!("DO UPDATE SET {}", updates.join(", "))
    };
    client
        .execute(
            &format!(
                "INSERT INTO {table} ({columns}) SELECT {columns} FROM {temp} ON CONFLICT ({keys}) {action}"
            ),
            &[],
        )
        .await
        .map_err(|e| {
            let mut error = context(e);
            if let DbError::Rejected(m) = &mut error
                && m.contains("ON CONFLICT")
            {
                m.push_str(" (the key columns need a PRIMARY KEY or UNIQUE constraint)");
            }
            error
        })
}

/// `CREATE TABLE IF NOT EXISTS` with the key columns as primary key.
async fn create_table(
    client: &Object,
    table: &str,
    columns: &[ColumnDef],
    key_columns: &[String],
) -> Result<(), DbError> {
    let sql = create_table_sql(table, columns, key_columns).map_err(DbError::Rejected)?;
    client
        .batch_execute(&sql)
        .await
        .map_err(|e| with_table(classify(&e), table))
}

/// The DDL `create_table` runs.
pub fn create_table_sql(
    table: &str,
    columns: &[ColumnDef],
    key_columns: &[String],
) -> Result<String, String> {
    let table = quote_table(table)?;
    if columns.is_empty() {
        return Err("no columns given".into());
    }
    if key_columns.is_empty() {
        return Err("no key columns given".into());
    }
    for key in key_columns {
        if !columns.iter().any(|c| &c.name == key) {
            return Err(format!("key column `{key}` is not among the columns"));
        }
    }
    let mut parts: Vec<String> = columns
        .iter()
        .map(|c| {
            let ty = match c.kind {
                SqlType::Boolean => "BOOLEAN",
                SqlType::Int => "BIGINT",
                SqlType::Float => "DOUBLE PRECISION",
                SqlType::Text => "TEXT",
                SqlType::Bytes => "BYTEA",
                SqlType::Json => "JSONB",
                SqlType::Timestamp => "TIMESTAMPTZ",
            };
            let not_null = if c.nullable && !key_columns.contains(&c.name) {
                ""
            } else {
                " NOT NULL"
            };
            format!("{} {ty}{not_null}", quote_ident(&c.name))
        })
        .collect();
    parts.push(format!(
        "PRIMARY KEY ({})",
        key_columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(format!(
        "CREATE TABLE IF NOT EXISTS {table} ({})",
        parts.join(", ")
    ))
}

/// The rows to load, keeping only the last row for each key.
fn last_per_key(request: &TableWrite) -> Vec<&Vec<SqlValue>> {
    let key_index: Vec<usize> = request
        .key_columns
        .iter()
        .filter_map(|k| request.columns.iter().position(|c| c == k))
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut rows: Vec<&Vec<SqlValue>> = request
        .rows
        .iter()
        .rev()
        .filter(|row| {
            seen.insert(format!(
                "{:?}",
                key_index.iter().map(|&i| &row[i]).collect::<Vec<_>>()
            ))
        })
        .collect();
    rows.reverse();
    rows
}

/// `"schema"."table"` from `schema.table`; names are quoted, so any
/// identifier works and nothing is interpreted as SQL.
pub fn quote_table(table: &str) -> Result<String, String> {
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "table `{table}` is not a valid name: use `table` or `schema.table`"
        ));
    }
    Ok(parts
        .iter()
        .map(|p| quote_ident(p))
        .collect::<Vec<_>>()
        .join("."))
}

/// A quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn with_table(error: DbError, table: &str) -> DbError {
    match error {
        DbError::Rejected(m) => DbError::Rejected(format!("table `{table}`: {m}")),
        other => other,
    }
}

/// Transient or not: connection failures, shutdowns, resource exhaustion and
/// serialization conflicts are retried; everything else is the data's fault.
pub fn classify(error: &tokio_postgres::Error) -> DbError {
    let message = match error.as_db_error() {
        Some(db) => {
            let mut m = db.message().to_string();
            if let Some(detail) = db.detail() {
                m.push_str(": ");
                m.push_str(detail);
            }
            if let Some(column) = db.column() {
                m.push_str(&format!(" (column `{column}`)"));
            }
            m
        }
        None => {
            let mut m = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(s) = source {
                m.push_str(": ");
                m.push_str(&s.to_string());
                source = s.source();
            }
            m
        }
    };
    let transient_code = error.code().is_some_and(|code| {
        let code = code.code();
        code.starts_with("08")
            || code.starts_with("53")
            || code.starts_with("57P")
            || code == "40001"
            || code == "40P01"
    });
    let io_failure = error.as_db_error().is_none()
        && std::iter::successors(std::error::Error::source(error), |s| s.source())
            .any(|s| s.is::<std::io::Error>());
    if error.is_closed() || transient_code || io_failure {
        DbError::Unavailable(message)
    } else {
        DbError::Rejected(message)
    }
}

/// A plugin's value on its way into a column: converted by the column's
/// actual type, with an error naming the column when they do not fit.
#[derive(Debug)]
struct PgValue<'a> {
    value: &'a SqlValue,
    column: &'a str,
}

/// A value that does not fit its column.
#[derive(Debug)]
struct Mismatch(String);

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Mismatch {}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl PgValue<'_> {
    fn mismatch(&self, ty: &Type, why: &str) -> BoxError {
        let given = match self.value {
            SqlValue::Null => "null",
            SqlValue::Boolean(_) => "boolean",
            SqlValue::Int(_) => "int",
            SqlValue::Float(_) => "float",
            SqlValue::Text(_) => "text",
            SqlValue::Bytes(_) => "bytes",
            SqlValue::Json(_) => "json",
            SqlValue::TimestampMs(_) => "timestamp-ms",
        };
        Box::new(Mismatch(format!(
            "column `{}` is {ty}; cannot store a {given} value{why}",
            self.column
        )))
    }
}

fn is_text(ty: &Type) -> bool {
    [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(ty)
}

fn timestamp(ms: i64) -> SystemTime {
    let magnitude = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

impl ToSql for PgValue<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self.value {
            SqlValue::Null => Ok(IsNull::Yes),
            SqlValue::Boolean(b) if *ty == Type::BOOL => b.to_sql(ty, out),
            SqlValue::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)
                    .map_err(|_| self.mismatch(ty, " (out of range)"))?
                    .to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)
                    .map_err(|_| self.mismatch(ty, " (out of range)"))?
                    .to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::FLOAT4 => (*i as f32).to_sql(ty, out),
                Type::TIMESTAMPTZ | Type::TIMESTAMP => timestamp(*i).to_sql(ty, out),
                _ if is_text(ty) => i.to_string().as_str().to_sql(ty, out),
                _ => Err(self.mismatch(ty, "")),
            },
            SqlValue::Float(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ if is_text(ty) => f.to_string().as_str().to_sql(ty, out),
                _ => Err(self.mismatch(ty, "")),
            },
            SqlValue::Text(s) => match *ty {
                Type::JSON | Type::JSONB => serde_json::Value::String(s.clone()).to_sql(ty, out),
                _ if is_text(ty) => s.as_str().to_sql(ty, out),
                _ => Err(self.mismatch(ty, "")),
            },
            SqlValue::Bytes(b) if *ty == Type::BYTEA => b.as_slice().to_sql(ty, out),
            SqlValue::Json(text) => match *ty {
                Type::JSON | Type::JSONB => serde_json::from_str::<serde_json::Value>(text)
                    .map_err(|e| self.mismatch(ty, &format!(" (invalid JSON: {e})")))?
                    .to_sql(ty, out),
                _ if is_text(ty) => text.as_str().to_sql(ty, out),
                _ => Err(self.mismatch(ty, "")),
            },
            SqlValue::TimestampMs(ms) => match *ty {
                Type::TIMESTAMPTZ | Type::TIMESTAMP => timestamp(*ms).to_sql(ty, out),
                Type::INT8 => ms.to_sql(ty, out),
                _ => Err(self.mismatch(ty, "")),
            },
            _ => Err(self.mismatch(ty, "")),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, kind: SqlType, nullable: bool) -> ColumnDef {
        ColumnDef {
            name: name.into(),
            kind,
            nullable,
        }
    }

    #[test]
    fn table_names_are_quoted_and_checked() {
        assert_eq!(quote_table("events").unwrap(), "\"events\"");
        assert_eq!(quote_table("a.b").unwrap(), "\"a\".\"b\"");
        assert_eq!(quote_ident("x\"y"), "\"x\"\"y\"");
        assert!(quote_table("a.b.c").is_err());
        assert!(quote_table("").is_err());
    }

    #[test]
    fn create_table_makes_the_key_the_primary_key() {
        let sql = create_table_sql(
            "public.events",
            &[
                column("id", SqlType::Text, true),
                column("at", SqlType::Timestamp, false),
                column("attrs", SqlType::Json, true),
            ],
            &["id".into()],
        )
        .unwrap();
        assert_eq!(
            sql,
            "CREATE TABLE IF NOT EXISTS \"public\".\"events\" (\"id\" TEXT NOT NULL, \"at\" TIMESTAMPTZ NOT NULL, \"attrs\" JSONB, PRIMARY KEY (\"id\"))"
        );
        assert!(create_table_sql("t", &[column("a", SqlType::Int, true)], &["b".into()]).is_err());
    }

    #[test]
    fn writes_without_a_key_are_refused() {
        let request = TableWrite {
            connection: "db".into(),
            table: "t".into(),
            columns: vec!["a".into()],
            key_columns: vec![],
            rows: vec![],
        };
        assert!(check(&request).unwrap_err().contains("idempotency key"));
        let ragged = TableWrite {
            key_columns: vec!["a".into()],
            rows: vec![vec![SqlValue::Int(1), SqlValue::Int(2)]],
            ..request
        };
        assert_eq!(
            check(&ragged).unwrap_err(),
            "row 0 has 2 values for 1 columns"
        );
    }

    #[test]
    fn repeated_keys_keep_the_last_row() {
        let request = TableWrite {
            connection: "db".into(),
            table: "t".into(),
            columns: vec!["k".into(), "v".into()],
            key_columns: vec!["k".into()],
            rows: vec![
                vec![SqlValue::Text("a".into()), SqlValue::Int(1)],
                vec![SqlValue::Text("b".into()), SqlValue::Int(2)],
                vec![SqlValue::Text("a".into()), SqlValue::Int(3)],
            ],
        };
        let rows = last_per_key(&request);
        assert_eq!(
            rows,
            vec![
                &vec![SqlValue::Text("b".into()), SqlValue::Int(2)],
                &vec![SqlValue::Text("a".into()), SqlValue::Int(3)],
            ]
        );
    }

    #[test]
    fn values_convert_by_column_type_or_name_the_column() {
        let mut out = BytesMut::new();
        let value = SqlValue::Text("x".into());
        let err = PgValue {
            value: &value,
            column: "occurred_at",
        }
        .to_sql(&Type::TIMESTAMPTZ, &mut out)
        .err()
        .expect("text into timestamptz is refused");
        assert_eq!(
            err.to_string(),
            "column `occurred_at` is timestamptz; cannot store a text value"
        );
        let big = SqlValue::Int(i64::MAX);
        assert!(
            PgValue {
                value: &big,
                column: "n"
            }
            .to_sql(&Type::INT4, &mut out)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("out of range")
        );
        let ms = SqlValue::TimestampMs(-1500);
        assert!(
            PgValue {
                value: &ms,
                column: "t"
            }
            .to_sql(&Type::TIMESTAMPTZ, &mut out)
            .is_ok()
        );
    }
}
