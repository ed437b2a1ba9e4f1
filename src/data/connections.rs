//! The connection table: how many client connections are open, overall and per client
//! address, so that one address cannot take every slot, and so that `/readyz` and `/metrics`
//! can say when the table is full.
//!
//! The overall bound (`proxy.max_connections`) makes the listener wait for a free slot; the
//! per-address bound (`proxy.max_connections_per_ip`) closes a new connection at once, since
//! waiting would let the hogging address queue ahead of everyone else.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Decides, for a peer address, that its connections are not counted per address (trusted
/// proxies: many clients arrive through each).
pub type Exempt = Box<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// Open connections of one listener.
pub struct ConnectionTable {
    max: usize,
    slots: Arc<Semaphore>,
    /// `None`: no per-address bound.
    per_ip: Option<usize>,
    by_ip: DashMap<IpAddr, usize>,
    exempt: Exempt,
    refused_per_ip: AtomicU64,
    /// Admitted connections still open (the listener holds one more slot while it waits to
    /// accept, so the semaphore alone would count one too many).
    open: AtomicUsize,
}

/// One open connection's place in the table, given back when dropped.
pub struct ConnectionSlot {
    _slot: OwnedSemaphorePermit,
    table: Arc<ConnectionTable>,
    /// The address it is counted against, unless exempt.
    counted: Option<IpAddr>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.table.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(ip) = self.counted.take() {
            self.table.by_ip.remove_if_mut(&ip, |_, open| {
                *open -= 1;
                *open == 0
            });
        }
    }
}

impl ConnectionTable {
    /// A table of at most `max` connections, `per_ip` of them from one address unless
    /// `exempt` says otherwise.
    pub fn new(max: usize, per_ip: Option<usize>, exempt: Exempt) -> Arc<Self> {
        Arc::new(ConnectionTable {
            max,
            slots: Arc::new(Semaphore::new(max)),
            per_ip,
            by_ip: DashMap::new(),
            exempt,
            refused_per_ip: AtomicU64::new(0),
            open: AtomicUsize::new(0),
        })
    }

    /// Waits for a free slot (the overall bound); `None` once the table is closed.
    pub async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.slots).acquire_owned().await.ok()
    }

    /// Counts an accepted connection from `ip` in its `slot`; `None` (the connection is to be
    /// closed) when that address already holds its share.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, slot: OwnedSemaphorePermit) -> Option<ConnectionSlot> {
        let ip = ip.to_canonical();
        let Some(per_ip) = self.per_ip.filter(|_| !(self.exempt)(ip)) else {
            self.open.fetch_add(1, Ordering::Relaxed);
            return Some(ConnectionSlot { _slot: slot, table: Arc::clone(self), counted: None });
        };
        let mut open = self.by_ip.entry(ip).or_insert(0);
        if *open >= per_ip {
            drop(open);
            if self.refused_per_ip.fetch_add(1, Ordering::Relaxed).is_multiple_of(1000) {
                // One line per thousand refusals: a flood must not flood the log too.
                tracing::warn!(%ip, per_ip, "connection refused: this address holds proxy.max_connections_per_ip");
            }
            return None;
        }
        *open += 1;
        drop(open);
        self.open.fetch_add(1, Ordering::Relaxed);
        Some(ConnectionSlot { _slot: slot, table: Arc::clone(self), counted: Some(ip) })
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// The overall bound.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections closed at once because their address held its share.
    pub fn refused_per_ip(&self) -> u64 {
        self.refused_per_ip.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_address_holds_its_share_and_no_more_while_others_and_exempt_ones_are_served() {
        let exempt: IpAddr = "10.0.0.9".parse().unwrap();
        let table = ConnectionTable::new(10, Some(2), Box::new(move |ip| ip == exempt));
        let hog: IpAddr = "192.0.2.1".parse().unwrap();
        let first = table.admit(hog, table.slot().await.unwrap()).unwrap();
        let _second = table.admit(hog, table.slot().await.unwrap()).unwrap();
        assert!(table.admit(hog, table.slot().await.unwrap()).is_none());
        assert_eq!(table.refused_per_ip(), 1);
        // IPv4-mapped IPv6 is the same address.
        assert!(table.admit("::ffff:192.0.2.1".parse().unwrap(), table.slot().await.unwrap()).is_none());
        assert!(table.admit("192.0.2.2".parse().unwrap(), table.slot().await.unwrap()).is_some());
        for _ in 0..3 {
            std::mem::forget(table.admit(exempt, table.slot().await.unwrap()).unwrap());
        }
        drop(first);
        assert!(table.admit(hog, table.slot().await.unwrap()).is_some(), "a closed connection frees its place");
        assert_eq!(
            table.open(),
            4,
            "refused and dropped connections gave their slots back; the held and forgotten ones did not"
        );
    }
}
