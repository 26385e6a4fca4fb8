//! `sluice plugin new NAME`: writes a plugin crate that builds on its own,
//! anywhere, with `cargo build --target wasm32-wasip2 --release`.
//!
//! `sluice-sdk` is not on crates.io, so the new crate carries it: the SDK's
//! sources and the WIT contract are embedded in this binary when it is built
//! and written to `NAME/sdk/`, which `NAME/Cargo.toml` names by path. Every
//! other dependency comes from crates.io, pinned by a `Cargo.lock` known to
//! build with the SDK.
//!
//! The transform crate is `examples/plugin-template` (its `Cargo.toml`,
//! `Cargo.lock`, `src/lib.rs` and `sluice.toml`, renamed); the sink crate
//! shares its manifest and lock file, with the sink source and config in
//! this directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};

/// Which WIT world the new plugin exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Enrich, filter, route: one outcome per event (world `transform`).
    Transform,
    /// Write batches through granted connections (world `sink`).
    Sink,
}

/// The SDK crate, as it is in this repository: path under `sdk/`, text.
pub const SDK_FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../../../plugins/sdk/Cargo.toml"),
    ),
    (
        "README.md",
        include_str!("../../../../plugins/sdk/README.md"),
    ),
    (
        "wit/sluice.wit",
        include_str!("../../../../plugins/sdk/wit/sluice.wit"),
    ),
    (
        "src/config.rs",
        include_str!("../../../../plugins/sdk/src/config.rs"),
    ),
    (
        "src/event.rs",
        include_str!("../../../../plugins/sdk/src/event.rs"),
    ),
    (
        "src/files.rs",
        include_str!("../../../../plugins/sdk/src/files.rs"),
    ),
    (
        "src/json.rs",
        include_str!("../../../../plugins/sdk/src/json.rs"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../../plugins/sdk/src/lib.rs"),
    ),
    (
        "src/log.rs",
        include_str!("../../../../plugins/sdk/src/log.rs"),
    ),
    (
        "src/outcome.rs",
        include_str!("../../../../plugins/sdk/src/outcome.rs"),
    ),
    (
        "src/path.rs",
        include_str!("../../../../plugins/sdk/src/path.rs"),
    ),
    (
        "src/select.rs",
        include_str!("../../../../plugins/sdk/src/select.rs"),
    ),
    (
        "src/sink.rs",
        include_str!("../../../../plugins/sdk/src/sink.rs"),
    ),
    (
        "src/sql.rs",
        include_str!("../../../../plugins/sdk/src/sql.rs"),
    ),
    (
        "src/testing.rs",
        include_str!("../../../../plugins/sdk/src/testing.rs"),
    ),
    (
        "src/wire.rs",
        include_str!("../../../../plugins/sdk/src/wire.rs"),
    ),
];

const TEMPLATE_MANIFEST: &str = include_str!("../../../../examples/plugin-template/Cargo.toml");
const TEMPLATE_LOCK: &str = include_str!("../../../../examples/plugin-template/Cargo.lock");
const TRANSFORM_LIB: &str = include_str!("../../../../examples/plugin-template/src/lib.rs");
const TRANSFORM_CONFIG: &str = include_str!("../../../../examples/plugin-template/sluice.toml");
const SINK_LIB: &str = include_str!("sink_lib.rs.txt");
const SINK_CONFIG: &str = include_str!("sink_sluice.toml.txt");

/// The template's crate name, replaced by the new plugin's.
const TEMPLATE_NAME: &str = "sluice-plugin-template";
/// The template's component and chain name (`-` as `_`).
const TEMPLATE_COMPONENT: &str = "sluice_plugin_template";

const TEMPLATE_SDK_DEPENDENCY: &str =
    "# The SDK: here the repository's; `sluice plugin new` writes a copy of it
# (with the WIT contract) to `sdk/` and points this line there, so the new
# crate builds anywhere with crates.io dependencies only.
sluice-sdk = { path = \"../../plugins/sdk\" }
";
const SDK_DEPENDENCY: &str =
    "# The SDK and the WIT contract it is built against (`sdk/wit/sluice.wit`),
# written here by `sluice plugin new`: sluice-sdk is not on crates.io yet.
sluice-sdk = { path = \"sdk\" }
";

/// Write a new plugin crate named `name` to `dir` (default `./NAME`);
/// returns the directory and what to run next.
pub fn new_plugin(name: &str, kind: Kind, dir: Option<&Path>) -> anyhow::Result<(PathBuf, String)> {
    check_name(name)?;
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    if dir.exists() {
        let empty = dir.is_dir()
            && std::fs::read_dir(&dir)
                .with_context(|| format!("cannot read {}", dir.display()))?
                .next()
                .is_none();
        ensure!(empty, "{} already exists and is not empty", dir.display());
    }
    for (path, text) in files(name, kind)? {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let component = name.replace('-', "_");
    let next = format!(
        "created {kind} plugin `{name}` in {dir}\n\
         \n  cd {dir}\
         \n  cargo test                                      # native unit tests\
         \n  cargo build --target wasm32-wasip2 --release    # target/wasm32-wasip2/release/{component}.wasm\
         \n  sluice validate -c sluice.toml                  # loads, type-checks and inits it{test}",
        kind = match kind {
            Kind::Transform => "transform",
            Kind::Sink => "sink",
        },
        dir = dir.display(),
        test = if kind == Kind::Transform {
            "\n  sluice test -c sluice.toml                      # its [[test]] cases"
        } else {
            ""
        },
    );
    Ok((dir, next))
}

/// Every file of the new crate: relative path and text.
pub fn files(name: &str, kind: Kind) -> anyhow::Result<Vec<(PathBuf, String)>> {
    check_name(name)?;
    let component = name.replace('-', "_");
    let rename = |text: &str| {
        text.replace(TEMPLATE_NAME, name)
            .replace(TEMPLATE_COMPONENT, &component)
    };
    ensure!(
        TEMPLATE_MANIFEST.contains(TEMPLATE_SDK_DEPENDENCY),
        "examples/plugin-template/Cargo.toml no longer has the SDK dependency lines the scaffold replaces"
    );
    let description = match kind {
        Kind::Transform => "A Sluice transform plugin.",
        Kind::Sink => "A Sluice sink plugin.",
    };
    let manifest: String = rename(TEMPLATE_MANIFEST)
        .replace(TEMPLATE_SDK_DEPENDENCY, SDK_DEPENDENCY)
        .lines()
        .map(|line| {
            if line.starts_with("description = ") {
                format!("description = \"{description}\"\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    let (lib, config) = match kind {
        Kind::Transform => (TRANSFORM_LIB, TRANSFORM_CONFIG),
        Kind::Sink => (SINK_LIB, SINK_CONFIG),
    };
    let mut files = vec![
        (PathBuf::from("Cargo.toml"), manifest),
        (PathBuf::from("Cargo.lock"), rename(TEMPLATE_LOCK)),
        (PathBuf::from("src/lib.rs"), lib.to_string()),
        (PathBuf::from("sluice.toml"), rename(config)),
        (PathBuf::from(".gitignore"), "/target/\n".to_string()),
        (PathBuf::from("README.md"), readme(name, &component, kind)),
    ];
    if kind == Kind::Sink {
        files.push((PathBuf::from("out/.gitkeep"), String::new()));
    }
    for (path, text) in SDK_FILES {
        files.push((Path::new("sdk").join(path), (*text).to_string()));
    }
    Ok(files)
}

fn readme(name: &str, component: &str, kind: Kind) -> String {
    let (what, test) = match kind {
        Kind::Transform => (
            "a transform plugin (world `transform`): one outcome per event",
            "sluice test -c sluice.toml                     # the [[test]] cases, through the component\n",
        ),
        Kind::Sink => (
            "a sink plugin (world `sink`): writes batches through the connections its stage is granted",
            "",
        ),
    };
    format!(
        "# {name}\n\
         \n\
         A Sluice plugin written with `sluice-sdk`: {what}. Written by\n\
         `sluice plugin new`; it builds on its own, with crates.io dependencies only.\n\
         \n\
         ```sh\n\
         rustup target add wasm32-wasip2                # once per machine\n\
         cargo test                                     # native unit tests (no wasm needed)\n\
         cargo build --target wasm32-wasip2 --release   # target/wasm32-wasip2/release/{component}.wasm\n\
         sluice validate -c sluice.toml                 # loads, type-checks and inits the component\n\
         {test}\
         ```\n\
         \n\
         - `src/lib.rs`: the plugin and its unit tests (`sluice_sdk::testing`).\n\
         - `sluice.toml`: a pipeline that runs it (`[plugins] dir` is the build's output).\n\
         - `sdk/`: the SDK and the WIT contract it is built against (`sdk/wit/sluice.wit`),\n\
         \x20 `sluice:plugin@0.2.0`. `cargo doc --open -p sluice-sdk` shows its API.\n\
         \n\
         To deploy it, copy the component into a host's `[plugins] dir` as `NAME.wasm`,\n\
         or push it to running hosts: `sluice plugin push NAME target/wasm32-wasip2/release/{component}.wasm`.\n"
    )
}

/// A crate name cargo accepts, and a file name that needs no quoting.
fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        bail!("the plugin name must not be empty");
    };
    if !first.is_ascii_alphabetic()
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!(
            "`{name}` is not a plugin name: use letters, digits, `-` and `_`, starting with a letter"
        );
    }
    if name == "sluice-sdk" || name == "sluice_sdk" || name == "test" {
        bail!("`{name}` is reserved; pick another plugin name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sdk_source_is_embedded() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk/src");
        let mut on_disk: Vec<String> = std::fs::read_dir(&src)
            .unwrap()
            .map(|e| format!("src/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = SDK_FILES
            .iter()
            .map(|(p, _)| p.to_string())
            .filter(|p| p.starts_with("src/"))
            .collect();
        embedded.sort();
        assert_eq!(
            embedded, on_disk,
            "plugins/sdk/src changed: update SDK_FILES"
        );
        let sdk = SDK_FILES
            .iter()
            .find(|(p, _)| *p == "src/lib.rs")
            .unwrap()
            .1;
        assert!(sdk.contains("path: \"wit/sluice.wit\""));
        let wit = SDK_FILES
            .iter()
            .find(|(p, _)| *p == "wit/sluice.wit")
            .unwrap()
            .1;
        let root_wit = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/sluice.wit"),
        )
        .unwrap();
        assert_eq!(wit, root_wit);
    }

    #[test]
    fn the_manifest_points_at_the_vendored_sdk() {
        for kind in [Kind::Transform, Kind::Sink] {
            let files = files("my-rule", kind).unwrap();
            let text = |name: &str| {
                &files
                    .iter()
                    .find(|(p, _)| p == Path::new(name))
                    .unwrap_or_else(|| panic!("{name} missing"))
                    .1
            };
            let manifest = text("Cargo.toml");
            assert!(manifest.contains("name = \"my-rule\""), "{manifest}");
            assert!(manifest.contains("sluice-sdk = { path = \"sdk\" }"));
            assert!(!manifest.contains("../"), "{manifest}");
            assert!(manifest.contains("[workspace]"));
            assert!(text("Cargo.lock").contains("name = \"my-rule\""));
            let config = text("sluice.toml");
            assert!(config.contains("\"my_rule\""), "{config}");
            assert!(!config.contains(TEMPLATE_COMPONENT));
            assert!(text("sdk/Cargo.toml").contains("name = \"sluice-sdk\""));
            assert!(!text("sdk/Cargo.toml").contains(".workspace"));
            if kind == Kind::Transform {
                assert!(config.contains("[[test]]"));
            }
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("demo").is_ok());
        assert!(check_name("my_rule-2").is_ok());
        for bad in ["", "2x", "a b", "../x", "sluice-sdk", "a/b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_a_non_empty_directory() {
        let dir = std::env::temp_dir().join(format!("sluice-scaffold-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("x"), "").unwrap();
        let err = new_plugin("demo", Kind::Transform, Some(&dir)).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
