//! Accounts: creation, lookup, listing and permission changes.

use super::{
    AccountChanges, AccountRecord, AccountSummary, BeginWrite, NewAccount, NewEvent, Store, StoreError, append_change,
    append_event, is_unique_violation, with_pool,
};
use crate::clock::UnixTime;
use crate::model::account::{removes_a_superuser, token_event_of_change};
use crate::model::token::live_sql;
use crate::model::{AccountId, TokenId};

const ACCOUNT_COLUMNS: &str =
    "id, email, name, superuser, token_manager, enabled, can_create_tokens, created_at, updated_at";

impl Store {
    /// Creates an account; its email must be new (case-insensitively).
    pub async fn insert_account(
        &self,
        new: &NewAccount,
        now: UnixTime,
        event: &NewEvent,
    ) -> Result<AccountRecord, StoreError> {
        let email_norm = new.email.to_lowercase();
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let inserted = sqlx::query_as::<_, AccountRecord>(
                "INSERT INTO accounts (email, email_norm, name, superuser, token_manager, enabled, can_create_tokens, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, TRUE, $6, $7, $7) \
                 RETURNING id, email, name, superuser, token_manager, enabled, can_create_tokens, created_at, updated_at",
            )
            .bind(&new.email)
            .bind(&email_norm)
            .bind(&new.name)
            .bind(new.superuser)
            .bind(new.token_manager)
            .bind(new.can_create_tokens)
            .bind(now)
            .fetch_one(&mut *tx)
            .await;
            let account = match inserted {
                Ok(account) => account,
                Err(e) if is_unique_violation(&e) => return Err(StoreError::DuplicateAccount(new.email.clone())),
                Err(e) => return Err(e.into()),
            };
            append_event!(tx, now, event, account.id, &account.email, None::<i64>)?;
            append_change!(tx, now, account.id, None)?;
            tx.commit().await?;
            Ok(account)
        })
    }

    /// Finds an account by email, case-insensitively.
    pub async fn account_by_email(&self, email: &str) -> Result<Option<AccountRecord>, StoreError> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE email_norm = $1");
        let norm = email.to_lowercase();
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, AccountRecord>(sqlx::AssertSqlSafe(sql)).bind(norm).fetch_optional(pool).await?
        }))
    }

    /// How many accounts exist: the quick start creates its demo account only in an empty database.
    pub async fn account_count(&self) -> Result<i64, StoreError> {
        Ok(with_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM accounts").fetch_one(pool).await?
        }))
    }

    /// Every account with its number of live tokens, by email.
    pub async fn list_accounts(&self, now: UnixTime) -> Result<Vec<AccountSummary>, StoreError> {
        let sql = "SELECT a.id, a.email, a.name, a.superuser, a.token_manager, a.enabled, a.can_create_tokens, \
                   a.created_at, a.updated_at, \
                   (SELECT COUNT(*) FROM tokens t WHERE t.account_id = a.id AND {live}) AS live_tokens \
                   FROM accounts a ORDER BY a.email_norm";
        let sql = sqlx::AssertSqlSafe(sql.replace("{live}", &live_sql("t", "$1")));
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, AccountSummary>(sql).bind(now).fetch_all(pool).await?
        }))
    }

    /// Applies `changes` to the account; returns the account before and after, or `None`
    /// when there is no such account. Nothing is written (and no event appended) when the
    /// changes change nothing.
    pub async fn update_account(
        &self,
        account_id: AccountId,
        changes: &AccountChanges,
        now: UnixTime,
        event: &NewEvent,
    ) -> Result<Option<(AccountRecord, AccountRecord)>, StoreError> {
        let select = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1");
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let Some(before) = sqlx::query_as::<_, AccountRecord>(sqlx::AssertSqlSafe(select))
                .bind(account_id)
                .fetch_optional(&mut *tx)
                .await?
            else {
                return Ok(None);
            };
            let after = AccountRecord {
                enabled: changes.enabled.unwrap_or(before.enabled),
                superuser: changes.superuser.unwrap_or(before.superuser),
                token_manager: changes.token_manager.unwrap_or(before.token_manager),
                can_create_tokens: changes.can_create_tokens.unwrap_or(before.can_create_tokens),
                updated_at: now,
                ..before.clone()
            };
            if (AccountRecord { updated_at: before.updated_at, ..after.clone() }) == before {
                return Ok(Some((before.clone(), before)));
            }
            // Checked inside the write transaction (see the rule's doc).
            if removes_a_superuser(&before, &after) {
                let others: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE superuser AND enabled AND id <> $1")
                        .bind(account_id)
                        .fetch_one(&mut *tx)
                        .await?;
                if others == 0 {
                    return Err(StoreError::LastSuperuser(before.email));
                }
            }
            sqlx::query(
                "UPDATE accounts SET enabled = $1, superuser = $2, token_manager = $3, can_create_tokens = $4, \
                 updated_at = $5 WHERE id = $6",
            )
            .bind(after.enabled)
            .bind(after.superuser)
            .bind(after.token_manager)
            .bind(after.can_create_tokens)
            .bind(now)
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
            append_event!(tx, now, event, account_id, &after.email, None::<i64>)?;
            // Each live token of the account is blocked (or unblocked) by this change: say so
            // on each, so a token's own history shows why it stopped (or resumed) working.
            if let Some(kind) = token_event_of_change(&before, &after) {
                let token_event = event.with_kind(kind);
                let live: Vec<TokenId> = sqlx::query_scalar(
                    sqlx::AssertSqlSafe(format!(
                        "SELECT id FROM tokens WHERE account_id = $1 AND {} ORDER BY id",
                        live_sql("", "$2")
                    )),
                )
                .bind(account_id)
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                for token_id in live {
                    append_event!(tx, now, token_event, account_id, &after.email, Some(token_id))?;
                }
            }
            append_change!(tx, now, account_id, None)?;
            tx.commit().await?;
            Ok(Some((before, after)))
        })
    }
}
