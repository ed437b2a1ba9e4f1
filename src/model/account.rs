//! Accounts: who holds tokens, and the roles and permissions that bound what they may do.

use crate::clock::UnixTime;

/// An account as stored: its identity and the flags every permission rule reads.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AccountRecord {
    pub id: i64,
    /// As the owner wrote it; compared without case.
    pub email: String,
    pub name: Option<String>,
    /// Manages every account and token.
    pub superuser: bool,
    /// Sees, creates and revokes every account's tokens, but changes no account.
    pub token_manager: bool,
    /// A disabled account's tokens are blocked (kept, answering 401).
    pub enabled: bool,
    /// The token permission: without it the account's tokens are blocked too.
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

/// An account to create.
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
