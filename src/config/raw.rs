//! The configuration file as written: plain serde types that refuse unknown keys. Nothing
//! outside `config` sees these; they are validated into [`super::Config`] once.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub proxy: RawProxy,
    pub admin: RawAdmin,
    pub database: RawDatabase,
    pub sync: RawSync,
    pub usage: RawUsage,
    pub tokens: RawTokens,
    pub rate_limit: RawRateLimit,
    pub notify: RawNotify,
    pub routes: Option<Vec<RawRoute>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawProxy {
    pub listen: String,
    pub realm: String,
    pub trusted_proxies: Vec<String>,
    pub connect_timeout: String,
    pub upstream_timeout: String,
    pub max_connections: u32,
    pub upstream_ca_file: Option<String>,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    pub strip_request_headers: Vec<String>,
}

impl Default for RawProxy {
    fn default() -> Self {
        RawProxy {
            listen: "127.0.0.1:8080".into(),
            realm: "tokengate".into(),
            trusted_proxies: Vec::new(),
            connect_timeout: "5s".into(),
            upstream_timeout: "30s".into(),
            max_connections: 10_000,
            upstream_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            strip_request_headers: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    pub listen: String,
    pub metrics_require_auth: bool,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            listen: "127.0.0.1:8081".into(),
            metrics_require_auth: false,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDatabase {
    pub url: Option<String>,
    pub url_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSync {
    pub interval: String,
    pub max_lag: String,
    pub confirm_timeout: String,
    pub stale_after: String,
}

impl Default for RawSync {
    fn default() -> Self {
        RawSync {
            interval: "250ms".into(),
            max_lag: "1m".into(),
            confirm_timeout: "2s".into(),
            stale_after: "10s".into(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUsage {
    pub flush_interval: String,
}

impl Default for RawUsage {
    fn default() -> Self {
        RawUsage { flush_interval: "1s".into() }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTokens {
    /// `None`: not set by the operator, so it follows a lower `max_lifetime` (see `validate`).
    pub default_lifetime: Option<String>,
    pub max_lifetime: String,
    pub allow_never_expires: bool,
    pub scopes: Vec<String>,
    pub default_scopes: Vec<String>,
    /// `None` or `"none"`: no inactivity policy.
    pub revoke_unused_after: Option<String>,
    pub warn_before: String,
    pub sweep_interval: String,
}

impl Default for RawTokens {
    fn default() -> Self {
        RawTokens {
            default_lifetime: None,
            max_lifetime: "365d".into(),
            allow_never_expires: false,
            scopes: vec!["read".into(), "write".into()],
            default_scopes: vec!["read".into(), "write".into()],
            revoke_unused_after: None,
            warn_before: "7d".into(),
            sweep_interval: "1h".into(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawNotify {
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    pub smtp_tls: String,
    pub smtp_username: Option<String>,
    pub smtp_password: Option<String>,
    pub smtp_password_file: Option<std::path::PathBuf>,
    pub from: String,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub webhook_secret_file: Option<std::path::PathBuf>,
    pub expiry_reminders: Vec<String>,
    pub retry_base: String,
    pub max_attempts: u32,
}

impl Default for RawNotify {
    fn default() -> Self {
        RawNotify {
            smtp_host: None,
            smtp_port: None,
            smtp_tls: "starttls".into(),
            smtp_username: None,
            smtp_password: None,
            smtp_password_file: None,
            from: "tokengate <tokengate@localhost>".into(),
            webhook_url: None,
            webhook_secret: None,
            webhook_secret_file: None,
            expiry_reminders: vec!["14d".into(), "1d".into()],
            retry_base: "30s".into(),
            max_attempts: 12,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRateLimit {
    /// `None` or `"none"`: tokens without their own limit are not limited.
    pub default: Option<String>,
    pub failed_auth: Option<String>,
    pub backend: String,
    pub redis_url: Option<String>,
    pub redis_url_file: Option<std::path::PathBuf>,
    pub redis_timeout: String,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        RawRateLimit {
            default: None,
            failed_auth: Some("30/min".into()),
            backend: "local".into(),
            redis_url: None,
            redis_url_file: None,
            redis_timeout: "100ms".into(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub prefix: String,
    pub upstream: String,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub require: BTreeMap<String, String>,
    #[serde(default)]
    pub keep_authorization: bool,
    #[serde(default)]
    pub strip_prefix: bool,
}

impl RawRoute {
    /// The route used when the configuration names none: everything to the example upstream.
    pub fn built_in_default() -> Self {
        RawRoute {
            prefix: "/".into(),
            upstream: "http://127.0.0.1:9000".into(),
            public: false,
            require: BTreeMap::new(),
            keep_authorization: false,
            strip_prefix: false,
        }
    }
}
