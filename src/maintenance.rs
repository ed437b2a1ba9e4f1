//! Periodic lifecycle work inside `serve`, every `tokens.sweep_interval`: expiry reminders,
//! inactivity warnings, and revocation of tokens unused for `tokens.revoke_unused_after`.
//! Every gateway runs it; each step is idempotent (reminders are keyed, warnings are marked,
//! revoking a revoked token changes nothing), so several gateways do no harm.

use std::time::Duration;

use crate::service::{Actor, LifecycleService};

/// Who the audit log names for automatic actions.
pub fn system_actor() -> Actor {
    Actor::system("system:inactivity")
}

/// Runs the periodic work until `shutdown`: once at start, then every `interval`.
pub async fn run(
    service: std::sync::Arc<LifecycleService>,
    reminders: Vec<Duration>,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        run_once(&service, &reminders).await;
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(interval) => {}
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
    if service.has_inactivity_policy() {
        match service.sweep_inactive(false, &system_actor()).await {
            Ok(revoked) if revoked.is_empty() => {}
            Ok(revoked) => tracing::info!(revoked = revoked.len(), "tokens revoked for inactivity"),
            Err(error) => tracing::warn!(%error, "cannot apply the inactivity policy"),
        }
    }
}
