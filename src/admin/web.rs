//! The web page at `/` of the admin listener: one HTML file, one script, one stylesheet and an
//! icon, compiled into the binary (no build step, no third-party assets). The page talks only to
//! the JSON API (`admin/api.rs`) with the caller's Basic credentials, which it keeps in the
//! tab's `sessionStorage` (gone when the tab closes), never in `localStorage` or a cookie.
//!
//! Every page response carries a strict Content-Security-Policy: scripts and styles from this
//! origin only (no inline script or style), no framing, no form posts, no outside connections.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The policy every page response carries.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

const INDEX_HTML: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");
const APP_CSS: &str = include_str!("web/app.css");
const ICON_SVG: &str = include_str!("web/icon.svg");

/// The web page and its assets, compiled into the binary and served under
/// [`CONTENT_SECURITY_POLICY`].
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { page("text/html; charset=utf-8", INDEX_HTML) }))
        .route("/assets/app.js", get(|| async { page("text/javascript; charset=utf-8", APP_JS) }))
        .route("/assets/app.css", get(|| async { page("text/css; charset=utf-8", APP_CSS) }))
        .route("/assets/icon.svg", get(|| async { page("image/svg+xml", ICON_SVG) }))
}

/// One embedded file with the page's security headers. `no-cache` (revalidate, here: refetch)
/// keeps a page from an older binary from outliving an upgrade.
fn page(content_type: &'static str, body: &'static str) -> Response {
    let headers: [(HeaderName, HeaderValue); 7] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin")),
    ];
    (StatusCode::OK, headers, body).into_response()
}
