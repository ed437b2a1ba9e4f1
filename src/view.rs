//! The JSON shapes of the outside contract (docs/reference.md): tokens, accounts, events. Shared by
//! the CLI's `--json` output and the admin API, so the two never drift apart.

use serde::Serialize;

use crate::clock::{UnixTime, to_rfc3339};
use crate::config::TokenPolicy;
use crate::control::fleet::{Confirmation, GatewayStatus};
use crate::control::store::{AccountRecord, AccountSummary, EventRecord, TokenRecord};
use crate::data::index::IndexedToken;
use crate::model::duration::format_duration;

/// A token as the API and `--json` show it (never the secret, except `token` at creation).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: i64,
    pub user: String,
    pub name: String,
    pub description: Option<String>,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub rate_limit: Option<String>,
    pub created_at: String,
    pub created_by: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub status: &'static str,
    pub last_used_at: Option<String>,
    pub last_used_method: Option<String>,
    pub last_used_path: Option<String>,
    pub last_used_ip: Option<String>,
    pub revoked_by: Option<String>,
    pub revoke_reason: Option<String>,
    pub rotated_from: Option<i64>,
    pub rotated_to: Option<i64>,
    pub refused_count: i64,
    pub refused_last_at: Option<String>,
    pub refused_last_ip: Option<String>,
    pub refused_last_method: Option<String>,
    pub refused_last_path: Option<String>,
    /// The secret: only in the response that minted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// After a change the data path obeys: which running gateways applied it.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<ConfirmationView>,
}

impl TokenView {
    pub fn new(record: &TokenRecord, now: UnixTime) -> Self {
        let t = record.clone();
        TokenView {
            id: t.id,
            status: t.status(now).as_str(),
            scopes: t.scope_list(),
            user: t.user_email,
            name: t.name,
            description: t.description,
            prefix: t.prefix,
            rate_limit: t.rate_limit,
            created_at: to_rfc3339(t.created_at),
            created_by: t.created_by,
            expires_at: t.expires_at.map(to_rfc3339),
            revoked_at: t.revoked_at.map(to_rfc3339),
            last_used_at: t.last_used_at.map(to_rfc3339),
            last_used_method: t.last_used_method,
            last_used_path: t.last_used_path,
            last_used_ip: t.last_used_ip,
            revoked_by: t.revoked_by,
            revoke_reason: t.revoke_reason,
            rotated_from: t.rotated_from,
            rotated_to: t.rotated_to,
            refused_count: t.refused_count,
            refused_last_at: t.refused_last_at.map(to_rfc3339),
            refused_last_ip: t.refused_last_ip,
            refused_last_method: t.refused_last_method,
            refused_last_path: t.refused_last_path,
            token: None,
            confirmation: None,
        }
    }

    /// The view of a freshly minted token, carrying its secret.
    pub fn with_secret(record: &TokenRecord, now: UnixTime, secret: &str) -> Self {
        TokenView { token: Some(secret.to_owned()), ..TokenView::new(record, now) }
    }

    /// The view with what the running gateways confirmed of the change that produced it.
    pub fn confirmed(self, confirmation: Option<&Confirmation>) -> Self {
        TokenView { confirmation: confirmation.map(ConfirmationView::new), ..self }
    }
}

/// `token revoke-all` and `POST /api/v1/users/{email}/tokens/revoke-all`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RevokedAllView {
    pub user: String,
    /// How many tokens were revoked.
    pub revoked: usize,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<ConfirmationView>,
}

impl RevokedAllView {
    pub fn new(user: &str, revoked: usize, confirmation: Option<&Confirmation>) -> Self {
        RevokedAllView { user: user.to_owned(), revoked, confirmation: confirmation.map(ConfirmationView::new) }
    }
}

/// What the running gateways confirmed of a change, added to the document of the change.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConfirmationView {
    /// Gateways running (a heartbeat within `sync.stale_after`) when the wait ended.
    pub gateways_running: usize,
    /// Of those, how many had applied the change.
    pub gateways_confirmed: usize,
    /// How long the wait took, in milliseconds.
    pub confirm_ms: u64,
    /// The running gateways that had not applied it within `sync.confirm_timeout`.
    pub gateways_pending: Vec<PendingGatewayView>,
}

/// A gateway that has not yet applied a change.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PendingGatewayView {
    pub id: String,
    pub host: String,
    pub pid: i64,
    /// Its proxy listener's address.
    pub proxy: String,
}

impl ConfirmationView {
    pub fn new(confirmation: &Confirmation) -> Self {
        ConfirmationView {
            gateways_running: confirmation.running,
            gateways_confirmed: confirmation.confirmed,
            confirm_ms: confirmation.elapsed.as_millis() as u64,
            gateways_pending: confirmation
                .pending
                .iter()
                .map(|g| PendingGatewayView {
                    id: g.id.clone(),
                    host: g.host.clone(),
                    pid: g.pid,
                    proxy: g.proxy_addr.clone(),
                })
                .collect(),
        }
    }
}

/// A running gateway, as `tokengate gateways` and `GET /api/v1/gateways` list it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GatewayView {
    pub id: String,
    pub host: String,
    pub pid: i64,
    /// Its proxy listener's address.
    pub proxy: String,
    /// Its admin listener's address.
    pub admin: String,
    pub version: String,
    pub started_at: String,
    /// Its last heartbeat (every second while it runs).
    pub heartbeat_at: String,
    /// The last change-log sequence it applied.
    pub applied_seq: i64,
    /// Change-log rows it has not applied yet.
    pub lag_seqs: i64,
    /// How long ago the oldest change it has not applied was committed (0 when none).
    pub lag_ms: i64,
}

impl GatewayView {
    pub fn new(status: &GatewayStatus) -> Self {
        let g = &status.record;
        let at = |ms: i64| crate::clock::to_rfc3339_ms(ms);
        GatewayView {
            id: g.id.clone(),
            host: g.host.clone(),
            pid: g.pid,
            proxy: g.proxy_addr.clone(),
            admin: g.admin_addr.clone(),
            version: g.version.clone(),
            started_at: at(g.started_ms),
            heartbeat_at: at(g.heartbeat_ms),
            applied_seq: g.applied_seq,
            lag_seqs: status.lag_seqs,
            lag_ms: status.lag_ms,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountView {
    pub email: String,
    pub name: Option<String>,
    pub superuser: bool,
    pub token_manager: bool,
    pub enabled: bool,
    pub can_create_tokens: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<i64>,
    pub created_at: String,
    /// After a change the data path obeys (`user set`): which running gateways applied it.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<ConfirmationView>,
}

impl AccountView {
    pub fn new(account: &AccountRecord) -> Self {
        AccountView {
            email: account.email.clone(),
            name: account.name.clone(),
            superuser: account.superuser,
            token_manager: account.token_manager,
            enabled: account.enabled,
            can_create_tokens: account.can_create_tokens,
            tokens: None,
            created_at: to_rfc3339(account.created_at),
            confirmation: None,
        }
    }

    /// The view with what the running gateways confirmed of the change that produced it.
    pub fn confirmed(self, confirmation: Option<&Confirmation>) -> Self {
        AccountView { confirmation: confirmation.map(ConfirmationView::new), ..self }
    }

    pub fn summary(summary: &AccountSummary) -> Self {
        AccountView { tokens: Some(summary.live_tokens), ..AccountView::new(&summary.account) }
    }
}

/// `GET /api/v1/me`: the caller's account and the token it called with, so that a client (the
/// web page) knows what this token may do before it tries.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MeView {
    #[serde(flatten)]
    pub account: AccountView,
    pub token: CallerTokenView,
}

/// The token a caller authenticated with.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CallerTokenView {
    pub id: i64,
    pub name: String,
    pub scopes: Vec<String>,
}

impl MeView {
    pub fn new(account: &AccountRecord, token: &IndexedToken) -> Self {
        MeView {
            account: AccountView::new(account),
            token: CallerTokenView {
                id: token.id,
                name: token.name.to_string(),
                scopes: token.scopes.iter().map(|s| s.to_string()).collect(),
            },
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub id: i64,
    pub at: String,
    pub kind: String,
    pub actor: String,
    pub account: Option<String>,
    pub token_id: Option<i64>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl EventView {
    pub fn new(event: &EventRecord) -> Self {
        EventView {
            id: event.id,
            at: to_rfc3339(event.at),
            kind: event.kind.clone(),
            actor: event.actor.clone(),
            account: event.account.clone(),
            token_id: event.token_id,
            ip: event.ip.clone(),
            user_agent: event.user_agent.clone(),
            detail: serde_json::from_str(&event.detail).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// The token policy a caller creates tokens within: what the web page's create dialog offers,
/// and what the API enforces.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PolicyView {
    /// The lifetime of a token created without an expiry, as written in the config (`30d`).
    pub default_lifetime: String,
    pub default_lifetime_seconds: u64,
    /// The longest lifetime a token may be given.
    pub max_lifetime: String,
    pub max_lifetime_seconds: u64,
    pub allow_never_expires: bool,
    /// The scopes a token may carry (`*` grants every scope).
    pub scopes: Vec<String>,
    /// The scopes of a token created without any.
    pub default_scopes: Vec<String>,
    /// Scopes that are always valid and never given by default: `admin` calls every admin API
    /// endpoint (the web page signs in only with it), `admin:read` only its `GET` endpoints.
    /// `*` includes both.
    pub reserved_scopes: Vec<ReservedScopeView>,
}

/// A reserved scope and what it allows.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReservedScopeView {
    pub name: &'static str,
    pub allows: &'static str,
}

impl PolicyView {
    pub fn new(policy: &TokenPolicy) -> Self {
        PolicyView {
            default_lifetime: format_duration(policy.default_lifetime),
            default_lifetime_seconds: policy.default_lifetime.as_secs(),
            max_lifetime: format_duration(policy.max_lifetime),
            max_lifetime_seconds: policy.max_lifetime.as_secs(),
            allow_never_expires: policy.allow_never_expires,
            scopes: policy.scopes.clone(),
            default_scopes: policy.default_scopes.clone(),
            reserved_scopes: crate::model::scope::RESERVED_MEANING
                .iter()
                .map(|&(name, allows)| ReservedScopeView { name, allows })
                .collect(),
        }
    }
}
