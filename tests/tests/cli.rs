//! The `sluice` command line: `validate` lists every problem with file and
//! line and exits non-zero; the quickstart config validates.

use std::process::Command;

use sluice_tests::{TempDir, repo_path, sluice_bin};

#[test]
fn validate_reports_every_problem_with_file_and_line() {
    let dir = TempDir::new("validate");
    let config = dir.path().join("broken.toml");
    std::fs::write(
        &config,
        r#"[kafka]
brokers = "embedded"
colour = "blue"

[ingest]
listen = "localhost:eighty"

[[ingest.route]]
topic = "t"
schema = "missing.avsc"
"#,
    )
    .unwrap();
    let output = Command::new(sluice_bin())
        .args(["validate", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "validate must fail:\n{stderr}");
    let file = config.display().to_string();
    assert!(
        stderr.contains(&format!("{file}:3:1: key `kafka.colour`: unknown key")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}:6:10: key `ingest.listen`")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{file}:10:10: key `ingest.route[0].schema`: schema file"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("3 problems found"), "{stderr}");
}

#[test]
fn quickstart_config_validates() {
    let output = Command::new(sluice_bin())
        .args(["validate", "-c"])
        .arg(repo_path("examples/quickstart/sluice.toml"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let output = Command::new(sluice_bin())
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}
