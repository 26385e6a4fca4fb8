//! What the client commands (`tail`, `plugin`, …) share: run one request on
//! a small async runtime and print its answer, or the error on one line.

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};

/// Run `work` to completion and print the text it returns on stdout
/// (a closed pipe, as with `| head`, is not an error); an error goes to
/// stderr with its context, and the exit code is 1.
pub fn print_outcome(work: impl Future<Output = anyhow::Result<String>>) -> ExitCode {
    run_outcome(async {
        let text = work.await?;
        let _ = writeln!(std::io::stdout().lock(), "{text}");
        Ok(())
    })
}

/// Run `work` to completion on a small async runtime, for commands that
/// print as they go (`tap`): an error goes to stderr with its context, and
/// the exit code is 1.
pub fn run_outcome(work: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Send an admin API `request` to the host at `base` and read its JSON
/// answer; a refusal is an error naming the host, the status and the
/// answer's `message`.
pub async fn admin_json(
    base: &str,
    request: reqwest::RequestBuilder,
) -> anyhow::Result<serde_json::Value> {
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{base} answered {status}: {}", text.trim()))?;
    if !status.is_success() {
        bail!(
            "{base} answered {status}: {}",
            body["message"].as_str().unwrap_or(&body.to_string())
        );
    }
    Ok(body)
}
