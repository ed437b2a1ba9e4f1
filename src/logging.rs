//! The process's log: stderr, text or one JSON object per line (`log.format`), the format
//! switchable at run time so that `SIGHUP` can apply a new `log.format`.
//!
//! Both formatters are installed; a per-layer filter lets exactly one of them write each
//! event, decided by one atomic flag. (Access records are written by the proxy's own access
//! log, `log.access`, not through this subscriber.)

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

use crate::config::LogConfig;

/// Whether log lines are JSON; the one switch both formatters read.
static JSON: AtomicBool = AtomicBool::new(false);

/// Starts logging to stderr: `info` for `serve`, `warn` for one-shot commands; `TOKENGATE_LOG`
/// (an EnvFilter such as `debug` or `tokengate=debug`) overrides. `log` is the loaded
/// configuration's, `None` when it did not load (the command reports why): then the
/// environment alone (`TOKENGATE_LOG_FORMAT=json`) decides the format.
pub fn init(serving: bool, log: Option<&LogConfig>) {
    let json = match log {
        Some(log) => log.json,
        None => std::env::var("TOKENGATE_LOG_FORMAT").is_ok_and(|f| f == "json"),
    };
    set_json(json);
    let default = if serving { "info" } else { "warn" };
    let filter = EnvFilter::try_from_env("TOKENGATE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // A log line that cannot be written is dropped. By default the formatter reports the
    // failure with `eprintln!`, which panics when stderr is a closed pipe: the request being
    // logged would lose its connection.
    let text = fmt::layer()
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(filter_fn(|_| !JSON.load(Ordering::Relaxed)));
    let json = fmt::layer()
        .json()
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .with_filter(filter_fn(|_| JSON.load(Ordering::Relaxed)));
    tracing_subscriber::registry().with(filter).with(text).with(json).init();
}

/// Writes log lines from now on as JSON (`true`) or text.
pub fn set_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}
