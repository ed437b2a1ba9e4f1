//! Who calls the API: the credentials pass the proxy's gate (authentication, the failed-auth
//! throttle, last use), the token's scope is checked against the method, and state-changing
//! calls from other sites' pages are refused.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};

use super::ApiState;
use super::error::{ApiError, ApiResult};
use crate::control::service::{Actor, Authority, Principal};
use crate::control::store::AccountRecord;
use crate::data::gate::{Attempt, Denied, Refusal};
use crate::data::proxy::authenticate::Identity;

/// Passes a request's credentials through the gate. `needed`: the scope the call requires
/// (checked before anything is recorded or changed). Admitted requests count as the token's use.
pub async fn admit(parts: &Parts, state: &ApiState, needed: Option<&str>) -> ApiResult<(Identity, IpAddr)> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let ip = state.client_ip(peer, &parts.headers);
    let attempt = Attempt { headers: &parts.headers, method: &parts.method, path: parts.uri.path(), client_ip: ip };
    let identity = match state.gate.admit(&attempt, "admin") {
        Ok(identity) => identity,
        Err(Denied { refusal: Refusal::Throttled { retry_after }, .. }) => {
            return Err(ApiError {
                header: Some(Box::new((header::RETRY_AFTER, HeaderValue::from(retry_after)))),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many failed authentications")
            });
        }
        Err(Denied { refusal: Refusal::Unauthenticated, .. }) => {
            // Script callers (the web page) say so with `X-Requested-With` and get no
            // challenge, so that the browser does not pop up its own sign-in box.
            let scripted = parts.headers.contains_key("x-requested-with");
            return Err(ApiError {
                header: (!scripted).then(|| Box::new((header::WWW_AUTHENTICATE, state.challenge()))),
                ..ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "valid credentials are required: Basic auth with your account email and an API token",
                )
            });
        }
    };
    if let Some(scope) = needed
        && !identity.token.has_scope(scope)
    {
        tracing::info!(token_id = identity.token.id, scope, client = %ip, "admin API: missing scope");
        return Err(ApiError::insufficient_scope(scope));
    }
    state.gate.record_use(&identity, &attempt).await;
    Ok((identity, ip))
}

/// The authenticated caller of an API endpoint: its account (roles) and token (scopes).
pub struct Caller {
    /// The caller's account as the database has it now: its roles decide what the caller may do.
    pub account: AccountRecord,
    /// The token the caller authenticated with: its scopes bound what it may do and pass on.
    pub token: Arc<crate::data::index::IndexedToken>,
    /// The caller as the service sees it: for permission checks and the audit log (email, IP, user
    /// agent).
    pub actor: Actor,
}

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, Self::Rejection> {
        if !parts.method.is_safe() {
            refuse_cross_site(&parts.headers)?;
        }
        let needed = crate::model::scope::for_admin_method(&parts.method);
        let (identity, ip) = admit(parts, state, Some(needed)).await?;
        let account = state.service.account(&identity.account.email).await?;
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(crate::data::usage::USER_AGENT_MAX).collect());
        let principal = Principal {
            account: account.clone(),
            scopes: identity.token.scopes().iter().map(|s| s.to_string()).collect(),
        };
        let actor = Actor {
            label: account.email.clone(),
            ip: Some(ip.to_string()),
            user_agent,
            authority: Authority::Token(principal),
        };
        Ok(Caller { account, token: identity.token, actor })
    }
}

/// Refuses a state-changing request that a page of another site made the browser send (a
/// form post riding on Basic credentials the browser remembered from its own sign-in box).
/// Browsers say where a request comes from (`Sec-Fetch-Site`, else `Origin`); tools such as
/// curl send neither and are unaffected.
fn refuse_cross_site(headers: &axum::http::HeaderMap) -> ApiResult<()> {
    let refused = || ApiError::forbidden("a request from another site's page may not change anything here");
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => Ok(()),
            _ => Err(refused()),
        };
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin_authority = origin.to_str().ok().and_then(|o| o.split_once("://")).map(|(_, authority)| authority);
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if origin_authority.is_none() || origin_authority != host {
            return Err(refused());
        }
    }
    Ok(())
}
