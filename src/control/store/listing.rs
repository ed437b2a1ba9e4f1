//! The token manager's listing: its SQL assembled from the filters, every user-supplied value
//! bound (never spliced), and run.

use super::tokens::token_columns;
use super::{Store, StoreError, TokenRecord, with_pool};
use crate::clock::{UnixTime, utc_day};
use crate::model::token::live_sql;
use crate::model::{SortField, StatusFilter, TokenFilter};

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

/// The days `requests_30d` counts, today (UTC) included.
const REQUESTS_DAYS: i64 = 30;

/// A listed token's requests of the last [`REQUESTS_DAYS`] days.
const REQUESTS_30D: &str = "COALESCE(u.requests, 0)";

/// Builds the listing's SQL. Every user-supplied value is bound, never spliced.
fn listing_sql(filter: &TokenFilter, now: UnixTime) -> (String, Vec<Bind>) {
    let mut c = Conditions { clauses: Vec::new(), binds: Vec::new() };
    let now_p = c.placeholder(Bind::Int(now));
    let first_day_p = c.placeholder(Bind::Int(utc_day(now) - (REQUESTS_DAYS - 1)));
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
        let ids: Vec<String> = filter.account_ids.iter().map(|id| c.placeholder(Bind::Int(id.0))).collect();
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
    if filter.no_expiry {
        c.push("t.expires_at IS NULL".to_owned());
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
        SortField::Requests30d => REQUESTS_30D,
    };
    let direction = if filter.sort.descending { "DESC" } else { "ASC" };
    // Each token's requests of the last 30 UTC days (today included), summed in one pass over
    // those days' rows of `token_usage` (CAST: PostgreSQL's SUM of BIGINT is NUMERIC).
    let mut sql = format!(
        "SELECT {}, {REQUESTS_30D} AS requests_30d FROM tokens t JOIN accounts a ON a.id = t.account_id \
         LEFT JOIN (SELECT token_id, CAST(SUM(requests) AS BIGINT) AS requests FROM token_usage \
         WHERE day >= {first_day_p} GROUP BY token_id) u ON u.token_id = t.id",
        token_columns!()
    );
    if !c.clauses.is_empty() {
        sql += " WHERE ";
        sql += &c.clauses.join(" AND ");
    }
    // `(x IS NULL)` first: absent values last on both backends, whose NULL orders differ.
    sql += &format!(" ORDER BY ({column} IS NULL), {column} {direction}, t.id {direction}");
    (sql, c.binds)
}

impl Store {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AccountId;

    #[test]
    fn search_patterns_escape_wildcards() {
        assert_eq!(like_pattern("50%_Off\\"), "%50\\%\\_off\\\\%");
    }

    #[test]
    fn listing_binds_every_value() {
        let filter = TokenFilter {
            account_ids: vec![AccountId(3), AccountId(4)],
            search: Some("x'; DROP TABLE tokens; --".into()),
            unused_since: Some(10),
            ..TokenFilter::default()
        };
        let (sql, binds) = listing_sql(&filter, 100);
        assert!(!sql.contains("DROP"));
        assert_eq!(binds.len(), 6);
        assert!(sql.contains("t.account_id IN ($3, $4)"));
    }
}
