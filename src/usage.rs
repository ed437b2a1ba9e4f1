//! Last use of each token, kept in memory on the data path and written in batches.
//!
//! `record` touches only memory. The flusher writes every token used since the last flush in
//! one transaction per `usage.flush_interval`, and once more at shutdown, so database writes
//! grow with the number of tokens in use, not with the number of requests.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use http::Method;

use crate::clock::UnixTime;
use crate::store::{Store, UsageRecord};

#[derive(Debug)]
struct PendingUse {
    /// Which `record` call wrote this; the flusher removes the entry only if it is unchanged.
    generation: u64,
    at: UnixTime,
    method: Method,
    path: String,
    ip: IpAddr,
}

/// The in-memory last-use table.
#[derive(Debug, Default)]
pub struct UsageRecorder {
    pending: DashMap<i64, PendingUse>,
    generation: AtomicU64,
}

impl UsageRecorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes a use of `token_id`. The newest use wins even when two requests race; the path
    /// is copied only when it differs from the one already held.
    pub fn record(&self, token_id: i64, at: UnixTime, method: &Method, path: &str, ip: IpAddr) {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        match self.pending.entry(token_id) {
            Entry::Occupied(mut entry) => {
                let pending = entry.get_mut();
                if at < pending.at {
                    return;
                }
                pending.generation = generation;
                pending.at = at;
                if pending.method != method {
                    pending.method = method.clone();
                }
                if pending.path != path {
                    path.clone_into(&mut pending.path);
                }
                pending.ip = ip;
            }
            Entry::Vacant(entry) => {
                entry.insert(PendingUse { generation, at, method: method.clone(), path: path.to_owned(), ip });
            }
        }
    }

    /// How many tokens have a use not yet written.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// The pending records, by token id: every writer touches rows in the same order.
    fn snapshot(&self) -> Vec<(UsageRecord, u64)> {
        let mut batch: Vec<(UsageRecord, u64)> = self
            .pending
            .iter()
            .map(|entry| {
                let record = UsageRecord {
                    token_id: *entry.key(),
                    at: entry.at,
                    method: entry.method.as_str().to_owned(),
                    path: entry.path.clone(),
                    ip: entry.ip.to_string(),
                };
                (record, entry.generation)
            })
            .collect();
        batch.sort_by_key(|(record, _)| record.token_id);
        batch
    }

    /// Writes every pending use in one transaction. On failure the records stay pending for
    /// the next flush. Returns how many were written.
    pub async fn flush(&self, store: &Store) -> Result<usize, crate::store::StoreError> {
        let batch = self.snapshot();
        if batch.is_empty() {
            return Ok(0);
        }
        let records: Vec<UsageRecord> = batch.iter().map(|(record, _)| record.clone()).collect();
        store.record_usage(&records).await?;
        for (record, generation) in &batch {
            self.pending.remove_if(&record.token_id, |_, entry| entry.generation == *generation);
        }
        Ok(batch.len())
    }

    /// Flushes every `interval` until `shutdown`, then once more.
    pub async fn run_flusher(self: Arc<Self>, store: Store, interval: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(interval) => {}
            }
            if let Err(error) = self.flush(&store).await {
                tracing::warn!(%error, pending = self.pending_count(), "cannot write last-use records; will retry");
            }
        }
        match self.flush(&store).await {
            Ok(written) => tracing::info!(written, "last-use records flushed at shutdown"),
            Err(error) => {
                tracing::error!(%error, lost = self.pending_count(), "cannot write last-use records at shutdown")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_records_replace_earlier_ones() {
        let recorder = UsageRecorder::new();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        recorder.record(7, 10, &Method::GET, "/a", ip);
        recorder.record(7, 12, &Method::POST, "/b", ip);
        recorder.record(8, 11, &Method::GET, "/c", ip);
        recorder.record(7, 11, &Method::PUT, "/stale", ip);
        let mut snapshot = recorder.snapshot();
        snapshot.sort_by_key(|(r, _)| r.token_id);
        assert_eq!(snapshot.len(), 2);
        assert_eq!((snapshot[0].0.at, snapshot[0].0.method.as_str(), snapshot[0].0.path.as_str()), (12, "POST", "/b"));
    }
}
