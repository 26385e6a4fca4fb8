//! The machine's PostgreSQL for sink tests: a schema of its own per test
//! (dropped afterwards), and a way to stop the server for a while that
//! always starts it again.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

/// The test database URL: `SLUICE_TEST_PG_URL`, or the local server's `test`
/// database (trust auth).
pub fn pg_url() -> String {
    std::env::var("SLUICE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A client on the test database; its connection task runs on the current
/// tokio runtime.
pub async fn connect() -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", pg_url()))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A schema created for one test and dropped (with everything in it) when
/// this value is dropped.
pub struct PgSchema {
    /// The schema's name.
    pub name: String,
}

impl PgSchema {
    /// Create `sluice_test_<label>_<random>`.
    pub async fn create(label: &str) -> anyhow::Result<Self> {
        let name = format!(
            "sluice_test_{label}_{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() % 1_000_000_000)
                .unwrap_or_default()
        );
        connect()
            .await?
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await?;
        Ok(Self { name })
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if std::env::var_os("SLUICE_KEEP_TMP").is_some() {
            eprintln!("keeping schema {}", self.name);
            return;
        }
        let _ = Command::new("psql")
            .args([
                &pg_url(),
                "-qc",
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
            ])
            .output();
    }
}

fn pg_ctl(action: &str) -> anyhow::Result<()> {
    let versions = std::fs::read_dir("/etc/postgresql")
        .context("no /etc/postgresql: cannot stop or start the local PostgreSQL")?;
    for version in versions {
        let version = version?.file_name();
        let version = version.to_string_lossy();
        let mut command = Command::new("pg_ctlcluster");
        command.args(["--skip-systemctl-redirect", &version, "main", action]);
        if action == "stop" {
            command.args(["-m", "fast"]);
        }
        let output = command.output().context("cannot run pg_ctlcluster")?;
        if !output.status.success() {
            bail!(
                "pg_ctlcluster {version} main {action}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    Ok(())
}

/// The local PostgreSQL stopped; started again when dropped, even if the
/// test fails.
pub struct PgOutage {
    running: bool,
}

impl PgOutage {
    /// Stop the server (fast shutdown: open connections are terminated).
    pub fn begin() -> anyhow::Result<Self> {
        pg_ctl("stop")?;
        Ok(Self { running: false })
    }

    /// Start the server and wait until it accepts connections.
    pub fn end(&mut self) -> anyhow::Result<()> {
        if !self.running {
            pg_ctl("start")?;
            self.running = true;
        }
        for _ in 0..60 {
            let ready = Command::new("pg_isready")
                .args(["-h", "127.0.0.1", "-p", "5432"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        bail!("PostgreSQL did not come back within 30 s")
    }
}

impl Drop for PgOutage {
    fn drop(&mut self) {
        if let Err(e) = self.end() {
            eprintln!("could not restart PostgreSQL: {e:#}");
        }
    }
}
