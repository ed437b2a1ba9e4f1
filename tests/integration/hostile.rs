//! Hostile clients over raw sockets, against the real binary, in front of an upstream that
//! records every byte it receives: methods that have no business reaching an API, requests that
//! name their host wrongly, broken bodies (the client's fault, not the upstream's), HTTP/2 cookie
//! crumbs, and the admin API's answer to an oversized body.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{GatewayProcess, Recorder, Upstream, cli_token, client, eventually, h2, run_cli, write_config};

const ANN: &str = "ann@example.com";

struct Site {
    _dir: TempDir,
    config: PathBuf,
    upstream: Recorder,
    _echo: Upstream,
    secret: String,
}

/// A gateway config in front of a recorder: `/` public (the worst case for a method that
/// should never pass), `/api` authenticated; `extra_proxy` goes into `[proxy]`.
async fn new_site(extra_proxy: &str) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Recorder::start().await;
    let echo = Upstream::start().await;
    let routes = format!(
        r#"
[[routes]]
prefix = "/"
upstream = "http://{upstream}"
public = true

[[routes]]
prefix = "/api"
upstream = "http://{upstream}"

[[routes]]
prefix = "/echo"
upstream = "http://{echo}"
strip_prefix = true
public = true
"#,
        upstream = upstream.addr,
        echo = echo.addr,
    );
    let config = write_config(dir.path(), extra_proxy, &routes);
    let (code, _, stderr) = run_cli(&config, &["user", "add", ANN, "--superuser"]);
    assert_eq!(code, 0, "{stderr}");
    let secret = cli_token(&config, ANN, "t", "admin");
    Site { _dir: dir, config, upstream, _echo: echo, secret }
}

/// Writes `request` on a new connection and reads the whole answer (the gateway closes after
/// it: the request says `Connection: close`, or is refused).
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    send(addr, request, false).await
}

/// Writes `request`, with `then_close` the client's side closed after it (an upload cut off),
/// and reads the whole answer.
async fn send(addr: SocketAddr, request: &[u8], then_close: bool) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    if then_close {
        let _ = stream.shutdown().await;
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn status(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status: {answer:?}"))
}

/// The JSON body of a raw answer (after the head; not chunked).
fn body(answer: &str) -> Value {
    let text = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {answer:?}"))
}

#[tokio::test]
async fn connect_trace_and_unlisted_methods_get_405_and_never_reach_the_upstream() {
    let site = new_site("").await;
    let gw = GatewayProcess::start(&site.config);
    let connect = raw(
        gw.proxy,
        b"CONNECT internal.example:22 HTTP/1.1\r\nHost: internal.example:22\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&connect), 405, "{connect}");
    assert_eq!(body(&connect)["error"]["code"], "method_not_allowed");
    let trace = raw(gw.proxy, b"TRACE / HTTP/1.1\r\nHost: x\r\nCookie: secret=1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&trace), 405, "{trace}");
    assert!(trace.to_ascii_lowercase().contains("allow: get, head, post, put, patch, delete, options"), "{trace}");
    let propfind = raw(gw.proxy, b"PROPFIND /dav HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&propfind), 405, "{propfind}");
    let get = raw(gw.proxy, b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&get), 200, "{get}");
    let seen = site.upstream.requests();
    assert_eq!(seen.len(), 1, "only the GET reached the upstream: {seen:?}");
    assert!(seen[0].starts_with("GET /ok "), "{seen:?}");
    drop(gw);

    // Listed, a method is proxied; CONNECT and TRACE cannot be listed.
    let listed = new_site("methods = [\"GET\", \"PROPFIND\"]").await;
    let gw = GatewayProcess::start(&listed.config);
    let propfind = raw(gw.proxy, b"PROPFIND /dav HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&propfind), 200, "{propfind}");
    let post = raw(gw.proxy, b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&post), 405, "{post}");
    let refused = listed.config.with_file_name("refused.toml");
    let text = std::fs::read_to_string(&listed.config).unwrap().replace("\"PROPFIND\"]", "\"TRACE\"]");
    std::fs::write(&refused, text).unwrap();
    let (code, _, stderr) = run_cli(&refused, &["check-config"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("proxy.methods") && stderr.contains("TRACE is never proxied"), "{stderr}");
}

#[tokio::test]
async fn a_request_names_its_host_once() {
    let site = new_site("").await;
    let gw = GatewayProcess::start(&site.config);
    let no_host = raw(gw.proxy, b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&no_host), 400, "{no_host}");
    assert_eq!(body(&no_host)["error"]["reason"], "missing_host");
    let two =
        raw(gw.proxy, b"GET /x HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&two), 400, "{two}");
    assert_eq!(body(&two)["error"]["reason"], "conflicting_host");
    let absolute =
        raw(gw.proxy, b"GET http://a.example/x HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&absolute), 400, "{absolute}");
    // HTTP/1.0 may leave Host out; an absolute URI that agrees with Host is fine.
    let old = raw(gw.proxy, b"GET /x HTTP/1.0\r\n\r\n").await;
    assert_eq!(status(&old), 200, "{old}");
    let agreeing =
        raw(gw.proxy, b"GET http://a.example/y HTTP/1.1\r\nHost: A.example\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&agreeing), 200, "{agreeing}");

    // HTTP/2 (prior knowledge): `:authority` and a `Host` that disagrees.
    let mut h2 = h2(gw.proxy).await;
    let request =
        hyper::Request::get("http://a.example/z").header("host", "b.example").body(Empty::<Bytes>::new()).unwrap();
    let response = h2.send_request(request).await.unwrap();
    assert_eq!(response.status(), 400);
    let request = hyper::Request::get("http://a.example/z").body(Empty::<Bytes>::new()).unwrap();
    assert_eq!(h2.send_request(request).await.unwrap().status(), 200);

    // The upstream heard only the good ones, and X-Forwarded-Host is the host they named.
    let seen = site.upstream.requests();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().any(|r| r.to_ascii_lowercase().contains("x-forwarded-host: a.example")), "{seen:?}");
}

#[tokio::test]
async fn http2_cookie_crumbs_reach_an_http1_upstream_as_one_header() {
    let site = new_site("").await;
    let gw = GatewayProcess::start(&site.config);
    let mut h2 = h2(gw.proxy).await;
    let request = hyper::Request::get("http://x/cookies")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .header("cookie", "c=3")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = h2.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let _ = response.into_body().collect().await;
    let seen = site.upstream.requests();
    let lines: Vec<String> =
        seen[0].lines().filter(|l| l.to_ascii_lowercase().starts_with("cookie:")).map(str::to_owned).collect();
    assert_eq!(lines.len(), 1, "{seen:?}");
    assert_eq!(lines[0].split_once(':').unwrap().1.trim(), "a=1; b=2; c=3");
}

#[tokio::test]
async fn a_broken_request_body_is_the_clients_400_not_an_upstream_error() {
    let site = new_site("").await;
    let gw = GatewayProcess::start(&site.config);
    let cases: [(&str, &[u8], bool); 3] = [
        (
            "a malformed chunk size",
            b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n",
            false,
        ),
        (
            "LF-only chunk lines",
            b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n",
            false,
        ),
        ("an upload cut off", b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b", true),
    ];
    for (what, request, cut_off) in cases {
        let answer = send(gw.proxy, request, cut_off).await;
        // A client that closed its side may get nothing back (the gateway cannot tell it
        // apart from one gone); one still listening gets the 400.
        if !(cut_off && answer.is_empty()) {
            assert_eq!(status(&answer), 400, "{what}: {answer}");
        }
    }
    let metrics = gw.metrics().await;
    assert!(!metrics.contains("outcome=\"upstream_error\""), "{metrics}");
    assert!(metrics.contains("outcome=\"client_error\""), "counted as the client's: {metrics}");
    let (_, lines) = tokio::task::spawn_blocking(move || gw.terminate()).await.unwrap();
    assert!(!lines.iter().any(|line| line.contains("upstream unreachable")), "{lines:#?}");
}

#[tokio::test]
async fn the_admin_apis_413_is_its_json_error() {
    let site = new_site("").await;
    let gw = GatewayProcess::start(&site.config);
    let big = serde_json::json!({"user": ANN, "name": "x".repeat(70 * 1024)});
    let response = client()
        .post(gw.admin_url("/api/v1/tokens"))
        .basic_auth(ANN, Some(&site.secret))
        .header("content-type", "application/json")
        .body(big.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
}

/// A connection from `source` (any address of 127.0.0.0/8) to `addr`.
async fn connect_from(source: &str, addr: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

async fn readyz(gw: &GatewayProcess) -> (u16, Value) {
    let response = client().get(gw.admin_url("/readyz")).send().await.unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_str(&response.text().await.unwrap()).unwrap())
}

#[tokio::test]
async fn one_address_cannot_take_every_connection_while_another_is_served() {
    let site = new_site("max_connections = 50\nmax_connections_per_ip = 5").await;
    let gw = GatewayProcess::start(&site.config);
    // Five connections from one address, each trickling a request head, hold its share.
    let mut hogs = Vec::new();
    for _ in 0..5 {
        let mut stream = connect_from("127.0.0.1", gw.proxy).await;
        stream.write_all(b"POST /api/x HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        hogs.push(stream);
    }
    eventually("the hogs are in the table", || async { readyz(&gw).await.1["connections_open"] == 5 }).await;
    // The sixth from that address is closed at once, without an answer.
    let mut sixth = connect_from("127.0.0.1", gw.proxy).await;
    let _ = sixth.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), sixth.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the sixth connection was neither served nor closed");
    assert!(answer.is_empty(), "the sixth connection was served: {}", String::from_utf8_lossy(&answer));
    // Another address is served meanwhile.
    let mut other = connect_from("127.0.0.2", gw.proxy).await;
    other.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), other.read_to_end(&mut answer)).await.unwrap().unwrap();
    assert_eq!(status(&String::from_utf8_lossy(&answer)), 200);
    let metrics = gw.metrics().await;
    assert!(metrics.contains("tokengate_connections_refused_per_ip_total 1"), "{metrics}");
    // A hog that leaves gives its place back.
    drop(hogs.pop());
    eventually("a place is free again", || async {
        let mut stream = connect_from("127.0.0.1", gw.proxy).await;
        let _ = stream.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200")
    })
    .await;
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_an_unread_response_is_cut_within_their_timeouts() {
    let site = new_site("client_body_timeout = \"1s\"\nsend_timeout = \"1s\"").await;
    let gw = GatewayProcess::start(&site.config);
    // One byte of ten, then nothing: 408 after about a second.
    let mut stream = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    let started = std::time::Instant::now();
    stream.write_all(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nx").await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert_eq!(status(&answer), 408, "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    drop(stream);
    eventually("the stalled connection is gone", || async { readyz(&gw).await.1["connections_open"] == 0 }).await;

    // A client that asks for a large response and never reads it: its connection is closed.
    let mut greedy = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    greedy.write_all(b"GET /echo/stream?bytes=2000000000 HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    eventually("the greedy connection is open", || async { readyz(&gw).await.1["connections_open"] == 1 }).await;
    let started = std::time::Instant::now();
    eventually("the unread response is cut", || async { readyz(&gw).await.1["connections_open"] == 0 }).await;
    assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
    drop(greedy);
}

#[tokio::test]
async fn readyz_says_not_ready_while_the_connection_table_is_full() {
    let site = new_site("max_connections = 2").await;
    let gw = GatewayProcess::start(&site.config);
    assert_eq!(readyz(&gw).await.0, 200);
    let idle = [
        tokio::net::TcpStream::connect(gw.proxy).await.unwrap(),
        tokio::net::TcpStream::connect(gw.proxy).await.unwrap(),
    ];
    eventually("the table is full", || async { readyz(&gw).await.0 == 503 }).await;
    let (_, report) = readyz(&gw).await;
    assert_eq!((report["connections_open"].as_u64(), report["connections_max"].as_u64()), (Some(2), Some(2)));
    drop(idle);
    eventually("ready again once they close", || async { readyz(&gw).await.0 == 200 }).await;
}
