//! The JSON shapes of the outside contract (docs/reference.md): tokens, accounts, events. Shared by
//! the CLI's `--json` output and the admin API, so the two never drift apart.

use serde::Serialize;

use crate::clock::{UnixTime, day_to_date, to_rfc3339};
use crate::config::TokenPolicy;
use crate::control::fleet::{Confirmation, GatewayStatus};
use crate::control::store::{AccountRecord, AccountSummary, CappedExpiry, EventRecord, TokenRecord};
use crate::data::index::IndexedToken;
use crate::model::duration::format_duration;
use crate::model::{TokenId, UsageRow};

/// A token as the API and `--json` show it (never the secret, except `token` at creation).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    /// The token's id: what `token show`, `token revoke` and `/api/v1/tokens/{id}` take.
    pub id: i64,
    /// The owner's email.
    pub user: String,
    /// The token's name, unique among the owner's live tokens.
    pub name: String,
    /// Free text given at creation, or null.
    pub description: Option<String>,
    /// `tg_` and the next 8 characters of the secret: enough to recognise the token in listings,
    /// logs and notices, never enough to use it.
    pub prefix: String,
    /// The scopes the token carries; `*` carries every scope.
    pub scopes: Vec<String>,
    /// The token's own rate limit (`100/min burst 20`), or null when `rate_limit.default` applies.
    pub rate_limit: Option<String>,
    /// When the token was minted.
    pub created_at: String,
    /// Who minted it: an account's email, or `cli:<os user>` for the CLI.
    pub created_by: String,
    /// When the token stops working, or null when it never expires.
    pub expires_at: Option<String>,
    /// When the token was (or, during a rotation's grace, will be) revoked; null while it is not.
    pub revoked_at: Option<String>,
    /// `active`, `revoked`, `expired` or `blocked` (the owner's account is disabled or lacks the
    /// token permission), as of the answer.
    pub status: &'static str,
    /// The last admitted use, or null until the token is used. Recorded in memory and written in
    /// batches, so it may trail the request by a flush interval.
    pub last_used_at: Option<String>,
    /// The HTTP method of the last admitted use, or null.
    pub last_used_method: Option<String>,
    /// The path of the last admitted use, or null.
    pub last_used_path: Option<String>,
    /// The client IP of the last admitted use, or null.
    pub last_used_ip: Option<String>,
    /// Who revoked the token: an email, `cli:<os user>`, `system:inactivity` or `gateway` (a
    /// rotation's old token retired at the successor's first use); null while it is not revoked.
    pub revoked_by: Option<String>,
    /// `manual`, `revoke_all`, `rotation` or `inactivity`; null while it is not revoked.
    pub revoke_reason: Option<String>,
    /// The id of the token this one succeeded in a rotation, or null.
    pub rotated_from: Option<i64>,
    /// The id of the token that succeeded this one in a rotation, or null.
    pub rotated_to: Option<i64>,
    /// How often the token was presented while revoked, expired or blocked: a client still holding
    /// a dead token shows here.
    pub refused_count: i64,
    /// When the latest such refused attempt was made, or null.
    pub refused_last_at: Option<String>,
    /// The client IP of the latest refused attempt, or null.
    pub refused_last_ip: Option<String>,
    /// The HTTP method of the latest refused attempt, or null.
    pub refused_last_method: Option<String>,
    /// The path of the latest refused attempt, or null.
    pub refused_last_path: Option<String>,
    /// Requests in the last 30 UTC days, today included, whatever their outcome: in listings only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_30d: Option<i64>,
    /// The secret: only in the response that minted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// After a change the data path obeys: which running gateways applied it.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<ConfirmationView>,
}

impl TokenView {
    /// The view of a stored token, its status as of `now`; without the secret and without a
    /// confirmation.
    pub fn new(record: &TokenRecord, now: UnixTime) -> Self {
        let t = record.clone();
        TokenView {
            id: t.id.0,
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
            rotated_from: t.rotated_from.map(i64::from),
            rotated_to: t.rotated_to.map(i64::from),
            refused_count: t.refused_count,
            refused_last_at: t.refused_last_at.map(to_rfc3339),
            refused_last_ip: t.refused_last_ip,
            refused_last_method: t.refused_last_method,
            refused_last_path: t.refused_last_path,
            requests_30d: t.requests_30d,
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

/// A token's usage: `tokengate token usage ID --json` and `GET /api/v1/tokens/{id}/usage`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageView {
    /// The token counted.
    pub token_id: i64,
    /// The UTC days covered, today included.
    pub days: u32,
    /// The sum of `requests` over the rows.
    pub total: i64,
    /// Requests per day, route and outcome, sorted by day, route and outcome; days, routes and
    /// outcomes without requests have no row.
    pub rows: Vec<UsageRowView>,
}

/// Requests of one UTC day, route and outcome.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageRowView {
    /// The UTC date (`2026-12-01`).
    pub day: String,
    /// The route's prefix, as configured.
    pub route: String,
    /// `2xx`, `3xx`, `4xx`, `5xx` (the upstream's status class, or the gateway's 502/504),
    /// `forbidden` (403, a missing scope), `limited` (429, the token's rate limit) or `refused`
    /// (401, the token was revoked, expired or blocked).
    pub outcome: String,
    /// How many requests.
    pub requests: i64,
}

impl UsageView {
    /// The document of `token_id`'s rows over `days` days.
    pub fn new(token_id: TokenId, days: u32, rows: Vec<UsageRow>) -> Self {
        let rows: Vec<UsageRowView> = rows
            .into_iter()
            .map(|r| UsageRowView { day: day_to_date(r.day), route: r.route, outcome: r.outcome, requests: r.requests })
            .collect();
        UsageView { token_id: token_id.0, days, total: rows.iter().map(|r| r.requests).sum(), rows }
    }
}

/// `token revoke-all` and `POST /api/v1/users/{email}/tokens/revoke-all`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RevokedAllView {
    /// The account whose live tokens were revoked.
    pub user: String,
    /// How many tokens were revoked.
    pub revoked: usize,
    /// Which running gateways applied the revocations (absent with `--no-wait` or when none were
    /// live).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<ConfirmationView>,
}

impl RevokedAllView {
    /// The answer for `user`, whose `revoked` tokens were revoked, with what the fleet confirmed.
    pub fn new(user: &str, revoked: usize, confirmation: Option<&Confirmation>) -> Self {
        RevokedAllView { user: user.to_owned(), revoked, confirmation: confirmation.map(ConfirmationView::new) }
    }
}

/// `token cap-expiry --json` and `POST /api/v1/tokens/cap-expiry`: the tokens whose expiry was
/// (or, in a dry run, would be) shortened to today's `tokens.max_lifetime`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CapExpiryView {
    /// True when nothing was changed: the tokens are those a real run would change.
    pub dry_run: bool,
    /// The `tokens.max_lifetime` applied (`90d`).
    pub max_lifetime: String,
    /// The tokens changed (or that would be), by id.
    pub tokens: Vec<CappedTokenView>,
    /// Which running gateways applied the new expiries (absent in a dry run, with `--no-wait`,
    /// and when no token changed).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<ConfirmationView>,
}

/// One token whose expiry `token cap-expiry` shortens.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CappedTokenView {
    /// The token's id.
    pub id: i64,
    /// The owner's email.
    pub user: String,
    /// The token's name.
    pub name: String,
    /// The token's display prefix.
    pub prefix: String,
    /// Its expiry before, or null when it never expired.
    pub old_expires_at: Option<String>,
    /// Its expiry after: `max(created_at + max_lifetime, now + tokens.warn_before)`.
    pub new_expires_at: String,
}

impl CapExpiryView {
    /// The answer for `capped` under `max_lifetime`, with what the fleet confirmed.
    pub fn new(
        dry_run: bool,
        max_lifetime: std::time::Duration,
        capped: &[CappedExpiry],
        confirmation: Option<&Confirmation>,
    ) -> Self {
        CapExpiryView {
            dry_run,
            max_lifetime: format_duration(max_lifetime),
            tokens: capped
                .iter()
                .map(|c| CappedTokenView {
                    id: c.token.id.0,
                    user: c.token.user_email.clone(),
                    name: c.token.name.clone(),
                    prefix: c.token.prefix.clone(),
                    old_expires_at: c.old_expires_at.map(to_rfc3339),
                    new_expires_at: to_rfc3339(c.new_expires_at),
                })
                .collect(),
            confirmation: confirmation.map(ConfirmationView::new),
        }
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
    /// The gateway's registry id: random, new each time a `serve` process starts.
    pub id: String,
    /// The host the gateway runs on.
    pub host: String,
    /// Its process id on that host.
    pub pid: i64,
    /// Its proxy listener's address.
    pub proxy: String,
}

impl ConfirmationView {
    /// The view of a confirmation: the wait in milliseconds and the pending gateways' names.
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
    /// The gateway's registry id: random, new each time a `serve` process starts.
    pub id: String,
    /// The host the gateway runs on.
    pub host: String,
    /// Its process id on that host.
    pub pid: i64,
    /// Its proxy listener's address.
    pub proxy: String,
    /// Its admin listener's address.
    pub admin: String,
    /// The tokengate version it runs (during a rolling upgrade the fleet shows more than one).
    pub version: String,
    /// When the `serve` process started.
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
    /// The view of a running gateway and its lag behind the change log.
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

/// An account as the API and `--json` show it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountView {
    /// The account's email: its name, and the user name in its tokens' Basic credentials (compared
    /// without case).
    pub email: String,
    /// A display name, or null.
    pub name: Option<String>,
    /// Manages every account and every token.
    pub superuser: bool,
    /// Sees, creates and revokes every account's tokens, but changes no account.
    pub token_manager: bool,
    /// A disabled account's tokens are refused (`status: blocked`) until it is enabled again.
    pub enabled: bool,
    /// The token permission: without it the account may not be given tokens, and its tokens are
    /// blocked like a disabled account's.
    pub can_create_tokens: bool,
    /// In listings only: how many live (active or blocked) tokens the account holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<i64>,
    /// When the account was created.
    pub created_at: String,
    /// After a change the data path obeys (`user set`): which running gateways applied it.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<ConfirmationView>,
}

impl AccountView {
    /// The view of an account, without the token count.
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

    /// The listing's view: the account with the number of its live tokens.
    pub fn summary(summary: &AccountSummary) -> Self {
        AccountView { tokens: Some(summary.live_tokens), ..AccountView::new(&summary.account) }
    }
}

/// `GET /api/v1/me`: the caller's account and the token it called with, so that a client (the
/// web page) knows what this token may do before it tries.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MeView {
    /// The caller's account; its fields are at the top level of the document.
    #[serde(flatten)]
    pub account: AccountView,
    /// The token the caller authenticated with.
    pub token: CallerTokenView,
}

/// The token a caller authenticated with.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CallerTokenView {
    /// The calling token's id.
    pub id: i64,
    /// The calling token's name.
    pub name: String,
    /// The calling token's scopes: they bound what the caller may do, and what a token it creates
    /// may carry.
    pub scopes: Vec<String>,
}

impl MeView {
    /// The caller's view: its account and the token it presented.
    pub fn new(account: &AccountRecord, token: &IndexedToken) -> Self {
        MeView {
            account: AccountView::new(account),
            token: CallerTokenView {
                id: token.id,
                name: token.name().to_string(),
                scopes: token.scopes().iter().map(|s| s.to_string()).collect(),
            },
        }
    }
}

/// An audit event as the API and `tokengate events --json` show it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventView {
    /// The event's id; newer events have larger ids.
    pub id: i64,
    /// When it happened.
    pub at: String,
    /// What happened: `token.created`, `token.revoked`, `account.updated`, ... (one of the audit
    /// event kinds).
    pub kind: String,
    /// Who acted: an account's email (admin API, web page), `cli:<os user>` (the CLI),
    /// `system:inactivity` (the inactivity policy) or `gateway` (the gateway itself).
    pub actor: String,
    /// The email of the account the event is about, or null.
    pub account: Option<String>,
    /// The id of the token the event is about, or null.
    pub token_id: Option<i64>,
    /// The client IP of the request that caused it, or null.
    pub ip: Option<String>,
    /// The user agent of the request that caused it (`cli` for the CLI), or null.
    pub user_agent: Option<String>,
    /// What is particular to the kind: for `token.revoked` the token's `name`, `prefix` and the
    /// `reason`; for `account.updated` the changed flags.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl EventView {
    /// The view of a stored event; a detail that is not valid JSON shows as null.
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
    /// `default_lifetime` in seconds.
    pub default_lifetime_seconds: u64,
    /// The longest lifetime a token may be given.
    pub max_lifetime: String,
    /// `max_lifetime` in seconds.
    pub max_lifetime_seconds: u64,
    /// Whether a token may be created that never expires.
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
    /// The scope: `admin` or `admin:read`.
    pub name: &'static str,
    /// What a token with this scope may do, in a sentence for people.
    pub allows: &'static str,
}

impl PolicyView {
    /// The view of the configured token policy, with the reserved scopes and their meanings.
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
