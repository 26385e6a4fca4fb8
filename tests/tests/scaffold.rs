//! `sluice plugin new` outside the repository: the new crate's unit tests
//! pass, it builds with plain `cargo build --target wasm32-wasip2 --release`,
//! and `sluice validate` (and, for a transform, `sluice test`) accept the
//! `sluice.toml` it comes with. Slow: it builds wit-bindgen from scratch.

use std::path::Path;
use std::process::{Command, Output};

use sluice_tests::{TempDir, sluice_bin};

/// `cargo` as plain as a plugin author runs it: nothing of this test
/// process's cargo environment (its target directory above all) leaks in.
fn cargo(dir: &Path, args: &[&str]) -> Output {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(args).current_dir(dir);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" || key == "RUSTFLAGS" {
            command.env_remove(key);
        }
    }
    command.output().expect("running cargo")
}

fn sluice(dir: &Path, args: &[&str]) -> Output {
    Command::new(sluice_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running sluice")
}

#[track_caller]
fn assert_ok(what: &str, output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}

#[test]
fn a_new_plugin_builds_and_validates_outside_the_repository() {
    let root = TempDir::new("scaffold");
    let made = sluice(root.path(), &["plugin", "new", "demo"]);
    let printed = assert_ok("sluice plugin new demo", &made);
    assert!(printed.contains("cargo build --target wasm32-wasip2 --release"));
    let demo = root.path().join("demo");
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "src/lib.rs",
        "sluice.toml",
        "sdk/Cargo.toml",
        "sdk/src/lib.rs",
        "sdk/wit/sluice.wit",
    ] {
        assert!(demo.join(file).is_file(), "{file} missing");
    }
    let manifest = std::fs::read_to_string(demo.join("Cargo.toml")).unwrap();
    assert!(
        !manifest.contains("../"),
        "no path out of the crate:\n{manifest}"
    );
    // Refuses to write over it.
    assert!(
        !sluice(root.path(), &["plugin", "new", "demo"])
            .status
            .success()
    );

    let tests = assert_ok("cargo test", &cargo(&demo, &["test"]));
    println!("{tests}");
    assert_ok(
        "cargo build --target wasm32-wasip2 --release",
        &cargo(&demo, &["build", "--target", "wasm32-wasip2", "--release"]),
    );
    assert!(
        demo.join("target/wasm32-wasip2/release/demo.wasm")
            .is_file()
    );

    let validated = assert_ok(
        "sluice validate",
        &sluice(&demo, &["validate", "-c", "sluice.toml"]),
    );
    assert!(
        validated.contains("plugin `demo`") && validated.contains("sluice:plugin@0.2.0"),
        "{validated}"
    );
    let tested = assert_ok(
        "sluice test",
        &sluice(&demo, &["test", "-c", "sluice.toml"]),
    );
    assert!(tested.contains("2 passed; 0 failed"), "{tested}");

    // A sink, built with the transform's target directory for its
    // dependencies (the same lock file), its component moved where its
    // `sluice.toml` looks.
    let made = sluice(
        root.path(),
        &[
            "plugin",
            "new",
            "archive",
            "--kind",
            "sink",
            "--dir",
            "sinks/archive",
        ],
    );
    assert_ok("sluice plugin new archive --kind sink", &made);
    let archive = root.path().join("sinks/archive");
    let shared = demo.join("target");
    let shared = shared.to_str().unwrap();
    assert_ok(
        "cargo test (sink)",
        &cargo(&archive, &["test", "--target-dir", shared]),
    );
    assert_ok(
        "cargo build (sink)",
        &cargo(
            &archive,
            &[
                "build",
                "--target",
                "wasm32-wasip2",
                "--release",
                "--target-dir",
                shared,
            ],
        ),
    );
    let out = archive.join("target/wasm32-wasip2/release");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::copy(
        demo.join("target/wasm32-wasip2/release/archive.wasm"),
        out.join("archive.wasm"),
    )
    .unwrap();
    let validated = assert_ok(
        "sluice validate (sink)",
        &sluice(&archive, &["validate", "-c", "sluice.toml"]),
    );
    assert!(validated.contains("(sink)"), "{validated}");
}
