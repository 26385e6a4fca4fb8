//! What the client commands (`tail`, `plugin`, …) share: run one request on
//! a small async runtime and print its answer, or the error on one line.

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;

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
