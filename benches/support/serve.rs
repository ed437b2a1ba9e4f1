//! Starting `tokengate serve` as a child of a bench: JSON logs on a pipe, and the wait for its
//! "tokengate listening" line, which names the proxy's address. Shared by the benches that start
//! gateways (`#[path = "support/serve.rs"] mod serve;`).

use std::io::{BufRead, BufReader, Lines};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};

/// The log lines the gateway writes on stderr.
pub(crate) type LogLines = Lines<BufReader<ChildStderr>>;

/// Sets `command` (the tokengate binary, perhaps behind `taskset`) up as `--config config serve`
/// with JSON logs (warnings, and the gateway's start-up lines) on a pipe, and spawns it.
pub(crate) fn spawn_serve(mut command: Command, config: &Path) -> (Child, LogLines) {
    let mut child = command
        .args(["--config", config.to_str().unwrap(), "serve"])
        .env("TOKENGATE_LOG_FORMAT", "json")
        .env("TOKENGATE_LOG", "warn,tokengate::gateway=info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    (child, lines)
}

/// Reads log lines until the gateway says it listens and returns its proxy address; every other
/// line goes to `other`. `None`: the gateway's log ended first (it exited).
pub(crate) fn wait_until_listening(lines: &mut LogLines, mut other: impl FnMut(&str)) -> Option<SocketAddr> {
    for line in lines.by_ref().map_while(Result::ok) {
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(entry) if entry["fields"]["message"] == "tokengate listening" => {
                return Some(entry["fields"]["proxy"].as_str().unwrap().parse().unwrap());
            }
            _ => other(&line),
        }
    }
    None
}
