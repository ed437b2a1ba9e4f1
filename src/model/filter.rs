//! What a listing asks for: the token manager's filters and sorts, and the audit log's filter.

use crate::clock::UnixTime;

/// Which tokens a listing shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StatusFilter {
    Active,
    Blocked,
    /// Active or blocked: neither revoked nor expired.
    #[default]
    Live,
    Revoked,
    Expired,
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
    pub field: SortField,
    pub descending: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortField {
    Created,
    Name,
    User,
    LastUsed,
    Expires,
}

impl Default for TokenSort {
    fn default() -> Self {
        TokenSort { field: SortField::Created, descending: true }
    }
}

impl std::str::FromStr for TokenSort {
    type Err = String;
    /// `created`, `name`, `user`, `last_used`, `expires`; a leading `-` sorts descending.
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
            other => {
                return Err(format!(
                    "unknown sort field {other:?}: expected created, name, user, last_used or expires (prefix - for descending)"
                ));
            }
        };
        Ok(TokenSort { field, descending })
    }
}

/// The token manager's filters. Empty `account_ids` means every account.
#[derive(Debug, Clone, Default)]
pub struct TokenFilter {
    pub account_ids: Vec<i64>,
    pub search: Option<String>,
    pub status: StatusFilter,
    pub created_after: Option<UnixTime>,
    pub created_before: Option<UnixTime>,
    pub used_after: Option<UnixTime>,
    pub used_before: Option<UnixTime>,
    pub never_used: bool,
    pub expires_after: Option<UnixTime>,
    pub expires_before: Option<UnixTime>,
    /// Not used since this time (or never used and created before it).
    pub unused_since: Option<UnixTime>,
    pub sort: TokenSort,
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
