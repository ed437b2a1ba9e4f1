//! The change log, read by every gateway to keep its index in step with the database.

use super::{ChangeRow, IndexAccountRow, Store, StoreError, with_pool};

const ACCOUNT_INDEX_SELECT: &str = "SELECT id, email, email_norm, enabled, can_create_tokens FROM accounts";

impl Store {
    /// The highest sequence in the change log (0 when empty): where a freshly loaded index
    /// starts following.
    pub async fn latest_change_seq(&self) -> Result<i64, StoreError> {
        Ok(with_pool!(self, pool => {
            sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(seq) FROM changes").fetch_one(pool).await?.unwrap_or(0)
        }))
    }

    /// Change-log rows after `seq`, oldest first, at most `limit`.
    pub async fn changes_after(&self, seq: i64, limit: i64) -> Result<Vec<ChangeRow>, StoreError> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, ChangeRow>(
                "SELECT seq, account_id, token_id FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(seq)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Every account, for loading the index.
    pub async fn index_accounts(&self) -> Result<Vec<IndexAccountRow>, StoreError> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, IndexAccountRow>(ACCOUNT_INDEX_SELECT).fetch_all(pool).await?
        }))
    }

    pub async fn index_account(&self, id: i64) -> Result<Option<IndexAccountRow>, StoreError> {
        let sql = format!("{ACCOUNT_INDEX_SELECT} WHERE id = $1");
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, IndexAccountRow>(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?
        }))
    }
}

/// Announcements that another process committed: PostgreSQL's NOTIFY, or for SQLite the
/// kernel telling that the database file or its write-ahead log changed (inotify, through the
/// `notify` crate). Either is a wake-up for followers, never the source of truth: notifications
/// are lost while a connection is down, and a file event says only that something was written.
/// An idle gateway waits on them without polling, so waking costs nothing until a commit.
pub struct ChangeListener {
    source: Announcements,
}

enum Announcements {
    Postgres(sqlx::postgres::PgListener),
    /// Kept alive while listening; events arrive, coalesced, on `events`.
    SqliteFile {
        _watcher: notify::RecommendedWatcher,
        events: tokio::sync::mpsc::Receiver<()>,
    },
}

impl ChangeListener {
    /// Waits for the next announcement. `Ok(false)`: the connection was lost, so announcements
    /// may have been missed (catch up); the next call reconnects and listens again.
    pub async fn wait(&mut self) -> Result<bool, StoreError> {
        match &mut self.source {
            Announcements::Postgres(listener) => Ok(listener.try_recv().await?.is_some()),
            Announcements::SqliteFile { events, .. } => match events.recv().await {
                Some(()) => Ok(true),
                None => Err(StoreError::Watch("the database file watcher stopped".into())),
            },
        }
    }
}

impl Store {
    /// A listener for change announcements: NOTIFY on PostgreSQL, file events on a SQLite file.
    /// `None` where there is nothing to listen to (an in-memory database): polling alone.
    pub async fn change_listener(&self) -> Result<Option<ChangeListener>, StoreError> {
        match (&self.backend, &self.sqlite_file) {
            (super::Backend::Postgres(pool), _) => {
                let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
                listener.listen(super::CHANGES_CHANNEL).await?;
                Ok(Some(ChangeListener { source: Announcements::Postgres(listener) }))
            }
            (super::Backend::Sqlite(_), Some(file)) => Ok(Some(watch_sqlite_file(file)?)),
            (super::Backend::Sqlite(_), None) => Ok(None),
        }
    }
}

/// Watches the directory of the database file (the write-ahead log is created and removed
/// beside it) and signals every write to the file or its `-wal`.
fn watch_sqlite_file(file: &std::path::Path) -> Result<ChangeListener, StoreError> {
    use notify::Watcher;
    let watch_error = |e: notify::Error| StoreError::Watch(format!("cannot watch {}: {e}", file.display()));
    let dir = file.parent().ok_or_else(|| StoreError::Watch(format!("{} has no directory", file.display())))?;
    let mut wal = file.as_os_str().to_owned();
    wal.push("-wal");
    let watched = [file.to_owned(), std::path::PathBuf::from(wal)];
    // One pending wake-up is enough: a burst of writes needs one catch-up.
    let (sender, events) = tokio::sync::mpsc::channel(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(event) => event.paths.iter().any(|path| watched.contains(path)),
            Err(_) => true,
        };
        if relevant {
            let _ = sender.try_send(());
        }
    })
    .map_err(watch_error)?;
    watcher.watch(dir, notify::RecursiveMode::NonRecursive).map_err(watch_error)?;
    Ok(ChangeListener { source: Announcements::SqliteFile { _watcher: watcher, events } })
}
