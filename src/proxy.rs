//! The data path: one request from arrival to the upstream's response, as named phases.
//!
//! route → client address → authenticate → authorise scopes → record use → forward.
//! Nothing here touches the database: the index answers who the caller is, the usage
//! recorder takes the last use in memory.

pub mod authenticate;
pub mod client_ip;
pub mod credentials;
pub mod forward;
pub mod pinned;
pub mod progress;
pub mod reject;
pub mod route;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::USER_AGENT;
use http::{HeaderValue, Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use ipnet::IpNet;

use crate::clock::Clock;
use crate::config::Config;
use crate::index::TokenIndex;
use crate::metrics::{KindLabels, Metrics, ReasonLabels};
use crate::ratelimit::{LimitHeaders, RateLimits, TokenVerdict};
use crate::usage::{Refusal, UsageRecorder};
use authenticate::{Identity, authenticate};
use forward::{Caller, ForwardError, X_AUTH_TOKEN_EXPIRES};
use pinned::{Pinned, Upstreams};
use route::{Router, canonical_path};

/// Paths in log lines are cut to this many bytes: they are chosen by the client.
const LOGGED_PATH_MAX: usize = 200;

/// The first [`LOGGED_PATH_MAX`] bytes of a path, cut at a character boundary.
fn loggable(path: &str) -> &str {
    let mut end = path.len().min(LOGGED_PATH_MAX);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

/// A response body: the upstream's, streamed, or one of the gateway's own.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Everything the data path reads, built once at start.
pub struct Proxy {
    router: Router,
    index: Arc<TokenIndex>,
    usage: Arc<UsageRecorder>,
    clock: Clock,
    upstreams: Arc<Upstreams>,
    limits: Arc<RateLimits>,
    metrics: Arc<Metrics>,
    /// The route label of requests that matched none.
    no_route_label: Arc<str>,
    challenge: HeaderValue,
    trusted_proxies: Vec<IpNet>,
    upstream_timeout: Duration,
    /// The proxy listener terminates TLS.
    over_tls: bool,
}

impl Proxy {
    pub fn new(
        config: &Config,
        index: Arc<TokenIndex>,
        usage: Arc<UsageRecorder>,
        limits: Arc<RateLimits>,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Self {
        Proxy {
            router: Router::new(&config.routes),
            index,
            usage,
            clock,
            upstreams: Arc::new(Upstreams::new(config.proxy.connect_timeout, (*config.proxy.upstream_tls).clone())),
            over_tls: config.proxy.tls.is_some(),
            limits,
            metrics,
            no_route_label: Arc::from("none"),
            challenge: reject::challenge(&config.proxy.realm),
            trusted_proxies: config.proxy.trusted_proxies.clone(),
            upstream_timeout: config.proxy.upstream_timeout,
        }
    }

    /// The upstream connection slot of a new client connection.
    pub fn pin(&self) -> Pinned {
        Pinned::new(Arc::clone(&self.upstreams))
    }

    /// Handles one request from `peer`.
    /// Handles one request from `peer`, forwarding on its connection's `pinned` upstream
    /// connection.
    pub async fn handle(&self, request: Request<Incoming>, peer: SocketAddr, pinned: &Pinned) -> Response<ProxyBody> {
        let started = std::time::Instant::now();
        let (response, route, outcome) = self.serve(request, peer, pinned).await;
        let route = route.unwrap_or_else(|| Arc::clone(&self.no_route_label));
        self.metrics.observe_request(route, response.status().as_u16(), outcome, started.elapsed());
        response
    }

    /// The phases; returns the response, the matched route's label and the outcome.
    async fn serve(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        pinned: &Pinned,
    ) -> (Response<ProxyBody>, Option<Arc<str>>, &'static str) {
        // Routed, recorded and forwarded in one canonical form, so the router and the upstream
        // never disagree about which resource is meant.
        // A handle on the request's own path bytes (a reference-counted clone, no copy), so the
        // canonical form can borrow it after the request moves on; it allocates only when the
        // path had to be rewritten.
        let raw_path = request.uri().path_and_query().cloned();
        let raw_path = raw_path.as_ref().map_or("/", |p| p.path());
        let path = match canonical_path(raw_path) {
            Ok(path) => path,
            Err(error) => {
                tracing::info!(?error, path = loggable(raw_path), "request refused: unsafe path");
                return (reject::bad_path(), None, "rejected");
            }
        };
        let path = &*path;
        let Some(route) = self.router.route(path).cloned() else {
            return (reject::no_route(), None, "rejected");
        };
        let label = Some(Arc::clone(&route.label));
        let client_ip = client_ip::client_ip(peer.ip(), request.headers(), &self.trusted_proxies);
        let peer_trusted = client_ip::is_trusted(peer.ip().to_canonical(), &self.trusted_proxies);

        let identity = if route.public {
            None
        } else {
            // An address that failed too often waits, whatever it presents now.
            if let Some(retry_after) = self.limits.address_blocked(client_ip) {
                tracing::info!(client = %client_ip, retry_after, "request refused: too many failed authentications");
                self.metrics.rate_limited.get_or_create(&KindLabels { kind: "failed_auth" }).inc();
                return (reject::too_many_requests(retry_after, None), label, "rate_limited");
            }
            let now = self.clock.now();
            match authenticate(&self.index, request.headers(), now) {
                Ok(identity) => Some(identity),
                Err(failure) => {
                    tracing::info!(reason = failure.reason(), client = %client_ip, method = %request.method(),
                        path = loggable(path), "request refused: unauthenticated");
                    if let Some(token_id) = failure.dead_token() {
                        self.usage.record_refusal(Refusal {
                            token_id,
                            at: now,
                            reason: failure.reason(),
                            method: request.method(),
                            path,
                            ip: client_ip,
                            user_agent: request.headers().get(USER_AGENT).and_then(|v| v.to_str().ok()),
                        });
                    }
                    self.metrics.auth_failures.get_or_create(&ReasonLabels { reason: failure.reason() }).inc();
                    if let Some(retry_after) = self.limits.record_failed_auth(client_ip) {
                        tracing::warn!(client = %client_ip, retry_after, "too many failed authentications; address blocked");
                        self.metrics.rate_limited.get_or_create(&KindLabels { kind: "failed_auth" }).inc();
                        return (reject::too_many_requests(retry_after, None), label, "rate_limited");
                    }
                    return (reject::unauthorized(&self.challenge), label, "unauthenticated");
                }
            }
        };

        let mut limit_headers = None;
        if let Some(identity) = &identity {
            if let Some(scope) = route.require.for_method(request.method())
                && !identity.token.has_scope(scope)
            {
                tracing::info!(token_id = identity.token.id, scope, client = %client_ip, "request refused: missing scope");
                return (reject::missing_scope(scope), label, "forbidden");
            }
            match self.limits.admit_token(identity.token.id, identity.token.rate_limit).await {
                TokenVerdict::Limited { retry_after, headers } => {
                    tracing::info!(token_id = identity.token.id, retry_after, "request refused: rate limited");
                    self.metrics.rate_limited.get_or_create(&KindLabels { kind: "token" }).inc();
                    return (reject::too_many_requests(retry_after, Some(&headers)), label, "rate_limited");
                }
                TokenVerdict::Allowed(headers) => limit_headers = Some(headers),
                TokenVerdict::Unlimited => {}
            }
            let now = self.clock.now();
            self.usage.record(identity.token.id, now, request.method(), path, client_ip);
            if let Some(predecessor) = identity.token.handover_from {
                self.hand_over(identity.token.id, predecessor, now);
            }
        }

        let caller = Caller {
            client_ip,
            peer: peer.ip().to_canonical(),
            peer_trusted,
            over_tls: self.over_tls,
            identity: identity.as_ref(),
        };
        let client_version = request.version();
        let Some(upstream_request) = forward::upstream_request(request, path, &route, &caller) else {
            return (reject::bad_path(), label, "rejected");
        };
        let outcome = if identity.is_some() { "authorised" } else { "public" };
        let upstream_started = std::time::Instant::now();
        let sent = forward::send(pinned, &route, upstream_request, client_version, self.upstream_timeout).await;
        self.metrics.upstream_duration.observe(upstream_started.elapsed().as_secs_f64());
        match sent {
            Ok(response) => (respond(response, identity.as_ref(), limit_headers.as_ref()), label, outcome),
            Err(ForwardError::Unreachable(error)) => {
                tracing::warn!(upstream = %route.upstream, %error, "upstream unreachable");
                (reject::bad_gateway(), label, "upstream_error")
            }
            Err(ForwardError::TimedOut) => {
                tracing::warn!(upstream = %route.upstream, timeout_ms = self.upstream_timeout.as_millis() as u64,
                    "upstream timed out");
                (reject::gateway_timeout(), label, "upstream_error")
            }
        }
    }
}

impl Proxy {
    /// A rotation successor's first use: its predecessor stops working here at once, and the
    /// flusher records the revocation so every other gateway follows.
    fn hand_over(&self, successor: i64, predecessor: i64, now: crate::clock::UnixTime) {
        self.index.update_locally(predecessor, |token| token.revoked_at = Some(now));
        self.index.update_locally(successor, |token| token.handover_from = None);
        self.usage.record_handover(successor, predecessor, now);
        tracing::info!(successor, predecessor, "rotation successor used; predecessor revoked");
    }
}

/// The upstream's response as the client gets it: its body streamed, the token's expiry added.
fn respond(
    response: Response<Incoming>,
    identity: Option<&Identity>,
    limit: Option<&LimitHeaders>,
) -> Response<ProxyBody> {
    let mut response = response.map(Either::Left);
    if let Some(expires) = identity.and_then(|i| i.token.headers.expires.clone()) {
        response.headers_mut().insert(&X_AUTH_TOKEN_EXPIRES, expires);
    }
    if let Some(limit) = limit {
        limit.apply(response.headers_mut());
    }
    response
}
