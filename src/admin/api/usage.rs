//! `GET /api/v1/tokens/{id}/usage`: what a token is used for, per day, route and outcome.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};

use super::ApiState;
use super::caller::Caller;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::tokens::{query_pairs, token_id};
use crate::view::UsageView;

#[utoipa::path(
    get,
    path = "/api/v1/tokens/{id}/usage",
    tag = "tokens",
    params(
        ("id" = i64, Path),
        ("days" = Option<u32>, Query, description = "the last N UTC days, today included (default 30, at most usage.keep_days)"),
    ),
    responses(
        (status = 200, description = "requests per day, route and outcome", body = UsageView),
        (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
)]
pub(super) async fn token_usage(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<UsageView>> {
    let mut days = None;
    for (key, value) in query_pairs(raw) {
        match key.as_str() {
            "days" => {
                days = Some(
                    value
                        .parse::<u32>()
                        .map_err(|_| ApiError::bad_request(format!("days: {value:?} is not a whole number of days")))?,
                )
            }
            other => return Err(ApiError::bad_request(format!("unknown query parameter {other:?}"))),
        }
    }
    let (token_id, days, rows) = state.service.token_usage(token_id(&id)?, days, &caller.actor).await?;
    Ok(Json(UsageView::new(token_id, days, rows)))
}
