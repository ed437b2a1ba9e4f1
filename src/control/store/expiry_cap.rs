//! `token cap-expiry`'s queries: the live tokens that outlive `tokens.max_lifetime` (no expiry,
//! or one further from their creation than the maximum), and shortening their expiries in one
//! transaction with an audit event, a notice and a change-log row each.

use super::tokens::TOKEN_SELECT;
use super::{BeginWrite, NewEvent, Store, StoreError, TokenRecord, append_change, append_event, with_pool};
use crate::clock::UnixTime;
use crate::model::token::live_sql;

/// A token whose expiry `token cap-expiry` shortens (or, in a dry run, would shorten).
#[derive(Debug, Clone)]
pub struct CappedExpiry {
    /// The token, with its new expiry once the change is made (its old one in a dry run).
    pub token: TokenRecord,
    /// Its expiry before: `None` for a token that never expired.
    pub old_expires_at: Option<UnixTime>,
    /// Its expiry after.
    pub new_expires_at: UnixTime,
}

/// Live tokens (at `$1`) without expiry or expiring more than `$2` seconds after their creation.
fn outliving_sql() -> String {
    format!(
        "{TOKEN_SELECT} WHERE {live} AND (t.expires_at IS NULL OR t.expires_at > t.created_at + $2) ORDER BY t.id",
        live = live_sql("t", "$1")
    )
}

impl Store {
    /// Live tokens that never expire or expire more than `max_lifetime` seconds after their
    /// creation, by id: what a dry run of `token cap-expiry` looks at.
    pub async fn tokens_outliving(&self, max_lifetime: i64, now: UnixTime) -> Result<Vec<TokenRecord>, StoreError> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, TokenRecord>(sqlx::AssertSqlSafe(outliving_sql()))
                .bind(now)
                .bind(max_lifetime)
                .fetch_all(pool)
                .await?
        }))
    }

    /// Gives each of [`Self::tokens_outliving`]'s tokens the expiry `new_expiry` decides (`None`:
    /// leave it), with the audit event `event_for` builds (notified when its kind is) and a
    /// change-log row, in one transaction: the selection and the change see the same rows.
    /// Returns the tokens changed, as they now are.
    pub async fn cap_expiries(
        &self,
        max_lifetime: i64,
        now: UnixTime,
        new_expiry: &(dyn Fn(&TokenRecord) -> Option<UnixTime> + Sync),
        event_for: &(dyn Fn(&TokenRecord, UnixTime) -> NewEvent + Sync),
    ) -> Result<Vec<CappedExpiry>, StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let candidates = sqlx::query_as::<_, TokenRecord>(sqlx::AssertSqlSafe(outliving_sql()))
                .bind(now)
                .bind(max_lifetime)
                .fetch_all(&mut *tx)
                .await?;
            let mut capped = Vec::new();
            for mut token in candidates {
                let Some(new_expires_at) = new_expiry(&token) else { continue };
                sqlx::query("UPDATE tokens SET expires_at = $1 WHERE id = $2")
                    .bind(new_expires_at)
                    .bind(token.id)
                    .execute(&mut *tx)
                    .await?;
                let event = event_for(&token, new_expires_at);
                append_event!(tx, now, event, token.account_id, &token.user_email, Some(token.id))?;
                append_change!(tx, now, token.account_id, Some(token.id))?;
                let old_expires_at = token.expires_at.replace(new_expires_at);
                capped.push(CappedExpiry { token, old_expires_at, new_expires_at });
            }
            tx.commit().await?;
            Ok(capped)
        })
    }
}
