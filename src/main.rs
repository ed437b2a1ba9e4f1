//! The `tokengate` binary: parse the command line, set up logging, run, map the outcome to an
//! exit status (0 success, 1 runtime failure, 2 usage or configuration error).

use std::io::Write;

use clap::Parser;
use tokengate::cli::{Cli, Command, run};

fn main() {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve);
    // A config that does not load is reported by the command itself; logging then starts on
    // the defaults.
    let config = cli.load_config().ok();
    tokengate::logging::init(serving, config.as_ref().map(|c| &c.log));
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // `proxy.workers` sizes the runtime that serves.
    if serving && let Some(workers) = config.as_ref().and_then(|config| config.proxy.workers) {
        builder.worker_threads(workers);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            report(&format_args!("cannot start the runtime: {error}"));
            std::process::exit(1);
        }
    };
    if let Err(error) = runtime.block_on(run(cli)) {
        if !error.is_quiet() {
            report(&error);
        }
        std::process::exit(error.exit_code());
    }
}

/// The one error line on stderr. Written without `eprintln!`, which would panic (exit 101)
/// when stderr is a closed pipe; the exit status still tells.
fn report(error: &dyn std::fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "tokengate: {error}");
}
