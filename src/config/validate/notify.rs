//! `[notify]`: the SMTP relay, the webhook, reminders and retries; every problem of each.

use std::path::Path;

use super::{duration, invalid};
use crate::config::problems::Problems;
use crate::config::raw::RawNotify;
use crate::config::secrets::read_secret_file;
use crate::config::{ConfigError, NotifyConfig, SecretString, SmtpConfig, SmtpTls, WebhookConfig, masked_webhook_url};
use crate::model::duration::parse_duration;

pub(super) fn notify(p: &mut Problems, raw: RawNotify) -> Option<NotifyConfig> {
    let smtp = smtp(p, &raw);
    let webhook = webhook(p, &raw);
    let expiry_reminders = p.check_each(
        raw.expiry_reminders.iter().map(|text| parse_duration(text).map_err(|e| invalid("notify.expiry_reminders", e))),
    );
    let retry_base = p.check(duration("notify.retry_base", &raw.retry_base).and_then(|retry_base| {
        if retry_base.is_zero() || raw.max_attempts == 0 {
            return Err(invalid("notify.retry_base", "retry_base and max_attempts must be greater than zero"));
        }
        Ok(retry_base)
    }));
    Some(NotifyConfig {
        smtp: smtp?,
        webhook: webhook?,
        expiry_reminders: expiry_reminders?,
        retry_base: retry_base?,
        max_attempts: raw.max_attempts,
    })
}

/// `notify.smtp_*`: `Some(None)` when no relay is set. The sender is checked only then.
fn smtp(p: &mut Problems, raw: &RawNotify) -> Option<Option<SmtpConfig>> {
    let host = raw.smtp_host.clone().filter(|host| !host.trim().is_empty());
    let tls = p.check(match raw.smtp_tls.as_str() {
        "starttls" => Ok(SmtpTls::StartTls),
        "tls" => Ok(SmtpTls::Tls),
        "none" => Ok(SmtpTls::None),
        other => Err(invalid("notify.smtp_tls", format!("{other:?} is not starttls, tls or none"))),
    });
    let password = p.check(secret("smtp_password", raw.smtp_password.clone(), raw.smtp_password_file.as_deref()));
    let from = match host {
        Some(_) if !raw.from.contains('@') => p.check(Err(invalid(
            "notify.from",
            format!("{:?} is not an address such as tokengate@example.com", raw.from),
        ))),
        _ => Some(raw.from.clone()),
    };
    let (tls, password, from) = (tls?, password?, from?);
    let default_port = match tls {
        SmtpTls::Tls => 465,
        SmtpTls::StartTls => 587,
        SmtpTls::None => 25,
    };
    Some(host.map(|host| SmtpConfig {
        host,
        port: raw.smtp_port.unwrap_or(default_port),
        tls,
        username: raw.smtp_username.clone(),
        password,
        from,
    }))
}

/// `notify.webhook_*`: `Some(None)` when no webhook is set.
fn webhook(p: &mut Problems, raw: &RawNotify) -> Option<Option<WebhookConfig>> {
    let secret = p.check(secret("webhook_secret", raw.webhook_secret.clone(), raw.webhook_secret_file.as_deref()));
    let url = match raw.webhook_url.clone().filter(|url| !url.trim().is_empty()) {
        // Shown masked: a webhook URL often carries its secret.
        Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => p.check(Err(invalid(
            "notify.webhook_url",
            format!("{} is not an http:// or https:// URL", masked_webhook_url(&url)),
        ))),
        url => Some(url),
    };
    let (secret, url) = (secret?, url?);
    Some(url.map(|url| WebhookConfig { url, secret }))
}

/// `notify.<key>` or `notify.<key>_file`, at most one of them.
fn secret(key: &str, value: Option<String>, file: Option<&Path>) -> Result<Option<SecretString>, ConfigError> {
    match (value, file) {
        (Some(_), Some(_)) => {
            Err(invalid(&format!("notify.{key}"), format!("give either {key} or {key}_file, not both")))
        }
        (Some(value), None) => Ok(Some(SecretString::new(value))),
        (None, Some(file)) => read_secret_file(&format!("notify.{key}_file"), file).map(|s| Some(SecretString::new(s))),
        (None, None) => Ok(None),
    }
}
