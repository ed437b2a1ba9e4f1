//! The configuration file as written: plain serde types that refuse unknown keys. Nothing
//! outside `config` sees these; they are validated into [`super::Config`] once, and
//! `check-config` prints the effective configuration through them (`effective`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawConfig {
    pub proxy: RawProxy,
    pub admin: RawAdmin,
    pub database: RawDatabase,
    pub sync: RawSync,
    pub usage: RawUsage,
    pub tokens: RawTokens,
    pub rate_limit: RawRateLimit,
    pub notify: RawNotify,
    pub routes: Option<Vec<RawRoute>>,
    pub log: RawLog,
    pub forward_auth: RawForwardAuth,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawForwardAuth {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLog {
    pub format: String,
    pub access: bool,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog { format: "text".into(), access: true }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawProxy {
    pub listen: String,
    pub realm: String,
    pub trusted_proxies: Vec<String>,
    pub connect_timeout: String,
    pub upstream_timeout: String,
    pub max_connections: u32,
    pub workers: Option<u32>,
    pub upstream_ca_file: Option<String>,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    pub strip_request_headers: Vec<String>,
    pub methods: Vec<String>,
    pub max_connections_per_ip: u32,
    pub client_body_timeout: String,
    pub send_timeout: String,
    pub tunnel_idle_timeout: String,
    pub max_upstream_connections: u32,
    pub upstream_queue_timeout: String,
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
            workers: None,
            upstream_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            strip_request_headers: Vec::new(),
            methods: super::DEFAULT_METHODS.iter().map(|m| (*m).to_owned()).collect(),
            max_connections_per_ip: 256,
            client_body_timeout: "10s".into(),
            send_timeout: "30s".into(),
            tunnel_idle_timeout: "5m".into(),
            max_upstream_connections: 1024,
            upstream_queue_timeout: "5s".into(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAdmin {
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
pub(super) struct RawDatabase {
    pub url: Option<String>,
    pub url_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSync {
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
pub(super) struct RawUsage {
    pub flush_interval: String,
    pub counters: bool,
    pub keep_days: u32,
}

impl Default for RawUsage {
    fn default() -> Self {
        RawUsage { flush_interval: "1s".into(), counters: true, keep_days: 400 }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawTokens {
    /// `None`: not set by the operator, so it follows a lower `max_lifetime` (see `validate`).
    pub default_lifetime: Option<String>,
    /// `None`: not set by the operator, so the built-in 365 days apply (and `token cap-expiry`
    /// refuses to run on a bound nobody chose).
    pub max_lifetime: Option<String>,
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
            max_lifetime: None,
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
pub(super) struct RawNotify {
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
pub(super) struct RawRateLimit {
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
pub(super) struct RawRoute {
    pub prefix: String,
    pub upstream: String,
    #[serde(default)]
    pub public: bool,
    /// Left out of `check-config` when empty: the serializer prints a map as a `[routes.require]`
    /// header, which is noise with nothing under it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub require: BTreeMap<String, String>,
    #[serde(default)]
    pub keep_authorization: bool,
    #[serde(default)]
    pub strip_prefix: bool,
    #[serde(default)]
    pub allow_encoded_slash: bool,
    #[serde(default)]
    pub public_methods: Vec<String>,
    #[serde(default)]
    pub host: Option<String>,
}

impl RawRoute {
    /// The route used when the configuration names none: everything to the example upstream.
    pub(super) fn built_in_default() -> Self {
        RawRoute {
            prefix: "/".into(),
            upstream: "http://127.0.0.1:9000".into(),
            public: false,
            require: BTreeMap::new(),
            keep_authorization: false,
            strip_prefix: false,
            allow_encoded_slash: false,
            public_methods: Vec::new(),
            host: None,
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeSet;

    use serde::de::value::Error as DeError;
    use serde::de::{DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};

    use super::*;

    #[test]
    fn the_key_list_comes_from_the_file_model() {
        let keys = model_keys();
        for key in [
            "proxy.listen",
            "database.url_file",
            "notify.smtp_port",
            "routes.require",
            "routes.strip_prefix",
            "routes.public_methods",
            "routes.host",
        ] {
            assert!(keys.contains(key), "{key} in {keys:?}");
        }
        assert!(!keys.contains("proxy") && !keys.contains("routes"), "sections are not keys: {keys:?}");
    }

    /// Every key the file model accepts (`proxy.listen`, `routes.require`), read from its serde
    /// derive: a field added to `RawConfig` is on this list without anyone writing it down.
    pub(in crate::config) fn model_keys() -> BTreeSet<String> {
        let keys = RefCell::new(BTreeSet::new());
        RawConfig::deserialize(KeyRecorder { path: String::new(), keys: &keys })
            .unwrap_or_else(|e| panic!("KeyRecorder needs to learn a type of the file model: {e}"));
        keys.into_inner()
    }

    /// A deserializer that offers every field of every struct it is asked for, and records the
    /// path of each value that is not itself a struct.
    struct KeyRecorder<'a> {
        path: String,
        keys: &'a RefCell<BTreeSet<String>>,
    }

    impl KeyRecorder<'_> {
        fn record(&self) {
            self.keys.borrow_mut().insert(self.path.clone());
        }
    }

    impl<'de> Deserializer<'de> for KeyRecorder<'_> {
        type Error = DeError;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, DeError> {
            Err(serde::de::Error::custom(format!("{}: unsupported type", self.path)))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, DeError> {
            visitor.visit_map(Fields { path: self.path, keys: self.keys, fields: fields.iter(), current: "" })
        }
        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            visitor.visit_some(self)
        }
        fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            visitor.visit_seq(OneElement(Some(self)))
        }
        fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.record();
            visitor.visit_map(serde::de::value::MapDeserializer::new(std::iter::empty::<(String, String)>()))
        }
        fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.record();
            visitor.visit_str("")
        }
        fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.deserialize_str(visitor)
        }
        fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.record();
            visitor.visit_bool(false)
        }
        fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.record();
            visitor.visit_u64(0)
        }
        fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.deserialize_u16(visitor)
        }
        fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.deserialize_u16(visitor)
        }

        serde::forward_to_deserialize_any! {
            i8 i16 i32 i64 i128 u8 u128 f32 f64 char bytes byte_buf unit unit_struct newtype_struct
            tuple tuple_struct enum identifier ignored_any
        }
    }

    struct Fields<'a> {
        path: String,
        keys: &'a RefCell<BTreeSet<String>>,
        fields: std::slice::Iter<'static, &'static str>,
        current: &'static str,
    }

    impl<'de> MapAccess<'de> for Fields<'_> {
        type Error = DeError;

        fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
            let Some(field) = self.fields.next() else { return Ok(None) };
            self.current = field;
            seed.deserialize(IntoDeserializer::<DeError>::into_deserializer(*field)).map(Some)
        }

        fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
            let path =
                if self.path.is_empty() { self.current.to_owned() } else { format!("{}.{}", self.path, self.current) };
            seed.deserialize(KeyRecorder { path, keys: self.keys })
        }
    }

    struct OneElement<'a>(Option<KeyRecorder<'a>>);

    impl<'de> SeqAccess<'de> for OneElement<'_> {
        type Error = DeError;

        fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
            self.0.take().map(|recorder| seed.deserialize(recorder)).transpose()
        }
    }
}
