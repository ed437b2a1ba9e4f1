//! `token cap-expiry`: a stricter `tokens.max_lifetime` reaches the tokens minted before it.
//! Every live token that never expires, or expires later than the maximum after its creation,
//! gets the expiry `max(created_at + max_lifetime, now + tokens.warn_before)` — never a later one
//! than it had. The floor gives the owner of a token older than the maximum `warn_before` to
//! replace it, instead of having it die the moment the command runs.

use serde_json::json;

use super::{Actor, Confirmed, LifecycleService, ServiceError};
use crate::clock::{UnixTime, to_rfc3339};
use crate::control::store::CappedExpiry;
use crate::model::duration::format_duration;
use crate::model::{EventKind, TokenRecord};

impl LifecycleService {
    /// Caps the expiry of every live token that outlives `tokens.max_lifetime` (superusers and the
    /// host). With `dry_run`, only lists what would change. Each change is audited as
    /// `token.expiry_capped` (notified to the owner) and reaches every gateway's index like any
    /// other token change; the answer waits for the running gateways unless nothing changed.
    pub async fn cap_expiry(&self, dry_run: bool, actor: &Actor) -> Result<Confirmed<Vec<CappedExpiry>>, ServiceError> {
        if actor.principal().is_some_and(|p| !p.account.superuser) {
            return Err(ServiceError::Forbidden("only a superuser may cap the expiry of every token".into()));
        }
        let policy = self.policy();
        if !policy.max_lifetime_set {
            return Err(ServiceError::Invalid(
                "tokens.max_lifetime is not configured: cap-expiry applies a maximum lifetime the operator chose; \
                 set tokens.max_lifetime (for example \"90d\") first"
                    .into(),
            ));
        }
        let now = self.now();
        let max_lifetime = policy.max_lifetime.as_secs() as i64;
        let grace = policy.warn_before.as_secs() as i64;
        let new_expiry = |token: &TokenRecord| capped_expiry(token, max_lifetime, grace, now);
        if dry_run {
            let planned = self
                .store
                .tokens_outliving(max_lifetime, now)
                .await?
                .into_iter()
                .filter_map(|token| {
                    let new_expires_at = new_expiry(&token)?;
                    Some(CappedExpiry { old_expires_at: token.expires_at, new_expires_at, token })
                })
                .collect();
            return Ok(Confirmed { value: planned, confirmation: None });
        }
        let policy_text = format_duration(policy.max_lifetime);
        let event_for = |token: &TokenRecord, new_expires_at: UnixTime| {
            actor.event(
                EventKind::TokenExpiryCapped,
                json!({
                    "name": token.name,
                    "prefix": token.prefix,
                    "old_expires_at": token.expires_at.map(to_rfc3339),
                    "new_expires_at": to_rfc3339(new_expires_at),
                    "max_lifetime": policy_text,
                }),
            )
        };
        let capped = self.store.cap_expiries(max_lifetime, now, &new_expiry, &event_for).await?;
        if capped.is_empty() {
            return Ok(Confirmed { value: capped, confirmation: None });
        }
        self.apply_locally().await;
        Ok(Confirmed { value: capped, confirmation: self.confirm_change().await })
    }
}

/// The expiry a token gets under a maximum lifetime of `max_lifetime` seconds, with at least
/// `grace` seconds left from `now`; `None` when that would not make it expire earlier.
fn capped_expiry(token: &TokenRecord, max_lifetime: i64, grace: i64, now: UnixTime) -> Option<UnixTime> {
    let capped = token.created_at.saturating_add(max_lifetime).max(now.saturating_add(grace));
    match token.expires_at {
        Some(current) if current <= capped => None,
        _ => Some(capped),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AccountId, TokenId};

    const DAY: i64 = 86_400;

    fn token(created_at: UnixTime, expires_at: Option<UnixTime>) -> TokenRecord {
        TokenRecord {
            id: TokenId(1),
            account_id: AccountId(1),
            user_email: "ann@example.com".into(),
            name: "ci".into(),
            description: None,
            prefix: "tg_AbC12345".into(),
            scopes: "read".into(),
            rate_limit: None,
            created_at,
            created_by: "cli:root".into(),
            expires_at,
            revoked_at: None,
            revoked_by: None,
            revoke_reason: None,
            rotated_from: None,
            rotated_to: None,
            last_used_at: None,
            last_used_method: None,
            last_used_path: None,
            last_used_ip: None,
            refused_count: 0,
            refused_last_at: None,
            refused_last_ip: None,
            refused_last_method: None,
            refused_last_path: None,
            account_enabled: true,
            account_can_create_tokens: true,
            requests_30d: None,
        }
    }

    #[test]
    fn a_young_token_keeps_its_full_maximum_lifetime() {
        let now = 1_000 * DAY;
        assert_eq!(capped_expiry(&token(now - DAY, None), 30 * DAY, 7 * DAY, now), Some(now + 29 * DAY));
        assert_eq!(
            capped_expiry(&token(now - DAY, Some(now + 300 * DAY)), 30 * DAY, 7 * DAY, now),
            Some(now + 29 * DAY)
        );
    }

    #[test]
    fn an_old_token_gets_the_grace_from_now() {
        let now = 1_000 * DAY;
        assert_eq!(capped_expiry(&token(now - 100 * DAY, None), 30 * DAY, 7 * DAY, now), Some(now + 7 * DAY));
    }

    #[test]
    fn no_token_is_given_a_later_expiry_than_it_has() {
        let now = 1_000 * DAY;
        // Created 100 days ago, expiring in 3 days: the grace would extend it, so it stays.
        assert_eq!(capped_expiry(&token(now - 100 * DAY, Some(now + 3 * DAY)), 30 * DAY, 7 * DAY, now), None);
        // Within the maximum already.
        assert_eq!(capped_expiry(&token(now, Some(now + 30 * DAY)), 30 * DAY, 7 * DAY, now), None);
    }
}
