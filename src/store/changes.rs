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

/// PostgreSQL's announcements of new change-log rows: a wake-up for followers, never the
/// source of truth (notifications are lost while the connection is down).
pub struct ChangeListener {
    listener: sqlx::postgres::PgListener,
}

impl ChangeListener {
    /// Waits for the next announcement. `Ok(false)`: the connection was lost, so announcements
    /// may have been missed (catch up); the next call reconnects and listens again.
    pub async fn wait(&mut self) -> Result<bool, StoreError> {
        Ok(self.listener.try_recv().await?.is_some())
    }
}

impl Store {
    /// A listener for change announcements, on backends that have them (PostgreSQL).
    pub async fn change_listener(&self) -> Result<Option<ChangeListener>, StoreError> {
        let super::Backend::Postgres(pool) = &self.backend else {
            return Ok(None);
        };
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen(super::CHANGES_CHANNEL).await?;
        Ok(Some(ChangeListener { listener }))
    }
}
