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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route's prefix (`none` when no route matched).
    pub route: Arc<str>,
    pub status: u16,
    /// authorised, public, unauthenticated, forbidden, rate_limited, upstream_error, rejected
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// Every metric; the gauges of state held elsewhere are set when scraped.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub auth_failures: Family<ReasonLabels, Counter>,
    pub rate_limited: Family<KindLabels, Counter>,
    pub request_duration: Histogram,
    pub upstream_duration: Histogram,
    pub flush_duration: Histogram,
    pub index_tokens: Gauge,
    pub sync_lag: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub outbox_backlog: Gauge,
    pub rate_limits_shared: Gauge,
    /// Gateways with a recent heartbeat, read from the registry at each scrape.
    pub gateways_running: Gauge,
    /// How long changes made through this gateway's API waited for every running gateway.
    pub confirm_duration: Histogram,
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
            registry: Registry::default(),
        };
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
        Metrics { registry, ..metrics }
    }

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
