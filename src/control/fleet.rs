//! The fleet of running gateways: each `serve` process registers itself, heartbeats every
//! second and reports the change-log sequence it has applied as soon as it applies it; a change
//! to the data path then waits until every running gateway reports its sequence, so a command
//! that returns has been obeyed everywhere (or names the gateways that have not yet).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::wall_ms;
use crate::control::store::{GatewayRecord, NewGateway, Store, StoreError};
use crate::control::sync::IndexSync;

/// `sync.stale_after`'s default.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(10);
/// How often a gateway says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Rows of gateways silent this many times `sync.stale_after` are removed.
const PRUNE_AFTER_STALE: u32 = 30;

/// How long changes wait for the fleet, and when a gateway counts as not running.
#[derive(Debug, Clone, Copy)]
pub struct ConfirmPolicy {
    /// `sync.confirm_timeout`: past it the change returns anyway, naming the laggards.
    pub timeout: Duration,
    /// `sync.stale_after`: a gateway without a heartbeat this long is not running.
    pub stale_after: Duration,
}

/// What the running gateways did with a change, once it was committed.
#[derive(Debug, Clone)]
pub struct Confirmation {
    /// The change-log sequence waited for.
    pub seq: i64,
    /// Gateways running (a heartbeat within `sync.stale_after`) when the wait ended.
    pub running: usize,
    /// Of those, how many had applied the change.
    pub confirmed: usize,
    /// How long the wait took: the CLI's `after N ms`, the API's `confirm_ms` and
    /// `tokengate_confirm_duration_seconds`.
    pub elapsed: Duration,
    /// The running gateways that had not applied it when the wait timed out.
    pub pending: Vec<GatewayRecord>,
}

impl Confirmation {
    /// Every running gateway applied the change.
    pub fn complete(&self) -> bool {
        self.pending.is_empty()
    }

    /// `3 of 3 running gateways after 12 ms`, for the CLI's one line.
    pub fn summary(&self) -> String {
        let noun = if self.running == 1 { "gateway" } else { "gateways" };
        format!("{} of {} running {noun} after {} ms", self.confirmed, self.running, self.elapsed.as_millis())
    }

    /// The pending gateways, named for a warning: `host pid 42 (proxy 10.0.0.2:8080)`.
    pub fn laggards(&self) -> String {
        let named: Vec<String> =
            self.pending.iter().map(|g| format!("{} pid {} (proxy {})", g.host, g.pid, g.proxy_addr)).collect();
        named.join(", ")
    }
}

/// Waits until every running gateway has applied `seq`, at most `policy.timeout`. A timeout
/// is not an error: the change is committed and the laggards will apply it.
pub async fn confirm(store: &Store, seq: i64, policy: ConfirmPolicy) -> Result<Confirmation, StoreError> {
    let started = Instant::now();
    // Short first pauses: a gateway woken by the commit usually answers within milliseconds.
    let mut pause = Duration::from_millis(1);
    loop {
        let running = running_records(store, policy.stale_after).await?;
        let pending: Vec<GatewayRecord> = running.iter().filter(|g| g.applied_seq < seq).cloned().collect();
        let elapsed = started.elapsed();
        if pending.is_empty() || elapsed >= policy.timeout {
            return Ok(Confirmation {
                seq,
                running: running.len(),
                confirmed: running.len() - pending.len(),
                elapsed,
                pending,
            });
        }
        tokio::time::sleep(pause.min(policy.timeout.saturating_sub(elapsed))).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// One gateway's row in the registry, kept while it serves.
pub struct Registration {
    gateway: NewGateway,
}

impl Registration {
    /// This process, serving on these addresses.
    pub fn new(proxy: Option<SocketAddr>, admin: Option<SocketAddr>) -> Registration {
        let mut id = [0u8; 8];
        if getrandom::fill(&mut id).is_err() {
            id = wall_ms().to_be_bytes();
        }
        let address = |a: Option<SocketAddr>| a.map_or_else(|| "-".to_owned(), |a| a.to_string());
        Registration {
            gateway: NewGateway {
                id: id.iter().map(|b| format!("{b:02x}")).collect(),
                host: hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "unknown".into()),
                pid: i64::from(std::process::id()),
                proxy_addr: address(proxy),
                admin_addr: address(admin),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                started_ms: wall_ms(),
            },
        }
    }

    /// Enters this gateway in the registry. Done before the gateway serves, and followed by a
    /// catch-up: a change committed before the row was visible is applied by that catch-up, and
    /// one committed after it waits for this gateway.
    pub async fn register(&self, store: &Store, seq: i64) -> Result<(), StoreError> {
        store.register_gateway(&self.gateway, seq, wall_ms()).await
    }

    /// Heartbeats every second and reports each newly applied sequence at once, until
    /// `shutdown`; then removes the row, so the fleet stops waiting for this gateway. Registers
    /// again if the row went missing (pruned while this process was stopped).
    pub async fn run(
        self,
        store: Store,
        sync: Arc<IndexSync>,
        policy: ConfirmPolicy,
        registered: bool,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut applied = sync.subscribe_applied();
        let mut registered = registered;
        let mut beats: u32 = 0;
        loop {
            let seq = *applied.borrow_and_update();
            let now = wall_ms();
            let outcome = if registered {
                store.gateway_heartbeat(&self.gateway.id, seq, now).await
            } else {
                store.register_gateway(&self.gateway, seq, now).await.map(|()| true)
            };
            match outcome {
                Ok(true) if !registered => {
                    registered = true;
                    tracing::info!(id = %self.gateway.id, seq, "gateway registered");
                }
                Ok(true) => {}
                // Pruned while this process was stopped: register again on the next beat.
                Ok(false) => registered = false,
                Err(error) => tracing::warn!(%error, "cannot record this gateway's heartbeat; will retry"),
            }
            beats = beats.wrapping_add(1);
            if beats.is_multiple_of(60) {
                let before = now - (policy.stale_after * PRUNE_AFTER_STALE).as_millis() as i64;
                if let Err(error) = store.prune_gateways(before).await {
                    tracing::debug!(%error, "cannot prune stopped gateways");
                }
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(HEARTBEAT) => {}
                changed = applied.changed() => if changed.is_err() { break },
            }
        }
        if let Err(error) = store.deregister_gateway(&self.gateway.id).await {
            tracing::warn!(%error, "cannot remove this gateway from the registry; it will be pruned");
        }
    }
}

/// A running gateway as `tokengate gateways` and the API show it.
#[derive(Debug, Clone)]
pub struct GatewayStatus {
    /// Its row in the registry.
    pub record: GatewayRecord,
    /// Change-log rows it has not applied yet.
    pub lag_seqs: i64,
    /// How long ago the oldest change it has not applied was committed (0 when none).
    pub lag_ms: i64,
}

/// The gateways with a heartbeat within `stale_after`: the one definition of "running".
pub async fn running_records(store: &Store, stale_after: Duration) -> Result<Vec<GatewayRecord>, StoreError> {
    store.running_gateways(wall_ms() - stale_after.as_millis() as i64).await
}

/// The running gateways, with their lag behind the change log.
pub async fn running(store: &Store, stale_after: Duration) -> Result<Vec<GatewayStatus>, StoreError> {
    let now = wall_ms();
    let gateways = running_records(store, stale_after).await?;
    let latest = store.latest_change_seq().await?;
    let mut statuses = Vec::with_capacity(gateways.len());
    for record in gateways {
        let lag_seqs = (latest - record.applied_seq).max(0);
        let lag_ms = if lag_seqs > 0 {
            store.first_change_ms_after(record.applied_seq).await?.map_or(0, |at| (now - at).max(0))
        } else {
            0
        };
        statuses.push(GatewayStatus { record, lag_seqs, lag_ms });
    }
    Ok(statuses)
}
