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
use http::{HeaderValue, Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use ipnet::IpNet;

use crate::config::Config;
use crate::data::gate::{Attempt, Gate, Refusal, loggable};
use crate::data::ratelimit::{LimitHeaders, RateLimits, TokenVerdict};
use crate::metrics::{KindLabels, Metrics};
use authenticate::Identity;
use forward::{ForwardContext, ForwardError, RequestHeaderPolicy, X_AUTH_TOKEN_EXPIRES};
use pinned::{Pinned, Upstreams};
use route::{Router, canonical_path};

/// How a proxied request ended, as `tokengate_requests_total{outcome}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Authenticated, authorised and forwarded (whatever the upstream answered).
    Authorised,
    /// Forwarded on a public route, without authentication.
    Public,
    /// 401: no usable credentials.
    Unauthenticated,
    /// 403: the token lacks the route's scope.
    Forbidden,
    /// 429: the token's limit, or an address that failed too often.
    RateLimited,
    /// 502 or 504: the upstream could not be reached or did not answer in time.
    UpstreamError,
    /// 400 or 404 before any authentication: a method, path or route the gateway refuses.
    Rejected,
}

impl Outcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Authorised => "authorised",
            Outcome::Public => "public",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::Forbidden => "forbidden",
            Outcome::RateLimited => "rate_limited",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Rejected => "rejected",
        }
    }
}

/// A response body: the upstream's, streamed, or one of the gateway's own.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Everything the data path reads, built once at start.
pub struct Proxy {
    router: Router,
    gate: Arc<Gate>,
    upstreams: Arc<Upstreams>,
    limits: Arc<RateLimits>,
    metrics: Arc<Metrics>,
    /// The route label of requests that matched none.
    no_route_label: Arc<str>,
    challenge: HeaderValue,
    trusted_proxies: Vec<IpNet>,
    upstream_timeout: Duration,
    /// Which client headers never reach an upstream.
    header_policy: RequestHeaderPolicy,
    /// The proxy listener terminates TLS.
    over_tls: bool,
}

impl Proxy {
    /// The data path of a configuration: its routes, upstream connections and header rules,
    /// admitting requests through the shared `gate`.
    pub fn new(config: &Config, gate: Arc<Gate>, limits: Arc<RateLimits>, metrics: Arc<Metrics>) -> Self {
        Proxy {
            router: Router::new(&config.routes),
            gate,
            upstreams: Arc::new(Upstreams::new(config.proxy.connect_timeout, (*config.proxy.upstream_tls).clone())),
            over_tls: config.proxy.tls.is_some(),
            limits,
            metrics,
            no_route_label: Arc::from("none"),
            challenge: reject::challenge(&config.proxy.realm),
            trusted_proxies: config.proxy.trusted_proxies.clone(),
            upstream_timeout: config.proxy.upstream_timeout,
            header_policy: RequestHeaderPolicy::new(&config.proxy.strip_request_headers),
        }
    }

    /// The upstream connection slot of a new client connection.
    pub fn pin(&self) -> Pinned {
        Pinned::new(Arc::clone(&self.upstreams))
    }

    /// Handles one request from `peer`, forwarding on its connection's `pinned` upstream
    /// connection.
    pub async fn handle(&self, request: Request<Incoming>, peer: SocketAddr, pinned: &Pinned) -> Response<ProxyBody> {
        let started = std::time::Instant::now();
        let (response, route, outcome) = self.serve(request, peer, pinned).await;
        let route = route.unwrap_or_else(|| Arc::clone(&self.no_route_label));
        self.metrics.observe_request(route, response.status().as_u16(), outcome.as_str(), started.elapsed());
        response
    }

    /// The phases; returns the response, the matched route's label and the outcome.
    async fn serve(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        pinned: &Pinned,
    ) -> (Response<ProxyBody>, Option<Arc<str>>, Outcome) {
        // A method the upstream might read differently from us (`delete` executed as DELETE by
        // frameworks that upper-case it) never reaches it: scopes are decided per method.
        if !route::is_standard_spelling(request.method()) {
            tracing::info!(method = %request.method(), "request refused: method not in upper case");
            return (reject::bad_method(), None, Outcome::Rejected);
        }
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
                return (reject::bad_path(), None, Outcome::Rejected);
            }
        };
        let path = &*path;
        let route = match self.router.route(path) {
            Ok(Some(route)) => Arc::clone(route),
            Ok(None) => return (reject::no_route(), None, Outcome::Rejected),
            Err(error) => {
                tracing::info!(?error, path = loggable(path), "request refused: ambiguous path");
                return (reject::bad_path(), None, Outcome::Rejected);
            }
        };
        let label = Some(Arc::clone(&route.label));
        let client_ip = client_ip::client_ip(peer.ip(), request.headers(), &self.trusted_proxies);
        let peer_trusted = client_ip::is_trusted(peer.ip().to_canonical(), &self.trusted_proxies);

        let mut limit_headers = None;
        let identity = if route.public {
            None
        } else {
            let attempt = Attempt { headers: request.headers(), method: request.method(), path, client_ip };
            let identity = match self.gate.admit(&attempt, "proxy") {
                Ok(identity) => identity,
                Err(Refusal::Unauthenticated) => {
                    return (reject::unauthorized(&self.challenge), label, Outcome::Unauthenticated);
                }
                Err(Refusal::Throttled { retry_after }) => {
                    return (reject::too_many_requests(retry_after, None), label, Outcome::RateLimited);
                }
            };
            if let Some(scope) = route.require.for_method(request.method())
                && !identity.token.has_scope(scope)
            {
                tracing::info!(token_id = identity.token.id, scope, client = %client_ip, "request refused: missing scope");
                return (reject::missing_scope(scope), label, Outcome::Forbidden);
            }
            match self.limits.admit_token(identity.token.id, identity.token.rate_limit).await {
                TokenVerdict::Limited { retry_after, headers } => {
                    tracing::info!(token_id = identity.token.id, retry_after, "request refused: rate limited");
                    self.metrics.rate_limited.get_or_create(&KindLabels { kind: "token" }).inc();
                    return (reject::too_many_requests(retry_after, Some(&headers)), label, Outcome::RateLimited);
                }
                TokenVerdict::Allowed(headers) => limit_headers = Some(headers),
                TokenVerdict::Unlimited => {}
            }
            self.gate.record_use(&identity, &attempt).await;
            Some(identity)
        };

        let caller = ForwardContext {
            client_ip,
            peer: peer.ip().to_canonical(),
            peer_trusted,
            over_tls: self.over_tls,
            identity: identity.as_ref(),
        };
        let client_version = request.version();
        let Some(upstream_request) = forward::upstream_request(request, path, &route, &caller, &self.header_policy)
        else {
            return (reject::bad_path(), label, Outcome::Rejected);
        };
        let outcome = if identity.is_some() { Outcome::Authorised } else { Outcome::Public };
        let upstream_started = std::time::Instant::now();
        let sent = forward::send(pinned, &route, upstream_request, client_version, self.upstream_timeout).await;
        self.metrics.upstream_duration.observe(upstream_started.elapsed().as_secs_f64());
        match sent {
            Ok(response) => (respond(response, identity.as_ref(), limit_headers.as_ref()), label, outcome),
            Err(ForwardError::Unreachable(error)) => {
                tracing::warn!(upstream = %route.upstream, %error, "upstream unreachable");
                (reject::bad_gateway(), label, Outcome::UpstreamError)
            }
            Err(ForwardError::TimedOut) => {
                tracing::warn!(upstream = %route.upstream, timeout_ms = self.upstream_timeout.as_millis() as u64,
                    "upstream timed out");
                (reject::gateway_timeout(), label, Outcome::UpstreamError)
            }
        }
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
