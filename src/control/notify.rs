//! Notifications to token owners: the outbox's messages rendered as text and delivered to every
//! configured channel — SMTP, a signed JSON webhook, or both. An action never waits on delivery:
//! it only writes the outbox row in its own transaction. Each channel claims due messages for
//! itself, retries its failures with a doubling backoff and gives up after
//! `notify.max_attempts`, each failure audited as `notification.failed` with the channel named.
//! A gateway with no channel runs no sender and never touches the outbox, so the notices wait
//! for a gateway that can deliver them.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, UnixTime, to_rfc3339};
use crate::config::{NotifyChannel, NotifyConfig, SecretString, SmtpConfig, SmtpTls, WebhookConfig};
use crate::control::store::{Delivery, DeliveryOutcome, OutboxMessage, Store, StoreError};
use crate::model::{Notice, NoticeDetail};

/// The longest one send may take, by SMTP or webhook.
const SEND_TIMEOUT: Duration = Duration::from_secs(15);
/// Messages one channel claims per round: few enough that the round's sends, each timing out,
/// still end within [`CLAIM_LEASE`] — else another gateway would claim and send them again.
const BATCH: i64 = 5;
/// How long a claim is reserved for its sender; past it another sender may try the message
/// (a sender that died mid-send).
const CLAIM_LEASE: Duration = Duration::from_secs(120);
/// How often the outbox is read when nothing wakes the sender.
const POLL: Duration = Duration::from_secs(1);
/// The longest pause between two attempts at one message.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Why the configured channels cannot be set up (the config is valid, the values unusable).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The TLS setup for `notify.smtp_host` cannot be built (a host name TLS cannot verify).
    #[error("notify.smtp_host {host}: {message}")]
    SmtpHost {
        /// `notify.smtp_host` as configured.
        host: String,
        /// Why it is unusable.
        message: String,
    },
    /// `notify.from` is not a mailbox.
    #[error("notify.from {from:?}: {message}")]
    From {
        /// `notify.from` as configured.
        from: String,
        /// Why it does not parse.
        message: String,
    },
    /// The HTTP client for the webhook cannot be built.
    #[error("cannot build the webhook client: {0}")]
    WebhookClient(String),
}

/// A message as a person reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The email's subject: what happened to which token (`API token "ci" (tg_AbC12345) revoked`).
    pub subject: String,
    /// The plain-text body, one `Label: value` line per particular; the webhook sends it too.
    pub text: String,
}

/// Renders an outbox message: what happened to which token, when, by whom, from where.
pub fn render(message: &OutboxMessage) -> Rendered {
    let notice = Notice::parse(&message.payload);
    let detail = &notice.detail;
    let name = detail.name.clone().unwrap_or_else(|| "(unnamed)".into());
    let prefix = detail.prefix.clone().unwrap_or_default();
    let token = format!("\"{name}\" ({prefix})");
    let subject = match message.kind.as_str() {
        "token.created" => format!("New API token {token}"),
        "token.revoked" => format!("API token {token} revoked"),
        "token.rotated" => format!("API token {token} rotated"),
        "token.expiring" => format!("API token {token} expires soon"),
        "token.inactivity_warning" => format!("API token {token} will be revoked for inactivity"),
        "token.refused_use" => {
            format!("Refused use of {} API token {token}", refusal_words(detail.reason.as_deref()))
        }
        "token.expiry_capped" => {
            format!("API token {token} now expires {}", more_text(detail, "new_expires_at").unwrap_or_default())
        }
        other => format!("API token {token}: {other}"),
    };
    let at = if notice.at > 0 { to_rfc3339(notice.at) } else { String::new() };
    let or_dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".into());
    let mut lines = vec![
        format!("Account:    {}", message.recipient),
        format!("Token:      {name}"),
        format!("Prefix:     {prefix}"),
        format!("Event:      {}", message.kind),
        format!("When:       {at}"),
        format!("By:         {}", or_dash(&notice.actor)),
        format!("IP address: {}", or_dash(&notice.ip)),
        format!("User agent: {}", or_dash(&notice.user_agent)),
    ];
    for (value, label) in [
        (&detail.reason, "Reason:     "),
        (&detail.expires_at, "Expires:    "),
        (&detail.revoked_at, "Old token stops working: "),
        (&detail.unused_since, "Unused since: "),
    ] {
        if let Some(value) = value {
            lines.push(format!("{label}{value}"));
        }
    }
    lines.extend(kind_lines(&message.kind, detail));
    lines.push(String::new());
    lines.push(closing_line(&message.kind).into());
    Rendered { subject, text: lines.join("\n") + "\n" }
}

/// The lines only one kind of notice has, from what its event said beyond the common fields.
fn kind_lines(kind: &str, detail: &NoticeDetail) -> Vec<String> {
    let mut lines = Vec::new();
    match kind {
        "token.refused_use" => {
            let request = [more_text(detail, "method"), more_text(detail, "path")].into_iter().flatten();
            lines.push(format!("Request:    {}", request.collect::<Vec<_>>().join(" ")));
            if let Some(attempts) = more_text(detail, "attempts") {
                let total = more_text(detail, "refused_count").map(|n| format!(" ({n} refused in all)"));
                lines.push(format!("Attempts:   {attempts}{}", total.unwrap_or_default()));
            }
        }
        "token.expiry_capped" => {
            // A token that never expired has a null old expiry.
            let old = more_text(detail, "old_expires_at").unwrap_or_else(|| "never".into());
            lines.push(format!("Expired before: {old}"));
            lines.push(format!("Now expires:    {}", more_text(detail, "new_expires_at").unwrap_or_default()));
            if let Some(max) = more_text(detail, "max_lifetime") {
                lines.push(format!("Maximum lifetime (tokens.max_lifetime): {max}"));
            }
        }
        _ => {}
    }
    lines
}

/// What the owner should do, by kind.
fn closing_line(kind: &str) -> &'static str {
    match kind {
        "token.refused_use" => {
            "A client still sends this token although it no longer works: find it and give it a valid token. \
             If you do not know who sends it, tell your administrator."
        }
        "token.expiry_capped" => {
            "The administrator shortened the longest lifetime tokens may have. Replace or rotate this token before it expires."
        }
        _ => "If you did not expect this, revoke the token and tell your administrator.",
    }
}

/// A refusal's reason as the subject says it: the token was `revoked`, `expired` or `blocked`.
fn refusal_words(reason: Option<&str>) -> &'static str {
    match reason {
        Some("revoked") => "revoked",
        Some("expired") => "expired",
        Some(_) => "blocked",
        None => "dead",
    }
}

/// A value of the event's detail beyond the common fields, as text (`None`: absent or null).
fn more_text(detail: &NoticeDetail, key: &str) -> Option<String> {
    match detail.more.get(key)? {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

/// One channel's way out.
enum Transport {
    Smtp { transport: AsyncSmtpTransport<Tokio1Executor>, from: Mailbox },
    Webhook { client: reqwest::Client, url: String, secret: Option<SecretString> },
}

impl Transport {
    fn smtp(smtp: &SmtpConfig) -> Result<Transport, NotifyError> {
        let host_error = |e: lettre::transport::smtp::Error| NotifyError::SmtpHost {
            host: smtp.host.clone(),
            message: e.to_string(),
        };
        let builder = match smtp.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
            SmtpTls::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host).map_err(host_error)?
            }
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host).map_err(host_error)?,
        };
        let mut builder = builder.port(smtp.port).timeout(Some(SEND_TIMEOUT));
        if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        let from: Mailbox =
            smtp.from.parse().map_err(|e| NotifyError::From { from: smtp.from.clone(), message: format!("{e}") })?;
        Ok(Transport::Smtp { transport: builder.build(), from })
    }

    fn webhook(webhook: &WebhookConfig) -> Result<Transport, NotifyError> {
        let client = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .build()
            .map_err(|e| NotifyError::WebhookClient(e.to_string()))?;
        Ok(Transport::Webhook { client, url: webhook.url.clone(), secret: webhook.secret.clone() })
    }

    fn channel(&self) -> NotifyChannel {
        match self {
            Transport::Smtp { .. } => NotifyChannel::Smtp,
            Transport::Webhook { .. } => NotifyChannel::Webhook,
        }
    }

    async fn send(&self, message: &OutboxMessage) -> Result<(), String> {
        let rendered = render(message);
        match self {
            Transport::Smtp { transport, from } => {
                let to: Mailbox =
                    message.recipient.parse().map_err(|e| format!("bad recipient {:?}: {e}", message.recipient))?;
                let email = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(rendered.subject)
                    .body(rendered.text)
                    .map_err(|e| format!("cannot build the message: {e}"))?;
                transport.send(email).await.map(drop).map_err(|e| format!("SMTP: {e}"))
            }
            Transport::Webhook { client, url, secret } => {
                let payload: Value = serde_json::from_str(&message.payload).unwrap_or(Value::Null);
                let body = json!({
                    "id": message.id,
                    "kind": message.kind,
                    "recipient": message.recipient,
                    "token_id": message.token_id,
                    "subject": rendered.subject,
                    "text": rendered.text,
                    "event": payload,
                })
                .to_string();
                let mut request = client
                    .post(url)
                    .header("content-type", "application/json")
                    .header("x-tokengate-delivery", message.id);
                if let Some(secret) = secret {
                    request = request.header("x-tokengate-signature", format!("sha256={}", sign(secret, &body)));
                }
                // Without the URL: a webhook URL often carries a credential of its own, and this
                // text goes to the log and the audit log.
                let response = request.body(body).send().await.map_err(|e| format!("webhook: {}", e.without_url()))?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("webhook answered {}", response.status()))
                }
            }
        }
    }
}

/// Delivers the outbox to every configured channel, each on its own.
pub struct Notifier {
    store: Store,
    clock: Clock,
    transports: Vec<Transport>,
    /// The channels of `transports`: an outbox row is finished once each is done with it.
    channels: Vec<NotifyChannel>,
    retry_base: Duration,
    max_attempts: u32,
    wake: Arc<Notify>,
}

impl Notifier {
    /// A sender for every configured channel, or `None` when there is none: a gateway that
    /// cannot deliver must leave the outbox alone for one that can.
    pub fn new(config: &NotifyConfig, store: Store, clock: Clock) -> Result<Option<Notifier>, NotifyError> {
        let mut transports = Vec::new();
        if let Some(smtp) = &config.smtp {
            transports.push(Transport::smtp(smtp)?);
        }
        if let Some(webhook) = &config.webhook {
            transports.push(Transport::webhook(webhook)?);
        }
        if transports.is_empty() {
            return Ok(None);
        }
        let channels = transports.iter().map(Transport::channel).collect();
        Ok(Some(Notifier {
            store,
            clock,
            transports,
            channels,
            retry_base: config.retry_base,
            max_attempts: config.max_attempts,
            wake: Arc::new(Notify::new()),
        }))
    }

    /// The channels this sender delivers to.
    pub fn channels(&self) -> &[NotifyChannel] {
        &self.channels
    }

    /// Wakes the senders at once (a message was just queued in this process); there is one per
    /// channel, so call `notify_waiters`.
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// Delivers due messages every second (or when woken) until `shutdown`, one loop per
    /// channel, so a channel that is slow or down never holds up another.
    pub async fn run(self, shutdown: CancellationToken) {
        let notifier = Arc::new(self);
        let mut loops = JoinSet::new();
        for transport in 0..notifier.transports.len() {
            loops.spawn(Arc::clone(&notifier).run_channel(transport, shutdown.clone()));
        }
        while loops.join_next().await.is_some() {}
    }

    async fn run_channel(self: Arc<Self>, transport: usize, shutdown: CancellationToken) {
        loop {
            match self.deliver_batch(transport).await {
                // A full batch: more may be due at once.
                Ok(claimed) if claimed as i64 >= BATCH && !shutdown.is_cancelled() => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "cannot read the notification outbox; will retry"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// Claims one batch of due messages for one channel and delivers them; returns how many
    /// were claimed.
    async fn deliver_batch(&self, transport: usize) -> Result<usize, StoreError> {
        let Some(transport) = self.transports.get(transport) else { return Ok(0) };
        let lease = CLAIM_LEASE.as_secs() as i64;
        let due = self.store.claim_deliveries(transport.channel(), self.clock.now(), BATCH, lease).await?;
        for delivery in &due {
            let outcome = self.attempt(transport, delivery).await;
            self.store.record_delivery(delivery, &outcome, &self.channels, self.clock.now()).await?;
        }
        Ok(due.len())
    }

    /// One attempt: sent, or failed with when to try again.
    async fn attempt(&self, transport: &Transport, delivery: &Delivery) -> DeliveryOutcome {
        let message = &delivery.message;
        // The transports time out each step; this bounds the whole send, which the lease needs.
        let sent = tokio::time::timeout(SEND_TIMEOUT, transport.send(message))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} s", SEND_TIMEOUT.as_secs())));
        match sent {
            Ok(()) => DeliveryOutcome::Sent,
            Err(error) => {
                let retry_at = self.retry_at(message.attempts, self.clock.now());
                tracing::warn!(id = message.id, kind = %message.kind, channel = %delivery.channel,
                    attempt = message.attempts, gave_up = retry_at.is_none(), %error, "notification not delivered");
                DeliveryOutcome::Failed { error, retry_at }
            }
        }
    }

    /// When to try again after `attempts` failures, or `None` to give up.
    fn retry_at(&self, attempts: i64, now: UnixTime) -> Option<UnixTime> {
        if attempts >= i64::from(self.max_attempts) {
            return None;
        }
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).clamp(0, 20) as u32);
        let pause = self.retry_base.saturating_mul(factor).min(MAX_BACKOFF);
        Some(now + pause.as_secs().max(1) as i64)
    }
}

/// The hex HMAC-SHA256 of `body` under `secret`, which a webhook receiver recomputes.
pub fn sign(secret: &SecretString, body: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else { return String::new() };
    mac.update(body.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: &str, payload: serde_json::Value) -> OutboxMessage {
        OutboxMessage {
            id: 1,
            created_at: 1_800_000_000,
            kind: kind.into(),
            account_id: Some(1),
            recipient: "ann@example.com".into(),
            token_id: Some(7),
            payload: payload.to_string(),
            attempts: 1,
        }
    }

    #[test]
    fn a_refused_use_says_what_was_presented_from_where() {
        let rendered = render(&message(
            "token.refused_use",
            json!({"kind": "token.refused_use", "at": 1_800_000_000, "actor": "gateway", "ip": "10.0.0.7",
                   "user_agent": "legacy-script/1.0", "detail": {"name": "ci", "prefix": "tg_AbC12345",
                   "reason": "revoked", "method": "GET", "path": "/x", "attempts": 3, "refused_count": 9}}),
        ));
        assert_eq!(rendered.subject, "Refused use of revoked API token \"ci\" (tg_AbC12345)");
        for line in [
            "IP address: 10.0.0.7",
            "User agent: legacy-script/1.0",
            "Reason:     revoked",
            "Request:    GET /x",
            "Attempts:   3 (9 refused in all)",
            "When:       2027-01-15T08:00:00Z",
        ] {
            assert!(rendered.text.contains(line), "{line:?} missing from:\n{}", rendered.text);
        }
        assert!(rendered.text.contains("still sends this token"), "{}", rendered.text);
    }

    #[test]
    fn a_capped_expiry_says_the_old_and_the_new_expiry() {
        let rendered = render(&message(
            "token.expiry_capped",
            json!({"kind": "token.expiry_capped", "at": 1_800_000_000, "actor": "cli:root",
                   "detail": {"name": "ci", "prefix": "tg_AbC12345", "old_expires_at": null,
                   "new_expires_at": "2027-02-14T08:00:00Z", "max_lifetime": "30d"}}),
        ));
        assert_eq!(rendered.subject, "API token \"ci\" (tg_AbC12345) now expires 2027-02-14T08:00:00Z");
        for line in ["Expired before: never", "Now expires:    2027-02-14T08:00:00Z", "tokens.max_lifetime): 30d"] {
            assert!(rendered.text.contains(line), "{line:?} missing from:\n{}", rendered.text);
        }
    }

    /// A batch whose every send times out still ends inside its claim, so no other gateway
    /// takes its messages while they are being sent.
    #[test]
    fn a_batch_of_timed_out_sends_fits_in_the_claim_lease() {
        assert!(SEND_TIMEOUT.saturating_mul(BATCH as u32) < CLAIM_LEASE);
    }
}
