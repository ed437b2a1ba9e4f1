//! The audit log: events appended with each mutation, listed newest first.

use super::{EventFilter, EventRecord, Store, StoreError, with_pool};

impl Store {
    /// The events `filter` selects, newest first, at most `filter.limit`.
    pub async fn list_events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        // NULL parameters switch a condition off, so one statement serves every filter.
        let sql = "SELECT id, at, kind, actor, account, token_id, ip, user_agent, detail FROM events \
                   WHERE ($1 IS NULL OR account_id = $1) AND ($2 IS NULL OR token_id = $2) \
                   AND ($3 IS NULL OR kind = $3 OR kind LIKE $4) AND ($5 IS NULL OR at >= $5) \
                   AND ($6 IS NULL OR at < $6) ORDER BY id DESC LIMIT $7";
        // `token.` selects every token event; other kinds match exactly.
        let prefix = filter.kind.as_deref().filter(|k| k.ends_with('.')).map(|k| format!("{}%", k.replace('%', "")));
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, EventRecord>(sql)
                .bind(filter.account_id)
                .bind(filter.token_id)
                .bind(&filter.kind)
                .bind(prefix.as_deref().unwrap_or(""))
                .bind(filter.since)
                .bind(filter.until)
                .bind(filter.limit)
                .fetch_all(pool)
                .await?
        }))
    }
}
