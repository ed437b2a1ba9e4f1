//! The data path: one request from arrival to the upstream's response, as named phases.
//!
//! route → client address → authenticate → authorise scopes → record use → forward.
//! Nothing here touches the database: the index answers who the caller is, the usage
//! recorder takes the last use in memory.

pub mod access_log;
pub mod authenticate;
pub mod client_ip;
pub mod credentials;
pub mod forward;
pub mod forward_auth;
pub mod pinned;
pub mod progress;
pub mod reject;
pub mod request_id;
pub mod route;
pub mod settings;
pub mod tunnel;
pub mod upstreams;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::config::Config;
use crate::data::gate::{Attempt, Gate, Refusal, loggable};
use crate::data::index::IndexedAccount;
use crate::data::ratelimit::{LimitHeaders, RateLimits, TokenVerdict};
use crate::metrics::{KindLabels, Metrics};
use crate::model::UsageOutcome;
use access_log::{AccessLog, AccessRecord};
use authenticate::Identity;
use client_ip::Peer;
use forward::{ForwardContext, ForwardError, X_AUTH_TOKEN_EXPIRES};
use pinned::Pinned;
use request_id::X_REQUEST_ID;
use route::{PathError, RequestHost, canonical_path};
use settings::ProxySettings;
use upstreams::Upstreams;

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
    /// 502, 503 or 504: the upstream could not be reached, had no connection free (at
    /// `proxy.max_upstream_connections`) or did not answer in time.
    UpstreamError,
    /// 400, 404 or 405 before any authentication: a method, host, path or route the gateway
    /// refuses.
    Rejected,
    /// 400 after forwarding began: the client's request body was malformed or cut off. The
    /// client's fault, counted apart from upstream errors so that it raises no upstream alarm.
    ClientError,
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
            Outcome::ClientError => "client_error",
        }
    }
}

/// A response body: the upstream's, streamed, or one of the gateway's own.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Everything the data path reads: what `SIGHUP` can change in [`ProxySettings`], swapped whole,
/// and the parts that live as long as the process.
pub struct Proxy {
    /// Each request reads the version current when it arrives (see [`Proxy::reconfigure`]).
    settings: ArcSwap<ProxySettings>,
    /// Upstream connections: opened, pooled and capped per upstream for the life of the
    /// process (a reload changes how new ones are opened).
    upstreams: Arc<Upstreams>,
    gate: Arc<Gate>,
    limits: Arc<RateLimits>,
    metrics: Arc<Metrics>,
    /// The route label of requests that matched none.
    no_route_label: Arc<str>,
    /// The proxy listener terminates TLS (fixed: the listener is not rebuilt on reload).
    over_tls: bool,
    /// Access records' writer, one per process; `ProxySettings::access_log` says whether
    /// requests write to it.
    access_log: Arc<AccessLog>,
}

impl Proxy {
    /// The data path of a configuration: its routes, upstream connections and header rules,
    /// admitting requests through the shared `gate`.
    pub fn new(config: &Config, gate: Arc<Gate>, limits: Arc<RateLimits>, metrics: Arc<Metrics>) -> Self {
        let over_tls = config.proxy.tls.is_some();
        Proxy {
            settings: ArcSwap::from_pointee(ProxySettings::new(config, over_tls)),
            upstreams: Arc::new(Upstreams::new(config, Arc::clone(&metrics))),
            gate,
            limits,
            metrics,
            no_route_label: Arc::from("none"),
            over_tls,
            access_log: AccessLog::to_stderr(config.log.json),
        }
    }

    /// Applies a reloaded configuration's routes, upstream and header rules, trusted proxies,
    /// realm, forward-auth, access log and usage counting to requests from now on; requests
    /// already under way finish with the settings they started with.
    pub fn reconfigure(&self, config: &Config) {
        self.access_log.set_json(config.log.json);
        self.settings.store(Arc::new(ProxySettings::new(config, self.over_tls)));
        self.upstreams.reconfigure(config);
    }

    /// The access log, to be closed (its last lines written) once the proxy has drained.
    pub fn access_log(&self) -> Arc<AccessLog> {
        Arc::clone(&self.access_log)
    }

    /// Whether `ip` is one of `proxy.trusted_proxies` as now configured.
    pub fn is_trusted_peer(&self, ip: std::net::IpAddr) -> bool {
        client_ip::is_trusted(ip.to_canonical(), &self.settings.load().trusted_proxies)
    }

    /// What the data path knows of a new client connection's far end.
    pub fn peer(&self, addr: SocketAddr) -> Peer {
        Peer::new(addr.ip())
    }

    /// The upstream connection slot of a new client connection.
    pub fn pin(&self) -> Pinned {
        Pinned::new(Arc::clone(&self.upstreams))
    }

    /// Handles one request from `peer`, forwarding on its connection's `pinned` upstream
    /// connection; counts it once, whichever phase answered: in the metrics, and against the
    /// token presented (its usage counters) once its route is known.
    pub async fn handle(&self, mut request: Request<Incoming>, peer: &Peer, pinned: &Pinned) -> Response<ProxyBody> {
        let started = std::time::Instant::now();
        let live = self.settings.load_full();
        let request_id = request_id::assign(request.headers_mut());
        // For the access log: the method, and the path as sent (a reference-counted handle on
        // the request's bytes, not a copy).
        let logged = live
            .access_log
            .then(|| (&self.access_log, request.method().clone(), request.uri().path_and_query().cloned()));
        let mut trace = Trace::default();
        let (mut response, outcome) = match self.serve(&live, request, peer, pinned, &mut trace).await {
            Ok(served) => served,
            Err(stop) => (*stop.response, stop.outcome),
        };
        let status = response.status().as_u16();
        if let Some((log, method, path)) = logged {
            log.write(&AccessRecord {
                request_id: &request_id,
                client_ip: trace.client_ip,
                method: &method,
                path: path.as_ref().map_or("/", |p| p.path()),
                route: trace.route.as_deref(),
                status,
                duration: started.elapsed(),
                upstream: trace.upstream,
                token_id: trace.token.map(Presented::id),
                user: trace.user.as_ref().map(|account| &*account.email),
                outcome: outcome.as_str(),
            });
        }
        response.headers_mut().insert(&X_REQUEST_ID, request_id);
        let route = match trace.route {
            Some(route) => {
                if live.count_usage
                    && let Some((token_id, counted)) = trace.token.and_then(|token| token.counted(outcome, status))
                {
                    self.gate.count(token_id, &route, counted);
                }
                route
            }
            None => Arc::clone(&self.no_route_label),
        };
        self.metrics.observe_request(route, status, outcome.as_str(), started.elapsed());
        response
    }

    /// The phases, in order: check the method, locate the route, authorise, forward. A phase
    /// that answers itself returns a [`Stop`]; `trace` learns the route and the token presented
    /// as they become known.
    async fn serve(
        &self,
        live: &ProxySettings,
        mut request: Request<Incoming>,
        peer: &Peer,
        pinned: &Pinned,
        trace: &mut Trace,
    ) -> Result<(Response<ProxyBody>, Outcome), Stop> {
        check_method(live, request.method())?;
        live.router
            .check_host(request.version(), request.uri(), request.headers())
            .map_err(|error| refused(error, request.uri().path()))?;
        // A handle on the request's own path bytes (a reference-counted clone, no copy), so the
        // canonical form can borrow it after the request moves on; it allocates only when the
        // path had to be rewritten.
        let raw_path = request.uri().path_and_query().cloned();
        let raw_path = raw_path.as_ref().map_or("/", |p| p.path());
        if live.forward_auth_path.as_deref() == Some(raw_path) {
            return self.check(live, &request, peer, trace).await;
        }
        let host = live.router.host_of(request.uri(), request.headers()).map_err(|error| refused(error, raw_path))?;
        let (path, route) = locate(live, host.as_ref(), raw_path)?;
        let path = &*path;
        let route = route.ok_or_else(|| Stop::rejected(reject::no_route()))?;
        trace.route = Some(Arc::clone(&route.label));
        let client_ip = peer.client_ip(request.headers(), &live.trusted_proxies);
        trace.client_ip = Some(client_ip);
        let admitted = if route.is_public_for(request.method()) {
            Admitted::default()
        } else {
            let attempt = Attempt { headers: request.headers(), method: request.method(), path, client_ip };
            self.authorise(live, &attempt, Some(&route), &mut trace.token).await?
        };
        let upgrade = tunnel::requested(&request);
        let client_side = upgrade.as_ref().map(|_| tunnel::client_side(&mut request));
        let caller = ForwardContext {
            peer,
            peer_trusted: peer.is_trusted(&live.trusted_proxies),
            over_tls: self.over_tls,
            identity: admitted.identity.as_ref(),
            upgrade: upgrade.clone(),
        };
        trace.user = admitted.identity.as_ref().map(|identity| Arc::clone(&identity.account));
        let mut response = self.forward(live, request, (path, &route), &caller, pinned, trace).await?;
        if let (Some(protocol), Some(client_side)) = (upgrade, client_side) {
            response = tunnel::splice(response, client_side, protocol, live.tunnel_idle_timeout);
        }
        let outcome = if admitted.identity.is_some() { Outcome::Authorised } else { Outcome::Public };
        Ok((respond(response, admitted.identity.as_ref(), admitted.limit_headers.as_ref()), outcome))
    }

    /// A forward-auth check ([`forward_auth`]): the original request, named by the asking
    /// proxy's headers, is routed, authenticated, authorised, limited and recorded as a proxied
    /// one would be, and answered 200 with the identity headers instead of being forwarded. A
    /// URI that matches no route is checked for authentication only.
    async fn check(
        &self,
        live: &ProxySettings,
        request: &Request<Incoming>,
        peer: &Peer,
        trace: &mut Trace,
    ) -> Result<(Response<ProxyBody>, Outcome), Stop> {
        if !peer.is_trusted(&live.trusted_proxies) {
            tracing::info!(peer = %peer.ip, "forward-auth check refused: the caller is not a trusted proxy");
            return Err(Stop::rejected(reject::not_a_trusted_proxy()));
        }
        let original = forward_auth::original(request.headers(), request.method()).map_err(|reason| {
            tracing::info!(reason, "forward-auth check refused: malformed");
            Stop::rejected(reject::bad_check(reason))
        })?;
        check_method(live, &original.method)?;
        // Host routes match the host the asking proxy names (`X-Forwarded-Host`).
        let host =
            live.router.forwarded_host_of(request.headers()).map_err(|error| refused(error, original.uri.path()))?;
        let (path, route) = locate(live, host.as_ref(), original.uri.path())?;
        trace.route = route.as_ref().map(|route| Arc::clone(&route.label));
        let client_ip = peer.client_ip(request.headers(), &live.trusted_proxies);
        trace.client_ip = Some(client_ip);
        if route.as_ref().is_some_and(|route| route.is_public_for(&original.method)) {
            return Ok((reject::allowed(None, None), Outcome::Public));
        }
        let attempt = Attempt { headers: request.headers(), method: &original.method, path: &path, client_ip };
        let admitted = self.authorise(live, &attempt, route.as_deref(), &mut trace.token).await?;
        trace.user = admitted.identity.as_ref().map(|identity| Arc::clone(&identity.account));
        Ok((reject::allowed(admitted.identity.as_ref(), admitted.limit_headers.as_ref()), Outcome::Authorised))
    }

    /// The gate (credentials, the failed-auth throttle), the route's scope, the token's rate
    /// limit, and the use recorded.
    async fn authorise(
        &self,
        live: &ProxySettings,
        attempt: &Attempt<'_>,
        route: Option<&route::Route>,
        presented: &mut Option<Presented>,
    ) -> Result<Admitted, Stop> {
        let client_ip = attempt.client_ip;
        let identity = self.gate.admit(attempt, "proxy").map_err(|denied| {
            *presented = denied.dead_token.map(Presented::Dead);
            match denied.refusal {
                Refusal::Unauthenticated => Stop::new(reject::unauthorized(&live.challenge), Outcome::Unauthenticated),
                Refusal::Throttled { retry_after } => {
                    Stop::new(reject::too_many_requests(retry_after, None), Outcome::RateLimited)
                }
            }
        })?;
        *presented = Some(Presented::Admitted(identity.token.id));
        if let Some(scope) = route.and_then(|route| route.require.for_method(attempt.method))
            && !identity.token.has_scope(scope)
        {
            tracing::info!(token_id = identity.token.id, scope, client = %client_ip, "request refused: missing scope");
            return Err(Stop::new(reject::missing_scope(scope), Outcome::Forbidden));
        }
        let limit_headers = match self.limits.admit_token(identity.token.id, identity.token.rate_limit()).await {
            TokenVerdict::Limited { retry_after, headers } => {
                tracing::info!(token_id = identity.token.id, retry_after, "request refused: rate limited");
                self.metrics.rate_limited.get_or_create(&KindLabels { kind: "token" }).inc();
                return Err(Stop::new(reject::too_many_requests(retry_after, Some(&headers)), Outcome::RateLimited));
            }
            TokenVerdict::Allowed(headers) => Some(headers),
            TokenVerdict::Unlimited => None,
        };
        self.gate.record_use(&identity, attempt).await;
        Ok(Admitted { identity: Some(identity), limit_headers })
    }

    /// Rewrites the request for the upstream and sends it on the pinned connection: the
    /// upstream's response, or 502 / 504. The time the upstream took goes to `trace`.
    async fn forward(
        &self,
        live: &ProxySettings,
        request: Request<Incoming>,
        (path, route): (&str, &route::Route),
        caller: &ForwardContext<'_>,
        pinned: &Pinned,
        trace: &mut Trace,
    ) -> Result<Response<Incoming>, Stop> {
        let client_version = request.version();
        let upstream_request = forward::upstream_request(request, path, route, caller, &live.header_policy)
            .ok_or_else(|| Stop::rejected(reject::bad_path()))?;
        let upstream_started = std::time::Instant::now();
        let timeouts = forward::Timeouts { upstream: live.upstream_timeout, client_body: live.client_body_timeout };
        let upgrade = caller.upgrade.is_some();
        let sent = forward::send(pinned, route, upstream_request, client_version, timeouts, upgrade).await;
        let upstream_took = upstream_started.elapsed();
        trace.upstream = Some(upstream_took);
        self.metrics.upstream_duration.observe(upstream_took.as_secs_f64());
        sent.map_err(|error| match error {
            ForwardError::Unreachable(error) => {
                tracing::warn!(upstream = %route.upstream, %error, "upstream unreachable");
                Stop::new(reject::bad_gateway(), Outcome::UpstreamError)
            }
            ForwardError::Busy => {
                tracing::warn!(upstream = %route.upstream, "no upstream connection came free within proxy.upstream_queue_timeout");
                Stop::new(reject::upstream_busy(), Outcome::UpstreamError)
            }
            ForwardError::ClientBody { stalled: true } => {
                tracing::info!(upstream = %route.upstream, "request refused: the client's body stalled");
                Stop::new(reject::body_timeout(), Outcome::ClientError)
            }
            ForwardError::ClientBody { stalled: false } => {
                tracing::info!(upstream = %route.upstream, "request refused: the client's body was malformed or cut off");
                Stop::new(reject::bad_body(), Outcome::ClientError)
            }
            ForwardError::TimedOut => {
                tracing::warn!(upstream = %route.upstream, timeout_ms = live.upstream_timeout.as_millis() as u64,
                    "upstream timed out");
                Stop::new(reject::gateway_timeout(), Outcome::UpstreamError)
            }
        })
    }
}

/// Routed, recorded and forwarded in one canonical form, so the router and the upstream never
/// disagree about which resource is meant; `host` is the request's, where routes have hosts.
/// `None`: no route matches.
fn locate<'p>(
    live: &ProxySettings,
    host: Option<&RequestHost<'_>>,
    raw_path: &'p str,
) -> Result<(std::borrow::Cow<'p, str>, Option<Arc<route::Route>>), Stop> {
    let path = canonical_path(raw_path).map_err(|error| refused(error, raw_path))?;
    let route = match live.router.route(host, &path) {
        Ok(route) => route.map(Arc::clone),
        Err(error) => return Err(refused(error, raw_path)),
    };
    Ok((path.path, route))
}

/// Only the methods of `proxy.methods` are forwarded (405 otherwise; CONNECT and TRACE never
/// are). A method the upstream might read differently from us (`delete` executed as DELETE by
/// frameworks that upper-case it) never reaches it either: scopes are decided per method.
fn check_method(live: &ProxySettings, method: &http::Method) -> Result<(), Stop> {
    if live.methods.contains(method) {
        return Ok(());
    }
    if !route::is_standard_spelling(method) {
        tracing::info!(%method, "request refused: method not in upper case");
        return Err(Stop::rejected(reject::bad_method()));
    }
    tracing::info!(%method, "request refused: method not proxied");
    Err(Stop::rejected(reject::method_not_allowed(&live.allow)))
}

/// A 400 for a path (or host) that routing refuses, naming the reason; logged with it.
fn refused(error: PathError, raw_path: &str) -> Stop {
    tracing::info!(?error, path = loggable(raw_path), "request refused: unsafe path or host");
    Stop::rejected(reject::path_refused(error))
}

/// The proxy answered itself: the response it sends, and how the request is counted. Boxed:
/// refusals are the rare path, and a small `Result` keeps every phase's future small.
struct Stop {
    response: Box<Response<ProxyBody>>,
    outcome: Outcome,
}

impl Stop {
    fn new(response: Response<ProxyBody>, outcome: Outcome) -> Self {
        Stop { response: Box::new(response), outcome }
    }

    /// Refused before any authentication (400, 404).
    fn rejected(response: Response<ProxyBody>) -> Self {
        Stop::new(response, Outcome::Rejected)
    }
}

/// What [`Proxy::handle`] learns of a request while its phases run, to count it at the end.
#[derive(Default)]
struct Trace {
    /// The matched route's label (its prefix): the metrics' and the usage counters' route.
    route: Option<Arc<str>>,
    /// The token presented, once the gate has looked at it.
    token: Option<Presented>,
    /// The admitted token's owner, for the access log.
    user: Option<Arc<IndexedAccount>>,
    /// The client's address, once known.
    client_ip: Option<std::net::IpAddr>,
    /// How long the upstream took to answer, once asked.
    upstream: Option<Duration>,
}

/// A token the gate recognised.
#[derive(Debug, Clone, Copy)]
enum Presented {
    /// Admitted: the request went on to the scope check, the rate limit and the upstream.
    Admitted(i64),
    /// Revoked, expired or blocked: refused.
    Dead(i64),
}

impl Presented {
    /// The token's id.
    fn id(self) -> i64 {
        match self {
            Presented::Admitted(id) | Presented::Dead(id) => id,
        }
    }

    /// The token and how its request is counted, from how the request ended.
    fn counted(self, outcome: Outcome, status: u16) -> Option<(i64, UsageOutcome)> {
        Some(match self {
            Presented::Dead(id) => (id, UsageOutcome::Refused),
            Presented::Admitted(id) => match outcome {
                Outcome::Forbidden => (id, UsageOutcome::Forbidden),
                Outcome::RateLimited => (id, UsageOutcome::Limited),
                // The upstream's answer, or the gateway's 502/504 (or 400) in its place.
                Outcome::Authorised | Outcome::UpstreamError | Outcome::Rejected | Outcome::ClientError => {
                    (id, UsageOutcome::of_status(status))
                }
                Outcome::Public | Outcome::Unauthenticated => return None,
            },
        })
    }
}

/// What authorisation admitted: who (none on a public route) and the rate-limit headers every
/// response of a limited token carries.
#[derive(Default)]
struct Admitted {
    identity: Option<Identity>,
    limit_headers: Option<LimitHeaders>,
}

/// The upstream's response as the client gets it: its body streamed, the token's expiry added.
fn respond(
    response: Response<Incoming>,
    identity: Option<&Identity>,
    limit: Option<&LimitHeaders>,
) -> Response<ProxyBody> {
    let mut response = response.map(Either::Left);
    if let Some(expires) = identity.and_then(|i| i.token.expires_header()) {
        response.headers_mut().insert(&X_AUTH_TOKEN_EXPIRES, expires);
    }
    if let Some(limit) = limit {
        limit.apply(response.headers_mut());
    }
    response
}
