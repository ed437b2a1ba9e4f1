//! The effective configuration as TOML, for `check-config`: the validated [`Config`] turned
//! back into the file model and serialised, secrets masked.
//!
//! Printing through the file model rather than a printer of its own keeps one list of keys:
//! every struct below is written out whole, without `..Default::default()` and with every
//! field of `Config` named, so a key added to the file model or a field added to `Config` does
//! not compile until it is printed here; the tests then check that what is printed loads back
//! into the same configuration.

use std::collections::BTreeMap;

use super::raw::{
    RawAdmin, RawConfig, RawDatabase, RawForwardAuth, RawLog, RawNotify, RawProxy, RawRateLimit, RawRoute, RawSync,
    RawTokens, RawUsage,
};
use super::secrets::MASK;
use super::{
    AdminConfig, Config, DatabaseConfig, NotifyConfig, ProxyConfig, RateLimitConfig, RedisLimits, RequiredScopes,
    RouteConfig, SmtpConfig, SmtpTls, SyncConfig, TokenPolicy, UsageConfig, WebhookConfig, masked_webhook_url,
};
use crate::model::duration::format_duration;
use crate::model::rate::Rate;

impl Config {
    /// The effective settings as TOML, secrets masked (for `check-config`). Loaded again, it
    /// gives this configuration back, but for the secrets, which read `****`.
    pub fn describe(&self) -> String {
        let printed = toml::Table::try_from(effective(self)).and_then(|mut table| {
            for (section, key) in inert_keys(self) {
                if let Some(toml::Value::Table(entries)) = table.get_mut(section) {
                    entries.remove(key);
                }
            }
            toml::to_string(&table)
        });
        // Not expected: the file model holds only strings, numbers, booleans, lists and tables,
        // which TOML can all hold. Said in the output rather than hidden, if it ever happens.
        printed.unwrap_or_else(|e| format!("# the configuration cannot be printed as TOML: {e}\n"))
    }
}

impl Config {
    /// The settings whose effective value differs between `self` and `other`, as `section.key`
    /// (`routes` for any change to the routes), in the file model's order. Secrets compare
    /// masked, so a changed password alone is not listed; a reload names what it applied with
    /// this, never a secret.
    pub fn changed_keys(&self, other: &Config) -> Vec<String> {
        let (Ok(before), Ok(after)) = (toml::Table::try_from(effective(self)), toml::Table::try_from(effective(other)))
        else {
            return Vec::new();
        };
        let mut changed = Vec::new();
        let sections = before.keys().chain(after.keys().filter(|k| !before.contains_key(*k)));
        for section in sections {
            match (before.get(section), after.get(section)) {
                (Some(toml::Value::Table(old)), Some(toml::Value::Table(new))) => {
                    let keys = old.keys().chain(new.keys().filter(|k| !old.contains_key(*k)));
                    changed.extend(keys.filter(|k| old.get(*k) != new.get(*k)).map(|k| format!("{section}.{k}")));
                }
                (Some(toml::Value::Table(one)), None) | (None, Some(toml::Value::Table(one))) => {
                    changed.extend(one.keys().map(|k| format!("{section}.{k}")));
                }
                (old, new) if old != new => changed.push(section.clone()),
                _ => {}
            }
        }
        changed
    }
}

/// Keys that do nothing in `config`, which the validated model therefore does not keep: the
/// SMTP settings without `smtp_host`, `redis_timeout` without the Redis backend. Left out of the
/// output rather than printed with a default that the file may contradict.
fn inert_keys(config: &Config) -> Vec<(&'static str, &'static str)> {
    let mut inert = Vec::new();
    if config.notify.smtp.is_none() {
        inert.extend([("notify", "smtp_tls"), ("notify", "from")]);
    }
    if config.rate_limit.redis.is_none() {
        inert.push(("rate_limit", "redis_timeout"));
    }
    inert
}

/// The file model that loads into `config` again. Secrets are masked: `****` for a password or
/// a signing secret, the masked URL for the database, Redis and webhook URLs; a secret read
/// from a `*_file` is printed under its plain key (masked), since the value is what is in effect.
fn effective(config: &Config) -> RawConfig {
    let Config {
        source: _,
        proxy,
        admin,
        database,
        sync,
        usage,
        tokens,
        rate_limit,
        notify,
        routes,
        log,
        forward_auth,
    } = config;
    let DatabaseConfig { url } = database;
    let SyncConfig { interval, max_lag, confirm_timeout, stale_after } = sync;
    let UsageConfig { flush_interval, counters, keep_days } = usage;
    RawConfig {
        proxy: effective_proxy(proxy),
        admin: effective_admin(admin),
        database: RawDatabase { url: Some(url.masked()), url_file: None },
        sync: RawSync {
            interval: format_duration(*interval),
            max_lag: format_duration(*max_lag),
            confirm_timeout: format_duration(*confirm_timeout),
            stale_after: format_duration(*stale_after),
        },
        usage: RawUsage {
            flush_interval: format_duration(*flush_interval),
            counters: *counters,
            keep_days: *keep_days,
        },
        tokens: effective_tokens(tokens),
        rate_limit: effective_rate_limit(rate_limit),
        notify: effective_notify(notify),
        routes: Some(routes.iter().map(effective_route).collect()),
        log: RawLog { format: if log.json { "json" } else { "text" }.into(), access: log.access },
        forward_auth: RawForwardAuth { path: forward_auth.path.clone() },
    }
}

fn effective_proxy(proxy: &ProxyConfig) -> RawProxy {
    let ProxyConfig {
        listen,
        realm,
        trusted_proxies,
        connect_timeout,
        upstream_timeout,
        max_connections,
        workers,
        upstream_ca_file,
        // Built from `upstream_ca_file`, which is printed.
        upstream_tls: _,
        tls,
        strip_request_headers,
        methods,
        max_connections_per_ip,
        client_body_timeout,
        send_timeout,
        tunnel_idle_timeout,
        max_upstream_connections,
        upstream_queue_timeout,
    } = proxy;
    RawProxy {
        listen: listen.to_string(),
        realm: realm.clone(),
        trusted_proxies: trusted_proxies.iter().map(ToString::to_string).collect(),
        connect_timeout: format_duration(*connect_timeout),
        upstream_timeout: format_duration(*upstream_timeout),
        // Read from a `u32` in the first place.
        max_connections: u32::try_from(*max_connections).unwrap_or(u32::MAX),
        workers: workers.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        upstream_ca_file: upstream_ca_file.as_ref().map(|path| path.display().to_string()),
        tls_cert_file: tls.as_ref().map(|tls| tls.cert_file.display().to_string()),
        tls_key_file: tls.as_ref().map(|tls| tls.key_file.display().to_string()),
        strip_request_headers: strip_request_headers.iter().map(|name| name.as_str().to_owned()).collect(),
        methods: methods.iter().map(|method| method.as_str().to_owned()).collect(),
        max_connections_per_ip: max_connections_per_ip.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        client_body_timeout: format_duration(*client_body_timeout),
        send_timeout: format_duration(*send_timeout),
        tunnel_idle_timeout: format_duration(*tunnel_idle_timeout),
        max_upstream_connections: max_upstream_connections.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        upstream_queue_timeout: format_duration(*upstream_queue_timeout),
    }
}

fn effective_admin(admin: &AdminConfig) -> RawAdmin {
    let AdminConfig { listen, tls, metrics_require_auth } = admin;
    RawAdmin {
        listen: listen.to_string(),
        metrics_require_auth: *metrics_require_auth,
        tls_cert_file: tls.as_ref().map(|tls| tls.cert_file.display().to_string()),
        tls_key_file: tls.as_ref().map(|tls| tls.key_file.display().to_string()),
    }
}

fn effective_tokens(tokens: &TokenPolicy) -> RawTokens {
    let TokenPolicy {
        default_lifetime,
        max_lifetime,
        max_lifetime_set: _,
        allow_never_expires,
        scopes,
        default_scopes,
        revoke_unused_after,
        warn_before,
        sweep_interval,
    } = tokens;
    RawTokens {
        // Printed even when it follows `max_lifetime`: it is what tokens get.
        default_lifetime: Some(format_duration(*default_lifetime)),
        max_lifetime: Some(format_duration(*max_lifetime)),
        allow_never_expires: *allow_never_expires,
        scopes: scopes.clone(),
        default_scopes: default_scopes.clone(),
        revoke_unused_after: Some(revoke_unused_after.map_or_else(|| "none".to_owned(), format_duration)),
        warn_before: format_duration(*warn_before),
        sweep_interval: format_duration(*sweep_interval),
    }
}

fn effective_notify(notify: &NotifyConfig) -> RawNotify {
    let NotifyConfig { smtp, webhook, expiry_reminders, retry_base, max_attempts } = notify;
    // Without SMTP the settings beside the host are not kept; `inert_keys` leaves them out.
    let defaults = RawNotify::default();
    let (smtp_host, smtp_port, smtp_tls, smtp_username, smtp_password, from) = match smtp {
        Some(SmtpConfig { host, port, tls, username, password, from }) => (
            Some(host.clone()),
            Some(*port),
            smtp_tls_name(*tls).to_owned(),
            username.clone(),
            password.as_ref().map(|_| MASK.to_owned()),
            from.clone(),
        ),
        None => (None, None, defaults.smtp_tls, None, None, defaults.from),
    };
    let (webhook_url, webhook_secret) = match webhook {
        Some(WebhookConfig { url, secret }) => {
            (Some(masked_webhook_url(url)), secret.as_ref().map(|_| MASK.to_owned()))
        }
        None => (None, None),
    };
    RawNotify {
        smtp_host,
        smtp_port,
        smtp_tls,
        smtp_username,
        smtp_password,
        smtp_password_file: None,
        from,
        webhook_url,
        webhook_secret,
        webhook_secret_file: None,
        expiry_reminders: expiry_reminders.iter().copied().map(format_duration).collect(),
        retry_base: format_duration(*retry_base),
        max_attempts: *max_attempts,
    }
}

/// `[notify] smtp_tls` as the file writes it.
fn smtp_tls_name(tls: SmtpTls) -> &'static str {
    match tls {
        SmtpTls::StartTls => "starttls",
        SmtpTls::Tls => "tls",
        SmtpTls::None => "none",
    }
}

fn effective_rate_limit(rate_limit: &RateLimitConfig) -> RawRateLimit {
    let RateLimitConfig { default, failed_auth, redis } = rate_limit;
    let rate = |rate: &Option<Rate>| Some(rate.map_or_else(|| "none".to_owned(), |rate| rate.to_string()));
    let (backend, redis_url, redis_timeout) = match redis {
        Some(RedisLimits { url, timeout }) => ("redis", Some(url.masked()), format_duration(*timeout)),
        // Not kept for the local backend; `inert_keys` leaves it out.
        None => ("local", None, RawRateLimit::default().redis_timeout),
    };
    RawRateLimit {
        default: rate(default),
        failed_auth: rate(failed_auth),
        backend: backend.to_owned(),
        redis_url,
        redis_url_file: None,
        redis_timeout,
    }
}

fn effective_route(route: &RouteConfig) -> RawRoute {
    let RouteConfig {
        prefix,
        upstream,
        public,
        require,
        keep_authorization,
        strip_prefix,
        allow_encoded_slash,
        public_methods,
        host,
    } = route;
    let RequiredScopes { by_method, otherwise } = require;
    let mut methods = BTreeMap::new();
    for (method, scope) in by_method {
        // `GET` and `get` in the file are one method; the first is the one that applies.
        methods.entry(method.as_str().to_owned()).or_insert_with(|| scope.clone());
    }
    if let Some(scope) = otherwise {
        methods.insert("*".to_owned(), scope.clone());
    }
    RawRoute {
        prefix: prefix.clone(),
        upstream: upstream.to_string(),
        public: *public,
        require: methods,
        keep_authorization: *keep_authorization,
        strip_prefix: *strip_prefix,
        allow_encoded_slash: *allow_encoded_slash,
        public_methods: public_methods.iter().map(|method| method.as_str().to_owned()).collect(),
        host: host.as_ref().map(ToString::to_string),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use toml::Value;

    use super::super::load::load_text;
    use super::super::raw::tests::model_keys;
    use super::*;

    #[test]
    fn changed_keys_name_each_setting_that_differs_and_no_secret() {
        let base = "[[routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:9000\"\n";
        let before = load_text(base).unwrap();
        assert_eq!(before.changed_keys(&load_text(base).unwrap()), Vec::<String>::new());
        let after = load_text(&format!(
            "[rate_limit]\ndefault = \"5/s\"\n[notify]\nwebhook_url = \"https://hooks.example.com/x\"\n\
             webhook_secret = \"s3cret\"\n{base}[[routes]]\nprefix = \"/v2\"\nupstream = \"http://127.0.0.1:9001\"\n"
        ))
        .unwrap();
        let changed = before.changed_keys(&after);
        assert_eq!(changed, ["rate_limit.default", "notify.webhook_url", "notify.webhook_secret", "routes"]);
        assert!(!changed.concat().contains("s3cret"));
        // Both directions name the same keys.
        let mut back = after.changed_keys(&before);
        back.sort();
        let mut forth = changed.clone();
        forth.sort();
        assert_eq!(back, forth);
    }

    /// A configuration that sets every key to something other than its default, secrets from
    /// files and inline, both listeners with TLS; `{dir}` is where its files are.
    const EVERY_KEY: &str = r#"
[proxy]
listen = "127.0.0.1:18080"
realm = "gate"
trusted_proxies = ["10.0.0.0/8", "192.168.1.1"]
connect_timeout = "2s"
upstream_timeout = "45s"
max_connections = 500
workers = 3
upstream_ca_file = "{dir}/cert.pem"
tls_cert_file = "{dir}/cert.pem"
tls_key_file = "{dir}/key.pem"
strip_request_headers = ["X-Debug", "cookie"]
methods = ["GET", "POST", "PROPFIND"]
max_connections_per_ip = 32
client_body_timeout = "20s"
send_timeout = "45s"
tunnel_idle_timeout = "2m"
max_upstream_connections = 64
upstream_queue_timeout = "3s"

[admin]
listen = "127.0.0.1:18081"
metrics_require_auth = true
tls_cert_file = "{dir}/cert.pem"
tls_key_file = "{dir}/key.pem"

[database]
url_file = "{dir}/database-url"

[sync]
interval = "100ms"
max_lag = "2m"
confirm_timeout = "3s"
stale_after = "20s"

[usage]
flush_interval = "5s"
counters = false
keep_days = 30

[tokens]
default_lifetime = "30d"
max_lifetime = "60d"
allow_never_expires = true
scopes = ["read", "write", "deploy"]
default_scopes = ["read"]
revoke_unused_after = "180d"
warn_before = "3d"
sweep_interval = "30m"

[log]
format = "json"
access = false

[forward_auth]
path = "/_tokengate/auth"

[notify]
smtp_host = "smtp.example.com"
smtp_port = 2525
smtp_tls = "tls"
smtp_username = "mailer"
smtp_password_file = "{dir}/smtp-password"
from = "gate <gate@example.com>"
webhook_url = "https://u:hunter2@hooks.example.com/services/T0/B0/hunter2hunter2hunter2?key=hunter2#frag"
webhook_secret = "hunter2"
expiry_reminders = ["7d", "1h"]
retry_base = "10s"
max_attempts = 3

[rate_limit]
default = "100/min"
failed_auth = "none"
backend = "redis"
redis_url = "redis://:hunter2@127.0.0.1:6379/0"
redis_timeout = "50ms"

[[routes]]
prefix = "/api"
upstream = "https://127.0.0.1:9443/base/"
public = false
require = { get = "read", POST = "deploy", "*" = "write" }
keep_authorization = true
strip_prefix = true
allow_encoded_slash = true
public_methods = ["OPTIONS"]
host = "API.example.com:8443"

[[routes]]
prefix = "/status"
upstream = "http://127.0.0.1:9000"
public = true
"#;

    /// Writes `EVERY_KEY` and the files it names into `dir`; returns the config file.
    fn write_every_key(dir: &Path) -> std::path::PathBuf {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
        std::fs::write(dir.join("database-url"), "postgres://app:hunter2@db:5432/tokens?password=hunter2\n").unwrap();
        std::fs::write(dir.join("smtp-password"), "hunter2\n").unwrap();
        let path = dir.join("every-key.toml");
        std::fs::write(&path, EVERY_KEY.replace("{dir}", &dir.display().to_string())).unwrap();
        path
    }

    /// Prints `config`, loads the output as a config file, and checks that it is the same
    /// configuration; returns the printed text.
    fn assert_round_trips(config: &Config, dir: &Path) -> String {
        let printed = config.describe();
        let path = dir.join("printed.toml");
        std::fs::write(&path, &printed).unwrap();
        let again = Config::load(Some(&path), Vec::new()).unwrap_or_else(|e| panic!("{e}\n{printed}"));
        for ((section, before), (_, after)) in sections(config).into_iter().zip(sections(&again)) {
            assert_eq!(before, after, "[{section}] differs after printing and loading again:\n{printed}");
        }
        printed
    }

    /// Each part of `config` as its `Debug` text, which masks every secret. Every field of
    /// `Config` is named, so one added later does not compile until it is compared too.
    fn sections(config: &Config) -> Vec<(&'static str, String)> {
        let Config {
            source: _,
            proxy,
            admin,
            database,
            sync,
            usage,
            tokens,
            rate_limit,
            notify,
            routes,
            log,
            forward_auth,
        } = config;
        // The client configuration is built from `upstream_ca_file` (compared with the rest of
        // `[proxy]`), and its `Debug` lists every public root.
        let proxy = ProxyConfig { upstream_tls: std::sync::Arc::new(rustls_placeholder()), ..proxy.clone() };
        // Scopes of different methods apply in any order; the file model keeps them sorted.
        let mut routes = routes.clone();
        for route in &mut routes {
            route.require.by_method.sort_by(|(a, _), (b, _)| a.as_str().cmp(b.as_str()));
        }
        // Whether the operator set `max_lifetime` is where the value came from, not a setting:
        // the printout states the maximum in effect, and a file that states it has set it.
        let tokens = TokenPolicy { max_lifetime_set: true, ..tokens.clone() };
        vec![
            ("proxy", format!("{proxy:?}")),
            ("admin", format!("{admin:?}")),
            ("database", format!("{database:?}")),
            ("sync", format!("{sync:?}")),
            ("usage", format!("{usage:?}")),
            ("tokens", format!("{tokens:?}")),
            ("rate_limit", format!("{rate_limit:?}")),
            ("notify", format!("{notify:?}")),
            ("routes", format!("{routes:?}")),
            ("log", format!("{log:?}")),
            ("forward_auth", format!("{forward_auth:?}")),
        ]
    }

    fn rustls_placeholder() -> rustls::ClientConfig {
        crate::data::tls::upstream_client_config(&[]).unwrap()
    }

    #[test]
    fn every_key_is_printed_and_loads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_every_key(dir.path());
        let config = Config::load(Some(&file), Vec::new()).unwrap();
        let printed = assert_round_trips(&config, dir.path());
        assert!(!printed.contains("hunter2"), "a secret was printed:\n{printed}");

        let model = model_keys();
        // The fixture sets every key the file model has (a secret's `*_file` counts for it)...
        let fixture: Value = toml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let fixture_keys = paths(&fixture);
        for key in &model {
            // `url` and `url_file` are one setting: either may be set.
            let other_way = match key.strip_suffix("_file") {
                Some(secret) if model.contains(secret) => secret.to_owned(),
                _ => format!("{key}_file"),
            };
            assert!(
                fixture_keys.contains(key) || (model.contains(&other_way) && fixture_keys.contains(&other_way)),
                "EVERY_KEY does not set {key}: add it with a value other than its default"
            );
        }
        // ...to a value other than its default, so printing a default instead would show.
        let defaults = Value::try_from(RawConfig::default()).unwrap();
        let default_route = Value::try_from(RawRoute::built_in_default()).unwrap();
        for (section, entries) in fixture.as_table().unwrap() {
            let (entries, default) = match entries {
                Value::Table(entries) => (vec![entries], defaults.get(section)),
                Value::Array(routes) => (routes.iter().filter_map(Value::as_table).collect(), Some(&default_route)),
                _ => unreachable!("every top-level key is a section"),
            };
            let default = default.and_then(Value::as_table);
            for key in entries.iter().flat_map(|table| table.keys()) {
                let differs = entries.iter().any(|table| table.get(key) != default.and_then(|d| d.get(key)));
                assert!(differs, "EVERY_KEY sets {section}.{key} to its default only");
            }
        }

        // The output has every key: the model's, except the `*_file` ways to give a secret...
        let printed_keys = paths(&toml::from_str(&printed).unwrap());
        for key in &model {
            let is_file_of_secret = key.strip_suffix("_file").is_some_and(|secret| model.contains(secret));
            assert!(is_file_of_secret || printed_keys.contains(key), "check-config does not print {key}:\n{printed}");
        }
        // ...and in particular every key a default file model serialises.
        for key in paths(&Value::try_from(RawConfig::default()).unwrap()) {
            assert!(printed_keys.contains(&key), "check-config does not print {key}:\n{printed}");
        }
    }

    #[test]
    fn the_defaults_and_the_shipped_files_load_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let defaults = Config::load(None, Vec::new()).unwrap();
        let printed = assert_round_trips(&defaults, dir.path());
        // Keys that do nothing without SMTP or Redis are not printed with a made-up value.
        for inert in ["smtp_tls", "from =", "redis_timeout"] {
            assert!(!printed.contains(inert), "{inert}:\n{printed}");
        }
        for file in ["config/tokengate.toml", "config/tokengate.example.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            assert_round_trips(&Config::load(Some(&path), Vec::new()).unwrap(), dir.path());
        }
    }

    /// Every dotted path in a TOML value: tables and their keys; the tables of an array (such as
    /// `[[routes]]`) share their array's path.
    fn paths(value: &Value) -> BTreeSet<String> {
        fn walk(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
            match value {
                Value::Table(table) => {
                    for (key, value) in table {
                        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                        walk(value, &path, out);
                        out.insert(path);
                    }
                }
                Value::Array(items) => items.iter().for_each(|item| walk(item, prefix, out)),
                _ => {}
            }
        }
        let mut out = BTreeSet::new();
        walk(value, "", &mut out);
        out
    }
}
