//! Helpers for native unit tests of plugin logic.
//!
//! [`run`] and [`init`] drive a [`Transform`] exactly as the exported
//! component does (config JSON → `init` → `process_batch`, with the
//! one-outcome-per-event check); [`run_sink`] and [`init_sink`] do the same
//! for a [`Sink`]. Outside `wasm32`, [`counter`] and [`logs`] read what
//! [`counter_add`](crate::counter_add) and [`log`](crate::log) recorded on
//! the current thread.
//!
//! Sinks also get stand-ins for the host's capabilities, per thread:
//! [`sql::write`](crate::sql::write) and
//! [`sql::create_table`](crate::sql::create_table) record their requests
//! ([`sql_writes`], [`created_tables`]) and succeed unless
//! [`set_sql_error`] is set; [`files`](crate::files) works on an in-memory
//! directory ([`files`], [`put_file`], [`set_files_error`]). [`reset`] clears
//! all of it.

use crate::{Config, Event, Outcome, Sink, Transform};

/// Creates the plugin from config JSON text, as the host's `init` call does.
pub fn init<T: Transform>(config_json: &str) -> Result<T, String> {
    T::init(Config::from_json_str(config_json)?)
}

/// Creates the plugin from config JSON text and runs one batch through it, as
/// the host's `init` and `process` calls do: the batch is laid out in the
/// contract's flat buffers, read back as views, and the outcomes go through
/// the by-index layout and back, so the boundary is tested too.
///
/// ```
/// use sluice_sdk::{Config, Event, Outcome, Transform};
///
/// struct DropAll;
/// impl Transform for DropAll {
///     fn init(_: Config) -> Result<Self, String> { Ok(DropAll) }
///     fn process(&mut self, _: &Event<'_>) -> Outcome { Outcome::drop() }
/// }
///
/// let outcomes = sluice_sdk::testing::run::<DropAll>("{}", vec![Event::new("{}")]).unwrap();
/// assert_eq!(outcomes, vec![Outcome::drop()]);
/// ```
pub fn run<T: Transform>(config_json: &str, batch: Vec<Event<'_>>) -> Result<Vec<Outcome>, String> {
    let mut instance = init::<T>(config_json)?;
    let mut laid_out = crate::wire::batch(&batch);
    keep_only(&mut laid_out, instance.needs());
    crate::wire::locate_fields(&mut laid_out, &instance.fields(), true);
    let views = crate::wire::events(&laid_out)?;
    let outcomes = crate::__private::run_batch(&mut instance, &views)?;
    crate::wire::decode(crate::wire::encode(outcomes))
}

/// As the host does: headers and origins cross only when asked for.
fn keep_only(batch: &mut crate::__private::WireBatch, needs: crate::Needs) {
    if needs & crate::Needs::HEADERS == crate::Needs::empty() {
        batch.headers.clear();
    }
    if needs & crate::Needs::ORIGINS == crate::Needs::empty() {
        batch.origins.clear();
    }
}

/// Creates a sink from config JSON text, as the host's `init` call does.
pub fn init_sink<S: Sink>(config_json: &str) -> Result<S, String> {
    S::init(Config::from_json_str(config_json)?)
}

/// Creates a sink from config JSON text and writes one batch through it, as
/// the host's `init` and `write` calls do; returns the sink for more batches.
///
/// ```
/// use sluice_sdk::{Config, Event, Sink, files};
///
/// struct Lines;
/// impl Sink for Lines {
///     fn init(_: Config) -> Result<Self, String> { Ok(Lines) }
///     fn write(&mut self, batch: &[Event<'_>]) -> Result<(), String> {
///         let mut data = Vec::new();
///         for event in batch {
///             data.extend_from_slice(event.value);
///             data.push(b'\n');
///         }
///         files::append("out.ndjson", &data)
///     }
/// }
///
/// sluice_sdk::testing::reset();
/// sluice_sdk::testing::run_sink::<Lines>("{}", vec![Event::new("{}"), Event::new("[]")]).unwrap();
/// assert_eq!(sluice_sdk::testing::files()["out.ndjson"], b"{}\n[]\n");
/// ```
pub fn run_sink<S: Sink>(config_json: &str, batch: Vec<Event<'_>>) -> Result<S, String> {
    let mut instance = init_sink::<S>(config_json)?;
    let mut laid_out = crate::wire::batch(&batch);
    keep_only(&mut laid_out, instance.needs());
    instance.write(&crate::wire::events(&laid_out)?)?;
    Ok(instance)
}

/// One [`sql::create_table`](crate::sql::create_table) call, as recorded by
/// the native stand-in (see [`created_tables`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedTable {
    /// The connection name.
    pub connection: String,
    /// The table name.
    pub table: String,
    /// The columns.
    pub columns: Vec<crate::sql::ColumnDef>,
    /// The primary-key columns.
    pub key_columns: Vec<String>,
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use super::CreatedTable;
    use crate::Level;
    use crate::sql::TableWrite;

    thread_local! {
        static COUNTERS: RefCell<BTreeMap<String, u64>> = const { RefCell::new(BTreeMap::new()) };
        static LOGS: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
        static SQL_WRITES: RefCell<Vec<TableWrite>> = const { RefCell::new(Vec::new()) };
        static SQL_TABLES: RefCell<Vec<CreatedTable>> = const { RefCell::new(Vec::new()) };
        static SQL_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
        static FILES: RefCell<BTreeMap<String, Vec<u8>>> = const { RefCell::new(BTreeMap::new()) };
        static FILES_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    /// Native stand-in for the `sql` import.
    pub(crate) mod fake_sql {
        use super::*;
        use crate::sql::ColumnDef;

        fn check() -> Result<(), String> {
            SQL_ERROR.with(|error| match &*error.borrow() {
                Some(error) => Err(error.clone()),
                None => Ok(()),
            })
        }

        pub(crate) fn write(request: &TableWrite) -> Result<u64, String> {
            check()?;
            if let Some(row) = request
                .rows
                .iter()
                .find(|row| row.len() != request.columns.len())
            {
                return Err(format!(
                    "a row has {} values for {} columns",
                    row.len(),
                    request.columns.len()
                ));
            }
            SQL_WRITES.with(|writes| writes.borrow_mut().push(request.clone()));
            Ok(request.rows.len() as u64)
        }

        pub(crate) fn create_table(
            connection: &str,
            table: &str,
            columns: &[ColumnDef],
            key_columns: &[String],
        ) -> Result<(), String> {
            check()?;
            SQL_TABLES.with(|tables| {
                tables.borrow_mut().push(CreatedTable {
                    connection: connection.to_string(),
                    table: table.to_string(),
                    columns: columns.to_vec(),
                    key_columns: key_columns.to_vec(),
                })
            });
            Ok(())
        }
    }

    /// Native stand-in for the `files` import: an in-memory directory.
    pub(crate) mod fake_files {
        use super::*;

        fn check(path: &str) -> Result<(), String> {
            if let Some(error) = FILES_ERROR.with(|error| error.borrow().clone()) {
                return Err(error);
            }
            let escapes = path.is_empty()
                || path.starts_with('/')
                || path.split('/').any(|part| part.is_empty() || part == "..");
            if escapes {
                return Err(format!("path `{path}` is outside the granted directory"));
            }
            Ok(())
        }

        pub(crate) fn append(path: &str, data: &[u8]) -> Result<(), String> {
            check(path)?;
            FILES.with(|files| {
                files
                    .borrow_mut()
                    .entry(path.to_string())
                    .or_default()
                    .extend_from_slice(data)
            });
            Ok(())
        }

        pub(crate) fn size(path: &str) -> Result<Option<u64>, String> {
            check(path)?;
            Ok(FILES.with(|files| files.borrow().get(path).map(|data| data.len() as u64)))
        }

        pub(crate) fn rename(old_path: &str, new_path: &str) -> Result<(), String> {
            check(old_path)?;
            check(new_path)?;
            FILES.with(|files| {
                let mut files = files.borrow_mut();
                let data = files
                    .remove(old_path)
                    .ok_or_else(|| format!("cannot rename `{old_path}`: no such file"))?;
                files.insert(new_path.to_string(), data);
                Ok(())
            })
        }
    }

    /// Every [`sql::write`](crate::sql::write) request that succeeded on this
    /// thread, oldest first (native builds only).
    pub fn sql_writes() -> Vec<TableWrite> {
        SQL_WRITES.with(|writes| writes.borrow().clone())
    }

    /// Every [`sql::create_table`](crate::sql::create_table) call that
    /// succeeded on this thread, oldest first (native builds only).
    pub fn created_tables() -> Vec<CreatedTable> {
        SQL_TABLES.with(|tables| tables.borrow().clone())
    }

    /// Makes every later `sql` call on this thread fail with `error` (as the
    /// host does for a connection not granted to the stage), or succeed again
    /// with `None` (native builds only).
    pub fn set_sql_error(error: Option<&str>) {
        SQL_ERROR.with(|slot| *slot.borrow_mut() = error.map(str::to_string));
    }

    /// The in-memory directory behind [`files`](crate::files) on this thread:
    /// path → contents (native builds only).
    pub fn files() -> BTreeMap<String, Vec<u8>> {
        FILES.with(|files| files.borrow().clone())
    }

    /// Creates or replaces `path` in the in-memory directory with `data`
    /// (native builds only).
    pub fn put_file(path: &str, data: &[u8]) {
        FILES.with(|files| files.borrow_mut().insert(path.to_string(), data.to_vec()));
    }

    /// Makes every later `files` call on this thread fail with `error`, or
    /// work again with `None` (native builds only).
    pub fn set_files_error(error: Option<&str>) {
        FILES_ERROR.with(|slot| *slot.borrow_mut() = error.map(str::to_string));
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

    /// Forgets everything recorded on this thread: counters, log lines, SQL
    /// requests, created tables, files and injected errors (native builds
    /// only).
    pub fn reset() {
        COUNTERS.with(|counters| counters.borrow_mut().clear());
        LOGS.with(|logs| logs.borrow_mut().clear());
        SQL_WRITES.with(|writes| writes.borrow_mut().clear());
        SQL_TABLES.with(|tables| tables.borrow_mut().clear());
        SQL_ERROR.with(|error| *error.borrow_mut() = None);
        FILES.with(|files| files.borrow_mut().clear());
        FILES_ERROR.with(|error| *error.borrow_mut() = None);
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::{
    counter, created_tables, files, logs, put_file, reset, set_files_error, set_sql_error,
    sql_writes,
};
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use native::{fake_files, fake_sql, record_counter, record_log};

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

        fn process(&mut self, event: &Event<'_>) -> Outcome {
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

        fn process(&mut self, _: &Event<'_>) -> Outcome {
            Outcome::keep()
        }

        fn process_batch(&mut self, _: &[Event<'_>]) -> Result<Vec<Outcome>, String> {
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
            outcomes[0].modified_value(),
            Some(r#"{"attributes":{"tag":"x"}}"#)
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

    /// Writes each batch's values as lines to `out`, and one row per event.
    struct Echo {
        connection: String,
    }

    impl Sink for Echo {
        fn init(config: Config) -> Result<Self, String> {
            let connection = config.value()["connection"]
                .as_str()
                .ok_or("connection is required")?
                .to_string();
            Ok(Echo { connection })
        }

        fn write(&mut self, batch: &[Event<'_>]) -> Result<(), String> {
            let mut data = Vec::new();
            let mut rows = Vec::new();
            for event in batch {
                data.extend_from_slice(event.value);
                data.push(b'\n');
                rows.push(vec![crate::sql::SqlValue::Text(
                    event.value_str().unwrap().to_string(),
                )]);
            }
            crate::files::append("out", &data)?;
            let written = crate::sql::write(&crate::sql::TableWrite {
                connection: self.connection.clone(),
                table: "t".into(),
                columns: vec!["v".into()],
                key_columns: vec!["v".into()],
                rows,
            })?;
            crate::counter_add("rows", written);
            Ok(())
        }
    }

    #[test]
    fn run_sink_drives_init_and_write() {
        reset();
        let mut sink = run_sink::<Echo>(
            r#"{"connection":"db"}"#,
            vec![Event::new("1"), Event::new("2")],
        )
        .unwrap();
        sink.write(&[Event::new("3")]).unwrap();
        assert_eq!(files()["out"], b"1\n2\n3\n");
        let writes = sql_writes();
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[0].connection, "db");
        assert_eq!(writes[0].rows.len(), 2);
        assert_eq!(counter("rows"), 3);
        assert_eq!(
            run_sink::<Echo>("{}", vec![]).err().unwrap(),
            "connection is required"
        );
    }

    #[test]
    fn injected_errors_fail_the_capabilities() {
        reset();
        set_sql_error(Some("connection `db` is not granted to this stage"));
        let err = run_sink::<Echo>(r#"{"connection":"db"}"#, vec![Event::new("1")])
            .err()
            .unwrap();
        assert_eq!(err, "connection `db` is not granted to this stage");
        assert!(sql_writes().is_empty());
        set_sql_error(None);
        set_files_error(Some("disk full"));
        assert_eq!(crate::files::append("out", b"x"), Err("disk full".into()));
        reset();
        assert!(files().is_empty());
        assert!(crate::sql::create_table("db", "t", &[], &[]).is_ok());
        assert_eq!(created_tables()[0].table, "t");
    }

    #[test]
    fn fake_files_behave_like_a_granted_directory() {
        reset();
        assert_eq!(crate::files::size("a.log"), Ok(None));
        put_file("a.log", b"abc");
        crate::files::append("a.log", b"de").unwrap();
        assert_eq!(crate::files::size("a.log"), Ok(Some(5)));
        crate::files::rename("a.log", "sub/a.1.log").unwrap();
        assert_eq!(crate::files::size("a.log"), Ok(None));
        assert_eq!(files()["sub/a.1.log"], b"abcde");
        assert!(crate::files::rename("a.log", "b.log").is_err());
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a//b"] {
            assert!(crate::files::append(bad, b"x").is_err(), "{bad}");
        }
    }

    #[test]
    fn sink_write_before_init_is_an_error() {
        std::thread_local! {
            static SLOT: std::cell::RefCell<Option<Echo>> = const { std::cell::RefCell::new(None) };
        }
        let err = crate::__private::sink_write::<Echo>(&SLOT, crate::wire::batch(&[])).unwrap_err();
        assert_eq!(
            err,
            "plugin is not initialised: init was not called or failed"
        );
        crate::__private::sink_init::<Echo>(&SLOT, r#"{"connection":"db"}"#.into()).unwrap();
        reset();
        crate::__private::sink_write::<Echo>(&SLOT, crate::wire::batch(&[Event::new("x")]))
            .unwrap();
        assert_eq!(files()["out"], b"x\n");
    }

    #[test]
    fn outcome_count_is_checked() {
        let err = run::<Broken>("{}", vec![Event::new("{}")]).unwrap_err();
        assert_eq!(err, "plugin returned 0 outcomes for a batch of 1 events");
    }
}
