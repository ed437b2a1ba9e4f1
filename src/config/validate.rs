//! Validation: the raw file model becomes the [`Config`] everything else reads. Every rule
//! lives here, and every error names the key it is about (`proxy.listen: ...`), so an operator
//! knows what to change.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Uri};
use ipnet::IpNet;

use super::raw::{RawConfig, RawNotify, RawRoute};
use super::secrets::read_secret_file;
use super::{
    AdminConfig, Config, ConfigError, DEFAULT_DATABASE_URL, DEFAULT_MAX_LIFETIME, DEFAULT_TOKEN_LIFETIME,
    DatabaseConfig, ForwardAuthConfig, LogConfig, NotifyConfig, ProxyConfig, RateLimitConfig, RedisLimits,
    RequiredScopes, RouteConfig, RouteHost, SecretString, SecretUrl, SmtpConfig, SmtpTls, SyncConfig, TokenPolicy,
    Upstream, UsageConfig, WebhookConfig, default_port,
};
use crate::data::tls::{CertificateError, ListenerCertificate};
use crate::model::duration::{format_duration, parse_duration};
use crate::model::rate::Rate;

/// Turns the file model into the validated configuration, or names the first key that is wrong.
pub(super) fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
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
        workers: match raw.proxy.workers {
            Some(0) => return Err(invalid("proxy.workers", "must be at least 1 (or left out: one per core)".into())),
            Some(n) if n > 1024 => return Err(invalid("proxy.workers", format!("{n} is more than 1024"))),
            other => other.map(|n| n as usize),
        },
        max_connections: match raw.proxy.max_connections {
            0 => return Err(invalid("proxy.max_connections", "must be at least 1".into())),
            n => n as usize,
        },
        upstream_ca_file: raw.proxy.upstream_ca_file.as_ref().map(PathBuf::from),
        upstream_tls: {
            let roots = match &raw.proxy.upstream_ca_file {
                Some(path) => crate::data::tls::read_certificates(Path::new(path))
                    .map_err(|e| invalid("proxy.upstream_ca_file", e))?,
                None => Vec::new(),
            };
            Arc::new(
                crate::data::tls::upstream_client_config(&roots).map_err(|e| invalid("proxy.upstream_ca_file", e))?,
            )
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
        methods: proxy_methods(&raw.proxy.methods).map_err(|e| invalid("proxy.methods", e))?,
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
            format!("{} is neither sqlite://PATH nor postgres://...", SecretUrl::new(database_url.clone()).masked()),
        ));
    }

    let max_lifetime = match raw.tokens.max_lifetime.as_deref() {
        Some(text) => duration("tokens.max_lifetime", text)?,
        None => DEFAULT_MAX_LIFETIME,
    };
    let tokens = TokenPolicy {
        default_lifetime: default_lifetime(raw.tokens.default_lifetime.as_deref(), max_lifetime)?,
        max_lifetime,
        max_lifetime_set: raw.tokens.max_lifetime.is_some(),
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
        if crate::model::scope::is_reserved(scope) {
            return Err(invalid(
                "tokens.scopes",
                format!("{scope:?} is reserved and always valid: leave it out of tokens.scopes"),
            ));
        }
    }
    for scope in &tokens.default_scopes {
        if crate::model::scope::is_reserved(scope) || scope == crate::model::scope::ALL {
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
    // A host without a port means the listener's default port, as the router compares hosts.
    let default_port = if proxy.tls.is_some() { 443 } else { 80 };
    for route in &routes {
        // `/api` and `/api/` are the same route to the router: one of them would be dead. The
        // same prefix on different hosts (or on a host and without one) is not.
        let host = route.host.as_ref().map(|host| (host.name.clone(), host.port.unwrap_or(default_port)));
        if !prefixes.insert((route.prefix.trim_end_matches('/').to_owned(), host)) {
            let on = route.host.as_ref().map(|host| format!(" for host {:?}", host.to_string())).unwrap_or_default();
            return Err(invalid("routes", format!("prefix {:?} appears twice{on}", route.prefix)));
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
        database: DatabaseConfig { url: SecretUrl::new(database_url) },
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
            counters: raw.usage.counters,
            keep_days: match raw.usage.keep_days {
                days @ 1..=36_500 => days,
                _ => return Err(invalid("usage.keep_days", "must be a whole number of days from 1 to 36500".into())),
            },
        },
        tokens,
        forward_auth: ForwardAuthConfig { path: raw.forward_auth.path.map(forward_auth_path).transpose()? },
        log: LogConfig {
            json: match raw.log.format.as_str() {
                "text" => false,
                "json" => true,
                other => return Err(invalid("log.format", format!("{other:?}: expected \"text\" or \"json\""))),
            },
            access: raw.log.access,
        },
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
                    Some(RedisLimits { url: SecretUrl::new(url), timeout })
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

fn validate_notify(raw: RawNotify) -> Result<NotifyConfig, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid(format!("notify.{key}: {message}"));
    let secret = |key: &str,
                  value: Option<String>,
                  file: Option<PathBuf>|
     -> Result<Option<SecretString>, ConfigError> {
        match (value, file) {
            (Some(_), Some(_)) => Err(invalid(key, format!("give either {key} or {key}_file, not both"))),
            (Some(value), None) => Ok(Some(SecretString::new(value))),
            (None, Some(file)) => Ok(Some(SecretString::new(read_secret_file(&format!("notify.{key}_file"), &file)?))),
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
        Err(ConfigError::Invalid(format!(
            "forward_auth.path: {path:?} must be an absolute path such as \"/_tokengate/auth\", without a query, \
             percent-encoding, dot segments or doubled slashes"
        )))
    }
}

fn positive(duration: Duration, key: &str) -> Result<Duration, ConfigError> {
    if duration.is_zero() {
        Err(ConfigError::Invalid(format!("{key}: must be greater than zero")))
    } else {
        Ok(duration)
    }
}

/// `proxy.methods`: upper case, known to HTTP's grammar, no duplicates, never CONNECT or TRACE.
fn proxy_methods(names: &[String]) -> Result<Vec<Method>, String> {
    if names.is_empty() {
        return Err("lists no method: nothing could be proxied".into());
    }
    let mut methods: Vec<Method> = Vec::new();
    for name in names {
        let method = Method::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a method"))?;
        if !crate::data::proxy::route::is_standard_spelling(&method) {
            return Err(format!("{name:?}: methods are written in upper case"));
        }
        if method == Method::CONNECT || method == Method::TRACE {
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
        if !known_scopes.contains(scope) && !crate::model::scope::is_reserved(scope) {
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
    let public_methods = public_methods(&raw.public_methods, raw.public, &require).map_err(at)?;
    let route_host = raw.host.as_deref().map(route_host).transpose().map_err(at)?;
    Ok(RouteConfig {
        prefix: raw.prefix,
        upstream: Upstream { host, scheme, authority, base_path },
        public: raw.public,
        require,
        keep_authorization: raw.keep_authorization,
        strip_prefix: raw.strip_prefix,
        allow_encoded_slash: raw.allow_encoded_slash,
        public_methods,
        host: route_host,
    })
}

/// `routes[].public_methods`: method names as the standard spells them (upper-case tokens, as
/// the data path only serves such methods), each once, and none that `require` gives a scope
/// (a method cannot be both public and scoped). On a `public = true` route the list is an
/// error rather than ignored: every method is public there already, and an operator who wrote
/// both may believe the list narrows what is public.
fn public_methods(names: &[String], public: bool, require: &RequiredScopes) -> Result<Vec<Method>, String> {
    if public && !names.is_empty() {
        return Err("public_methods has no effect on a public route (every method is public there); \
                    remove one of them"
            .into());
    }
    let mut methods: Vec<Method> = Vec::with_capacity(names.len());
    for name in names {
        if name == "*" {
            return Err("public_methods cannot be \"*\"; use public = true for a route without authentication".into());
        }
        let method = Method::from_bytes(name.as_bytes())
            .ok()
            .filter(crate::data::proxy::route::is_standard_spelling)
            .ok_or_else(|| {
            format!("public_methods names {name:?}, which is not an upper-case method such as \"OPTIONS\"")
        })?;
        if methods.contains(&method) {
            return Err(format!("public_methods names {name:?} twice"));
        }
        if require.names(&method) {
            return Err(format!("{name} is both in public_methods and given a scope in require"));
        }
        methods.push(method);
    }
    Ok(methods)
}

/// `routes[].host`: a host name or IP address, with a port when only that port is meant;
/// stored in lower case without a trailing dot, as requests are compared with it.
fn route_host(text: &str) -> Result<RouteHost, String> {
    let bad = || format!("host {text:?} is not a host name such as \"api.example.com\" or \"api.example.com:8443\"");
    let (name, port) = crate::data::proxy::route::split_host(text).ok_or_else(bad)?;
    if port == Some(0) {
        return Err(bad());
    }
    Ok(RouteHost { name: name.to_ascii_lowercase(), port })
}

#[cfg(test)]
mod tests {
    use super::super::load::load_text;
    use super::*;

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
    fn route_options_are_validated() {
        let route = |options: &str| {
            load_text(&format!("[[routes]]\nprefix = \"/api\"\nupstream = \"http://h:1\"\n{options}\n"))
        };
        let error = |options: &str| route(options).unwrap_err().to_string();

        let config = route("public_methods = [\"OPTIONS\", \"PROPFIND\"]\nallow_encoded_slash = true").unwrap();
        assert_eq!(config.routes[0].public_methods, [Method::OPTIONS, Method::from_bytes(b"PROPFIND").unwrap()]);
        assert!(config.routes[0].allow_encoded_slash);
        for (options, expected) in [
            ("public_methods = [\"options\"]", "not an upper-case method"),
            ("public_methods = [\"GET /\"]", "not an upper-case method"),
            ("public_methods = [\"\"]", "not an upper-case method"),
            ("public_methods = [\"*\"]", "use public = true"),
            ("public_methods = [\"OPTIONS\", \"OPTIONS\"]", "twice"),
            ("public = true\npublic_methods = [\"OPTIONS\"]", "no effect on a public route"),
            ("require = { options = \"read\" }\npublic_methods = [\"OPTIONS\"]", "both in public_methods"),
        ] {
            let message = error(options);
            assert!(message.contains("routes (prefix \"/api\")") && message.contains(expected), "{options}: {message}");
        }
        assert!(route("require = { \"*\" = \"write\" }\npublic_methods = [\"OPTIONS\"]").is_ok(), "* is not a name");

        let host = route("host = \"API.Example.com.:8443\"").unwrap().routes[0].host.clone().unwrap();
        assert_eq!((host.name.as_str(), host.port), ("api.example.com", Some(8443)));
        assert_eq!(route("host = \"[::1]\"").unwrap().routes[0].host.as_ref().unwrap().to_string(), "[::1]");
        for bad in
            ["", "https://api.example.com", "api.example.com/x", "api example", "api.example.com:0", "a:99999", "u@h"]
        {
            let message = error(&format!("host = {bad:?}"));
            assert!(message.contains("is not a host name"), "{bad}: {message}");
        }

        let two = |a: &str, b: &str| {
            load_text(&format!(
                "[[routes]]\nprefix = \"/\"\nupstream = \"http://h:1\"\n{a}\n[[routes]]\nprefix = \"/\"\nupstream = \"http://h:2\"\n{b}\n"
            ))
        };
        assert!(two("host = \"a.example.com\"", "host = \"b.example.com\"").is_ok());
        assert!(two("host = \"a.example.com\"", "").is_ok(), "a host route and a fallback");
        assert!(two("host = \"a.example.com\"", "host = \"a.example.com:8080\"").is_ok());
        for (a, b) in [
            ("host = \"a.example.com\"", "host = \"A.example.com.\""),
            ("host = \"a.example.com\"", "host = \"a.example.com:80\""),
        ] {
            let message = two(a, b).unwrap_err().to_string();
            assert!(message.contains("appears twice for host"), "{a} / {b}: {message}");
        }
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
