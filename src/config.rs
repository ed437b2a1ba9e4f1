//! Configuration: the TOML file, environment overrides and `*_file` secrets, validated once
//! into [`Config`]. Nothing downstream sees raw strings.

mod overrides;
mod raw;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Uri};
use ipnet::IpNet;
use serde::Deserialize;

use crate::duration::{format_duration, parse_duration};
use crate::rate::Rate;
use crate::tls::{CertificateError, ListenerCertificate};
use raw::{RawConfig, RawRoute};

pub use overrides::apply_env_overrides;

/// Where the configuration is looked for when neither `--config` nor `TOKENGATE_CONFIG` is set.
pub const DEFAULT_CONFIG_PATH: &str = "config/tokengate.toml";
/// The embedded default database.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/tokengate.db";
/// `tokens.default_lifetime` when the operator sets none (and `max_lifetime` allows it).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(90 * 24 * 60 * 60);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from; `None` for built-in defaults.
    pub source: Option<PathBuf>,
    pub proxy: ProxyConfig,
    pub admin: AdminConfig,
    pub database: DatabaseConfig,
    pub sync: SyncConfig,
    pub usage: UsageConfig,
    pub tokens: TokenPolicy,
    pub rate_limit: RateLimitConfig,
    pub notify: NotifyConfig,
    pub routes: Vec<RouteConfig>,
}

#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub realm: String,
    pub trusted_proxies: Vec<IpNet>,
    pub connect_timeout: Duration,
    pub upstream_timeout: Duration,
    /// Open client connections at most; past it the listener stops accepting until one closes.
    pub max_connections: usize,
    /// Extra CA certificates trusted for `https://` upstreams (besides the public web's).
    pub upstream_ca_file: Option<PathBuf>,
    /// The client side of `https://` upstreams, built once from the roots above.
    pub upstream_tls: Arc<rustls::ClientConfig>,
    /// Set: the proxy listener terminates TLS itself (shared, so `SIGHUP` can reload it).
    pub tls: Option<Arc<ListenerCertificate>>,
    /// Request headers dropped before a request goes upstream, besides the built-in identity
    /// and client-address headers (lower-case).
    pub strip_request_headers: Vec<http::HeaderName>,
}

#[derive(Clone, Debug)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Set: the admin listener terminates TLS itself.
    pub tls: Option<Arc<ListenerCertificate>>,
    /// `/metrics` asks for Basic credentials (any valid API token, such as a scraper
    /// account's) instead of answering anyone who reaches the admin listener.
    pub metrics_require_auth: bool,
}

#[derive(Clone, Debug)]
pub struct DatabaseConfig {
    pub url: DatabaseUrl,
}

/// A database URL, which may carry a password: `Debug` and `Display` mask it.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseUrl(url.into())
    }

    /// The URL with its password, for opening the connection only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `****`: everything between `user:` and the last
    /// `@` (a password may itself contain `?`, `/` or `@`), and `password=` query parameters.
    pub fn masked(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return if self.0.starts_with("sqlite:") { self.0.clone() } else { "<unparseable database URL>".into() };
        };
        let (userinfo, after) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let mut masked = format!("{scheme}://");
        if let Some(userinfo) = userinfo {
            match userinfo.split_once(':') {
                Some((user, _password)) => masked += &format!("{user}:****@"),
                None => masked += &format!("{userinfo}@"),
            }
        }
        match after.split_once('?') {
            Some((location, query)) => {
                let params: Vec<String> = query
                    .split('&')
                    .map(|param| match param.split_once('=') {
                        Some((key, _)) if key.to_ascii_lowercase().contains("password") => format!("{key}=****"),
                        _ => param.to_owned(),
                    })
                    .collect();
                masked += &format!("{location}?{}", params.join("&"));
            }
            None => masked += after,
        }
        masked
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.masked())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[derive(Clone, Debug)]
pub struct SyncConfig {
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
    pub fn confirm_policy(&self) -> crate::fleet::ConfirmPolicy {
        crate::fleet::ConfirmPolicy { timeout: self.confirm_timeout, stale_after: self.stale_after }
    }
}

#[derive(Clone, Debug)]
pub struct UsageConfig {
    pub flush_interval: Duration,
}

/// The administrator's bounds on tokens.
#[derive(Clone, Debug)]
pub struct TokenPolicy {
    pub default_lifetime: Duration,
    pub max_lifetime: Duration,
    pub allow_never_expires: bool,
    pub scopes: Vec<String>,
    pub default_scopes: Vec<String>,
    /// Revoke tokens unused for this long (`None`: no inactivity policy).
    pub revoke_unused_after: Option<Duration>,
    /// Warn the owner this long before such a revocation.
    pub warn_before: Duration,
    /// How often `serve` applies the inactivity policy and queues expiry reminders.
    pub sweep_interval: Duration,
}

/// A secret from the configuration: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"****\"")
    }
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

#[derive(Clone, Debug)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub from: String,
}

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

/// Path segments at least this long are masked in a webhook URL: services such as Slack
/// (`/services/T…/B…/<24 characters>`) and Discord (`/api/webhooks/<id>/<68 characters>`) put
/// the secret in the path, while readable path names are rarely this long.
const MASKED_SEGMENT_CHARS: usize = 16;

/// A webhook URL fit to print: its host and short path segments stay, so the operator can see
/// where notices go; the password, every query value, the fragment and long path segments
/// become `****`. Parsed with the URL parser the webhook sender itself uses (reqwest's), so
/// the parts masked are the parts that will be sent.
pub fn masked_webhook_url(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return "<unparseable URL>".into();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("****"));
    } else if !parsed.username().is_empty() {
        // A user name alone is how some services take an API key (`https://KEY@host/`).
        let _ = parsed.set_username("****");
    }
    if parsed.query().is_some() {
        let names: Vec<String> = parsed.query_pairs().map(|(name, _)| name.into_owned()).collect();
        parsed.query_pairs_mut().clear().extend_pairs(names.iter().map(|name| (name, "****")));
    }
    if parsed.fragment().is_some() {
        parsed.set_fragment(Some("****"));
    }
    let path: Vec<&str> = parsed
        .path()
        .split('/')
        .map(|segment| if segment.chars().count() >= MASKED_SEGMENT_CHARS { "****" } else { segment })
        .collect();
    let path = path.join("/");
    parsed.set_path(&path);
    parsed.to_string()
}

/// A way notifications leave a gateway. Its name is stored with each delivery, so a channel's
/// progress survives restarts and is shared by every gateway that has the same channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotifyChannel {
    Smtp,
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

/// Where notifications go: every configured channel (SMTP, a webhook, or both). With none, this
/// gateway delivers nothing and leaves the outbox to a gateway that has a channel.
#[derive(Clone, Debug)]
pub struct NotifyConfig {
    pub smtp: Option<SmtpConfig>,
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

#[derive(Clone, Debug)]
pub struct RateLimitConfig {
    pub default: Option<Rate>,
    pub failed_auth: Option<Rate>,
    /// Token limits shared by every gateway through Redis (`None`: each gateway limits alone).
    pub redis: Option<RedisLimits>,
}

/// `[rate_limit] backend = "redis"`.
#[derive(Clone, Debug)]
pub struct RedisLimits {
    /// May carry a password: use [`DatabaseUrl`]'s masking.
    pub url: DatabaseUrl,
    /// Past this, a request is limited locally instead (and Redis retried a second later).
    pub timeout: Duration,
}

/// One `[[routes]]` entry, validated.
#[derive(Clone, Debug)]
pub struct RouteConfig {
    pub prefix: String,
    pub upstream: Upstream,
    pub public: bool,
    pub require: RequiredScopes,
    pub keep_authorization: bool,
    pub strip_prefix: bool,
}

/// The port a URL of `scheme` means when it names none.
pub fn default_port(scheme: &http::uri::Scheme) -> u16 {
    if *scheme == http::uri::Scheme::HTTPS { 443 } else { 80 }
}

/// Where a route forwards: `scheme://authority` plus an optional base path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub scheme: http::uri::Scheme,
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
    by_method: Vec<(Method, String)>,
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

    fn scopes(&self) -> impl Iterator<Item = &str> {
        self.by_method.iter().map(|(_, s)| s.as_str()).chain(self.otherwise.as_deref())
    }
}

impl Config {
    /// Loads the configuration: the file at `path` (or built-in defaults when `None`), then the
    /// `TOKENGATE_<SECTION>__<KEY>` variables in `env`, then `*_file` secrets; validates it.
    pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
                parse_file(path, &text)?
            }
            None => toml::Table::new(),
        };
        apply_env_overrides(&mut table, env)?;
        let raw = RawConfig::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Invalid(e.message().to_owned()))?;
        let mut config = validate(raw)?;
        config.source = path.map(Path::to_owned);
        Ok(config)
    }

    /// Resolves which file to read: an explicit path, else `config/tokengate.toml` if present.
    pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
        match explicit {
            Some(path) => Some(path.to_owned()),
            None => {
                let default = Path::new(DEFAULT_CONFIG_PATH);
                default.exists().then(|| default.to_owned())
            }
        }
    }

    /// The effective settings as TOML, secrets masked (for `check-config`).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let p = &self.proxy;
        let trusted: Vec<String> = p.trusted_proxies.iter().map(|n| format!("\"{n}\"")).collect();
        out += &format!(
            "[proxy]\nlisten = \"{}\"\nrealm = {:?}\ntrusted_proxies = [{}]\nconnect_timeout = \"{}\"\nupstream_timeout = \"{}\"\nmax_connections = {}\n",
            p.listen,
            p.realm,
            trusted.join(", "),
            format_duration(p.connect_timeout),
            format_duration(p.upstream_timeout),
            p.max_connections
        );
        let stripped: Vec<String> = p.strip_request_headers.iter().map(|n| format!("\"{n}\"")).collect();
        out += &format!("strip_request_headers = [{}]\n", stripped.join(", "));
        if let Some(ca) = &p.upstream_ca_file {
            out += &format!("upstream_ca_file = {:?}\n", ca.display().to_string());
        }
        out += &describe_tls(&p.tls);
        out += &format!(
            "\n[admin]\nlisten = \"{}\"\nmetrics_require_auth = {}\n",
            self.admin.listen, self.admin.metrics_require_auth
        );
        out += &describe_tls(&self.admin.tls);
        out += "\n";
        out += &format!("[database]\nurl = {:?}\n\n", self.database.url.masked());
        out += &format!(
            "[sync]\ninterval = \"{}\"\nmax_lag = \"{}\"\nconfirm_timeout = \"{}\"\nstale_after = \"{}\"\n\n",
            format_duration(self.sync.interval),
            format_duration(self.sync.max_lag),
            format_duration(self.sync.confirm_timeout),
            format_duration(self.sync.stale_after)
        );
        out += &format!("[usage]\nflush_interval = \"{}\"\n\n", format_duration(self.usage.flush_interval));
        let t = &self.tokens;
        out += &format!(
            "[tokens]\ndefault_lifetime = \"{}\"\nmax_lifetime = \"{}\"\nallow_never_expires = {}\nscopes = {:?}\ndefault_scopes = {:?}\n\
             revoke_unused_after = \"{}\"\nwarn_before = \"{}\"\nsweep_interval = \"{}\"\n\n",
            format_duration(t.default_lifetime),
            format_duration(t.max_lifetime),
            t.allow_never_expires,
            t.scopes,
            t.default_scopes,
            t.revoke_unused_after.map_or_else(|| "none".to_owned(), format_duration),
            format_duration(t.warn_before),
            format_duration(t.sweep_interval)
        );
        let n = &self.notify;
        out += "[notify]\n";
        if let Some(smtp) = &n.smtp {
            let tls = match smtp.tls {
                SmtpTls::StartTls => "starttls",
                SmtpTls::Tls => "tls",
                SmtpTls::None => "none",
            };
            out += &format!(
                "smtp_host = {:?}\nsmtp_port = {}\nsmtp_tls = \"{tls}\"\nsmtp_username = {:?}\nsmtp_password = {}\nfrom = {:?}\n",
                smtp.host,
                smtp.port,
                smtp.username.as_deref().unwrap_or(""),
                if smtp.password.is_some() { "\"****\"" } else { "\"\"" },
                smtp.from
            );
        }
        if let Some(webhook) = &n.webhook {
            out += &format!(
                "webhook_url = {:?}\nwebhook_secret = {}\n",
                masked_webhook_url(&webhook.url),
                if webhook.secret.is_some() { "\"****\"" } else { "\"\"" }
            );
        }
        if n.smtp.is_none() && n.webhook.is_none() {
            out += "# no smtp_host or webhook_url: this gateway delivers no notifications\n";
        }
        let reminders: Vec<String> =
            n.expiry_reminders.iter().map(|d| format!("\"{}\"", format_duration(*d))).collect();
        out += &format!(
            "expiry_reminders = [{}]\nretry_base = \"{}\"\nmax_attempts = {}\n\n",
            reminders.join(", "),
            format_duration(n.retry_base),
            n.max_attempts
        );
        let rate = |r: &Option<Rate>| r.map_or_else(|| "\"none\"".to_owned(), |r| format!("\"{r}\""));
        out += &format!(
            "[rate_limit]\ndefault = {}\nfailed_auth = {}\n",
            rate(&self.rate_limit.default),
            rate(&self.rate_limit.failed_auth)
        );
        match &self.rate_limit.redis {
            Some(redis) => {
                out += &format!(
                    "backend = \"redis\"\nredis_url = {:?}\nredis_timeout = \"{}\"\n",
                    redis.url.masked(),
                    format_duration(redis.timeout)
                )
            }
            None => out += "backend = \"local\"\n",
        }
        for route in &self.routes {
            let mut require: Vec<String> =
                route.require.by_method.iter().map(|(m, s)| format!("{} = {s:?}", m.as_str())).collect();
            if let Some(s) = &route.require.otherwise {
                require.push(format!("\"*\" = {s:?}"));
            }
            out += &format!(
                "\n[[routes]]\nprefix = {:?}\nupstream = \"{}\"\npublic = {}\nrequire = {{{}}}\nkeep_authorization = {}\nstrip_prefix = {}\n",
                route.prefix,
                route.upstream,
                route.public,
                if require.is_empty() { String::new() } else { format!(" {} ", require.join(", ")) },
                route.keep_authorization,
                route.strip_prefix
            );
        }
        out
    }
}

/// Parses the file's text, turning toml's multi-line report into one line with a line number.
fn parse_file(path: &Path, text: &str) -> Result<toml::Table, ConfigError> {
    let parse_error = |message: &str, span: Option<std::ops::Range<usize>>| {
        let location = span
            .map(|s| format!("line {}: ", text[..s.start.min(text.len())].matches('\n').count() + 1))
            .unwrap_or_default();
        ConfigError::Parse { path: path.to_owned(), message: format!("{location}{}", message.trim()) }
    };
    let table: toml::Table = toml::from_str(text).map_err(|e| parse_error(e.message(), e.span()))?;
    // Check the file alone against the model first, so a mistake in it is reported with its line.
    toml::from_str::<RawConfig>(text).map_err(|e| parse_error(e.message(), e.span()))?;
    Ok(table)
}

fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid(format!("{key}: {message}"));
    let duration = |key: &str, text: &str| parse_duration(text).map_err(|e| invalid(key, e));
    let listen = |key: &str, text: &str| {
        text.parse::<SocketAddr>()
            .map_err(|_| invalid(key, format!("{text:?} is not an address such as 127.0.0.1:8080")))
    };
    let rate = |key: &str, text: &Option<String>| match text.as_deref().map(str::trim) {
        None | Some("none") | Some("off") => Ok(None),
        Some(text) => text.parse::<Rate>().map(Some).map_err(|e| invalid(key, e)),
    };

    let trusted_proxies = raw
        .proxy
        .trusted_proxies
        .iter()
        .map(|text| parse_cidr(text).map_err(|e| invalid("proxy.trusted_proxies", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let proxy = ProxyConfig {
        listen: listen("proxy.listen", &raw.proxy.listen)?,
        realm: raw.proxy.realm.clone(),
        trusted_proxies,
        connect_timeout: positive(
            duration("proxy.connect_timeout", &raw.proxy.connect_timeout)?,
            "proxy.connect_timeout",
        )?,
        upstream_timeout: positive(
            duration("proxy.upstream_timeout", &raw.proxy.upstream_timeout)?,
            "proxy.upstream_timeout",
        )?,
        max_connections: match raw.proxy.max_connections {
            0 => return Err(invalid("proxy.max_connections", "must be at least 1".into())),
            n => n as usize,
        },
        upstream_ca_file: raw.proxy.upstream_ca_file.as_ref().map(PathBuf::from),
        upstream_tls: {
            let roots = match &raw.proxy.upstream_ca_file {
                Some(path) => {
                    crate::tls::read_certificates(Path::new(path)).map_err(|e| invalid("proxy.upstream_ca_file", e))?
                }
                None => Vec::new(),
            };
            Arc::new(crate::tls::upstream_client_config(&roots).map_err(|e| invalid("proxy.upstream_ca_file", e))?)
        },
        tls: listener_tls("proxy", &raw.proxy.tls_cert_file, &raw.proxy.tls_key_file)?,
        strip_request_headers: raw
            .proxy
            .strip_request_headers
            .iter()
            .map(|name| {
                http::HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| invalid("proxy.strip_request_headers", format!("{name:?} is not a header name")))
            })
            .collect::<Result<_, _>>()?,
    };
    if proxy.realm.is_empty() || proxy.realm.chars().any(|c| c == '"' || c.is_control()) {
        return Err(invalid("proxy.realm", "must be non-empty, without quotes or control characters".into()));
    }

    let database_url = match (raw.database.url, raw.database.url_file) {
        (Some(_), Some(_)) => {
            return Err(invalid("database.url", "give either url or url_file, not both".into()));
        }
        (Some(url), None) => url,
        (None, Some(file)) => read_secret_file("database.url_file", &file)?,
        (None, None) => DEFAULT_DATABASE_URL.to_owned(),
    };
    if !(database_url.starts_with("sqlite:")
        || database_url.starts_with("postgres://")
        || database_url.starts_with("postgresql://"))
    {
        return Err(invalid(
            "database.url",
            format!("{} is neither sqlite://PATH nor postgres://...", DatabaseUrl::new(database_url.clone()).masked()),
        ));
    }

    let max_lifetime = duration("tokens.max_lifetime", &raw.tokens.max_lifetime)?;
    let tokens = TokenPolicy {
        default_lifetime: default_lifetime(raw.tokens.default_lifetime.as_deref(), max_lifetime)?,
        max_lifetime,
        allow_never_expires: raw.tokens.allow_never_expires,
        scopes: raw.tokens.scopes.clone(),
        default_scopes: raw.tokens.default_scopes.clone(),
        revoke_unused_after: match raw.tokens.revoke_unused_after.as_deref().map(str::trim) {
            None | Some("none") | Some("off") => None,
            Some(text) => Some(positive(duration("tokens.revoke_unused_after", text)?, "tokens.revoke_unused_after")?),
        },
        warn_before: duration("tokens.warn_before", &raw.tokens.warn_before)?,
        sweep_interval: positive(
            duration("tokens.sweep_interval", &raw.tokens.sweep_interval)?,
            "tokens.sweep_interval",
        )?,
    };
    for scope in &tokens.scopes {
        if scope.is_empty() || scope == "*" || !scope.chars().all(|c| c.is_ascii_graphic()) {
            return Err(invalid("tokens.scopes", format!("{scope:?} is not a valid scope name")));
        }
    }
    for scope in &tokens.scopes {
        if crate::scope::is_reserved(scope) {
            return Err(invalid(
                "tokens.scopes",
                format!("{scope:?} is reserved and always valid: leave it out of tokens.scopes"),
            ));
        }
    }
    for scope in &tokens.default_scopes {
        if crate::scope::is_reserved(scope) || scope == crate::scope::ALL {
            // A token minted for a script must not administer anything unless someone asked.
            return Err(invalid(
                "tokens.default_scopes",
                format!("{scope:?} would give the admin scopes by default, which they never are; list the scopes"),
            ));
        }
        if !tokens.scopes.contains(scope) {
            return Err(invalid("tokens.default_scopes", format!("{scope:?} is not in tokens.scopes")));
        }
    }

    let notify = validate_notify(raw.notify)?;

    let routes = raw
        .routes
        .unwrap_or_else(|| vec![RawRoute::built_in_default()])
        .into_iter()
        .map(|route| validate_route(route, &tokens.scopes))
        .collect::<Result<Vec<_>, _>>()?;
    let mut prefixes = HashSet::new();
    for route in &routes {
        // `/api` and `/api/` are the same route to the router: one of them would be dead.
        if !prefixes.insert(route.prefix.trim_end_matches('/').to_owned()) {
            return Err(invalid("routes", format!("prefix {:?} appears twice", route.prefix)));
        }
    }

    Ok(Config {
        source: None,
        proxy,
        admin: AdminConfig {
            listen: listen("admin.listen", &raw.admin.listen)?,
            tls: listener_tls("admin", &raw.admin.tls_cert_file, &raw.admin.tls_key_file)?,
            metrics_require_auth: raw.admin.metrics_require_auth,
        },
        database: DatabaseConfig { url: DatabaseUrl::new(database_url) },
        sync: SyncConfig {
            interval: positive(duration("sync.interval", &raw.sync.interval)?, "sync.interval")?,
            max_lag: positive(duration("sync.max_lag", &raw.sync.max_lag)?, "sync.max_lag")?,
            confirm_timeout: duration("sync.confirm_timeout", &raw.sync.confirm_timeout)?,
            stale_after: {
                let stale_after = duration("sync.stale_after", &raw.sync.stale_after)?;
                // A gateway heartbeats every second: anything shorter would call live gateways dead.
                if stale_after < Duration::from_secs(3) {
                    return Err(invalid(
                        "sync.stale_after",
                        "must be at least 3s (gateways heartbeat every second)".into(),
                    ));
                }
                stale_after
            },
        },
        usage: UsageConfig {
            flush_interval: positive(
                duration("usage.flush_interval", &raw.usage.flush_interval)?,
                "usage.flush_interval",
            )?,
        },
        tokens,
        rate_limit: RateLimitConfig {
            default: rate("rate_limit.default", &raw.rate_limit.default)?,
            failed_auth: rate("rate_limit.failed_auth", &raw.rate_limit.failed_auth)?,
            redis: match raw.rate_limit.backend.as_str() {
                "local" => None,
                "redis" => {
                    let url = match (raw.rate_limit.redis_url, raw.rate_limit.redis_url_file) {
                        (Some(_), Some(_)) => {
                            return Err(invalid(
                                "rate_limit.redis_url",
                                "give either redis_url or redis_url_file".into(),
                            ));
                        }
                        (Some(url), None) => url,
                        (None, Some(file)) => read_secret_file("rate_limit.redis_url_file", &file)?,
                        (None, None) => {
                            return Err(invalid("rate_limit.redis_url", "backend = \"redis\" needs redis_url".into()));
                        }
                    };
                    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                        return Err(invalid("rate_limit.redis_url", "expected redis://HOST:PORT".into()));
                    }
                    let timeout = positive(
                        duration("rate_limit.redis_timeout", &raw.rate_limit.redis_timeout)?,
                        "rate_limit.redis_timeout",
                    )?;
                    Some(RedisLimits { url: DatabaseUrl::new(url), timeout })
                }
                other => {
                    return Err(invalid("rate_limit.backend", format!("{other:?} is neither \"local\" nor \"redis\"")));
                }
            },
        },
        notify,
        routes,
    })
}

fn validate_notify(raw: raw::RawNotify) -> Result<NotifyConfig, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid(format!("notify.{key}: {message}"));
    let secret =
        |key: &str, value: Option<String>, file: Option<PathBuf>| -> Result<Option<SecretString>, ConfigError> {
            match (value, file) {
                (Some(_), Some(_)) => Err(invalid(key, format!("give either {key} or {key}_file, not both"))),
                (Some(value), None) => Ok(Some(SecretString(value))),
                (None, Some(file)) => Ok(Some(SecretString(read_secret_file(&format!("notify.{key}_file"), &file)?))),
                (None, None) => Ok(None),
            }
        };
    let tls = match raw.smtp_tls.as_str() {
        "starttls" => SmtpTls::StartTls,
        "tls" => SmtpTls::Tls,
        "none" => SmtpTls::None,
        other => return Err(invalid("smtp_tls", format!("{other:?} is not starttls, tls or none"))),
    };
    let password = secret("smtp_password", raw.smtp_password, raw.smtp_password_file)?;
    let smtp = match raw.smtp_host.filter(|h| !h.trim().is_empty()) {
        Some(host) => {
            if !raw.from.contains('@') {
                return Err(invalid("from", format!("{:?} is not an address such as tokengate@example.com", raw.from)));
            }
            let default_port = match tls {
                SmtpTls::Tls => 465,
                SmtpTls::StartTls => 587,
                SmtpTls::None => 25,
            };
            Some(SmtpConfig {
                host,
                port: raw.smtp_port.unwrap_or(default_port),
                tls,
                username: raw.smtp_username,
                password,
                from: raw.from,
            })
        }
        None => None,
    };
    let webhook_secret = secret("webhook_secret", raw.webhook_secret, raw.webhook_secret_file)?;
    let webhook = match raw.webhook_url.filter(|u| !u.trim().is_empty()) {
        Some(url) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid("webhook_url", format!("{url:?} is not an http:// or https:// URL")));
            }
            Some(WebhookConfig { url, secret: webhook_secret })
        }
        None => None,
    };
    let expiry_reminders = raw
        .expiry_reminders
        .iter()
        .map(|text| parse_duration(text).map_err(|e| invalid("expiry_reminders", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let retry_base = parse_duration(&raw.retry_base).map_err(|e| invalid("retry_base", e))?;
    if retry_base.is_zero() || raw.max_attempts == 0 {
        return Err(invalid("retry_base", "retry_base and max_attempts must be greater than zero".into()));
    }
    Ok(NotifyConfig { smtp, webhook, expiry_reminders, retry_base, max_attempts: raw.max_attempts })
}

/// The lifetime of tokens created without one. Set by the operator (in the file or the
/// environment), it must fit under `max_lifetime`: an error naming both keys. Not set, the
/// built-in default follows a lower maximum, so that setting only `max_lifetime = "30d"` is
/// a valid configuration rather than a contradiction with a default nobody wrote.
fn default_lifetime(set: Option<&str>, max_lifetime: Duration) -> Result<Duration, ConfigError> {
    let Some(text) = set else {
        return Ok(DEFAULT_TOKEN_LIFETIME.min(max_lifetime));
    };
    let lifetime = parse_duration(text).map_err(|e| ConfigError::Invalid(format!("tokens.default_lifetime: {e}")))?;
    if lifetime > max_lifetime {
        return Err(ConfigError::Invalid(format!(
            "tokens.default_lifetime: {} exceeds tokens.max_lifetime ({})",
            format_duration(lifetime),
            format_duration(max_lifetime)
        )));
    }
    Ok(lifetime)
}

fn positive(duration: Duration, key: &str) -> Result<Duration, ConfigError> {
    if duration.is_zero() {
        Err(ConfigError::Invalid(format!("{key}: must be greater than zero")))
    } else {
        Ok(duration)
    }
}

fn parse_cidr(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an address or CIDR such as 10.0.0.0/8"))
}

fn read_secret_file(key: &str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|text| text.trim_end_matches(['\r', '\n']).to_owned())
        .map_err(|e| ConfigError::Invalid(format!("{key}: cannot read {}: {e}", path.display())))
}

/// A listener's TLS files for `check-config` (the paths; never the key).
fn describe_tls(tls: &Option<Arc<ListenerCertificate>>) -> String {
    match tls {
        Some(tls) => format!(
            "tls_cert_file = {:?}\ntls_key_file = {:?}\n",
            tls.cert_file.display().to_string(),
            tls.key_file.display().to_string()
        ),
        None => String::new(),
    }
}

/// `[section] tls_cert_file` and `tls_key_file`: both or neither; loaded and checked here, so
/// a wrong file is reported by `check-config` rather than at the first connection.
fn listener_tls(
    section: &str,
    cert: &Option<String>,
    key: &Option<String>,
) -> Result<Option<Arc<ListenerCertificate>>, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid(format!("{section}.{key}: {message}"));
    let (cert_file, key_file) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (PathBuf::from(cert), PathBuf::from(key)),
        (Some(_), None) => return Err(invalid("tls_key_file", "is needed with tls_cert_file".into())),
        (None, Some(_)) => return Err(invalid("tls_cert_file", "is needed with tls_key_file".into())),
    };
    match ListenerCertificate::load(cert_file, key_file) {
        Ok(certificate) => Ok(Some(Arc::new(certificate))),
        Err(CertificateError::Key(message)) => Err(invalid("tls_key_file", message)),
        Err(CertificateError::Certificate(message)) => Err(invalid("tls_cert_file", message)),
    }
}

fn validate_route(raw: RawRoute, known_scopes: &[String]) -> Result<RouteConfig, ConfigError> {
    let at = |message: String| ConfigError::Invalid(format!("routes (prefix {:?}): {message}", raw.prefix));
    if !raw.prefix.starts_with('/') {
        return Err(at("prefix must start with /".into()));
    }
    let uri: Uri = raw.upstream.parse().map_err(|_| at(format!("upstream {:?} is not a URL", raw.upstream)))?;
    let scheme = uri.scheme().cloned().ok_or_else(|| at("upstream needs a scheme such as http://".into()))?;
    if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
        return Err(at(format!("upstream scheme {scheme} is not supported; use http:// or https://")));
    }
    let authority = uri.authority().cloned().ok_or_else(|| at("upstream needs a host and port".into()))?;
    if authority.as_str().contains('@') {
        // It would be printed in logs, and never sent: upstream credentials do not belong here.
        return Err(at("upstream must not contain user information (user:password@)".into()));
    }
    if uri.query().is_some() {
        return Err(at("upstream must not have a query string".into()));
    }
    let base_path = uri.path().trim_end_matches('/').to_owned();
    // As clients write it: without the scheme's default port.
    let host_text = match authority.port_u16() {
        Some(port) if port == default_port(&scheme) => authority.host(),
        _ => authority.as_str(),
    };
    let host =
        http::HeaderValue::from_str(host_text).map_err(|_| at("upstream host is not a valid Host header".into()))?;

    let mut require = RequiredScopes::default();
    for (method, scope) in &raw.require {
        if !known_scopes.contains(scope) && !crate::scope::is_reserved(scope) {
            return Err(at(format!("require names scope {scope:?}, which is not in tokens.scopes")));
        }
        if method == "*" {
            require.otherwise = Some(scope.clone());
        } else {
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                .map_err(|_| at(format!("require names an invalid method {method:?}")))?;
            require.by_method.push((method, scope.clone()));
        }
    }
    if raw.public && require.scopes().next().is_some() {
        return Err(at("a public route cannot require scopes".into()));
    }
    Ok(RouteConfig {
        prefix: raw.prefix,
        upstream: Upstream { host, scheme, authority, base_path },
        public: raw.public,
        require,
        keep_authorization: raw.keep_authorization,
        strip_prefix: raw.strip_prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path), Vec::new())
    }

    #[test]
    fn the_shipped_config_files_are_valid() {
        for file in ["config/tokengate.toml", "config/tokengate.example.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            let config = Config::load(Some(&path), Vec::new()).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(!config.routes.is_empty(), "{file}");
        }
    }

    #[test]
    fn built_in_defaults_are_valid() {
        let config = Config::load(None, Vec::new()).unwrap();
        assert_eq!(config.proxy.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.database.url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(config.routes.len(), 1);
        assert_eq!(config.rate_limit.failed_auth.map(|r| r.to_string()).as_deref(), Some("30/min"));
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let err = load_text("[proxy]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("lisen") && err.contains("line 3"), "{err}");
        let err = load_text("[proxxy]\n").unwrap_err().to_string();
        assert!(err.contains("proxxy"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "[proxy]\nlisten = \"127.0.0.1:1\"\n").unwrap();
        let env = vec![("TOKENGATE_PROXY__LISTEN".to_owned(), "127.0.0.1:2".to_owned())];
        let config = Config::load(Some(&path), env).unwrap();
        assert_eq!(config.proxy.listen.port(), 2);
    }

    #[test]
    fn secrets_come_from_files_and_are_masked() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("db-url");
        std::fs::write(&secret, "postgres://app:hunter2@db/tokens\n").unwrap();
        let config = load_text(&format!("[database]\nurl_file = {:?}\n", secret.display().to_string())).unwrap();
        assert_eq!(config.database.url.expose(), "postgres://app:hunter2@db/tokens");
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(!config.describe().contains("hunter2"));
        let in_query = DatabaseUrl::new("postgres://app@db/tokens?sslmode=require&password=hunter2");
        assert_eq!(in_query.masked(), "postgres://app@db/tokens?sslmode=require&password=****");
        let odd = DatabaseUrl::new("postgres://app:s3?cr/3@t@db:5432/x?password=p?w");
        assert_eq!(odd.masked(), "postgres://app:****@db:5432/x?password=****");
        assert_eq!(DatabaseUrl::new("not a url hunter2").masked(), "<unparseable database URL>");
    }

    #[test]
    fn routes_are_validated() {
        let base = "[[routes]]\nprefix = \"/api\"\n";
        assert!(load_text(&format!("{base}upstream = \"ftp://x\"\n")).is_err());
        assert!(load_text(&format!("{base}upstream = \"http://u:p@h:1\"\n")).is_err());
        let twice = "[[routes]]\nprefix = \"/api\"\nupstream = \"http://h:1\"\n[[routes]]\nprefix = \"/api/\"\nupstream = \"http://h:2\"\n";
        assert!(load_text(twice).unwrap_err().to_string().contains("twice"));
        assert!(load_text("[proxy]\nupstream_timeout = \"0s\"\n").is_err());
        assert!(load_text(&format!("{base}upstream = \"http://h:1\"\nrequire = {{ GET = \"deploy\" }}\n")).is_err());
        let reserved = format!("{base}upstream = \"http://h:1\"\nrequire = {{ GET = \"admin:read\" }}\n");
        assert!(load_text(&reserved).is_ok(), "reserved scopes need no entry in tokens.scopes");
        let listed = load_text("[tokens]\nscopes = [\"read\", \"admin\"]\ndefault_scopes = [\"read\"]\n");
        assert!(listed.unwrap_err().to_string().contains("reserved"));
        for default in ["admin", "admin:read", "*"] {
            let text = format!("[tokens]\ndefault_scopes = [\"read\", \"{default}\"]\n");
            assert!(load_text(&text).unwrap_err().to_string().contains("tokens.default_scopes"), "{default}");
        }
        let config = load_text(&format!(
            "{base}upstream = \"http://h:1/base/\"\nrequire = {{ GET = \"read\", \"*\" = \"write\" }}\n"
        ))
        .unwrap();
        let route = &config.routes[0];
        assert_eq!(route.upstream.base_path, "/base");
        assert_eq!(route.require.for_method(&Method::GET), Some("read"));
        assert_eq!(route.require.for_method(&Method::DELETE), Some("write"));
        let lower = Method::from_bytes(b"get").unwrap();
        assert_eq!(route.require.for_method(&lower), Some("read"), "methods compare without case");
    }

    #[test]
    fn lifetimes_are_consistent() {
        let err = load_text("[tokens]\ndefault_lifetime = \"400d\"\n").unwrap_err().to_string();
        assert!(err.contains("tokens.default_lifetime") && err.contains("tokens.max_lifetime"), "{err}");
        let err = load_text("[tokens]\nmax_lifetime = \"30d\"\ndefault_lifetime = \"90d\"\n").unwrap_err().to_string();
        assert!(err.contains("tokens.default_lifetime") && err.contains("tokens.max_lifetime"), "{err}");
    }

    #[test]
    fn an_unset_default_lifetime_follows_a_lower_maximum() {
        let day = Duration::from_secs(86_400);
        let config = load_text("[tokens]\nmax_lifetime = \"30d\"\n").unwrap();
        assert_eq!(config.tokens.default_lifetime, 30 * day);
        let config = load_text("[tokens]\nmax_lifetime = \"400d\"\n").unwrap();
        assert_eq!(config.tokens.default_lifetime, DEFAULT_TOKEN_LIFETIME, "a higher maximum leaves the default");
        let config = load_text("[tokens]\nmax_lifetime = \"30d\"\ndefault_lifetime = \"7d\"\n").unwrap();
        assert_eq!(config.tokens.default_lifetime, 7 * day);
        // Set in the environment counts as set.
        let env = vec![("TOKENGATE_TOKENS__DEFAULT_LIFETIME".to_owned(), "60d".to_owned())];
        let err = Config::load(None, env.clone().into_iter().chain([max_30d()])).unwrap_err().to_string();
        assert!(err.contains("tokens.default_lifetime") && err.contains("tokens.max_lifetime"), "{err}");
        let config = Config::load(None, vec![max_30d()]).unwrap();
        assert_eq!(config.tokens.default_lifetime, 30 * day);
    }

    fn max_30d() -> (String, String) {
        ("TOKENGATE_TOKENS__MAX_LIFETIME".to_owned(), "30d".to_owned())
    }

    #[test]
    fn webhook_urls_are_masked() {
        for (url, masked) in [
            ("https://user:secret@hooks.example.com/x", "https://user:****@hooks.example.com/x"),
            ("https://hooks.example.com/x?token=secret&v=2", "https://hooks.example.com/x?token=****&v=****"),
            ("https://secret@hooks.example.com/x", "https://****@hooks.example.com/x"),
            ("https://hooks.example.com/x#secret", "https://hooks.example.com/x#****"),
            (
                "https://hooks.slack.com/services/T0000/B0000/XXXXsecretXXXXXXXXXXXXX",
                "https://hooks.slack.com/services/T0000/B0000/****",
            ),
            ("http://127.0.0.1:9000/tokengate", "http://127.0.0.1:9000/tokengate"),
        ] {
            assert_eq!(masked_webhook_url(url), masked, "{url}");
        }
        assert_eq!(masked_webhook_url("not a url secret"), "<unparseable URL>");
        let config = load_text("[notify]\nwebhook_url = \"https://u:hunter2@h.example.com/x?key=hunter2\"\n").unwrap();
        assert!(!format!("{config:?}").contains("hunter2"), "{config:?}");
        assert!(!config.describe().contains("hunter2"));
        assert!(config.describe().contains("h.example.com"));
    }
}
