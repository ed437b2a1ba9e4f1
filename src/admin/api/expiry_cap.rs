//! `POST /api/v1/tokens/cap-expiry` (superusers): `token cap-expiry` through the API, answered
//! with the same document as the CLI's `--json`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::Deserialize;

use super::ApiState;
use super::caller::Caller;
use super::error::{ApiResult, ErrorBody, parse_body};
use crate::view::CapExpiryView;

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CapExpiryBody {
    /// True: only list the tokens that would change (default false).
    dry_run: Option<bool>,
}

#[utoipa::path(
    post,
    path = "/api/v1/tokens/cap-expiry",
    tag = "tokens",
    request_body(content = CapExpiryBody, description = "optional: an empty body counts as `{}`, a real run"),
    responses(
        (status = 200, description = "the tokens whose expiry was (or, with dry_run, would be) capped to tokens.max_lifetime, and which running gateways applied it", body = CapExpiryView),
        (status = 400, description = "tokens.max_lifetime is not configured", body = ErrorBody),
        (status = 403, description = "the caller is not a superuser", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ),
)]
pub(super) async fn cap_expiry(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Json<CapExpiryView>> {
    let body: CapExpiryBody = parse_body(&body)?;
    let dry_run = body.dry_run.unwrap_or(false);
    let capped = state.service.cap_expiry(dry_run, &caller.actor).await?;
    let max_lifetime = state.service.policy().max_lifetime;
    Ok(Json(CapExpiryView::new(dry_run, max_lifetime, &capped.value, capped.confirmation.as_ref())))
}
