//! Notifications to token owners: the outbox's messages rendered as text and delivered by SMTP,
//! a signed JSON webhook, or (neither configured) the log. An action never waits on delivery:
//! it only writes the outbox row in its own transaction. The sender claims due messages,
//! retries failures with a doubling backoff, and gives up after `notify.max_attempts`, each
//! failure audited as `notification.failed`.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Notify;

use crate::clock::{Clock, UnixTime, to_rfc3339};
use crate::config::{NotifyConfig, SecretString, SmtpTls};
use crate::store::{OutboxMessage, Store};

/// Messages claimed per round.
const BATCH: i64 = 20;
/// How often the outbox is read when nothing wakes the sender.
const POLL: Duration = Duration::from_secs(1);
/// The longest pause between two attempts at one message.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// A message as a person reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
}

/// Renders an outbox message: what happened to which token, when, by whom, from where.
pub fn render(message: &OutboxMessage) -> Rendered {
    let payload: Value = serde_json::from_str(&message.payload).unwrap_or(Value::Null);
    let detail = &payload["detail"];
    let text_of = |value: &Value| value.as_str().map(str::to_owned);
    let name = text_of(&detail["name"]).unwrap_or_else(|| "(unnamed)".into());
    let prefix = text_of(&detail["prefix"]).unwrap_or_default();
    let token = format!("\"{name}\" ({prefix})");
    let subject = match message.kind.as_str() {
        "token.created" => format!("New API token {token}"),
        "token.revoked" => format!("API token {token} revoked"),
        "token.rotated" => format!("API token {token} rotated"),
        "token.expiring" => format!("API token {token} expires soon"),
        "token.inactivity_warning" => format!("API token {token} will be revoked for inactivity"),
        other => format!("API token {token}: {other}"),
    };
    let at = payload["at"].as_i64().map(to_rfc3339).unwrap_or_default();
    let mut lines = vec![
        format!("Account:    {}", message.recipient),
        format!("Token:      {name}"),
        format!("Prefix:     {prefix}"),
        format!("Event:      {}", message.kind),
        format!("When:       {at}"),
        format!("By:         {}", text_of(&payload["actor"]).unwrap_or_else(|| "-".into())),
        format!("IP address: {}", text_of(&payload["ip"]).unwrap_or_else(|| "-".into())),
        format!("User agent: {}", text_of(&payload["user_agent"]).unwrap_or_else(|| "-".into())),
    ];
    for (key, label) in [
        ("reason", "Reason:     "),
        ("expires_at", "Expires:    "),
        ("revoked_at", "Old token stops working: "),
        ("unused_since", "Unused since: "),
    ] {
        if let Some(value) = text_of(&detail[key]) {
            lines.push(format!("{label}{value}"));
        }
    }
    lines.push(String::new());
    lines.push("If you did not expect this, revoke the token and tell your administrator.".into());
    Rendered { subject, text: lines.join("\n") + "\n" }
}

/// Where messages go.
enum Channel {
    Smtp { transport: AsyncSmtpTransport<Tokio1Executor>, from: Mailbox },
    Webhook { client: reqwest::Client, url: String, secret: Option<SecretString> },
    Log,
}

/// Delivers the outbox.
pub struct Notifier {
    store: Store,
    clock: Clock,
    channel: Channel,
    retry_base: Duration,
    max_attempts: u32,
    wake: Arc<Notify>,
}

impl Notifier {
    pub fn new(config: &NotifyConfig, store: Store, clock: Clock) -> Result<Notifier, String> {
        let channel = if let Some(smtp) = &config.smtp {
            let builder = match smtp.tls {
                SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
                SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
                    .map_err(|e| format!("notify.smtp_host {}: {e}", smtp.host))?,
                SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)
                    .map_err(|e| format!("notify.smtp_host {}: {e}", smtp.host))?,
            };
            let mut builder = builder.port(smtp.port).timeout(Some(Duration::from_secs(15)));
            if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
                builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
            }
            let from: Mailbox = smtp.from.parse().map_err(|e| format!("notify.from {:?}: {e}", smtp.from))?;
            Channel::Smtp { transport: builder.build(), from }
        } else if let Some(webhook) = &config.webhook {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .map_err(|e| format!("cannot build the webhook client: {e}"))?;
            Channel::Webhook { client, url: webhook.url.clone(), secret: webhook.secret.clone() }
        } else {
            Channel::Log
        };
        Ok(Notifier {
            store,
            clock,
            channel,
            retry_base: config.retry_base,
            max_attempts: config.max_attempts,
            wake: Arc::new(Notify::new()),
        })
    }

    /// Wakes the sender at once (a message was just queued in this process).
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// Delivers due messages every second (or when woken) until `shutdown`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(error) = self.deliver_due().await {
                tracing::warn!(%error, "cannot read the notification outbox; will retry");
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(POLL) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// Claims and delivers what is due; returns how many were delivered.
    pub async fn deliver_due(&self) -> Result<usize, crate::store::StoreError> {
        let mut delivered = 0;
        loop {
            let due = self.store.claim_notifications(self.clock.now(), BATCH).await?;
            if due.is_empty() {
                return Ok(delivered);
            }
            for message in &due {
                let outcome = self.deliver(message).await;
                let now = self.clock.now();
                match outcome {
                    Ok(()) => {
                        self.store.mark_sent(message.id, now).await?;
                        delivered += 1;
                    }
                    Err(error) => {
                        let retry_at = self.retry_at(message.attempts, now);
                        tracing::warn!(id = message.id, kind = %message.kind, attempt = message.attempts,
                            gave_up = retry_at.is_none(), %error, "notification not delivered");
                        self.store.mark_failed(message, &error, retry_at, now).await?;
                    }
                }
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

    async fn deliver(&self, message: &OutboxMessage) -> Result<(), String> {
        let rendered = render(message);
        match &self.channel {
            Channel::Smtp { transport, from } => {
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
            Channel::Webhook { client, url, secret } => {
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
                let response = request.body(body).send().await.map_err(|e| format!("webhook: {e}"))?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("webhook answered {}", response.status()))
                }
            }
            Channel::Log => {
                tracing::info!(to = %message.recipient, subject = %rendered.subject, "notification (no SMTP or webhook configured)");
                Ok(())
            }
        }
    }
}

/// The hex HMAC-SHA256 of `body` under `secret`, which a webhook receiver recomputes.
pub fn sign(secret: &SecretString, body: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else { return String::new() };
    mac.update(body.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}
