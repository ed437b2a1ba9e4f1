//! The store's own rows: what the index loads, the change log, and what one usage flush writes.
//! The domain's records (accounts, tokens, events) live in [`crate::model`].

use crate::clock::UnixTime;

/// What the in-memory index needs of a token: no names of people, no usage.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IndexTokenRow {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
    pub digest: Vec<u8>,
    pub scopes: String,
    pub rate_limit: Option<String>,
    pub expires_at: Option<UnixTime>,
    /// In the future while a rotation's grace runs.
    pub revoked_at: Option<UnixTime>,
    /// The predecessor that stays valid until this token's first use.
    pub handover_from: Option<i64>,
}

/// What the in-memory index needs of an account.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IndexAccountRow {
    pub id: i64,
    pub email: String,
    pub email_norm: String,
    pub enabled: bool,
    pub can_create_tokens: bool,
}

/// One row of the change log: the account and/or token whose state must be re-read.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChangeRow {
    pub seq: i64,
    pub account_id: Option<i64>,
    pub token_id: Option<i64>,
}

/// What one flush writes.
#[derive(Debug, Clone, Default)]
pub struct ActivityBatch {
    pub uses: Vec<UsageRecord>,
    pub refusals: Vec<RefusalRecord>,
    pub handovers: Vec<HandoverRecord>,
}

impl ActivityBatch {
    pub fn is_empty(&self) -> bool {
        self.uses.is_empty() && self.refusals.is_empty() && self.handovers.is_empty()
    }

    pub fn len(&self) -> usize {
        self.uses.len() + self.refusals.len() + self.handovers.len()
    }
}

/// Attempts with a dead (revoked, expired or blocked) token since the last flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalRecord {
    pub token_id: i64,
    pub count: i64,
    pub at: UnixTime,
    pub reason: &'static str,
    pub method: String,
    pub path: String,
    pub ip: String,
    pub user_agent: Option<String>,
}

/// A rotation successor's first use, which ends its predecessor's hand-over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoverRecord {
    pub successor_id: i64,
    pub predecessor_id: i64,
    pub at: UnixTime,
}

/// One token's last use, as recorded by the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub token_id: i64,
    pub at: UnixTime,
    pub method: String,
    pub path: String,
    pub ip: String,
}
