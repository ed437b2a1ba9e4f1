//! The gate every credential passes, on the proxy and on the admin API alike: authenticate,
//! throttle addresses that fail too often, note refused uses of dead tokens, and record an
//! admitted request as the token's use (handing a rotation over on the successor's first use).
//! One gate, so that a token's powers and its traces are the same whichever door it used.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::USER_AGENT;
use http::{HeaderMap, Method};

use crate::clock::Clock;
use crate::control::store::Store;
use crate::data::index::{IndexedToken, TokenIndex};
use crate::data::proxy::authenticate::{Identity, authenticate};
use crate::data::ratelimit::RateLimits;
use crate::data::usage::{Refusal as RefusedUse, UsageRecorder};
use crate::metrics::{KindLabels, Metrics, ReasonLabels};

/// A request presenting credentials: what the gate needs to decide and to record.
pub struct Attempt<'a> {
    /// The request's headers: the credentials and the user agent are read from them.
    pub headers: &'a HeaderMap,
    /// The request's method, recorded with the use.
    pub method: &'a Method,
    /// The canonical path (without query), as recorded for last use.
    pub path: &'a str,
    /// The client's address (see `trusted_proxies`): throttled when it fails too often, recorded
    /// with the use.
    pub client_ip: IpAddr,
}

/// Why the gate refused: the same answer whatever was wrong with the credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 401.
    Unauthenticated,
    /// 429: the address failed too often and failed again; it may retry after this many seconds.
    Throttled {
        /// Seconds until the address may try again, sent as `Retry-After`.
        retry_after: u64,
    },
}

/// A refusal, and the dead token (revoked, expired or blocked) that was presented, if it was
/// one: the proxy counts the request against that token's usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    /// What the caller is answered.
    pub refusal: Refusal,
    /// The id of the dead token presented; `None` for missing, malformed or unknown credentials.
    pub dead_token: Option<i64>,
}

/// The one gate: shared by the proxy and the admin API, so both authenticate, throttle and record
/// uses alike.
pub struct Gate {
    index: Arc<TokenIndex>,
    usage: Arc<UsageRecorder>,
    limits: Arc<RateLimits>,
    metrics: Arc<Metrics>,
    /// Written once per rotation: the hand-over at the successor's first use.
    store: Store,
    clock: Clock,
}

/// Paths in log lines are cut to this many bytes: they are chosen by the client.
const LOGGED_PATH_MAX: usize = 200;

/// The first `LOGGED_PATH_MAX` bytes of a path, cut at a character boundary.
pub fn loggable(path: &str) -> &str {
    let mut end = path.len().min(LOGGED_PATH_MAX);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

impl Gate {
    /// A gate over the gateway's index, usage recorder, limiters and metrics.
    pub fn new(
        index: Arc<TokenIndex>,
        usage: Arc<UsageRecorder>,
        limits: Arc<RateLimits>,
        metrics: Arc<Metrics>,
        store: Store,
        clock: Clock,
    ) -> Self {
        Gate { index, usage, limits, metrics, store, clock }
    }

    /// The clock the gate judges expiry and records uses by.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Authenticates the attempt. Valid credentials are admitted even from an address that is
    /// throttled; failing ones count against the address and, past its limit, get 429.
    pub fn admit(&self, attempt: &Attempt<'_>, door: &'static str) -> Result<Identity, Denied> {
        let now = self.clock.now();
        let failure = match authenticate(&self.index, attempt.headers, now) {
            Ok(identity) => return Ok(identity),
            Err(failure) => failure,
        };
        let dead_token = failure.dead_token();
        if let Some(token_id) = dead_token {
            self.usage.record_refusal(RefusedUse {
                token_id,
                at: now,
                reason: failure.reason(),
                method: attempt.method,
                path: attempt.path,
                ip: attempt.client_ip,
                user_agent: attempt.headers.get(USER_AGENT).and_then(|v| v.to_str().ok()),
            });
        }
        self.metrics.auth_failures.get_or_create(&ReasonLabels { reason: failure.reason() }).inc();
        match self.limits.failed_auth(attempt.client_ip) {
            Some(throttled) => {
                if throttled.first {
                    tracing::warn!(client = %attempt.client_ip, retry_after = throttled.retry_after, door,
                        "too many failed authentications; this address's failing requests get 429 until it recovers");
                }
                self.metrics.rate_limited.get_or_create(&KindLabels { kind: "failed_auth" }).inc();
                Err(Denied { refusal: Refusal::Throttled { retry_after: throttled.retry_after }, dead_token })
            }
            None => {
                tracing::info!(reason = failure.reason(), client = %attempt.client_ip, method = %attempt.method,
                    path = loggable(attempt.path), door, "request refused: unauthenticated");
                Err(Denied { refusal: Refusal::Unauthenticated, dead_token })
            }
        }
    }

    /// Counts a request presented with `token_id` on the route labelled `route` against the
    /// token's usage (in memory; added to the database with the next flush).
    pub fn count(&self, token_id: i64, route: &Arc<str>, outcome: crate::model::UsageOutcome) {
        self.usage.count(token_id, self.clock.now(), route, outcome);
    }

    /// Records an admitted request as the token's use (in memory; written in batches). The
    /// first use of a rotation's successor retires its predecessor, written to the database
    /// before this returns, so that a crash cannot bring the old token back.
    pub async fn record_use(&self, identity: &Identity, attempt: &Attempt<'_>) {
        let now = self.clock.now();
        let token = &identity.token;
        self.usage.record(token.id, now, attempt.method, attempt.path, attempt.client_ip);
        if let Some(predecessor) = token.handover_from() {
            self.usage.hand_over(&self.store, token.id, predecessor.id, now).await;
            if let Some(digest) = &predecessor.digest {
                self.index
                    .update_locally(digest, |old| old.revoked_at = Some(old.revoked_at.map_or(now, |at| at.min(now))));
            }
            self.index.update_locally(&identity.digest, IndexedToken::clear_handover);
            tracing::info!(
                successor = token.id,
                predecessor = predecessor.id,
                "rotation successor used; predecessor revoked"
            );
        }
    }
}
