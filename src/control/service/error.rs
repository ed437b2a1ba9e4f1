//! What can go wrong in the control path, sorted by whose fault it is: the request (400/422),
//! the caller's powers (403), missing things (404), conflicts (409), or the system (500/503).

use crate::control::store::StoreError;

/// Why the service refused or failed. Each surface maps it once: the CLI to an exit status, the
/// admin API to an HTTP status and code.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request itself is wrong (a malformed name, an unknown scope).
    #[error("{0}")]
    Invalid(String),
    /// A lifetime outside the administrator's bounds.
    #[error("{0}")]
    OutsidePolicy(String),
    /// No such account or token, or one the actor may not see (the same answer, so ids cannot be
    /// probed).
    #[error("{0}")]
    NotFound(String),
    /// A duplicate account or token name.
    #[error("{0}")]
    Conflict(String),
    /// The account may not do or hold this.
    #[error("{0}")]
    Forbidden(String),
    /// The caller's token lacks a scope this needs (the scope is named).
    #[error("this token lacks the scope {0:?} that this request requires")]
    InsufficientScope(String),
    /// The database failed; never the caller's fault.
    #[error(transparent)]
    Store(StoreError),
    /// Something in this process failed (no randomness for a secret): not the caller's fault,
    /// and not worth retrying with other input.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::DuplicateAccount(_) | StoreError::DuplicateTokenName(_) | StoreError::LastSuperuser(_) => {
                ServiceError::Conflict(error.to_string())
            }
            other => ServiceError::Store(other),
        }
    }
}
