//! `serve`: wires the store, the index and its sync, the usage flusher, the proxy and the
//! admin listener together, reloads what can change on `SIGHUP` ([`reload`]), and takes them
//! down in order at shutdown.

pub mod reload;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::api::ApiState;
use crate::admin::{Health, run_admin_listener};
use crate::clock::Clock;
use crate::config::Config;
use crate::control::fleet::Registration;
use crate::control::service::LifecycleService;
use crate::control::store::{Store, StoreError};
use crate::control::sync::IndexSync;
use crate::data::connections::ConnectionTable;
use crate::data::gate::Gate;
use crate::data::proxy::Proxy;
use crate::data::ratelimit::RateLimits;
use crate::data::server::{ServeOptions, run_proxy_listener};
use crate::data::usage::UsageRecorder;
use crate::metrics::Metrics;
use reload::{NotifierTask, Reloader, Reloads};

/// The listeners a gateway serves on; bound by the caller so tests can use port 0.
pub struct Listeners {
    /// Where API clients connect.
    pub proxy: TcpListener,
    /// Where the web page, the JSON API, health and metrics are served.
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds the configured addresses.
    pub async fn bind(config: &Config) -> std::io::Result<Listeners> {
        Ok(Listeners {
            proxy: crate::data::server::bind(config.proxy.listen).await?,
            admin: crate::data::server::bind(config.admin.listen).await?,
        })
    }

    /// The bound addresses (proxy, admin): with port 0 the caller learns the real ports here.
    pub fn addresses(&self) -> std::io::Result<(SocketAddr, SocketAddr)> {
        Ok((self.proxy.local_addr()?, self.admin.local_addr()?))
    }
}

/// A running gateway's shared parts, for callers that also drive the control path in-process.
pub struct Gateway {
    /// The database, shared with an in-process lifecycle service.
    pub store: Store,
    /// The index and its sync; an in-process service applies its own changes through it at once.
    pub sync: Arc<IndexSync>,
    /// Last-use records, flushed in batches and once more at shutdown.
    pub usage: Arc<UsageRecorder>,
    /// The rate limiters: per token, per failing address, and the Redis connection when shared.
    pub limits: Arc<RateLimits>,
}

impl Gateway {
    /// Opens the database (migrating it) and loads the index.
    pub async fn start(config: &Config) -> Result<Gateway, StoreError> {
        let store = Store::open(&config.database.url).await?;
        let sync = IndexSync::load(store.clone()).await?;
        let limits = Arc::new(RateLimits::new(&config.rate_limit));
        Ok(Gateway { store, sync, usage: Arc::new(UsageRecorder::new()), limits })
    }

    /// Serves until `shutdown` is cancelled: stops accepting, drains open requests, stops the
    /// sync, writes the last-use records, closes the database. Each of `reloads`' requests
    /// reloads the configuration (`None`: the configuration is fixed).
    pub async fn serve(
        self,
        config: &Config,
        listeners: Listeners,
        clock: Clock,
        shutdown: CancellationToken,
        reloads: Option<Reloads>,
    ) {
        let limits = Arc::clone(&self.limits);
        let metrics = Arc::new(Metrics::new());
        // One gate for the proxy and the admin API: the same authentication, throttle and use.
        let gate = Arc::new(Gate::new(
            Arc::clone(self.sync.index()),
            Arc::clone(&self.usage),
            Arc::clone(&limits),
            Arc::clone(&metrics),
            self.store.clone(),
            clock.clone(),
        ));
        let proxy = Arc::new(Proxy::new(config, Arc::clone(&gate), Arc::clone(&limits), Arc::clone(&metrics)));
        let background = CancellationToken::new();
        let follower =
            tokio::spawn(Arc::clone(&self.sync).follow(config.sync.interval, background.clone().cancelled_owned()));
        let flusher = tokio::spawn(Arc::clone(&self.usage).run_flusher(
            self.store.clone(),
            config.usage.flush_interval,
            Some(Arc::clone(&metrics)),
            background.clone().cancelled_owned(),
        ));
        let housekeeping = tokio::spawn(Arc::clone(&limits).run_housekeeping(background.clone().cancelled_owned()));
        let connect_limits = {
            let (limits, config) = (Arc::clone(&limits), config.rate_limit.clone());
            tokio::spawn(async move { limits.connect_shared(&config).await })
        };
        // One lifecycle service for the admin API and the periodic work.
        let lifecycle = Arc::new(
            LifecycleService::new(
                self.store.clone(),
                config.tokens.clone(),
                clock.clone(),
                Some(Arc::clone(&self.sync)),
            )
            .with_confirmation(Some(config.sync.confirm_policy()), Some(Arc::clone(&metrics))),
        );
        lifecycle.reconfigure(LifecycleService::settings_of(config));
        let maintenance = tokio::spawn(crate::control::service::housekeeping::run(
            Arc::clone(&lifecycle),
            background.clone().cancelled_owned(),
        ));
        let (notifier, notify_channels) =
            NotifierTask::start(&config.notify, self.store.clone(), clock.clone(), &background);
        let addresses = listeners.addresses().ok();
        // In the registry before serving, then caught up: from here on every change either was
        // applied already or waits for this gateway.
        let registration = Registration::new(addresses.map(|a| a.0), addresses.map(|a| a.1));
        let registered = match registration.register(&self.store, self.sync.applied_seq()).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "cannot register in the gateway registry; changes will not wait for this gateway until it can");
                false
            }
        };
        if let Err(error) = self.sync.catch_up().await {
            tracing::warn!(%error, "cannot read the change log; serving the index as loaded");
        }
        let heartbeat = tokio::spawn(registration.run(
            self.store.clone(),
            Arc::clone(&self.sync),
            config.sync.confirm_policy(),
            registered,
            background.clone().cancelled_owned(),
        ));
        if let Some((proxy_addr, admin_addr)) = addresses {
            tracing::info!(proxy = %proxy_addr, admin = %admin_addr, routes = config.routes.len(), "tokengate listening");
        }
        // Trusted proxies bring many clients each: their connections are not counted per address.
        let trusting = Arc::clone(&proxy);
        let connections = ConnectionTable::new(
            config.proxy.max_connections,
            config.proxy.max_connections_per_ip,
            Box::new(move |ip| trusting.is_trusted_peer(ip)),
        );
        let health = Arc::new(
            Health::new(
                Arc::clone(&self.sync),
                Arc::clone(&self.limits),
                Arc::clone(&metrics),
                self.store.clone(),
                &config.sync,
                notify_channels,
            )
            .with_connections(Arc::clone(&connections)),
        );
        // The admin listener outlives the drain, so `/readyz` can say "draining" meanwhile.
        let admin_shutdown = CancellationToken::new();
        let api = Arc::new(ApiState::new(Arc::clone(&lifecycle), gate, config));
        let admin = tokio::spawn(run_admin_listener(
            listeners.admin,
            Arc::clone(&health),
            Arc::clone(&api),
            config.admin.clone(),
            admin_shutdown.clone(),
        ));
        let reloader = tokio::spawn(
            Reloader {
                started: config.clone(),
                applied: config.clone(),
                proxy: Arc::clone(&proxy),
                limits: Arc::clone(&limits),
                lifecycle,
                api,
                health: Arc::clone(&health),
                metrics: Arc::clone(&metrics),
                notifier,
                store: self.store.clone(),
                clock: clock.clone(),
                background: background.clone(),
            }
            .run(reloads),
        );
        let draining = shutdown.clone();
        tokio::spawn(async move {
            draining.cancelled().await;
            health.set_draining();
        });
        let options =
            ServeOptions { connections, tls: config.proxy.tls.clone(), send_timeout: config.proxy.send_timeout };
        let access_log = proxy.access_log();
        run_proxy_listener(listeners.proxy, proxy, options, shutdown).await;
        access_log.close();
        tracing::info!("proxy drained; writing last-use records");
        background.cancel();
        join_logged("change-log follower", follower).await;
        join_logged("last-use flusher", flusher).await;
        join_logged("gateway registry heartbeat", heartbeat).await;
        join_logged("periodic lifecycle work", maintenance).await;
        join_logged("rate-limit housekeeping", housekeeping).await;
        connect_limits.abort();
        join_logged("configuration reloader and notification sender", reloader).await;
        admin_shutdown.cancel();
        join_logged("admin listener", admin).await;
        self.store.close().await;
        tracing::info!("tokengate stopped");
    }
}

/// Waits for a background task at shutdown. A task that panicked is said so in the log (at
/// error level, with the panic's message) instead of vanishing: a panic there means work such
/// as last-use records or notices may not have been done.
async fn join_logged(task: &'static str, handle: JoinHandle<()>) {
    if let Err(error) = handle.await
        && error.is_panic()
    {
        let panic = error.into_panic();
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned());
        tracing::error!(task, %message, "a background task panicked");
    }
}
