//! Keeps the index in step with the database: a full load at start, then the change log.
//!
//! Every mutation appends a change-log row in its own transaction; `catch_up` reads the rows
//! after the last sequence it applied and re-reads the accounts and tokens they name. Applying
//! a row twice is harmless (it re-reads current state), which is what makes the start safe:
//! the latest sequence is read *before* the full load, so anything committed during the load
//! is applied again afterwards rather than missed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Notify};

use crate::control::store::IndexTokenRef;
use crate::control::store::{Store, StoreError};
use crate::data::index::{PreparedToken, TokenIndex};

/// How many change-log rows one read takes.
const BATCH: i64 = 1000;
/// Tokens per chunk handed from the reading to the inserting thread during the full load, and
/// how many chunks may wait: enough to keep both busy, little enough to hold no copy of the
/// table.
const LOAD_CHUNK: usize = 4096;
const LOAD_CHUNKS_IN_FLIGHT: usize = 4;
/// Rechecks after an announcement that found nothing: 2, 4, ... 64 ms later.
const FIRST_RECHECK: Duration = Duration::from_millis(2);
const LAST_RECHECK: Duration = Duration::from_millis(64);
/// The longest wait between attempts while the database is failing.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Loads and follows. Shared by the poller and by in-process mutations, which call
/// [`IndexSync::catch_up`] so that their own change is in the index before they return.
pub struct IndexSync {
    store: Store,
    index: Arc<TokenIndex>,
    applied_seq: AtomicI64,
    /// The same sequence, for the fleet registry, which reports it as soon as it moves.
    applied: tokio::sync::watch::Sender<i64>,
    /// One catch-up at a time, so rows are applied in order.
    running: Mutex<()>,
    last_success: std::sync::Mutex<Instant>,
}

impl IndexSync {
    /// Loads every account and token into a new index and returns the follower.
    ///
    /// Rows are decoded where they are read and handed over in chunks to a thread that puts
    /// them into the index, so that reading and inserting overlap; the index is sized for the
    /// tokens beforehand. On SQLite the rows are read on a thread of their own too (see
    /// [`Store::scan_index_tokens`]); on PostgreSQL the calling task reads them and may wait on
    /// the inserting thread, which never waits on it in turn.
    pub async fn load(store: Store) -> Result<Arc<IndexSync>, StoreError> {
        let started = Instant::now();
        let start_seq = store.latest_change_seq().await?;
        let index = Arc::new(TokenIndex::with_capacity(store.index_token_estimate().await?));
        for account in store.index_accounts().await? {
            index.upsert_account(account);
        }
        let (chunks, received) = std::sync::mpsc::sync_channel::<Vec<PreparedToken>>(LOAD_CHUNKS_IN_FLIGHT);
        // A thread of its own rather than the runtime's blocking pool: it ends with the load
        // instead of idling among the runtime's threads.
        let (inserted, inserter) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("index-insert".into())
            .spawn({
                let index = Arc::clone(&index);
                move || {
                    for chunk in received {
                        chunk.into_iter().for_each(|token| index.insert(token));
                    }
                    let _ = inserted.send(());
                }
            })
            .map_err(|e| StoreError::DirectRead(format!("cannot start the index's inserting thread: {e}")))?;
        let mut loader = Chunker { index: Arc::clone(&index), chunk: Vec::with_capacity(LOAD_CHUNK), chunks };
        // The closure, and with it the loader, is dropped here whether the scan succeeded or
        // not: that sends the last chunk and closes the channel, so the inserting thread ends.
        let scanned = store.scan_index_tokens(move |row| loader.add(row)).await.map(drop);
        let read = started.elapsed();
        let inserted = inserter.await;
        scanned?;
        inserted.map_err(|_| StoreError::DirectRead("the index's inserting thread failed".into()))?;
        tracing::info!(
            tokens = index.token_count(),
            seq = start_seq,
            read_ms = read.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "index loaded"
        );
        Ok(Arc::new(IndexSync {
            store,
            index,
            applied_seq: AtomicI64::new(start_seq),
            applied: tokio::sync::watch::Sender::new(start_seq),
            running: Mutex::new(()),
            last_success: std::sync::Mutex::new(Instant::now()),
        }))
    }

    /// The index this sync keeps up to date, which the data path reads.
    pub fn index(&self) -> &Arc<TokenIndex> {
        &self.index
    }

    /// The last change-log sequence applied.
    pub fn applied_seq(&self) -> i64 {
        self.applied_seq.load(Ordering::Acquire)
    }

    /// Tells each newly applied sequence (the fleet registry confirms changes with it).
    pub fn subscribe_applied(&self) -> tokio::sync::watch::Receiver<i64> {
        self.applied.subscribe()
    }

    /// How long since the change log was last read successfully.
    pub fn lag(&self) -> Duration {
        self.last_success.lock().map(|at| at.elapsed()).unwrap_or_default()
    }

    /// Applies every change-log row after the last one applied; returns how many.
    pub async fn catch_up(&self) -> Result<usize, StoreError> {
        let _one_at_a_time = self.running.lock().await;
        let mut applied = 0;
        loop {
            let from = self.applied_seq();
            let rows = self.store.changes_after(from, BATCH).await?;
            let Some(last) = rows.last().map(|row| row.seq) else {
                break;
            };
            let accounts: BTreeSet<i64> = rows.iter().filter_map(|r| r.account_id).collect();
            let tokens: Vec<i64> =
                rows.iter().filter_map(|r| r.token_id).collect::<BTreeSet<_>>().into_iter().collect();
            for id in accounts {
                if let Some(account) = self.store.index_account(id).await? {
                    self.index.upsert_account(account);
                }
            }
            for chunk in tokens.chunks(500) {
                for token in self.store.index_tokens_by_id(chunk).await? {
                    self.index.upsert_token(token);
                }
            }
            self.applied_seq.store(last, Ordering::Release);
            self.applied.send_replace(last);
            applied += rows.len();
            if rows.len() < BATCH as usize {
                break;
            }
        }
        if let Ok(mut at) = self.last_success.lock() {
            *at = Instant::now();
        }
        Ok(applied)
    }

    /// Follows the change log until `shutdown` resolves: reads it every `interval`, and at once
    /// when the database announces a change (PostgreSQL NOTIFY; on SQLite, a write to the
    /// database file or its log by any process, seen through inotify). Failures are logged and
    /// retried with a growing pause; the index keeps serving what it last knew.
    pub async fn follow(self: Arc<Self>, interval: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let wake = Arc::new(Notify::new());
        let listener = tokio::spawn(listen_for_announcements(self.store.clone(), Arc::clone(&wake)));
        let mut pause = interval;
        // After an announcement that found nothing yet, look again soon: a SQLite commit is
        // announced when its log is written, and becomes visible a moment later, after the
        // fsync (no file event marks that moment).
        let mut recheck: Option<Duration> = None;
        loop {
            let announced = tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(recheck.unwrap_or(pause)) => false,
                _ = wake.notified() => true,
            };
            match self.catch_up().await {
                Ok(applied) => {
                    pause = interval;
                    recheck = match (applied, announced, recheck) {
                        (0, true, _) => Some(FIRST_RECHECK),
                        (0, false, Some(after)) if after < LAST_RECHECK => Some(after * 2),
                        _ => None,
                    };
                }
                Err(error) => {
                    recheck = None;
                    pause = (pause * 2).min(MAX_BACKOFF).max(interval);
                    tracing::warn!(%error, lag_s = self.lag().as_secs(), retry_in_ms = pause.as_millis() as u64,
                        "cannot read the change log; serving the last synced index");
                }
            }
        }
        listener.abort();
    }
}

/// The reading half of the full load: decodes rows into chunks of prepared tokens and sends
/// each full chunk to the inserting thread; dropped, it sends what is left.
struct Chunker {
    index: Arc<TokenIndex>,
    chunk: Vec<PreparedToken>,
    chunks: std::sync::mpsc::SyncSender<Vec<PreparedToken>>,
}

impl Chunker {
    fn add(&mut self, row: IndexTokenRef<'_>) {
        // Rows with a malformed digest are skipped: they could never match a presented secret.
        if let Some(token) = self.index.prepare(row) {
            self.chunk.push(token);
            if self.chunk.len() == LOAD_CHUNK {
                self.send(Vec::with_capacity(LOAD_CHUNK));
            }
        }
    }

    fn send(&mut self, next: Vec<PreparedToken>) {
        let full = std::mem::replace(&mut self.chunk, next);
        // The inserting thread only stops once every sender is gone; this one is still here.
        let _ = self.chunks.send(full);
    }
}

impl Drop for Chunker {
    fn drop(&mut self) {
        if !self.chunk.is_empty() {
            self.send(Vec::new());
        }
    }
}

/// Turns the database's change announcements into wake-ups, reconnecting as needed. A lost
/// connection is itself a wake-up: announcements may have been missed while it was down.
async fn listen_for_announcements(store: Store, wake: Arc<Notify>) {
    let mut pause = Duration::from_millis(100);
    loop {
        let mut listener = match store.change_listener().await {
            Ok(Some(listener)) => listener,
            Ok(None) => return, // this backend has no announcements: polling alone
            Err(error) => {
                tracing::debug!(%error, "cannot listen for change announcements; polling meanwhile");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        pause = Duration::from_millis(100);
        wake.notify_one();
        loop {
            match listener.wait().await {
                Ok(true) => wake.notify_one(),
                Ok(false) => {
                    tracing::info!("change announcements interrupted; catching up");
                    wake.notify_one();
                }
                Err(error) => {
                    tracing::debug!(%error, "change listener failed; reconnecting");
                    wake.notify_one();
                    break;
                }
            }
        }
    }
}
