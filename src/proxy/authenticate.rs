//! The authentication decision: credentials → digest → index → checks. Pure and synchronous,
//! so it can be benchmarked alone.

use std::sync::Arc;

use http::HeaderMap;

use super::credentials::{CredentialBuffer, CredentialError, read_credentials};
use crate::clock::UnixTime;
use crate::index::{IndexedAccount, IndexedToken, TokenIndex};
use crate::token::{SecretFormatError, TokenDigest, check_format};

/// Why a request was not authenticated. The client sees one uniform 401 for all of them;
/// the reason goes to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Credentials(CredentialError),
    SecretFormat(SecretFormatError),
    UnknownToken,
    WrongEmail,
    Revoked,
    Expired,
    AccountDisabled,
    NoTokenPermission,
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
            AuthFailure::Revoked => "revoked",
            AuthFailure::Expired => "expired",
            AuthFailure::AccountDisabled => "account_disabled",
            AuthFailure::NoTokenPermission => "no_token_permission",
        }
    }

    /// The token that was presented, when the index knows it (a dead token's use is worth
    /// telling its owner about; an unknown one is only counted).
    pub fn is_known_token(self) -> bool {
        !matches!(self, AuthFailure::Credentials(_) | AuthFailure::SecretFormat(_) | AuthFailure::UnknownToken)
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
        return Err(AuthFailure::Revoked);
    }
    if token.is_expired(now) {
        return Err(AuthFailure::Expired);
    }
    if !account.enabled {
        return Err(AuthFailure::AccountDisabled);
    }
    if !account.can_create_tokens {
        return Err(AuthFailure::NoTokenPermission);
    }
    Ok(Identity { token, account })
}
