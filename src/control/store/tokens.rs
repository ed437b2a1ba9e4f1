//! Tokens: minting, lookup, the filtered listing, revocation, and the rows the index loads.

use super::{
    BeginWrite, IndexTokenRow, NewEvent, NewToken, RevokeReason, Store, StoreError, TokenRecord, append_change,
    append_event, is_unique_violation, with_pool,
};
use crate::clock::UnixTime;
use crate::model::token::live_sql;
use crate::model::{SortField, StatusFilter, TokenFilter};

/// Every token column, joined with the owner's email and the flags that make it blocked.
pub(super) const TOKEN_SELECT: &str = "SELECT t.id, t.account_id, a.email AS user_email, t.name, t.description, t.prefix, \
     t.scopes, t.rate_limit, t.created_at, t.created_by, t.expires_at, t.revoked_at, t.revoked_by, \
     t.revoke_reason, t.rotated_from, t.rotated_to, t.last_used_at, t.last_used_method, t.last_used_path, \
     t.last_used_ip, t.refused_count, t.refused_last_at, t.refused_last_ip, t.refused_last_method, \
     t.refused_last_path, a.enabled AS account_enabled, a.can_create_tokens AS account_can_create_tokens \
     FROM tokens t JOIN accounts a ON a.id = t.account_id";

const INDEX_SELECT: &str =
    "SELECT id, account_id, name, digest, scopes, rate_limit, expires_at, revoked_at, handover_from FROM tokens";

/// A value bound into dynamically assembled SQL.
enum Bind {
    Int(i64),
    Text(String),
}

/// Collects the WHERE clauses and their binds; each clause uses `$N` placeholders it takes from here.
struct Conditions {
    clauses: Vec<String>,
    binds: Vec<Bind>,
}

impl Conditions {
    fn placeholder(&mut self, bind: Bind) -> String {
        self.binds.push(bind);
        format!("${}", self.binds.len())
    }

    fn push(&mut self, clause: String) {
        self.clauses.push(clause);
    }

    fn compare(&mut self, column: &str, op: &str, value: Option<UnixTime>) {
        if let Some(value) = value {
            let p = self.placeholder(Bind::Int(value));
            self.push(format!("{column} {op} {p}"));
        }
    }
}

fn like_pattern(text: &str) -> String {
    let escaped = text.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

/// Builds the listing's SQL. Every user-supplied value is bound, never spliced.
fn listing_sql(filter: &TokenFilter, now: UnixTime) -> (String, Vec<Bind>) {
    let mut c = Conditions { clauses: Vec::new(), binds: Vec::new() };
    let now_p = c.placeholder(Bind::Int(now));
    // A revocation time in the future is a scheduled one (a rotation's grace): not yet revoked.
    let revoked = format!("(t.revoked_at IS NOT NULL AND t.revoked_at <= {now_p})");
    let not_revoked = format!("(t.revoked_at IS NULL OR t.revoked_at > {now_p})");
    let expired = format!("({not_revoked} AND t.expires_at IS NOT NULL AND t.expires_at <= {now_p})");
    let live = format!("({})", live_sql("t", &now_p));
    match filter.status {
        StatusFilter::All => {}
        StatusFilter::Live => c.push(live),
        StatusFilter::Revoked => c.push(revoked),
        StatusFilter::Expired => c.push(expired),
        StatusFilter::Active => c.push(format!("{live} AND a.enabled AND a.can_create_tokens")),
        StatusFilter::Blocked => c.push(format!("{live} AND NOT (a.enabled AND a.can_create_tokens)")),
    }
    if !filter.account_ids.is_empty() {
        let ids: Vec<String> = filter.account_ids.iter().map(|id| c.placeholder(Bind::Int(*id))).collect();
        c.push(format!("t.account_id IN ({})", ids.join(", ")));
    }
    if let Some(search) = filter.search.as_deref().filter(|s| !s.is_empty()) {
        let p = c.placeholder(Bind::Text(like_pattern(search)));
        c.push(format!(
            "(LOWER(t.name) LIKE {p} ESCAPE '\\' OR LOWER(COALESCE(t.description, '')) LIKE {p} ESCAPE '\\')"
        ));
    }
    c.compare("t.created_at", ">=", filter.created_after);
    c.compare("t.created_at", "<", filter.created_before);
    c.compare("t.last_used_at", ">=", filter.used_after);
    c.compare("t.last_used_at", "<", filter.used_before);
    c.compare("t.expires_at", ">=", filter.expires_after);
    c.compare("t.expires_at", "<", filter.expires_before);
    if filter.never_used {
        c.push("t.last_used_at IS NULL".to_owned());
    }
    if let Some(since) = filter.unused_since {
        let p = c.placeholder(Bind::Int(since));
        c.push(format!(
            "((t.last_used_at IS NOT NULL AND t.last_used_at < {p}) OR (t.last_used_at IS NULL AND t.created_at < {p}))"
        ));
    }
    let column = match filter.sort.field {
        SortField::Created => "t.created_at",
        SortField::Name => "LOWER(t.name)",
        SortField::User => "a.email_norm",
        SortField::LastUsed => "t.last_used_at",
        SortField::Expires => "t.expires_at",
    };
    let direction = if filter.sort.descending { "DESC" } else { "ASC" };
    let mut sql = TOKEN_SELECT.to_owned();
    if !c.clauses.is_empty() {
        sql += " WHERE ";
        sql += &c.clauses.join(" AND ");
    }
    // `(x IS NULL)` first: absent values last on both backends, whose NULL orders differ.
    sql += &format!(" ORDER BY ({column} IS NULL), {column} {direction}, t.id {direction}");
    (sql, c.binds)
}

/// Inserts a token row inside the transaction `$tx`; a name held by another live token of
/// the account is a [`StoreError::DuplicateTokenName`].
macro_rules! insert_token_row {
    ($tx:expr, $new:expr, $now:expr) => {{
        let new: &NewToken = $new;
        let inserted = sqlx::query_scalar::<_, i64>(
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
        id: i64,
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

    pub async fn token_by_id(&self, id: i64) -> Result<Option<TokenRecord>, StoreError> {
        let sql = format!("{TOKEN_SELECT} WHERE t.id = $1");
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, TokenRecord>(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?
        }))
    }

    /// The filtered, sorted listing.
    pub async fn list_tokens(&self, filter: &TokenFilter, now: UnixTime) -> Result<Vec<TokenRecord>, StoreError> {
        let (sql, binds) = listing_sql(filter, now);
        Ok(with_pool!(self, pool => {
            let mut query = sqlx::query_as::<_, TokenRecord>(sqlx::AssertSqlSafe(sql));
            for bind in binds {
                query = match bind {
                    Bind::Int(value) => query.bind(value),
                    Bind::Text(value) => query.bind(value),
                };
            }
            query.fetch_all(pool).await?
        }))
    }

    /// Revokes one token. Returns the token after the call and whether this call revoked it
    /// (false: it was revoked already), or `None` when there is no such token.
    pub async fn revoke_token(
        &self,
        id: i64,
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
        id: i64,
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

    /// Revokes every live token of the account, one audit event each; returns their ids.
    pub async fn revoke_all_tokens(
        &self,
        account_id: i64,
        account_email: &str,
        by: &str,
        now: UnixTime,
        event: &NewEvent,
    ) -> Result<Vec<i64>, StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let revoked: Vec<(i64, String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
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
            // Each token's event names it, as a single revocation's does (its notification too).
            for (id, name, prefix) in &revoked {
                let mut token_event = event.clone();
                if let Some(detail) = token_event.detail.as_object_mut() {
                    detail.insert("name".into(), name.as_str().into());
                    detail.insert("prefix".into(), prefix.as_str().into());
                }
                append_event!(tx, now, token_event, account_id, account_email, Some(*id))?;
                append_change!(tx, now, account_id, Some(*id))?;
            }
            tx.commit().await?;
            Ok(revoked.into_iter().map(|(id, _, _)| id).collect())
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TokenSort;

    #[test]
    fn search_patterns_escape_wildcards() {
        assert_eq!(like_pattern("50%_Off\\"), "%50\\%\\_off\\\\%");
    }

    #[test]
    fn listing_binds_every_value() {
        let filter = TokenFilter {
            account_ids: vec![3, 4],
            search: Some("x'; DROP TABLE tokens; --".into()),
            unused_since: Some(10),
            ..TokenFilter::default()
        };
        let (sql, binds) = listing_sql(&filter, 100);
        assert!(!sql.contains("DROP"));
        assert_eq!(binds.len(), 5);
        assert!(sql.contains("t.account_id IN ($2, $3)"));
    }

    #[test]
    fn sort_and_status_parse() {
        assert_eq!("-last_used".parse::<TokenSort>(), Ok(TokenSort { field: SortField::LastUsed, descending: true }));
        assert!("colour".parse::<TokenSort>().is_err());
        assert_eq!("live".parse::<StatusFilter>(), Ok(StatusFilter::Live));
        assert!("dead".parse::<StatusFilter>().is_err());
    }
}
