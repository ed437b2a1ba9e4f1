//! Account endpoints: the caller's own account, and (superusers) every account.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::ApiState;
use super::caller::Caller;
use super::error::{ApiResult, ErrorBody, parse_body};
use crate::control::service::CreateAccount;
use crate::control::store::AccountChanges;
use crate::view::{AccountView, MeView};

#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "accounts",
    responses(
        (status = 200, description = "the caller's account, and the token it signed in with (its scopes say what it may call)", body = MeView),
        (status = 401, body = ErrorBody),
        (status = 403, description = "the token has neither admin nor admin:read", body = ErrorBody),
    ),
)]
pub(super) async fn me(caller: Caller) -> Json<MeView> {
    Json(MeView::new(&caller.account, &caller.token))
}

#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "accounts",
    responses(
        (status = 200, body = Vec<AccountView>),
        (status = 403, body = ErrorBody),
    ),
)]
pub(super) async fn list_users(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
) -> ApiResult<Json<Vec<AccountView>>> {
    let accounts = state.service.list_accounts(&caller.actor).await?;
    Ok(Json(accounts.iter().map(AccountView::summary).collect()))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateUserBody {
    email: String,
    name: Option<String>,
    superuser: Option<bool>,
    token_manager: Option<bool>,
    can_create_tokens: Option<bool>,
}

#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "accounts",
    request_body = CreateUserBody,
    responses(
        (status = 201, body = AccountView),
        (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody),
    ),
)]
pub(super) async fn create_user(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<AccountView>)> {
    let body: CreateUserBody = parse_body(&body)?;
    let request = CreateAccount {
        email: body.email,
        name: body.name,
        superuser: body.superuser.unwrap_or(false),
        token_manager: body.token_manager.unwrap_or(false),
        can_create_tokens: body.can_create_tokens.unwrap_or(true),
    };
    let account = state.service.create_account(request, &caller.actor).await?;
    Ok((StatusCode::CREATED, Json(AccountView::new(&account))))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangeUserBody {
    enabled: Option<bool>,
    superuser: Option<bool>,
    token_manager: Option<bool>,
    can_create_tokens: Option<bool>,
}

#[utoipa::path(
    patch,
    path = "/api/v1/users/{email}",
    tag = "accounts",
    params(
        ("email" = String, Path),
    ),
    request_body = ChangeUserBody,
    responses(
        (status = 200, body = AccountView),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "the change would leave no enabled superuser", body = ErrorBody),
    ),
)]
pub(super) async fn change_user(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(email): Path<String>,
    body: Bytes,
) -> ApiResult<Json<AccountView>> {
    let body: ChangeUserBody = parse_body(&body)?;
    let changes = AccountChanges {
        enabled: body.enabled,
        superuser: body.superuser,
        token_manager: body.token_manager,
        can_create_tokens: body.can_create_tokens,
    };
    let updated = state.service.update_account(&email, changes, &caller.actor).await?;
    Ok(Json(AccountView::new(&updated).confirmed(updated.confirmation.as_ref())))
}
