//! Validation: the raw file model becomes the [`Config`] everything else reads. Every rule
//! lives here, and every error names the key it is about (`proxy.listen: ...`), so an operator
//! knows what to change. Each check records its problem and validation goes on, so one run
//! reports every wrong value; a check that needs another key's value is skipped when that value
//! is wrong, rather than reported as a confusing follow-on.

mod notify;
mod routes;

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::problems::Problems;
use super::raw::{RawAdmin, RawConfig, RawDatabase, RawLog, RawProxy, RawRateLimit, RawSync, RawTokens, RawUsage};
use super::secrets::read_secret_file;
use super::{
    AdminConfig, Config, ConfigError, DEFAULT_DATABASE_URL, DEFAULT_MAX_LIFETIME, DEFAULT_TOKEN_LIFETIME,
    DatabaseConfig, ForwardAuthConfig, LogConfig, NotifyConfig, ProxyConfig, RateLimitConfig, RedisLimits, RouteConfig,
    SecretUrl, SyncConfig, TokenPolicy, UsageConfig,
};
use crate::data::tls::{CertificateError, ListenerCertificate};
use crate::model::duration::{format_duration, parse_duration};
use crate::model::rate::Rate;
use crate::model::scope;

/// Turns the file model into the validated configuration, or reports every problem: those
/// found in it here, after those `problems` holds from reading it. Sections are checked in the
/// order of the file model (as `check-config` prints them), so the list comes in a stable order.
pub(super) fn validate(raw: RawConfig, mut problems: Problems) -> Result<Config, ConfigError> {
    let p = &mut problems;
    let scopes = token_scopes(p, &raw.tokens);
    let default_port = proxy_default_port(p, &raw.proxy);
    let sections = Sections {
        proxy: proxy(p, &raw.proxy),
        admin: admin(p, &raw.admin),
        database: database(p, raw.database),
        sync: sync(p, &raw.sync),
        usage: usage(p, &raw.usage),
        tokens: tokens(p, &raw.tokens, scopes.as_deref()),
        rate_limit: rate_limit(p, raw.rate_limit),
        notify: notify::notify(p, raw.notify),
        routes: routes::routes(p, raw.routes, scopes.as_deref(), default_port),
        log: log(p, &raw.log),
        forward_auth: p
            .check(raw.forward_auth.path.map(forward_auth_path).transpose())
            .map(|path| ForwardAuthConfig { path }),
    };
    let config = sections.into_config();
    problems.finish(config)
}

/// Each section as validated: `None` where one of its checks failed.
struct Sections {
    proxy: Option<ProxyConfig>,
    admin: Option<AdminConfig>,
    database: Option<DatabaseConfig>,
    sync: Option<SyncConfig>,
    usage: Option<UsageConfig>,
    tokens: Option<TokenPolicy>,
    rate_limit: Option<RateLimitConfig>,
    notify: Option<NotifyConfig>,
    routes: Option<Vec<RouteConfig>>,
    log: Option<LogConfig>,
    forward_auth: Option<ForwardAuthConfig>,
}

impl Sections {
    /// The configuration, when every section passed.
    fn into_config(self) -> Option<Config> {
        Some(Config {
            source: None,
            proxy: self.proxy?,
            admin: self.admin?,
            database: self.database?,
            sync: self.sync?,
            usage: self.usage?,
            tokens: self.tokens?,
            rate_limit: self.rate_limit?,
            notify: self.notify?,
            routes: self.routes?,
            log: self.log?,
            forward_auth: self.forward_auth?,
        })
    }
}

/// The problem `key: message`.
fn invalid(key: &str, message: impl Display) -> ConfigError {
    ConfigError::invalid(format!("{key}: {message}"))
}

fn duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    parse_duration(text).map_err(|e| invalid(key, e))
}

/// A duration that must not be zero (an interval, a timeout).
fn positive_duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    match duration(key, text)? {
        zero if zero.is_zero() => Err(invalid(key, "must be greater than zero")),
        duration => Ok(duration),
    }
}

fn listen(key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| invalid(key, format!("{text:?} is not an address such as 127.0.0.1:8080")))
}

/// A rate, or `None` for no limit (left out, `none` or `off`).
fn rate(key: &str, text: Option<&str>) -> Result<Option<Rate>, ConfigError> {
    match text.map(str::trim) {
        None | Some("none") | Some("off") => Ok(None),
        Some(text) => text.parse::<Rate>().map(Some).map_err(|e| invalid(key, e)),
    }
}

fn proxy(p: &mut Problems, raw: &RawProxy) -> Option<ProxyConfig> {
    let listen = p.check(listen("proxy.listen", &raw.listen));
    let realm = p.check(realm(&raw.realm));
    let trusted_proxies = p.check_each(
        raw.trusted_proxies.iter().map(|text| parse_cidr(text).map_err(|e| invalid("proxy.trusted_proxies", e))),
    );
    let connect_timeout = p.check(positive_duration("proxy.connect_timeout", &raw.connect_timeout));
    let upstream_timeout = p.check(positive_duration("proxy.upstream_timeout", &raw.upstream_timeout));
    let max_connections = p.check(match raw.max_connections {
        0 => Err(invalid("proxy.max_connections", "must be at least 1")),
        n => Ok(n as usize),
    });
    let workers = p.check(match raw.workers {
        Some(0) => Err(invalid("proxy.workers", "must be at least 1 (or left out: one per core)")),
        Some(n) if n > 1024 => Err(invalid("proxy.workers", format!("{n} is more than 1024"))),
        other => Ok(other.map(|n| n as usize)),
    });
    let upstream_tls = p.check(upstream_tls(raw.upstream_ca_file.as_deref()));
    let tls = listener_tls(p, "proxy", &raw.tls_cert_file, &raw.tls_key_file);
    let strip_request_headers = p.check_each(raw.strip_request_headers.iter().map(|name| {
        http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| invalid("proxy.strip_request_headers", format!("{name:?} is not a header name")))
    }));
    let methods = p.check(proxy_methods(&raw.methods).map_err(|e| invalid("proxy.methods", e)));
    let client_body_timeout = p.check(positive_duration("proxy.client_body_timeout", &raw.client_body_timeout));
    let send_timeout = p.check(positive_duration("proxy.send_timeout", &raw.send_timeout));
    let tunnel_idle_timeout = p.check(positive_duration("proxy.tunnel_idle_timeout", &raw.tunnel_idle_timeout));
    let upstream_queue_timeout =
        p.check(positive_duration("proxy.upstream_queue_timeout", &raw.upstream_queue_timeout));
    Some(ProxyConfig {
        listen: listen?,
        realm: realm?,
        trusted_proxies: trusted_proxies?,
        connect_timeout: connect_timeout?,
        upstream_timeout: upstream_timeout?,
        max_connections: max_connections?,
        workers: workers?,
        upstream_ca_file: raw.upstream_ca_file.as_ref().map(PathBuf::from),
        upstream_tls: upstream_tls?,
        tls: tls?,
        strip_request_headers: strip_request_headers?,
        methods: methods?,
        max_connections_per_ip: (raw.max_connections_per_ip > 0).then_some(raw.max_connections_per_ip as usize),
        client_body_timeout: client_body_timeout?,
        send_timeout: send_timeout?,
        tunnel_idle_timeout: tunnel_idle_timeout?,
        max_upstream_connections: (raw.max_upstream_connections > 0).then_some(raw.max_upstream_connections as usize),
        upstream_queue_timeout: upstream_queue_timeout?,
    })
}

/// `proxy.realm` goes into a quoted `WWW-Authenticate` parameter.
fn realm(realm: &str) -> Result<String, ConfigError> {
    if realm.is_empty() || realm.chars().any(|c| c == '"' || c.is_control()) {
        return Err(invalid("proxy.realm", "must be non-empty, without quotes or control characters"));
    }
    Ok(realm.to_owned())
}

/// The client side of `https://` upstreams: the public web's roots and those in `ca_file`.
fn upstream_tls(ca_file: Option<&str>) -> Result<Arc<rustls::ClientConfig>, ConfigError> {
    let key = "proxy.upstream_ca_file";
    let roots = match ca_file {
        Some(path) => crate::data::tls::read_certificates(Path::new(path)).map_err(|e| invalid(key, e))?,
        None => Vec::new(),
    };
    crate::data::tls::upstream_client_config(&roots).map(Arc::new).map_err(|e| invalid(key, e))
}

/// The port a route host without one means, as the router compares hosts: the proxy
/// listener's default. `None` when that is not known (a TLS key set aside, or given without
/// its partner, which is reported already), so the routes' duplicate check does not guess.
fn proxy_default_port(p: &Problems, raw: &RawProxy) -> Option<u16> {
    if !p.usable("proxy.tls_cert_file") || !p.usable("proxy.tls_key_file") {
        return None;
    }
    match (&raw.tls_cert_file, &raw.tls_key_file) {
        (None, None) => Some(80),
        (Some(_), Some(_)) => Some(443),
        _ => None,
    }
}

fn admin(p: &mut Problems, raw: &RawAdmin) -> Option<AdminConfig> {
    let listen = p.check(listen("admin.listen", &raw.listen));
    let tls = listener_tls(p, "admin", &raw.tls_cert_file, &raw.tls_key_file);
    Some(AdminConfig { listen: listen?, tls: tls?, metrics_require_auth: raw.metrics_require_auth })
}

/// `[section] tls_cert_file` and `tls_key_file`: both or neither; loaded and checked here, so
/// a wrong file is reported by `check-config` rather than at the first connection. Skipped when
/// either key was set aside: "needs its partner" would be a follow-on.
fn listener_tls(
    p: &mut Problems,
    section: &str,
    cert: &Option<String>,
    key: &Option<String>,
) -> Option<Option<Arc<ListenerCertificate>>> {
    let (cert_key, key_key) = (format!("{section}.tls_cert_file"), format!("{section}.tls_key_file"));
    if !p.usable(&cert_key) || !p.usable(&key_key) {
        return None;
    }
    let (cert_file, key_file) = match (cert, key) {
        (None, None) => return Some(None),
        (Some(cert), Some(key)) => (PathBuf::from(cert), PathBuf::from(key)),
        (Some(_), None) => return p.check(Err(invalid(&key_key, "is needed with tls_cert_file"))),
        (None, Some(_)) => return p.check(Err(invalid(&cert_key, "is needed with tls_key_file"))),
    };
    p.check(match ListenerCertificate::load(cert_file, key_file) {
        Ok(certificate) => Ok(Some(Arc::new(certificate))),
        Err(CertificateError::Key(message)) => Err(invalid(&key_key, message)),
        Err(CertificateError::Certificate(message)) => Err(invalid(&cert_key, message)),
    })
}

fn database(p: &mut Problems, raw: RawDatabase) -> Option<DatabaseConfig> {
    let url = match (raw.url, raw.url_file) {
        (Some(_), Some(_)) => Err(invalid("database.url", "give either url or url_file, not both")),
        (Some(url), None) => Ok(url),
        (None, Some(file)) => read_secret_file("database.url_file", &file),
        (None, None) => Ok(DEFAULT_DATABASE_URL.to_owned()),
    };
    let url = p.check(url.and_then(database_url))?;
    Some(DatabaseConfig { url: SecretUrl::new(url) })
}

/// A URL of a database the store can open; shown masked if it is not one.
fn database_url(url: String) -> Result<String, ConfigError> {
    if url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(url);
    }
    let masked = SecretUrl::new(url).masked();
    Err(invalid("database.url", format!("{masked} is neither sqlite://PATH nor postgres://...")))
}

fn sync(p: &mut Problems, raw: &RawSync) -> Option<SyncConfig> {
    let interval = p.check(positive_duration("sync.interval", &raw.interval));
    let max_lag = p.check(positive_duration("sync.max_lag", &raw.max_lag));
    let confirm_timeout = p.check(duration("sync.confirm_timeout", &raw.confirm_timeout));
    let stale_after = p.check(duration("sync.stale_after", &raw.stale_after).and_then(|stale_after| {
        // A gateway heartbeats every second: anything shorter would call live gateways dead.
        if stale_after < Duration::from_secs(3) {
            return Err(invalid("sync.stale_after", "must be at least 3s (gateways heartbeat every second)"));
        }
        Ok(stale_after)
    }));
    Some(SyncConfig {
        interval: interval?,
        max_lag: max_lag?,
        confirm_timeout: confirm_timeout?,
        stale_after: stale_after?,
    })
}

fn usage(p: &mut Problems, raw: &RawUsage) -> Option<UsageConfig> {
    let flush_interval = p.check(positive_duration("usage.flush_interval", &raw.flush_interval));
    let keep_days = p.check(match raw.keep_days {
        days @ 1..=36_500 => Ok(days),
        _ => Err(invalid("usage.keep_days", "must be a whole number of days from 1 to 36500")),
    });
    Some(UsageConfig { flush_interval: flush_interval?, counters: raw.counters, keep_days: keep_days? })
}

/// `tokens.scopes`, which routes and `tokens.default_scopes` are judged against: `None` when a
/// name is wrong, or when the value was set aside (the default standing in for it is not what
/// the operator wrote, so nothing is judged against it).
fn token_scopes(p: &mut Problems, raw: &RawTokens) -> Option<Vec<String>> {
    if !p.usable("tokens.scopes") {
        return None;
    }
    p.check_each(raw.scopes.iter().map(|name| {
        if name.is_empty() || name == scope::ALL || !name.chars().all(|c| c.is_ascii_graphic()) {
            return Err(invalid("tokens.scopes", format!("{name:?} is not a valid scope name")));
        }
        if scope::is_reserved(name) {
            return Err(invalid(
                "tokens.scopes",
                format!("{name:?} is reserved and always valid: leave it out of tokens.scopes"),
            ));
        }
        Ok(name.clone())
    }))
}

/// `[tokens]` but its `scopes`, checked already (`None`: wrong).
fn tokens(p: &mut Problems, raw: &RawTokens, scopes: Option<&[String]>) -> Option<TokenPolicy> {
    let max_lifetime = match raw.max_lifetime.as_deref() {
        _ if !p.usable("tokens.max_lifetime") => None,
        Some(text) => p.check(duration("tokens.max_lifetime", text)),
        None => Some(DEFAULT_MAX_LIFETIME),
    };
    let default_lifetime = p.check(default_lifetime(raw.default_lifetime.as_deref(), max_lifetime)).flatten();
    let default_scopes = p.check_each(raw.default_scopes.iter().map(|name| default_scope(name, scopes)));
    let revoke_unused_after = p.check(match raw.revoke_unused_after.as_deref().map(str::trim) {
        None | Some("none") | Some("off") => Ok(None),
        Some(text) => positive_duration("tokens.revoke_unused_after", text).map(Some),
    });
    let warn_before = p.check(duration("tokens.warn_before", &raw.warn_before));
    let sweep_interval = p.check(positive_duration("tokens.sweep_interval", &raw.sweep_interval));
    Some(TokenPolicy {
        default_lifetime: default_lifetime?,
        max_lifetime: max_lifetime?,
        max_lifetime_set: raw.max_lifetime.is_some(),
        allow_never_expires: raw.allow_never_expires,
        scopes: scopes?.to_vec(),
        default_scopes: default_scopes?,
        revoke_unused_after: revoke_unused_after?,
        warn_before: warn_before?,
        sweep_interval: sweep_interval?,
    })
}

/// The lifetime of tokens created without one. Set by the operator (in the file or the
/// environment), it must fit under `max_lifetime`: an error naming both keys. Not set, the
/// built-in default follows a lower maximum, so that setting only `max_lifetime = "30d"` is
/// a valid configuration rather than a contradiction with a default nobody wrote. With the
/// maximum wrong (`None`) only the value itself is checked, and there is no lifetime.
fn default_lifetime(set: Option<&str>, max_lifetime: Option<Duration>) -> Result<Option<Duration>, ConfigError> {
    let lifetime = set.map(|text| duration("tokens.default_lifetime", text)).transpose()?;
    let Some(max_lifetime) = max_lifetime else {
        return Ok(None);
    };
    match lifetime {
        None => Ok(Some(DEFAULT_TOKEN_LIFETIME.min(max_lifetime))),
        Some(lifetime) if lifetime > max_lifetime => Err(invalid(
            "tokens.default_lifetime",
            format!("{} exceeds tokens.max_lifetime ({})", format_duration(lifetime), format_duration(max_lifetime)),
        )),
        Some(lifetime) => Ok(Some(lifetime)),
    }
}

/// One of `tokens.default_scopes`: never an admin scope, and one of `scopes` when those are
/// known (`None`: wrong, and reported already).
fn default_scope(name: &str, scopes: Option<&[String]>) -> Result<String, ConfigError> {
    if scope::is_reserved(name) || name == scope::ALL {
        // A token minted for a script must not administer anything unless someone asked.
        return Err(invalid(
            "tokens.default_scopes",
            format!("{name:?} would give the admin scopes by default, which they never are; list the scopes"),
        ));
    }
    if scopes.is_some_and(|scopes| !scopes.iter().any(|known| known == name)) {
        return Err(invalid("tokens.default_scopes", format!("{name:?} is not in tokens.scopes")));
    }
    Ok(name.to_owned())
}

fn rate_limit(p: &mut Problems, raw: RawRateLimit) -> Option<RateLimitConfig> {
    let default = p.check(rate("rate_limit.default", raw.default.as_deref()));
    let failed_auth = p.check(rate("rate_limit.failed_auth", raw.failed_auth.as_deref()));
    let redis = match raw.backend.as_str() {
        "local" => Some(None),
        "redis" => redis(p, raw).map(Some),
        other => p.check(Err(invalid("rate_limit.backend", format!("{other:?} is neither \"local\" nor \"redis\"")))),
    };
    Some(RateLimitConfig { default: default?, failed_auth: failed_auth?, redis: redis? })
}

/// `backend = "redis"`: its URL (skipped when `redis_url` or `redis_url_file` was set aside, as
/// "needs redis_url" would be a follow-on) and its timeout.
fn redis(p: &mut Problems, raw: RawRateLimit) -> Option<RedisLimits> {
    let url = if p.usable("rate_limit.redis_url") && p.usable("rate_limit.redis_url_file") {
        p.check(redis_url(raw.redis_url, raw.redis_url_file.as_deref()))
    } else {
        None
    };
    let timeout = p.check(positive_duration("rate_limit.redis_timeout", &raw.redis_timeout));
    Some(RedisLimits { url: SecretUrl::new(url?), timeout: timeout? })
}

fn redis_url(url: Option<String>, file: Option<&Path>) -> Result<String, ConfigError> {
    let url = match (url, file) {
        (Some(_), Some(_)) => return Err(invalid("rate_limit.redis_url", "give either redis_url or redis_url_file")),
        (Some(url), None) => url,
        (None, Some(file)) => read_secret_file("rate_limit.redis_url_file", file)?,
        (None, None) => return Err(invalid("rate_limit.redis_url", "backend = \"redis\" needs redis_url")),
    };
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(invalid("rate_limit.redis_url", "expected redis://HOST:PORT"));
    }
    Ok(url)
}

fn log(p: &mut Problems, raw: &RawLog) -> Option<LogConfig> {
    let json = p.check(match raw.format.as_str() {
        "text" => Ok(false),
        "json" => Ok(true),
        other => Err(invalid("log.format", format!("{other:?}: expected \"text\" or \"json\""))),
    });
    Some(LogConfig { json: json?, access: raw.access })
}

/// `forward_auth.path`: an absolute path as clients write it, without a query, that needs no
/// rewriting (the check compares it with the request's path byte for byte).
fn forward_auth_path(path: String) -> Result<String, ConfigError> {
    let canonical = path.starts_with('/')
        && !path.contains(['?', '#', '%', '\\'])
        && path.parse::<http::uri::PathAndQuery>().is_ok()
        && !path.split('/').any(|segment| segment == "." || segment == "..")
        && !path.contains("//");
    if canonical {
        Ok(path)
    } else {
        Err(invalid(
            "forward_auth.path",
            format!(
                "{path:?} must be an absolute path such as \"/_tokengate/auth\", without a query, \
                 percent-encoding, dot segments or doubled slashes"
            ),
        ))
    }
}

/// `proxy.methods`: upper case, known to HTTP's grammar, no duplicates, never CONNECT or TRACE.
fn proxy_methods(names: &[String]) -> Result<Vec<http::Method>, String> {
    if names.is_empty() {
        return Err("lists no method: nothing could be proxied".into());
    }
    let mut methods: Vec<http::Method> = Vec::new();
    for name in names {
        let method = http::Method::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a method"))?;
        if !crate::data::proxy::route::is_standard_spelling(&method) {
            return Err(format!("{name:?}: methods are written in upper case"));
        }
        if method == http::Method::CONNECT || method == http::Method::TRACE {
            return Err(format!("{name} is never proxied (CONNECT opens a tunnel, TRACE echoes credentials)"));
        }
        if methods.contains(&method) {
            return Err(format!("{name} is listed twice"));
        }
        methods.push(method);
    }
    Ok(methods)
}

fn parse_cidr(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an address or CIDR such as 10.0.0.0/8"))
}

#[cfg(test)]
mod tests {
    use super::super::load::load_text;
    use super::*;

    #[test]
    fn one_wrong_value_reads_as_it_always_did() {
        let error = load_text("[proxy]\nlisten = \"nowhere\"\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid configuration: proxy.listen: \"nowhere\" is not an address such as 127.0.0.1:8080"
        );
        assert!(matches!(&error, ConfigError::Invalid(problems) if problems.len() == 1), "{error:?}");
    }

    #[test]
    fn every_wrong_value_is_reported_in_one_run() {
        let text = "[proxy]\nlisten = \"nowhere\"\n\n[sync]\ninterval = \"soon\"\n\n\
                    [[routes]]\nprefix = \"/api\"\nupstream = \"http://h:1\"\nrequire = { GET = \"deploy\" }\n\n\
                    [log]\nformat = \"yaml\"\n";
        let error = load_text(text).unwrap_err();
        let ConfigError::Invalid(problems) = &error else { panic!("{error:?}") };
        let keys: Vec<&str> = problems.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(keys, ["proxy.listen", "sync.interval", "routes (prefix \"/api\")", "log.format"], "{error}");
        assert!(problems[2].ends_with("require names scope \"deploy\", which is not in tokens.scopes"), "{error}");
        let text = error.to_string();
        assert!(text.starts_with("invalid configuration: 4 problems:\n  - proxy.listen: \"nowhere\" is not"), "{text}");
        assert!(text.ends_with("\n  - log.format: \"yaml\": expected \"text\" or \"json\""), "{text}");
        assert_eq!(text.lines().count(), 5, "{text}");
    }

    #[test]
    fn every_entry_of_a_list_is_judged() {
        let text = "[proxy]\ntrusted_proxies = [\"10.0.0.0/8\", \"x\", \"y\"]\n\n\
                    [[routes]]\nprefix = \"api\"\nupstream = \"ftp://h\"\npublic_methods = [\"options\"]\n";
        let error = load_text(text).unwrap_err().to_string();
        for expected in [
            "proxy.trusted_proxies: \"x\" is not",
            "proxy.trusted_proxies: \"y\" is not",
            "routes (prefix \"api\"): prefix must start with /",
            "routes (prefix \"api\"): upstream scheme ftp is not supported",
            "routes (prefix \"api\"): public_methods names \"options\"",
        ] {
            assert!(error.contains(&format!("\n  - {expected}")), "{expected}: {error}");
        }
        assert!(error.starts_with("invalid configuration: 5 problems:"), "{error}");
    }

    #[test]
    fn checks_that_need_a_wrong_value_are_skipped() {
        // Route scopes and default scopes need tokens.scopes; default_lifetime needs max_lifetime.
        let text = "[tokens]\nscopes = [\"read\", \"bad scope\"]\ndefault_scopes = [\"deploy\"]\n\
                    max_lifetime = \"forever\"\ndefault_lifetime = \"400d\"\n\n\
                    [[routes]]\nprefix = \"/\"\nupstream = \"http://h:1\"\nrequire = { GET = \"deploy\" }\n";
        let error = load_text(text).unwrap_err();
        let ConfigError::Invalid(problems) = &error else { panic!("{error:?}") };
        assert_eq!(problems.len(), 2, "{error}");
        assert!(problems[0].starts_with("tokens.scopes: \"bad scope\" is not a valid scope name"), "{error}");
        assert!(problems[1].starts_with("tokens.max_lifetime: "), "{error}");
        // A default lifetime that is wrong on its own is still reported.
        let error = load_text("[tokens]\nmax_lifetime = \"forever\"\ndefault_lifetime = \"long\"\n").unwrap_err();
        assert!(matches!(&error, ConfigError::Invalid(problems) if problems.len() == 2), "{error}");
        assert!(error.to_string().contains("\n  - tokens.default_lifetime: "), "{error}");
    }

    #[test]
    fn problems_never_show_a_secret() {
        let text = "[database]\nurl = \"mysql://app:hunter2@db/x\"\n\n[notify]\n\
                    webhook_url = \"ftp://u:hunter2@hooks.example.com/x?key=hunter2\"\n\n\
                    [rate_limit]\nbackend = \"redis\"\nredis_url = \"http://:hunter2@r:6379\"\n";
        let error = load_text(text).unwrap_err().to_string();
        assert!(error.starts_with("invalid configuration: 3 problems:"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        assert!(error.contains("notify.webhook_url: ftp://u:****@hooks.example.com/x?key=**** is not"), "{error}");
    }

    #[test]
    fn lifetimes_are_consistent() {
        let err = load_text("[tokens]\ndefault_lifetime = \"400d\"\n").unwrap_err().to_string();
        assert!(err.contains("tokens.default_lifetime") && err.contains("tokens.max_lifetime"), "{err}");
        let err = load_text("[tokens]\nmax_lifetime = \"30d\"\ndefault_lifetime = \"90d\"\n").unwrap_err().to_string();
        assert!(err.contains("tokens.default_lifetime") && err.contains("tokens.max_lifetime"), "{err}");
    }

    #[test]
    fn a_max_lifetime_counts_as_set_from_the_file_or_the_environment() {
        let config = load_text("").unwrap();
        assert_eq!((config.tokens.max_lifetime, config.tokens.max_lifetime_set), (DEFAULT_MAX_LIFETIME, false));
        let config = load_text("[tokens]\nmax_lifetime = \"365d\"\n").unwrap();
        assert!(config.tokens.max_lifetime_set, "set to the default's value is still set");
        let config = Config::load(None, vec![max_30d()]).unwrap();
        assert!(config.tokens.max_lifetime_set);
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
}
