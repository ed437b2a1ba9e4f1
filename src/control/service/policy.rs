//! The administrator's bounds on tokens, applied to each request: lifetimes within
//! `tokens.max_lifetime`, known scopes, sane names.

use std::time::Duration;

use super::tokens::ExpiryRequest;
use super::{LifecycleService, ServiceError};
use crate::clock::{UnixTime, to_rfc3339};
use crate::model::duration::format_duration;

/// Longest token name accepted.
const MAX_NAME_CHARS: usize = 100;

impl LifecycleService {
    pub(super) fn expiry(&self, request: ExpiryRequest, now: UnixTime) -> Result<Option<UnixTime>, ServiceError> {
        let policy = self.policy();
        let max = policy.max_lifetime;
        let within = |lifetime: Duration| {
            if lifetime.is_zero() {
                Err(ServiceError::OutsidePolicy("the lifetime must be greater than zero".into()))
            } else if lifetime > max {
                Err(ServiceError::OutsidePolicy(format!(
                    "a lifetime of {} exceeds the maximum of {} (tokens.max_lifetime)",
                    format_duration(lifetime),
                    format_duration(max)
                )))
            } else {
                Ok(())
            }
        };
        match request {
            ExpiryRequest::Default => Ok(Some(now + policy.default_lifetime.as_secs() as i64)),
            ExpiryRequest::In(lifetime) => {
                within(lifetime)?;
                Ok(Some(now + lifetime.as_secs().max(1) as i64))
            }
            ExpiryRequest::At(at) => {
                if at <= now {
                    return Err(ServiceError::OutsidePolicy(format!("the expiry {} is in the past", to_rfc3339(at))));
                }
                within(Duration::from_secs((at - now) as u64))?;
                Ok(Some(at))
            }
            ExpiryRequest::Never if policy.allow_never_expires => Ok(None),
            ExpiryRequest::Never => Err(ServiceError::OutsidePolicy(format!(
                "tokens that never expire are not allowed (tokens.allow_never_expires = false); the maximum lifetime is {}",
                format_duration(max)
            ))),
        }
    }

    pub(super) fn scopes(&self, requested: &[String]) -> Result<Vec<String>, ServiceError> {
        let policy = self.policy();
        let requested = if requested.is_empty() { &policy.default_scopes } else { requested };
        let mut scopes: Vec<String> = Vec::new();
        for scope in requested {
            let scope = scope.trim();
            let known = scope == crate::model::scope::ALL
                || crate::model::scope::is_reserved(scope)
                || policy.scopes.iter().any(|s| s == scope);
            if !known {
                return Err(ServiceError::Invalid(format!(
                    "unknown scope {scope:?}: known scopes are {}, {} (or * for all)",
                    policy.scopes.join(", "),
                    crate::model::scope::RESERVED.join(", ")
                )));
            }
            if !scopes.iter().any(|s| s == scope) {
                scopes.push(scope.to_owned());
            }
        }
        Ok(scopes)
    }
}

pub(super) fn validate_token_name(name: &str) -> Result<String, ServiceError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ServiceError::Invalid("a token needs a name".into()));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ServiceError::Invalid(format!("a token name may have at most {MAX_NAME_CHARS} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(ServiceError::Invalid("a token name may not contain control characters".into()));
    }
    Ok(name.to_owned())
}

/// An email usable as a Basic-auth user name: one `@`, no colon, no spaces or control characters.
pub(super) fn validate_email(email: &str) -> Result<String, ServiceError> {
    let email = email.trim();
    let invalid = |why: &str| ServiceError::Invalid(format!("invalid email {email:?}: {why}"));
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err(invalid("it has no @"));
    };
    if local.is_empty() || domain.is_empty() || domain.starts_with('.') || domain.ends_with('.') {
        return Err(invalid("expected name@domain"));
    }
    if email.chars().any(|c| c == ':' || c.is_whitespace() || c.is_control()) {
        return Err(invalid("it may not contain colons, spaces or control characters"));
    }
    if email.len() > 254 {
        return Err(invalid("it is longer than 254 bytes"));
    }
    Ok(email.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_must_work_as_basic_user_names() {
        assert!(validate_email("ann@example.com").is_ok());
        for bad in ["ann", "@example.com", "ann@", "a:b@example.com", "a b@example.com", "ann@.com"] {
            assert!(validate_email(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn token_names_are_trimmed_and_bounded() {
        assert_eq!(validate_token_name("  ci deploy ").unwrap(), "ci deploy");
        assert!(validate_token_name(" ").is_err());
        assert!(validate_token_name("a\nb").is_err());
        assert!(validate_token_name(&"x".repeat(101)).is_err());
    }
}
