//! The upstream side of the forwarder: opening connections (connect timeouts, TLS), keeping
//! idle ones per upstream, and the cap on open connections per upstream
//! (`proxy.max_upstream_connections`).
//!
//! Why a cap: an HTTP/2 client multiplexes many requests on one connection, and each request in
//! flight needs an HTTP/1.1 upstream connection of its own, so a few client connections could
//! otherwise open thousands of upstream ones. At the cap a request queues for
//! `proxy.upstream_queue_timeout`, then gets 503. While it queues, idle connections come to it
//! first: one in the idle pool, one a client connection holds between its requests (taken
//! back from that client connection, which simply takes another for its next request), or one
//! finishing its response.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::uri::{Authority, Scheme};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsConnector;

use super::progress::ProgressBody;
use crate::config::Config;
use crate::metrics::{Metrics, UpstreamLabels};

/// Idle upstream connections kept per upstream, at most.
const MAX_IDLE_PER_UPSTREAM: usize = 256;
/// An idle upstream connection older than this is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Which upstream a connection leads to.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(super) struct UpstreamKey {
    pub(super) scheme: Scheme,
    pub(super) authority: Authority,
}

/// Why a request got no upstream connection or no response.
#[derive(Debug)]
pub enum SendError {
    /// The upstream's connections were all in use at `proxy.max_upstream_connections` for
    /// the whole of `proxy.upstream_queue_timeout`: 503.
    Busy,
    /// Connecting failed or the connection broke: 502.
    Failed(UpstreamError),
}

impl From<UpstreamError> for SendError {
    fn from(error: UpstreamError) -> Self {
        SendError::Failed(error)
    }
}

/// Why no response came from the upstream.
pub type UpstreamError = Box<dyn std::error::Error + Send + Sync>;

/// One open HTTP/1.1 connection to an upstream, between requests or carrying one.
pub(super) struct Connection {
    /// Its place under the cap, shared with the task driving it: given back when both are
    /// done, so a connection counts until its socket is closed.
    opened: Arc<Opened>,
    pub(super) sender: SendRequest<ProgressBody>,
    /// When it was last held or pooled after a request: one idle for [`IDLE_TIMEOUT`] is not
    /// reused (its upstream may close it at any moment, and a request lost that way is a 502).
    last_used: Instant,
}

impl Connection {
    /// Idle too long, or closed by the upstream.
    pub(super) fn expired(&self) -> bool {
        self.last_used.elapsed() >= IDLE_TIMEOUT || self.sender.is_closed()
    }

    /// Whether it leads to the upstream of `key`.
    pub(super) fn leads_to(&self, key: &UpstreamKey) -> bool {
        self.opened.pool.key == *key
    }

    /// Whether requests are queued for a connection to this one's upstream: then a client
    /// connection does not keep it between its requests.
    pub(super) fn wanted_elsewhere(&self) -> bool {
        self.opened.waiting.load(Ordering::Relaxed) > 0
    }

    /// Marks it as just used (held by a client connection after a request).
    pub(super) fn touch(&mut self) {
        self.last_used = Instant::now();
    }

    /// Its place under the cap, for the tunnel it becomes.
    pub(super) fn lease(&self) -> UpstreamLease {
        UpstreamLease { _opened: Arc::clone(&self.opened) }
    }

    /// Puts it in its upstream's idle pool once it can take another request: one still
    /// streaming a response body (an HTTP/2 client's extra connection) is pooled by a small
    /// task when the body is done, so concurrent clients do not open a new upstream connection
    /// per request.
    pub(super) fn pool_when_ready(mut self) {
        if self.sender.is_closed() {
            return;
        }
        if !self.sender.is_ready() {
            // No runtime (a drop during shutdown): the connection just closes.
            let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
            runtime.spawn(async move {
                if self.sender.ready().await.is_ok() {
                    let pool = Arc::clone(&self.opened.pool);
                    pool.keep_ready(self);
                }
            });
            return;
        }
        let pool = Arc::clone(&self.opened.pool);
        pool.keep_ready(self);
    }

    /// Registers `slot` as holding connections to this one's upstream, so that a request
    /// queued at the cap can take the connection back while the slot's client connection is
    /// between requests. Once per slot and upstream: `registered` remembers.
    pub(super) fn register_holder(&self, slot: &Arc<HeldSlot>, registered: &mut Vec<Arc<UpstreamPool>>) {
        let pool = &self.opened.pool;
        if pool.permits.is_none() || registered.iter().any(|known| Arc::ptr_eq(known, pool)) {
            return;
        }
        registered.push(Arc::clone(pool));
        let mut state = pool.lock();
        if state.holders.len() >= state.prune_holders_at {
            state.holders.retain(|holder| holder.strong_count() > 0);
            state.prune_holders_at = (state.holders.len() * 2).max(64);
        }
        state.holders.push(Arc::downgrade(slot));
    }
}

/// What a client connection holds between its requests (see `pinned.rs`): shared with the
/// upstream's pool so that a request queued at the cap can take an idle connection back.
pub(super) type HeldSlot = Mutex<Held>;

/// The contents of a [`HeldSlot`].
#[derive(Default)]
pub(super) struct Held {
    /// The connection the client connection's next request goes to first.
    pub(super) connection: Option<Connection>,
    /// The capped upstreams this slot is registered with as a holder.
    pub(super) registered: Vec<Arc<UpstreamPool>>,
}

/// One upstream's connections: the cap, the idle ones and who holds the others.
pub(super) struct UpstreamPool {
    key: UpstreamKey,
    /// One permit per open connection, `proxy.max_upstream_connections` in all; `None`: no cap.
    permits: Option<Arc<Semaphore>>,
    /// Requests queued at the cap.
    waiting: AtomicUsize,
    /// Wakes queued requests: a connection was pooled or closed.
    freed: Notify,
    /// `tokengate_upstream_connections{upstream}`.
    open: Gauge,
    /// `tokengate_upstream_queue_timeouts_total{upstream}`.
    queue_timeouts: Counter,
    state: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Connection>,
    /// Client connections' slots that have held a connection to this upstream.
    holders: Vec<Weak<HeldSlot>>,
    /// Dead holders are dropped from the list when it grows to this length.
    prune_holders_at: usize,
}

impl UpstreamPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle connection that can take a request now, if one is kept.
    fn take_idle(&self) -> Option<Connection> {
        let mut state = self.lock();
        while let Some(connection) = state.idle.pop() {
            if !connection.expired() && connection.sender.is_ready() {
                return Some(connection);
            }
        }
        None
    }

    fn keep_ready(&self, mut connection: Connection) {
        connection.last_used = Instant::now();
        {
            let mut state = self.lock();
            state.idle.retain(|c| !c.expired());
            if state.idle.len() < MAX_IDLE_PER_UPSTREAM {
                state.idle.push(connection);
            }
        }
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.freed.notify_waiters();
        }
    }

    /// A permit for one more open connection, unless the upstream is at its cap.
    fn try_open(self: &Arc<Self>) -> Option<Arc<Opened>> {
        let permit = match &self.permits {
            None => None,
            Some(permits) => Some(Arc::clone(permits).try_acquire_owned().ok()?),
        };
        self.open.inc();
        Some(Arc::new(Opened { pool: Arc::clone(self), _permit: permit }))
    }

    /// Takes back a connection a client connection holds between its requests: a ready one is
    /// returned for the queued request; one still streaming its response goes to the idle
    /// pool when done (which wakes the queue).
    fn reclaim_held(self: &Arc<Self>) -> Option<Connection> {
        let holders: Vec<Arc<HeldSlot>> = {
            let mut state = self.lock();
            state.holders.retain(|holder| holder.strong_count() > 0);
            state.holders.iter().filter_map(Weak::upgrade).collect()
        };
        for slot in holders {
            let taken = {
                let mut held = slot.lock().unwrap_or_else(PoisonError::into_inner);
                match &held.connection {
                    Some(connection) if Arc::ptr_eq(&connection.opened.pool, self) => held.connection.take(),
                    _ => None,
                }
            };
            let Some(connection) = taken else { continue };
            if connection.expired() {
                continue;
            }
            if connection.sender.is_ready() {
                return Some(connection);
            }
            connection.pool_when_ready();
        }
        None
    }

    /// Closes every idle connection (their permits come back as they close).
    fn close_idle(&self) {
        let idle = std::mem::take(&mut self.lock().idle);
        drop(idle);
    }
}

/// One open connection counted against its upstream's cap, from before connecting until the
/// socket is closed: shared by the connection's handle, the task that drives it, and (once
/// upgraded) the tunnel.
struct Opened {
    pool: Arc<UpstreamPool>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Opened {
    fn drop(&mut self) {
        self.open.dec();
        if self.pool.waiting.load(Ordering::Relaxed) > 0 {
            self.pool.freed.notify_waiters();
        }
    }
}

impl std::ops::Deref for Opened {
    type Target = UpstreamPool;
    fn deref(&self) -> &UpstreamPool {
        &self.pool
    }
}

/// Keeps an upgraded connection (a WebSocket tunnel) counted against its upstream's cap until
/// the tunnel ends: it travels in the upstream's `101` response's extensions.
#[derive(Clone)]
pub struct UpstreamLease {
    _opened: Arc<Opened>,
}

/// Counts a request queued at the cap for as long as it waits.
struct Queued<'a>(&'a UpstreamPool);

impl<'a> Queued<'a> {
    fn new(pool: &'a UpstreamPool) -> Self {
        pool.waiting.fetch_add(1, Ordering::Relaxed);
        Queued(pool)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What `SIGHUP` can change about opening connections.
struct Connector {
    connect_timeout: Duration,
    queue_timeout: Duration,
    tls: TlsConnector,
    /// The CA file the TLS roots came from: when it changes, idle connections are closed.
    ca_file: Option<PathBuf>,
}

impl Connector {
    fn new(config: &Config) -> Self {
        let mut tls = (*config.proxy.upstream_tls).clone();
        // The pinned connection speaks HTTP/1.1 only.
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Connector {
            connect_timeout: config.proxy.connect_timeout,
            // A request that waited out the upstream timeout in the queue gets its 504 first.
            queue_timeout: config.proxy.upstream_queue_timeout.min(config.proxy.upstream_timeout),
            tls: TlsConnector::from(Arc::new(tls)),
            ca_file: config.proxy.upstream_ca_file.clone(),
        }
    }
}

/// Every upstream's connections, for the life of the process.
pub struct Upstreams {
    connector: ArcSwap<Connector>,
    /// `proxy.max_upstream_connections` (fixed until a restart).
    max_per_upstream: Option<usize>,
    pools: Mutex<HashMap<UpstreamKey, Arc<UpstreamPool>>>,
    metrics: Arc<Metrics>,
}

/// Whether a checkout may hand out a connection that was open before.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Reuse {
    /// An idle one is fine.
    Allowed,
    /// A new one: a retry after a reused one failed, or an upgrade (WebSocket), which takes
    /// its connection for good.
    No,
}

impl Upstreams {
    /// Upstream connections as `config` says: connect timeout, the TLS roots of `https://`
    /// upstreams, the cap per upstream and how long a request queues at it.
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Self {
        Upstreams {
            connector: ArcSwap::from_pointee(Connector::new(config)),
            max_per_upstream: config.proxy.max_upstream_connections,
            pools: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Applies a reloaded configuration to connections opened from now on. A changed
    /// `proxy.upstream_ca_file` also closes the idle connections, so that none made under the
    /// old roots is reused; connections busy or held carry on until they close.
    pub fn reconfigure(&self, config: &Config) {
        let connector = Connector::new(config);
        let ca_changed = connector.ca_file != self.connector.load().ca_file;
        self.connector.store(Arc::new(connector));
        if ca_changed {
            let pools: Vec<Arc<UpstreamPool>> =
                self.pools.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
            pools.iter().for_each(|pool| pool.close_idle());
        }
    }

    fn pool(&self, key: &UpstreamKey) -> Arc<UpstreamPool> {
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pool) = pools.get(key) {
            return Arc::clone(pool);
        }
        let labels = UpstreamLabels { upstream: format!("{}://{}", key.scheme, key.authority).into() };
        let pool = Arc::new(UpstreamPool {
            key: key.clone(),
            permits: self.max_per_upstream.map(|max| Arc::new(Semaphore::new(max))),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
            open: self.metrics.upstream_connections.get_or_create(&labels).clone(),
            queue_timeouts: self.metrics.upstream_queue_timeouts.get_or_create(&labels).clone(),
            state: Mutex::new(PoolState { prune_holders_at: 64, ..PoolState::default() }),
        });
        pools.insert(key.clone(), Arc::clone(&pool));
        pool
    }

    /// A connection to `key` for one request, and whether it was open before: an idle one
    /// (when `reuse` allows), else a new one within the cap, else the first to come free
    /// within `proxy.upstream_queue_timeout`.
    pub(super) async fn checkout(&self, key: &UpstreamKey, reuse: Reuse) -> Result<(Connection, bool), SendError> {
        let pool = self.pool(key);
        if reuse == Reuse::Allowed
            && let Some(connection) = pool.take_idle()
        {
            return Ok((connection, true));
        }
        if let Some(opened) = pool.try_open() {
            return Ok((self.connect(opened).await?, false));
        }
        self.queue(&pool, reuse).await
    }

    /// Waits at the cap. Every wake-up looks again for an idle connection, a free permit, or
    /// a held connection to take back.
    async fn queue(&self, pool: &Arc<UpstreamPool>, reuse: Reuse) -> Result<(Connection, bool), SendError> {
        let _queued = Queued::new(pool);
        let deadline = tokio::time::Instant::now() + self.connector.load().queue_timeout;
        loop {
            let freed = pool.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so a connection freed meanwhile is not missed.
            freed.as_mut().enable();
            if let Some(opened) = pool.try_open() {
                return Ok((self.connect(opened).await?, false));
            }
            match reuse {
                Reuse::Allowed => {
                    if let Some(connection) = pool.take_idle().or_else(|| pool.reclaim_held()) {
                        return Ok((connection, true));
                    }
                }
                // Idle connections make room for the new one by closing.
                Reuse::No => pool.close_idle(),
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                pool.queue_timeouts.inc();
                return Err(SendError::Busy);
            }
        }
    }

    /// A new connection: TCP, TLS for `https`, the HTTP/1.1 handshake, all within the connect
    /// timeout. Its driver runs in a task of its own until either side closes it, and `opened`
    /// (its place under the cap) with it.
    async fn connect(&self, opened: Arc<Opened>) -> Result<Connection, UpstreamError> {
        let connector = self.connector.load_full();
        let key = &opened.key;
        let host = key.authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = key.authority.port_u16().unwrap_or_else(|| crate::config::default_port(&key.scheme));
        let connecting = async {
            let tcp = connect_tcp(&host, port, connector.connect_timeout).await?;
            tcp.set_nodelay(true)?;
            if key.scheme == Scheme::HTTPS {
                let name = ServerName::try_from(host.clone())?;
                let tls = connector.tls.connect(name, tcp).await?;
                handshake(tls, Arc::clone(&opened)).await
            } else {
                handshake(tcp, Arc::clone(&opened)).await
            }
        };
        let sender = tokio::time::timeout(connector.connect_timeout, connecting)
            .await
            .map_err(|_| format!("connecting to {} timed out", key.authority))??;
        Ok(Connection { opened, sender, last_used: Instant::now() })
    }
}

impl Drop for Upstreams {
    /// Idle connections refer to their pool; emptying the pools closes them.
    fn drop(&mut self) {
        let pools = self.pools.get_mut().unwrap_or_else(PoisonError::into_inner);
        pools.values().for_each(|pool| pool.close_idle());
    }
}

/// Each address the host resolves to in turn, each with an equal share of the connect
/// timeout, so one address that drops packets does not use up the whole of it.
async fn connect_tcp(host: &str, port: u16, connect_timeout: Duration) -> Result<TcpStream, UpstreamError> {
    let addresses: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    let share = connect_timeout / u32::try_from(addresses.len().max(1)).unwrap_or(u32::MAX);
    let mut last_error = format!("{host} resolves to no address");
    for address in addresses {
        match tokio::time::timeout(share, TcpStream::connect(address)).await {
            Ok(Ok(tcp)) => return Ok(tcp),
            Ok(Err(error)) => last_error = format!("connecting to {address}: {error}"),
            Err(_) => last_error = format!("connecting to {address} timed out"),
        }
    }
    Err(last_error.into())
}

/// The HTTP/1.1 handshake on `io`; the connection's driver then runs in a task of its own,
/// holding `opened` (its place under the cap) until the socket closes.
async fn handshake<I>(io: I, opened: Arc<Opened>) -> Result<SendRequest<ProgressBody>, UpstreamError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, driver) = http1::Builder::new().handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        // With upgrades: a `101` hands the connection to the tunnel instead of ending it.
        if let Err(error) = driver.with_upgrades().await {
            tracing::debug!(%error, "upstream connection ended with an error");
        }
        drop(opened);
    });
    Ok(sender)
}
