//! Forward-auth: the check a reverse proxy that already fronts a site (nginx `auth_request`,
//! Traefik ForwardAuth, Caddy `forward_auth`, Envoy ext_authz over HTTP) asks before it
//! forwards a request itself. The proxy sends the client's headers to `forward_auth.path` and
//! says which request it is about in its own headers; tokengate routes, authenticates,
//! authorises and limits it exactly as if it were to proxy it, and answers 200 with the
//! identity headers for the proxy to pass on, or the 401 / 403 / 429 the client should get.
//!
//! Only trusted proxies (`proxy.trusted_proxies`) may ask: anyone else could otherwise probe
//! tokens through the check, or pose as a proxy with a client address of its choosing.

use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, Method};

/// The original method, as Traefik and Caddy send it.
static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
/// The original method, as nginx configurations commonly send it.
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
/// The original URI (path and query), as Traefik and Caddy send it.
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
/// The original URI, as nginx configurations commonly send it.
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");

/// The request a check is about.
#[derive(Debug, PartialEq, Eq)]
pub struct Original {
    /// Its method; the check's own when the proxy names none (nginx's `auth_request` keeps it).
    pub method: Method,
    /// Its path and query as the client sent them.
    pub uri: PathAndQuery,
}

/// Why a check cannot be answered: the asking proxy's configuration is wrong, so it gets 400.
pub type Malformed = &'static str;

/// The original method and URI from the asking proxy's headers.
pub fn original(headers: &HeaderMap, check_method: &Method) -> Result<Original, Malformed> {
    let method = match first(headers, &X_FORWARDED_METHOD, &X_ORIGINAL_METHOD) {
        Some(value) => Method::from_bytes(value.as_bytes()).map_err(|_| "X-Forwarded-Method is not a method")?,
        None => check_method.clone(),
    };
    let uri = first(headers, &X_FORWARDED_URI, &X_ORIGINAL_URI)
        .ok_or("a forward-auth check needs X-Forwarded-Uri or X-Original-URI naming the original request")?;
    let uri = uri.to_str().map_err(|_| "X-Forwarded-Uri is not a URI")?;
    // An absolute URI (some proxies send one) is reduced to its path and query.
    let uri = match uri.parse::<http::Uri>() {
        Ok(parsed) if parsed.scheme().is_some() => parsed.path_and_query().cloned(),
        _ => uri.parse::<PathAndQuery>().ok(),
    };
    let uri = uri.filter(|u| u.as_str().starts_with('/')).ok_or("X-Forwarded-Uri is not an absolute path")?;
    Ok(Original { method, uri })
}

/// The first of two spellings of a header that is present.
fn first<'h>(headers: &'h HeaderMap, one: &HeaderName, other: &HeaderName) -> Option<&'h http::HeaderValue> {
    headers.get(one).or_else(|| headers.get(other))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn both_header_styles_name_the_original_request() {
        let traefik = headers(&[("x-forwarded-method", "POST"), ("x-forwarded-uri", "/orders/7?x=1")]);
        let found = original(&traefik, &Method::GET).unwrap();
        assert_eq!((found.method, found.uri.path()), (Method::POST, "/orders/7"));
        let nginx = headers(&[("x-original-method", "DELETE"), ("x-original-uri", "/a")]);
        assert_eq!(original(&nginx, &Method::GET).unwrap().method, Method::DELETE);
        let no_method = headers(&[("x-original-uri", "https://api.example.com/b?c")]);
        let found = original(&no_method, &Method::HEAD).unwrap();
        assert_eq!((found.method, found.uri.as_str()), (Method::HEAD, "/b?c"));
        assert!(original(&headers(&[]), &Method::GET).is_err());
        assert!(original(&headers(&[("x-forwarded-uri", "relative")]), &Method::GET).is_err());
    }
}
