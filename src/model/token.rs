//! Tokens: the stored record (never the secret), its status, and the one rule for when a token
//! is live — in Rust here, and as the SQL fragment every query that means "live" uses.

use crate::clock::UnixTime;
use crate::model::{AccountId, TokenId};

/// A token's metadata as listed and shown (never the secret: nothing stores it).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenRecord {
    /// The database id: what commands, URLs (`/api/v1/tokens/{id}`), audit events and the change
    /// log name the token by.
    pub id: TokenId,
    /// The owner's account id: what the index and the permission checks key on.
    pub account_id: AccountId,
    /// The owner's email, joined in: every surface shows tokens by owner.
    pub user_email: String,
    /// Unique among the owner's live tokens.
    pub name: String,
    /// Free text from its creator; searched by the listing's `search` filter.
    pub description: Option<String>,
    /// The first characters of the secret: enough to recognise it, never to use it.
    pub prefix: String,
    /// Space-separated, as stored.
    pub scopes: String,
    /// The token's own rate, as written (`100/min burst 20`); `None`: the default applies.
    pub rate_limit: Option<String>,
    /// When it was minted.
    pub created_at: UnixTime,
    /// Who minted it, as the audit log names actors (an email, `cli:<os user>`).
    pub created_by: String,
    /// `None`: it never expires (only where the policy allowed it).
    pub expires_at: Option<UnixTime>,
    /// In the future while a rotation's grace runs.
    pub revoked_at: Option<UnixTime>,
    /// Who revoked it, named as the audit log names actors.
    pub revoked_by: Option<String>,
    /// Why: a [`RevokeReason`] as stored.
    pub revoke_reason: Option<String>,
    /// The token this one succeeded in a rotation.
    pub rotated_from: Option<TokenId>,
    /// The token that succeeded this one: a token is rotated at most once.
    pub rotated_to: Option<TokenId>,
    /// The last admitted use, as the gateways recorded it.
    pub last_used_at: Option<UnixTime>,
    /// The method of the last admitted use.
    pub last_used_method: Option<String>,
    /// The path of the last admitted use.
    pub last_used_path: Option<String>,
    /// The client IP of the last admitted use.
    pub last_used_ip: Option<String>,
    /// Uses of this token while it was dead (revoked, expired or blocked), and the latest one:
    /// who still holds a token that should be gone.
    pub refused_count: i64,
    /// When the latest refused use happened.
    pub refused_last_at: Option<UnixTime>,
    /// The client IP of the latest refused use.
    pub refused_last_ip: Option<String>,
    /// The method of the latest refused use.
    pub refused_last_method: Option<String>,
    /// The path of the latest refused use.
    pub refused_last_path: Option<String>,
    /// The owner's flags, joined in: they make a live token blocked.
    pub account_enabled: bool,
    /// The owner's token permission; without it a live token is blocked like a disabled account's.
    pub account_can_create_tokens: bool,
    /// Requests in the last 30 UTC days (today included), in listings only: `None` elsewhere.
    #[sqlx(default)]
    pub requests_30d: Option<i64>,
}

/// The lifecycle state of a token at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStatus {
    /// Live, and its owner may hold tokens: the gateway admits it.
    Active,
    /// Revoked at a time that has passed (a revocation scheduled by a rotation's grace is not one
    /// yet).
    Revoked,
    /// Past its `expires_at`.
    Expired,
    /// The account is disabled or lacks the token permission; undone when that changes.
    Blocked,
}

impl TokenStatus {
    /// The name the JSON, the table and the listing's `status` filter use.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Active => "active",
            TokenStatus::Revoked => "revoked",
            TokenStatus::Expired => "expired",
            TokenStatus::Blocked => "blocked",
        }
    }
}

/// Whether a token with these times is live at `now`: not revoked (a revocation scheduled for
/// later, during a rotation's grace, does not count yet) and not expired. The one rule; the
/// SQL form is [`live_sql`].
pub fn is_live(revoked_at: Option<UnixTime>, expires_at: Option<UnixTime>, now: UnixTime) -> bool {
    revoked_at.is_none_or(|at| at > now) && expires_at.is_none_or(|at| at > now)
}

/// [`is_live`] as SQL, for the token table aliased `alias` (`t`, or `""` for none) and the
/// placeholder holding now (`$1`).
pub fn live_sql(alias: &str, now: &str) -> String {
    let column = |name: &str| if alias.is_empty() { name.to_owned() } else { format!("{alias}.{name}") };
    let (revoked, expires) = (column("revoked_at"), column("expires_at"));
    format!("({revoked} IS NULL OR {revoked} > {now}) AND ({expires} IS NULL OR {expires} > {now})")
}

impl TokenRecord {
    /// The status at `now`. Revoked and expired come before blocked: a dead token never shows as
    /// merely blocked, which an account change could undo.
    pub fn status(&self, now: UnixTime) -> TokenStatus {
        if self.revoked_at.is_some_and(|at| at <= now) {
            TokenStatus::Revoked
        } else if !is_live(None, self.expires_at, now) {
            TokenStatus::Expired
        } else if !(self.account_enabled && self.account_can_create_tokens) {
            TokenStatus::Blocked
        } else {
            TokenStatus::Active
        }
    }

    /// The scopes as a list, from their stored space-separated form.
    pub fn scope_list(&self) -> Vec<String> {
        self.scopes.split_whitespace().map(str::to_owned).collect()
    }
}

/// A token to mint: its digest and display prefix, never the secret.
pub struct NewToken {
    /// The owner; the service has checked it may hold tokens.
    pub account_id: AccountId,
    /// Unique among the owner's live tokens; the store's unique index enforces it too.
    pub name: String,
    /// Free text from its creator.
    pub description: Option<String>,
    /// SHA-256 of the secret: the only form of it that is stored, and what the index looks the
    /// token up by.
    pub digest: [u8; 32],
    /// The display prefix, cut from the secret before it was hashed.
    pub prefix: String,
    /// Checked against the policy; stored space-separated.
    pub scopes: Vec<String>,
    /// The token's own rate, as written (`100/min burst 20`); `None`: the default applies.
    pub rate_limit: Option<String>,
    /// The actor, as the audit log names it.
    pub created_by: String,
    /// `None`: never (only where the policy allows it).
    pub expires_at: Option<UnixTime>,
    /// The token this one replaces, when minted by a rotation.
    pub rotated_from: Option<TokenId>,
    /// Set when the predecessor stays valid until this token's first use.
    pub handover_from: Option<TokenId>,
}

/// Why a token was revoked (`revoke_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    /// `token revoke`, or `DELETE /api/v1/tokens/{id}`.
    Manual,
    /// `token revoke-all`: every live token of an account at once.
    RevokeAll,
    /// Succeeded in a rotation: at once, after a grace, or at the successor's first use.
    Rotation,
    /// Unused for `tokens.revoke_unused_after` (the inactivity sweep).
    Inactivity,
}

impl RevokeReason {
    /// The stored `revoke_reason`, also the audit detail's `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Manual => "manual",
            RevokeReason::RevokeAll => "revoke_all",
            RevokeReason::Rotation => "rotation",
            RevokeReason::Inactivity => "inactivity",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_means_neither_revoked_nor_expired_yet() {
        assert!(is_live(None, None, 100));
        assert!(is_live(Some(101), Some(101), 100), "a scheduled revocation is not one yet");
        assert!(!is_live(Some(100), None, 100) && !is_live(None, Some(100), 100));
        assert_eq!(
            live_sql("t", "$1"),
            "(t.revoked_at IS NULL OR t.revoked_at > $1) AND (t.expires_at IS NULL OR t.expires_at > $1)"
        );
        assert!(live_sql("", "$2").starts_with("(revoked_at IS NULL OR revoked_at > $2)"));
    }
}
