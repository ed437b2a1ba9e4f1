//! Copying a whole database into an empty one (`tokengate db copy`), for moving from SQLite to
//! PostgreSQL when one machine is outgrown (or back). Every row keeps its id, so token ids in
//! scripts, audit references and rotation links stay valid, and every secret keeps working.

use super::{BeginWrite, Store, StoreError, with_pool};
use crate::clock::UnixTime;

/// Rows read and written per round trip.
const BATCH: i64 = 1000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableCounts {
    pub accounts: i64,
    pub tokens: i64,
    pub events: i64,
    pub changes: i64,
    pub outbox: i64,
    pub outbox_deliveries: i64,
}

#[derive(sqlx::FromRow)]
struct AccountRow {
    id: i64,
    email: String,
    email_norm: String,
    name: Option<String>,
    superuser: bool,
    token_manager: bool,
    enabled: bool,
    can_create_tokens: bool,
    created_at: UnixTime,
    updated_at: UnixTime,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: i64,
    account_id: i64,
    name: String,
    live_name: Option<String>,
    description: Option<String>,
    digest: Vec<u8>,
    prefix: String,
    scopes: String,
    rate_limit: Option<String>,
    created_at: UnixTime,
    created_by: String,
    expires_at: Option<UnixTime>,
    revoked_at: Option<UnixTime>,
    revoked_by: Option<String>,
    revoke_reason: Option<String>,
    rotated_from: Option<i64>,
    rotated_to: Option<i64>,
    last_used_at: Option<UnixTime>,
    last_used_method: Option<String>,
    last_used_path: Option<String>,
    last_used_ip: Option<String>,
    refused_count: i64,
    refused_last_at: Option<UnixTime>,
    refused_last_ip: Option<String>,
    refused_last_method: Option<String>,
    refused_last_path: Option<String>,
    handover_from: Option<i64>,
    inactivity_warned_at: Option<UnixTime>,
}

#[derive(sqlx::FromRow)]
struct OutboxRow {
    id: i64,
    created_at: UnixTime,
    kind: String,
    account_id: Option<i64>,
    recipient: String,
    token_id: Option<i64>,
    payload: String,
    dedupe_key: Option<String>,
    attempts: i64,
    next_attempt_at: UnixTime,
    claimed_until: Option<UnixTime>,
    sent_at: Option<UnixTime>,
    last_error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    outbox_id: i64,
    channel: String,
    attempts: i64,
    next_attempt_at: UnixTime,
    claimed_until: Option<UnixTime>,
    sent_at: Option<UnixTime>,
    last_error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: i64,
    at: UnixTime,
    kind: String,
    actor: String,
    account_id: Option<i64>,
    account: Option<String>,
    token_id: Option<i64>,
    ip: Option<String>,
    user_agent: Option<String>,
    detail: String,
}

#[derive(sqlx::FromRow)]
struct ChangeRow {
    seq: i64,
    at: UnixTime,
    at_ms: Option<i64>,
    account_id: Option<i64>,
    token_id: Option<i64>,
}

const ACCOUNTS: &str = "SELECT id, email, email_norm, name, superuser, token_manager, enabled, can_create_tokens, \
     created_at, updated_at FROM accounts WHERE id > $1 ORDER BY id LIMIT $2";
const TOKENS: &str = "SELECT id, account_id, name, live_name, description, digest, prefix, scopes, rate_limit, \
     created_at, created_by, expires_at, revoked_at, revoked_by, revoke_reason, rotated_from, rotated_to, last_used_at, \
     last_used_method, last_used_path, last_used_ip, refused_count, refused_last_at, refused_last_ip, \
     refused_last_method, refused_last_path, handover_from, inactivity_warned_at FROM tokens WHERE id > $1 \
     ORDER BY id LIMIT $2";
const OUTBOX: &str = "SELECT id, created_at, kind, account_id, recipient, token_id, payload, dedupe_key, attempts, \
     next_attempt_at, claimed_until, sent_at, last_error FROM outbox WHERE id > $1 ORDER BY id LIMIT $2";
/// The deliveries of the outbox rows with ids in `($1, $2]`: copied with their batch of rows, so
/// a channel that already delivered a message does not send it again from the new database.
const DELIVERIES: &str = "SELECT outbox_id, channel, attempts, next_attempt_at, claimed_until, sent_at, last_error \
     FROM outbox_deliveries WHERE outbox_id > $1 AND outbox_id <= $2 ORDER BY outbox_id, channel";
const EVENTS: &str = "SELECT id, at, kind, actor, account_id, account, token_id, ip, user_agent, detail \
     FROM events WHERE id > $1 ORDER BY id LIMIT $2";
const CHANGES: &str = "SELECT seq, at, at_ms, account_id, token_id FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2";

/// Reads the next batch of `$row` after key `$after` from the store `$source`.
macro_rules! next_batch {
    ($source:expr, $row:ty, $sql:expr, $after:expr) => {
        with_pool!($source, pool => {
            sqlx::query_as::<_, $row>($sql).bind($after).bind(BATCH).fetch_all(pool).await?
        })
    };
}

impl Store {
    /// How many rows each table holds.
    pub async fn table_counts(&self) -> Result<TableCounts, StoreError> {
        let mut counts = [0i64; 6];
        let queries = [
            "SELECT COUNT(*) FROM accounts",
            "SELECT COUNT(*) FROM tokens",
            "SELECT COUNT(*) FROM events",
            "SELECT COUNT(*) FROM changes",
            "SELECT COUNT(*) FROM outbox",
            "SELECT COUNT(*) FROM outbox_deliveries",
        ];
        for (count, sql) in counts.iter_mut().zip(queries) {
            *count = with_pool!(self, pool => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await?);
        }
        let [accounts, tokens, events, changes, outbox, outbox_deliveries] = counts;
        Ok(TableCounts { accounts, tokens, events, changes, outbox, outbox_deliveries })
    }

    /// Copies every row of this store into `target`, which must be empty, in one transaction;
    /// then checks that both hold the same number of rows per table.
    pub async fn copy_into(&self, target: &Store) -> Result<TableCounts, StoreError> {
        let existing = target.table_counts().await?;
        if existing != TableCounts::default() {
            return Err(StoreError::NotEmpty(format!(
                "the target database is not empty ({} accounts, {} tokens, {} events)",
                existing.accounts, existing.tokens, existing.events
            )));
        }
        with_pool!(target, pool => {
            let mut tx = pool.begin_write().await?;
            let mut after = 0;
            loop {
                let rows = next_batch!(self, AccountRow, ACCOUNTS, after);
                let Some(last) = rows.last().map(|r| r.id) else { break };
                for r in rows {
                    sqlx::query(
                        "INSERT INTO accounts (id, email, email_norm, name, superuser, token_manager, enabled, \
                         can_create_tokens, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    )
                    .bind(r.id).bind(r.email).bind(r.email_norm).bind(r.name).bind(r.superuser)
                    .bind(r.token_manager).bind(r.enabled).bind(r.can_create_tokens).bind(r.created_at)
                    .bind(r.updated_at)
                    .execute(&mut *tx)
                    .await?;
                }
                after = last;
            }
            after = 0;
            loop {
                let rows = next_batch!(self, TokenRow, TOKENS, after);
                let Some(last) = rows.last().map(|r| r.id) else { break };
                for r in rows {
                    sqlx::query(
                        "INSERT INTO tokens (id, account_id, name, live_name, description, digest, prefix, scopes, \
                         rate_limit, created_at, created_by, expires_at, revoked_at, revoked_by, revoke_reason, \
                         rotated_from, rotated_to, last_used_at, last_used_method, last_used_path, last_used_ip, \
                         refused_count, refused_last_at, refused_last_ip, refused_last_method, refused_last_path, \
                         handover_from, inactivity_warned_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
                         $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)",
                    )
                    .bind(r.id).bind(r.account_id).bind(r.name).bind(r.live_name).bind(r.description)
                    .bind(r.digest).bind(r.prefix).bind(r.scopes).bind(r.rate_limit).bind(r.created_at)
                    .bind(r.created_by).bind(r.expires_at).bind(r.revoked_at).bind(r.revoked_by)
                    .bind(r.revoke_reason).bind(r.rotated_from).bind(r.rotated_to).bind(r.last_used_at)
                    .bind(r.last_used_method).bind(r.last_used_path).bind(r.last_used_ip).bind(r.refused_count)
                    .bind(r.refused_last_at).bind(r.refused_last_ip).bind(r.refused_last_method)
                    .bind(r.refused_last_path)
                    .bind(r.handover_from)
                    .bind(r.inactivity_warned_at)
                    .execute(&mut *tx)
                    .await?;
                }
                after = last;
            }
            after = 0;
            loop {
                let rows = next_batch!(self, EventRow, EVENTS, after);
                let Some(last) = rows.last().map(|r| r.id) else { break };
                for r in rows {
                    sqlx::query(
                        "INSERT INTO events (id, at, kind, actor, account_id, account, token_id, ip, user_agent, \
                         detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    )
                    .bind(r.id).bind(r.at).bind(r.kind).bind(r.actor).bind(r.account_id).bind(r.account)
                    .bind(r.token_id).bind(r.ip).bind(r.user_agent).bind(r.detail)
                    .execute(&mut *tx)
                    .await?;
                }
                after = last;
            }
            after = 0;
            loop {
                let rows = next_batch!(self, ChangeRow, CHANGES, after);
                let Some(last) = rows.last().map(|r| r.seq) else { break };
                for r in rows {
                    sqlx::query("INSERT INTO changes (seq, at, at_ms, account_id, token_id) VALUES ($1, $2, $3, $4, $5)")
                        .bind(r.seq).bind(r.at).bind(r.at_ms).bind(r.account_id).bind(r.token_id)
                        .execute(&mut *tx)
                        .await?;
                }
                after = last;
            }
            after = 0;
            loop {
                let rows = next_batch!(self, OutboxRow, OUTBOX, after);
                let Some(last) = rows.last().map(|r| r.id) else { break };
                for r in rows {
                    sqlx::query(
                        "INSERT INTO outbox (id, created_at, kind, account_id, recipient, token_id, payload, \
                         dedupe_key, attempts, next_attempt_at, claimed_until, sent_at, last_error) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                    )
                    .bind(r.id).bind(r.created_at).bind(r.kind).bind(r.account_id).bind(r.recipient)
                    .bind(r.token_id).bind(r.payload).bind(r.dedupe_key).bind(r.attempts)
                    .bind(r.next_attempt_at).bind(r.claimed_until).bind(r.sent_at).bind(r.last_error)
                    .execute(&mut *tx)
                    .await?;
                }
                let deliveries: Vec<DeliveryRow> = with_pool!(self, source => {
                    sqlx::query_as(DELIVERIES).bind(after).bind(last).fetch_all(source).await?
                });
                for r in deliveries {
                    sqlx::query(
                        "INSERT INTO outbox_deliveries (outbox_id, channel, attempts, next_attempt_at, \
                         claimed_until, sent_at, last_error) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(r.outbox_id).bind(r.channel).bind(r.attempts).bind(r.next_attempt_at)
                    .bind(r.claimed_until).bind(r.sent_at).bind(r.last_error)
                    .execute(&mut *tx)
                    .await?;
                }
                after = last;
            }
            tx.commit().await?;
        });
        target.continue_id_sequences().await?;
        let (source_counts, target_counts) = (self.table_counts().await?, target.table_counts().await?);
        if source_counts != target_counts {
            return Err(StoreError::NotEmpty(format!(
                "the copy does not match its source: source {source_counts:?}, target {target_counts:?}"
            )));
        }
        Ok(target_counts)
    }

    /// After rows were inserted with explicit ids, makes PostgreSQL's identity sequences continue
    /// after the highest id (SQLite does this by itself).
    async fn continue_id_sequences(&self) -> Result<(), StoreError> {
        let super::Backend::Postgres(pool) = &self.backend else {
            return Ok(());
        };
        for sql in [
            "SELECT setval(pg_get_serial_sequence('accounts', 'id'), COALESCE((SELECT MAX(id) FROM accounts), 0) + 1, false)",
            "SELECT setval(pg_get_serial_sequence('tokens', 'id'), COALESCE((SELECT MAX(id) FROM tokens), 0) + 1, false)",
            "SELECT setval(pg_get_serial_sequence('events', 'id'), COALESCE((SELECT MAX(id) FROM events), 0) + 1, false)",
            "SELECT setval(pg_get_serial_sequence('changes', 'seq'), COALESCE((SELECT MAX(seq) FROM changes), 0) + 1, false)",
            "SELECT setval(pg_get_serial_sequence('outbox', 'id'), COALESCE((SELECT MAX(id) FROM outbox), 0) + 1, false)",
        ] {
            sqlx::query(sql).execute(pool).await?;
        }
        Ok(())
    }
}
