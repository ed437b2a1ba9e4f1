//! The token and account lifecycle: every rule of the control path, shared by the CLI and the
//! admin API. Each mutation is one store transaction (with its audit event and change-log row),
//! then applied to this process's index before returning when the process runs a gateway.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::clock::{Clock, UnixTime, to_rfc3339};
use crate::config::TokenPolicy;
use crate::duration::format_duration;
use crate::fleet::{ConfirmPolicy, Confirmation};
use crate::metrics::Metrics;
use crate::model::{EventKind, Notice, NoticeDetail};
use crate::rate::Rate;
use crate::store::{
    AccountChanges, AccountRecord, AccountSummary, EventFilter, EventRecord, KeyedNotification, NewAccount, NewEvent,
    NewToken, RevokeReason, Store, StoreError, TokenFilter, TokenRecord, TokenStatus,
};
use crate::sync::IndexSync;
use crate::token::Secret;

/// The notice kind of an expiry reminder.
const EXPIRY_REMINDER: &str = "token.expiring";

/// Longest token name accepted.
const MAX_NAME_CHARS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request itself is wrong (a malformed name, an unknown scope).
    #[error("{0}")]
    Invalid(String),
    /// A lifetime outside the administrator's bounds.
    #[error("{0}")]
    OutsidePolicy(String),
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
    #[error(transparent)]
    Store(StoreError),
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

/// Who performs an action, as the audit log records it, and with which powers.
#[derive(Debug, Clone)]
pub struct Actor {
    /// An email, or `cli:<os user>`.
    pub label: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
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
    pub account: AccountRecord,
    pub token_id: i64,
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
    fn principal(&self) -> Option<&Principal> {
        match &self.authority {
            Authority::Host => None,
            Authority::Token(principal) => Some(principal),
        }
    }

    /// Only a superuser manages accounts.
    fn require_superuser(&self) -> Result<(), ServiceError> {
        match self.principal() {
            Some(p) if !p.account.superuser => {
                Err(ServiceError::Forbidden("only a superuser may manage accounts".into()))
            }
            _ => Ok(()),
        }
    }

    /// Whether the actor may see `email`'s tokens (the host sees everything).
    fn may_manage(&self, email: &str) -> bool {
        self.principal().is_none_or(|p| p.may_manage(email))
    }

    /// The accounts a listing is confined to: `None` for managers and the host, else the
    /// caller's own (asking for another account's is refused).
    fn confine_to_own(&self, asked: &[String], what: &str) -> Result<Option<String>, ServiceError> {
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
    fn require_may_mint_for(&self, owner: &AccountRecord) -> Result<(), ServiceError> {
        match self.principal() {
            Some(p) if owner.superuser && !p.account.superuser => Err(ServiceError::Forbidden(format!(
                "only a superuser may create or rotate tokens of {}, a superuser",
                owner.email
            ))),
            _ => Ok(()),
        }
    }

    /// A token passes on only scopes it carries itself (`*` only from `*`).
    fn require_carries(&self, scopes: &[String]) -> Result<(), ServiceError> {
        match self.principal().and_then(|p| crate::scope::first_missing(&p.scopes, scopes)) {
            Some(missing) => Err(ServiceError::InsufficientScope(missing.to_owned())),
            None => Ok(()),
        }
    }

    /// A plain account may not give its tokens more than the default rate limit (when there
    /// is one): it would be raising its own budget.
    fn require_limit_within(&self, rate: Option<&Rate>, default: Option<&Rate>) -> Result<(), ServiceError> {
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

/// When a new token expires, as requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpiryRequest {
    /// The policy's default lifetime.
    #[default]
    Default,
    In(Duration),
    At(UnixTime),
    Never,
}

#[derive(Debug, Clone)]
pub struct CreateToken {
    pub owner_email: String,
    pub name: String,
    pub description: Option<String>,
    pub expiry: ExpiryRequest,
    /// Empty: the policy's default scopes.
    pub scopes: Vec<String>,
    pub rate_limit: Option<Rate>,
}

/// A minted token: its metadata and the secret, which exists only in this value.
#[derive(Debug)]
pub struct CreatedToken {
    pub token: TokenRecord,
    pub secret: Secret,
    /// Which running gateways accept it already (`None`: not waited for).
    pub confirmation: Option<Confirmation>,
}

/// The outcome of a change that the data path obeys, and which running gateways applied it
/// before this returned (`None`: the caller did not wait).
#[derive(Debug)]
pub struct Confirmed<T> {
    pub value: T,
    pub confirmation: Option<Confirmation>,
}

impl<T> std::ops::Deref for Confirmed<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

#[derive(Debug, Clone, Default)]
pub struct CreateAccount {
    pub email: String,
    pub name: Option<String>,
    pub superuser: bool,
    pub token_manager: bool,
    pub can_create_tokens: bool,
}

/// The outcome of a rotation: the predecessor (revoked, or scheduled to be) and the successor.
#[derive(Debug)]
pub struct Rotated {
    pub predecessor: TokenRecord,
    /// Its `confirmation` says which gateways know both tokens' new state.
    pub successor: CreatedToken,
}

/// How long an `--until-first-use` predecessor stays valid at most when no grace is given.
const DEFAULT_HANDOVER_WINDOW: Duration = Duration::from_secs(7 * 86_400);

/// The outcome of a revocation: `already` when the token had been revoked before.
#[derive(Debug)]
pub struct Revoked {
    pub token: TokenRecord,
    pub already: bool,
    /// Which running gateways refuse it already (`None`: not waited for).
    pub confirmation: Option<Confirmation>,
}

/// Audit-log filters as people write them: by email rather than account id.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub user: Option<String>,
    pub filter: EventFilter,
}

/// Token filters as people write them: by email rather than account id.
#[derive(Debug, Clone, Default)]
pub struct TokenQuery {
    pub users: Vec<String>,
    pub unused_for: Option<Duration>,
    pub filter: TokenFilter,
}

pub struct LifecycleService {
    store: Store,
    policy: TokenPolicy,
    clock: Clock,
    /// Present in a process that serves traffic: mutations reach its index before returning.
    sync: Option<Arc<IndexSync>>,
    /// `rate_limit.default`: the most a plain account may give its own tokens.
    default_rate: Option<Rate>,
    /// Set: changes the data path obeys wait until every running gateway applied them.
    confirm: Option<ConfirmPolicy>,
    /// Where confirmation times are reported (in a gateway: `/metrics`).
    metrics: Option<Arc<Metrics>>,
}

impl LifecycleService {
    pub fn new(store: Store, policy: TokenPolicy, clock: Clock, sync: Option<Arc<IndexSync>>) -> Self {
        LifecycleService { store, policy, clock, sync, default_rate: None, confirm: None, metrics: None }
    }

    /// Bounds the limits plain accounts give their own tokens by `rate_limit.default`.
    pub fn with_default_rate(mut self, default_rate: Option<Rate>) -> Self {
        self.default_rate = default_rate;
        self
    }

    /// Makes changes that the data path obeys wait for every running gateway (`None`: return
    /// at commit, as `--no-wait` asks).
    pub fn with_confirmation(mut self, policy: Option<ConfirmPolicy>, metrics: Option<Arc<Metrics>>) -> Self {
        self.confirm = policy;
        self.metrics = metrics;
        self
    }

    /// Waits until every running gateway has applied what was just committed (the change log's
    /// latest sequence: at least this change's, since writers commit one at a time). Failing to
    /// read the registry does not fail the change, which is committed: it is logged.
    async fn confirm_change(&self) -> Option<Confirmation> {
        let policy = self.confirm?;
        let waited = async {
            let seq = self.store.latest_change_seq().await?;
            crate::fleet::confirm(&self.store, seq, policy).await
        };
        match waited.await {
            Ok(confirmation) => {
                if let Some(metrics) = &self.metrics {
                    metrics.confirm_duration.observe(confirmation.elapsed.as_secs_f64());
                }
                if !confirmation.complete() {
                    tracing::info!(seq = confirmation.seq, pending = %confirmation.laggards(),
                        "change committed; not every running gateway confirmed it in time (they will apply it)");
                }
                Some(confirmation)
            }
            Err(error) => {
                tracing::warn!(%error, "change committed; cannot read the gateway registry to confirm it");
                None
            }
        }
    }

    /// The token policy: the bounds the create dialogs and the API validate against.
    pub fn policy(&self) -> &TokenPolicy {
        &self.policy
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// Brings this process's index up to date with what was just committed. A failure here
    /// is logged, not returned: the change is committed and the poller will apply it.
    async fn apply_locally(&self) {
        if let Some(sync) = &self.sync
            && let Err(error) = sync.catch_up().await
        {
            tracing::warn!(%error, "change committed but not yet applied to the index; the poller will retry");
        }
    }

    // ---- accounts ----

    pub async fn create_account(&self, request: CreateAccount, actor: &Actor) -> Result<AccountRecord, ServiceError> {
        actor.require_superuser()?;
        let email = validate_email(&request.email)?;
        let name = request.name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
        let event = actor.event(
            EventKind::AccountCreated,
            json!({
                "superuser": request.superuser,
                "token_manager": request.token_manager,
                "can_create_tokens": request.can_create_tokens,
            }),
        );
        let new = NewAccount {
            email,
            name,
            superuser: request.superuser,
            token_manager: request.token_manager,
            can_create_tokens: request.can_create_tokens,
        };
        let account = self.store.insert_account(&new, self.now(), &event).await?;
        self.apply_locally().await;
        Ok(account)
    }

    pub async fn account(&self, email: &str) -> Result<AccountRecord, ServiceError> {
        self.store
            .account_by_email(email)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no account with email {email}")))
    }

    pub async fn list_accounts(&self, actor: &Actor) -> Result<Vec<AccountSummary>, ServiceError> {
        actor.require_superuser()?;
        Ok(self.store.list_accounts(self.now()).await?)
    }

    /// Changes an account's flags. Disabling it or taking away the token permission blocks its
    /// tokens at once (they stay in the database and come back when the change is undone).
    pub async fn update_account(
        &self,
        email: &str,
        changes: AccountChanges,
        actor: &Actor,
    ) -> Result<Confirmed<AccountRecord>, ServiceError> {
        actor.require_superuser()?;
        let account = self.account(email).await?;
        let mut detail = serde_json::Map::new();
        for (field, value) in [
            ("enabled", changes.enabled),
            ("superuser", changes.superuser),
            ("token_manager", changes.token_manager),
            ("can_create_tokens", changes.can_create_tokens),
        ] {
            if let Some(value) = value {
                detail.insert(field.to_owned(), json!(value));
            }
        }
        let event = actor.event(EventKind::AccountUpdated, serde_json::Value::Object(detail));
        let (_, after) = self
            .store
            .update_account(account.id, &changes, self.now(), &event)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no account with email {email}")))?;
        self.apply_locally().await;
        Ok(Confirmed { value: after, confirmation: self.confirm_change().await })
    }

    // ---- tokens ----

    /// Mints a token within the policy: a name unique among the owner's live tokens, a
    /// lifetime within bounds, known scopes.
    pub async fn create_token(&self, request: CreateToken, actor: &Actor) -> Result<CreatedToken, ServiceError> {
        let name = validate_token_name(&request.name)?;
        if !actor.may_manage(&request.owner_email) {
            return Err(ServiceError::Forbidden("you may create tokens for your own account only".into()));
        }
        let owner = self.account(&request.owner_email).await?;
        actor.require_may_mint_for(&owner)?;
        ensure_may_hold_tokens(&owner)?;
        let now = self.now();
        let expires_at = self.expiry(request.expiry, now)?;
        let scopes = self.scopes(&request.scopes)?;
        actor.require_carries(&scopes)?;
        actor.require_limit_within(request.rate_limit.as_ref(), self.default_rate.as_ref())?;
        let (new, secret) = mint(
            &owner,
            name,
            request.description.map(|d| d.trim().to_owned()).filter(|d| !d.is_empty()),
            scopes,
            request.rate_limit.map(|r| r.to_string()),
            expires_at,
            actor,
        )?;
        let event = actor.event(EventKind::TokenCreated, created_detail(&new));
        let token = self.store.insert_token(&new, now, &event).await?;
        self.apply_locally().await;
        Ok(CreatedToken { token, secret, confirmation: self.confirm_change().await })
    }

    /// Rotates a token: a successor with the same owner, name, description, scopes and limit,
    /// and a lifetime as long as the predecessor's had (within today's bounds). The predecessor
    /// is revoked now, at the end of `grace`, or — `until_first_use` — when the gateway first
    /// sees the successor (at the latest when the grace, by default 7 days, ends). The grace
    /// never extends the predecessor's own expiry.
    pub async fn rotate_token(
        &self,
        id: i64,
        grace: Option<Duration>,
        until_first_use: bool,
        actor: &Actor,
    ) -> Result<Rotated, ServiceError> {
        let predecessor = self.visible_token(id, actor).await?;
        let now = self.now();
        match predecessor.status(now) {
            TokenStatus::Revoked => {
                return Err(ServiceError::Invalid(format!("token {id} is revoked; mint a new one")));
            }
            TokenStatus::Expired => {
                return Err(ServiceError::Invalid(format!("token {id} has expired; mint a new one")));
            }
            TokenStatus::Active | TokenStatus::Blocked => {}
        }
        if let Some(successor) = predecessor.rotated_to {
            return Err(ServiceError::Conflict(format!(
                "token {id} was already rotated to token {successor}; rotate that one instead"
            )));
        }
        let owner = self.account(&predecessor.user_email).await?;
        actor.require_may_mint_for(&owner)?;
        // The caller receives the successor's secret: it must carry what the successor will.
        actor.require_carries(&predecessor.scope_list())?;
        ensure_may_hold_tokens(&owner)?;
        let lifetime =
            predecessor.expires_at.map(|at| Duration::from_secs((at - predecessor.created_at).max(1) as u64));
        let expiry = match lifetime {
            Some(lifetime) => ExpiryRequest::In(lifetime.min(self.policy.max_lifetime)),
            None if self.policy.allow_never_expires => ExpiryRequest::Never,
            None => ExpiryRequest::Default,
        };
        let expires_at = self.expiry(expiry, now)?;
        let grace = match (grace, until_first_use) {
            (Some(grace), _) => grace,
            (None, true) => DEFAULT_HANDOVER_WINDOW,
            (None, false) => Duration::ZERO,
        };
        let mut revoked_at = now + grace.as_secs() as i64;
        if let Some(expires) = predecessor.expires_at {
            revoked_at = revoked_at.min(expires);
        }
        let (mut new, secret) = mint(
            &owner,
            predecessor.name.clone(),
            predecessor.description.clone(),
            predecessor.scope_list(),
            predecessor.rate_limit.clone(),
            expires_at,
            actor,
        )?;
        new.rotated_from = Some(id);
        new.handover_from = until_first_use.then_some(id);
        let rotated_event = actor.event(
            EventKind::TokenRotated,
            json!({
                "name": predecessor.name,
                "prefix": predecessor.prefix,
                "successor_prefix": new.prefix,
                "revoked_at": to_rfc3339(revoked_at),
                "until_first_use": until_first_use,
            }),
        );
        let mut created = created_detail(&new);
        created["rotated_from"] = json!(id);
        // One message for a rotation: the `token.rotated` one.
        let created_event = actor.event(EventKind::TokenCreated, created).without_notice();
        let (predecessor, successor) =
            self.store.rotate_token(id, &new, revoked_at, now, &rotated_event, &created_event).await?.ok_or_else(
                || ServiceError::Conflict(format!("token {id} changed meanwhile; look at it and try again")),
            )?;
        self.apply_locally().await;
        let confirmation = self.confirm_change().await;
        Ok(Rotated { predecessor, successor: CreatedToken { token: successor, secret, confirmation } })
    }

    fn expiry(&self, request: ExpiryRequest, now: UnixTime) -> Result<Option<UnixTime>, ServiceError> {
        let max = self.policy.max_lifetime;
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
            ExpiryRequest::Default => Ok(Some(now + self.policy.default_lifetime.as_secs() as i64)),
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
            ExpiryRequest::Never if self.policy.allow_never_expires => Ok(None),
            ExpiryRequest::Never => Err(ServiceError::OutsidePolicy(format!(
                "tokens that never expire are not allowed (tokens.allow_never_expires = false); the maximum lifetime is {}",
                format_duration(max)
            ))),
        }
    }

    fn scopes(&self, requested: &[String]) -> Result<Vec<String>, ServiceError> {
        let requested = if requested.is_empty() { &self.policy.default_scopes } else { requested };
        let mut scopes: Vec<String> = Vec::new();
        for scope in requested {
            let scope = scope.trim();
            let known = scope == crate::scope::ALL
                || crate::scope::is_reserved(scope)
                || self.policy.scopes.iter().any(|s| s == scope);
            if !known {
                return Err(ServiceError::Invalid(format!(
                    "unknown scope {scope:?}: known scopes are {}, {} (or * for all)",
                    self.policy.scopes.join(", "),
                    crate::scope::RESERVED.join(", ")
                )));
            }
            if !scopes.iter().any(|s| s == scope) {
                scopes.push(scope.to_owned());
            }
        }
        Ok(scopes)
    }

    pub async fn token(&self, id: i64) -> Result<TokenRecord, ServiceError> {
        self.store.token_by_id(id).await?.ok_or_else(|| no_token(id))
    }

    /// A token the actor may see. Another account's token answers exactly like a missing one,
    /// so token ids cannot be probed.
    pub async fn visible_token(&self, id: i64, actor: &Actor) -> Result<TokenRecord, ServiceError> {
        let token = self.token(id).await?;
        if actor.may_manage(&token.user_email) { Ok(token) } else { Err(no_token(id)) }
    }

    /// The filtered listing; an account that is not a manager sees its own tokens only.
    pub async fn list_tokens(&self, mut query: TokenQuery, actor: &Actor) -> Result<Vec<TokenRecord>, ServiceError> {
        if let Some(own) = actor.confine_to_own(&query.users, "list the tokens of")? {
            query.users = vec![own];
        }
        let mut filter = query.filter;
        for email in &query.users {
            filter.account_ids.push(self.account(email).await?.id);
        }
        let now = self.now();
        if let Some(unused_for) = query.unused_for {
            filter.unused_since = Some(now - unused_for.as_secs() as i64);
        }
        Ok(self.store.list_tokens(&filter, now).await?)
    }

    /// Revokes a token; from the next request on, the gateway refuses it. Revoking a revoked
    /// token changes nothing and says so.
    pub async fn revoke_token(&self, id: i64, actor: &Actor) -> Result<Revoked, ServiceError> {
        let current = self.visible_token(id, actor).await?;
        let event = actor.event(
            EventKind::TokenRevoked,
            json!({"name": current.name, "prefix": current.prefix, "reason": RevokeReason::Manual.as_str()}),
        );
        let (token, changed) = self
            .store
            .revoke_token(id, &actor.label, RevokeReason::Manual, self.now(), &event)
            .await?
            .ok_or_else(|| no_token(id))?;
        self.apply_locally().await;
        // Nothing to wait for when nothing changed.
        let confirmation = if changed { self.confirm_change().await } else { None };
        Ok(Revoked { token, already: !changed, confirmation })
    }

    /// Changes a token's own rate limit (`None`: back to the default). A running gateway
    /// applies it on the token's next request.
    pub async fn set_rate_limit(
        &self,
        id: i64,
        rate: Option<Rate>,
        actor: &Actor,
    ) -> Result<Confirmed<TokenRecord>, ServiceError> {
        let current = self.visible_token(id, actor).await?;
        actor.require_limit_within(rate.as_ref(), self.default_rate.as_ref())?;
        let rate_limit = rate.map(|r| r.to_string());
        let event = actor.event(
            EventKind::TokenLimitChanged,
            json!({"name": current.name, "prefix": current.prefix, "from": current.rate_limit, "to": rate_limit}),
        );
        let token = self
            .store
            .set_rate_limit(id, rate_limit.as_deref(), self.now(), &event)
            .await?
            .ok_or_else(|| no_token(id))?;
        self.apply_locally().await;
        Ok(Confirmed { value: token, confirmation: self.confirm_change().await })
    }

    /// Revokes every live token of an account; returns how many.
    pub async fn revoke_all_tokens(&self, email: &str, actor: &Actor) -> Result<Confirmed<usize>, ServiceError> {
        if !actor.may_manage(email) {
            return Err(ServiceError::Forbidden("you may revoke your own tokens only".into()));
        }
        let account = self.account(email).await?;
        let event = actor.event(EventKind::TokenRevoked, json!({"reason": RevokeReason::RevokeAll.as_str()}));
        let ids = self.store.revoke_all_tokens(account.id, &account.email, &actor.label, self.now(), &event).await?;
        self.apply_locally().await;
        let confirmation = if ids.is_empty() { None } else { self.confirm_change().await };
        Ok(Confirmed { value: ids.len(), confirmation })
    }

    // ---- the fleet ----

    /// The running gateways and their lag (superusers; the host).
    pub async fn running_gateways(&self, actor: &Actor) -> Result<Vec<crate::fleet::GatewayStatus>, ServiceError> {
        match actor.principal() {
            Some(p) if !p.account.superuser => {
                Err(ServiceError::Forbidden("only a superuser may list the running gateways".into()))
            }
            _ => Ok(crate::fleet::running(&self.store, self.stale_after()).await?),
        }
    }

    /// When a gateway without a heartbeat counts as not running.
    fn stale_after(&self) -> Duration {
        self.confirm.map_or(crate::fleet::DEFAULT_STALE_AFTER, |policy| policy.stale_after)
    }

    // ---- periodic lifecycle work ----

    /// Applies the inactivity policy: revokes live tokens unused for `tokens.revoke_unused_after`
    /// (never used: created that long ago), reason `inactivity`. With `dry_run`, only lists them.
    pub async fn sweep_inactive(&self, dry_run: bool, actor: &Actor) -> Result<Vec<TokenRecord>, ServiceError> {
        let Some(unused_for) = self.policy.revoke_unused_after else {
            return Err(ServiceError::Invalid(
                "no inactivity policy is configured: set tokens.revoke_unused_after (for example \"180d\")".into(),
            ));
        };
        let query = TokenQuery {
            unused_for: Some(unused_for),
            filter: TokenFilter { sort: "last_used".parse().unwrap_or_default(), ..TokenFilter::default() },
            ..TokenQuery::default()
        };
        let candidates = self.list_tokens(query, actor).await?;
        if dry_run {
            return Ok(candidates);
        }
        let mut revoked = Vec::with_capacity(candidates.len());
        for token in candidates {
            let last = token.last_used_at.unwrap_or(token.created_at);
            let event = actor.event(
                EventKind::TokenRevoked,
                json!({
                    "name": token.name,
                    "prefix": token.prefix,
                    "reason": RevokeReason::Inactivity.as_str(),
                    "unused_since": to_rfc3339(last),
                }),
            );
            let outcome =
                self.store.revoke_token(token.id, &actor.label, RevokeReason::Inactivity, self.now(), &event).await?;
            if let Some((token, true)) = outcome {
                revoked.push(token);
            }
        }
        self.apply_locally().await;
        Ok(revoked)
    }

    pub fn has_inactivity_policy(&self) -> bool {
        self.policy.revoke_unused_after.is_some()
    }

    /// Tells owners of tokens the inactivity policy will revoke within `tokens.warn_before`.
    pub async fn warn_inactive(&self) -> Result<usize, ServiceError> {
        let Some(unused_for) = self.policy.revoke_unused_after else { return Ok(0) };
        let now = self.now();
        let warn_after = unused_for.saturating_sub(self.policy.warn_before).as_secs() as i64;
        Ok(self.store.warn_inactive(now - warn_after, unused_for.as_secs() as i64, now).await?.len())
    }

    /// Queues expiry reminders: for each token, one message per lead time it enters (a token
    /// that has 20 hours left gets the 1-day reminder, once).
    pub async fn queue_expiry_reminders(&self, leads: &[Duration]) -> Result<usize, ServiceError> {
        let now = self.now();
        let mut leads: Vec<i64> = leads.iter().map(|l| l.as_secs() as i64).filter(|l| *l > 0).collect();
        leads.sort_unstable();
        let mut queued = 0;
        let mut reminded = std::collections::HashSet::new();
        // Smallest lead first: a token inside several lead times gets only the nearest one.
        for lead in leads {
            for token in self.store.tokens_expiring_within(lead, now).await? {
                if !reminded.insert(token.id) {
                    continue;
                }
                let detail = NoticeDetail {
                    name: Some(token.name.clone()),
                    prefix: Some(token.prefix.clone()),
                    expires_at: token.expires_at.map(to_rfc3339),
                    ..NoticeDetail::default()
                };
                let notice = Notice::from_gateway(EXPIRY_REMINDER, now, detail);
                let key = format!("expiry:{}:{lead}", token.id);
                let reminder = KeyedNotification {
                    dedupe_key: &key,
                    account_id: token.account_id,
                    recipient: &token.user_email,
                    token_id: token.id,
                    notice: &notice,
                };
                let inserted = self.store.enqueue_once(&reminder, now).await?;
                queued += usize::from(inserted);
            }
        }
        Ok(queued)
    }

    // ---- audit ----

    pub async fn events(
        &self,
        user: Option<&str>,
        token_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<EventRecord>, ServiceError> {
        let filter = EventFilter { token_id, limit, ..EventFilter::default() };
        self.find_events(EventQuery { user: user.map(str::to_owned), filter }, &Actor::cli()).await
    }

    /// The audit log, filtered, newest first; an account that is not a manager reads its own.
    pub async fn find_events(&self, mut query: EventQuery, actor: &Actor) -> Result<Vec<EventRecord>, ServiceError> {
        let asked: Vec<String> = query.user.iter().cloned().collect();
        if let Some(own) = actor.confine_to_own(&asked, "read the events of")? {
            query.user = Some(own);
        }
        let mut filter = query.filter;
        if let Some(email) = &query.user {
            filter.account_id = Some(self.account(email).await?.id);
        }
        Ok(self.store.list_events(&filter).await?)
    }
}

/// The one answer for a token that is missing or not the caller's.
fn no_token(id: i64) -> ServiceError {
    ServiceError::NotFound(format!("no token with id {id}"))
}

/// An account must be enabled and hold the token permission to be given a token.
fn ensure_may_hold_tokens(owner: &AccountRecord) -> Result<(), ServiceError> {
    if !owner.enabled {
        return Err(ServiceError::Forbidden(format!("account {} is disabled", owner.email)));
    }
    if !owner.can_create_tokens {
        return Err(ServiceError::Forbidden(format!("account {} may not hold tokens", owner.email)));
    }
    Ok(())
}

/// A new secret and the row that will hold its digest.
fn mint(
    owner: &AccountRecord,
    name: String,
    description: Option<String>,
    scopes: Vec<String>,
    rate_limit: Option<String>,
    expires_at: Option<UnixTime>,
    actor: &Actor,
) -> Result<(NewToken, Secret), ServiceError> {
    let secret = Secret::generate().map_err(|e| ServiceError::Invalid(format!("no randomness available: {e}")))?;
    let new = NewToken {
        account_id: owner.id,
        name,
        description,
        digest: *secret.digest().as_bytes(),
        prefix: secret.display_prefix(),
        scopes,
        rate_limit,
        created_by: actor.label.clone(),
        expires_at,
        rotated_from: None,
        handover_from: None,
    };
    Ok((new, secret))
}

/// The audit detail of a minted token.
fn created_detail(new: &NewToken) -> serde_json::Value {
    json!({
        "name": new.name,
        "prefix": new.prefix,
        "scopes": new.scopes,
        "expires_at": new.expires_at.map(to_rfc3339),
        "rate_limit": new.rate_limit,
    })
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

/// An email usable as a Basic-auth user name: one `@`, no colon, no spaces or control characters.
fn validate_email(email: &str) -> Result<String, ServiceError> {
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

fn validate_token_name(name: &str) -> Result<String, ServiceError> {
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
