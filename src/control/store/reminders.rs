//! Periodic lifecycle work's queries: expiry reminders and inactivity warnings.

use super::tokens::TOKEN_SELECT;
use super::{BeginWrite, Store, StoreError, TokenRecord, insert_outbox, with_pool};
use crate::clock::{UnixTime, to_rfc3339};
use crate::model::token::live_sql;
use crate::model::{Notice, NoticeDetail};

/// The notice kind of a warning that the inactivity policy will revoke a token.
pub(super) const INACTIVITY_WARNING: &str = "token.inactivity_warning";

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

    /// Warns the owners of live tokens unused since `unused_since` (never used: created
    /// before) that they will be revoked at `revoke_after` past their last use; each token
    /// once per period of disuse. Returns the tokens warned.
    pub async fn warn_inactive(
        &self,
        unused_since: UnixTime,
        revoke_after: i64,
        now: UnixTime,
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
                let last = token.last_used_at.unwrap_or(token.created_at);
                let detail = NoticeDetail {
                    name: Some(token.name.clone()),
                    prefix: Some(token.prefix.clone()),
                    unused_since: Some(to_rfc3339(last)),
                    revoked_at: Some(to_rfc3339((last + revoke_after).max(now))),
                    ..NoticeDetail::default()
                };
                let notice = Notice::from_gateway(INACTIVITY_WARNING, now, detail);
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
