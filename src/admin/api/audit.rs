//! The audit log and the fleet: events (the caller's own, or every account's for managers) and
//! the running gateways (superusers).

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};

use super::ApiState;
use super::caller::Caller;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::tokens::{query_pairs, time_param, token_id};
use crate::control::service::EventQuery;
use crate::control::store::EventFilter;
use crate::view::{EventView, GatewayView};

#[utoipa::path(
    get,
    path = "/api/v1/gateways",
    tag = "gateways",
    responses(
        (status = 200, description = "the running gateways and their lag behind the change log", body = Vec<GatewayView>),
        (status = 403, body = ErrorBody),
    ),
)]
pub(super) async fn list_gateways(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
) -> ApiResult<Json<Vec<GatewayView>>> {
    let statuses = state.service.running_gateways(&caller.actor).await?;
    Ok(Json(statuses.iter().map(GatewayView::new).collect()))
}

#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "audit",
    params(
        ("user" = Option<String>, Query),
        ("token" = Option<i64>, Query),
        ("kind" = Option<String>, Query, description = "exact kind, or a prefix ending in `.`"),
        ("since" = Option<String>, Query),
        ("until" = Option<String>, Query),
        ("limit" = Option<i64>, Query),
    ),
    responses(
        (status = 200, body = Vec<EventView>),
        (status = 403, body = ErrorBody),
    ),
)]
pub(super) async fn list_events(
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
