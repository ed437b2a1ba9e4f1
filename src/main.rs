//! The `tokengate` binary: parse the command line, set up logging, run, map the outcome to an
//! exit status (0 success, 1 runtime failure, 2 usage or configuration error).

use std::io::{IsTerminal, Write};

use clap::Parser;
use tokengate::cli::{Cli, Command, run};
use tokengate::config::LogConfig;
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve);
    // A config that does not load is reported by the command itself; logging then starts on
    // the defaults.
    let config = cli.load_config().ok();
    init_logging(serving, config.as_ref().map(|c| &c.log));
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

/// Logs go to stderr: `info` for `serve`, `warn` for one-shot commands; `TOKENGATE_LOG`
/// (an EnvFilter such as `debug` or `tokengate=debug`) overrides. `log.format = "json"` (or
/// `TOKENGATE_LOG_FORMAT=json`) writes one JSON object per line. (Access records are written
/// by the proxy's own access log, `log.access`, not through this subscriber.)
fn init_logging(serving: bool, log: Option<&LogConfig>) {
    let json = match log {
        Some(log) => log.json,
        // The file did not load (the command reports why): the environment alone decides.
        None => std::env::var("TOKENGATE_LOG_FORMAT").is_ok_and(|f| f == "json"),
    };
    let default = if serving { "info" } else { "warn" };
    let filter = EnvFilter::try_from_env("TOKENGATE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A log line that cannot be written is dropped. By default the subscriber reports the
        // failure with `eprintln!`, which panics when stderr is a closed pipe: the request being
        // logged would lose its connection.
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
