//! Periodic lifecycle work's queries: expiry reminders and inactivity warnings.

use super::tokens::TOKEN_SELECT;
use super::{BeginWrite, Store, StoreError, TokenRecord, insert_outbox, with_pool};
use crate::clock::UnixTime;
use crate::model::Notice;
use crate::model::token::live_sql;

impl Store {
    /// Live tokens that expire within `lead` of `now` and lived longer than `lead` (a token
    /// minted for a day is not "expiring soon" from its first minute).
    pub async fn tokens_expiring_within(&self, lead: i64, now: UnixTime) -> Result<Vec<TokenRecord>, StoreError> {
        let sql = format!(
            "{TOKEN_SELECT} WHERE {live} \
             AND t.expires_at <= $2 AND t.expires_at - t.created_at > $3 ORDER BY t.id",
            live = live_sql("t", "$1")
        );
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, TokenRecord>(sqlx::AssertSqlSafe(sql))
                .bind(now)
                .bind(now + lead)
                .bind(lead)
                .fetch_all(pool)
                .await?
        }))
    }

    /// Queues `notice_for(token)` for each live token unused since `unused_since` (never used:
    /// created before), once per period of disuse, and marks it warned, in one transaction.
    /// Returns the tokens warned. What the warning says is the service's.
    pub async fn warn_inactive(
        &self,
        unused_since: UnixTime,
        now: UnixTime,
        notice_for: &(dyn Fn(&TokenRecord) -> Notice + Sync),
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let sql = format!(
            "{TOKEN_SELECT} WHERE {live} \
             AND COALESCE(t.last_used_at, t.created_at) < $2 \
             AND (t.inactivity_warned_at IS NULL OR t.inactivity_warned_at < COALESCE(t.last_used_at, t.created_at)) \
             ORDER BY t.id",
            live = live_sql("t", "$1")
        );
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let tokens = sqlx::query_as::<_, TokenRecord>(sqlx::AssertSqlSafe(sql))
                .bind(now)
                .bind(unused_since)
                .fetch_all(&mut *tx)
                .await?;
            for token in &tokens {
                let notice = notice_for(token);
                insert_outbox!(tx, now, token.account_id, &token.user_email, token.id, &notice, None::<&str>)?;
                sqlx::query("UPDATE tokens SET inactivity_warned_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(token.id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(tokens)
        })
    }
}
