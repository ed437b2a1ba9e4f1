//! Printing: one JSON document on stdout with `--json`, else an aligned table; notes on stderr.
//!
//! Every byte the CLI prints goes through [`out_line`] and [`note`] (the `outln!` and `note!`
//! macros; `print!` and friends are linted out of `cli`), because `println!` panics when its pipe
//! is closed: `tokengate token list | head -n 1` must end quietly, not with exit 101.

use std::fmt;
use std::io::Write;

use serde::Serialize;

use super::CliError;

/// Writes one line to stdout. A closed pipe (the reader has gone, as with `| head`) becomes
/// [`CliError::OutputClosed`], which ends the command at once and exits 0 without a message:
/// nobody is left to read anything more.
pub(super) fn out_line(args: fmt::Arguments<'_>) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{args}").and_then(|()| stdout.flush()).map_err(stdout_error)
}

/// Writes a generated document (completions, a man page) to stdout, as [`out_line`] does.
/// Generators write to any `Write` and panic when it fails, so they write to memory first.
pub(super) fn out_bytes(bytes: &[u8]) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes).and_then(|()| stdout.flush()).map_err(stdout_error)
}

fn stdout_error(error: std::io::Error) -> CliError {
    match error.kind() {
        std::io::ErrorKind::BrokenPipe => CliError::OutputClosed,
        _ => CliError::Runtime(format!("cannot write to stdout: {error}")),
    }
}

/// Writes one line of human text to stderr. Failures are ignored: a closed stderr has no
/// reader to tell, and the command's result (on stdout and in its exit status) still stands.
pub(super) fn note(args: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

pub(super) fn print_json(value: &impl Serialize) -> Result<(), CliError> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| CliError::Runtime(format!("cannot encode JSON: {e}")))?;
    outln!("{text}")
}

/// Prints rows under headers, each column as wide as its widest cell.
pub(super) fn print_table(headers: &[&str], rows: &[Vec<String>]) -> Result<(), CliError> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        outln!("{}", padded.join("  ").trim_end())
    };
    line(headers.to_vec())?;
    for row in rows {
        line(row.iter().map(String::as_str).collect())?;
    }
    Ok(())
}

/// A cell for an optional value.
pub(super) fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}
