//! What the data path learned, written in one transaction per flush: last uses, refused uses
//! of dead tokens (with at most one audit event per token per minute, and at most one notice to
//! the owner per token per hour), rotation hand-overs.

use serde_json::json;

use crate::model::event::REFUSED_USE_EVENT_EVERY;
use crate::model::{AccountId, TokenId};

use super::{
    ActivityBatch, BeginWrite, EventKind, Store, StoreError, UsageCount, append_change, insert_event, with_pool,
};

/// Last uses written by one statement (its rows travel as one JSON array).
const USES_PER_STATEMENT: usize = 50_000;

/// Sets each listed token's last use, unless the database already has a later one (written by
/// another gateway). The rows arrive as a JSON array of `{id, at, method, path, ip}`: one bind
/// whatever the count, and the same bind on both backends.
const USES_SQLITE: &str = "UPDATE tokens SET last_used_at = u.at, last_used_method = u.method, \
     last_used_path = u.path, last_used_ip = u.ip \
     FROM (SELECT value ->> 'id' AS id, value ->> 'at' AS at, value ->> 'method' AS method, \
     value ->> 'path' AS path, value ->> 'ip' AS ip FROM json_each($1)) AS u \
     WHERE tokens.id = u.id AND (tokens.last_used_at IS NULL OR tokens.last_used_at <= u.at)";

/// [`USES_SQLITE`] for PostgreSQL, whose rows arrive as five arrays (binary, no JSON to
/// write or parse: `usage_flush` medians of 963 ms with JSON, 822 and 756 ms with arrays, at
/// 100 000 tokens).
const USES_POSTGRES: &str = "UPDATE tokens AS t SET last_used_at = u.at, last_used_method = u.method, \
     last_used_path = u.path, last_used_ip = u.ip \
     FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[]) AS u(id, at, method, path, ip) \
     WHERE t.id = u.id AND (t.last_used_at IS NULL OR t.last_used_at <= u.at)";

/// Adds each count to its row of `token_usage`, creating the row if need be: gateways sharing
/// the database add up. The counts arrive as a JSON array of `{t, d, r, o, n}`. (`WHERE true`:
/// SQLite needs it to tell the upsert's `ON` from a join's.)
const COUNTS_SQLITE: &str = "INSERT INTO token_usage (token_id, day, route, outcome, requests) \
     SELECT value ->> 't', value ->> 'd', value ->> 'r', value ->> 'o', value ->> 'n' FROM json_each($1) WHERE true \
     ON CONFLICT (token_id, day, route, outcome) DO UPDATE SET requests = token_usage.requests + excluded.requests";

/// [`COUNTS_SQLITE`] for PostgreSQL, the counts as five arrays.
const COUNTS_POSTGRES: &str = "INSERT INTO token_usage (token_id, day, route, outcome, requests) \
     SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[]) \
     ON CONFLICT (token_id, day, route, outcome) DO UPDATE SET requests = token_usage.requests + excluded.requests";

/// One count as [`COUNTS_SQLITE`] reads it.
#[derive(serde::Serialize)]
struct CountRow<'a> {
    t: i64,
    d: i64,
    r: &'a str,
    o: &'static str,
    n: i64,
}

/// How each backend writes a chunk of last uses, or of usage counts, in one statement.
trait WriteActivity {
    fn write_uses(&mut self, uses: &[super::UsageRecord]) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    fn write_counts(&mut self, counts: &[UsageCount]) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

impl WriteActivity for sqlx::SqliteConnection {
    async fn write_uses(&mut self, uses: &[super::UsageRecord]) -> Result<(), sqlx::Error> {
        sqlx::query(USES_SQLITE).bind(uses_json(uses)).execute(self).await?;
        Ok(())
    }

    async fn write_counts(&mut self, counts: &[UsageCount]) -> Result<(), sqlx::Error> {
        let rows: Vec<CountRow<'_>> = counts
            .iter()
            .map(|c| CountRow { t: c.token_id, d: c.day, r: &c.route, o: c.outcome.as_str(), n: c.requests })
            .collect();
        let json = serde_json::to_string(&rows).unwrap_or_else(|_| "[]".to_owned());
        sqlx::query(COUNTS_SQLITE).bind(json).execute(self).await?;
        Ok(())
    }
}

impl WriteActivity for sqlx::PgConnection {
    async fn write_counts(&mut self, counts: &[UsageCount]) -> Result<(), sqlx::Error> {
        let tokens: Vec<i64> = counts.iter().map(|c| c.token_id).collect();
        let days: Vec<i64> = counts.iter().map(|c| c.day).collect();
        let routes: Vec<&str> = counts.iter().map(|c| &*c.route).collect();
        let outcomes: Vec<&str> = counts.iter().map(|c| c.outcome.as_str()).collect();
        let requests: Vec<i64> = counts.iter().map(|c| c.requests).collect();
        sqlx::query(COUNTS_POSTGRES)
            .bind(tokens)
            .bind(days)
            .bind(routes)
            .bind(outcomes)
            .bind(requests)
            .execute(self)
            .await?;
        Ok(())
    }

    async fn write_uses(&mut self, uses: &[super::UsageRecord]) -> Result<(), sqlx::Error> {
        let ids: Vec<i64> = uses.iter().map(|u| u.token_id).collect();
        let ats: Vec<i64> = uses.iter().map(|u| u.at).collect();
        let methods: Vec<&str> = uses.iter().map(|u| u.method.as_str()).collect();
        let paths: Vec<&str> = uses.iter().map(|u| u.path.as_str()).collect();
        let ips: Vec<&str> = uses.iter().map(|u| u.ip.as_str()).collect();
        sqlx::query(USES_POSTGRES).bind(ids).bind(ats).bind(methods).bind(paths).bind(ips).execute(self).await?;
        Ok(())
    }
}

/// One use as the uses statements read it.
#[derive(serde::Serialize)]
struct UseRow<'a> {
    id: i64,
    at: i64,
    method: &'a str,
    path: &'a str,
    ip: &'a str,
}

/// The JSON array the uses statements read, serialised straight from the records.
fn uses_json(uses: &[super::UsageRecord]) -> String {
    let rows: Vec<UseRow<'_>> =
        uses.iter().map(|u| UseRow { id: u.token_id, at: u.at, method: &u.method, path: &u.path, ip: &u.ip }).collect();
    serde_json::to_string(&rows).unwrap_or_else(|_| "[]".to_owned())
}

impl Store {
    /// Writes a batch in one transaction. A last use older than what the database already has
    /// (written by another gateway) does not overwrite it; refused uses add up.
    pub async fn record_activity(&self, batch: &ActivityBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            // One statement per chunk of uses, not one per token: a flush of 100 000 tokens
            // made 100 000 round trips (7 s on SQLite, 13 s on PostgreSQL, measured).
            for chunk in batch.uses.chunks(USES_PER_STATEMENT) {
                tx.write_uses(chunk).await?;
            }
            for chunk in batch.counts.chunks(USES_PER_STATEMENT) {
                tx.write_counts(chunk).await?;
            }
            for refusal in &batch.refusals {
                // Every right-hand side reads the row as it was, so the CASEs see the old time.
                sqlx::query(
                    "UPDATE tokens SET refused_count = refused_count + $1, \
                     refused_last_method = CASE WHEN refused_last_at IS NULL OR refused_last_at <= $2 THEN $3 ELSE refused_last_method END, \
                     refused_last_path = CASE WHEN refused_last_at IS NULL OR refused_last_at <= $2 THEN $4 ELSE refused_last_path END, \
                     refused_last_ip = CASE WHEN refused_last_at IS NULL OR refused_last_at <= $2 THEN $5 ELSE refused_last_ip END, \
                     refused_last_at = CASE WHEN refused_last_at IS NULL OR refused_last_at <= $2 THEN $2 ELSE refused_last_at END \
                     WHERE id = $6",
                )
                .bind(refusal.count)
                .bind(refusal.at)
                .bind(&refusal.method)
                .bind(&refusal.path)
                .bind(&refusal.ip)
                .bind(refusal.token_id)
                .execute(&mut *tx)
                .await?;
                let detail = json!({
                    "reason": refusal.reason,
                    "method": refusal.method,
                    "path": refusal.path,
                    "attempts": refusal.count,
                });
                // At most one event per token a minute: the audit log shows who still holds a
                // dead token, not every attempt.
                let owner: Option<(i64, String)> = sqlx::query_as(
                    "SELECT t.account_id, a.email FROM tokens t JOIN accounts a ON a.id = t.account_id \
                     WHERE t.id = $1 AND NOT EXISTS (SELECT 1 FROM events e WHERE e.token_id = $1 \
                     AND e.kind = $2 AND e.at > $3)",
                )
                .bind(refusal.token_id)
                .bind(EventKind::TokenRefusedUse.as_str())
                .bind(refusal.at - REFUSED_USE_EVENT_EVERY)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some((account_id, email)) = owner {
                    insert_event!(
                        tx, refusal.at, EventKind::TokenRefusedUse, "gateway", account_id, &email,
                        Some(refusal.token_id), &refusal.ip, &refusal.user_agent, detail.to_string()
                    )?;
                }
                // The owner hears of it too, once an hour at most (see store/refusal_notice.rs).
                super::refusal_notice::queue_refused_use_notice!(tx, refusal)?;
            }
            for handover in &batch.handovers {
                let revoked = sqlx::query(
                    "UPDATE tokens SET revoked_at = $1, revoked_by = 'gateway', revoke_reason = 'rotation' \
                     WHERE id = $2 AND (revoked_at IS NULL OR revoked_at > $1)",
                )
                .bind(handover.at)
                .bind(handover.predecessor_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                sqlx::query("UPDATE tokens SET handover_from = NULL WHERE id = $1 AND handover_from = $2")
                    .bind(handover.successor_id)
                    .bind(handover.predecessor_id)
                    .execute(&mut *tx)
                    .await?;
                let owner: Option<(AccountId, String)> = sqlx::query_as(
                    "SELECT a.id, a.email FROM tokens t JOIN accounts a ON a.id = t.account_id WHERE t.id = $1",
                )
                .bind(handover.predecessor_id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((account_id, email)) = owner else { continue };
                if revoked > 0 {
                    let detail = json!({"reason": "rotation", "successor_first_used": true, "rotated_to": handover.successor_id});
                    insert_event!(
                        tx, handover.at, EventKind::TokenRevoked, "gateway", account_id, &email,
                        Some(handover.predecessor_id), None::<&str>, None::<&str>, detail.to_string()
                    )?;
                }
                append_change!(tx, handover.at, account_id, Some(TokenId(handover.predecessor_id)))?;
                append_change!(tx, handover.at, account_id, Some(TokenId(handover.successor_id)))?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
