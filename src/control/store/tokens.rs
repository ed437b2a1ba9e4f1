//! Tokens: minting, lookup, the filtered listing, revocation, and the rows the index loads.

use super::{
    BeginWrite, NewEvent, NewToken, RevokeReason, Store, StoreError, TokenRecord, append_change, append_event,
    is_unique_violation, with_pool,
};
use crate::clock::UnixTime;
use crate::model::token::live_sql;
use crate::model::{AccountId, TokenId};

/// Every token column, joined with the owner's email and the flags that make it blocked: the
/// columns of a [`TokenRecord`], for [`TOKEN_SELECT`] and the listing's own select.
macro_rules! token_columns {
    () => {
        "t.id, t.account_id, a.email AS user_email, t.name, t.description, t.prefix, \
     t.scopes, t.rate_limit, t.created_at, t.created_by, t.expires_at, t.revoked_at, t.revoked_by, \
     t.revoke_reason, t.rotated_from, t.rotated_to, t.last_used_at, t.last_used_method, t.last_used_path, \
     t.last_used_ip, t.refused_count, t.refused_last_at, t.refused_last_ip, t.refused_last_method, \
     t.refused_last_path, a.enabled AS account_enabled, a.can_create_tokens AS account_can_create_tokens"
    };
}
pub(super) use token_columns;

/// A [`TokenRecord`]'s select, without conditions.
pub(super) const TOKEN_SELECT: &str =
    concat!("SELECT ", token_columns!(), " FROM tokens t JOIN accounts a ON a.id = t.account_id");

/// Inserts a token row inside the transaction `$tx`; a name held by another live token of
/// the account is a [`StoreError::DuplicateTokenName`].
macro_rules! insert_token_row {
    ($tx:expr, $new:expr, $now:expr) => {{
        let new: &NewToken = $new;
        let inserted = sqlx::query_scalar::<_, TokenId>(
            "INSERT INTO tokens (account_id, name, live_name, description, digest, prefix, scopes, rate_limit, \
             created_at, created_by, expires_at, rotated_from, handover_from) \
             VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
        )
        .bind(new.account_id)
        .bind(&new.name)
        .bind(&new.description)
        .bind(new.digest.as_slice())
        .bind(&new.prefix)
        .bind(new.scopes.join(" "))
        .bind(&new.rate_limit)
        .bind($now)
        .bind(&new.created_by)
        .bind(new.expires_at)
        .bind(new.rotated_from)
        .bind(new.handover_from)
        .fetch_one(&mut *$tx)
        .await;
        match inserted {
            Ok(id) => Ok(id),
            Err(e) if is_unique_violation(&e) => Err(StoreError::DuplicateTokenName(new.name.clone())),
            Err(e) => Err(StoreError::from(e)),
        }
    }};
}

impl Store {
    /// Mints a token row. The name must not be held by another live token of the account;
    /// an expired token holding it gives it up.
    pub async fn insert_token(
        &self,
        new: &NewToken,
        now: UnixTime,
        event: &NewEvent,
    ) -> Result<TokenRecord, StoreError> {
        let select = format!("{TOKEN_SELECT} WHERE t.id = $1");
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "UPDATE tokens SET live_name = NULL WHERE account_id = $1 AND live_name = $2 \
                 AND expires_at IS NOT NULL AND expires_at <= $3",
            )
            .bind(new.account_id)
            .bind(&new.name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let id = insert_token_row!(tx, new, now)?;
            let token = sqlx::query_as::<_, TokenRecord>(sqlx::AssertSqlSafe(select))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            append_event!(tx, now, event, token.account_id, &token.user_email, Some(id))?;
            append_change!(tx, now, token.account_id, Some(id))?;
            tx.commit().await?;
            Ok(token)
        })
    }

    /// Rotates a live, not yet rotated token: it gives its name to `successor` (minted here)
    /// and is revoked at `predecessor_revoked_at` (now, or the end of its grace). Returns the
    /// predecessor and the successor, or `None` when the token is not live or already rotated.
    pub async fn rotate_token(
        &self,
        id: TokenId,
        successor: &NewToken,
        predecessor_revoked_at: UnixTime,
        now: UnixTime,
        rotated_event: &NewEvent,
        created_event: &NewEvent,
    ) -> Result<Option<(TokenRecord, TokenRecord)>, StoreError> {
        let select = format!("{TOKEN_SELECT} WHERE t.id = $1");
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let retired = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE tokens SET live_name = NULL, revoked_at = $1, revoked_by = $2, revoke_reason = 'rotation' \
                 WHERE id = $3 AND rotated_to IS NULL AND {}",
                live_sql("", "$4")
            )))
            .bind(predecessor_revoked_at)
            .bind(&successor.created_by)
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if retired == 0 {
                return Ok(None);
            }
            let successor_id = insert_token_row!(tx, successor, now)?;
            sqlx::query("UPDATE tokens SET rotated_to = $1 WHERE id = $2")
                .bind(successor_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let predecessor = sqlx::query_as::<_, TokenRecord>(sqlx::AssertSqlSafe(select.clone()))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            let minted = sqlx::query_as::<_, TokenRecord>(sqlx::AssertSqlSafe(select))
                .bind(successor_id)
                .fetch_one(&mut *tx)
                .await?;
            let (account_id, email) = (predecessor.account_id, predecessor.user_email.clone());
            append_event!(tx, now, rotated_event, account_id, &email, Some(id))?;
            append_event!(tx, now, created_event, account_id, &email, Some(successor_id))?;
            append_change!(tx, now, account_id, Some(id))?;
            append_change!(tx, now, account_id, Some(successor_id))?;
            tx.commit().await?;
            Ok(Some((predecessor, minted)))
        })
    }

    /// One token, whoever owns it; `None` when no token has this id.
    pub async fn token_by_id(&self, id: TokenId) -> Result<Option<TokenRecord>, StoreError> {
        let sql = format!("{TOKEN_SELECT} WHERE t.id = $1");
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, TokenRecord>(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?
        }))
    }

    /// Revokes one token. Returns the token after the call and whether this call revoked it
    /// (false: it was revoked already), or `None` when there is no such token.
    pub async fn revoke_token(
        &self,
        id: TokenId,
        by: &str,
        reason: RevokeReason,
        now: UnixTime,
        event: &NewEvent,
    ) -> Result<Option<(TokenRecord, bool)>, StoreError> {
        let select = format!("{TOKEN_SELECT} WHERE t.id = $1");
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let changed = sqlx::query(
                "UPDATE tokens SET revoked_at = $1, revoked_by = $2, revoke_reason = $3, live_name = NULL \
                 WHERE id = $4 AND (revoked_at IS NULL OR revoked_at > $1)",
            )
            .bind(now)
            .bind(by)
            .bind(reason.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;
            let Some(token) = sqlx::query_as::<_, TokenRecord>(sqlx::AssertSqlSafe(select))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
            else {
                return Ok(None);
            };
            if changed {
                append_event!(tx, now, event, token.account_id, &token.user_email, Some(id))?;
                append_change!(tx, now, token.account_id, Some(id))?;
            }
            tx.commit().await?;
            Ok(Some((token, changed)))
        })
    }

    /// Sets (or clears) a token's own rate limit; `None` when there is no such token.
    pub async fn set_rate_limit(
        &self,
        id: TokenId,
        rate_limit: Option<&str>,
        now: UnixTime,
        event: &NewEvent,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let select = format!("{TOKEN_SELECT} WHERE t.id = $1");
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let changed = sqlx::query("UPDATE tokens SET rate_limit = $1 WHERE id = $2")
                .bind(rate_limit)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if changed == 0 {
                return Ok(None);
            }
            let token = sqlx::query_as::<_, TokenRecord>(sqlx::AssertSqlSafe(select)).bind(id).fetch_one(&mut *tx).await?;
            append_event!(tx, now, event, token.account_id, &token.user_email, Some(id))?;
            append_change!(tx, now, token.account_id, Some(id))?;
            tx.commit().await?;
            Ok(Some(token))
        })
    }

    /// Revokes every live token of the account, with the audit event `event_for(name, prefix)`
    /// builds for each (the service decides what it says); returns their ids.
    pub async fn revoke_all_tokens(
        &self,
        account_id: AccountId,
        account_email: &str,
        by: &str,
        now: UnixTime,
        event_for: &(dyn Fn(&str, &str) -> NewEvent + Sync),
    ) -> Result<Vec<TokenId>, StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let revoked: Vec<(TokenId, String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE tokens SET revoked_at = $1, revoked_by = $2, revoke_reason = $3, live_name = NULL \
                 WHERE account_id = $4 AND {} RETURNING id, name, prefix",
                live_sql("", "$1")
            )))
            .bind(now)
            .bind(by)
            .bind(RevokeReason::RevokeAll.as_str())
            .bind(account_id)
            .fetch_all(&mut *tx)
            .await?;
            for (id, name, prefix) in &revoked {
                let token_event = event_for(name, prefix);
                append_event!(tx, now, token_event, account_id, account_email, Some(*id))?;
                append_change!(tx, now, account_id, Some(*id))?;
            }
            tx.commit().await?;
            Ok(revoked.into_iter().map(|(id, _, _)| id).collect())
        })
    }
}
