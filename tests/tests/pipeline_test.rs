//! `sluice test`: the `[[test]]` cases of examples/pipeline pass against the
//! real plugins, and changing one expected value fails the run with a diff
//! that names the field.

use std::process::Command;

use sluice_tests::{TempDir, plugins_built, repo_path, sluice_bin};

fn sluice_test(config: &std::path::Path) -> (bool, String) {
    let output = Command::new(sluice_bin())
        .args(["test", "-c"])
        .arg(config)
        .output()
        .expect("running sluice test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The example config, copied to a temp dir with absolute paths and the
/// `from` text replaced by `to`.
fn edited_example(dir: &TempDir, from: &str, to: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo_path("examples/pipeline/sluice.toml"))
        .expect("example config");
    assert!(text.contains(from), "the example has {from}");
    let root = repo_path("").canonicalize().expect("repo root");
    let text = text
        .replace("../../", &format!("{}/", root.display()))
        .replace(from, to);
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, text).expect("writing the copy");
    path
}

#[test]
fn the_pipeline_example_tests_pass() {
    plugins_built(&["filter", "redact", "enrich"]).expect("plugins");
    let (ok, output) = sluice_test(&repo_path("examples/pipeline/sluice.toml"));
    assert!(ok, "sluice test must pass:\n{output}");
    assert!(
        output.contains("test personal data is hashed and the event enriched ... ok"),
        "{output}"
    );
    assert!(output.contains("3 passed; 0 failed"), "{output}");
}

#[test]
fn one_changed_expected_value_fails_with_a_diff_naming_the_field() {
    plugins_built(&["filter", "redact", "enrich"]).expect("plugins");
    let dir = TempDir::new("pipeline-test");
    let config = edited_example(
        &dir,
        "email = \"sha256:59f485fe6aa9ebf6\"",
        "email = \"sha256:0000000000000000\"",
    );
    let (ok, output) = sluice_test(&config);
    assert!(!ok, "sluice test must fail:\n{output}");
    assert!(
        output.contains("test personal data is hashed and the event enriched ... FAILED"),
        "{output}"
    );
    assert!(output.contains("event 0 (t-2): value differs"), "{output}");
    assert!(
        output.contains("-     \"email\": \"sha256:0000000000000000\","),
        "{output}"
    );
    assert!(
        output.contains("+     \"email\": \"sha256:59f485fe6aa9ebf6\","),
        "{output}"
    );
    assert!(output.contains("2 passed; 1 failed"), "{output}");
}

#[test]
fn a_wrong_outcome_and_a_wrong_field_are_both_reported() {
    plugins_built(&["filter", "redact", "enrich"]).expect("plugins");
    let dir = TempDir::new("pipeline-test");
    let config = edited_example(
        &dir,
        "expect = [{ outcome = \"drop\" }]",
        "expect = [{ outcome = \"keep\" }]",
    );
    let text = std::fs::read_to_string(&config).expect("copy");
    std::fs::write(
        &config,
        text.replace(
            "\"attributes.team\" = \"unknown\"",
            "\"attributes.team\" = \"payments\"",
        ),
    )
    .expect("edit");
    let (ok, output) = sluice_test(&config);
    assert!(!ok, "{output}");
    assert!(
        output.contains("event 0 (t-1): expected outcome `keep`, got `drop`"),
        "{output}"
    );
    assert!(output.contains("field `attributes.team`"), "{output}");
    assert!(output.contains("- expected: \"payments\""), "{output}");
    assert!(output.contains("+ actual:   \"unknown\""), "{output}");
    assert!(output.contains("1 passed; 2 failed"), "{output}");
}

#[test]
fn validate_accepts_test_cases_and_reports_their_unknown_keys() {
    let output = Command::new(sluice_bin())
        .args(["validate", "-c"])
        .arg(repo_path("examples/pipeline/sluice.toml"))
        .output()
        .expect("validate");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let dir = TempDir::new("pipeline-test");
    let config = edited_example(
        &dir,
        "name = \"debug events are dropped\"",
        "name = \"debug events are dropped\"\ncolour = \"blue\"",
    );
    let output = Command::new(sluice_bin())
        .args(["test", "-c"])
        .arg(&config)
        .output()
        .expect("sluice test");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    let line = std::fs::read_to_string(&config)
        .expect("copy")
        .lines()
        .position(|l| l.starts_with("colour"))
        .expect("colour line")
        + 1;
    assert!(
        stderr.contains(&format!(
            "{}:{line}:1: key `test[0].colour`: unknown key",
            config.display()
        )),
        "{stderr}"
    );
}
