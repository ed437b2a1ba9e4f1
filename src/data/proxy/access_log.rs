//! The access log: one record per proxied request, written when its response head is ready
//! (refusals included), so an operator can answer "did ann's script call us at 14:03, and what
//! did it get?". Never the secret or the `Authorization` header: the record names the token by
//! id and its owner by email; the path is written without its query string.
//!
//! Written by the gateway itself rather than through `tracing`: a `tracing` event formatted by
//! the subscriber cost about 24 000 instructions per request (measured with
//! `scripts/proxy-instructions`), half again the cost of proxying. Here a request formats its
//! line into a shared buffer (a short critical section: a copy of ~250 bytes) and a writer
//! thread of its own writes the buffer to stderr every [`FLUSH_EVERY`] or once it holds
//! [`FLUSH_AT`], so requests never wait on the log's pipe. If the pipe stops taking lines the
//! buffer stops growing at [`MAX_PENDING`] and further records are dropped (counted, and said
//! in the log once) rather than holding memory or requests.

use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use http::{HeaderValue, Method};
use serde::Serialize;

/// How often the writer thread writes what is pending.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Pending bytes that wake the writer at once.
const FLUSH_AT: usize = 64 * 1024;
/// Pending bytes beyond which records are dropped (the log's reader is not keeping up).
const MAX_PENDING: usize = 8 * 1024 * 1024;

/// What the access log says of one request.
pub struct AccessRecord<'a> {
    /// The request's `X-Request-Id`, as sent upstream and back.
    pub request_id: &'a HeaderValue,
    /// The client's address (see `proxy.trusted_proxies`); `None` when the request was refused
    /// before it was known.
    pub client_ip: Option<IpAddr>,
    /// The request's method.
    pub method: &'a Method,
    /// The path as the client sent it, without the query string (which may carry secrets).
    pub path: &'a str,
    /// The matched route's prefix; `None` when no route matched.
    pub route: Option<&'a str>,
    /// The status sent to the client.
    pub status: u16,
    /// From the request's arrival to its response head.
    pub duration: Duration,
    /// Waiting for the upstream's response head; `None` when nothing was sent upstream.
    pub upstream: Option<Duration>,
    /// The token presented, when the gateway knew it (admitted, or revoked, expired or blocked).
    pub token_id: Option<i64>,
    /// The token's owner, when the token was admitted.
    pub user: Option<&'a str>,
    /// How the request ended, as `tokengate_requests_total{outcome}` counts it.
    pub outcome: &'static str,
}

/// A record as one JSON object: the contract's keys at the top level, absent values left out.
#[derive(Serialize)]
struct JsonLine<'a> {
    timestamp: &'a str,
    level: &'static str,
    target: &'static str,
    message: &'static str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ip: Option<IpAddr>,
    method: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    status: u16,
    duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    outcome: &'static str,
}

/// The `target` of access records in JSON, as other log lines name their module.
pub const TARGET: &str = "tokengate::access";

/// The access log of one gateway: the pending lines and the thread that writes them.
pub struct AccessLog {
    /// JSON lines rather than text (`log.format`); `SIGHUP` can switch it.
    json: AtomicBool,
    shared: Arc<Shared>,
}

struct Shared {
    pending: Mutex<Vec<u8>>,
    wake: Condvar,
    stopped: AtomicBool,
    dropped: AtomicU64,
}

impl AccessLog {
    /// An access log writing to stderr, as JSON lines when `json`, else as text; starts its
    /// writer thread.
    pub fn to_stderr(json: bool) -> Arc<AccessLog> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::with_capacity(FLUSH_AT)),
            wake: Condvar::new(),
            stopped: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        });
        let writer = Arc::clone(&shared);
        let spawned = std::thread::Builder::new().name("access-log".into()).spawn(move || writer.run());
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the access log's writer; access records are dropped");
            shared.stopped.store(true, Ordering::Relaxed);
        }
        Arc::new(AccessLog { json: AtomicBool::new(json), shared })
    }

    /// Writes records from now on as JSON lines (`true`) or text.
    pub fn set_json(&self, json: bool) {
        self.json.store(json, Ordering::Relaxed);
    }

    /// Appends one record.
    pub fn write(&self, record: &AccessRecord<'_>) {
        if self.shared.stopped.load(Ordering::Relaxed) {
            return;
        }
        let mut line = Vec::with_capacity(320);
        let stamp = timestamp_now();
        // ASCII by construction.
        let timestamp = std::str::from_utf8(&stamp).unwrap_or("1970-01-01T00:00:00.000Z");
        if self.json.load(Ordering::Relaxed) {
            let json = JsonLine {
                timestamp,
                level: "INFO",
                target: TARGET,
                message: "access",
                request_id: record.request_id.to_str().unwrap_or("-"),
                client_ip: record.client_ip,
                method: record.method.as_str(),
                path: record.path,
                route: record.route,
                status: record.status,
                duration_ms: milliseconds(record.duration),
                upstream_ms: record.upstream.map(milliseconds),
                token_id: record.token_id,
                user: record.user,
                outcome: record.outcome,
            };
            if serde_json::to_writer(&mut line, &json).is_err() {
                return;
            }
        } else {
            write_text(&mut line, timestamp, record);
        }
        line.push(b'\n');
        let mut pending = self.shared.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.len() + line.len() > MAX_PENDING {
            drop(pending);
            if self.shared.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!("the access log's reader is not keeping up: access records are being dropped");
            }
            return;
        }
        pending.extend_from_slice(&line);
        let full = pending.len() >= FLUSH_AT;
        drop(pending);
        if full {
            self.shared.wake.notify_one();
        }
    }

    /// Writes what is pending now (at shutdown, after the last request), and stops the writer.
    pub fn close(&self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
        self.shared.write_pending();
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(dropped, "access records dropped because the log's reader did not keep up");
        }
    }
}

impl Shared {
    /// The writer thread: every [`FLUSH_EVERY`], or sooner when woken, until stopped.
    fn run(&self) {
        while !self.stopped.load(Ordering::Relaxed) {
            let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            let (pending, _) = self.wake.wait_timeout(pending, FLUSH_EVERY).unwrap_or_else(PoisonError::into_inner);
            drop(pending);
            self.write_pending();
        }
    }

    /// Takes the pending lines and writes them; a failed write loses them (stderr is gone).
    fn write_pending(&self) {
        let lines = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if pending.is_empty() {
                return;
            }
            std::mem::replace(&mut *pending, Vec::with_capacity(FLUSH_AT))
        };
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(&lines).and_then(|()| stderr.flush());
    }
}

/// `key=value` pairs after the time, as the text log writes its lines.
fn write_text(line: &mut Vec<u8>, timestamp: &str, record: &AccessRecord<'_>) {
    let mut numbers = itoa::Buffer::new();
    line.extend_from_slice(timestamp.as_bytes());
    line.extend_from_slice(b"  INFO tokengate::access: access request_id=");
    line.extend_from_slice(record.request_id.as_bytes());
    if let Some(ip) = record.client_ip {
        let _ = write!(line, " client_ip={ip}");
    }
    line.extend_from_slice(b" method=");
    line.extend_from_slice(record.method.as_str().as_bytes());
    line.extend_from_slice(b" path=");
    line.extend_from_slice(record.path.as_bytes());
    if let Some(route) = record.route {
        line.extend_from_slice(b" route=");
        line.extend_from_slice(route.as_bytes());
    }
    line.extend_from_slice(b" status=");
    line.extend_from_slice(numbers.format(record.status).as_bytes());
    let _ = write!(line, " duration_ms={:.3}", milliseconds(record.duration));
    if let Some(upstream) = record.upstream {
        let _ = write!(line, " upstream_ms={:.3}", milliseconds(upstream));
    }
    if let Some(token_id) = record.token_id {
        line.extend_from_slice(b" token_id=");
        line.extend_from_slice(numbers.format(token_id).as_bytes());
    }
    if let Some(user) = record.user {
        line.extend_from_slice(b" user=");
        line.extend_from_slice(user.as_bytes());
    }
    line.extend_from_slice(b" outcome=");
    line.extend_from_slice(record.outcome.as_bytes());
}

/// Now as RFC 3339 with milliseconds (`2026-12-07T14:03:11.402Z`), written into 24 bytes
/// without a formatter or an allocation (the `time` crate's formatter took a third of a
/// record's cost).
fn timestamp_now() -> [u8; 24] {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let seconds = i64::try_from(now.as_secs()).unwrap_or(0);
    let mut out = *b"1970-01-01T00:00:00.000Z";
    if let Some(text) = crate::clock::rfc3339_bytes(seconds) {
        // `2026-12-07T14:03:11Z`: the milliseconds go before the `Z`.
        out[..19].copy_from_slice(&text[..19]);
    }
    let millis = now.subsec_millis();
    out[20] = b'0' + (millis / 100) as u8;
    out[21] = b'0' + (millis / 10 % 10) as u8;
    out[22] = b'0' + (millis % 10) as u8;
    out
}

/// Milliseconds with microsecond precision (`0.412`).
fn milliseconds(duration: Duration) -> f64 {
    duration.as_micros() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_carry_milliseconds() {
        let stamp = timestamp_now();
        let stamp = std::str::from_utf8(&stamp).unwrap();
        assert_eq!(stamp.len(), 24, "{stamp}");
        assert!(stamp.ends_with('Z') && stamp.as_bytes()[19] == b'.', "{stamp}");
        let seconds = crate::clock::parse_rfc3339(&format!("{}Z", &stamp[..19])).unwrap();
        assert!((crate::clock::Clock::System.now() - seconds).abs() <= 1);
    }

    #[test]
    fn text_records_name_every_known_field() {
        let id = HeaderValue::from_static("abc");
        let record = AccessRecord {
            request_id: &id,
            client_ip: Some("10.0.0.7".parse().unwrap()),
            method: &Method::GET,
            path: "/orders/7",
            route: Some("/"),
            status: 200,
            duration: Duration::from_micros(1384),
            upstream: None,
            token_id: Some(7),
            user: Some("ann@example.com"),
            outcome: "authorised",
        };
        let mut line = Vec::new();
        write_text(&mut line, "T", &record);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "T  INFO tokengate::access: access request_id=abc client_ip=10.0.0.7 method=GET path=/orders/7 route=/ \
             status=200 duration_ms=1.384 token_id=7 user=ann@example.com outcome=authorised"
        );
    }
}
