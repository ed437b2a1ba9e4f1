//! The in-memory index the data path reads: token digest → token, account id → account.
//! Kept in step with the database by `sync`. The data path writes it in one case only: a
//! rotation's hand-over, applied here at once (`update_locally`) after it was written to the
//! database, so the old token's very next request is refused in this process too.

use std::sync::Arc;

use dashmap::DashMap;
use http::HeaderValue;

use crate::clock::{UnixTime, to_rfc3339};
use crate::control::store::{IndexAccountRow, IndexTokenRow};
use crate::model::rate::Rate;
use crate::model::secret::TokenDigest;

/// What the gateway knows of a token. Revoked tokens stay in the index so that their use can
/// be told apart from an unknown token.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedToken {
    /// The token's database id: in the identity headers, the usage records and audit events.
    pub id: i64,
    /// The owner, whose [`IndexedAccount`] every request also checks.
    pub account_id: i64,
    /// The token's name, for `GET /api/v1/me`.
    pub name: Box<str>,
    /// The scopes routes and the admin API check; `*` carries every scope.
    pub scopes: Box<[Box<str>]>,
    /// The token's own limit, parsed once; `None`: `rate_limit.default` applies.
    pub rate_limit: Option<Rate>,
    /// `None`: it never expires.
    pub expires_at: Option<UnixTime>,
    /// When it is (or will be, during a rotation's grace) revoked.
    pub revoked_at: Option<UnixTime>,
    /// A rotation's predecessor, valid until this token is first used.
    pub handover_from: Option<i64>,
    /// Built once here so the data path only clones them.
    pub headers: IdentityHeaders,
}

/// The header values the proxy sends for a token, prebuilt.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityHeaders {
    /// `X-Auth-Token-Id`.
    pub id: HeaderValue,
    /// `X-Auth-Token-Name`.
    pub name: HeaderValue,
    /// Space-separated.
    pub scopes: HeaderValue,
    /// RFC 3339, for `X-Auth-Token-Expires`.
    pub expires: Option<HeaderValue>,
}

/// A header value from text the database holds; characters a header cannot carry become `?`.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_bytes(text.as_bytes()).unwrap_or_else(|_| {
        let cleaned: String = text.chars().map(|c| if c.is_control() { '?' } else { c }).collect();
        HeaderValue::from_bytes(cleaned.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static("?"))
    })
}

impl IndexedToken {
    /// Whether the token carries `scope` (see [`crate::model::scope::grants`]).
    pub fn has_scope(&self, scope: &str) -> bool {
        crate::model::scope::carries(&self.scopes, scope)
    }

    /// Whether the token has expired by `now`.
    pub fn is_expired(&self, now: UnixTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Whether the token's revocation has taken effect by `now` (a scheduled one has not yet).
    pub fn is_revoked(&self, now: UnixTime) -> bool {
        self.revoked_at.is_some_and(|at| at <= now)
    }

    fn from_row(row: IndexTokenRow) -> Option<(TokenDigest, IndexedToken)> {
        let digest = TokenDigest::from_bytes(&row.digest)?;
        let headers = IdentityHeaders {
            id: HeaderValue::from(row.id),
            name: header_value(&row.name),
            scopes: header_value(&row.scopes.split_whitespace().collect::<Vec<_>>().join(" ")),
            expires: row.expires_at.map(|at| header_value(&to_rfc3339(at))),
        };
        let token = IndexedToken {
            id: row.id,
            account_id: row.account_id,
            name: row.name.into_boxed_str(),
            scopes: row.scopes.split_whitespace().map(Box::from).collect(),
            // A limit the database holds was valid when written; an unreadable one means no limit
            // rather than a token that can never be used.
            rate_limit: row.rate_limit.as_deref().and_then(|r| r.parse().ok()),
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            handover_from: row.handover_from,
            headers,
        };
        Some((digest, token))
    }
}

/// What the gateway knows of an account.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedAccount {
    /// The account's id, which tokens refer to.
    pub id: i64,
    /// As the owner wrote it, for the identity header.
    pub email: Box<str>,
    /// `X-Auth-User`: the email, prebuilt once like the token's headers.
    pub email_header: HeaderValue,
    /// Lower-cased, for matching the credentials' user name.
    pub email_norm: Box<str>,
    /// A disabled account's tokens are refused until it is enabled again.
    pub enabled: bool,
    /// The token permission: without it the account's tokens are refused like a disabled account's.
    pub can_create_tokens: bool,
}

impl IndexedAccount {
    /// Whether `presented` is this account's email, ignoring case.
    pub fn email_matches(&self, presented: &str) -> bool {
        if presented.is_ascii() {
            presented.eq_ignore_ascii_case(&self.email_norm)
        } else {
            presented.to_lowercase() == *self.email_norm
        }
    }
}

impl From<IndexAccountRow> for IndexedAccount {
    fn from(row: IndexAccountRow) -> Self {
        IndexedAccount {
            id: row.id,
            email_header: header_value(&row.email),
            email: row.email.into_boxed_str(),
            email_norm: row.email_norm.into_boxed_str(),
            enabled: row.enabled,
            can_create_tokens: row.can_create_tokens,
        }
    }
}

/// The index itself. Lookups clone an `Arc` out and release the shard lock at once.
#[derive(Debug, Default)]
pub struct TokenIndex {
    tokens: DashMap<TokenDigest, Arc<IndexedToken>>,
    /// Token id → digest, for changes the gateway itself makes (a rotation's hand-over).
    digests: DashMap<i64, TokenDigest>,
    accounts: DashMap<i64, Arc<IndexedAccount>>,
}

impl TokenIndex {
    /// An empty index; sync loads it before the gateway serves.
    pub fn new() -> Self {
        Self::default()
    }

    /// The token with this digest, revoked and expired ones included; `None`: unknown.
    pub fn token(&self, digest: &TokenDigest) -> Option<Arc<IndexedToken>> {
        self.tokens.get(digest).map(|entry| Arc::clone(entry.value()))
    }

    /// The account with this id; `None`: not loaded (its tokens are then refused as unknown).
    pub fn account(&self, id: i64) -> Option<Arc<IndexedAccount>> {
        self.accounts.get(&id).map(|entry| Arc::clone(entry.value()))
    }

    /// Inserts or replaces a token from its database row. Rows with a malformed digest are
    /// skipped (they could never match a presented secret).
    pub fn upsert_token(&self, row: IndexTokenRow) {
        if let Some((digest, token)) = IndexedToken::from_row(row) {
            self.digests.insert(token.id, digest);
            self.tokens.insert(digest, Arc::new(token));
        }
    }

    /// Applies a change to one token in this process only, ahead of the change log that will
    /// bring the same change to every other gateway (a rotation's hand-over).
    pub fn update_locally(&self, id: i64, change: impl FnOnce(&mut IndexedToken)) {
        let Some(digest) = self.digests.get(&id).map(|d| *d) else { return };
        if let Some(mut entry) = self.tokens.get_mut(&digest) {
            let mut token = IndexedToken::clone(&entry);
            change(&mut token);
            *entry = Arc::new(token);
        }
    }

    /// Inserts or replaces an account from its database row.
    pub fn upsert_account(&self, row: IndexAccountRow) {
        self.accounts.insert(row.id, Arc::new(IndexedAccount::from(row)));
    }

    /// How many tokens the index holds (the `tokengate_index_tokens` gauge).
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_row(id: i64, secret: &str, scopes: &str) -> IndexTokenRow {
        IndexTokenRow {
            id,
            account_id: 1,
            name: format!("t{id}"),
            digest: TokenDigest::of(secret).as_bytes().to_vec(),
            scopes: scopes.into(),
            rate_limit: Some("10/s".into()),
            expires_at: Some(100),
            revoked_at: None,
            handover_from: None,
        }
    }

    #[test]
    fn upsert_replaces_and_lookup_finds_by_digest() {
        let index = TokenIndex::new();
        index.upsert_token(token_row(1, "secret-one", "read"));
        let found = index.token(&TokenDigest::of("secret-one")).unwrap();
        assert!(found.has_scope("read") && !found.has_scope("write"));
        assert_eq!(found.rate_limit.map(|r| r.to_string()).as_deref(), Some("10/s"));
        let mut revoked = token_row(1, "secret-one", "*");
        revoked.revoked_at = Some(50);
        index.upsert_token(revoked);
        let found = index.token(&TokenDigest::of("secret-one")).unwrap();
        assert!(found.is_revoked(50) && !found.is_revoked(49) && found.has_scope("write"));
        assert!(found.is_expired(100) && !found.is_expired(99));
        assert!(index.token(&TokenDigest::of("secret-two")).is_none());
        assert_eq!(index.token_count(), 1);
    }

    #[test]
    fn emails_match_without_case() {
        let account = IndexedAccount::from(IndexAccountRow {
            id: 1,
            email: "Ann@Example.com".into(),
            email_norm: "ann@example.com".into(),
            enabled: true,
            can_create_tokens: true,
        });
        assert!(account.email_matches("ANN@example.COM"));
        assert!(!account.email_matches("bob@example.com"));
    }
}
