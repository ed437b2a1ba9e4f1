//! What the index sync reads, in one place: the change log, and the rows of accounts and tokens
//! it loads at start and re-reads for each change.

use std::path::Path;
use std::time::Duration;

use futures_util::TryStreamExt;
use sqlx::Row;

use super::{Backend, ChangeRow, IndexAccountRow, IndexTokenRef, IndexTokenRow, Store, StoreError, with_pool};

/// The columns the index keeps, and a rotation successor's predecessor's digest (looked up
/// only for the few rows that have a predecessor), so that the hand-over finds it in the index
/// without a map from every id to its digest.
const INDEX_SELECT: &str = "SELECT t.id, t.account_id, t.name, t.digest, t.scopes, t.rate_limit, t.expires_at, \
     t.revoked_at, t.handover_from, \
     CASE WHEN t.handover_from IS NULL THEN NULL \
          ELSE (SELECT p.digest FROM tokens p WHERE p.id = t.handover_from) END AS handover_digest \
     FROM tokens t";

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

    /// One account as the index needs it, re-read when the change log names it; `None` when it is
    /// gone.
    pub async fn index_account(&self, id: i64) -> Result<Option<IndexAccountRow>, StoreError> {
        let sql = format!("{ACCOUNT_INDEX_SELECT} WHERE id = $1");
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, IndexAccountRow>(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?
        }))
    }

    /// About how many tokens there are (the highest id: tokens are never deleted), so the
    /// index can be sized before the load, at the cost of one primary-key lookup.
    pub async fn index_token_estimate(&self) -> Result<usize, StoreError> {
        let highest = with_pool!(self, pool => {
            sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(id) FROM tokens").fetch_one(pool).await?
        });
        Ok(highest.map_or(0, |id| usize::try_from(id).unwrap_or(0)))
    }

    /// Every token, for loading the index: each row is handed to `each` as it is read, borrowed
    /// (no list of every row, no allocation per column), and `each` is handed back at the end.
    ///
    /// A SQLite file is read with rusqlite on a thread of its own. Through sqlx, every row
    /// crosses from its worker thread to the async side with each value copied: measured on
    /// 1 000 000 tokens, 2.1–3.7 s for the `SELECT` alone, the better part of the 3 s the whole
    /// start may take; read directly, 0.45–1.1 s (see `benches/index_scale.rs`). If the file cannot be opened that way, the rows come through sqlx like PostgreSQL's,
    /// where `each` runs on the calling task.
    pub async fn scan_index_tokens<F>(&self, mut each: F) -> Result<F, StoreError>
    where
        F: FnMut(IndexTokenRef<'_>) + Send + 'static,
    {
        if let (Backend::Sqlite(_), Some(file)) = (&self.backend, &self.sqlite_file) {
            let file = file.clone();
            let (done, scanned) = tokio::sync::oneshot::channel();
            // A thread of its own rather than the runtime's blocking pool: it ends with the load
            // instead of idling among the runtime's threads.
            std::thread::Builder::new()
                .name("index-read".into())
                .spawn(move || {
                    let result = scan_sqlite_file(&file, &mut each);
                    let _ = done.send((result, each));
                })
                .map_err(|e| StoreError::DirectRead(format!("cannot start the index's reading thread: {e}")))?;
            match scanned.await {
                Ok((Ok(()), each)) => return Ok(each),
                Ok((Err(DirectScanError::Open(error)), returned)) => {
                    tracing::debug!(%error, "cannot read the database file directly; loading through the pool");
                    each = returned;
                }
                Ok((Err(DirectScanError::Read(error)), _)) => return Err(StoreError::DirectRead(error.to_string())),
                Err(_) => return Err(StoreError::DirectRead("the index's reading thread failed".into())),
            }
        }
        with_pool!(self, pool => {
            let mut rows = sqlx::query(INDEX_SELECT).fetch(pool);
            while let Some(row) = rows.try_next().await? {
                each(IndexTokenRef {
                    id: row.try_get(0)?,
                    account_id: row.try_get(1)?,
                    name: row.try_get(2)?,
                    digest: row.try_get(3)?,
                    scopes: row.try_get(4)?,
                    rate_limit: row.try_get(5)?,
                    expires_at: row.try_get(6)?,
                    revoked_at: row.try_get(7)?,
                    handover_from: row.try_get(8)?,
                    handover_digest: row.try_get(9)?,
                });
            }
        });
        Ok(each)
    }

    /// The given tokens, for applying changes to the index.
    pub async fn index_tokens_by_id(&self, ids: &[i64]) -> Result<Vec<IndexTokenRow>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
        let sql = format!("{INDEX_SELECT} WHERE t.id IN ({})", placeholders.join(", "));
        Ok(with_pool!(self, pool => {
            let mut query = sqlx::query_as::<_, IndexTokenRow>(sqlx::AssertSqlSafe(sql));
            for id in ids {
                query = query.bind(*id);
            }
            query.fetch_all(pool).await?
        }))
    }
}

/// Why the direct read of a SQLite file failed: before any row (the pool reads instead) or
/// during the read (the load fails, as it would through the pool).
enum DirectScanError {
    Open(rusqlite::Error),
    Read(rusqlite::Error),
}

/// Reads every token of a SQLite file in one statement (one read transaction, so one
/// consistent state), handing each row to `each` borrowed from SQLite's own buffers.
fn scan_sqlite_file(file: &Path, each: &mut impl FnMut(IndexTokenRef<'_>)) -> Result<(), DirectScanError> {
    use rusqlite::OpenFlags;
    let open = || -> Result<rusqlite::Connection, rusqlite::Error> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let db = rusqlite::Connection::open_with_flags(file, flags)?;
        // Read-write only so that it may share the WAL index like the pool's connections;
        // it never writes.
        db.pragma_update(None, "query_only", true)?;
        db.busy_timeout(Duration::from_secs(5))?;
        Ok(db)
    };
    let db = open().map_err(DirectScanError::Open)?;
    let mut statement = db.prepare(INDEX_SELECT).map_err(DirectScanError::Open)?;
    let mut rows = statement.query([]).map_err(DirectScanError::Read)?;
    // A digest of any other type or length is handed over as it is and skipped by the index,
    // as a malformed digest read through the pool is.
    fn bytes(value: rusqlite::types::ValueRef<'_>) -> &[u8] {
        match value {
            rusqlite::types::ValueRef::Blob(bytes) | rusqlite::types::ValueRef::Text(bytes) => bytes,
            _ => &[],
        }
    }
    let read = |rows: &mut rusqlite::Rows<'_>, each: &mut dyn FnMut(IndexTokenRef<'_>)| -> rusqlite::Result<bool> {
        let Some(row) = rows.next()? else { return Ok(false) };
        each(IndexTokenRef {
            id: row.get(0)?,
            account_id: row.get(1)?,
            name: row.get_ref(2)?.as_str()?,
            digest: bytes(row.get_ref(3)?),
            scopes: row.get_ref(4)?.as_str()?,
            rate_limit: row.get_ref(5)?.as_str_or_null()?,
            expires_at: row.get(6)?,
            revoked_at: row.get(7)?,
            handover_from: row.get(8)?,
            handover_digest: Some(bytes(row.get_ref(9)?)).filter(|digest| !digest.is_empty()),
        });
        Ok(true)
    };
    while read(&mut rows, each).map_err(DirectScanError::Read)? {}
    Ok(())
}
