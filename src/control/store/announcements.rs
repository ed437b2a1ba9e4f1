//! Change announcements: how a gateway learns at once that another process committed.

use super::{Store, StoreError};

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
