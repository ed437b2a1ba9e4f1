//! The admin JSON API (`/api/v1/...`): the same lifecycle service as the CLI, behind Basic
//! authentication with an API token through the same gate as the proxy. The token's scopes
//! bound what it may call (`admin` for everything, `admin:read` for `GET`); the account's
//! roles bound what it may do to whom — those rules live in the service, which every
//! handler calls with the caller as [`Actor`].
//!
//! Every error is `{"error": {"code", "message"}}` with a fitting status; malformed JSON,
//! unknown fields and wrong types say what is wrong (400/413/422), and database text never
//! reaches a client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use ipnet::IpNet;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::clock::parse_rfc3339;
use crate::duration::parse_duration;
use crate::gate::{Attempt, Gate, Refusal};
use crate::proxy::authenticate::Identity;
use crate::proxy::client_ip::client_ip;
use crate::rate::Rate;
use crate::service::{
    Actor, Authority, CreateAccount, CreateToken, EventQuery, ExpiryRequest, LifecycleService, Principal, ServiceError,
    TokenQuery,
};
use crate::store::{AccountChanges, AccountRecord, EventFilter, StatusFilter, TokenSort};
use crate::view::{
    AccountView, CallerTokenView, ConfirmationView, EventView, GatewayView, MeView, PendingGatewayView, PolicyView,
    ReservedScopeView, RevokedAllView, TokenView,
};

/// Request bodies larger than this get 413.
pub const MAX_BODY: usize = 64 * 1024;

/// What the API handlers share.
pub struct ApiState {
    pub service: Arc<LifecycleService>,
    /// The proxy's gate: authentication, the failed-authentication throttle, last use.
    pub gate: Arc<Gate>,
    pub trusted_proxies: Vec<IpNet>,
    pub challenge: HeaderValue,
}

/// An API error: its status, a stable code and a message for people.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// For `insufficient_scope`: the scope the token lacks.
    missing_scope: Option<String>,
    /// For 401: the Basic challenge; for 429: Retry-After.
    header: Option<Box<(header::HeaderName, HeaderValue)>>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), missing_scope: None, header: None }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 422: well-formed JSON that says something invalid.
    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message)
    }

    fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 403 naming the scope the token lacks, in the proxy's shape.
    fn insufficient_scope(scope: &str) -> Self {
        ApiError {
            missing_scope: Some(scope.to_owned()),
            ..Self::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("this token lacks the scope {scope:?} that this request requires"),
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(scope) = self.missing_scope {
            error["missing_scope"] = json!(scope);
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if let Some(extra) = self.header {
            let (name, value) = *extra;
            response.headers_mut().insert(name, value);
        }
        response
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Invalid(m) => Self::bad_request(m),
            ServiceError::OutsidePolicy(m) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "outside_policy", m),
            ServiceError::NotFound(m) => Self::new(StatusCode::NOT_FOUND, "not_found", m),
            ServiceError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            ServiceError::Forbidden(m) => Self::forbidden(m),
            ServiceError::InsufficientScope(scope) => Self::insufficient_scope(&scope),
            ServiceError::Internal(message) => {
                tracing::error!(%message, "admin API: internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the request could not be completed; try again later",
                )
            }
            ServiceError::Store(error) => {
                // Logged in full; the client learns only that it failed.
                tracing::error!(%error, "admin API: database error");
                let status = if error.is_unavailable() {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                Self::new(status, "internal", "the request could not be completed; try again later")
            }
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Parses a JSON body (empty: the type's default) with messages that say what is wrong.
fn parse_body<T: DeserializeOwned + Default>(bytes: &Bytes) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => ApiError::invalid(format!("invalid request body: {error}")),
        _ => ApiError::bad_request(format!("malformed JSON: {error}")),
    })
}

/// Passes a request's credentials through the gate. `needed`: the scope the call requires
/// (checked before anything is recorded or changed). Admitted requests count as the token's use.
pub async fn admit(parts: &Parts, state: &ApiState, needed: Option<&str>) -> ApiResult<(Identity, std::net::IpAddr)> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    let ip = client_ip(peer, &parts.headers, &state.trusted_proxies);
    let attempt = Attempt { headers: &parts.headers, method: &parts.method, path: parts.uri.path(), client_ip: ip };
    let identity = match state.gate.admit(&attempt, "admin") {
        Ok(identity) => identity,
        Err(Refusal::Throttled { retry_after }) => {
            return Err(ApiError {
                header: Some(Box::new((header::RETRY_AFTER, HeaderValue::from(retry_after)))),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many failed authentications")
            });
        }
        Err(Refusal::Unauthenticated) => {
            // Script callers (the web page) say so with `X-Requested-With` and get no
            // challenge, so that the browser does not pop up its own sign-in box.
            let scripted = parts.headers.contains_key("x-requested-with");
            return Err(ApiError {
                header: (!scripted).then(|| Box::new((header::WWW_AUTHENTICATE, state.challenge.clone()))),
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
    pub account: AccountRecord,
    pub token: Arc<crate::index::IndexedToken>,
    pub actor: Actor,
}

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, Self::Rejection> {
        if !parts.method.is_safe() {
            refuse_cross_site(&parts.headers)?;
        }
        let needed = crate::scope::for_admin_method(&parts.method);
        let (identity, ip) = admit(parts, state, Some(needed)).await?;
        let account = state.service.account(&identity.account.email).await?;
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(crate::usage::USER_AGENT_MAX).collect());
        let principal = Principal {
            account: account.clone(),
            token_id: identity.token.id,
            scopes: identity.token.scopes.iter().map(|s| s.to_string()).collect(),
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

/// The error body every endpoint uses.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// The API's OpenAPI 3.1 description, generated from the handlers above.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "tokengate admin API", description = "API tokens and accounts. Authenticate with HTTP Basic: your account email and an API token. The token's scopes decide what it may call: `admin` every endpoint (with the account's own powers), `admin:read` only the GET endpoints; `*` includes both. Without the needed scope the answer is 403 `{\"error\": {\"code\": \"insufficient_scope\", \"missing_scope\": \"admin\", ...}}` and nothing changes. A token never creates or rotates a token with scopes it does not carry itself, only a superuser creates or rotates tokens of a superuser, and another account's token id answers 404 like a missing one."),
    paths(me, policy, list_tokens, create_token, show_token, revoke_token, change_token, rotate_token, revoke_all, list_users, create_user, change_user, list_events, list_gateways),
    components(schemas(TokenView, AccountView, MeView, CallerTokenView, ReservedScopeView, ConfirmationView, PendingGatewayView, RevokedAllView, GatewayView, EventView, PolicyView, ErrorBody, ErrorDetail, CreateTokenBody, ChangeTokenBody, RotateBody, CreateUserBody, ChangeUserBody)),
    modifiers(&BasicAuth),
    security(("basic" = []))
)]
pub struct ApiDoc;

struct BasicAuth;

impl utoipa::Modify for BasicAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
    }
}

/// The OpenAPI document as pretty JSON (served at `/api/v1/openapi.json`).
pub fn openapi_json() -> String {
    use utoipa::OpenApi;
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|_| "{}".to_owned())
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api/v1/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], openapi_json()) }))
        .route("/api/v1/me", get(me))
        .route("/api/v1/policy", get(policy))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}", get(show_token).delete(revoke_token).patch(change_token))
        .route("/api/v1/tokens/{id}/rotate", post(rotate_token))
        .route("/api/v1/users", get(list_users).post(create_user))
        .route("/api/v1/users/{email}", patch(change_user))
        .route("/api/v1/users/{email}/tokens/revoke-all", post(revoke_all))
        .route("/api/v1/events", get(list_events))
        .route("/api/v1/gateways", get(list_gateways))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .with_state(state)
}

#[utoipa::path(get, path = "/api/v1/me", tag = "accounts", responses((status = 200, description = "the caller's account, and the token it signed in with (its scopes say what it may call)", body = MeView), (status = 401, body = ErrorBody), (status = 403, description = "the token has neither admin nor admin:read", body = ErrorBody)))]
async fn me(caller: Caller) -> Json<MeView> {
    Json(MeView::new(&caller.account, &caller.token))
}

#[utoipa::path(get, path = "/api/v1/policy", tag = "tokens", responses((status = 200, description = "the bounds tokens are created within", body = PolicyView), (status = 401, body = ErrorBody)))]
async fn policy(State(state): State<Arc<ApiState>>, _caller: Caller) -> Json<PolicyView> {
    Json(PolicyView::new(state.service.policy()))
}

/// The query string as (key, value) pairs; a key may repeat (`user=a&user=b`).
fn query_pairs(raw: Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes()).into_owned().collect()
}

fn time_param(key: &str, value: &str) -> ApiResult<i64> {
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

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", params(("user" = Option<String>, Query, description = "owner email; repeatable"), ("search" = Option<String>, Query), ("status" = Option<String>, Query, description = "active, blocked, live (default), revoked, expired or all"), ("created_after" = Option<String>, Query), ("created_before" = Option<String>, Query), ("used_after" = Option<String>, Query), ("used_before" = Option<String>, Query), ("expires_after" = Option<String>, Query), ("expires_before" = Option<String>, Query), ("never_used" = Option<bool>, Query), ("unused_for" = Option<String>, Query), ("sort" = Option<String>, Query)), responses((status = 200, body = Vec<TokenView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_tokens(
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
struct CreateTokenBody {
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
    text.parse::<Rate>().map_err(ApiError::invalid)
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = CreateTokenBody, responses((status = 201, description = "the new token, with its secret in `token`", body = TokenView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_token(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<TokenView>)> {
    let body: CreateTokenBody = parse_body(&body)?;
    if body.name.trim().is_empty() {
        return Err(ApiError::invalid("a token needs a name"));
    }
    let owner = body.user.clone().unwrap_or_else(|| caller.account.email.clone());
    let expiry = match (&body.expires_in, &body.expires_at, body.never_expires.unwrap_or(false)) {
        (None, None, false) => ExpiryRequest::Default,
        (Some(text), None, false) => ExpiryRequest::In(parse_duration(text).map_err(ApiError::invalid)?),
        (None, Some(text), false) => ExpiryRequest::At(parse_rfc3339(text).map_err(ApiError::invalid)?),
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

fn token_id(raw: &str) -> ApiResult<i64> {
    raw.parse().map_err(|_| ApiError::bad_request(format!("{raw:?} is not a token id")))
}

#[utoipa::path(get, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = i64, Path)), responses((status = 200, body = TokenView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn show_token(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<TokenView>> {
    let token = state.service.visible_token(token_id(&id)?, &caller.actor).await?;
    Ok(Json(TokenView::new(&token, state.service.now())))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = i64, Path)), responses((status = 200, description = "the revoked token", body = TokenView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_token(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<TokenView>> {
    let revoked = state.service.revoke_token(token_id(&id)?, &caller.actor).await?;
    Ok(Json(TokenView::new(&revoked.token, state.service.now()).confirmed(revoked.confirmation.as_ref())))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ChangeTokenBody {
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

#[utoipa::path(patch, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = i64, Path)), request_body = ChangeTokenBody, responses((status = 200, body = TokenView), (status = 422, body = ErrorBody)))]
async fn change_token(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<TokenView>> {
    let body: ChangeTokenBody = parse_body(&body)?;
    let rate = match body.rate_limit {
        None => {
            return Err(ApiError::invalid("give rate_limit (a rate or null)"));
        }
        Some(Value::Null) => None,
        Some(Value::String(text)) => Some(parse_rate(&text)?),
        Some(_) => {
            return Err(ApiError::invalid("rate_limit must be a string such as \"100/min\" or null"));
        }
    };
    let changed = state.service.set_rate_limit(token_id(&id)?, rate, &caller.actor).await?;
    Ok(Json(TokenView::new(&changed, state.service.now()).confirmed(changed.confirmation.as_ref())))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    grace: Option<String>,
    until_first_use: Option<bool>,
}

#[utoipa::path(post, path = "/api/v1/tokens/{id}/rotate", tag = "tokens", params(("id" = i64, Path)), request_body = RotateBody, responses((status = 201, description = "the successor, with its secret in `token`", body = TokenView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn rotate_token(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<TokenView>)> {
    let body: RotateBody = parse_body(&body)?;
    let grace: Option<Duration> = body.grace.as_deref().map(parse_duration).transpose().map_err(ApiError::invalid)?;
    let rotated =
        state.service.rotate_token(token_id(&id)?, grace, body.until_first_use.unwrap_or(false), &caller.actor).await?;
    let successor = &rotated.successor;
    let view = TokenView::with_secret(&successor.token, state.service.now(), successor.secret.expose())
        .confirmed(successor.confirmation.as_ref());
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(post, path = "/api/v1/users/{email}/tokens/revoke-all", tag = "tokens", params(("email" = String, Path)), responses((status = 200, description = "how many were revoked, and which running gateways refuse them already", body = RevokedAllView), (status = 403, body = ErrorBody)))]
async fn revoke_all(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(email): Path<String>,
) -> ApiResult<Json<RevokedAllView>> {
    let revoked = state.service.revoke_all_tokens(&email, &caller.actor).await?;
    Ok(Json(RevokedAllView::new(&email, revoked.value, revoked.confirmation.as_ref())))
}

#[utoipa::path(get, path = "/api/v1/gateways", tag = "gateways", responses((status = 200, description = "the running gateways and their lag behind the change log", body = Vec<GatewayView>), (status = 403, body = ErrorBody)))]
async fn list_gateways(State(state): State<Arc<ApiState>>, caller: Caller) -> ApiResult<Json<Vec<GatewayView>>> {
    let statuses = state.service.running_gateways(&caller.actor).await?;
    Ok(Json(statuses.iter().map(GatewayView::new).collect()))
}

#[utoipa::path(get, path = "/api/v1/users", tag = "accounts", responses((status = 200, body = Vec<AccountView>), (status = 403, body = ErrorBody)))]
async fn list_users(State(state): State<Arc<ApiState>>, caller: Caller) -> ApiResult<Json<Vec<AccountView>>> {
    let accounts = state.service.list_accounts(&caller.actor).await?;
    Ok(Json(accounts.iter().map(AccountView::summary).collect()))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateUserBody {
    email: String,
    name: Option<String>,
    superuser: Option<bool>,
    token_manager: Option<bool>,
    can_create_tokens: Option<bool>,
}

#[utoipa::path(post, path = "/api/v1/users", tag = "accounts", request_body = CreateUserBody, responses((status = 201, body = AccountView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_user(
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
struct ChangeUserBody {
    enabled: Option<bool>,
    superuser: Option<bool>,
    token_manager: Option<bool>,
    can_create_tokens: Option<bool>,
}

#[utoipa::path(patch, path = "/api/v1/users/{email}", tag = "accounts", params(("email" = String, Path)), request_body = ChangeUserBody, responses((status = 200, body = AccountView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "the change would leave no enabled superuser", body = ErrorBody)))]
async fn change_user(
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

#[utoipa::path(get, path = "/api/v1/events", tag = "audit", params(("user" = Option<String>, Query), ("token" = Option<i64>, Query), ("kind" = Option<String>, Query, description = "exact kind, or a prefix ending in `.`"), ("since" = Option<String>, Query), ("until" = Option<String>, Query), ("limit" = Option<i64>, Query)), responses((status = 200, body = Vec<EventView>), (status = 403, body = ErrorBody)))]
async fn list_events(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Vec<EventView>>> {
    let mut query = EventQuery { user: None, filter: EventFilter { limit: 100, ..EventFilter::default() } };
    for (key, value) in query_pairs(raw) {
        match key.as_str() {
            "user" => query.user = Some(value),
            "token" => query.filter.token_id = Some(token_id(&value)?),
            "kind" => query.filter.kind = Some(value),
            "since" => query.filter.since = Some(time_param(&key, &value)?),
            "until" => query.filter.until = Some(time_param(&key, &value)?),
            "limit" => {
                query.filter.limit = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| ApiError::bad_request("limit must be a number from 1 to 10000"))?
            }
            other => return Err(ApiError::bad_request(format!("unknown query parameter {other:?}"))),
        }
    }
    let events = state.service.find_events(query, &caller.actor).await?;
    Ok(Json(events.iter().map(EventView::new).collect()))
}
