//! Who performs an action and with which powers: the host (the CLI, the gateway's own work),
//! or an account through one of its tokens. Every permission rule of the control path is here,
//! so the CLI and the admin API cannot disagree about who may do what.

use crate::model::rate::Rate;
use crate::model::{AccountRecord, EventKind, NewEvent};

use super::ServiceError;

/// Who performs an action, as the audit log records it, and with which powers.
#[derive(Debug, Clone)]
pub struct Actor {
    /// An email, or `cli:<os user>`.
    pub label: String,
    /// The client IP of the request that acts, for the audit log; `None` for the host.
    pub ip: Option<String>,
    /// Its user agent, for the audit log; `cli` for the CLI.
    pub user_agent: Option<String>,
    /// Whose powers the action is taken with: every permission rule reads it.
    pub authority: Authority,
}

/// With whose powers an action is taken: every permission rule of the control path reads this.
#[derive(Debug, Clone)]
pub enum Authority {
    /// The host: the CLI (whoever runs it can open the database anyway) and the gateway's own
    /// periodic work. Not limited by roles or scopes.
    Host,
    /// An account, through one of its tokens (the admin API and the web page).
    Token(Principal),
}

/// An account acting through one of its tokens: the account's roles bound what it may do to
/// whom, the token's scopes bound what it may pass on.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The account: its roles bound what the principal may do to whom.
    pub account: AccountRecord,
    /// That token's scopes: a token passes on only scopes it carries itself.
    pub scopes: Vec<String>,
}

impl Principal {
    /// A superuser or a token manager: may act on every account's tokens.
    pub fn is_manager(&self) -> bool {
        self.account.superuser || self.account.token_manager
    }

    /// Whether this caller may see and act on `email`'s tokens.
    pub fn may_manage(&self, email: &str) -> bool {
        self.is_manager() || self.account.email.eq_ignore_ascii_case(email)
    }
}

impl Actor {
    /// The person at the terminal running the CLI.
    pub fn cli() -> Actor {
        Actor {
            label: format!("cli:{}", os_user()),
            ip: None,
            user_agent: Some("cli".to_owned()),
            authority: Authority::Host,
        }
    }

    /// The gateway's own periodic work (`system:inactivity`, ...).
    pub fn system(label: &str) -> Actor {
        Actor { label: label.to_owned(), ip: None, user_agent: None, authority: Authority::Host }
    }

    /// The account behind the action when it comes through a token; `None` for the host.
    pub(super) fn principal(&self) -> Option<&Principal> {
        match &self.authority {
            Authority::Host => None,
            Authority::Token(principal) => Some(principal),
        }
    }

    /// Only a superuser manages accounts.
    pub(super) fn require_superuser(&self) -> Result<(), ServiceError> {
        match self.principal() {
            Some(p) if !p.account.superuser => {
                Err(ServiceError::Forbidden("only a superuser may manage accounts".into()))
            }
            _ => Ok(()),
        }
    }

    /// Whether the actor may see `email`'s tokens (the host sees everything).
    pub(super) fn may_manage(&self, email: &str) -> bool {
        self.principal().is_none_or(|p| p.may_manage(email))
    }

    /// The accounts a listing is confined to: `None` for managers and the host, else the
    /// caller's own (asking for another account's is refused).
    pub(super) fn confine_to_own(&self, asked: &[String], what: &str) -> Result<Option<String>, ServiceError> {
        match self.principal() {
            Some(p) if !p.is_manager() => {
                if asked.iter().any(|email| !p.may_manage(email)) {
                    return Err(ServiceError::Forbidden(format!("you may {what} your own account only")));
                }
                Ok(Some(p.account.email.clone()))
            }
            _ => Ok(None),
        }
    }

    /// Only a superuser mints or rotates tokens of a superuser: anyone else could use such a
    /// token to act as that superuser.
    pub(super) fn require_may_mint_for(&self, owner: &AccountRecord) -> Result<(), ServiceError> {
        match self.principal() {
            Some(p) if owner.superuser && !p.account.superuser => Err(ServiceError::Forbidden(format!(
                "only a superuser may create or rotate tokens of {}, a superuser",
                owner.email
            ))),
            _ => Ok(()),
        }
    }

    /// A token passes on only scopes it carries itself (`*` only from `*`).
    pub(super) fn require_carries(&self, scopes: &[String]) -> Result<(), ServiceError> {
        match self.principal().and_then(|p| crate::model::scope::first_missing(&p.scopes, scopes)) {
            Some(missing) => Err(ServiceError::InsufficientScope(missing.to_owned())),
            None => Ok(()),
        }
    }

    /// A plain account may not give its tokens more than the default rate limit (when there
    /// is one): it would be raising its own budget.
    pub(super) fn require_limit_within(&self, rate: Option<&Rate>, default: Option<&Rate>) -> Result<(), ServiceError> {
        let plain = self.principal().is_some_and(|p| !p.is_manager());
        match (rate, default) {
            (Some(rate), Some(default)) if plain && rate.exceeds(default) => Err(ServiceError::Forbidden(format!(
                "a rate limit of {rate} exceeds the default of {default} (rate_limit.default); ask a token manager"
            ))),
            _ => Ok(()),
        }
    }

    /// An audit event by this actor. Creations, revocations and rotations are also notified to
    /// the token's owner.
    pub(crate) fn event(&self, kind: EventKind, detail: serde_json::Value) -> NewEvent {
        NewEvent::new(kind, self.label.clone(), self.ip.clone(), self.user_agent.clone(), detail)
    }
}

/// The name of the operating-system user running this process: `$USER`, `$LOGNAME`, else the
/// owner of this process looked up in `/etc/passwd`, else `uid<N>`.
fn os_user() -> String {
    if let Some(user) = ["USER", "LOGNAME"].iter().find_map(|var| std::env::var(var).ok().filter(|u| !u.is_empty())) {
        return user;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) {
            let from_passwd = std::fs::read_to_string("/etc/passwd").ok().and_then(|passwd| {
                passwd.lines().find_map(|line| {
                    let fields: Vec<&str> = line.split(':').collect();
                    (fields.len() > 2 && fields[2] == uid.to_string()).then(|| fields[0].to_owned())
                })
            });
            return from_passwd.unwrap_or_else(|| format!("uid{uid}"));
        }
    }
    "unknown".to_owned()
}
