//! The authentication decision: credentials → digest → index → checks. Pure and synchronous,
//! so it can be benchmarked alone.

use std::sync::Arc;

use http::HeaderMap;

use super::credentials::{CredentialBuffer, CredentialError, read_credentials};
use crate::clock::UnixTime;
use crate::data::index::{IndexedAccount, IndexedToken, TokenIndex};
use crate::model::secret::{SecretFormatError, TokenDigest, check_format};

/// Why a request was not authenticated. The client sees one uniform 401 for all of them;
/// the reason goes to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// The `Authorization` header does not hold readable Basic credentials.
    Credentials(CredentialError),
    /// The secret is empty, too long, or fails its checksum: refused before any lookup.
    SecretFormat(SecretFormatError),
    /// No token has this secret's digest.
    UnknownToken,
    /// The token exists, but the credentials name another account: both halves must match.
    WrongEmail,
    /// The token (by id) was revoked.
    Revoked(i64),
    /// The token (by id) has expired.
    Expired(i64),
    /// The token's (by id) account is disabled.
    AccountDisabled(i64),
    /// The token's (by id) account lacks the token permission.
    NoTokenPermission(i64),
}

impl AuthFailure {
    /// The `reason` label of `tokengate_auth_failures_total`, the log line's reason and a refused
    /// use's.
    pub fn reason(self) -> &'static str {
        match self {
            AuthFailure::Credentials(e) => e.reason(),
            AuthFailure::SecretFormat(SecretFormatError::Empty) => "empty_secret",
            AuthFailure::SecretFormat(SecretFormatError::TooLong) => "secret_too_long",
            AuthFailure::SecretFormat(SecretFormatError::BadChecksum) => "bad_checksum",
            AuthFailure::UnknownToken => "unknown_token",
            AuthFailure::WrongEmail => "wrong_email",
            AuthFailure::Revoked(_) => "revoked",
            AuthFailure::Expired(_) => "expired",
            AuthFailure::AccountDisabled(_) => "account_disabled",
            AuthFailure::NoTokenPermission(_) => "no_token_permission",
        }
    }

    /// The dead token that was presented (revoked, expired or blocked), if that is why: its
    /// owner is told of such attempts. Unknown tokens are only counted in the log.
    pub fn dead_token(self) -> Option<i64> {
        match self {
            AuthFailure::Revoked(id)
            | AuthFailure::Expired(id)
            | AuthFailure::AccountDisabled(id)
            | AuthFailure::NoTokenPermission(id) => Some(id),
            _ => None,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The token presented: the route's scopes are checked against it, its limit applied, its use
    /// recorded.
    pub token: Arc<IndexedToken>,
    /// Its owner, whose email the credentials matched: sent upstream as `X-Auth-User`.
    pub account: Arc<IndexedAccount>,
    /// The token's digest: its key in the index, for a rotation's hand-over at its first use.
    pub digest: TokenDigest,
}

/// Decides whether the request's credentials name a usable token of the named account.
pub fn authenticate(index: &TokenIndex, headers: &HeaderMap, now: UnixTime) -> Result<Identity, AuthFailure> {
    let mut buffer = CredentialBuffer::new();
    let credentials = read_credentials(headers, &mut buffer).map_err(AuthFailure::Credentials)?;
    check_format(credentials.secret).map_err(AuthFailure::SecretFormat)?;
    let digest = TokenDigest::of(credentials.secret);
    let token = index.token(&digest).ok_or(AuthFailure::UnknownToken)?;
    let account = index.account(token.account_id).ok_or(AuthFailure::UnknownToken)?;
    if !account.email_matches(credentials.email) {
        return Err(AuthFailure::WrongEmail);
    }
    if token.is_revoked(now) {
        return Err(AuthFailure::Revoked(token.id));
    }
    if token.is_expired(now) {
        return Err(AuthFailure::Expired(token.id));
    }
    if !account.enabled {
        return Err(AuthFailure::AccountDisabled(token.id));
    }
    if !account.can_create_tokens {
        return Err(AuthFailure::NoTokenPermission(token.id));
    }
    Ok(Identity { token, account, digest })
}
