//! Periodic lifecycle work's queries: expiry reminders and inactivity warnings.

use serde_json::json;

use super::tokens::TOKEN_SELECT;
use super::{BeginWrite, Store, StoreError, TokenRecord, with_pool};
use crate::clock::{UnixTime, to_rfc3339};

impl Store {
    /// Live tokens that expire within `lead` of `now` and lived longer than `lead` (a token
    /// minted for a day is not "expiring soon" from its first minute).
    pub async fn tokens_expiring_within(&self, lead: i64, now: UnixTime) -> Result<Vec<TokenRecord>, StoreError> {
        let sql = format!(
            "{TOKEN_SELECT} WHERE (t.revoked_at IS NULL OR t.revoked_at > $1) AND t.expires_at > $1 \
             AND t.expires_at <= $2 AND t.expires_at - t.created_at > $3 ORDER BY t.id"
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
            "{TOKEN_SELECT} WHERE (t.revoked_at IS NULL OR t.revoked_at > $1) \
             AND (t.expires_at IS NULL OR t.expires_at > $1) \
             AND COALESCE(t.last_used_at, t.created_at) < $2 \
             AND (t.inactivity_warned_at IS NULL OR t.inactivity_warned_at < COALESCE(t.last_used_at, t.created_at)) \
             ORDER BY t.id"
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
                let payload = json!({
                    "kind": "token.inactivity_warning",
                    "at": now,
                    "actor": "gateway",
                    "detail": {
                        "name": token.name,
                        "prefix": token.prefix,
                        "unused_since": to_rfc3339(last),
                        "revoked_at": to_rfc3339((last + revoke_after).max(now)),
                    },
                });
                sqlx::query(
                    "INSERT INTO outbox (created_at, kind, account_id, recipient, token_id, payload, next_attempt_at) \
                     VALUES ($1, 'token.inactivity_warning', $2, $3, $4, $5, $1)",
                )
                .bind(now)
                .bind(token.account_id)
                .bind(&token.user_email)
                .bind(token.id)
                .bind(payload.to_string())
                .execute(&mut *tx)
                .await?;
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
