//! `sluice plugin push|list|rollback`: the admin API's plugin routes from
//! the command line; `sluice plugin new`: a new plugin crate.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

/// `sluice plugin`: deploy, list and roll back plugin versions on running
/// hosts through the admin API.
#[derive(Debug, Args)]
pub struct PluginArgs {
    /// Base URL of a host's HTTP listener.
    #[arg(
        long,
        env = "SLUICE_ADMIN_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// The admin bearer token (`[admin] token`).
    #[arg(
        long,
        env = "SLUICE_ADMIN_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: PluginCommand,
}

/// The plugin subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Write a new plugin crate (with the SDK and the WIT contract in
    /// `sdk/`) that builds anywhere with
    /// `cargo build --target wasm32-wasip2 --release`.
    New {
        /// Crate name; the component is `NAME.wasm` with `-` as `_`.
        name: String,
        /// Which world it exports.
        #[arg(long, value_enum, default_value_t = super::scaffold::Kind::Transform)]
        kind: super::scaffold::Kind,
        /// Directory to create (default: `./NAME`); must be new or empty.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Validate FILE as the next version of NAME on the host, publish it,
    /// and let every host swap it in at its next batch.
    Push {
        /// Plugin name (the name stages chain).
        name: String,
        /// The component (`.wasm`).
        file: PathBuf,
    },
    /// Every plugin in the store: active version, hash, when, which hosts.
    List {
        /// Print the JSON answer instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make an earlier version active again on every host.
    Rollback {
        /// Plugin name.
        name: String,
        /// The version to restore; default: the one before the active one.
        #[arg(long)]
        to: Option<u32>,
    },
}

/// Run a plugin subcommand; prints the answer, exits 1 on any refusal.
pub fn main(args: &PluginArgs) -> ExitCode {
    if let PluginCommand::New { name, kind, dir } = &args.command {
        return match super::scaffold::new_plugin(name, *kind, dir.as_deref()) {
            Ok((_, next)) => {
                use std::io::Write;
                let _ = writeln!(std::io::stdout().lock(), "{next}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    crate::command::print_outcome(run(args))
}

async fn run(args: &PluginArgs) -> anyhow::Result<String> {
    let base = args.url.trim_end_matches('/');
    let client = reqwest::Client::new();
    let auth = |r: reqwest::RequestBuilder| match &args.token {
        Some(token) => r.bearer_auth(token),
        None => r,
    };
    let request = match &args.command {
        PluginCommand::Push { name, file } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            auth(client.put(format!("{base}/admin/plugins/{name}")))
                .header("content-type", "application/wasm")
                .body(bytes)
        }
        PluginCommand::List { .. } => auth(client.get(format!("{base}/admin/plugins"))),
        PluginCommand::New { .. } => unreachable!("handled in main"),
        PluginCommand::Rollback { name, to } => {
            auth(client.post(format!("{base}/admin/plugins/{name}/rollback")))
                .json(&serde_json::json!({ "to": to }))
        }
    };
    let body = crate::command::admin_json(base, request).await?;
    Ok(match &args.command {
        PluginCommand::List { json: false } => table(&body),
        PluginCommand::Push { .. } | PluginCommand::Rollback { .. } => format!(
            "{} v{} ({}){}",
            body["name"].as_str().unwrap_or_default(),
            body["version"],
            body["sha256"].as_str().unwrap_or_default(),
            if body["changed"] == false {
                ": already active"
            } else {
                ": active; hosts swap it in at their next batch"
            }
        ),
        PluginCommand::List { json: true } => serde_json::to_string_pretty(&body)?,
        PluginCommand::New { .. } => unreachable!("handled in main"),
    })
}

fn table(body: &serde_json::Value) -> String {
    let mut out = String::from("NAME\tACTIVE\tSHA256\tCONTRACT\tDEPLOYED AT\tBY\tHOSTS\n");
    for plugin in body.as_array().into_iter().flatten() {
        let active = plugin["active_version"].as_u64();
        let deployed = plugin["deployed_at_ms"]
            .as_i64()
            .and_then(|ms| {
                std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_millis(ms as u64))
            })
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
            .unwrap_or_else(|| "-".into());
        let hosts: Vec<String> = plugin["hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| {
                format!(
                    "{}=v{}",
                    h["host"].as_str().unwrap_or_default(),
                    h["version"]
                )
            })
            .collect();
        let sha = plugin["sha256"].as_str().unwrap_or("-");
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            plugin["name"].as_str().unwrap_or_default(),
            active.map_or("-".into(), |v| format!("v{v}")),
            &sha[..sha.len().min(12)],
            plugin["contract"].as_str().unwrap_or("-"),
            deployed,
            plugin["deployed_by"].as_str().unwrap_or("-"),
            if hosts.is_empty() {
                "-".into()
            } else {
                hosts.join(",")
            }
        ));
    }
    out.trim_end().to_string()
}
