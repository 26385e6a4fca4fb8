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

/// Run `sluice validate` on `config` (with `{plugins}` replaced by the
/// repository's plugin directory); returns success and stderr.
fn validate_text(config: &str) -> (bool, String) {
    let dir = TempDir::new("validate-plugin");
    let path = dir.path().join("sluice.toml");
    let text = config.replace(
        "{plugins}",
        &repo_path("plugins/dist").display().to_string(),
    );
    std::fs::write(&path, text).unwrap();
    let output = Command::new(sluice_bin())
        .args(["validate", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn validate_with_chain(plugin: &str) -> (bool, String) {
    validate_text(&format!(
        "[kafka]\nbrokers = \"embedded\"\n[plugins]\ndir = \"{{plugins}}\"\n[[stage]]\nname = \"s\"\ninput = \"in\"\noutput = \"out\"\nchain = [\"{plugin}\"]\n"
    ))
}

#[test]
fn validate_rejects_a_component_of_the_wrong_world_naming_the_export() {
    let (ok, stderr) = validate_with_chain("fixture-wrong-world");
    assert!(!ok);
    assert!(stderr.contains("sluice:plugin/transformer"), "{stderr}");
    assert!(stderr.contains("key `stage[0].chain`"), "{stderr}");
}

#[test]
fn validate_runs_init_and_reports_its_error() {
    let (ok, stderr) = validate_with_chain("fixture-bad-init");
    assert!(!ok);
    assert!(stderr.contains("bad-init: refusing to start"), "{stderr}");
}

#[test]
fn validate_accepts_the_plugin_template_built_with_plain_cargo() {
    // plugins/build.sh builds examples/plugin-template with
    // `cargo build --target wasm32-wasip2 --release` and copies it here.
    let (ok, stderr) = validate_with_chain("template");
    assert!(ok, "{stderr}");
}

fn validate_with_sink(plugin: &str, config_table: &str) -> (bool, String) {
    validate_text(&format!(
        "[kafka]\nbrokers = \"embedded\"\n[plugins]\ndir = \"{{plugins}}\"\n[connections.db]\ntype = \"postgres\"\nurl = \"postgres://nobody@127.0.0.1:1/none\"\n[[stage]]\nname = \"s\"\ninput = \"in\"\nsink = \"{plugin}\"\nconnections = [\"db\"]\n[stage.config.{plugin}]\n{config_table}\n"
    ))
}

#[test]
fn validate_checks_sink_plugins_against_the_sink_world_and_their_config() {
    let (ok, stderr) = validate_with_sink("filter", "");
    assert!(!ok);
    assert!(
        stderr.contains("sluice:plugin/sinker@0.1.0") && stderr.contains("key `stage[0].sink`"),
        "{stderr}"
    );
    let (ok, stderr) = validate_with_sink("postgres-sink", "table = \"t\"");
    assert!(!ok);
    assert!(
        stderr.contains("invalid postgres-sink config: missing field `connection`"),
        "{stderr}"
    );
    // A valid mapping validates without touching the (unreachable) database.
    let (ok, stderr) = validate_with_sink(
        "postgres-sink",
        "connection = \"db\"\ntable = \"t\"\nkey = [\"id\"]\ncolumns = [{ name = \"id\", from = \"event_id\", type = \"text\" }]",
    );
    assert!(ok, "{stderr}");
}

/// `sluice validate` accepts every example config, plugins included (the
/// config-only load and TOML round trip of each is a host unit test). The
/// plugin template's `sluice.toml` chains the template's own build output,
/// which plugins/build.sh puts in plugins/dist as `template.wasm` instead.
#[test]
fn validate_accepts_every_example_config() {
    let examples = repo_path("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let config = entry.unwrap().path().join("sluice.toml");
        if !config.is_file() {
            continue;
        }
        let config = if config.parent().unwrap().ends_with("plugin-template") {
            let dir = TempDir::new("template-config");
            let text = std::fs::read_to_string(&config)
                .unwrap()
                .replace(
                    "dir = \"target/wasm32-wasip2/release\"",
                    &format!(
                        "dir = {:?}",
                        repo_path("plugins/dist").display().to_string()
                    ),
                )
                .replace("sluice_plugin_template", "template");
            let path = dir.path().join("sluice.toml");
            std::fs::write(&path, text).unwrap();
            (path, Some(dir))
        } else {
            (config, None)
        };
        let output = Command::new(sluice_bin())
            .args(["validate", "-c"])
            .arg(&config.0)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}: {}",
            config.0.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 4, "{checked} example configs");
}
