//! What the index sync reads, in one place: the change log, and the rows of accounts and tokens
//! it loads at start and re-reads for each change.

use super::{ChangeRow, IndexAccountRow, IndexTokenRow, Store, StoreError, with_pool};

const INDEX_SELECT: &str =
    "SELECT id, account_id, name, digest, scopes, rate_limit, expires_at, revoked_at, handover_from FROM tokens";

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

    /// Every token, for loading the index.
    pub async fn index_tokens(&self) -> Result<Vec<IndexTokenRow>, StoreError> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, IndexTokenRow>(INDEX_SELECT).fetch_all(pool).await?
        }))
    }

    /// The given tokens, for applying changes to the index.
    pub async fn index_tokens_by_id(&self, ids: &[i64]) -> Result<Vec<IndexTokenRow>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
        let sql = format!("{INDEX_SELECT} WHERE id IN ({})", placeholders.join(", "));
        Ok(with_pool!(self, pool => {
            let mut query = sqlx::query_as::<_, IndexTokenRow>(sqlx::AssertSqlSafe(sql));
            for id in ids {
                query = query.bind(*id);
            }
            query.fetch_all(pool).await?
        }))
    }
}
