//! The access log: one record per proxied request, written when its response head is ready
//! (refusals included), so an operator can answer "did ann's script call us at 14:03, and what
//! did it get?". Never the secret or the `Authorization` header: the record names the token by
//! id and its owner by email.
//!
//! Records are `tracing` events of their own target, [`TARGET`]: `main` routes them past the
//! log level (`log.access` alone turns them on or off) and, with `log.format = "json"`, writes
//! each as one JSON object whose keys are the record's fields.

use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderValue, Method};

/// The `tracing` target of access records.
pub const TARGET: &str = "tokengate::access";

/// What the access log says of one request.
pub struct AccessRecord<'a> {
    /// The request's `X-Request-Id`, as sent upstream and back.
    pub request_id: &'a HeaderValue,
    /// The client's address (see `proxy.trusted_proxies`); `None` when the request was refused
    /// before it was read.
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

impl AccessRecord<'_> {
    /// Writes the record. Fields without a value are left out.
    pub fn write(&self) {
        tracing::info!(
            target: TARGET,
            request_id = self.request_id.to_str().unwrap_or("-"),
            client_ip = self.client_ip.map(tracing::field::display),
            method = self.method.as_str(),
            path = self.path,
            route = self.route,
            status = self.status,
            duration_ms = milliseconds(self.duration),
            upstream_ms = self.upstream.map(milliseconds),
            token_id = self.token_id,
            user = self.user,
            outcome = self.outcome,
            "access"
        );
    }
}

/// Milliseconds with microsecond precision (`0.412`).
fn milliseconds(duration: Duration) -> f64 {
    duration.as_micros() as f64 / 1000.0
}
