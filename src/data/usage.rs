//! What the data path learns about tokens, kept in memory and written in batches: each token's
//! last use, refused uses of dead tokens, rotation hand-overs (a successor's first use), and
//! the requests counted per day, route and outcome ([`UsageCounters`]).
//!
//! Recording touches only memory. The flusher writes everything pending in one transaction per
//! `usage.flush_interval`, and once more at shutdown, so database writes grow with the number
//! of tokens in use, not with the number of requests. Each entry carries the generation of the
//! call that last wrote it; after a write the flusher removes only entries still at that
//! generation, so a use recorded during the write waits for the next flush instead of being lost.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use http::Method;

use crate::clock::{UnixTime, utc_day};
use crate::control::store::{ActivityBatch, HandoverRecord, RefusalRecord, Store, StoreError, UsageRecord};
use crate::data::counters::UsageCounters;
use crate::model::UsageOutcome;

/// The longest user agent kept for the audit log (it is chosen by the client).
pub const USER_AGENT_MAX: usize = 200;

#[derive(Debug)]
struct PendingUse {
    generation: u64,
    at: UnixTime,
    method: Method,
    path: String,
    ip: IpAddr,
}

#[derive(Debug)]
struct PendingRefusal {
    generation: u64,
    count: i64,
    at: UnixTime,
    reason: &'static str,
    method: Method,
    path: String,
    ip: IpAddr,
    user_agent: Option<String>,
}

/// One refused use, as the data path saw it.
pub struct Refusal<'a> {
    /// The dead token that was presented.
    pub token_id: i64,
    /// When it was refused.
    pub at: UnixTime,
    /// Why it was refused: the failure's metric reason (`revoked`, `expired`, ...).
    pub reason: &'static str,
    /// The request's method.
    pub method: &'a Method,
    /// The request's path.
    pub path: &'a str,
    /// The client IP.
    pub ip: IpAddr,
    /// The request's `User-Agent`, cut to [`USER_AGENT_MAX`] characters when kept.
    pub user_agent: Option<&'a str>,
}

/// The in-memory tables.
#[derive(Debug, Default)]
pub struct UsageRecorder {
    uses: DashMap<i64, PendingUse>,
    refusals: DashMap<i64, PendingRefusal>,
    /// Successor id → (predecessor id, first use).
    handovers: DashMap<i64, (i64, UnixTime)>,
    counters: UsageCounters,
    generation: AtomicU64,
}

impl UsageRecorder {
    /// A recorder with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::Relaxed)
    }

    /// Notes a use of `token_id`. The newest use wins even when two requests race; the path
    /// is copied only when it differs from the one already held.
    pub fn record(&self, token_id: i64, at: UnixTime, method: &Method, path: &str, ip: IpAddr) {
        let generation = self.next_generation();
        match self.uses.entry(token_id) {
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

    /// Counts one request of `token_id` at `at` on `route` that ended as `outcome`.
    pub fn count(&self, token_id: i64, at: UnixTime, route: &Arc<str>, outcome: UsageOutcome) {
        self.counters.add(token_id, utc_day(at), route, outcome, 1);
    }

    /// Notes that a revoked, expired or blocked token was presented: counted, and the latest
    /// attempt kept, so its owner can find the client that still uses it.
    pub fn record_refusal(&self, refusal: Refusal<'_>) {
        let generation = self.next_generation();
        let user_agent = refusal.user_agent.map(|ua| ua.chars().take(USER_AGENT_MAX).collect());
        let latest = PendingRefusal {
            generation,
            count: 1,
            at: refusal.at,
            reason: refusal.reason,
            method: refusal.method.clone(),
            path: refusal.path.to_owned(),
            ip: refusal.ip,
            user_agent,
        };
        match self.refusals.entry(refusal.token_id) {
            Entry::Occupied(mut entry) => {
                let pending = entry.get_mut();
                let count = pending.count + 1;
                if latest.at >= pending.at {
                    *pending = PendingRefusal { count, ..latest };
                } else {
                    pending.count = count;
                    pending.generation = generation;
                }
            }
            Entry::Vacant(entry) => {
                entry.insert(latest);
            }
        }
    }

    /// A rotation successor's first use: its predecessor is revoked as of `at`, written to the
    /// database now (once per rotation, so this costs nothing per request) so that a crash
    /// right after cannot bring the old token back. If the database cannot take it now, the
    /// hand-over waits for the next flush like any other record.
    pub async fn hand_over(&self, store: &Store, successor_id: i64, predecessor_id: i64, at: UnixTime) {
        let handover = HandoverRecord { successor_id, predecessor_id, at };
        let batch = ActivityBatch { handovers: vec![handover], ..ActivityBatch::default() };
        if let Err(error) = store.record_activity(&batch).await {
            tracing::warn!(%error, successor_id, predecessor_id, "cannot write a rotation hand-over now; it waits for the next flush");
            self.handovers.entry(successor_id).or_insert((predecessor_id, at));
        }
    }

    /// How many tokens have something not yet written.
    pub fn pending_count(&self) -> usize {
        self.uses.len() + self.refusals.len() + self.handovers.len() + self.counters.len()
    }

    /// Everything pending, each list by token id so every writer touches rows in one order.
    fn snapshot(&self) -> (ActivityBatch, Vec<u64>, Vec<u64>) {
        let mut uses: Vec<(UsageRecord, u64)> = self
            .uses
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
        uses.sort_by_key(|(record, _)| record.token_id);
        let mut refusals: Vec<(RefusalRecord, u64)> = self
            .refusals
            .iter()
            .map(|entry| {
                let record = RefusalRecord {
                    token_id: *entry.key(),
                    count: entry.count,
                    at: entry.at,
                    reason: entry.reason,
                    method: entry.method.as_str().to_owned(),
                    path: entry.path.clone(),
                    ip: entry.ip.to_string(),
                    user_agent: entry.user_agent.clone(),
                };
                (record, entry.generation)
            })
            .collect();
        refusals.sort_by_key(|(record, _)| record.token_id);
        let mut handovers: Vec<HandoverRecord> = self
            .handovers
            .iter()
            .map(|entry| HandoverRecord { successor_id: *entry.key(), predecessor_id: entry.0, at: entry.1 })
            .collect();
        handovers.sort_by_key(|h| h.predecessor_id);
        let (uses, use_generations) = uses.into_iter().unzip();
        let (refusals, refusal_generations) = refusals.into_iter().unzip();
        let counts = self.counters.take();
        (ActivityBatch { uses, refusals, handovers, counts }, use_generations, refusal_generations)
    }

    /// Writes everything pending in one transaction. On failure it all stays pending for the
    /// next flush. Returns how many records were written.
    pub async fn flush(&self, store: &Store) -> Result<usize, StoreError> {
        let (batch, use_generations, refusal_generations) = self.snapshot();
        if batch.is_empty() {
            return Ok(0);
        }
        if let Err(error) = store.record_activity(&batch).await {
            // The counts were taken out of memory for this write: back they go, added to the
            // ones made meanwhile. The rest stayed pending (see the generations).
            self.counters.restore(&batch.counts);
            return Err(error);
        }
        for (record, generation) in batch.uses.iter().zip(use_generations) {
            self.uses.remove_if(&record.token_id, |_, pending| pending.generation == generation);
        }
        for (record, generation) in batch.refusals.iter().zip(refusal_generations) {
            // Attempts counted while the batch was written stay, less the ones just written.
            if let Entry::Occupied(mut entry) = self.refusals.entry(record.token_id) {
                if entry.get().generation == generation {
                    entry.remove();
                } else {
                    entry.get_mut().count -= record.count;
                }
            }
        }
        for handover in &batch.handovers {
            self.handovers.remove(&handover.successor_id);
        }
        Ok(batch.len())
    }

    /// Flushes every `interval` until `shutdown`, then once more.
    pub async fn run_flusher(
        self: Arc<Self>,
        store: Store,
        interval: Duration,
        metrics: Option<Arc<crate::metrics::Metrics>>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(interval) => {}
            }
            let started = std::time::Instant::now();
            match self.flush(&store).await {
                Ok(0) => {}
                Ok(_) => {
                    if let Some(metrics) = &metrics {
                        metrics.flush_duration.observe(started.elapsed().as_secs_f64());
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, pending = self.pending_count(), "cannot write last-use records and usage counts; will retry")
                }
            }
        }
        match self.flush(&store).await {
            Ok(written) => tracing::info!(written, "last-use records and usage counts flushed at shutdown"),
            Err(error) => {
                tracing::error!(%error, lost = self.pending_count(), "cannot write last-use records and usage counts at shutdown")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    #[test]
    fn later_records_replace_earlier_ones() {
        let recorder = UsageRecorder::new();
        recorder.record(7, 10, &Method::GET, "/a", ip());
        recorder.record(7, 12, &Method::POST, "/b", ip());
        recorder.record(8, 11, &Method::GET, "/c", ip());
        recorder.record(7, 11, &Method::PUT, "/stale", ip());
        let (batch, _, _) = recorder.snapshot();
        assert_eq!(batch.uses.len(), 2);
        let first = &batch.uses[0];
        assert_eq!((first.token_id, first.at, first.method.as_str(), first.path.as_str()), (7, 12, "POST", "/b"));
    }

    #[test]
    fn refusals_are_counted_and_the_latest_kept() {
        let recorder = UsageRecorder::new();
        for (at, path) in [(10, "/a"), (12, "/b"), (11, "/c")] {
            let refusal =
                Refusal { token_id: 3, at, reason: "revoked", method: &Method::GET, path, ip: ip(), user_agent: None };
            recorder.record_refusal(refusal);
        }
        let (batch, _, _) = recorder.snapshot();
        assert_eq!(batch.refusals.len(), 1);
        assert_eq!((batch.refusals[0].count, batch.refusals[0].at, batch.refusals[0].path.as_str()), (3, 12, "/b"));
    }
}
