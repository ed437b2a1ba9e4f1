//! The load `proxy_load` puts on each target: one workload's request, sent back to back on
//! `CONNECTIONS` keep-alive connections, each request with the next of the tokens'
//! Authorization headers (round-robin), by `wrk` with a Lua script or by an in-process client.

use std::cell::Cell;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::servers::find_on_path;

/// Keep-alive connections of the load generator, as the issue measures.
pub(crate) const CONNECTIONS: usize = 64;

/// One request, repeated: the same for every target.
pub(crate) struct Workload {
    /// Its name in `PROXY_LOAD_WORKLOADS`.
    pub(crate) key: &'static str,
    pub(crate) title: &'static str,
    pub(crate) method: &'static str,
    pub(crate) path: &'static str,
    /// Request body bytes (all `x`); 0: none.
    pub(crate) body_bytes: usize,
}

impl Workload {
    pub(crate) fn body(&self) -> Vec<u8> {
        vec![b'x'; self.body_bytes]
    }
}

/// What one measured run of the load generator saw.
pub(crate) struct LoadResult {
    pub(crate) requests: u64,
    pub(crate) seconds: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) non_2xx: u64,
    pub(crate) errors: u64,
}

/// wrk's Lua script: builds every request once (one per line of the file in
/// `PROXY_LOAD_AUTHORIZATIONS`, with that line as the Authorization header), then hands them out
/// round-robin, so consecutive requests, on whichever connection, carry different tokens.
const WRK_SCRIPT: &str = r#"
local requests = {}
local next_request = 0

function init(args)
  local method = os.getenv("PROXY_LOAD_METHOD")
  local path = os.getenv("PROXY_LOAD_PATH")
  local body_bytes = tonumber(os.getenv("PROXY_LOAD_BODY_BYTES"))
  local body = nil
  local headers = {}
  if body_bytes > 0 then
    body = string.rep("x", body_bytes)
    headers["Content-Type"] = "application/octet-stream"
  end
  for line in io.lines(os.getenv("PROXY_LOAD_AUTHORIZATIONS")) do
    headers["Authorization"] = line
    requests[#requests + 1] = wrk.format(method, path, headers, body)
  end
end

function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end
"#;

/// The load generator: wrk or the in-process client. Both keep a runtime for the requests the
/// bench sends itself (`statuses_of_each`).
pub(crate) struct Load {
    runtime: tokio::runtime::Runtime,
    wrk: Option<Wrk>,
    authorizations: Vec<String>,
}

struct Wrk {
    binary: PathBuf,
    script: PathBuf,
    authorizations: PathBuf,
}

impl Load {
    /// wrk when it is on PATH, unless `PROXY_LOAD_CLIENT=builtin`; its script and the file of
    /// Authorization headers are written into `dir`.
    pub(crate) fn choose(authorizations: Vec<String>, dir: &Path) -> Load {
        // One thread, like wrk -t1.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let forced = std::env::var("PROXY_LOAD_CLIENT").is_ok_and(|c| c == "builtin");
        let wrk = find_on_path("wrk").filter(|_| !forced).map(|binary| {
            let script = dir.join("round_robin.lua");
            std::fs::write(&script, WRK_SCRIPT).unwrap();
            let file = dir.join("authorizations.txt");
            std::fs::write(&file, authorizations.join("\n") + "\n").unwrap();
            Wrk { binary, script, authorizations: file }
        });
        Load { runtime, wrk, authorizations }
    }

    pub(crate) fn describe(&self) -> String {
        match &self.wrk {
            Some(wrk) => format!(
                "{} -t1 -c{CONNECTIONS} --latency -s (a Lua script: one Authorization header per request, round-robin)",
                wrk.binary.display()
            ),
            None => format!(
                "the in-process client (one thread, {CONNECTIONS} connections, Authorization headers round-robin; \
                 wrk not found or PROXY_LOAD_CLIENT=builtin)"
            ),
        }
    }

    /// `wrk -v`'s first line, for the report.
    pub(crate) fn version(&self) -> String {
        let Some(wrk) = &self.wrk else { return "builtin client".to_owned() };
        // wrk prints its version with the usage text and exits with status 1.
        let output = Command::new(&wrk.binary).arg("-v").output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        let first = text.lines().next().unwrap_or("wrk (version unknown)");
        first.split(" Copyright").next().unwrap_or(first).trim().to_owned()
    }

    pub(crate) fn run(&self, workload: &Workload, addr: SocketAddr, duration: Duration) -> LoadResult {
        match &self.wrk {
            Some(wrk) => run_wrk(wrk, workload, addr, duration),
            None => self.runtime.block_on(run_builtin(&self.authorizations, workload, addr, duration)),
        }
    }

    /// The status of `workload` sent once with each Authorization header, in order, on one
    /// keep-alive connection.
    pub(crate) fn statuses_of_each(&self, workload: &Workload, addr: SocketAddr) -> Vec<u16> {
        self.runtime.block_on(async {
            let body = Bytes::from(workload.body());
            let mut sender = connect(addr).await.unwrap();
            let mut statuses = Vec::new();
            for authorization in &self.authorizations {
                if sender.ready().await.is_err() {
                    sender = connect(addr).await.unwrap();
                }
                let response = sender.send_request(request(workload, addr, authorization, &body)).await.unwrap();
                statuses.push(response.status().as_u16());
                response.into_body().collect().await.unwrap();
            }
            statuses
        })
    }
}

fn run_wrk(wrk: &Wrk, workload: &Workload, addr: SocketAddr, duration: Duration) -> LoadResult {
    let output = Command::new(&wrk.binary)
        .args(["-t1", &format!("-c{CONNECTIONS}"), &format!("-d{}s", duration.as_secs().max(1)), "--latency", "-s"])
        .arg(&wrk.script)
        .arg(format!("http://{addr}{}", workload.path))
        .env("PROXY_LOAD_METHOD", workload.method)
        .env("PROXY_LOAD_PATH", workload.path)
        .env("PROXY_LOAD_BODY_BYTES", workload.body_bytes.to_string())
        .env("PROXY_LOAD_AUTHORIZATIONS", &wrk.authorizations)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "wrk failed: {}\n{text}", String::from_utf8_lossy(&output.stderr));
    parse_wrk(&text)
}

/// Reads wrk's `--latency` report.
fn parse_wrk(text: &str) -> LoadResult {
    let mut result =
        LoadResult { requests: 0, seconds: 0.0, p50: Duration::ZERO, p99: Duration::ZERO, non_2xx: 0, errors: 0 };
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", value] => result.p50 = parse_wrk_duration(value),
            ["99%", value] => result.p99 = parse_wrk_duration(value),
            [count, "requests", "in", seconds, ..] => {
                result.requests = count.parse().unwrap();
                result.seconds = parse_wrk_duration(seconds.trim_end_matches(',')).as_secs_f64();
            }
            ["Non-2xx", "or", "3xx", "responses:", count] => result.non_2xx = count.parse().unwrap(),
            ["Socket", "errors:", ..] => {
                // Socket errors: connect 0, read 0, write 0, timeout 0
                result.errors = words.iter().filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok()).sum();
            }
            _ => {}
        }
    }
    assert!(result.seconds > 0.0, "no \"requests in\" line in wrk's output:\n{text}");
    result
}

/// wrk's durations: `812.00us`, `1.23ms`, `10.00s`, `1.50m`.
fn parse_wrk_duration(text: &str) -> Duration {
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().unwrap_or_else(|_| panic!("wrk duration {text:?}"));
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => panic!("wrk duration {text:?}"),
    };
    Duration::from_secs_f64(seconds)
}

/// CONNECTIONS keep-alive HTTP/1.1 connections, each sending the workload's request back to
/// back until `duration` has passed, each request with the next Authorization header. A
/// connection the server closes is opened again, as wrk does; only failures count as errors.
async fn run_builtin(
    authorizations: &[String],
    workload: &Workload,
    addr: SocketAddr,
    duration: Duration,
) -> LoadResult {
    let started = Instant::now();
    let deadline = started + duration;
    let body = Bytes::from(workload.body());
    let next = Cell::new(0usize);
    let connections = (0..CONNECTIONS).map(|_| async {
        let mut latencies = Vec::new();
        let (mut non_2xx, mut errors) = (0u64, 0u64);
        let mut open: Option<SendRequest<Full<Bytes>>> = None;
        while Instant::now() < deadline {
            let reused = match open.take() {
                Some(mut sender) => sender.ready().await.is_ok().then_some(sender),
                None => None,
            };
            let mut sender = match reused {
                Some(sender) => sender,
                None => match connect(addr).await {
                    Some(sender) => sender,
                    None => {
                        errors += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            let authorization = &authorizations[next.get() % authorizations.len()];
            next.set(next.get() + 1);
            let sent = Instant::now();
            let Ok(response) = sender.send_request(request(workload, addr, authorization, &body)).await else {
                errors += 1;
                continue;
            };
            let status = response.status();
            let closing = response.headers().get(http::header::CONNECTION).is_some_and(|v| v == "close");
            if response.into_body().collect().await.is_err() {
                errors += 1;
                continue;
            }
            latencies.push(sent.elapsed());
            if !(status.is_success() || status.is_redirection()) {
                non_2xx += 1;
            }
            if !closing {
                open = Some(sender);
            }
        }
        (latencies, non_2xx, errors)
    });
    let mut latencies = Vec::new();
    let (mut non_2xx, mut errors) = (0, 0);
    for (l, n, e) in futures_util::future::join_all(connections).await {
        latencies.extend(l);
        non_2xx += n;
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        if latencies.is_empty() {
            Duration::ZERO
        } else {
            latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
        }
    };
    LoadResult {
        requests: latencies.len() as u64,
        seconds,
        p50: percentile(0.50),
        p99: percentile(0.99),
        non_2xx,
        errors,
    }
}

fn request(workload: &Workload, addr: SocketAddr, authorization: &str, body: &Bytes) -> http::Request<Full<Bytes>> {
    let mut request = http::Request::builder()
        .method(workload.method)
        .uri(workload.path)
        .header(http::header::HOST, addr.to_string())
        .header(http::header::AUTHORIZATION, authorization);
    if !body.is_empty() {
        request = request.header(http::header::CONTENT_TYPE, "application/octet-stream");
    }
    request.body(Full::new(body.clone())).unwrap()
}

async fn connect(addr: SocketAddr) -> Option<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(connection);
    Some(sender)
}
