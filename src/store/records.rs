//! Rows as the store returns them, and the inputs of its writes. Plain data, no HTTP.

use crate::clock::UnixTime;

/// The permission and role flags of an account.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AccountRecord {
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
    pub superuser: bool,
    pub token_manager: bool,
    pub enabled: bool,
    pub can_create_tokens: bool,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

impl AccountRecord {
    /// Whether the account's tokens are usable: enabled and allowed to hold tokens.
    pub fn tokens_usable(&self) -> bool {
        self.enabled && self.can_create_tokens
    }
}

/// An account with its number of live (not revoked, not expired) tokens.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountSummary {
    #[sqlx(flatten)]
    pub account: AccountRecord,
    pub live_tokens: i64,
}

pub struct NewAccount {
    pub email: String,
    pub name: Option<String>,
    pub superuser: bool,
    pub token_manager: bool,
    pub can_create_tokens: bool,
}

/// Changes to an account; `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct AccountChanges {
    pub enabled: Option<bool>,
    pub superuser: Option<bool>,
    pub token_manager: Option<bool>,
    pub can_create_tokens: Option<bool>,
}

/// A token's metadata as listed and shown (never the secret: the store does not have it).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenRecord {
    pub id: i64,
    pub account_id: i64,
    pub user_email: String,
    pub name: String,
    pub description: Option<String>,
    pub prefix: String,
    /// Space-separated, as stored.
    pub scopes: String,
    pub rate_limit: Option<String>,
    pub created_at: UnixTime,
    pub created_by: String,
    pub expires_at: Option<UnixTime>,
    pub revoked_at: Option<UnixTime>,
    pub revoked_by: Option<String>,
    pub revoke_reason: Option<String>,
    pub rotated_from: Option<i64>,
    pub rotated_to: Option<i64>,
    pub last_used_at: Option<UnixTime>,
    pub last_used_method: Option<String>,
    pub last_used_path: Option<String>,
    pub last_used_ip: Option<String>,
    pub refused_count: i64,
    pub refused_last_at: Option<UnixTime>,
    pub refused_last_ip: Option<String>,
    pub refused_last_method: Option<String>,
    pub refused_last_path: Option<String>,
    pub account_enabled: bool,
    pub account_can_create_tokens: bool,
}

/// The lifecycle state of a token at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStatus {
    Active,
    Revoked,
    Expired,
    /// The account is disabled or lacks the token permission; undone when that changes.
    Blocked,
}

impl TokenStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Active => "active",
            TokenStatus::Revoked => "revoked",
            TokenStatus::Expired => "expired",
            TokenStatus::Blocked => "blocked",
        }
    }
}

impl TokenRecord {
    pub fn status(&self, now: UnixTime) -> TokenStatus {
        if self.revoked_at.is_some_and(|at| at <= now) {
            TokenStatus::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            TokenStatus::Expired
        } else if !(self.account_enabled && self.account_can_create_tokens) {
            TokenStatus::Blocked
        } else {
            TokenStatus::Active
        }
    }

    pub fn scope_list(&self) -> Vec<String> {
        self.scopes.split_whitespace().map(str::to_owned).collect()
    }
}

pub struct NewToken {
    pub account_id: i64,
    pub name: String,
    pub description: Option<String>,
    pub digest: [u8; 32],
    pub prefix: String,
    pub scopes: Vec<String>,
    pub rate_limit: Option<String>,
    pub created_by: String,
    pub expires_at: Option<UnixTime>,
    /// The token this one replaces, when minted by a rotation.
    pub rotated_from: Option<i64>,
    /// Set when the predecessor stays valid until this token's first use.
    pub handover_from: Option<i64>,
}

/// Why a token was revoked (`revoke_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    Manual,
    RevokeAll,
    Rotation,
    Inactivity,
}

impl RevokeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Manual => "manual",
            RevokeReason::RevokeAll => "revoke_all",
            RevokeReason::Rotation => "rotation",
            RevokeReason::Inactivity => "inactivity",
        }
    }
}

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

/// An audit event to append with a mutation. The store fills in the account and token.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: &'static str,
    pub actor: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: serde_json::Value,
    /// Also tell the account's owner (through the notification outbox).
    pub notify: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRecord {
    pub id: i64,
    pub at: UnixTime,
    pub kind: String,
    pub actor: String,
    pub account: Option<String>,
    pub token_id: Option<i64>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// JSON object text.
    pub detail: String,
}

/// Which events to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub account_id: Option<i64>,
    pub token_id: Option<i64>,
    /// Exact kind (`token.revoked`), or a prefix ending in `.` (`token.`).
    pub kind: Option<String>,
    pub since: Option<UnixTime>,
    pub until: Option<UnixTime>,
    pub limit: i64,
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
