//! Route options (docs/reference.md "[[routes]]"): encoded slashes on the routes that allow
//! them, methods served without authentication, and routes by host — through a real gateway,
//! real sockets and the real echo upstream; their configuration errors through the real binary.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use serde_json::Value;
use tokengate::clock::Clock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{TestGateway, Upstream, client, h2, run_cli};

const ANN: &str = "ann@example.com";

/// A gateway whose base routes are extended by `routes`, in which `{up}` stands for a second
/// echo upstream's address (returned, so it lives as long as the test).
async fn gateway_with(routes: &str) -> (TestGateway, Upstream) {
    let upstream = Upstream::start().await;
    let gw = TestGateway::spawn_with(&routes.replace("{up}", &upstream.addr.to_string()), &[], Clock::System).await;
    (gw, upstream)
}

/// One HTTP/1.1 request sent exactly as written (request target, headers); returns the status
/// and the body.
async fn raw(proxy: SocketAddr, request_line: &str, headers: &str) -> (u16, String) {
    let request = format!("{request_line} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n");
    let mut stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split_whitespace().nth(1).and_then(|code| code.parse().ok());
    let status = status.unwrap_or_else(|| panic!("no status: {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body)
}

/// Basic credentials as a header line.
fn credentials(email: &str, secret: &str) -> String {
    use base64::Engine;
    format!(
        "Authorization: Basic {}\r\n",
        base64::engine::general_purpose::STANDARD.encode(format!("{email}:{secret}"))
    )
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A 400's `reason`, after checking the rest of its shape.
fn refusal_reason(status: u16, body: &str) -> String {
    assert_eq!(status, 400, "{body}");
    let error = &json(body)["error"];
    assert_eq!(error["code"], "bad_request", "{body}");
    assert!(!error["message"].as_str().unwrap().contains("dot segments or backslashes"), "{body}");
    error["reason"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn encoded_slashes_are_kept_on_the_route_that_allows_them_and_refused_with_their_reason_elsewhere() {
    let (gw, up) = gateway_with(
        r#"
[[routes]]
prefix = "/git"
upstream = "http://{up}"
allow_encoded_slash = true
require = { "*" = "read" }

[[routes]]
prefix = "/git/admin"
upstream = "http://{up}"
require = { "*" = "write" }
"#,
    )
    .await;
    gw.account(ANN).await;
    let (_, reader) = gw.token(ANN, "reader", &["read"]).await;
    let who = credentials(ANN, &reader);
    let host = "Host: gateway\r\n";
    let headers = format!("{host}{who}");

    // Kept, and forwarded encoded (a lower-case escape upper-cased, like every other escape).
    for (sent, forwarded) in [
        ("/git/group%2Fproject/issues?state=open", "/git/group%2Fproject/issues"),
        ("/git/group%2fsub%2Fproject", "/git/group%2Fsub%2Fproject"),
    ] {
        let (status, body) = raw(gw.proxy, &format!("GET {sent}"), &headers).await;
        assert_eq!(status, 200, "{sent}: {body}");
        let echo = json(&body);
        assert_eq!(echo["path"], forwarded, "{sent}");
        assert_eq!(echo["headers"]["host"], up.addr.to_string(), "{sent}: the /git route's upstream");
        assert_eq!(echo["headers"]["x-auth-user"], ANN);
    }
    // The same through reqwest, which sends the path as written.
    let response = client().get(gw.url("/git/a%2Fb")).basic_auth(ANN, Some(&reader)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(json(&response.text().await.unwrap())["path"], "/git/a%2Fb");

    for (path, reason) in [
        // Routes that do not allow it: the base `/` route, and `/git/admin` (which the path
        // matches as sent).
        ("/orders/group%2Fproject", "encoded_slash"),
        ("/git%2Fx", "encoded_slash"),
        ("/git/admin/a%2Fb", "encoded_slash"),
        // Decoded, the path is under /git/admin, whose rules (the write scope) a read token
        // would escape.
        ("/git/admin%2Fsettings", "encoded_slash_changes_route"),
        ("/git/ADMIN%2Fsettings", "case_folded"),
        // No reading may climb out of the prefix.
        ("/git/a%2F..%2F..%2Fsecret", "dot_segment"),
        ("/git/a%2F%2E%2E%2Fadmin", "dot_segment"),
        ("/git%2F..%2Fadmin", "dot_segment"),
        ("/git/a%2F%2Fb", "empty_segment"),
        ("/git/a%5Cb", "encoded_backslash"),
        ("/git/a%252Fb", "double_encoded"),
        // The other reasons are named too.
        ("/public/../admin", "dot_segment"),
        ("/admin;x", "semicolon"),
    ] {
        let (status, body) = raw(gw.proxy, &format!("GET {path}"), &headers).await;
        assert_eq!(refusal_reason(status, &body), reason, "{path}");
    }
    let (status, body) = raw(gw.proxy, "GET /orders/group%2Fproject", &headers).await;
    let message = json(&body)["error"]["message"].as_str().unwrap().to_owned();
    assert_eq!(status, 400);
    assert!(message.contains("encoded slash (%2F)") && message.contains("this route does not allow"), "{message}");
    // A token without the route's scope is still refused on it: the scope of the route matched.
    let (_, writer) = gw.token(ANN, "writer", &["write"]).await;
    let (status, body) =
        raw(gw.proxy, "GET /git/group%2Fproject", &format!("{host}{}", credentials(ANN, &writer))).await;
    assert_eq!((status, json(&body)["error"]["missing_scope"].as_str()), (403, Some("read")), "{body}");
}

#[tokio::test]
async fn a_preflight_is_answered_without_credentials_on_a_route_with_public_methods() {
    let (gw, _up) = gateway_with(
        r#"
[[routes]]
prefix = "/cors"
upstream = "http://{up}"
public_methods = ["OPTIONS"]
require = { GET = "read", "*" = "write" }
"#,
    )
    .await;
    gw.account(ANN).await;
    let (_, secret) = gw.token(ANN, "ci", &[]).await;
    let preflight = |path: &str| {
        client()
            .request(reqwest::Method::OPTIONS, gw.url(path))
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "GET")
            .header("x-auth-user", "root@example.com")
    };

    let response = preflight("/cors/items").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let echo = json(&response.text().await.unwrap());
    assert_eq!(echo["method"], "OPTIONS");
    assert_eq!(echo["headers"]["origin"], "https://app.example.com");
    assert!(echo["headers"].get("x-auth-user").is_none(), "no identity, and none from the client: {echo}");

    // With credentials it is still public: nothing checked, no identity sent, nothing kept.
    let response = preflight("/cors/items").basic_auth(ANN, Some(&secret)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-auth-token-expires").is_none());
    let echo = json(&response.text().await.unwrap());
    assert!(echo["headers"].get("x-auth-user").is_none() && echo["headers"].get("authorization").is_none(), "{echo}");

    // Other methods on that route, and OPTIONS on routes without the option, need credentials.
    for (method, path) in [("GET", "/cors/items"), ("DELETE", "/cors/items"), ("OPTIONS", "/orders")] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = client().request(method.clone(), gw.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{method} {path}");
        assert!(response.headers().contains_key("www-authenticate"));
    }
    let response = client().get(gw.url("/cors/items")).basic_auth(ANN, Some(&secret)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(json(&response.text().await.unwrap())["headers"]["x-auth-user"], ANN);
}

/// Routes on `/h` for two hosts and for any host, each to its own base path of the echo
/// upstream, so the echoed path tells which one answered.
const HOST_ROUTES: &str = r#"
[[routes]]
prefix = "/h"
upstream = "http://{up}/api"
host = "api.example.com"
public = true

[[routes]]
prefix = "/h"
upstream = "http://{up}/admin"
host = "admin.example.com:8443"
public = true

[[routes]]
prefix = "/h"
upstream = "http://{up}/any"
public = true

[[routes]]
prefix = "/h/deep"
upstream = "http://{up}/deep"
public = true
"#;

#[tokio::test]
async fn host_routes_win_over_routes_without_a_host_then_the_longest_prefix() {
    let (gw, _up) = gateway_with(HOST_ROUTES).await;
    let served_by = |host: &'static str, path: &'static str| {
        let proxy = gw.proxy;
        async move {
            let (status, body) = raw(proxy, &format!("GET {path}"), &format!("Host: {host}\r\n")).await;
            assert_eq!(status, 200, "{host} {path}: {body}");
            let echo = json(&body);
            let path = echo["path"].as_str().unwrap();
            path[..path[1..].find('/').unwrap() + 1].to_owned()
        }
    };
    assert_eq!(served_by("api.example.com", "/h/x").await, "/api");
    assert_eq!(served_by("API.Example.COM.", "/h/x").await, "/api", "case and a trailing dot do not matter");
    assert_eq!(served_by("api.example.com:80", "/h/x").await, "/api", "the listener's default port is no port");
    assert_eq!(served_by("api.example.com", "/h/deep/x").await, "/api", "a host route wins over a longer prefix");
    assert_eq!(served_by("api.example.com:8443", "/h/x").await, "/any", "a port not configured");
    assert_eq!(served_by("admin.example.com:8443", "/h/x").await, "/admin");
    assert_eq!(served_by("admin.example.com", "/h/x").await, "/any", "the configured port is needed");
    assert_eq!(served_by("www.example.com", "/h/x").await, "/any");
    assert_eq!(served_by("www.example.com", "/h/deep/x").await, "/deep");

    // The absolute form's authority is the request's host (RFC 9112), and must not disagree
    // with Host, which the upstream learns as X-Forwarded-Host.
    let (status, body) = raw(gw.proxy, "GET http://api.example.com/h/x", "Host: api.example.com\r\n").await;
    assert_eq!((status, json(&body)["path"].as_str()), (200, Some("/api/h/x")), "{body}");
    for (target, headers, reason) in [
        ("http://api.example.com/h/x", "Host: www.example.com\r\n", "conflicting_host"),
        ("/h/x", "Host: www.example.com\r\nHost: api.example.com\r\n", "conflicting_host"),
        ("/h/x", "Host: api.example.com:http\r\n", "bad_host"),
        ("/h/x", "Host: api..example.com\r\n", "bad_host"),
    ] {
        let (status, body) = raw(gw.proxy, &format!("GET {target}"), headers).await;
        assert_eq!(refusal_reason(status, &body), reason, "{target} {headers:?}");
    }

    // Metrics and the access log tell the host routes apart; other routes keep their prefix.
    let metrics = client().get(format!("http://{}/metrics", gw.admin)).send().await.unwrap().text().await.unwrap();
    for label in
        ["route=\"api.example.com/h\"", "route=\"admin.example.com:8443/h\"", "route=\"/h\"", "route=\"/h/deep\""]
    {
        assert!(metrics.contains(label), "{label} in:\n{metrics}");
    }
}

#[tokio::test]
async fn an_http2_requests_authority_selects_the_host_route() {
    let (gw, _up) = gateway_with(HOST_ROUTES).await;
    let mut sender = h2(gw.proxy).await;
    for (uri, expected) in [
        ("http://api.example.com/h/x", "/api/h/x"),
        ("http://admin.example.com:8443/h/x", "/admin/h/x"),
        ("http://other.example.com/h/x", "/any/h/x"),
    ] {
        let request = http::Request::get(uri).body(Empty::<Bytes>::new()).unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        assert_eq!(response.status(), 200, "{uri}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let echo = json(&String::from_utf8_lossy(&body));
        assert_eq!(echo["path"], expected, "{uri}");
        assert_eq!(echo["headers"]["x-forwarded-host"], uri.split('/').nth(2).unwrap(), "{uri}");
    }
}

#[test]
fn check_config_names_the_route_option_that_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokengate.toml");
    let route = "[[routes]]\nprefix = \"/api\"\nupstream = \"http://127.0.0.1:9000\"\n";
    for (options, expected) in [
        ("public_methods = [\"options\"]", "public_methods names \"options\", which is not an upper-case method"),
        ("public_methods = [\"*\"]", "use public = true"),
        ("public_methods = [\"OPTIONS\", \"OPTIONS\"]", "twice"),
        ("public = true\npublic_methods = [\"OPTIONS\"]", "no effect on a public route"),
        ("require = { OPTIONS = \"read\" }\npublic_methods = [\"OPTIONS\"]", "both in public_methods"),
        ("host = \"https://api.example.com\"", "is not a host name"),
        ("host = \"api.example.com:0\"", "is not a host name"),
        ("host = \"\"", "is not a host name"),
        ("allow_encoded_slash = \"yes\"", "line 4: invalid type: string \"yes\", expected a boolean"),
        (
            "host = \"api.example.com\"\n[[routes]]\nprefix = \"/api/\"\nupstream = \"http://h:1\"\nhost = \"API.example.com\"",
            "prefix \"/api/\" appears twice for host \"api.example.com\"",
        ),
    ] {
        std::fs::write(&path, format!("{route}{options}\n")).unwrap();
        let (status, _, stderr) = run_cli(&path, &["check-config"]);
        assert_eq!(status, 2, "{options}: {stderr}");
        assert!(stderr.contains(expected), "{options}: {stderr}");
        if !expected.starts_with("line") {
            assert!(stderr.contains("routes") && stderr.contains("\"/api"), "{options}: names the route: {stderr}");
        }
    }
}
