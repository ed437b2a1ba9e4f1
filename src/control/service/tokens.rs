//! Tokens: minting within the policy, rotation with its hand-over, revocation, rate limits and
//! the filtered listing.

use std::time::Duration;

use serde_json::json;

use super::policy::validate_token_name;
use super::{Actor, LifecycleService, ServiceError};
use crate::clock::{UnixTime, to_rfc3339};
use crate::control::fleet::Confirmation;
use crate::model::rate::Rate;
use crate::model::secret::Secret;
use crate::model::{AccountRecord, EventKind, NewToken, RevokeReason, TokenFilter, TokenId, TokenRecord, TokenStatus};

/// When a new token expires, as requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpiryRequest {
    /// The policy's default lifetime.
    #[default]
    Default,
    /// This long from now (`--expires-in`, `expires_in`); at most `tokens.max_lifetime`.
    In(Duration),
    /// At this time (`--expires-at`, `expires_at`): in the future, at most `tokens.max_lifetime`
    /// away.
    At(UnixTime),
    /// No expiry (`--never-expires`); only with `tokens.allow_never_expires`.
    Never,
}

/// A token to mint, as the CLI and the admin API both ask for it.
#[derive(Debug, Clone)]
pub struct CreateToken {
    /// The owner; an actor who is not a manager may name only its own account.
    pub owner_email: String,
    /// Unique among the owner's live tokens; 1 to 100 characters, no control characters.
    pub name: String,
    /// Free text for the owner's listings.
    pub description: Option<String>,
    /// When it expires; checked against the policy.
    pub expiry: ExpiryRequest,
    /// Empty: the policy's default scopes.
    pub scopes: Vec<String>,
    /// The token's own limit (`None`: `rate_limit.default` applies); a plain account may not set
    /// one above the default.
    pub rate_limit: Option<Rate>,
}

/// A minted token: its metadata and the secret, which exists only in this value.
#[derive(Debug)]
pub struct CreatedToken {
    /// The stored token, as listings will show it.
    pub token: TokenRecord,
    /// The secret: shown to the caller once, never stored.
    pub secret: Secret,
    /// Which running gateways accept it already (`None`: not waited for).
    pub confirmation: Option<Confirmation>,
}

/// The outcome of a change that the data path obeys, and which running gateways applied it
/// before this returned (`None`: the caller did not wait).
#[derive(Debug)]
pub struct Confirmed<T> {
    /// What the change produced.
    pub value: T,
    /// Which running gateways applied the change (`None`: not waited for, or nothing changed).
    pub confirmation: Option<Confirmation>,
}

impl<T> std::ops::Deref for Confirmed<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// The outcome of a rotation: the predecessor (revoked, or scheduled to be) and the successor.
#[derive(Debug)]
pub struct Rotated {
    /// The old token as it now is: revoked, or scheduled to be (after the grace, or at the
    /// successor's first use).
    pub predecessor: TokenRecord,
    /// Its `confirmation` says which gateways know both tokens' new state.
    pub successor: CreatedToken,
}

/// How long an `--until-first-use` predecessor stays valid at most when no grace is given.
const DEFAULT_HANDOVER_WINDOW: Duration = Duration::from_secs(7 * 86_400);

/// The outcome of a revocation: `already` when the token had been revoked before.
#[derive(Debug)]
pub struct Revoked {
    /// The token, as it is now.
    pub token: TokenRecord,
    /// It had been revoked before: nothing changed, and nothing waited for the fleet.
    pub already: bool,
    /// Which running gateways refuse it already (`None`: not waited for).
    pub confirmation: Option<Confirmation>,
}

/// Token filters as people write them: by email rather than account id.
#[derive(Debug, Clone, Default)]
pub struct TokenQuery {
    /// Owners' emails (any of them); empty: every account. An actor who is not a manager may name
    /// only its own, and gets its own when it names none.
    pub users: Vec<String>,
    /// Not used for this long (never used: created that long ago); measured from the service's now.
    pub unused_for: Option<Duration>,
    /// The other filters and the sort, as the store takes them.
    pub filter: TokenFilter,
}

impl LifecycleService {
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
        actor.require_limit_within(request.rate_limit.as_ref(), self.default_rate().as_ref())?;
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
        id: impl Into<TokenId>,
        grace: Option<Duration>,
        until_first_use: bool,
        actor: &Actor,
    ) -> Result<Rotated, ServiceError> {
        let id = id.into();
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
            Some(lifetime) => ExpiryRequest::In(lifetime.min(self.policy().max_lifetime)),
            None if self.policy().allow_never_expires => ExpiryRequest::Never,
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

    /// A token by id, without checking who may see it: for the CLI, which runs with the host's
    /// authority; the admin API uses [`Self::visible_token`].
    pub async fn token(&self, id: impl Into<TokenId>) -> Result<TokenRecord, ServiceError> {
        let id = id.into();
        self.store.token_by_id(id).await?.ok_or_else(|| no_token(id))
    }

    /// A token the actor may see. Another account's token answers exactly like a missing one,
    /// so token ids cannot be probed.
    pub async fn visible_token(&self, id: impl Into<TokenId>, actor: &Actor) -> Result<TokenRecord, ServiceError> {
        let id = id.into();
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
    pub async fn revoke_token(&self, id: impl Into<TokenId>, actor: &Actor) -> Result<Revoked, ServiceError> {
        let id = id.into();
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
        id: impl Into<TokenId>,
        rate: Option<Rate>,
        actor: &Actor,
    ) -> Result<Confirmed<TokenRecord>, ServiceError> {
        let id = id.into();
        let current = self.visible_token(id, actor).await?;
        actor.require_limit_within(rate.as_ref(), self.default_rate().as_ref())?;
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
        // Each token's event names it, as a single revocation's does (its notice too).
        let event_for = |name: &str, prefix: &str| {
            let detail = json!({"name": name, "prefix": prefix, "reason": RevokeReason::RevokeAll.as_str()});
            actor.event(EventKind::TokenRevoked, detail)
        };
        let ids =
            self.store.revoke_all_tokens(account.id, &account.email, &actor.label, self.now(), &event_for).await?;
        self.apply_locally().await;
        let confirmation = if ids.is_empty() { None } else { self.confirm_change().await };
        Ok(Confirmed { value: ids.len(), confirmation })
    }
}

/// The one answer for a token that is missing or not the caller's.
fn no_token(id: TokenId) -> ServiceError {
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
    let secret = Secret::generate().map_err(|e| ServiceError::Internal(format!("no randomness available: {e}")))?;
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
