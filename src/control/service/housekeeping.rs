//! Periodic lifecycle work inside `serve`, every `tokens.sweep_interval`: expiry reminders,
//! inactivity warnings, revocation of tokens unused for `tokens.revoke_unused_after`, and the
//! pruning of usage counts older than `usage.keep_days` (in bounded batches).
//! Every gateway runs it; each step is idempotent (reminders are keyed, warnings are marked,
//! revoking a revoked token changes nothing), so several gateways do no harm.

use std::time::Duration;

use serde_json::json;

use super::{Actor, LifecycleService, ServiceError, TokenQuery};
use crate::clock::to_rfc3339;
use crate::control::store::KeyedNotification;
use crate::model::{EventKind, Notice, NoticeDetail, RevokeReason, TokenFilter, TokenRecord};

/// The notice kind of a warning that the inactivity policy will revoke a token.
const INACTIVITY_WARNING: &str = "token.inactivity_warning";

/// The notice kind of an expiry reminder.
const EXPIRY_REMINDER: &str = "token.expiring";

impl LifecycleService {
    /// Applies the inactivity policy: revokes live tokens unused for `tokens.revoke_unused_after`
    /// (never used: created that long ago), reason `inactivity`. With `dry_run`, only lists them.
    pub async fn sweep_inactive(&self, dry_run: bool, actor: &Actor) -> Result<Vec<TokenRecord>, ServiceError> {
        let Some(unused_for) = self.policy().revoke_unused_after else {
            return Err(ServiceError::Invalid(
                "no inactivity policy is configured: set tokens.revoke_unused_after (for example \"180d\")".into(),
            ));
        };
        let query = TokenQuery {
            unused_for: Some(unused_for),
            filter: TokenFilter { sort: "last_used".parse().unwrap_or_default(), ..TokenFilter::default() },
            ..TokenQuery::default()
        };
        let candidates = self.list_tokens(query, actor).await?;
        if dry_run {
            return Ok(candidates);
        }
        let mut revoked = Vec::with_capacity(candidates.len());
        for token in candidates {
            let last = token.last_used_at.unwrap_or(token.created_at);
            let event = actor.event(
                EventKind::TokenRevoked,
                json!({
                    "name": token.name,
                    "prefix": token.prefix,
                    "reason": RevokeReason::Inactivity.as_str(),
                    "unused_since": to_rfc3339(last),
                }),
            );
            let outcome =
                self.store.revoke_token(token.id, &actor.label, RevokeReason::Inactivity, self.now(), &event).await?;
            if let Some((token, true)) = outcome {
                revoked.push(token);
            }
        }
        self.apply_locally().await;
        Ok(revoked)
    }

    /// Whether `tokens.revoke_unused_after` is set: the periodic work sweeps only then, and a sweep
    /// without it is refused.
    pub fn has_inactivity_policy(&self) -> bool {
        self.policy().revoke_unused_after.is_some()
    }

    /// Tells owners of tokens the inactivity policy will revoke within `tokens.warn_before`.
    pub async fn warn_inactive(&self) -> Result<usize, ServiceError> {
        let policy = self.policy();
        let Some(unused_for) = policy.revoke_unused_after else { return Ok(0) };
        let now = self.now();
        let warn_after = unused_for.saturating_sub(policy.warn_before).as_secs() as i64;
        let revoke_after = unused_for.as_secs() as i64;
        let notice_for = |token: &TokenRecord| {
            let last = token.last_used_at.unwrap_or(token.created_at);
            let detail = NoticeDetail {
                name: Some(token.name.clone()),
                prefix: Some(token.prefix.clone()),
                unused_since: Some(to_rfc3339(last)),
                revoked_at: Some(to_rfc3339((last + revoke_after).max(now))),
                ..NoticeDetail::default()
            };
            Notice::from_gateway(INACTIVITY_WARNING, now, detail)
        };
        Ok(self.store.warn_inactive(now - warn_after, now, &notice_for).await?.len())
    }

    /// Queues expiry reminders: for each token, one message per lead time it enters (a token
    /// that has 20 hours left gets the 1-day reminder, once).
    pub async fn queue_expiry_reminders(&self, leads: &[Duration]) -> Result<usize, ServiceError> {
        let now = self.now();
        let mut leads: Vec<i64> = leads.iter().map(|l| l.as_secs() as i64).filter(|l| *l > 0).collect();
        leads.sort_unstable();
        let mut queued = 0;
        let mut reminded = std::collections::HashSet::new();
        // Smallest lead first: a token inside several lead times gets only the nearest one.
        for lead in leads {
            for token in self.store.tokens_expiring_within(lead, now).await? {
                if !reminded.insert(token.id) {
                    continue;
                }
                let detail = NoticeDetail {
                    name: Some(token.name.clone()),
                    prefix: Some(token.prefix.clone()),
                    expires_at: token.expires_at.map(to_rfc3339),
                    ..NoticeDetail::default()
                };
                let notice = Notice::from_gateway(EXPIRY_REMINDER, now, detail);
                let key = format!("expiry:{}:{lead}", token.id);
                let reminder = KeyedNotification {
                    dedupe_key: &key,
                    account_id: token.account_id,
                    recipient: &token.user_email,
                    token_id: token.id,
                    notice: &notice,
                };
                let inserted = self.store.enqueue_once(&reminder, now).await?;
                queued += usize::from(inserted);
            }
        }
        Ok(queued)
    }
}

/// Who the audit log names for automatic actions.
pub fn system_actor() -> Actor {
    Actor::system("system:inactivity")
}

/// Runs the periodic work until `shutdown`: once at start, then every `tokens.sweep_interval`,
/// each round with the settings in force then (`SIGHUP` may change the reminders, the policy
/// or the interval).
pub async fn run(service: std::sync::Arc<LifecycleService>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let settings = service.settings();
        run_once(&service, &settings.expiry_reminders).await;
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(settings.policy.sweep_interval) => {}
        }
    }
}

/// One round; failures are logged and the next round tries again.
pub async fn run_once(service: &LifecycleService, reminders: &[Duration]) {
    match service.queue_expiry_reminders(reminders).await {
        Ok(0) => {}
        Ok(queued) => tracing::info!(queued, "expiry reminders queued"),
        Err(error) => tracing::warn!(%error, "cannot queue expiry reminders"),
    }
    match service.warn_inactive().await {
        Ok(0) => {}
        Ok(warned) => tracing::info!(warned, "inactivity warnings queued"),
        Err(error) => tracing::warn!(%error, "cannot queue inactivity warnings"),
    }
    match service.prune_usage().await {
        Ok(0) => {}
        Ok(pruned) => tracing::info!(pruned, "usage counts older than usage.keep_days pruned"),
        Err(error) => tracing::warn!(%error, "cannot prune old usage counts"),
    }
    if service.has_inactivity_policy() {
        match service.sweep_inactive(false, &system_actor()).await {
            Ok(revoked) if revoked.is_empty() => {}
            Ok(revoked) => tracing::info!(revoked = revoked.len(), "tokens revoked for inactivity"),
            Err(error) => tracing::warn!(%error, "cannot apply the inactivity policy"),
        }
    }
}
