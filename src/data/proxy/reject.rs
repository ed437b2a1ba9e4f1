//! The gateway's own responses: small JSON bodies, the same for every reason of one status.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

use super::ProxyBody;
use super::authenticate::Identity;
use super::forward::insert_identity;
use super::route::PathError;
use crate::data::ratelimit::LimitHeaders;

static JSON: HeaderValue = HeaderValue::from_static("application/json");

fn json_error(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    json_response(status, Bytes::from_static(body.as_bytes()))
}

/// A JSON error whose text is built per request (it names a scope or a reason).
fn json_error_value(status: StatusCode, body: &serde_json::Value) -> Response<ProxyBody> {
    json_response(status, Bytes::from(body.to_string()))
}

fn json_response(status: StatusCode, body: Bytes) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, JSON.clone());
    response
}

/// The one 401, whatever the reason: nothing in it tells a guesser what was wrong.
pub fn unauthorized(challenge: &HeaderValue) -> Response<ProxyBody> {
    let mut response = json_error(
        StatusCode::UNAUTHORIZED,
        r#"{"error":{"code":"unauthorized","message":"valid credentials are required: Basic auth with your account email and an API token"}}"#,
    );
    response.headers_mut().insert(WWW_AUTHENTICATE, challenge.clone());
    response
}

/// 403 naming the scope the token lacks (the caller is authenticated, so this reveals nothing).
pub fn missing_scope(scope: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({
        "error": {
            "code": "insufficient_scope",
            "message": format!("this token lacks the scope {scope:?} that this request requires"),
            "missing_scope": scope,
        }
    });
    json_error_value(StatusCode::FORBIDDEN, &body)
}

/// 429: over the token's rate limit, or too many failed authentications from this address.
pub fn too_many_requests(retry_after: u64, limit: Option<&LimitHeaders>) -> Response<ProxyBody> {
    let mut response = json_error(
        StatusCode::TOO_MANY_REQUESTS,
        r#"{"error":{"code":"rate_limited","message":"too many requests; retry after the number of seconds in Retry-After"}}"#,
    );
    let headers = response.headers_mut();
    headers.insert(RETRY_AFTER, HeaderValue::from(retry_after));
    if let Some(limit) = limit {
        limit.apply(headers);
    }
    response
}

/// 400: a request target that cannot be rewritten for the upstream (not expected after
/// [`path_refused`]'s checks, which name the reason).
pub fn bad_path() -> Response<ProxyBody> {
    json_error(
        StatusCode::BAD_REQUEST,
        r#"{"error":{"code":"bad_request","message":"the request target cannot be forwarded"}}"#,
    )
}

/// 400 naming what is wrong with the request's path (or host), so a client that sent
/// `group%2Fproject` to a route without `allow_encoded_slash` learns that, not a list of every
/// reason there could be. `reason` is a stable name for scripts (see [`PathError::reason`]).
pub fn path_refused(error: PathError) -> Response<ProxyBody> {
    let body = serde_json::json!({
        "error": {"code": "bad_request", "reason": error.reason(), "message": error.message()}
    });
    json_error_value(StatusCode::BAD_REQUEST, &body)
}

/// 400: a method not spelled in upper case.
pub fn bad_method() -> Response<ProxyBody> {
    json_error(
        StatusCode::BAD_REQUEST,
        r#"{"error":{"code":"bad_request","message":"the request method must be written in upper case"}}"#,
    )
}

/// 405: a method the proxy does not forward (`proxy.methods`; never CONNECT or TRACE), with
/// the ones it does in `Allow`.
pub fn method_not_allowed(allow: &HeaderValue) -> Response<ProxyBody> {
    let mut response = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        r#"{"error":{"code":"method_not_allowed","message":"this method is not proxied; Allow lists those that are"}}"#,
    );
    response.headers_mut().insert(http::header::ALLOW, allow.clone());
    response
}

/// 400: the client's request body was malformed (a broken chunked encoding) or cut off: the
/// client's fault, not the upstream's.
pub fn bad_body() -> Response<ProxyBody> {
    json_error(
        StatusCode::BAD_REQUEST,
        r#"{"error":{"code":"bad_request","message":"the request body was malformed or ended early"}}"#,
    )
}

/// 408: the client's body stopped coming for `proxy.client_body_timeout`.
pub fn body_timeout() -> Response<ProxyBody> {
    json_error(
        StatusCode::REQUEST_TIMEOUT,
        r#"{"error":{"code":"request_timeout","message":"the request body stopped arriving (proxy.client_body_timeout)"}}"#,
    )
}

/// 404: no route's prefix matches the path.
pub fn no_route() -> Response<ProxyBody> {
    json_error(StatusCode::NOT_FOUND, r#"{"error":{"code":"not_found","message":"no route matches this path"}}"#)
}

/// 502: the upstream could not be connected to, or the connection broke.
pub fn bad_gateway() -> Response<ProxyBody> {
    json_error(
        StatusCode::BAD_GATEWAY,
        r#"{"error":{"code":"bad_gateway","message":"the upstream could not be reached"}}"#,
    )
}

/// 503: every connection the upstream may have (`proxy.max_upstream_connections`) stayed busy
/// for `proxy.upstream_queue_timeout`. Worth a retry soon.
pub fn upstream_busy() -> Response<ProxyBody> {
    let mut response = json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        r#"{"error":{"code":"upstream_busy","message":"the upstream has no connection free; retry after the number of seconds in Retry-After"}}"#,
    );
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// 504: the upstream said nothing within `proxy.upstream_timeout`.
pub fn gateway_timeout() -> Response<ProxyBody> {
    json_error(
        StatusCode::GATEWAY_TIMEOUT,
        r#"{"error":{"code":"gateway_timeout","message":"the upstream did not answer in time"}}"#,
    )
}

/// 403 to a forward-auth check from a caller that is not a trusted proxy.
pub fn not_a_trusted_proxy() -> Response<ProxyBody> {
    json_error(
        StatusCode::FORBIDDEN,
        r#"{"error":{"code":"forbidden","message":"forward-auth checks are answered to proxy.trusted_proxies only"}}"#,
    )
}

/// 400 to a forward-auth check whose proxy did not say which request it is about.
pub fn bad_check(reason: &'static str) -> Response<ProxyBody> {
    let body = serde_json::json!({"error": {"code": "bad_request", "message": reason}});
    json_error_value(StatusCode::BAD_REQUEST, &body)
}

/// 200 to a forward-auth check: the identity headers for the asking proxy to pass upstream
/// (none on a public route) and the token's `RateLimit` headers; an empty body.
pub fn allowed(identity: Option<&Identity>, limit: Option<&LimitHeaders>) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
    let headers = response.headers_mut();
    if let Some(identity) = identity {
        insert_identity(headers, identity);
    }
    if let Some(limit) = limit {
        limit.apply(headers);
    }
    response
}

/// The `WWW-Authenticate` value for a realm (validated at config time to need no escaping).
pub fn challenge(realm: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("Basic realm=\"{realm}\", charset=\"UTF-8\""))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"tokengate\", charset=\"UTF-8\""))
}
