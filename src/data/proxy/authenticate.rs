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
    Credentials(CredentialError),
    SecretFormat(SecretFormatError),
    UnknownToken,
    WrongEmail,
    /// The token (by id) was revoked.
    Revoked(i64),
    Expired(i64),
    AccountDisabled(i64),
    NoTokenPermission(i64),
}

impl AuthFailure {
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
    pub token: Arc<IndexedToken>,
    pub account: Arc<IndexedAccount>,
}

/// Decides whether the request's credentials name a usable token of the named account.
pub fn authenticate(index: &TokenIndex, headers: &HeaderMap, now: UnixTime) -> Result<Identity, AuthFailure> {
    let mut buffer = CredentialBuffer::new();
    let credentials = read_credentials(headers, &mut buffer).map_err(AuthFailure::Credentials)?;
    check_format(credentials.secret).map_err(AuthFailure::SecretFormat)?;
    let token = index.token(&TokenDigest::of(credentials.secret)).ok_or(AuthFailure::UnknownToken)?;
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
    Ok(Identity { token, account })
}
