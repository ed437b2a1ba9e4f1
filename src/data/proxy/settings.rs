//! What `SIGHUP` can change on the data path, built from the configuration as one value.
//!
//! The proxy holds it behind an atomic pointer and each request takes the version current when
//! it arrives, so a reload never shows a request half of the old routes and half of the new,
//! and open connections carry on with the new settings on their next request.

use std::time::Duration;

use http::{HeaderValue, Method};
use ipnet::IpNet;

use super::forward::RequestHeaderPolicy;
use super::reject;
use super::route::Router;
use crate::config::Config;

/// The data path's reloadable settings.
pub struct ProxySettings {
    /// `routes`: what is forwarded where, and with which rules.
    pub router: Router,
    /// `WWW-Authenticate` of a 401, from `proxy.realm`.
    pub challenge: HeaderValue,
    /// `proxy.trusted_proxies`, decided per request (not per connection), so a peer taken out
    /// of the list stops being believed on the connection it already has.
    pub trusted_proxies: Vec<IpNet>,
    /// `proxy.upstream_timeout`.
    pub upstream_timeout: Duration,
    /// `proxy.client_body_timeout`: the longest gap between two pieces of a request body.
    pub client_body_timeout: Duration,
    /// `proxy.tunnel_idle_timeout`: an upgraded connection (WebSocket) with no bytes either
    /// way for this long is closed.
    pub tunnel_idle_timeout: Duration,
    /// Which client headers never reach an upstream (`proxy.strip_request_headers`).
    pub header_policy: RequestHeaderPolicy,
    /// `proxy.methods`: what is proxied; anything else gets 405.
    pub methods: Vec<Method>,
    /// The 405's `Allow`: those methods, listed once.
    pub allow: HeaderValue,
    /// `forward_auth.path`: where forward-auth checks are answered; `None`: off.
    pub forward_auth_path: Option<String>,
    /// One access record per request (`log.access`).
    pub access_log: bool,
    /// Requests are counted per token, day, route and outcome (`usage.counters`).
    pub count_usage: bool,
}

impl ProxySettings {
    /// The settings of `config` for a proxy listener that does (`over_tls`) or does not
    /// terminate TLS; that is fixed for the process, so it is the running listener's.
    pub fn new(config: &Config, over_tls: bool) -> Self {
        ProxySettings {
            router: Router::new(&config.routes, over_tls),
            challenge: reject::challenge(&config.proxy.realm),
            trusted_proxies: config.proxy.trusted_proxies.clone(),
            upstream_timeout: config.proxy.upstream_timeout,
            client_body_timeout: config.proxy.client_body_timeout,
            tunnel_idle_timeout: config.proxy.tunnel_idle_timeout,
            header_policy: RequestHeaderPolicy::new(&config.proxy.strip_request_headers),
            methods: config.proxy.methods.clone(),
            allow: allow_header(&config.proxy.methods),
            forward_auth_path: config.forward_auth.path.clone(),
            access_log: config.log.access,
            count_usage: config.usage.counters,
        }
    }
}

/// `Allow: GET, HEAD, ...`: the methods the proxy forwards.
fn allow_header(methods: &[Method]) -> HeaderValue {
    let names: Vec<&str> = methods.iter().map(Method::as_str).collect();
    // Methods are tokens, which are always valid header text.
    HeaderValue::from_str(&names.join(", ")).unwrap_or_else(|_| HeaderValue::from_static("GET"))
}
