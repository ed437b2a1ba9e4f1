//! Reading the audit log: by email rather than account id, confined to the caller's own
//! events unless the caller manages tokens.

use super::{Actor, LifecycleService, ServiceError};
use crate::model::{EventFilter, EventRecord, TokenId};

/// Audit-log filters as people write them: by email rather than account id.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// The account whose events to list, by email; an actor who is not a manager may name only its
    /// own, and gets its own when it names none.
    pub user: Option<String>,
    /// The other filters.
    pub filter: EventFilter,
}

impl LifecycleService {
    /// The CLI's audit listing (host authority): `user`'s or `token_id`'s events, newest first, at
    /// most `limit`.
    pub async fn events(
        &self,
        user: Option<&str>,
        token_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<EventRecord>, ServiceError> {
        let filter = EventFilter { token_id: token_id.map(TokenId), limit, ..EventFilter::default() };
        self.find_events(EventQuery { user: user.map(str::to_owned), filter }, &Actor::cli()).await
    }

    /// The audit log, filtered, newest first; an account that is not a manager reads its own.
    pub async fn find_events(&self, mut query: EventQuery, actor: &Actor) -> Result<Vec<EventRecord>, ServiceError> {
        let asked: Vec<String> = query.user.iter().cloned().collect();
        if let Some(own) = actor.confine_to_own(&asked, "read the events of")? {
            query.user = Some(own);
        }
        let mut filter = query.filter;
        if let Some(email) = &query.user {
            filter.account_id = Some(self.account(email).await?.id);
        }
        Ok(self.store.list_events(&filter).await?)
    }
}
