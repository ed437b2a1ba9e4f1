//! Token endpoints: the policy, the filtered listing, create, show, revoke, change the rate
//! limit, rotate, and revoke all of an account's tokens.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::ApiState;
use super::caller::Caller;
use super::error::{ApiError, ApiResult, ErrorBody, parse_body};
use crate::clock::parse_rfc3339;
use crate::control::service::{CreateToken, ExpiryRequest, TokenQuery};
use crate::control::store::{StatusFilter, TokenSort};
use crate::model::TokenId;
use crate::model::duration::parse_duration;
use crate::model::rate::Rate;
use crate::view::{PolicyView, RevokedAllView, TokenView};

#[utoipa::path(
    get,
    path = "/api/v1/policy",
    tag = "tokens",
    responses(
        (status = 200, description = "the bounds tokens are created within", body = PolicyView),
        (status = 401, body = ErrorBody),
    ),
)]
pub(super) async fn policy(State(state): State<Arc<ApiState>>, _caller: Caller) -> Json<PolicyView> {
    Json(PolicyView::new(&state.service.policy()))
}

/// The query string as (key, value) pairs; a key may repeat (`user=a&user=b`).
pub(super) fn query_pairs(raw: Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes()).into_owned().collect()
}

pub(super) fn time_param(key: &str, value: &str) -> ApiResult<i64> {
    parse_rfc3339(value).map_err(|e| ApiError::bad_request(format!("{key}: {e}")))
}

/// `token list`'s filters from a query string.
fn token_query(pairs: Vec<(String, String)>) -> ApiResult<TokenQuery> {
    let mut query = TokenQuery::default();
    for (key, value) in pairs {
        let filter = &mut query.filter;
        match key.as_str() {
            "user" => query.users.push(value),
            "search" => filter.search = Some(value),
            "status" => filter.status = value.parse::<StatusFilter>().map_err(ApiError::bad_request)?,
            "created_after" => filter.created_after = Some(time_param(&key, &value)?),
            "created_before" => filter.created_before = Some(time_param(&key, &value)?),
            "used_after" => filter.used_after = Some(time_param(&key, &value)?),
            "used_before" => filter.used_before = Some(time_param(&key, &value)?),
            "expires_after" => filter.expires_after = Some(time_param(&key, &value)?),
            "expires_before" => filter.expires_before = Some(time_param(&key, &value)?),
            "never_used" => filter.never_used = value != "false",
            "no_expiry" => filter.no_expiry = value != "false",
            "unused_for" => {
                query.unused_for =
                    Some(parse_duration(&value).map_err(|e| ApiError::bad_request(format!("unused_for: {e}")))?)
            }
            "sort" => filter.sort = value.parse::<TokenSort>().map_err(ApiError::bad_request)?,
            other => return Err(ApiError::bad_request(format!("unknown query parameter {other:?}"))),
        }
    }
    Ok(query)
}

#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "tokens",
    params(
        ("user" = Option<String>, Query, description = "owner email; repeatable"),
        ("search" = Option<String>, Query),
        ("status" = Option<String>, Query, description = "active, blocked, live (default), revoked, expired or all"),
        ("created_after" = Option<String>, Query),
        ("created_before" = Option<String>, Query),
        ("used_after" = Option<String>, Query),
        ("used_before" = Option<String>, Query),
        ("expires_after" = Option<String>, Query),
        ("expires_before" = Option<String>, Query),
        ("never_used" = Option<bool>, Query),
        ("no_expiry" = Option<bool>, Query, description = "only tokens that never expire"),
        ("unused_for" = Option<String>, Query),
        ("sort" = Option<String>, Query),
    ),
    responses(
        (status = 200, body = Vec<TokenView>),
        (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ),
)]
pub(super) async fn list_tokens(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Vec<TokenView>>> {
    let query = token_query(query_pairs(raw))?;
    let now = state.service.now();
    let tokens = state.service.list_tokens(query, &caller.actor).await?;
    Ok(Json(tokens.iter().map(|t| TokenView::new(t, now)).collect()))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateTokenBody {
    name: String,
    description: Option<String>,
    expires_in: Option<String>,
    expires_at: Option<String>,
    never_expires: Option<bool>,
    scopes: Option<Vec<String>>,
    rate_limit: Option<String>,
    user: Option<String>,
}

fn parse_rate(text: &str) -> ApiResult<Rate> {
    text.parse::<Rate>().map_err(ApiError::unprocessable)
}

#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "tokens",
    request_body = CreateTokenBody,
    responses(
        (status = 201, description = "the new token, with its secret in `token`", body = TokenView),
        (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ),
)]
pub(super) async fn create_token(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<TokenView>)> {
    let body: CreateTokenBody = parse_body(&body)?;
    if body.name.trim().is_empty() {
        return Err(ApiError::unprocessable("a token needs a name"));
    }
    let owner = body.user.clone().unwrap_or_else(|| caller.account.email.clone());
    let expiry = match (&body.expires_in, &body.expires_at, body.never_expires.unwrap_or(false)) {
        (None, None, false) => ExpiryRequest::Default,
        (Some(text), None, false) => ExpiryRequest::In(parse_duration(text).map_err(ApiError::unprocessable)?),
        (None, Some(text), false) => ExpiryRequest::At(parse_rfc3339(text).map_err(ApiError::unprocessable)?),
        (None, None, true) => ExpiryRequest::Never,
        _ => return Err(ApiError::bad_request("give at most one of expires_in, expires_at and never_expires")),
    };
    let request = CreateToken {
        owner_email: owner,
        name: body.name,
        description: body.description,
        expiry,
        scopes: body.scopes.unwrap_or_default(),
        rate_limit: body.rate_limit.as_deref().map(parse_rate).transpose()?,
    };
    let created = state.service.create_token(request, &caller.actor).await?;
    let view = TokenView::with_secret(&created.token, state.service.now(), created.secret.expose())
        .confirmed(created.confirmation.as_ref());
    Ok((StatusCode::CREATED, Json(view)))
}

pub(super) fn token_id(raw: &str) -> ApiResult<TokenId> {
    raw.parse().map_err(|_| ApiError::bad_request(format!("{raw:?} is not a token id")))
}

#[utoipa::path(
    get,
    path = "/api/v1/tokens/{id}",
    tag = "tokens",
    params(
        ("id" = i64, Path),
    ),
    responses(
        (status = 200, body = TokenView),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
)]
pub(super) async fn show_token(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<TokenView>> {
    let token = state.service.visible_token(token_id(&id)?, &caller.actor).await?;
    Ok(Json(TokenView::new(&token, state.service.now())))
}

#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "tokens",
    params(
        ("id" = i64, Path),
    ),
    responses(
        (status = 200, description = "the revoked token", body = TokenView),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
)]
pub(super) async fn revoke_token(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<TokenView>> {
    let revoked = state.service.revoke_token(token_id(&id)?, &caller.actor).await?;
    Ok(Json(TokenView::new(&revoked.token, state.service.now()).confirmed(revoked.confirmation.as_ref())))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangeTokenBody {
    /// A rate, or null for none: required, so that a PATCH says what it changes.
    #[schema(value_type = Option<String>)]
    #[serde(default, deserialize_with = "present")]
    rate_limit: Option<Value>,
}

/// A field that is present, `null` included: serde reads a `null` in an `Option` as absent,
/// but `{"rate_limit": null}` means "no limit", not "no change".
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

#[utoipa::path(
    patch,
    path = "/api/v1/tokens/{id}",
    tag = "tokens",
    params(
        ("id" = i64, Path),
    ),
    request_body = ChangeTokenBody,
    responses(
        (status = 200, body = TokenView),
        (status = 422, body = ErrorBody),
    ),
)]
pub(super) async fn change_token(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<TokenView>> {
    let body: ChangeTokenBody = parse_body(&body)?;
    let rate = match body.rate_limit {
        None => {
            return Err(ApiError::unprocessable("give rate_limit (a rate or null)"));
        }
        Some(Value::Null) => None,
        Some(Value::String(text)) => Some(parse_rate(&text)?),
        Some(_) => {
            return Err(ApiError::unprocessable("rate_limit must be a string such as \"100/min\" or null"));
        }
    };
    let changed = state.service.set_rate_limit(token_id(&id)?, rate, &caller.actor).await?;
    Ok(Json(TokenView::new(&changed, state.service.now()).confirmed(changed.confirmation.as_ref())))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateBody {
    grace: Option<String>,
    until_first_use: Option<bool>,
}

#[utoipa::path(
    post,
    path = "/api/v1/tokens/{id}/rotate",
    tag = "tokens",
    params(
        ("id" = i64, Path),
    ),
    request_body = RotateBody,
    responses(
        (status = 201, description = "the successor, with its secret in `token`", body = TokenView),
        (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody),
    ),
)]
pub(super) async fn rotate_token(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<TokenView>)> {
    let body: RotateBody = parse_body(&body)?;
    let grace: Option<Duration> =
        body.grace.as_deref().map(parse_duration).transpose().map_err(ApiError::unprocessable)?;
    let rotated =
        state.service.rotate_token(token_id(&id)?, grace, body.until_first_use.unwrap_or(false), &caller.actor).await?;
    let successor = &rotated.successor;
    let view = TokenView::with_secret(&successor.token, state.service.now(), successor.secret.expose())
        .confirmed(successor.confirmation.as_ref());
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(
    post,
    path = "/api/v1/users/{email}/tokens/revoke-all",
    tag = "tokens",
    params(
        ("email" = String, Path),
    ),
    responses(
        (status = 200, description = "how many were revoked, and which running gateways refuse them already", body = RevokedAllView),
        (status = 403, body = ErrorBody),
    ),
)]
pub(super) async fn revoke_all(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(email): Path<String>,
) -> ApiResult<Json<RevokedAllView>> {
    let revoked = state.service.revoke_all_tokens(&email, &caller.actor).await?;
    Ok(Json(RevokedAllView::new(&email, revoked.value, revoked.confirmation.as_ref())))
}
