//! Reloading on `SIGHUP`: the listeners' TLS certificates are read again, then the
//! configuration file is read and validated again and what can change in a running process is
//! applied to new requests, without closing a connection.
//!
//! Applied: routes and everything else of the proxy's request handling (trusted proxies,
//! realm, timeouts, stripped headers, upstream CA), rate limits, the token policy, notification
//! channels (the sender is restarted), forward-auth, usage counting and retention, and the log
//! settings. A file that does not load or validate changes nothing: the reason is logged and
//! the running configuration stays. Settings that only a restart applies (the listeners, the
//! database, the sync timings, ...) are named in the log when the file changes them.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::join_logged;
use crate::admin::Health;
use crate::admin::api::ApiState;
use crate::clock::Clock;
use crate::config::{Config, NotifyChannel, NotifyConfig};
use crate::control::notify::Notifier;
use crate::control::service::LifecycleService;
use crate::control::store::Store;
use crate::data::proxy::Proxy;
use crate::data::ratelimit::RateLimits;
use crate::metrics::{Metrics, ResultLabels};

/// Settings a running gateway cannot change: its listeners, runtime, database, sync and flush
/// timings and rate-limit backend. A key, or a whole section when it ends in `.`.
const NEEDS_RESTART: &[&str] = &[
    "proxy.listen",
    "proxy.workers",
    "proxy.max_connections",
    "proxy.max_connections_per_ip",
    "proxy.max_upstream_connections",
    "proxy.send_timeout",
    "proxy.tls_cert_file",
    "proxy.tls_key_file",
    "admin.",
    "database.",
    "sync.",
    "usage.flush_interval",
    "rate_limit.backend",
    "rate_limit.redis_url",
    "rate_limit.redis_timeout",
];

/// Whether `key` (`section.key`) is one a reload cannot apply.
fn needs_restart(key: &str) -> bool {
    NEEDS_RESTART.iter().any(|entry| if entry.ends_with('.') { key.starts_with(entry) } else { key == *entry })
}

/// Reads the configuration again, as the process was told to at start (the same flags and
/// environment); the error is the message to log.
pub type LoadConfig = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// What asks a gateway to reload (`serve`'s SIGHUP handler) and how it reads its configuration.
pub struct Reloads {
    /// One message per `SIGHUP`.
    pub requests: mpsc::UnboundedReceiver<()>,
    /// Reads and validates the configuration again.
    pub load: LoadConfig,
}

/// The notification sender, which a reload replaces when the channels may have changed.
pub(super) struct NotifierTask {
    task: Option<JoinHandle<()>>,
    stop: CancellationToken,
}

impl NotifierTask {
    /// Starts the sender of `config`'s channels when there is one; returns it and the channels
    /// that deliver. Without a channel nothing here claims from the outbox: a gateway that would
    /// only log notices must not take them from one that can send them. `parent` cancelled
    /// stops it.
    pub(super) fn start(
        config: &NotifyConfig,
        store: Store,
        clock: Clock,
        parent: &CancellationToken,
    ) -> (NotifierTask, Vec<NotifyChannel>) {
        let stop = parent.child_token();
        let (task, channels) = match Notifier::new(config, store, clock) {
            Ok(Some(notifier)) => {
                let channels = notifier.channels().to_vec();
                (Some(tokio::spawn(notifier.run(stop.clone()))), channels)
            }
            Ok(None) => {
                tracing::warn!(
                    "no notification channel configured (notify.smtp_host, notify.webhook_url): this gateway \
                     delivers no notifications; they wait in the outbox for a gateway that has a channel"
                );
                (None, Vec::new())
            }
            Err(error) => {
                tracing::error!(%error, "this gateway cannot deliver notifications; they stay queued");
                (None, Vec::new())
            }
        };
        (NotifierTask { task, stop }, channels)
    }

    /// Stops the sender after the batch it is delivering, and waits for it.
    pub(super) async fn stop(self) {
        self.stop.cancel();
        if let Some(task) = self.task {
            join_logged("notification sender", task).await;
        }
    }
}

/// The parts of a running gateway a reload reconfigures.
pub(super) struct Reloader {
    /// The configuration the process started with: restart-only settings keep its values, and
    /// its TLS certificates are the ones read again.
    pub started: Config,
    /// The configuration last applied, to name what a reload changes.
    pub applied: Config,
    pub proxy: Arc<Proxy>,
    pub limits: Arc<RateLimits>,
    pub lifecycle: Arc<LifecycleService>,
    pub api: Arc<ApiState>,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    pub notifier: NotifierTask,
    pub store: Store,
    pub clock: Clock,
    /// Cancelled at shutdown; the notification sender's parent.
    pub background: CancellationToken,
}

impl Reloader {
    /// Reloads on every request until shutdown, then stops the notification sender.
    pub(super) async fn run(mut self, reloads: Option<Reloads>) {
        if let Some(Reloads { mut requests, load }) = reloads {
            loop {
                tokio::select! {
                    _ = self.background.cancelled() => break,
                    request = requests.recv() => match request {
                        Some(()) => self.reload(&load).await,
                        None => {
                            self.background.cancelled().await;
                            break;
                        }
                    },
                }
            }
        } else {
            self.background.cancelled().await;
        }
        self.notifier.stop().await;
    }

    /// One reload: certificates, then the configuration.
    async fn reload(&mut self, load: &LoadConfig) {
        reload_certificates(&self.started);
        let config = match load() {
            Ok(config) => config,
            Err(error) => {
                tracing::error!(%error, "configuration not reloaded; the running configuration stays");
                self.metrics.config_reloads.get_or_create(&ResultLabels { result: "rejected" }).inc();
                self.metrics.config_last_reload_successful.set(0);
                return;
            }
        };
        let mut applied: Vec<String> =
            self.applied.changed_keys(&config).into_iter().filter(|key| !needs_restart(key)).collect();
        // Compared with the start, not the last reload: a setting the file changed stays named
        // until a restart applies it.
        let mut pending: Vec<String> =
            self.started.changed_keys(&config).into_iter().filter(|key| needs_restart(key)).collect();
        // The comparison masks secrets; a database password changes the connection all the same.
        let database_changed = config.database.url.expose() != self.started.database.url.expose();
        if database_changed && !pending.iter().any(|key| key == "database.url") {
            pending.push("database.url".to_owned());
        }
        self.apply(&config).await;
        if applied.is_empty() {
            applied.push("nothing changed".to_owned());
        }
        let file = config.source.as_ref().map_or_else(|| "built-in defaults".to_owned(), |p| p.display().to_string());
        tracing::info!(file, changed = applied.join(", "), routes = config.routes.len(), "configuration reloaded");
        if !pending.is_empty() {
            tracing::warn!(
                settings = pending.join(", "),
                "these settings differ from the running ones and apply only after a restart"
            );
        }
        self.metrics.config_reloads.get_or_create(&ResultLabels { result: "applied" }).inc();
        self.metrics.config_last_reload_successful.set(1);
        self.applied = config;
    }

    /// Hands `config` to every part that can change while running. The notification sender is
    /// restarted (after the batch it is delivering), since a channel's address or secret may
    /// have changed, which the masked comparison cannot see.
    async fn apply(&mut self, config: &Config) {
        crate::logging::set_json(config.log.json);
        self.proxy.reconfigure(config);
        self.limits.reconfigure(&config.rate_limit);
        self.lifecycle.reconfigure(LifecycleService::settings_of(config));
        self.api.reconfigure(config);
        let (notifier, channels) =
            NotifierTask::start(&config.notify, self.store.clone(), self.clock.clone(), &self.background);
        let previous = std::mem::replace(&mut self.notifier, notifier);
        previous.stop().await;
        self.health.set_notify_channels(channels);
    }
}

/// Each listener's certificate is read again (after a renewal); on any error the previous one
/// stays in use.
pub fn reload_certificates(config: &Config) {
    let listeners = [("proxy", &config.proxy.tls), ("admin", &config.admin.tls)];
    for (listener, tls) in listeners {
        let Some(certificate) = tls else { continue };
        let cert_file = certificate.cert_file.display().to_string();
        match certificate.reload() {
            Ok(()) => tracing::info!(listener, cert_file, "TLS certificate reloaded"),
            Err(error) => {
                tracing::error!(listener, %error, "TLS certificate not reloaded; the previous one stays in use")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_settings_are_told_apart_from_reloadable_ones() {
        for key in ["proxy.listen", "admin.listen", "admin.metrics_require_auth", "database.url", "sync.interval"] {
            assert!(needs_restart(key), "{key}");
        }
        for key in ["routes", "proxy.realm", "proxy.trusted_proxies", "rate_limit.default", "tokens.max_lifetime"] {
            assert!(!needs_restart(key), "{key}");
        }
        // A section prefix matches whole section names only.
        assert!(!needs_restart("administrators.x"));
    }
}
