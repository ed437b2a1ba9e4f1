//! The admin listener: health and readiness, metrics, the JSON API (`admin/api.rs`) and the
//! web page that drives it (`admin/web.rs`).

pub mod api;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::Service;

use crate::config::NotifyChannel;
use crate::control::store::Store;
use crate::control::sync::IndexSync;
use crate::data::connections::ConnectionTable;
use crate::data::ratelimit::RateLimits;
use crate::data::server::ServeOptions;
use crate::metrics::Metrics;

/// Open admin connections at most: people, scripts and scrapers, not proxied traffic.
const ADMIN_MAX_CONNECTIONS: usize = 1024;
/// A response write to the admin listener waiting this long for the client closes it.
const ADMIN_SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// What the health endpoints report.
pub struct Health {
    sync: Arc<IndexSync>,
    limits: Arc<RateLimits>,
    metrics: Arc<Metrics>,
    store: Store,
    /// Past this long without a successful read of the change log, the gateway is not ready.
    max_lag: Duration,
    /// Gateways without a heartbeat this long are not counted as running.
    stale_after: Duration,
    /// Cleared when draining at shutdown.
    serving: AtomicBool,
    /// The channels this gateway delivers notifications to (none: it leaves them queued);
    /// `SIGHUP` can change them.
    notify_channels: ArcSwap<Vec<NotifyChannel>>,
    /// The proxy's connection table: full, the gateway is not ready.
    connections: Option<Arc<ConnectionTable>>,
}

impl Health {
    /// The health state of a gateway that has loaded its index; `notify_channels` are the channels
    /// it delivers through.
    pub fn new(
        sync: Arc<IndexSync>,
        limits: Arc<RateLimits>,
        metrics: Arc<Metrics>,
        store: Store,
        sync_config: &crate::config::SyncConfig,
        notify_channels: Vec<NotifyChannel>,
    ) -> Self {
        Health {
            sync,
            limits,
            metrics,
            store,
            max_lag: sync_config.max_lag,
            stale_after: sync_config.stale_after,
            serving: AtomicBool::new(true),
            notify_channels: ArcSwap::from_pointee(notify_channels),
            connections: None,
        }
    }

    /// Reports the proxy's connection table: `/readyz` fails while it is full (new clients
    /// wait), and `/metrics` shows how full it is.
    pub fn with_connections(mut self, connections: Arc<ConnectionTable>) -> Self {
        self.connections = Some(connections);
        self
    }

    /// The channels a restarted notification sender delivers through, after a reload.
    pub fn set_notify_channels(&self, channels: Vec<NotifyChannel>) {
        self.notify_channels.store(Arc::new(channels));
    }

    /// Turns `/readyz` to 503 (`draining`) at shutdown, so load balancers stop sending before the
    /// listeners close.
    pub fn set_draining(&self) {
        self.serving.store(false, Ordering::Release);
    }

    /// Ready: serving (not draining) and the index no staler than `max_lag`. The index is loaded
    /// before a `Health` exists, so a listener that answers at all has one.
    fn readiness(&self) -> (bool, Value) {
        let lag = self.sync.lag();
        let serving = self.serving.load(Ordering::Acquire);
        let fresh = lag <= self.max_lag;
        let (open, max) = self.connections.as_ref().map_or((0, 0), |table| (table.open(), table.max()));
        let room = max == 0 || open < max;
        let ready = serving && fresh && room;
        let report = json!({
            "ready": ready,
            "draining": !serving,
            "index_tokens": self.sync.index().token_count(),
            "sync_lag_seconds": lag.as_secs_f64(),
            "max_lag_seconds": self.max_lag.as_secs_f64(),
            // "local", "redis", or "local (redis unavailable)": limiting goes on either way.
            "rate_limits": match self.limits.shared_healthy() {
                None => "local",
                Some(true) => "redis",
                Some(false) => "local (redis unavailable)",
            },
            // Not part of readiness: a gateway without a channel serves requests all the same.
            "notify_channels": self.notify_channels.load().iter().map(|c| c.name()).collect::<Vec<_>>(),
            // Full: new clients wait for a connection to close.
            "connections_open": open,
            "connections_max": max,
        });
        (ready, report)
    }
}

/// The admin listener's routes: probes, `/metrics`, the web page and the JSON API, with the body
/// limit and `nosniff` on every response.
pub fn router(health: Arc<Health>, api: Arc<api::ApiState>, metrics_require_auth: bool) -> Router {
    let probes = Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz))
        .with_state(Arc::clone(&health));
    let scrape = Router::new().route("/metrics", get(metrics)).with_state(Arc::new(MetricsState {
        health,
        api: Arc::clone(&api),
        require_auth: metrics_require_auth,
    }));
    probes
        .merge(scrape)
        .merge(web::router())
        .merge(api::router(api))
        .layer(axum::extract::DefaultBodyLimit::max(api::MAX_BODY))
        .layer(axum::middleware::map_response(too_large_as_json))
        .layer(axum::middleware::map_response(no_sniff))
}

/// A body over the limit is refused by axum's extractor before any handler runs, with a plain
/// text 413; scripts get the API's JSON error instead, like every other refusal.
async fn too_large_as_json(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE || is_json {
        return response;
    }
    let message = format!("the request body is larger than {} KiB", api::MAX_BODY / 1024);
    (StatusCode::PAYLOAD_TOO_LARGE, Json(json!({"error": {"code": "payload_too_large", "message": message}})))
        .into_response()
}

/// Every admin response is taken for the type it declares (JSON stays JSON in a browser).
async fn no_sniff(mut response: Response) -> Response {
    response
        .headers_mut()
        .entry(axum::http::header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(axum::http::HeaderValue::from_static("nosniff"));
    response
}

/// What `/metrics` needs: the figures, and (with `admin.metrics_require_auth`) the API's
/// authentication.
struct MetricsState {
    health: Arc<Health>,
    api: Arc<api::ApiState>,
    require_auth: bool,
}

/// Prometheus text; the gauges of state held elsewhere are read now.
async fn metrics(State(state): State<Arc<MetricsState>>, request: Request) -> Response {
    if state.require_auth {
        // Any valid token may scrape (a monitoring account's, say): metrics are not the admin API.
        let (parts, _) = request.into_parts();
        if let Err(refused) = api::admit(&parts, &state.api, None).await {
            return refused.into_response();
        }
    }
    let health = &state.health;
    let m = &health.metrics;
    m.index_tokens.set(health.sync.index().token_count() as i64);
    m.sync_lag.set(health.sync.lag().as_secs_f64());
    m.rate_limits_shared.set(i64::from(health.limits.shared_healthy() == Some(true)));
    if let Ok(backlog) = health.store.outbox_backlog().await {
        m.outbox_backlog.set(backlog);
    }
    if let Ok(gateways) = crate::control::fleet::running_records(&health.store, health.stale_after).await {
        m.gateways_running.set(gateways.len() as i64);
    }
    if let Some(table) = &health.connections {
        m.connections_open.set(table.open() as i64);
        m.connections_max.set(table.max() as i64);
        let refused = table.refused_per_ip();
        m.connections_refused_per_ip.inc_by(refused.saturating_sub(m.connections_refused_per_ip.get()));
    }
    ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], m.render())
        .into_response()
}

async fn readyz(State(health): State<Arc<Health>>) -> (StatusCode, Json<Value>) {
    let (ready, report) = health.readiness();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(report))
}

/// Serves the admin router until `shutdown` is cancelled, on the same accept loop as the
/// proxy (connection cap, timeouts, TLS when configured). Each request learns its socket peer
/// (`ConnectInfo`), from which the API derives the client address it audits and throttles.
pub async fn run_admin_listener(
    listener: TcpListener,
    health: Arc<Health>,
    api: Arc<api::ApiState>,
    config: crate::config::AdminConfig,
    shutdown: CancellationToken,
) {
    let app = router(health, api, config.metrics_require_auth);
    let service_for = |peer: SocketAddr| {
        let app = app.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut app = app.clone();
            async move { app.call(request).await }
        })
    };
    let options = ServeOptions {
        connections: ConnectionTable::new(ADMIN_MAX_CONNECTIONS, None, Box::new(|_| false)),
        tls: config.tls.clone(),
        send_timeout: ADMIN_SEND_TIMEOUT,
    };
    crate::data::server::run_listener(listener, service_for, options, shutdown).await;
}
