//! What one sink instance may touch, and the transactions it has open during
//! a batch.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use super::Target;
use super::files::Directory;
use super::postgres::{self, Database, DbError, Transaction};
use crate::runtime::bindings::{ColumnDef, TableWrite};

/// The targets a stage was granted.
pub struct Grants {
    stage: String,
    granted: BTreeMap<String, Target>,
    known: BTreeSet<String>,
    runtime: tokio::runtime::Handle,
}

impl Grants {
    /// Grants of `stage`: `granted` by name; `known` are all configured
    /// connection names (for clearer refusals).
    pub fn new(
        stage: &str,
        granted: BTreeMap<String, Target>,
        known: BTreeSet<String>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Self {
            stage: stage.to_string(),
            granted,
            known,
            runtime,
        }
    }

    fn granted_names(&self) -> String {
        if self.granted.is_empty() {
            "none".to_string()
        } else {
            self.granted.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    }

    fn refusal(&self, connection: &str) -> String {
        if self.known.contains(connection) {
            format!(
                "connection `{connection}` is not granted to stage `{}` (granted: {}); list it in the stage's `connections`",
                self.stage,
                self.granted_names()
            )
        } else {
            format!(
                "no connection `{connection}` is configured, and stage `{}` may use only: {}",
                self.stage,
                self.granted_names()
            )
        }
    }

    fn database(&self, connection: &str) -> Result<Arc<Database>, String> {
        match self.granted.get(connection) {
            Some(Target::Postgres(db)) => Ok(db.clone()),
            Some(Target::Directory(_)) => Err(format!(
                "connection `{connection}` is a directory, not a database"
            )),
            None => Err(self.refusal(connection)),
        }
    }

    /// The directory a `files` path refers to: the only directory granted,
    /// or, when several are, the one named by the path's first component.
    fn directory<'p>(&self, path: &'p str) -> Result<(Arc<Directory>, &'p str), String> {
        let directories: Vec<(&String, &Arc<Directory>)> = self
            .granted
            .iter()
            .filter_map(|(name, target)| match target {
                Target::Directory(d) => Some((name, d)),
                Target::Postgres(_) => None,
            })
            .collect();
        match directories.as_slice() {
            [] => Err(format!(
                "stage `{}` was granted no directory; add a `[connections.NAME]` with type = \"directory\" to its `connections`",
                self.stage
            )),
            [(_, only)] => Ok(((*only).clone(), path)),
            several => {
                let (first, rest) = path.split_once('/').unwrap_or((path, ""));
                several
                    .iter()
                    .find(|(name, _)| name.as_str() == first)
                    .map(|(_, d)| ((*d).clone(), rest))
                    .ok_or_else(|| {
                        format!(
                            "stage `{}` has several directories; start the path with one of their names ({})",
                            self.stage,
                            self.granted_names()
                        )
                    })
            }
        }
    }
}

/// Why a sink batch did not complete, beyond the plugin's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A target was unreachable: retry the same batch later.
    Unavailable(String),
    /// The plugin reached for something its stage was not granted.
    Denied(String),
    /// A target rejected the data.
    Rejected(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unavailable(m) => write!(f, "{m}"),
            Problem::Denied(m) => write!(f, "capability denied: {m}"),
            Problem::Rejected(m) => write!(f, "{m}"),
        }
    }
}

/// The capabilities of one sink instance, and the per-batch transactions it
/// opened. The runner ends every batch with [`Session::finish`].
pub struct Session {
    grants: Arc<Grants>,
    open: BTreeMap<String, Transaction>,
    problem: Option<Problem>,
    loads: u64,
    rows: u64,
}

impl Session {
    /// A session over `grants`.
    pub fn new(grants: Arc<Grants>) -> Self {
        Self {
            grants,
            open: BTreeMap::new(),
            problem: None,
            loads: 0,
            rows: 0,
        }
    }

    fn note(&mut self, problem: Problem) -> String {
        let message = problem.to_string();
        // The first problem decides how the batch is handled; a denial or an
        // outage outranks the rejections that may follow from it.
        let replace = matches!(
            (&self.problem, &problem),
            (None, _)
                | (
                    Some(Problem::Rejected(_)),
                    Problem::Denied(_) | Problem::Unavailable(_)
                )
        );
        if replace {
            self.problem = Some(problem);
        }
        message
    }

    fn note_db(&mut self, error: DbError) -> String {
        match error {
            DbError::Unavailable(m) => self.note(Problem::Unavailable(m)),
            DbError::Rejected(m) => self.note(Problem::Rejected(m)),
        }
    }

    /// The open transaction on `connection`, beginning one if needed.
    fn transaction(&mut self, connection: &str) -> Result<&mut Transaction, String> {
        if !self.open.contains_key(connection) {
            let database = match self.grants.database(connection) {
                Ok(db) => db,
                Err(m) => return Err(self.note(Problem::Denied(m))),
            };
            match self.grants.runtime.block_on(database.begin()) {
                Ok(client) => {
                    self.open.insert(connection.to_string(), client);
                }
                Err(e) => return Err(self.note_db(e)),
            }
        }
        self.open
            .get_mut(connection)
            .ok_or_else(|| format!("no transaction open on `{connection}`"))
    }

    /// `sql.write`: bulk upsert in the batch's transaction.
    pub fn write(&mut self, request: TableWrite) -> Result<u64, String> {
        if let Err(m) = postgres::check(&request) {
            return Err(self.note(Problem::Rejected(m)));
        }
        self.loads += 1;
        let seq = self.loads;
        let runtime = self.grants.runtime.clone();
        let client = self.transaction(&request.connection)?;
        match runtime.block_on(client.write(seq, &request)) {
            Ok(n) => {
                self.rows += n;
                Ok(n)
            }
            Err(e) => Err(self.note_db(e)),
        }
    }

    /// `sql.create-table`, in the batch's transaction.
    pub fn create_table(
        &mut self,
        connection: &str,
        table: &str,
        columns: &[ColumnDef],
        key_columns: &[String],
    ) -> Result<(), String> {
        let runtime = self.grants.runtime.clone();
        let client = self.transaction(connection)?;
        runtime
            .block_on(client.create_table(table, columns, key_columns))
            .map_err(|e| self.note_db(e))
    }

    /// `files.append`.
    pub fn append(&mut self, path: &str, data: &[u8]) -> Result<(), String> {
        let (dir, path) = self
            .grants
            .directory(path)
            .map_err(|m| self.note(Problem::Denied(m)))?;
        dir.append(path, data)
            .map_err(|m| self.note(Problem::Rejected(m)))
    }

    /// `files.size`.
    pub fn size(&mut self, path: &str) -> Result<Option<u64>, String> {
        let (dir, path) = self
            .grants
            .directory(path)
            .map_err(|m| self.note(Problem::Denied(m)))?;
        dir.size(path).map_err(|m| self.note(Problem::Rejected(m)))
    }

    /// `files.rename`.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), String> {
        let (dir, from) = self
            .grants
            .directory(from)
            .map_err(|m| self.note(Problem::Denied(m)))?;
        let (to_dir, to) = self
            .grants
            .directory(to)
            .map_err(|m| self.note(Problem::Denied(m)))?;
        if !Arc::ptr_eq(&dir, &to_dir) {
            return Err(self.note(Problem::Rejected(
                "cannot rename across granted directories".to_string(),
            )));
        }
        dir.rename(from, to)
            .map_err(|m| self.note(Problem::Rejected(m)))
    }

    /// End the batch: commit every open transaction if the plugin succeeded
    /// and nothing went wrong on the way, roll back otherwise. Returns the
    /// rows written, or the problem that decides the batch's fate.
    pub fn finish(&mut self, plugin_ok: bool) -> Result<u64, Option<Problem>> {
        let open = std::mem::take(&mut self.open);
        let problem = self.problem.take();
        let rows = std::mem::take(&mut self.rows);
        let runtime = self.grants.runtime.clone();
        if !plugin_ok || problem.is_some() {
            runtime.block_on(async {
                for transaction in open.into_values() {
                    transaction.rollback().await;
                }
            });
            return Err(problem);
        }
        let committed = runtime.block_on(async {
            for transaction in open.into_values() {
                transaction.commit().await?;
            }
            Ok::<(), DbError>(())
        });
        match committed {
            Ok(()) => Ok(rows),
            // A commit that failed may or may not have landed; the batch is
            // written again, which the upsert makes harmless.
            Err(DbError::Unavailable(m)) => Err(Some(Problem::Unavailable(m))),
            Err(DbError::Rejected(m)) => Err(Some(Problem::Rejected(m))),
        }
    }
}

impl crate::runtime::Capabilities for Session {
    fn write(&mut self, request: TableWrite) -> Result<u64, String> {
        Session::write(self, request)
    }
    fn create_table(
        &mut self,
        connection: &str,
        table: &str,
        columns: &[ColumnDef],
        key_columns: &[String],
    ) -> Result<(), String> {
        Session::create_table(self, connection, table, columns, key_columns)
    }
    fn append(&mut self, path: &str, data: &[u8]) -> Result<(), String> {
        Session::append(self, path, data)
    }
    fn size(&mut self, path: &str) -> Result<Option<u64>, String> {
        Session::size(self, path)
    }
    fn rename(&mut self, from: &str, to: &str) -> Result<(), String> {
        Session::rename(self, from, to)
    }
    fn discard(&mut self) {
        let _ = self.finish(false);
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
