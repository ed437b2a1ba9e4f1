//! The admin JSON API (`/api/v1/...`): the same lifecycle service as the CLI, behind Basic
//! authentication with an API token through the same gate as the proxy. The token's scopes
//! bound what it may call (`admin` for everything, `admin:read` for `GET`); the account's
//! roles bound what it may do to whom — those rules live in the service, which every
//! handler calls with the caller as [`crate::control::service::Actor`].
//!
//! | file | what |
//! |---|---|
//! | `api/caller.rs` | the gate, the scope check and the cross-site check every call passes |
//! | `api/error.rs` | the one error shape and status mapping |
//! | `api/tokens.rs` | token endpoints |
//! | `api/usage.rs` | a token's usage counts |
//! | `api/expiry_cap.rs` | today's maximum lifetime for existing tokens (superusers) |
//! | `api/users.rs` | the caller's account and account management |
//! | `api/audit.rs` | the audit log and the running gateways |
//!
//! Every error is `{"error": {"code", "message"}}` with a fitting status; malformed JSON,
//! unknown fields and wrong types say what is wrong (400/413/422), and database text never
//! reaches a client.

mod audit;
mod caller;
mod error;
mod expiry_cap;
mod tokens;
mod usage;
mod users;

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::routing::{get, patch, post};
use ipnet::IpNet;

use crate::config::Config;
use crate::control::service::LifecycleService;
use crate::data::gate::Gate;
use crate::view::{
    AccountView, CallerTokenView, CapExpiryView, CappedTokenView, ConfirmationView, EventView, GatewayView, MeView,
    PendingGatewayView, PolicyView, ReservedScopeView, RevokedAllView, TokenView, UsageRowView, UsageView,
};
use audit::{list_events, list_gateways};
pub use caller::{Caller, admit};
use error::{ApiError, ErrorBody, ErrorDetail};
use expiry_cap::{CapExpiryBody, cap_expiry};
use tokens::{
    ChangeTokenBody, CreateTokenBody, RotateBody, change_token, create_token, list_tokens, policy, revoke_all,
    revoke_token, rotate_token, show_token,
};
use users::{ChangeUserBody, CreateUserBody, change_user, create_user, list_users, me};

/// Request bodies larger than this get 413.
pub const MAX_BODY: usize = 64 * 1024;

/// What the API handlers share.
pub struct ApiState {
    /// Every rule and audit event of the control path; the handlers only translate HTTP.
    pub service: Arc<LifecycleService>,
    /// The proxy's gate: authentication, the failed-authentication throttle, last use.
    pub gate: Arc<Gate>,
    /// How callers are told apart and challenged; `SIGHUP` can change it.
    callers: ArcSwap<CallerRules>,
}

/// What the API reads of `[proxy]` to know its callers.
struct CallerRules {
    /// `proxy.trusted_proxies`: peers whose `X-Forwarded-For` is believed, for the client
    /// address the API audits and throttles.
    trusted_proxies: Vec<IpNet>,
    /// The `WWW-Authenticate` value of a 401, from the proxy's realm.
    challenge: HeaderValue,
}

impl CallerRules {
    fn of(config: &Config) -> Self {
        CallerRules {
            trusted_proxies: config.proxy.trusted_proxies.clone(),
            challenge: crate::data::proxy::reject::challenge(&config.proxy.realm),
        }
    }
}

impl ApiState {
    /// The API over `service` and `gate`, with `config`'s trusted proxies and realm.
    pub fn new(service: Arc<LifecycleService>, gate: Arc<Gate>, config: &Config) -> Self {
        ApiState { service, gate, callers: ArcSwap::from_pointee(CallerRules::of(config)) }
    }

    /// Applies a reloaded configuration's trusted proxies and realm to calls from now on.
    pub fn reconfigure(&self, config: &Config) {
        self.callers.store(Arc::new(CallerRules::of(config)));
    }

    /// The client's address of a call from `peer` (see `proxy.trusted_proxies`).
    pub fn client_ip(&self, peer: std::net::IpAddr, headers: &http::HeaderMap) -> std::net::IpAddr {
        crate::data::proxy::client_ip::client_ip(peer, headers, &self.callers.load().trusted_proxies)
    }

    /// The `WWW-Authenticate` value of a 401.
    pub fn challenge(&self) -> HeaderValue {
        self.callers.load().challenge.clone()
    }
}

/// The API's OpenAPI 3.1 description, generated from the handlers above.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "tokengate admin API", description = include_str!("api/description.md")),
    paths(
        users::me, tokens::policy, tokens::list_tokens, tokens::create_token, tokens::show_token,
        tokens::revoke_token, tokens::change_token, tokens::rotate_token, tokens::revoke_all, usage::token_usage,
        users::list_users, users::create_user, users::change_user, audit::list_events, audit::list_gateways,
        expiry_cap::cap_expiry
    ),
    components(schemas(
        TokenView, AccountView, MeView, CallerTokenView, ReservedScopeView, ConfirmationView, PendingGatewayView,
        RevokedAllView, GatewayView, EventView, PolicyView, ErrorBody, ErrorDetail, CreateTokenBody, ChangeTokenBody,
        RotateBody, CreateUserBody, ChangeUserBody, UsageView, UsageRowView, CapExpiryView, CappedTokenView,
        CapExpiryBody
    )),
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

/// The JSON API's routes under `/api/v1`, and its OpenAPI document; unknown paths get a JSON 404.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api/v1/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], openapi_json()) }))
        .route("/api/v1/me", get(me))
        .route("/api/v1/policy", get(policy))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/cap-expiry", post(cap_expiry))
        .route("/api/v1/tokens/{id}", get(show_token).delete(revoke_token).patch(change_token))
        .route("/api/v1/tokens/{id}/rotate", post(rotate_token))
        .route("/api/v1/tokens/{id}/usage", get(usage::token_usage))
        .route("/api/v1/users", get(list_users).post(create_user))
        .route("/api/v1/users/{email}", patch(change_user))
        .route("/api/v1/users/{email}/tokens/revoke-all", post(revoke_all))
        .route("/api/v1/events", get(list_events))
        .route("/api/v1/gateways", get(list_gateways))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .with_state(state)
}
