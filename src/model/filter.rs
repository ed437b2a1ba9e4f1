//! What a listing asks for: the token manager's filters and sorts, and the audit log's filter.

use crate::clock::UnixTime;
use crate::model::{AccountId, TokenId};

/// Which tokens a listing shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StatusFilter {
    /// Live, and the owner may hold tokens: what the gateway admits.
    Active,
    /// Live, but refused while the owner is disabled or lacks the token permission.
    Blocked,
    /// Active or blocked: neither revoked nor expired.
    #[default]
    Live,
    /// Revoked (a revocation scheduled by a rotation's grace does not count yet).
    Revoked,
    /// Expired and not revoked.
    Expired,
    /// Every token, dead or alive.
    All,
}

impl std::str::FromStr for StatusFilter {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Ok(match text {
            "active" => StatusFilter::Active,
            "blocked" => StatusFilter::Blocked,
            "live" => StatusFilter::Live,
            "revoked" => StatusFilter::Revoked,
            "expired" => StatusFilter::Expired,
            "all" => StatusFilter::All,
            other => {
                return Err(format!(
                    "unknown status {other:?}: expected active, blocked, live, revoked, expired or all"
                ));
            }
        })
    }
}

/// The order of a listing. Fields without a value (never used, never expires) come last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenSort {
    /// What to sort by.
    pub field: SortField,
    /// Descending (a leading `-`); ties are broken by the token id in the same direction.
    pub descending: bool,
}

/// The value a listing is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortField {
    /// The creation time (`created`): the default, newest first.
    Created,
    /// The name, ignoring case.
    Name,
    /// The owner's email, ignoring case.
    User,
    /// The last admitted use; never-used tokens come last.
    LastUsed,
    /// The expiry; tokens that never expire come last.
    Expires,
    /// The requests of the last 30 days (`requests_30d`): `-requests_30d` finds the busiest,
    /// `requests_30d` the idle.
    Requests30d,
}

impl Default for TokenSort {
    fn default() -> Self {
        TokenSort { field: SortField::Created, descending: true }
    }
}

impl std::str::FromStr for TokenSort {
    type Err = String;
    /// `created`, `name`, `user`, `last_used`, `expires`, `requests_30d`; a leading `-` sorts
    /// descending.
    fn from_str(text: &str) -> Result<Self, String> {
        let (descending, name) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let field = match name {
            "created" | "created_at" => SortField::Created,
            "name" => SortField::Name,
            "user" => SortField::User,
            "last_used" | "last_used_at" => SortField::LastUsed,
            "expires" | "expires_at" => SortField::Expires,
            "requests_30d" => SortField::Requests30d,
            other => {
                return Err(format!(
                    "unknown sort field {other:?}: expected created, name, user, last_used, expires or requests_30d (prefix - for descending)"
                ));
            }
        };
        Ok(TokenSort { field, descending })
    }
}

/// The token manager's filters. Empty `account_ids` means every account.
#[derive(Debug, Clone, Default)]
pub struct TokenFilter {
    /// The owners whose tokens to list (any of them); the service confines an actor who is not a
    /// manager to its own account.
    pub account_ids: Vec<AccountId>,
    /// Text to find in the name or description, ignoring case; `%` and `_` match only themselves.
    pub search: Option<String>,
    /// Which lifecycle states to show; live tokens by default.
    pub status: StatusFilter,
    /// Created at or after this time.
    pub created_after: Option<UnixTime>,
    /// Created before this time.
    pub created_before: Option<UnixTime>,
    /// Last used at or after this time.
    pub used_after: Option<UnixTime>,
    /// Last used before this time.
    pub used_before: Option<UnixTime>,
    /// Only tokens never used.
    pub never_used: bool,
    /// Expiring at or after this time.
    pub expires_after: Option<UnixTime>,
    /// Expiring before this time.
    pub expires_before: Option<UnixTime>,
    /// Only tokens without an expiry: what a stricter policy (`token cap-expiry`) would reach.
    pub no_expiry: bool,
    /// Not used since this time (or never used and created before it).
    pub unused_since: Option<UnixTime>,
    /// The order of the result.
    pub sort: TokenSort,
}

/// Which events to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only events about this account.
    pub account_id: Option<AccountId>,
    /// Only events about this token.
    pub token_id: Option<TokenId>,
    /// Exact kind (`token.revoked`), or a prefix ending in `.` (`token.`).
    pub kind: Option<String>,
    /// Only events at or after this time.
    pub since: Option<UnixTime>,
    /// Only events before this time.
    pub until: Option<UnixTime>,
    /// At most this many events; the surfaces bound it (`--limit`, `limit`).
    pub limit: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_and_status_parse() {
        assert_eq!("-last_used".parse::<TokenSort>(), Ok(TokenSort { field: SortField::LastUsed, descending: true }));
        assert!("colour".parse::<TokenSort>().is_err());
        assert_eq!("live".parse::<StatusFilter>(), Ok(StatusFilter::Live));
        assert!("dead".parse::<StatusFilter>().is_err());
    }
}
