//! The request rewrite for the upstream: a raw HTTP/1.1 request head is parsed by hyper (as the
//! gateway's listener parses it), rewritten by `forward::upstream_request`, and the headers it
//! would send upstream are compared, header by header, with what the reference ("Request
//! headers sent upstream") says they are. Shared by the property tests and the
//! `header_rewrite` fuzz target.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONNECTION, COOKIE, HOST, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokengate::control::store::{IndexAccountRow, IndexTokenRef};
use tokengate::data::index::TokenIndex;
use tokengate::data::proxy::authenticate::Identity;
use tokengate::data::proxy::client_ip::Peer;
use tokengate::data::proxy::forward::{ForwardContext, RequestHeaderPolicy, upstream_request};
use tokengate::data::proxy::route::{Router, canonical_path};
use tokengate::data::proxy::tunnel;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request and the circumstances of its rewrite.
#[derive(Debug, Clone)]
pub struct Case {
    /// Header lines (`Name: value`), one per `\n`, as the client sends them.
    pub head: Vec<u8>,
    /// Sent to the route with `keep_authorization` (`/keep/x`) rather than one without (`/x`).
    pub keep_authorization: bool,
    /// The peer is a trusted proxy.
    pub trusted: bool,
    /// The route authenticated the caller (identity headers are added).
    pub authenticated: bool,
    /// The client reached the gateway over TLS.
    pub over_tls: bool,
    /// The socket peer.
    pub peer: IpAddr,
}

/// The operator's `proxy.strip_request_headers` in every check.
const OPERATOR_STRIPS: &str = "x-tenant";

/// The client-controlled names the reference lists, besides the `X-Auth-*` and `X-Forwarded-*`
/// families (compared with `_` read as `-`).
const LISTED: [&str; 23] = [
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

/// Hop-by-hop headers (RFC 9110 §7.6.1 and the reference).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The identity headers the gateway sets on an authenticated route.
const IDENTITY: [&str; 4] = ["x-auth-user", "x-auth-token-id", "x-auth-token-name", "x-auth-scopes"];

/// The upstream's authority, which is the `Host` sent upstream.
const UPSTREAM_HOST: &str = "up.internal:8080";

/// What one rewrite saw and produced.
#[derive(Debug)]
struct Rewrite {
    /// The request's headers as hyper parsed them.
    before: HeaderMap,
    /// The headers the upstream would get; `None`: no upstream request could be built.
    after: Option<HeaderMap>,
    /// The protocol the request asks to switch to, as the gateway reads it.
    upgrade: Option<HeaderValue>,
}

/// Fuzzer bytes as a case: the first byte's bits are the circumstances, the rest the head.
pub fn from_bytes(data: &[u8]) -> Case {
    let (flags, head) = super::flags_and_rest(data);
    let peer = if flags & 16 == 0 { "192.0.2.10" } else { "::ffff:192.0.2.10" };
    Case {
        head: head.to_vec(),
        keep_authorization: flags & 1 != 0,
        trusted: flags & 2 != 0,
        authenticated: flags & 4 != 0,
        over_tls: flags & 8 != 0,
        peer: peer.parse().unwrap(),
    }
}

/// Parses and rewrites the case's request and checks the result; `false` when hyper refused
/// the request (then there is nothing to check).
pub fn check(case: &Case) -> bool {
    let Some(rewrite) = run(case) else { return false };
    let Some(after) = &rewrite.after else { panic!("no upstream request for {case:?}") };
    let expected = expected_upgrade(&rewrite.before);
    assert_eq!(rewrite.upgrade, expected, "the upgrade read otherwise than the reference says: {case:?}");
    check_headers(case, &rewrite.before, after, rewrite.upgrade.as_ref());
    true
}

/// The protocol an HTTP/1.1 request asks to switch to, as the reference says: its `Upgrade`
/// when `Connection` lists `upgrade` (in any case), unless it is `h2c`.
fn expected_upgrade(before: &HeaderMap) -> Option<HeaderValue> {
    let upgrade = before.get(UPGRADE)?;
    let connection_says_upgrade = before
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
    let h2c = upgrade.as_bytes().trim_ascii().eq_ignore_ascii_case(b"h2c");
    (connection_says_upgrade && !h2c).then(|| upgrade.clone())
}

/// The headers the upstream would get for the case's request; `None` when hyper refused it.
pub fn rewritten(case: &Case) -> Option<HeaderMap> {
    run(case)?.after
}

/// The request line and `case.head` as bytes on the wire.
fn wire(case: &Case) -> Vec<u8> {
    let path = if case.keep_authorization { "/keep/x" } else { "/x" };
    let mut raw = format!("GET {path} HTTP/1.1\r\n").into_bytes();
    for line in case.head.split(|b| *b == b'\n').filter(|l| !l.is_empty() && *l != b"\r") {
        raw.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    raw
}

/// Serves the request on an in-memory connection with hyper and rewrites it as the gateway
/// does; `None` when hyper answered it itself (a malformed head).
fn run(case: &Case) -> Option<Rewrite> {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    }
    let captured: Arc<Mutex<Option<Rewrite>>> = Arc::default();
    let service = {
        let (captured, case) = (Arc::clone(&captured), case.clone());
        hyper::service::service_fn(move |request: Request<Incoming>| {
            *captured.lock().unwrap() = Some(rewrite(&case, request));
            async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) }
        })
    };
    let raw = wire(case);
    RUNTIME.with(|runtime| {
        runtime.block_on(async {
            let (mut client, server) = tokio::io::duplex(1 << 20);
            let serve = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(server), service);
            let send = async move {
                let _ = client.write_all(&raw).await;
                let _ = client.shutdown().await;
                let _ = client.read_to_end(&mut Vec::new()).await;
            };
            let finished = tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(serve, send) }).await;
            assert!(finished.is_ok(), "the connection hung: {case:?}");
        });
    });
    captured.lock().unwrap().take()
}

/// The gateway's rewrite of one parsed request.
fn rewrite(case: &Case, request: Request<Incoming>) -> Rewrite {
    let before = request.headers().clone();
    let upgrade = tunnel::requested(&request);
    let peer = Peer::new(case.peer);
    let caller = ForwardContext {
        peer: &peer,
        peer_trusted: case.trusted,
        over_tls: case.over_tls,
        identity: case.authenticated.then(identity),
        upgrade: upgrade.clone(),
    };
    let path = request.uri().path().to_owned();
    let canonical = canonical_path(&path).unwrap();
    let route = router().route(None, &canonical).unwrap().unwrap();
    assert_eq!(route.keep_authorization, case.keep_authorization);
    let after = upstream_request(request, &canonical.path, route, &caller, policy()).map(|r| r.headers().clone());
    Rewrite { before, after, upgrade }
}

fn router() -> &'static Router {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let text = format!(
            "[[routes]]\nprefix = \"/\"\nupstream = \"http://{UPSTREAM_HOST}\"\n\
             [[routes]]\nprefix = \"/keep\"\nupstream = \"http://{UPSTREAM_HOST}\"\nkeep_authorization = true\n"
        );
        super::router(&text)
    })
}

fn policy() -> &'static RequestHeaderPolicy {
    static POLICY: OnceLock<RequestHeaderPolicy> = OnceLock::new();
    POLICY.get_or_init(|| RequestHeaderPolicy::new(&[HeaderName::from_static(OPERATOR_STRIPS)]))
}

/// The caller of every authenticated case, built through the index as the gateway builds it.
fn identity() -> &'static Identity {
    static IDENTITY: OnceLock<Identity> = OnceLock::new();
    IDENTITY.get_or_init(|| {
        let index = TokenIndex::new();
        let email = "Ann@Example.com".to_owned();
        index.upsert_account(IndexAccountRow {
            id: 1,
            email_norm: email.to_lowercase(),
            email,
            enabled: true,
            can_create_tokens: true,
        });
        let (digest, token) = index
            .prepare(IndexTokenRef {
                id: 7,
                account_id: 1,
                name: "ci \u{e9}",
                digest: &[7; 32],
                scopes: "read write",
                rate_limit: None,
                expires_at: None,
                revoked_at: None,
                handover_from: None,
                handover_digest: None,
            })
            .unwrap();
        Identity { token, account: index.account(1).unwrap(), digest }
    })
}

/// Whether the reference says a client header of this name never reaches an upstream.
fn client_controlled(name: &str) -> bool {
    let dashed = name.replace('_', "-");
    let managed = ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"].contains(&dashed.as_str());
    dashed.starts_with("x-auth-")
        || (dashed.starts_with("x-forwarded-") && (!managed || name.contains('_')))
        || LISTED.contains(&dashed.as_str())
        || dashed == OPERATOR_STRIPS
}

/// Every value of `name`, as bytes.
fn values<'h>(headers: &'h HeaderMap, name: &str) -> Vec<&'h [u8]> {
    headers.get_all(name).iter().map(HeaderValue::as_bytes).collect()
}

/// The headers after the rewrite, against the reference, one rule at a time.
fn check_headers(case: &Case, before: &HeaderMap, after: &HeaderMap, upgrade: Option<&HeaderValue>) {
    let context = || format!("{case:?}\nbefore: {before:?}\nafter: {after:?}");
    // The names `Connection` lists, read as the reference says: comma-separated, trimmed.
    let named: BTreeSet<String> = before
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok())
        .map(|name| name.as_str().to_owned())
        .collect();
    let mut set_by_gateway: BTreeSet<&str> =
        ["host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"].into();
    if case.authenticated {
        set_by_gateway.extend(IDENTITY);
    }
    if upgrade.is_some() {
        set_by_gateway.extend(["connection", "upgrade"]);
    }
    let removed = |name: &HeaderName| {
        HOP_BY_HOP.contains(&name.as_str())
            || named.contains(name.as_str())
            || client_controlled(name.as_str())
            || (*name == AUTHORIZATION && !case.keep_authorization)
    };

    // Headers the gateway does not set pass unchanged unless removed (Cookie: joined).
    for name in before.keys().filter(|name| !set_by_gateway.contains(name.as_str())) {
        let passed = values(after, name.as_str());
        if removed(name) {
            assert!(passed.is_empty(), "{name} reached the upstream: {}", context());
        } else if *name == COOKIE && before.get_all(COOKIE).iter().count() > 1 {
            // Empty crumbs are left out (found by the fuzz target: an empty `Cookie:` line).
            let crumbs = values(before, "cookie");
            let joined =
                crumbs.iter().filter(|c| !c.trim_ascii().is_empty()).copied().collect::<Vec<_>>().join(&b"; "[..]);
            assert_eq!(passed, [joined.as_slice()], "cookies not joined: {}", context());
        } else {
            assert_eq!(passed, values(before, name.as_str()), "{name} changed on the way: {}", context());
        }
    }
    // Nothing else appears.
    for name in after.keys() {
        assert!(
            set_by_gateway.contains(name.as_str()) || (before.contains_key(name) && !removed(name)),
            "{name} appeared: {}",
            context()
        );
    }
    // Headers the gateway sets.
    assert_eq!(values(after, "host"), [UPSTREAM_HOST.as_bytes()], "{}", context());
    check_forwarded_for(case, before, after, &named, &context);
    let kept = |name: &str| case.trusted && before.contains_key(name) && !named.contains(name);
    let proto: &[u8] = if case.over_tls { b"https" } else { b"http" };
    let expected_proto = if kept("x-forwarded-proto") { values(before, "x-forwarded-proto") } else { vec![proto] };
    assert_eq!(values(after, "x-forwarded-proto"), expected_proto, "{}", context());
    let expected_host = if kept("x-forwarded-host") {
        values(before, "x-forwarded-host")
    } else {
        before.get(HOST).map(HeaderValue::as_bytes).into_iter().collect()
    };
    assert_eq!(values(after, "x-forwarded-host"), expected_host, "{}", context());
    if case.authenticated {
        let identity = identity();
        let token = &identity.token;
        assert_eq!(values(after, "x-auth-user"), [identity.account.email_header.as_bytes()]);
        assert_eq!(values(after, "x-auth-token-id"), [token.id_header().as_bytes()]);
        assert_eq!(values(after, "x-auth-token-name"), [token.name_header().as_bytes()]);
        assert_eq!(values(after, "x-auth-scopes"), [token.scopes_header().as_bytes()]);
    }
    let auth_like: Vec<&HeaderName> = after
        .keys()
        .filter(|n| n.as_str().replace('_', "-").starts_with("x-auth-") && !IDENTITY.contains(&n.as_str()))
        .collect();
    assert!(auth_like.is_empty(), "client identity headers reached the upstream: {}", context());
    match upgrade {
        Some(protocol) => {
            assert_eq!(values(after, "connection"), [&b"upgrade"[..]], "{}", context());
            assert_eq!(values(after, "upgrade"), [protocol.as_bytes()], "{}", context());
        }
        None => assert!(!after.contains_key(CONNECTION) && !after.contains_key(UPGRADE), "{}", context()),
    }
}

/// `X-Forwarded-For`: an untrusted peer's address alone; a trusted peer's chain (unless
/// `Connection` named it) extended with the peer's address.
fn check_forwarded_for(
    case: &Case,
    before: &HeaderMap,
    after: &HeaderMap,
    named: &BTreeSet<String>,
    context: &dyn Fn() -> String,
) {
    let peer = case.peer.to_canonical().to_string();
    let sent = values(after, "x-forwarded-for");
    if !case.trusted {
        assert_eq!(sent, [peer.as_bytes()], "{}", context());
        return;
    }
    let chain = if named.contains("x-forwarded-for") { Vec::new() } else { values(before, "x-forwarded-for") };
    let mut expected: Vec<u8> = chain.join(&b", "[..]);
    if !chain.is_empty() {
        expected.extend_from_slice(b", ");
    }
    expected.extend_from_slice(peer.as_bytes());
    assert_eq!(sent, [expected.as_slice()], "the chain was not extended: {}", context());
}
