//! Prometheus metrics, served at `/metrics` on the admin listener. No per-token or per-account
//! labels: label values are routes, statuses, outcomes and reasons only, so the number of
//! series stays small whatever the traffic.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The labels of `tokengate_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route's prefix (`none` when no route matched).
    pub route: Arc<str>,
    /// The HTTP status answered.
    pub status: u16,
    /// authorised, public, unauthenticated, forbidden, rate_limited, upstream_error, rejected
    pub outcome: &'static str,
}

/// The labels of `tokengate_auth_failures_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why authentication failed (`unknown_token`, `revoked`, `bad_checksum`, ...): the failure's
    /// fixed name, never anything the client sent.
    pub reason: &'static str,
}

/// The labels of `tokengate_rate_limited_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `token` (a token's limit) or `failed_auth` (a throttled client address).
    pub kind: &'static str,
}

/// The labels of the per-upstream metrics: an upstream of the routes, `scheme://host:port`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// The upstream's scheme and authority, as configured.
    pub upstream: Arc<str>,
}

/// Every metric; the gauges of state held elsewhere are set when scraped.
pub struct Metrics {
    registry: Registry,
    /// `tokengate_requests_total`: counted once per proxied request, with its duration.
    pub requests: Family<RequestLabels, Counter>,
    /// `tokengate_auth_failures_total`, from the one gate the proxy and the admin API share.
    pub auth_failures: Family<ReasonLabels, Counter>,
    /// `tokengate_rate_limited_total`: every 429.
    pub rate_limited: Family<KindLabels, Counter>,
    /// `tokengate_request_duration_seconds`: until the response head is ready.
    pub request_duration: Histogram,
    /// `tokengate_upstream_duration_seconds`: until the upstream's response head arrives.
    pub upstream_duration: Histogram,
    /// `tokengate_usage_flush_duration_seconds`: one batched write of the usage recorder.
    pub flush_duration: Histogram,
    /// `tokengate_index_tokens`, set from the index at each scrape.
    pub index_tokens: Gauge,
    /// `tokengate_sync_lag_seconds`, set from the sync at each scrape: past `sync.max_lag`
    /// `/readyz` fails too.
    pub sync_lag: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// `tokengate_notification_backlog`, read from the outbox at each scrape.
    pub outbox_backlog: Gauge,
    /// `tokengate_rate_limits_shared`, set at each scrape: 1 while Redis answers for the token
    /// limits.
    pub rate_limits_shared: Gauge,
    /// Gateways with a recent heartbeat, read from the registry at each scrape.
    pub gateways_running: Gauge,
    /// How long changes made through this gateway's API waited for every running gateway.
    pub confirm_duration: Histogram,
    /// `tokengate_connections_open`, set at each scrape: the proxy's open client connections.
    pub connections_open: Gauge,
    /// `tokengate_connections_max`: `proxy.max_connections`; at it, `/readyz` says not ready.
    pub connections_max: Gauge,
    /// `tokengate_connections_refused_per_ip_total`, set at each scrape: connections closed at
    /// once because their address held `proxy.max_connections_per_ip`.
    pub connections_refused_per_ip: Counter,
    /// `tokengate_upstream_connections{upstream}`: open connections to each upstream, kept as
    /// they open and close.
    pub upstream_connections: Family<UpstreamLabels, Gauge>,
    /// `tokengate_upstream_queue_timeouts_total{upstream}`: requests answered 503 because the
    /// upstream stayed at `proxy.max_upstream_connections`.
    pub upstream_queue_timeouts: Family<UpstreamLabels, Counter>,
    /// `tokengate_config_reloads_total{result}`: `SIGHUP` reloads, `applied` or `rejected`.
    pub config_reloads: Family<ResultLabels, Counter>,
    /// `tokengate_config_last_reload_successful`: 0 after a reload that was rejected (the file
    /// on disk is not what runs), 1 otherwise, so an alert can say so.
    pub config_last_reload_successful: Gauge,
}

/// `result` of a configuration reload.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `applied` or `rejected`.
    pub result: &'static str,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~52 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered under the `tokengate_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tokengate");
        let metrics = Metrics {
            requests: Family::default(),
            auth_failures: Family::default(),
            rate_limited: Family::default(),
            request_duration: latency_histogram(),
            upstream_duration: latency_histogram(),
            flush_duration: latency_histogram(),
            index_tokens: Gauge::default(),
            sync_lag: Gauge::default(),
            outbox_backlog: Gauge::default(),
            rate_limits_shared: Gauge::default(),
            gateways_running: Gauge::default(),
            confirm_duration: latency_histogram(),
            connections_open: Gauge::default(),
            connections_max: Gauge::default(),
            connections_refused_per_ip: Counter::default(),
            upstream_connections: Family::default(),
            upstream_queue_timeouts: Family::default(),
            config_reloads: Family::default(),
            config_last_reload_successful: Gauge::default(),
            registry: Registry::default(),
        };
        metrics.config_last_reload_successful.set(1);
        registry.register("requests", "Proxied requests by route, status and outcome", metrics.requests.clone());
        registry.register("auth_failures", "Failed authentications by reason", metrics.auth_failures.clone());
        registry.register(
            "rate_limited",
            "Requests refused with 429, by kind (token, failed_auth)",
            metrics.rate_limited.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer a proxied request's head",
            metrics.request_duration.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time for the upstream's response head",
            metrics.upstream_duration.clone(),
        );
        registry.register(
            "usage_flush_duration_seconds",
            "Time to write one batch of last-use records",
            metrics.flush_duration.clone(),
        );
        registry.register("index_tokens", "Tokens in the in-memory index", metrics.index_tokens.clone());
        registry.register("sync_lag_seconds", "Seconds since the change log was last read", metrics.sync_lag.clone());
        registry.register("notification_backlog", "Notifications not yet delivered", metrics.outbox_backlog.clone());
        registry.register(
            "rate_limits_shared",
            "1 when token limits are shared through Redis, 0 when limited locally (or not configured)",
            metrics.rate_limits_shared.clone(),
        );
        registry.register(
            "gateways_running",
            "Gateways on this database with a heartbeat within sync.stale_after",
            metrics.gateways_running.clone(),
        );
        registry.register(
            "confirm_duration_seconds",
            "Time a change made through this gateway waited until every running gateway applied it",
            metrics.confirm_duration.clone(),
        );
        registry.register("connections_open", "Open client connections of the proxy", metrics.connections_open.clone());
        registry.register(
            "connections_max",
            "proxy.max_connections: at it, new connections wait and /readyz says not ready",
            metrics.connections_max.clone(),
        );
        registry.register(
            "connections_refused_per_ip",
            "Connections closed at once because their address held proxy.max_connections_per_ip",
            metrics.connections_refused_per_ip.clone(),
        );
        registry.register(
            "upstream_connections",
            "Open connections to each upstream (at most proxy.max_upstream_connections)",
            metrics.upstream_connections.clone(),
        );
        registry.register(
            "upstream_queue_timeouts",
            "Requests answered 503 because every connection the upstream may have stayed busy for proxy.upstream_queue_timeout",
            metrics.upstream_queue_timeouts.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads on SIGHUP, by result (applied, rejected)",
            metrics.config_reloads.clone(),
        );
        registry.register(
            "config_last_reload_successful",
            "0 when the last SIGHUP reload was rejected (the running configuration is not the file's), else 1",
            metrics.config_last_reload_successful.clone(),
        );
        Metrics { registry, ..metrics }
    }

    /// Counts one proxied request and observes how long its head took.
    pub fn observe_request(&self, route: Arc<str>, status: u16, outcome: &'static str, took: Duration) {
        self.requests.get_or_create(&RequestLabels { route, status, outcome }).inc();
        self.request_duration.observe(took.as_secs_f64());
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(%error, "cannot encode metrics");
        }
        out
    }
}
