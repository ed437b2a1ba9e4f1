//! Accounts: who holds tokens, and the roles and permissions that bound what they may do.

use crate::clock::UnixTime;
use crate::model::AccountId;

/// An account as stored: its identity and the flags every permission rule reads.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AccountRecord {
    /// The database id: what tokens, events and the change log refer to.
    pub id: AccountId,
    /// As the owner wrote it; compared without case.
    pub email: String,
    /// A display name.
    pub name: Option<String>,
    /// Manages every account and token.
    pub superuser: bool,
    /// Sees, creates and revokes every account's tokens, but changes no account.
    pub token_manager: bool,
    /// A disabled account's tokens are blocked (kept, answering 401).
    pub enabled: bool,
    /// The token permission: without it the account's tokens are blocked too.
    pub can_create_tokens: bool,
    /// When it was created.
    pub created_at: UnixTime,
    /// When its flags last changed.
    pub updated_at: UnixTime,
}

impl AccountRecord {
    /// Whether the account's tokens are usable: enabled and allowed to hold tokens.
    pub fn tokens_usable(&self) -> bool {
        self.enabled && self.can_create_tokens
    }
}

/// Whether changing an account from `before` to `after` takes away an enabled superuser: then
/// at least one other must remain, or nobody could manage accounts through the API or the page.
/// (The store applies it inside the write transaction, so two superusers demoting each other at
/// once cannot both succeed.)
pub fn removes_a_superuser(before: &AccountRecord, after: &AccountRecord) -> bool {
    before.superuser && before.enabled && !(after.superuser && after.enabled)
}

/// What a change does to the account's live tokens, as each token's own history tells it:
/// blocked (the account was disabled or lost the token permission), unblocked, or nothing.
pub fn token_event_of_change(before: &AccountRecord, after: &AccountRecord) -> Option<super::EventKind> {
    match (before.tokens_usable(), after.tokens_usable()) {
        (true, false) => Some(super::EventKind::TokenBlocked),
        (false, true) => Some(super::EventKind::TokenUnblocked),
        _ => None,
    }
}

/// An account with its number of live (not revoked, not expired) tokens.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountSummary {
    /// The account.
    #[sqlx(flatten)]
    pub account: AccountRecord,
    /// Its live tokens: `user list`'s `TOKENS` column.
    pub live_tokens: i64,
}

/// An account to create.
pub struct NewAccount {
    /// Its name and the Basic user name of its tokens; unique without case.
    pub email: String,
    /// A display name.
    pub name: Option<String>,
    /// Manages every account and token.
    pub superuser: bool,
    /// Sees, creates and revokes every account's tokens, but changes no account.
    pub token_manager: bool,
    /// The token permission; `false` for an account that must never hold tokens.
    pub can_create_tokens: bool,
}

/// Changes to an account; `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct AccountChanges {
    /// Disable (the account's tokens are blocked) or enable again.
    pub enabled: Option<bool>,
    /// Grant or take away superuser; the last enabled superuser cannot lose it.
    pub superuser: Option<bool>,
    /// Grant or take away token management.
    pub token_manager: Option<bool>,
    /// Grant or take away the token permission (without it the account's tokens are blocked).
    pub can_create_tokens: Option<bool>,
}
