//! What a token is used for: its requests per day, route and outcome, as counted by the
//! gateways, and the retention of those counts.

use super::{Actor, LifecycleService, ServiceError};
use crate::clock::utc_day;
use crate::model::{TokenId, UsageRow};

/// The days a usage document covers when the caller names none.
pub const DEFAULT_USAGE_DAYS: u32 = 30;

impl LifecycleService {
    /// The token's usage over the last `days` UTC days, today included (default
    /// [`DEFAULT_USAGE_DAYS`], at most `usage.keep_days`), for an actor who may see the token.
    pub async fn token_usage(
        &self,
        id: impl Into<TokenId>,
        days: Option<u32>,
        actor: &Actor,
    ) -> Result<(TokenId, u32, Vec<UsageRow>), ServiceError> {
        let days = days.unwrap_or(DEFAULT_USAGE_DAYS);
        if days == 0 || days > self.settings().usage_keep_days {
            return Err(ServiceError::Invalid(format!(
                "days must be from 1 to {} (usage.keep_days: older counts are not kept)",
                self.settings().usage_keep_days
            )));
        }
        let token = self.visible_token(id, actor).await?;
        let first_day = utc_day(self.now()) - (i64::from(days) - 1);
        let rows = self.store.token_usage(token.id, first_day).await?;
        Ok((token.id, days, rows))
    }

    /// Deletes the usage counts of days older than `usage.keep_days`; returns how many rows went.
    pub async fn prune_usage(&self) -> Result<u64, ServiceError> {
        let first_kept_day = utc_day(self.now()) - (i64::from(self.settings().usage_keep_days) - 1);
        Ok(self.store.prune_usage(first_kept_day).await?)
    }
}
