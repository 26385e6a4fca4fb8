//! An Apicurio Registry process: a real schema-registry server (not Sluice)
//! whose Confluent-compatible API the external-registry client is tested
//! against (`tests/tests/apicurio.rs`).
//!
//! It comes from `scripts/install-apicurio.sh` (the release's Quarkus
//! application from Maven Central, cached under
//! `~/.cache/sluice/apicurio/<version>`); `SLUICE_APICURIO_HOME` overrides
//! that directory, `SLUICE_APICURIO_JAVA` the Java (21 or newer) the script
//! found. Each [`Apicurio`] is a fresh, empty registry (in-memory H2
//! storage) on free loopback ports, killed on drop. A missing install is an
//! error saying to run the script, never a skipped test.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::broker::Watchdog;
use crate::{TempDir, free_port};

/// The Apicurio Registry version `scripts/install-apicurio.sh` installs by
/// default.
pub const APICURIO_VERSION: &str = "3.3.3";

/// The install directory (holding `app/quarkus-run.jar` and `java`).
pub fn apicurio_home() -> PathBuf {
    if let Some(path) = std::env::var_os("SLUICE_APICURIO_HOME") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("SLUICE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default()
                .join(".cache/sluice")
        });
    let version =
        std::env::var("SLUICE_APICURIO_VERSION").unwrap_or_else(|_| APICURIO_VERSION.into());
    cache.join("apicurio").join(version)
}

/// A running Apicurio Registry.
pub struct Apicurio {
    child: Option<Child>,
    watchdog: Option<Watchdog>,
    dir: TempDir,
    /// Its HTTP port on 127.0.0.1.
    pub port: u16,
    /// Base URL of its Confluent-compatible API,
    /// `http://127.0.0.1:PORT/apis/ccompat/v7`: what `[schema_registry] url`
    /// and confluent-kafka's `SchemaRegistryClient` are pointed at.
    pub url: String,
}

impl Apicurio {
    /// Start a fresh registry and wait until `GET /apis/ccompat/v7/subjects`
    /// answers 200.
    pub fn start() -> anyhow::Result<Self> {
        let home = apicurio_home();
        let jar = home.join("app/quarkus-run.jar");
        if !home.join(".complete").is_file() || !jar.is_file() {
            bail!(
                "Apicurio Registry is not installed at {}; run `bash scripts/install-apicurio.sh` \
                 (or set SLUICE_APICURIO_HOME)",
                home.display()
            );
        }
        let java = match std::env::var("SLUICE_APICURIO_JAVA") {
            Ok(java) => java,
            Err(_) => std::fs::read_to_string(home.join("java"))
                .with_context(|| {
                    format!(
                        "{}/java is missing; run `bash scripts/install-apicurio.sh`",
                        home.display()
                    )
                })?
                .trim()
                .to_string(),
        };
        let dir = TempDir::new("apicurio");
        let (port, management_port) = (free_port(), free_port());
        let log = std::fs::File::create(dir.path().join("apicurio.log"))?;
        let started = Instant::now();
        let child = Command::new(&java)
            .current_dir(dir.path())
            .args([
                "-Xms64m",
                "-Xmx512m",
                // Two cores shared by several JVMs and compilers.
                "-XX:+UseSerialGC",
                "-XX:CICompilerCount=2",
                "-XX:TieredStopAtLevel=1",
                "-Djava.awt.headless=true",
                "-Dquarkus.http.host=127.0.0.1",
                &format!("-Dquarkus.http.port={port}"),
                // Health and metrics listen on a port of their own (9000
                // by default): a free one, so registries can run side by
                // side.
                "-Dquarkus.management.host=127.0.0.1",
                &format!("-Dquarkus.management.port={management_port}"),
                // Its snapshots go to the temp dir, not /tmp.
                &format!(
                    "-Dapicurio.storage.snapshot.location={}",
                    dir.path().display()
                ),
                // A small pool for a test's few requests (20 by default).
                "-Dapicurio.datasource.jdbc.initial-size=2",
                "-Dapicurio.datasource.jdbc.min-size=2",
                "-Dapicurio.datasource.jdbc.max-size=10",
                "-jar",
            ])
            .arg(&jar)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!("cannot start Apicurio Registry with {java} (Java 21 or newer is needed)")
            })?;
        let watchdog = Watchdog::guard(child.id())?;
        let mut registry = Self {
            child: Some(child),
            watchdog: Some(watchdog),
            dir,
            port,
            url: format!("http://127.0.0.1:{port}/apis/ccompat/v7"),
        };
        registry.wait_ready(Duration::from_secs(120))?;
        eprintln!(
            "apicurio registry {} ready at {} after {:.1} s",
            APICURIO_VERSION,
            registry.url,
            started.elapsed().as_secs_f64()
        );
        Ok(registry)
    }

    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "Apicurio Registry exited during start-up ({status}):\n{}",
                    self.log()
                );
            }
            if http_status(self.port, "/apis/ccompat/v7/subjects") == Some(200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "Apicurio Registry did not answer GET /apis/ccompat/v7/subjects within \
                     {timeout:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("apicurio.log")).unwrap_or_default()
    }

    /// SIGKILL it (an in-memory registry has nothing to flush).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            if let Some(watchdog) = self.watchdog.take() {
                watchdog.disarm();
            }
            let _ = child.wait();
        }
    }
}

impl Drop for Apicurio {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!(
                "--- apicurio log (last {} lines) ---\n{}",
                tail.len(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// The status of `GET path` on 127.0.0.1:`port`, or `None` if nothing
/// answers (a plain HTTP/1.1 request: readiness needs no client library).
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
