//! The notification outbox: messages written in the transaction of the action they report,
//! claimed by one sender at a time, retried with backoff, marked sent once delivered.

use serde_json::json;

use super::{BeginWrite, Store, StoreError, with_pool};
use crate::clock::UnixTime;

/// How long a claimed message is reserved for its sender before another may try it (a sender
/// that died mid-send).
const CLAIM_LEASE: i64 = 120;

/// A notification queued at most once per `dedupe_key`.
pub struct KeyedNotification<'a> {
    pub dedupe_key: &'a str,
    pub kind: &'a str,
    pub account_id: i64,
    pub recipient: &'a str,
    pub token_id: i64,
    pub payload: &'a serde_json::Value,
}

/// A message to deliver.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxMessage {
    pub id: i64,
    pub created_at: UnixTime,
    pub kind: String,
    pub account_id: Option<i64>,
    pub recipient: String,
    pub token_id: Option<i64>,
    /// JSON: kind, at, actor, ip, user_agent, detail.
    pub payload: String,
    /// Including the one now claimed.
    pub attempts: i64,
}

impl Store {
    /// Queues a message unless one with the same `dedupe_key` was ever queued (reminders).
    pub async fn enqueue_once(&self, message: &KeyedNotification<'_>, now: UnixTime) -> Result<bool, StoreError> {
        let KeyedNotification { dedupe_key, kind, account_id, recipient, token_id, payload } = message;
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let inserted = sqlx::query(
                "INSERT INTO outbox (created_at, kind, account_id, recipient, token_id, payload, dedupe_key, next_attempt_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $1) ON CONFLICT (dedupe_key) DO NOTHING",
            )
            .bind(now)
            .bind(kind)
            .bind(account_id)
            .bind(recipient)
            .bind(token_id)
            .bind(payload.to_string())
            .bind(dedupe_key)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok(inserted > 0)
        })
    }

    /// Claims up to `limit` due messages for this sender. Claims run in write transactions,
    /// which are serialised on both backends, so two gateways never claim the same message.
    pub async fn claim_notifications(&self, now: UnixTime, limit: i64) -> Result<Vec<OutboxMessage>, StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let due: Vec<OutboxMessage> = sqlx::query_as(
                "SELECT id, created_at, kind, account_id, recipient, token_id, payload, attempts + 1 AS attempts \
                 FROM outbox WHERE sent_at IS NULL AND next_attempt_at <= $1 \
                 AND (claimed_until IS NULL OR claimed_until < $1) ORDER BY id LIMIT $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            for message in &due {
                sqlx::query("UPDATE outbox SET claimed_until = $1, attempts = attempts + 1 WHERE id = $2")
                    .bind(now + CLAIM_LEASE)
                    .bind(message.id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(due)
        })
    }

    pub async fn mark_sent(&self, id: i64, now: UnixTime) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query("UPDATE outbox SET sent_at = $1, claimed_until = NULL, last_error = NULL WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Records a failed attempt: retried at `retry_at`, or given up when `None`. Either way an
    /// audit event says so, so the failure shows in `tokengate events`.
    pub async fn mark_failed(
        &self,
        message: &OutboxMessage,
        error: &str,
        retry_at: Option<UnixTime>,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let detail = json!({
            "notification": message.kind,
            "recipient": message.recipient,
            "attempt": message.attempts,
            "error": error,
            "gave_up": retry_at.is_none(),
        });
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            // A given-up message is parked far in the future: kept for the record, never retried.
            sqlx::query("UPDATE outbox SET claimed_until = NULL, last_error = $1, next_attempt_at = $2 WHERE id = $3")
                .bind(error)
                .bind(retry_at.unwrap_or(i64::MAX))
                .bind(message.id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO events (at, kind, actor, account_id, account, token_id, detail) \
                 VALUES ($1, 'notification.failed', 'gateway', $2, $3, $4, $5)",
            )
            .bind(now)
            .bind(message.account_id)
            .bind(&message.recipient)
            .bind(message.token_id)
            .bind(detail.to_string())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Messages not yet delivered (and not given up).
    pub async fn outbox_backlog(&self) -> Result<i64, StoreError> {
        Ok(with_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND next_attempt_at < $1")
                .bind(i64::MAX)
                .fetch_one(pool)
                .await?
        }))
    }
}
