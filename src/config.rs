//! Configuration: the validated model every other module reads. The TOML file, environment
//! overrides and `*_file` secrets become a [`Config`] once, at start (house rule 3); nothing
//! downstream sees raw strings.
//!
//! One job per file: `raw` is the file as written, `locate` finds it, `load` reads it and
//! applies `overrides` and the data directory, `keys` checks the file's keys against `raw`,
//! `validate` turns it into this model, `problems` gathers what is wrong on the way so that all
//! of it is reported at once, `secrets` keeps secrets out of output, `effective` prints the
//! model back as TOML for `check-config`.

mod effective;
mod keys;
mod load;
mod locate;
mod overrides;
mod problems;
mod raw;
mod secrets;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use ipnet::IpNet;

use crate::data::tls::ListenerCertificate;
use crate::model::rate::Rate;

pub use load::{DATA_DIR_VAR, DATABASE_FILE};
pub use locate::{CONFIG_SEARCH_PATH, ConfigSource};
pub use overrides::apply_env_overrides;
pub use secrets::{SecretString, SecretUrl, masked_webhook_url};

/// The working directory's configuration: the first place looked when neither `--config` nor
/// `TOKENGATE_CONFIG` is set (see [`CONFIG_SEARCH_PATH`]).
pub const DEFAULT_CONFIG_PATH: &str = "config/tokengate.toml";
/// The embedded default database.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/tokengate.db";
/// `tokens.default_lifetime` when the operator sets none (and `max_lifetime` allows it).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(90 * 24 * 60 * 60);
/// `tokens.max_lifetime` when the operator sets none.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Why a configuration cannot be used; every message names the file, the key or the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named by `--config` or `TOKENGATE_CONFIG` cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// The file is not valid TOML (parsing stops there), or its one problem is a key that does
    /// not fit the model (an unknown section or key, a wrong type) and nothing else is wrong;
    /// the message gives the line. Several problems are listed in [`ConfigError::Invalid`].
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, starting with `line N: ` where the parser knows it.
        message: String,
    },
    /// Values that cannot be used, from the file, the environment or a `*_file`: every problem
    /// found, each `key: message` naming the key or the variable. One problem reads as one line
    /// (`invalid configuration: proxy.listen: ...`); several as a count, then one indented
    /// `- key: message` line each, so an operator fixes them all in one edit.
    #[error("invalid configuration: {}", list_problems(.0))]
    Invalid(Vec<String>),
}

impl ConfigError {
    /// One problem, `key: message`.
    pub fn invalid(problem: impl Into<String>) -> Self {
        ConfigError::Invalid(vec![problem.into()])
    }
}

/// The problems as [`ConfigError::Invalid`] shows them: a single one as it is, so that text
/// stays what scripts have always matched; several as `N problems:` and a line each.
fn list_problems(problems: &[String]) -> String {
    match problems {
        [one] => one.clone(),
        several => {
            let mut text = format!("{} problems:", several.len());
            for problem in several {
                text.push_str("\n  - ");
                text.push_str(problem);
            }
            text
        }
    }
}

/// The validated configuration: one section per `[section]` of the file.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from; `None` for built-in defaults. `check-config` names it.
    pub source: Option<PathBuf>,
    /// `[proxy]`: the listener API clients connect to, and how requests go upstream.
    pub proxy: ProxyConfig,
    /// `[admin]`: the listener for the web page, the JSON API, health and metrics.
    pub admin: AdminConfig,
    /// `[database]`: the one store every gateway and the CLI share.
    pub database: DatabaseConfig,
    /// `[sync]`: how this gateway follows changes others commit, and how long a change waits for
    /// the fleet.
    pub sync: SyncConfig,
    /// `[usage]`: how often last uses are written.
    pub usage: UsageConfig,
    /// `[tokens]`: the bounds every new token is checked against.
    pub tokens: TokenPolicy,
    /// `[rate_limit]`: per-token limits and the failed-authentication limit per client address.
    pub rate_limit: RateLimitConfig,
    /// `[notify]`: how owners hear about their tokens.
    pub notify: NotifyConfig,
    /// What the proxy forwards where; never empty (a built-in route when the file has none).
    pub routes: Vec<RouteConfig>,
    /// `[log]`: the log's format and the access log.
    pub log: LogConfig,
    /// `[forward_auth]`: the check an existing reverse proxy asks before it forwards.
    pub forward_auth: ForwardAuthConfig,
}

/// `[forward_auth]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwardAuthConfig {
    /// The path on the proxy listener that answers forward-auth checks (`/_tokengate/auth`);
    /// `None`: off, and that path is proxied like any other.
    pub path: Option<String>,
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// One JSON object per line instead of text (`TOKENGATE_LOG_FORMAT=json` also says so).
    pub json: bool,
    /// One access record per proxied request (`log.access`).
    pub access: bool,
}

/// `[proxy]`: the listener clients send their API requests to.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Where the proxy accepts client connections.
    pub listen: SocketAddr,
    /// Sent in `WWW-Authenticate: Basic realm="..."`, so clients know which credentials to offer.
    pub realm: String,
    /// Peers whose `X-Forwarded-For` is believed: behind a load balancer the socket peer is the
    /// balancer, and per-client limits need the client's address.
    pub trusted_proxies: Vec<IpNet>,
    /// Past it an unreachable upstream is a 502, rather than a client waiting for the OS timeout.
    pub connect_timeout: Duration,
    /// Past it an upstream that accepted but does not answer is a 504.
    pub upstream_timeout: Duration,
    /// Open client connections at most; past it the listener stops accepting until one closes.
    pub max_connections: usize,
    /// Runtime worker threads for `serve` (`None`: one per core), like nginx's
    /// `worker_processes`: an operator sizes the gateway to the cores it may use.
    pub workers: Option<usize>,
    /// Extra CA certificates trusted for `https://` upstreams (besides the public web's).
    pub upstream_ca_file: Option<PathBuf>,
    /// The client side of `https://` upstreams, built once from the roots above.
    pub upstream_tls: Arc<rustls::ClientConfig>,
    /// Set: the proxy listener terminates TLS itself (shared, so `SIGHUP` can reload it).
    pub tls: Option<Arc<ListenerCertificate>>,
    /// Request headers dropped before a request goes upstream, besides the built-in identity
    /// and client-address headers (lower-case).
    pub strip_request_headers: Vec<http::HeaderName>,
    /// The methods proxied (`proxy.methods`); others get 405. Never `CONNECT` or `TRACE`.
    pub methods: Vec<http::Method>,
    /// Open client connections from one address at most (trusted proxies exempt), so one
    /// address cannot take every slot; `None` (0 in the file): no such bound.
    pub max_connections_per_ip: Option<usize>,
    /// The longest gap between two pieces of a request body; past it: 408.
    pub client_body_timeout: Duration,
    /// The longest a write of the response may wait for the client to read; past it the
    /// connection is closed.
    pub send_timeout: Duration,
    /// An upgraded connection (WebSocket) with no bytes either way for this long is closed.
    pub tunnel_idle_timeout: Duration,
    /// Open connections to one upstream at most, so that HTTP/2 clients' concurrent requests
    /// cannot open thousands; `None` (0 in the file): no such bound.
    pub max_upstream_connections: Option<usize>,
    /// How long a request waits at that bound for a connection to come free; past it: 503.
    pub upstream_queue_timeout: Duration,
}

/// `proxy.methods` by default: what REST APIs use. `CONNECT` (a tunnel) and `TRACE` (which
/// echoes the request, credentials included) are never proxied.
pub const DEFAULT_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// `[admin]`: the listener for the web page, the JSON API, health and metrics, kept apart from
/// the proxy so it can be bound to a private address.
#[derive(Clone, Debug)]
pub struct AdminConfig {
    /// Where the admin listener accepts connections.
    pub listen: SocketAddr,
    /// Set: the admin listener terminates TLS itself.
    pub tls: Option<Arc<ListenerCertificate>>,
    /// `/metrics` asks for Basic credentials (any valid API token, such as a scraper
    /// account's) instead of answering anyone who reaches the admin listener.
    pub metrics_require_auth: bool,
}

/// `[database]`.
#[derive(Clone, Debug)]
pub struct DatabaseConfig {
    /// SQLite for one host, PostgreSQL for a fleet; masked wherever it is shown.
    pub url: SecretUrl,
}

/// `[sync]`: how gateways follow the change log other processes write.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// How often the change log is read at most: bounds how stale a revocation can be.
    pub interval: Duration,
    /// Past this long without reading the change log, `/readyz` answers 503.
    pub max_lag: Duration,
    /// How long a change waits for every running gateway to apply it.
    pub confirm_timeout: Duration,
    /// A gateway without a heartbeat this long is not running.
    pub stale_after: Duration,
}

impl SyncConfig {
    /// How changes wait for the fleet.
    pub fn confirm_policy(&self) -> crate::control::fleet::ConfirmPolicy {
        crate::control::fleet::ConfirmPolicy { timeout: self.confirm_timeout, stale_after: self.stale_after }
    }
}

/// `[usage]`.
#[derive(Clone, Debug)]
pub struct UsageConfig {
    /// Last-use records are written once per interval in one transaction, so database writes
    /// grow with the tokens used, not with the requests.
    pub flush_interval: Duration,
    /// Requests are counted per token, UTC day, route and outcome (`usage.counters`); off only
    /// to measure what counting costs.
    pub counters: bool,
    /// Counter rows older than this many days are pruned by the periodic sweep.
    pub keep_days: u32,
}

/// `[tokens]`: the administrator's bounds on tokens.
#[derive(Clone, Debug)]
pub struct TokenPolicy {
    /// The lifetime of a token created without one, so scripts do not mint eternal tokens.
    pub default_lifetime: Duration,
    /// The longest lifetime anyone may choose.
    pub max_lifetime: Duration,
    /// Whether the operator set `max_lifetime` (in the file or the environment) rather than
    /// leaving the built-in default: `token cap-expiry` shortens existing tokens only to a bound
    /// somebody chose.
    pub max_lifetime_set: bool,
    /// Whether `--never-expires` is allowed at all.
    pub allow_never_expires: bool,
    /// The scopes routes may require and tokens may carry; a typo in either is refused.
    pub scopes: Vec<String>,
    /// The scopes of a token created without any.
    pub default_scopes: Vec<String>,
    /// Revoke tokens unused for this long (`None`: no inactivity policy).
    pub revoke_unused_after: Option<Duration>,
    /// Warn the owner this long before such a revocation.
    pub warn_before: Duration,
    /// How often `serve` applies the inactivity policy and queues expiry reminders.
    pub sweep_interval: Duration,
}

/// How SMTP connections are secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on the same host or in tests.
    None,
}

/// `[notify] smtp_*`: owners hear about their tokens by email.
#[derive(Clone, Debug)]
pub struct SmtpConfig {
    /// The relay that sends the mail.
    pub host: String,
    /// The relay's port; its default follows `tls`.
    pub port: u16,
    /// How the connection to the relay is secured.
    pub tls: SmtpTls,
    /// Set: the relay wants authentication.
    pub username: Option<String>,
    /// Used with `username`; masked wherever the configuration is shown.
    pub password: Option<SecretString>,
    /// The sender owners see (and reply to).
    pub from: String,
}

/// `[notify] webhook_*`: notifications as JSON POSTs, for chat and ticket systems.
#[derive(Clone)]
pub struct WebhookConfig {
    /// May carry a secret (a password, a `?token=`, a key in the path): shown only through
    /// [`masked_webhook_url`].
    pub url: String,
    /// Signs each body: `X-Tokengate-Signature: sha256=<hex HMAC>`.
    pub secret: Option<SecretString>,
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &masked_webhook_url(&self.url))
            .field("secret", &self.secret)
            .finish()
    }
}

/// A way notifications leave a gateway. Its name is stored with each delivery, so a channel's
/// progress survives restarts and is shared by every gateway that has the same channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotifyChannel {
    /// Email through the `[notify] smtp_*` relay.
    Smtp,
    /// JSON POSTs to `notify.webhook_url`.
    Webhook,
}

impl NotifyChannel {
    /// The name in the database, `/readyz` and `check-config`.
    pub fn name(self) -> &'static str {
        match self {
            NotifyChannel::Smtp => "smtp",
            NotifyChannel::Webhook => "webhook",
        }
    }
}

impl fmt::Display for NotifyChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `[notify]`: where notifications go: every configured channel (SMTP, a webhook, or both).
/// With none, this gateway delivers nothing and leaves the outbox to a gateway that has a
/// channel.
#[derive(Clone, Debug)]
pub struct NotifyConfig {
    /// Set: every notice is also sent by email.
    pub smtp: Option<SmtpConfig>,
    /// Set: every notice is also POSTed to the webhook.
    pub webhook: Option<WebhookConfig>,
    /// Remind owners this long before a token expires.
    pub expiry_reminders: Vec<Duration>,
    /// The first retry waits this long, each later one twice as long (at most an hour).
    pub retry_base: Duration,
    /// Attempts before a notification is given up (and audited as failed).
    pub max_attempts: u32,
}

impl NotifyConfig {
    /// The configured channels, in a fixed order; each delivers every notification.
    pub fn channels(&self) -> Vec<NotifyChannel> {
        let smtp = self.smtp.as_ref().map(|_| NotifyChannel::Smtp);
        let webhook = self.webhook.as_ref().map(|_| NotifyChannel::Webhook);
        smtp.into_iter().chain(webhook).collect()
    }

    /// One line on who delivers notifications, as `check-config` prints it.
    pub fn delivery_summary(&self) -> String {
        let channels = self.channels();
        if channels.is_empty() {
            return "notifications: no channel configured: this gateway delivers none \
                    (they wait in the outbox for a gateway that has one)"
                .to_owned();
        }
        let names: Vec<&str> = channels.iter().map(|c| c.name()).collect();
        format!("notifications: delivered by {}", names.join(", "))
    }
}

/// `[rate_limit]`.
#[derive(Clone, Debug)]
pub struct RateLimitConfig {
    /// The limit of tokens without their own (`None`: not limited).
    pub default: Option<Rate>,
    /// Failed authentications per client address (`None`: not limited), so secrets cannot be
    /// guessed at line rate.
    pub failed_auth: Option<Rate>,
    /// Token limits shared by every gateway through Redis (`None`: each gateway limits alone).
    pub redis: Option<RedisLimits>,
}

/// `[rate_limit] backend = "redis"`.
#[derive(Clone, Debug)]
pub struct RedisLimits {
    /// May carry a password: use [`SecretUrl`]'s masking.
    pub url: SecretUrl,
    /// Past this, a request is limited locally instead (and Redis retried a second later).
    pub timeout: Duration,
}

/// One `[[routes]]` entry, validated.
#[derive(Clone, Debug)]
pub struct RouteConfig {
    /// The path prefix it answers, matched on whole segments; the longest match wins.
    pub prefix: String,
    /// Where its requests are forwarded.
    pub upstream: Upstream,
    /// No authentication: for health checks and public assets behind the same host.
    pub public: bool,
    /// The scope each method needs; not consulted on a public route.
    pub require: RequiredScopes,
    /// Forward the client's `Authorization` header, for upstreams that check it themselves.
    pub keep_authorization: bool,
    /// Send `/prefix/x` upstream as `<base path>/x`, for upstreams that do not know the prefix.
    pub strip_prefix: bool,
    /// Keep `%2F` in this route's paths and forward it encoded (GitLab's `group%2Fproject`);
    /// elsewhere an encoded slash is refused.
    pub allow_encoded_slash: bool,
    /// Methods served without authentication on an otherwise authenticated route (CORS
    /// preflight: `OPTIONS`); upper case, no duplicates, none that `require` names.
    pub public_methods: Vec<Method>,
    /// Only requests for this host: such routes win over routes without a host.
    pub host: Option<RouteHost>,
}

/// `routes[].host`: the host a route answers, as the client names it in `Host` (HTTP/1.1) or
/// `:authority` (HTTP/2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteHost {
    /// Lower case, without a trailing dot; a bracketed IPv6 literal keeps its brackets.
    pub name: String,
    /// Matched only when given: `api.example.com:8080` answers `Host: api.example.com:8080`,
    /// `api.example.com` answers a host without a port (or with the listener's default port).
    pub port: Option<u16>,
}

impl fmt::Display for RouteHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// The port a URL of `scheme` means when it names none.
pub fn default_port(scheme: &http::uri::Scheme) -> u16 {
    if *scheme == http::uri::Scheme::HTTPS { 443 } else { 80 }
}

/// Where a route forwards: `scheme://authority` plus an optional base path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// `http` or `https`: whether the upstream connection speaks TLS.
    pub scheme: http::uri::Scheme,
    /// The host and port connected to.
    pub authority: http::uri::Authority,
    /// Without a trailing slash; empty when the upstream URL has no path.
    pub base_path: String,
    /// The `Host` header upstream requests carry (the authority), built once.
    pub host: http::HeaderValue,
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

/// The scope each method needs on a route; `*` covers the methods not named.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequiredScopes {
    /// In the order `for_method` searches them; methods upper-case.
    by_method: Vec<(Method, String)>,
    /// The `*` entry.
    otherwise: Option<String>,
}

impl RequiredScopes {
    /// The scope `method` needs. Methods compare without case: an upstream that upper-cases
    /// `delete` must not escape the scope set for `DELETE`.
    pub fn for_method(&self, method: &Method) -> Option<&str> {
        self.by_method
            .iter()
            .find(|(m, _)| m.as_str().eq_ignore_ascii_case(method.as_str()))
            .map(|(_, scope)| scope.as_str())
            .or(self.otherwise.as_deref())
    }

    /// Whether `method` has an entry of its own (the `*` entry does not count).
    fn names(&self, method: &Method) -> bool {
        self.by_method.iter().any(|(m, _)| m.as_str().eq_ignore_ascii_case(method.as_str()))
    }
}
