//! The store's own rows: what the index loads, the change log, and what one usage flush writes.
//! The domain's records (accounts, tokens, events) live in [`crate::model`].

use crate::clock::UnixTime;

/// What the in-memory index needs of a token: no names of people, no usage.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IndexTokenRow {
    /// The token's id: the index maps it to the digest, for changes the gateway makes itself.
    pub id: i64,
    /// The owner, whose account state the data path checks on every request.
    pub account_id: i64,
    /// For the `X-Auth-Token-Name` header.
    pub name: String,
    /// SHA-256 of the secret: the index's key.
    pub digest: Vec<u8>,
    /// Space-separated, as stored: the scopes the routes check.
    pub scopes: String,
    /// The token's own rate, as written; `None`: the default applies.
    pub rate_limit: Option<String>,
    /// `None`: it never expires.
    pub expires_at: Option<UnixTime>,
    /// In the future while a rotation's grace runs.
    pub revoked_at: Option<UnixTime>,
    /// The predecessor that stays valid until this token's first use.
    pub handover_from: Option<i64>,
    /// That predecessor's digest, so that the hand-over can revoke it in the index without a
    /// map from every token id to its digest.
    pub handover_digest: Option<Vec<u8>>,
}

impl IndexTokenRow {
    /// The row borrowed, as the full load hands rows over.
    pub fn as_ref(&self) -> IndexTokenRef<'_> {
        IndexTokenRef {
            id: self.id,
            account_id: self.account_id,
            name: &self.name,
            digest: &self.digest,
            scopes: &self.scopes,
            rate_limit: self.rate_limit.as_deref(),
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            handover_from: self.handover_from,
            handover_digest: self.handover_digest.as_deref(),
        }
    }
}

/// An [`IndexTokenRow`] borrowed from the reader's buffer: the full load decodes each of a
/// million rows into the index without allocating its columns first.
#[derive(Debug, Clone, Copy)]
pub struct IndexTokenRef<'a> {
    /// See [`IndexTokenRow::id`].
    pub id: i64,
    /// See [`IndexTokenRow::account_id`].
    pub account_id: i64,
    /// See [`IndexTokenRow::name`].
    pub name: &'a str,
    /// See [`IndexTokenRow::digest`].
    pub digest: &'a [u8],
    /// See [`IndexTokenRow::scopes`].
    pub scopes: &'a str,
    /// See [`IndexTokenRow::rate_limit`].
    pub rate_limit: Option<&'a str>,
    /// See [`IndexTokenRow::expires_at`].
    pub expires_at: Option<UnixTime>,
    /// See [`IndexTokenRow::revoked_at`].
    pub revoked_at: Option<UnixTime>,
    /// See [`IndexTokenRow::handover_from`].
    pub handover_from: Option<i64>,
    /// See [`IndexTokenRow::handover_digest`].
    pub handover_digest: Option<&'a [u8]>,
}

/// What the in-memory index needs of an account.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IndexAccountRow {
    /// The account's id, which tokens refer to.
    pub id: i64,
    /// As the owner wrote it, for the `X-Auth-User` header.
    pub email: String,
    /// Lower-cased, for matching the credentials' user name.
    pub email_norm: String,
    /// A disabled account's tokens are refused.
    pub enabled: bool,
    /// The token permission: without it the account's tokens are refused.
    pub can_create_tokens: bool,
}

/// One row of the change log: the account and/or token whose state must be re-read.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChangeRow {
    /// The change's place in the log; sync applies rows after the last sequence it saw.
    pub seq: i64,
    /// The account to re-read, when the change touched one.
    pub account_id: Option<i64>,
    /// The token to re-read, when the change touched one.
    pub token_id: Option<i64>,
}

/// What one flush writes.
#[derive(Debug, Clone, Default)]
pub struct ActivityBatch {
    /// Each token's last admitted use since the last flush.
    pub uses: Vec<UsageRecord>,
    /// Refused uses of dead tokens since the last flush.
    pub refusals: Vec<RefusalRecord>,
    /// Rotation successors' first uses not yet written.
    pub handovers: Vec<HandoverRecord>,
    /// Requests per token, day, route and outcome since the last flush, added to `token_usage`.
    pub counts: Vec<UsageCount>,
}

impl ActivityBatch {
    /// Nothing to write: the flush skips its transaction.
    pub fn is_empty(&self) -> bool {
        self.uses.is_empty() && self.refusals.is_empty() && self.handovers.is_empty() && self.counts.is_empty()
    }

    /// How many records the batch holds, as the flush reports it.
    pub fn len(&self) -> usize {
        self.uses.len() + self.refusals.len() + self.handovers.len() + self.counts.len()
    }
}

/// Requests of one token on one UTC day, route and outcome, counted since the last flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCount {
    /// The token presented.
    pub token_id: i64,
    /// Days since 1970-01-01 UTC.
    pub day: i64,
    /// The route's prefix, as configured.
    pub route: std::sync::Arc<str>,
    /// How the requests ended.
    pub outcome: crate::model::UsageOutcome,
    /// How many; added to the row's count.
    pub requests: i64,
}

/// Attempts with a dead (revoked, expired or blocked) token since the last flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalRecord {
    /// The dead token that was presented.
    pub token_id: i64,
    /// How many attempts since the last flush; added to `refused_count`.
    pub count: i64,
    /// When the latest attempt was made.
    pub at: UnixTime,
    /// Why it was refused (`revoked`, `expired`, `account_disabled`, `no_token_permission`), for
    /// the audit event.
    pub reason: &'static str,
    /// The latest attempt's method.
    pub method: String,
    /// The latest attempt's path.
    pub path: String,
    /// The latest attempt's client IP.
    pub ip: String,
    /// The latest attempt's user agent, cut to [`crate::data::usage::USER_AGENT_MAX`] characters;
    /// for the audit event.
    pub user_agent: Option<String>,
}

/// A rotation successor's first use, which ends its predecessor's hand-over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoverRecord {
    /// The new token, whose first use this is.
    pub successor_id: i64,
    /// The old token: revoked as of `at`.
    pub predecessor_id: i64,
    /// When the successor was first used.
    pub at: UnixTime,
}

/// One token's last use, as recorded by the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    /// The token that was used.
    pub token_id: i64,
    /// When; an older time never overwrites a newer one another gateway wrote.
    pub at: UnixTime,
    /// The request's method.
    pub method: String,
    /// The request's path.
    pub path: String,
    /// The client IP (see `trusted_proxies`).
    pub ip: String,
}
