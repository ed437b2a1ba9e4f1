//! The notification outbox: messages written in the transaction of the action they report, and
//! their delivery per channel (`outbox_deliveries`): each channel of a gateway claims a message
//! for itself, retries it with its own backoff, and marks it sent or given up on its own. The
//! outbox row is finished once every channel of the gateway that delivered it is done with it.

use serde_json::json;

use super::{BeginWrite, EventKind, Store, StoreError, insert_event, insert_outbox, with_pool};
use crate::clock::UnixTime;
use crate::config::NotifyChannel;
use crate::model::{AccountId, TokenId};

/// Where a parked message or a given-up delivery waits: never due again, kept for the record.
const PARKED: UnixTime = i64::MAX;

/// A notification queued at most once per `dedupe_key`.
pub struct KeyedNotification<'a> {
    /// Names the notice (an expiry reminder: `expiry:<token id>:<lead>`): one once queued under it
    /// is never queued again, whichever gateway's sweep gets there first.
    pub dedupe_key: &'a str,
    /// The account the notice is about.
    pub account_id: AccountId,
    /// The owner's email.
    pub recipient: &'a str,
    /// The token the notice is about.
    pub token_id: TokenId,
    /// What to tell.
    pub notice: &'a crate::model::Notice,
}

/// A message to deliver.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxMessage {
    /// The outbox row's id; the webhook's `X-Tokengate-Delivery`, so a receiver can drop repeats.
    pub id: i64,
    /// When it was queued.
    pub created_at: UnixTime,
    /// The notice's kind (`token.revoked`, `token.expiring`, ...), which picks the email's subject.
    pub kind: String,
    /// The account it is about.
    pub account_id: Option<i64>,
    /// Where it goes: the owner's email.
    pub recipient: String,
    /// The token it is about.
    pub token_id: Option<i64>,
    /// JSON: kind, at, actor, ip, user_agent, detail.
    pub payload: String,
    /// Attempts of the claiming channel, including the one now claimed.
    pub attempts: i64,
}

/// One channel's claim on one message.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The claimed message.
    pub message: OutboxMessage,
    /// The channel that claimed it; other channels' claims on the same message are their own.
    pub channel: NotifyChannel,
}

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Delivered: this channel is done with the message.
    Sent,
    /// Retried at `retry_at`, or given up when `None`.
    Failed {
        /// What went wrong, for the `notification.failed` event and the log.
        error: String,
        /// When this channel tries again; `None`: never (attempts used up).
        retry_at: Option<UnixTime>,
    },
}

/// One channel's state of one message, as the finishing check reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
struct ChannelState {
    channel: String,
    sent_at: Option<UnixTime>,
    next_attempt_at: UnixTime,
    last_error: Option<String>,
}

/// What becomes of the outbox row once a channel is done with it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Settled {
    /// Some channel of this gateway has not delivered or given up yet.
    Pending,
    /// At least one channel delivered (the owner heard of it); the error of any that gave up.
    Sent { error: Option<String> },
    /// Every channel gave up: parked like a given-up message always was.
    GaveUp { error: Option<String> },
}

/// Decides the outbox row from the state of each of `channels` (the delivering gateway's).
fn settle(states: &[ChannelState], channels: &[NotifyChannel]) -> Settled {
    let mut any_sent = false;
    let mut error = None;
    for channel in channels {
        let Some(state) = states.iter().find(|s| s.channel == channel.name()) else { return Settled::Pending };
        if state.sent_at.is_some() {
            any_sent = true;
        } else if state.next_attempt_at == PARKED {
            error = error.or_else(|| state.last_error.clone());
        } else {
            return Settled::Pending;
        }
    }
    if any_sent { Settled::Sent { error } } else { Settled::GaveUp { error } }
}

impl Store {
    /// Queues a message unless one with the same `dedupe_key` was ever queued (reminders).
    pub async fn enqueue_once(&self, message: &KeyedNotification<'_>, now: UnixTime) -> Result<bool, StoreError> {
        let KeyedNotification { dedupe_key, account_id, recipient, token_id, notice } = message;
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let inserted = insert_outbox!(tx, now, account_id, recipient, token_id, *notice, Some(*dedupe_key))?;
            tx.commit().await?;
            Ok(inserted)
        })
    }

    /// Claims up to `limit` due messages for `channel`, each reserved for `lease` seconds (after
    /// which a sender that died mid-send is presumed gone). A message this channel has not seen
    /// yet first gets its delivery row. Claims run in write transactions, which are serialised
    /// on both backends, so two gateways never claim the same message for the same channel.
    pub async fn claim_deliveries(
        &self,
        channel: NotifyChannel,
        now: UnixTime,
        limit: i64,
        lease: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let name = channel.name();
        let due: Vec<OutboxMessage> = with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO outbox_deliveries (outbox_id, channel, next_attempt_at) \
                 SELECT o.id, $1, o.next_attempt_at FROM outbox o \
                 WHERE o.sent_at IS NULL AND o.next_attempt_at <= $2 \
                 AND NOT EXISTS (SELECT 1 FROM outbox_deliveries d WHERE d.outbox_id = o.id AND d.channel = $1) \
                 ORDER BY o.id LIMIT $3",
            )
            .bind(name)
            .bind(now)
            .bind(limit)
            .execute(&mut *tx)
            .await?;
            let due: Vec<OutboxMessage> = sqlx::query_as(
                "SELECT o.id, o.created_at, o.kind, o.account_id, o.recipient, o.token_id, o.payload, \
                 d.attempts + 1 AS attempts \
                 FROM outbox_deliveries d JOIN outbox o ON o.id = d.outbox_id \
                 WHERE d.channel = $1 AND d.sent_at IS NULL AND d.next_attempt_at <= $2 \
                 AND (d.claimed_until IS NULL OR d.claimed_until < $2) \
                 AND o.sent_at IS NULL AND o.next_attempt_at < $3 ORDER BY o.id LIMIT $4",
            )
            .bind(name)
            .bind(now)
            .bind(PARKED)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            for message in &due {
                sqlx::query(
                    "UPDATE outbox_deliveries SET claimed_until = $1, attempts = attempts + 1 \
                     WHERE outbox_id = $2 AND channel = $3",
                )
                .bind(now.saturating_add(lease))
                .bind(message.id)
                .bind(name)
                .execute(&mut *tx)
                .await?;
                // The row's own count: attempts over all channels.
                sqlx::query("UPDATE outbox SET attempts = attempts + 1 WHERE id = $1")
                    .bind(message.id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            due
        });
        Ok(due.into_iter().map(|message| Delivery { message, channel }).collect())
    }

    /// Records one attempt of `delivery` and, once every one of `channels` (the delivering
    /// gateway's) has delivered or given up, finishes the outbox row: sent when any delivered,
    /// else parked as given up. A failure is also audited as `notification.failed` naming the
    /// channel, so it shows in `tokengate events`.
    pub async fn record_delivery(
        &self,
        delivery: &Delivery,
        outcome: &DeliveryOutcome,
        channels: &[NotifyChannel],
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let (message, name) = (&delivery.message, delivery.channel.name());
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            match outcome {
                DeliveryOutcome::Sent => {
                    sqlx::query(
                        "UPDATE outbox_deliveries SET sent_at = $1, claimed_until = NULL, last_error = NULL \
                         WHERE outbox_id = $2 AND channel = $3",
                    )
                    .bind(now)
                    .bind(message.id)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                }
                DeliveryOutcome::Failed { error, retry_at } => {
                    sqlx::query(
                        "UPDATE outbox_deliveries SET claimed_until = NULL, last_error = $1, next_attempt_at = $2 \
                         WHERE outbox_id = $3 AND channel = $4",
                    )
                    .bind(error)
                    .bind(retry_at.unwrap_or(PARKED))
                    .bind(message.id)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                    let detail = json!({
                        "notification": message.kind,
                        "recipient": message.recipient,
                        "channel": name,
                        "attempt": message.attempts,
                        "error": error,
                        "gave_up": retry_at.is_none(),
                    });
                    insert_event!(
                        tx, now, EventKind::NotificationFailed, "gateway", message.account_id, &message.recipient,
                        message.token_id, None::<&str>, None::<&str>, detail.to_string()
                    )?;
                }
            }
            let states: Vec<ChannelState> = sqlx::query_as(
                "SELECT channel, sent_at, next_attempt_at, last_error FROM outbox_deliveries WHERE outbox_id = $1",
            )
            .bind(message.id)
            .fetch_all(&mut *tx)
            .await?;
            match settle(&states, channels) {
                Settled::Pending => {}
                Settled::Sent { error } => {
                    sqlx::query("UPDATE outbox SET sent_at = $1, claimed_until = NULL, last_error = $2 WHERE id = $3")
                        .bind(now)
                        .bind(error)
                        .bind(message.id)
                        .execute(&mut *tx)
                        .await?;
                }
                Settled::GaveUp { error } => {
                    sqlx::query(
                        "UPDATE outbox SET claimed_until = NULL, last_error = $1, next_attempt_at = $2 WHERE id = $3",
                    )
                    .bind(error)
                    .bind(PARKED)
                    .bind(message.id)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Messages not yet delivered (and not given up), including those no running gateway can
    /// deliver because none has a channel.
    pub async fn outbox_backlog(&self) -> Result<i64, StoreError> {
        Ok(with_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND next_attempt_at < $1")
                .bind(PARKED)
                .fetch_one(pool)
                .await?
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: [NotifyChannel; 2] = [NotifyChannel::Smtp, NotifyChannel::Webhook];

    fn state(channel: &str, sent_at: Option<UnixTime>, next_attempt_at: UnixTime, error: Option<&str>) -> ChannelState {
        ChannelState { channel: channel.into(), sent_at, next_attempt_at, last_error: error.map(str::to_owned) }
    }

    #[test]
    fn a_row_waits_for_every_channel_of_the_gateway() {
        let smtp_sent = state("smtp", Some(5), 1, None);
        assert_eq!(settle(std::slice::from_ref(&smtp_sent), &BOTH), Settled::Pending, "webhook not tried yet");
        let webhook_retrying = state("webhook", None, 60, Some("webhook answered 500"));
        assert_eq!(settle(&[smtp_sent.clone(), webhook_retrying], &BOTH), Settled::Pending);
        assert_eq!(settle(std::slice::from_ref(&smtp_sent), &[NotifyChannel::Smtp]), Settled::Sent { error: None });
    }

    #[test]
    fn a_row_is_sent_when_any_channel_delivered_and_parked_when_all_gave_up() {
        let smtp_sent = state("smtp", Some(5), 1, None);
        let webhook_gave_up = state("webhook", None, PARKED, Some("webhook answered 500"));
        let smtp_gave_up = state("smtp", None, PARKED, Some("SMTP: refused"));
        assert_eq!(
            settle(&[smtp_sent, webhook_gave_up.clone()], &BOTH),
            Settled::Sent { error: Some("webhook answered 500".into()) }
        );
        assert_eq!(
            settle(&[webhook_gave_up, smtp_gave_up], &BOTH),
            Settled::GaveUp { error: Some("SMTP: refused".into()) }
        );
    }

    #[test]
    fn channels_of_other_gateways_do_not_hold_a_row_open() {
        let webhook_sent = state("webhook", Some(5), 1, None);
        let smtp_retrying = state("smtp", None, 60, Some("SMTP: refused"));
        assert_eq!(settle(&[webhook_sent, smtp_retrying], &[NotifyChannel::Webhook]), Settled::Sent { error: None });
    }
}
