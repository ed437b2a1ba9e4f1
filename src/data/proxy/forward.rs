//! Forwarding: rewrite the request for the upstream (hop-by-hop headers out, `X-Forwarded-*`
//! and identity headers in), send it on the client connection's pinned upstream connection
//! (`pinned.rs`) with a timeout, and clean the response. Bodies are streamed both ways, never
//! buffered.

use std::io::Write as _;
use std::time::Duration;

use http::header::{
    AUTHORIZATION, CONNECTION, COOKIE, HOST, HeaderMap, HeaderName, HeaderValue, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;

use super::authenticate::Identity;
use super::client_ip::{Peer, X_FORWARDED_FOR};
use super::pinned::Pinned;
use super::progress::ProgressBody;
use super::route::Route;
use super::upstreams::{SendError, UpstreamError};

/// Set to `http` or `https` as the client reached the gateway; a trusted proxy's value is kept.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// The `Host` the client asked for; a trusted proxy's value is kept.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// The token owner's email, sent upstream on authenticated routes.
pub static X_AUTH_USER: HeaderName = HeaderName::from_static("x-auth-user");
/// The token's id, sent upstream on authenticated routes.
pub static X_AUTH_TOKEN_ID: HeaderName = HeaderName::from_static("x-auth-token-id");
/// The token's name, sent upstream on authenticated routes.
pub static X_AUTH_TOKEN_NAME: HeaderName = HeaderName::from_static("x-auth-token-name");
/// The token's scopes, space-separated, sent upstream on authenticated routes.
pub static X_AUTH_SCOPES: HeaderName = HeaderName::from_static("x-auth-scopes");
/// The token's expiry (RFC 3339), sent back to the client on an authorised response so it knows
/// when to rotate.
pub static X_AUTH_TOKEN_EXPIRES: HeaderName = HeaderName::from_static("x-auth-token-expires");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static HTTP: HeaderValue = HeaderValue::from_static("http");
static HTTPS: HeaderValue = HeaderValue::from_static("https");

/// Headers a client may not set, compared with `_` read as `-` (CGI-style servers map both
/// `X-Auth-User` and `X_Auth_User` to `HTTP_X_AUTH_USER`), besides the whole `X-Auth-*` family
/// (the gateway's identity headers and the names auth proxies use for theirs) and every
/// `X-Forwarded-*` header but the three the gateway sets: headers through which upstreams learn
/// a user, client address, host or URL other than the one the gateway checked, or a method
/// other than the one whose scope it checked.
const CLIENT_CONTROLLED: [&str; 23] = [
    "forwarded",
    "remote-user",
    "remote-addr",
    "x-remote-user",
    "x-remote-addr",
    "x-remote-ip",
    "x-user",
    "x-user-id",
    "x-user-email",
    "x-email",
    "x-real-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "x-originating-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];
/// The `X-Forwarded-*` headers the gateway rewrites itself; only their underscore spellings are
/// dropped here.
const MANAGED_FORWARDING: [&str; 3] = ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"];

/// Which client headers never reach an upstream: the built-in list and
/// `proxy.strip_request_headers`.
#[derive(Debug, Default)]
pub struct RequestHeaderPolicy {
    /// [`CLIENT_CONTROLLED`] and the operator's additions in one list, lower-case with `_` read
    /// as `-`: one lookup, whoever named the header.
    listed: Vec<String>,
}

impl RequestHeaderPolicy {
    /// The built-in list plus the operator's `proxy.strip_request_headers`.
    pub fn new(extra: &[HeaderName]) -> Self {
        let builtin = CLIENT_CONTROLLED.iter().map(|name| (*name).to_owned());
        let added = extra.iter().map(|name| name.as_str().replace('_', "-"));
        RequestHeaderPolicy { listed: builtin.chain(added).collect() }
    }

    /// Whether a client-sent header with this (lower-case) name is dropped.
    fn strips(&self, name: &str) -> bool {
        let dashed: std::borrow::Cow<'_, str> =
            if name.contains('_') { name.replace('_', "-").into() } else { name.into() };
        let dashed = &*dashed;
        if dashed.starts_with("x-auth-") {
            return true;
        }
        if dashed.starts_with("x-forwarded-") {
            // The managed three are rewritten in `set_forwarded`; only their `_` spellings go.
            return !MANAGED_FORWARDING.contains(&dashed) || name.contains('_');
        }
        self.listed.iter().any(|listed| listed == dashed)
    }
}

/// Whether a header describes one hop only (RFC 9110 §7.6.1); the `Connection` header may name
/// more.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    [
        &CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &PROXY_AUTHENTICATE,
        &PROXY_AUTHORIZATION,
        &TE,
        &TRAILER,
        &TRANSFER_ENCODING,
        &UPGRADE,
    ]
    .contains(&name)
}

/// Removes the headers that describe one hop, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip_headers(headers, |_| false);
}

/// HTTP/2 clients may split `Cookie` into one field per cookie (RFC 9113 §8.2.3); an HTTP/1.1
/// upstream expects one `Cookie` header (RFC 6265 §5.4), so several are joined with `; `. An
/// empty crumb is left out rather than joined as an empty pair (`a=1; ; b=2`).
fn join_cookies(headers: &mut HeaderMap) {
    let mut crumbs = headers.get_all(COOKIE).iter();
    if crumbs.next().is_none() || crumbs.next().is_none() {
        return;
    }
    let mut joined: Vec<u8> = Vec::new();
    for crumb in headers.get_all(COOKIE) {
        if crumb.as_bytes().trim_ascii().is_empty() {
            continue;
        }
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(crumb.as_bytes());
    }
    // Joined valid values with "; " are a valid value.
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, value);
    }
}

/// Removes, in one pass over the names, the hop-by-hop headers, those the `Connection` header
/// names, and those `also` picks. A removal costs a lookup, so a request that carries none of
/// them (the common case) is only read.
fn strip_headers(headers: &mut HeaderMap, also: impl Fn(&HeaderName) -> bool) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        if is_hop_by_hop(name) || also(name) {
            doomed.push(name.clone());
        }
    }
    if doomed.contains(&CONNECTION) {
        // Read as bytes: one non-ASCII byte in the value must not keep the names beside it.
        let named = headers
            .get_all(CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok());
        doomed.extend(named);
    }
    for name in doomed {
        headers.remove(name);
    }
}

/// What the request rewrite needs to know about the caller.
pub struct ForwardContext<'a> {
    /// The connection's far end: an untrusted peer's address is sent as `X-Forwarded-For`; a
    /// trusted proxy's `X-Forwarded-*` headers are extended, not replaced.
    pub peer: &'a Peer,
    /// The peer is one of `proxy.trusted_proxies` (as the settings of this request say).
    pub peer_trusted: bool,
    /// The client reached the gateway over TLS (`X-Forwarded-Proto: https`).
    pub over_tls: bool,
    /// The authenticated caller, whose identity headers are sent; `None` on a public route.
    pub identity: Option<&'a Identity>,
    /// The protocol the client asks to switch to (`Upgrade: websocket`): kept for the upstream,
    /// which is asked on a connection of its own.
    pub upgrade: Option<HeaderValue>,
}

/// Turns the client's request into the upstream's. Returns `None` when the target URI cannot
/// be built (which a validated route and a parsed request path should never cause).
pub fn upstream_request(
    mut request: Request<Incoming>,
    canonical_path: &str,
    route: &Route,
    caller: &ForwardContext<'_>,
    header_policy: &RequestHeaderPolicy,
) -> Option<Request<Incoming>> {
    let path = route.upstream_path(canonical_path);
    let original_host = request
        .headers()
        .get(HOST)
        .cloned()
        .or_else(|| request.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
    // Origin-form: the pinned connection already leads to the upstream. A client's origin-form
    // URI that is already the upstream's (no rewrite, no prefix stripped) is kept as it is.
    let uri = request.uri();
    if uri.scheme().is_some() || uri.authority().is_some() || uri.path() != path {
        let path_and_query = match uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path.into_owned(),
        };
        *request.uri_mut() = Uri::builder().path_and_query(path_and_query).build().ok()?;
    }
    *request.version_mut() = Version::HTTP_11;

    let headers = request.headers_mut();
    let strip_authorization = !route.keep_authorization;
    strip_headers(headers, |name| {
        header_policy.strips(name.as_str()) || (strip_authorization && name == AUTHORIZATION)
    });
    join_cookies(headers);
    if let Some(protocol) = caller.upgrade.clone() {
        super::tunnel::restore_request_headers(headers, protocol);
    }
    // Room for the forwarding and identity headers at once, rather than growing the map (and
    // rehashing it) as they arrive.
    headers.reserve(8);
    headers.insert(HOST, route.upstream.host.clone());
    set_forwarded(headers, caller, original_host);
    if let Some(identity) = caller.identity {
        insert_identity(headers, identity);
    }
    Some(request)
}

/// The identity headers an upstream reads: who called, with which token and scopes.
pub fn insert_identity(headers: &mut HeaderMap, identity: &Identity) {
    let token = &identity.token;
    headers.insert(&X_AUTH_USER, identity.account.email_header.clone());
    headers.insert(&X_AUTH_TOKEN_ID, token.id_header());
    headers.insert(&X_AUTH_TOKEN_NAME, token.name_header().clone());
    headers.insert(&X_AUTH_SCOPES, token.scopes_header().clone());
}

fn set_forwarded(headers: &mut HeaderMap, caller: &ForwardContext<'_>, original_host: Option<HeaderValue>) {
    // A trusted proxy's chain is extended with the hop that sent it to us; anyone else's chain
    // is replaced by the one address we saw.
    let (peer, trusted) = (caller.peer, caller.peer_trusted);
    if trusted {
        // Joined as bytes: one non-ASCII byte a client wrote must not cost the entries the
        // trusted proxies appended after it (each value is a valid header value, so is the join).
        let mut chain = Vec::new();
        for value in headers.get_all(&X_FORWARDED_FOR) {
            chain.extend_from_slice(value.as_bytes());
            chain.extend_from_slice(b", ");
        }
        // Writing to a Vec cannot fail.
        let _ = write!(chain, "{}", peer.ip);
        if let Ok(value) = HeaderValue::from_bytes(&chain) {
            headers.insert(&X_FORWARDED_FOR, value);
        }
    } else {
        headers.insert(&X_FORWARDED_FOR, peer.forwarded_for.clone());
    }
    if !(trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(&X_FORWARDED_PROTO, if caller.over_tls { HTTPS.clone() } else { HTTP.clone() });
    }
    if !(trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        match original_host {
            Some(host) => headers.insert(&X_FORWARDED_HOST, host),
            None => headers.remove(&X_FORWARDED_HOST),
        };
    }
}

/// Why the upstream gave no response.
#[derive(Debug)]
pub enum ForwardError {
    /// Connecting failed or the connection broke: 502.
    Unreachable(UpstreamError),
    /// The upstream's connections stayed at `proxy.max_upstream_connections` for
    /// `proxy.upstream_queue_timeout`: 503.
    Busy,
    /// No response head within `proxy.upstream_timeout`: 504.
    TimedOut,
    /// The client's body broke on the way (malformed chunks, cut off): 400, the client's fault.
    ClientBody {
        /// It stopped coming for `proxy.client_body_timeout` (408).
        stalled: bool,
    },
}

/// How long a forwarded request may wait on each side.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// `proxy.upstream_timeout`: the upstream's silence.
    pub upstream: Duration,
    /// `proxy.client_body_timeout`: the longest gap between two pieces of the client's body.
    pub client_body: Duration,
}

/// Sends the request, streaming its body, and waits for the response head. It times out when
/// nothing has moved for `timeout`: no part of the body was sent and no head arrived. So the
/// timeout measures the upstream's silence, not the length of the client's upload.
pub async fn send(
    pinned: &Pinned,
    route: &Route,
    request: Request<Incoming>,
    client_version: Version,
    timeouts: Timeouts,
    upgrade: bool,
) -> Result<Response<Incoming>, ForwardError> {
    let (parts, body) = request.into_parts();
    let (body, progress) = ProgressBody::new(body, timeouts.client_body);
    let upstream = &route.upstream;
    let request = Request::from_parts(parts, body);
    let response = async {
        if upgrade {
            pinned.send_alone(&upstream.scheme, &upstream.authority, request).await
        } else {
            pinned.send(&upstream.scheme, &upstream.authority, request, client_version).await
        }
    };
    tokio::select! {
        result = response => match result {
            Ok(mut response) => {
                strip_hop_by_hop(response.headers_mut());
                Ok(response)
            }
            Err(SendError::Busy) => Err(ForwardError::Busy),
            Err(_) if progress.client_failed() => Err(ForwardError::ClientBody { stalled: progress.client_stalled() }),
            Err(SendError::Failed(error)) => Err(ForwardError::Unreachable(error)),
        },
        _ = progress.idle_for(timeouts.upstream) => Err(ForwardError::TimedOut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_named_by_connection_go_even_beside_a_non_ascii_byte() {
        // Found by fuzzing the header rewrite: the value was read as text, so one such byte
        // kept every header it named.
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_bytes(b"x-a, \xffjunk, x-b").unwrap());
        headers.insert("x-a", HeaderValue::from_static("1"));
        headers.insert("x-b", HeaderValue::from_static("2"));
        headers.insert("x-c", HeaderValue::from_static("3"));
        strip_hop_by_hop(&mut headers);
        assert!(!headers.contains_key("x-a") && !headers.contains_key("x-b") && !headers.contains_key(CONNECTION));
        assert!(headers.contains_key("x-c"));
    }

    #[test]
    fn cookie_crumbs_are_joined_without_the_empty_ones() {
        // Found by fuzzing the header rewrite: an empty crumb was joined as an empty pair.
        let mut headers = HeaderMap::new();
        for crumb in ["", "a=1", " ", "b=2", ""] {
            headers.append(COOKIE, HeaderValue::from_static(crumb));
        }
        join_cookies(&mut headers);
        let joined: Vec<_> = headers.get_all(COOKIE).iter().collect();
        assert_eq!(joined, ["a=1; b=2"]);
    }

    #[test]
    fn identity_and_address_headers_are_stripped_in_any_spelling() {
        let policy = RequestHeaderPolicy::new(&[HeaderName::from_static("x-tenant")]);
        for name in [
            "x-auth-user",
            "x-auth-email",
            "x_auth_roles",
            "x-auth-request-user",
            "remote-user",
            "x-remote-user",
            "x-forwarded-user",
            "x_forwarded_for",
            "true-client-ip",
            "x-real-ip",
            "forwarded",
            "x-http-method-override",
            "x-tenant",
            "x_tenant",
        ] {
            assert!(policy.strips(name), "{name}");
        }
        for name in
            ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "accept", "x-request-id", "authorization"]
        {
            assert!(!policy.strips(name), "{name}");
        }
    }
}
