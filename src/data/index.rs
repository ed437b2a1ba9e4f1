//! The in-memory index the data path reads: token digest → token, account id → account.
//! Kept in step with the database by `sync`. The data path writes it in one case only: a
//! rotation's hand-over, applied here at once (`update_locally`) after it was written to the
//! database, so the old token's very next request is refused in this process too.
//!
//! Built for a million tokens and more (about 245 bytes each, the map's own share included;
//! measured by `benches/index_scale.rs`): one map entry per token, keyed by its digest,
//! pointing at one small [`IndexedToken`] whose name is its one other allocation. There is no
//! map from token id to digest: the one change the data path makes, a rotation's hand-over,
//! finds the predecessor by the digest its successor carries. What many tokens have in common
//! — their scopes with the `X-Auth-Scopes` header built from them, and their rate limit — is
//! interned once as [`Terms`] and shared. The identity headers that differ per token are built
//! per request where that is cheap (the id and the expiry) or kept as the one value the token
//! needs anyway (the name). Before, each token held four prebuilt header values, its scopes
//! and name as separate allocations, and the id → digest map: about 800 bytes per token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use http::HeaderValue;

use crate::clock::{UnixTime, rfc3339_bytes, to_rfc3339};
use crate::control::store::{IndexAccountRow, IndexTokenRef, IndexTokenRow};
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
    /// `None`: it never expires.
    pub expires_at: Option<UnixTime>,
    /// When it is (or will be, during a rotation's grace) revoked.
    pub revoked_at: Option<UnixTime>,
    /// A rotation's predecessor, valid until this token is first used. Boxed: few tokens have
    /// one, and the rest pay one pointer.
    handover: Option<Box<Predecessor>>,
    name: TokenName,
    terms: Arc<Terms>,
}

/// A rotation's predecessor, as its successor's first use needs it: to revoke it in the
/// database (by id) and in this index (by digest).
#[derive(Debug, Clone, PartialEq)]
pub struct Predecessor {
    /// The predecessor's id.
    pub id: i64,
    /// Its digest, to find it in the index; `None` when the database no longer has it.
    pub digest: Option<TokenDigest>,
}

/// A token's name, kept as the header value it is sent as (`X-Auth-Token-Name`): one
/// allocation per token, which each request only clones.
#[derive(Debug, Clone, PartialEq)]
enum TokenName {
    /// The usual case: the name as it was written is a valid header value.
    Header(HeaderValue),
    /// A name with characters no header can carry: kept as written (for `GET /api/v1/me`),
    /// beside the header value that shows them as `?`.
    Cleaned(Box<(Box<str>, HeaderValue)>),
}

/// What a token may do and how often: its scopes (with the `X-Auth-Scopes` value built from
/// them once) and its rate limit. Shared by every token with the same scopes and limit, so a
/// million tokens with a handful of scope sets hold a handful of these.
#[derive(Debug, PartialEq)]
pub struct Terms {
    scopes: Box<[Box<str>]>,
    scopes_header: HeaderValue,
    rate_limit: Option<Rate>,
    /// The rate as written: the interning key beside the scopes.
    rate_text: Option<Box<str>>,
}

/// A header value from text the database holds; characters a header cannot carry become `?`.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_bytes(text.as_bytes()).unwrap_or_else(|_| {
        let cleaned: String = text.chars().map(|c| if c.is_control() { '?' } else { c }).collect();
        HeaderValue::from_bytes(cleaned.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static("?"))
    })
}

impl TokenName {
    fn new(name: &str) -> TokenName {
        match HeaderValue::from_bytes(name.as_bytes()) {
            Ok(header) => TokenName::Header(header),
            Err(_) => TokenName::Cleaned(Box::new((name.into(), header_value(name)))),
        }
    }

    fn header(&self) -> &HeaderValue {
        match self {
            TokenName::Header(header) => header,
            TokenName::Cleaned(both) => &both.1,
        }
    }

    fn text(&self) -> &str {
        match self {
            // Built from a `&str` unchanged, so always UTF-8.
            TokenName::Header(header) => std::str::from_utf8(header.as_bytes()).unwrap_or_default(),
            TokenName::Cleaned(both) => &both.0,
        }
    }
}

impl IndexedToken {
    /// The token's name, for `GET /api/v1/me`.
    pub fn name(&self) -> &str {
        self.name.text()
    }

    /// The scopes routes and the admin API check; `*` carries every scope.
    pub fn scopes(&self) -> &[Box<str>] {
        &self.terms.scopes
    }

    /// Whether the token carries `scope` (see [`crate::model::scope::grants`]).
    pub fn has_scope(&self, scope: &str) -> bool {
        crate::model::scope::carries(&self.terms.scopes, scope)
    }

    /// The token's own limit, parsed once per distinct limit; `None`: `rate_limit.default`
    /// applies.
    pub fn rate_limit(&self) -> Option<Rate> {
        self.terms.rate_limit
    }

    /// A rotation's predecessor, valid until this token is first used.
    pub fn handover_from(&self) -> Option<&Predecessor> {
        self.handover.as_deref()
    }

    /// Forgets the predecessor: the hand-over happened.
    pub fn clear_handover(&mut self) {
        self.handover = None;
    }

    /// `X-Auth-Token-Id`, built per request (formatting an integer costs less than keeping a
    /// header value per token).
    pub fn id_header(&self) -> HeaderValue {
        HeaderValue::from(self.id)
    }

    /// `X-Auth-Token-Name`: a clone of the one value kept.
    pub fn name_header(&self) -> &HeaderValue {
        self.name.header()
    }

    /// `X-Auth-Scopes`, space-separated: shared by every token with these scopes.
    pub fn scopes_header(&self) -> &HeaderValue {
        &self.terms.scopes_header
    }

    /// `X-Auth-Token-Expires` (RFC 3339), built per request; `None`: it never expires.
    pub fn expires_header(&self) -> Option<HeaderValue> {
        let at = self.expires_at?;
        Some(match rfc3339_bytes(at) {
            Some(bytes) => HeaderValue::from_bytes(&bytes).unwrap_or_else(|_| header_value(&to_rfc3339(at))),
            None => header_value(&to_rfc3339(at)),
        })
    }

    /// Whether the token has expired by `now`.
    pub fn is_expired(&self, now: UnixTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Whether the token's revocation has taken effect by `now` (a scheduled one has not yet).
    pub fn is_revoked(&self, now: UnixTime) -> bool {
        self.revoked_at.is_some_and(|at| at <= now)
    }
}

/// What the gateway knows of an account.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedAccount {
    /// The account's id, which tokens refer to.
    pub id: i64,
    /// As the owner wrote it, for the identity header.
    pub email: Box<str>,
    /// `X-Auth-User`: the email, prebuilt once (there are far fewer accounts than tokens).
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

/// A token decoded from its row, ready to go into the index: made by [`TokenIndex::prepare`]
/// where rows are read, put in by [`TokenIndex::insert`] on another thread during the load.
pub type PreparedToken = (TokenDigest, Arc<IndexedToken>);

/// The index's hashing: foldhash, seeded per process, where SipHash would cost more than the
/// rest of a lookup. Its keys need no more: a token digest is SHA-256 output, spread evenly
/// already, and an account id is assigned by the database. Only keys the database holds are
/// inserted (digests of random secrets); a request can choose the digest it looks up (with some
/// work), but a lookup only probes, it cannot crowd the table.
pub type IndexHashing = foldhash::fast::RandomState;

/// The index itself. Lookups clone an `Arc` out and release the shard lock at once.
#[derive(Debug, Default)]
pub struct TokenIndex {
    tokens: DashMap<TokenDigest, Arc<IndexedToken>, IndexHashing>,
    accounts: DashMap<i64, Arc<IndexedAccount>, IndexHashing>,
    /// Every distinct [`Terms`], by the scopes as stored; each scope text's few limits in a
    /// list. Kept for the life of the process (terms no token uses any more are a handful of
    /// bytes each); locked only when a token is loaded or changed.
    terms: Mutex<HashMap<Box<str>, Vec<Arc<Terms>>>>,
}

impl TokenIndex {
    /// An empty index; sync loads it before the gateway serves.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty index with room for `tokens` tokens, so the load does not grow (and copy) the
    /// map again and again.
    pub fn with_capacity(tokens: usize) -> Self {
        TokenIndex { tokens: DashMap::with_capacity_and_hasher(tokens, IndexHashing::default()), ..Self::default() }
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
        if let Some(prepared) = self.prepare(row.as_ref()) {
            self.insert(prepared);
        }
    }

    /// Decodes a row into the token the index keeps, its terms interned; `None` when the digest
    /// is malformed. Apart from [`TokenIndex::insert`] so that the full load can decode on the
    /// reading thread and insert on another.
    pub fn prepare(&self, row: IndexTokenRef<'_>) -> Option<PreparedToken> {
        let digest = TokenDigest::from_bytes(row.digest)?;
        let handover = row
            .handover_from
            .map(|id| Box::new(Predecessor { id, digest: row.handover_digest.and_then(TokenDigest::from_bytes) }));
        let token = IndexedToken {
            id: row.id,
            account_id: row.account_id,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            handover,
            name: TokenName::new(row.name),
            terms: self.terms(row.scopes, row.rate_limit),
        };
        Some((digest, Arc::new(token)))
    }

    /// Inserts or replaces a prepared token.
    pub fn insert(&self, (digest, token): PreparedToken) {
        self.tokens.insert(digest, token);
    }

    /// The shared terms for these scopes and this limit, as stored.
    fn terms(&self, scopes: &str, rate: Option<&str>) -> Arc<Terms> {
        let mut interned = self.terms.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(found) = interned.get(scopes).and_then(|list| list.iter().find(|t| t.rate_text.as_deref() == rate))
        {
            return Arc::clone(found);
        }
        let list: Vec<&str> = scopes.split_whitespace().collect();
        let terms = Arc::new(Terms {
            scopes: list.iter().map(|s| Box::from(*s)).collect(),
            scopes_header: header_value(&list.join(" ")),
            // A limit the database holds was valid when written; an unreadable one means no
            // limit rather than a token that can never be used.
            rate_limit: rate.and_then(|r| r.parse().ok()),
            rate_text: rate.map(Box::from),
        });
        interned.entry(scopes.into()).or_default().push(Arc::clone(&terms));
        terms
    }

    /// Applies a change to one token in this process only, ahead of the change log that will
    /// bring the same change to every other gateway (a rotation's hand-over).
    pub fn update_locally(&self, digest: &TokenDigest, change: impl FnOnce(&mut IndexedToken)) {
        if let Some(mut entry) = self.tokens.get_mut(digest) {
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
            handover_digest: None,
        }
    }

    #[test]
    fn upsert_replaces_and_lookup_finds_by_digest() {
        let index = TokenIndex::new();
        index.upsert_token(token_row(1, "secret-one", "read"));
        let found = index.token(&TokenDigest::of("secret-one")).unwrap();
        assert!(found.has_scope("read") && !found.has_scope("write"));
        assert_eq!(found.rate_limit().map(|r| r.to_string()).as_deref(), Some("10/s"));
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
    fn tokens_with_the_same_scopes_and_limit_share_their_terms() {
        let index = TokenIndex::new();
        index.upsert_token(token_row(1, "one", "read  write"));
        index.upsert_token(token_row(2, "two", "read  write"));
        let mut other_limit = token_row(3, "three", "read  write");
        other_limit.rate_limit = None;
        index.upsert_token(other_limit);
        let [one, two, three] = ["one", "two", "three"].map(|s| index.token(&TokenDigest::of(s)).unwrap());
        assert!(Arc::ptr_eq(&one.terms, &two.terms));
        assert!(!Arc::ptr_eq(&one.terms, &three.terms));
        assert_eq!(one.scopes_header(), "read write");
        assert_eq!(one.scopes(), &[Box::<str>::from("read"), Box::from("write")]);
        assert_eq!(three.rate_limit(), None);
    }

    #[test]
    fn identity_headers_are_those_built_from_the_row() {
        let index = TokenIndex::new();
        let mut row = token_row(42, "secret", "read");
        row.name = "nightly\tbuild".into();
        row.expires_at = Some(1_795_000_000);
        index.upsert_token(row);
        let token = index.token(&TokenDigest::of("secret")).unwrap();
        assert_eq!(token.id_header(), "42");
        assert_eq!(token.name(), "nightly\tbuild");
        assert_eq!(token.name_header(), "nightly\tbuild");
        assert_eq!(token.expires_header().unwrap(), to_rfc3339(1_795_000_000).as_str());

        let mut row = token_row(43, "other", "read");
        row.name = "bad\nname".into();
        row.expires_at = None;
        index.upsert_token(row);
        let token = index.token(&TokenDigest::of("other")).unwrap();
        assert_eq!(token.name(), "bad\nname", "the API shows the name as written");
        assert_eq!(token.name_header(), "bad?name", "the header cannot carry a line break");
        assert_eq!(token.expires_header(), None);
    }

    #[test]
    fn a_hand_over_finds_the_predecessor_by_digest() {
        let index = TokenIndex::new();
        index.upsert_token(token_row(1, "old", "read"));
        let mut successor = token_row(2, "new", "read");
        successor.handover_from = Some(1);
        successor.handover_digest = Some(TokenDigest::of("old").as_bytes().to_vec());
        index.upsert_token(successor);
        let new = index.token(&TokenDigest::of("new")).unwrap();
        let predecessor = new.handover_from().unwrap();
        assert_eq!(predecessor.id, 1);
        index.update_locally(&predecessor.digest.unwrap(), |old| old.revoked_at = Some(7));
        index.update_locally(&TokenDigest::of("new"), IndexedToken::clear_handover);
        assert!(index.token(&TokenDigest::of("old")).unwrap().is_revoked(7));
        assert!(index.token(&TokenDigest::of("new")).unwrap().handover_from().is_none());
    }

    #[test]
    fn the_entry_stays_small() {
        // One pointer-sized map value per token points at this; keep it from growing unnoticed.
        assert!(std::mem::size_of::<IndexedToken>() <= 104, "{}", std::mem::size_of::<IndexedToken>());
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
