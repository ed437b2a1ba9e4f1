//! The API's errors: one JSON shape, `{"error": {"code", "message"}}` (plus `missing_scope` for a
//! scope refusal, in the proxy's shape), a fitting status for each [`ServiceError`], and never a
//! database's text.

use axum::Json;
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::control::service::ServiceError;

/// An API error: its status, a stable code and a message for people.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
    /// For `insufficient_scope`: the scope the token lacks.
    pub(super) missing_scope: Option<String>,
    /// For 401: the Basic challenge; for 429: Retry-After.
    pub(super) header: Option<Box<(header::HeaderName, HeaderValue)>>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), missing_scope: None, header: None }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 422: well-formed JSON that says something invalid.
    pub(super) fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message)
    }

    pub(super) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 403 naming the scope the token lacks, in the proxy's shape.
    pub(super) fn insufficient_scope(scope: &str) -> Self {
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

pub(super) type ApiResult<T> = Result<T, ApiError>;

/// Parses a JSON body (empty: the type's default) with messages that say what is wrong.
pub(super) fn parse_body<T: DeserializeOwned + Default>(bytes: &Bytes) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => ApiError::unprocessable(format!("invalid request body: {error}")),
        _ => ApiError::bad_request(format!("malformed JSON: {error}")),
    })
}

/// The error body every endpoint uses.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct ErrorBody {
    pub(super) error: ErrorDetail,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct ErrorDetail {
    pub(super) code: String,
    pub(super) message: String,
}
