//! Nobody gets more than they were given, through the real binary: the admin API obeys the
//! reserved scopes, no token or role mints more than it holds, no spelling of a request skips
//! a route's rule (checked against an upstream that records every request head it receives),
//! a rotation hand-over survives `kill -9`, the failed-authentication throttle never refuses
//! valid credentials, and using the admin API is use.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{GatewayProcess, Recorder, client, eventually, run_cli};

const ROOT: &str = "root@example.com";
const MANAGER: &str = "manager@example.com";
const ANN: &str = "ann@example.com";
const BOB: &str = "bob@example.com";

/// A database and config with accounts for every role, in front of `upstream`.
struct Site {
    _dir: TempDir,
    config: PathBuf,
}

impl Site {
    fn new(upstream: SocketAddr, extra: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("tokengate.toml");
        let text = format!(
            r#"
[proxy]
listen = "127.0.0.1:0"
strip_request_headers = ["X-Tenant"]

[admin]
listen = "127.0.0.1:0"

[database]
url = "sqlite://{db}"

[sync]
interval = "50ms"

[rate_limit]
default = "600/min"
failed_auth = "3/min"

[[routes]]
prefix = "/"
upstream = "http://{upstream}"
require = {{ GET = "read", HEAD = "read", "*" = "write" }}

[[routes]]
prefix = "/adm"
upstream = "http://{upstream}"
require = {{ "*" = "write" }}

[[routes]]
prefix = "/public"
upstream = "http://{upstream}"
public = true
{extra}
"#,
            db = dir.path().join("tokengate.db").display()
        );
        std::fs::write(&config, text).unwrap();
        let site = Site { _dir: dir, config };
        site.cli(&["user", "add", ROOT, "--superuser"]);
        site.cli(&["user", "add", MANAGER, "--token-manager"]);
        site.cli(&["user", "add", ANN]);
        site.cli(&["user", "add", BOB]);
        site
    }

    fn cli(&self, args: &[&str]) -> String {
        let (code, stdout, stderr) = run_cli(&self.config, args);
        assert_eq!(code, 0, "tokengate {args:?}: {stderr}");
        stdout
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.cli(&args)).unwrap()
    }

    /// Mints a token with the CLI (which no scope rule limits): (id, secret).
    fn token(&self, user: &str, name: &str, scopes: &[&str]) -> (i64, String) {
        let mut args = vec!["token", "create", "--user", user, "--name", name];
        for scope in scopes {
            args.extend(["--scope", scope]);
        }
        let created = self.json(&args);
        (created["id"].as_i64().unwrap(), created["token"].as_str().unwrap().to_owned())
    }

    fn start(&self) -> GatewayProcess {
        GatewayProcess::start(&self.config)
    }
}

/// Calls the admin API; returns the status and the JSON body.
async fn api(
    gw: &GatewayProcess,
    method: &str,
    path: &str,
    who: (&str, &str),
    body: Option<Value>,
) -> (StatusCode, Value) {
    gw.admin_call(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), path, who, body).await
}

/// Sends one request exactly as written (method and path spelled as given) and returns the
/// status code of the answer.
async fn raw_request(proxy: SocketAddr, method: &str, path: &str, who: (&str, &str), extra_headers: &str) -> u16 {
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", who.0, who.1));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Basic {credentials}\r\n{extra_headers}Connection: close\r\n\r\n"
    );
    let mut stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status: {answer:?}"))
}

fn code(body: &Value) -> (&str, Option<&str>) {
    (body["error"]["code"].as_str().unwrap_or("-"), body["error"]["missing_scope"].as_str())
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_and_admin_read_tokens_change_nothing_through_the_admin_api() {
    let upstream = Recorder::start().await;
    let site = Site::new(upstream.addr, "");
    let (_, read_only) = site.token(ROOT, "ci read-only", &["read"]);
    let (_, reader) = site.token(ROOT, "dashboard", &["admin:read"]);
    let (ann_id, _) = site.token(ANN, "laptop", &[]);
    let gw = site.start();
    let users_before = site.json(&["user", "list"]).as_array().unwrap().len();
    let tokens_before = site.json(&["token", "list", "--status", "all"]).as_array().unwrap().len();

    let changes: Vec<(&str, String, Value)> = vec![
        ("POST", "/api/v1/users".into(), json!({"email": "eve@example.com", "superuser": true})),
        ("PATCH", format!("/api/v1/users/{ANN}"), json!({"superuser": true})),
        ("POST", "/api/v1/tokens".into(), json!({"name": "more", "scopes": ["read"]})),
        ("PATCH", format!("/api/v1/tokens/{ann_id}"), json!({"rate_limit": "1/s"})),
        ("POST", format!("/api/v1/tokens/{ann_id}/rotate"), json!({})),
        ("DELETE", format!("/api/v1/tokens/{ann_id}"), json!({})),
        ("POST", format!("/api/v1/users/{ANN}/tokens/revoke-all"), json!({})),
    ];
    for secret in [&read_only, &reader] {
        for (method, path, body) in &changes {
            let (status, answer) = api(&gw, method, path, (ROOT, secret), Some(body.clone())).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
            assert_eq!(code(&answer), ("insufficient_scope", Some("admin")), "{method} {path}: {answer}");
        }
    }
    // Reading needs admin:read (or admin): a proxy-only token may not even read.
    for path in ["/api/v1/me", "/api/v1/tokens", "/api/v1/users", "/api/v1/events", "/api/v1/policy"] {
        let (status, answer) = api(&gw, "GET", path, (ROOT, &read_only), None).await;
        assert_eq!((status, code(&answer)), (StatusCode::FORBIDDEN, ("insufficient_scope", Some("admin:read"))));
        let (status, answer) = api(&gw, "GET", path, (ROOT, &reader), None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
    }
    let (_, policy) = api(&gw, "GET", "/api/v1/policy", (ROOT, &reader), None).await;
    let reserved: Vec<&str> =
        policy["reserved_scopes"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(reserved, ["admin", "admin:read"]);
    // admin:read is no proxy scope.
    let proxied = client().get(gw.url("/orders")).basic_auth(ROOT, Some(&reader)).send().await.unwrap();
    assert_eq!(proxied.status(), StatusCode::FORBIDDEN);
    let body: Value = serde_json::from_str(&proxied.text().await.unwrap()).unwrap();
    assert_eq!(code(&body), ("insufficient_scope", Some("read")));

    // Nothing changed.
    assert_eq!(site.json(&["user", "list"]).as_array().unwrap().len(), users_before);
    assert_eq!(site.json(&["token", "list", "--status", "all"]).as_array().unwrap().len(), tokens_before);
    let ann = site.json(&["token", "show", &ann_id.to_string()]);
    assert_eq!((ann["status"].as_str(), ann["rate_limit"].as_str()), (Some("active"), None));
    assert!(upstream.heads().is_empty(), "the proxy refusal never reached the upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_account_or_token_mints_more_than_it_holds() {
    let upstream = Recorder::start().await;
    let site = Site::new(upstream.addr, "");
    let (root_token_id, _) = site.token(ROOT, "root-admin", &["*"]);
    let (_, manager) = site.token(MANAGER, "manager-admin", &["*"]);
    let (_, ann) = site.token(ANN, "ann-admin", &["read", "admin"]);
    let (ann_rw_id, _) = site.token(ANN, "ann-rw", &["read", "write"]);
    let (bob_id, _) = site.token(BOB, "bob", &[]);
    let gw = site.start();
    let manager = (MANAGER, manager.as_str());
    let ann = (ANN, ann.as_str());

    // A manager never mints or rotates a superuser's token.
    let (status, answer) =
        api(&gw, "POST", "/api/v1/tokens", manager, Some(json!({"name": "mine now", "user": ROOT, "scopes": ["*"]})))
            .await;
    assert_eq!((status, code(&answer).0), (StatusCode::FORBIDDEN, "forbidden"), "{answer}");
    let (status, _) = api(&gw, "POST", &format!("/api/v1/tokens/{root_token_id}/rotate"), manager, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // ... and keeps handling every other account's.
    let (status, made) =
        api(&gw, "POST", "/api/v1/tokens", manager, Some(json!({"name": "for bob", "user": BOB}))).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let (status, _) = api(&gw, "POST", &format!("/api/v1/tokens/{bob_id}/rotate"), manager, None).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) =
        api(&gw, "PATCH", &format!("/api/v1/tokens/{ann_rw_id}"), manager, Some(json!({"rate_limit": "6000/min"})))
            .await;
    assert_eq!(status, StatusCode::OK, "a manager may raise a limit");

    // A token passes on only the scopes it carries; the defaults (read, write) included.
    for (scopes, missing) in
        [(json!(["write"]), "write"), (json!(["*"]), "*"), (json!(["read", "admin:read", "write"]), "write")]
    {
        let (status, answer) =
            api(&gw, "POST", "/api/v1/tokens", ann, Some(json!({"name": "wider", "scopes": scopes}))).await;
        assert_eq!((status, code(&answer)), (StatusCode::FORBIDDEN, ("insufficient_scope", Some(missing))), "{answer}");
    }
    let (status, answer) = api(&gw, "POST", "/api/v1/tokens", ann, Some(json!({"name": "defaults"}))).await;
    assert_eq!((status, code(&answer)), (StatusCode::FORBIDDEN, ("insufficient_scope", Some("write"))));
    let (status, narrower) =
        api(&gw, "POST", "/api/v1/tokens", ann, Some(json!({"name": "narrower", "scopes": ["read", "admin:read"]})))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{narrower}");
    let (status, answer) = api(&gw, "POST", &format!("/api/v1/tokens/{ann_rw_id}/rotate"), ann, None).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::FORBIDDEN, ("insufficient_scope", Some("write"))),
        "rotation gives the secret"
    );
    // The CLI on the host is not limited by any of this.
    site.token(ROOT, "from the host", &["*"]);

    // A plain account may not raise its own budget above rate_limit.default (600/min).
    let (status, answer) = api(
        &gw,
        "POST",
        "/api/v1/tokens",
        ann,
        Some(json!({"name": "greedy", "scopes": ["read"], "rate_limit": "20/s"})),
    )
    .await;
    assert_eq!((status, code(&answer).0), (StatusCode::FORBIDDEN, "forbidden"), "{answer}");
    let narrower_id = narrower["id"].as_i64().unwrap();
    let (status, _) = api(
        &gw,
        "PATCH",
        &format!("/api/v1/tokens/{narrower_id}"),
        ann,
        Some(json!({"rate_limit": "10/s burst 1000"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, limited) =
        api(&gw, "PATCH", &format!("/api/v1/tokens/{narrower_id}"), ann, Some(json!({"rate_limit": "100/min"}))).await;
    assert_eq!((status, limited["rate_limit"].as_str()), (StatusCode::OK, Some("100/min")));
    // `null` clears it (serde would read it as "absent").
    let (status, cleared) =
        api(&gw, "PATCH", &format!("/api/v1/tokens/{narrower_id}"), ann, Some(json!({"rate_limit": null}))).await;
    assert_eq!((status, &cleared["rate_limit"]), (StatusCode::OK, &Value::Null), "{cleared}");
    let (status, _) = api(&gw, "PATCH", &format!("/api/v1/tokens/{narrower_id}"), ann, Some(json!({}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a PATCH must say what it changes");

    // Another account's token answers exactly like a missing one.
    let missing = 999_999;
    for (method, suffix) in [("GET", ""), ("DELETE", ""), ("PATCH", ""), ("POST", "/rotate")] {
        let body = (method == "PATCH").then(|| json!({"rate_limit": null}));
        let (status, theirs) = api(&gw, method, &format!("/api/v1/tokens/{bob_id}{suffix}"), ann, body.clone()).await;
        let (missing_status, nothing) = api(&gw, method, &format!("/api/v1/tokens/{missing}{suffix}"), ann, body).await;
        assert_eq!((status, missing_status), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND), "{method}{suffix}");
        let theirs = theirs.to_string().replace(&bob_id.to_string(), "ID");
        let nothing = nothing.to_string().replace(&missing.to_string(), "ID");
        assert_eq!(theirs, nothing, "{method}{suffix}: the same answer");
    }
    assert_eq!(site.json(&["token", "show", &bob_id.to_string()])["status"], "revoked", "rotated by the manager");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_spelling_of_a_request_skips_a_routes_rule() {
    let upstream = Recorder::start().await;
    let site = Site::new(upstream.addr, "");
    let (_, reader) = site.token(ANN, "reader", &["read"]);
    let gw = site.start();
    let ann = (ANN, reader.as_str());

    // The same request in its proper spelling reaches the upstream: the probes below are real.
    assert_eq!(raw_request(gw.proxy, "GET", "/orders", ann, "").await, 200);
    assert_eq!(raw_request(gw.proxy, "DELETE", "/orders/1", ann, "").await, 403, "read-only may not DELETE");
    assert_eq!(upstream.heads().len(), 1);

    for method in ["delete", "Delete", "get"] {
        assert_eq!(raw_request(gw.proxy, method, "/orders/1", ann, "").await, 400, "{method}");
    }
    // `%2561dm` is `/adm` to an upstream that decodes twice; `..%253b` is `..;` (found by fuzzing).
    for path in [
        "/ADM/x",
        "/Adm",
        "/adm./x",
        "/adm%20/x",
        "/adm/x.",
        "/a%252e%252e/adm",
        "/a%252Fadm",
        "/a%255cadm",
        "/%2561dm/x",
        "/orders/..%253b/adm",
    ] {
        assert_eq!(raw_request(gw.proxy, "GET", path, ann, "").await, 400, "{path}");
    }
    assert_eq!(upstream.heads().len(), 1, "nothing else reached the upstream: {:?}", upstream.heads());

    // Client-chosen identity headers never reach the upstream, on public routes either.
    let spoofed = [
        "X-Auth-Email: root@example.com",
        "X-Auth-Roles: superuser",
        "X-Auth-User-Id: 1",
        "X-Auth-Request-User: root",
        "X_Auth_User: root@example.com",
        "Remote-User: root",
        "X-Remote-User: root",
        "X-Forwarded-User: root",
        "True-Client-IP: 10.0.0.1",
        "X-Tenant: other",
    ];
    let headers: String = spoofed.iter().map(|h| format!("{h}\r\nX-Benign: kept\r\n")).collect();
    for path in ["/public/x", "/orders"] {
        assert_eq!(raw_request(gw.proxy, "GET", path, ann, &headers).await, 200, "{path}");
        let head = upstream.heads().last().unwrap().to_ascii_lowercase();
        for header in spoofed {
            let name = header.split(':').next().unwrap().to_ascii_lowercase();
            assert!(!head.contains(&format!("\r\n{name}:")), "{name} reached the upstream on {path}: {head}");
        }
        assert!(head.contains("x-benign: kept"), "other headers pass: {head}");
    }
    let last = upstream.heads().last().unwrap().to_ascii_lowercase();
    assert!(last.contains("x-auth-user: ann@example.com"), "the gateway's own identity header: {last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_hand_over_survives_kill_9() {
    let upstream = Recorder::start().await;
    // Last use is flushed only hourly here: the hand-over must not wait for it.
    let site = Site::new(upstream.addr, "\n[usage]\nflush_interval = \"1h\"\n");
    let (old_id, old) = site.token(ANN, "deploy", &[]);
    let rotated = site.json(&["token", "rotate", &old_id.to_string(), "--until-first-use"]);
    let new = rotated["token"].as_str().unwrap().to_owned();
    let gw = site.start();
    let get = |secret: String| {
        let url = gw.url("/orders");
        async move { client().get(url).basic_auth(ANN, Some(secret)).send().await.unwrap().status() }
    };
    assert_eq!(get(old.clone()).await, StatusCode::OK, "the old token works until the successor's first use");
    assert_eq!(get(new.clone()).await, StatusCode::OK);
    gw.kill_now();

    let gw = site.start();
    let get = |secret: String| {
        let url = gw.url("/orders");
        async move { client().get(url).basic_auth(ANN, Some(secret)).send().await.unwrap().status() }
    };
    assert_eq!(get(old).await, StatusCode::UNAUTHORIZED, "the hand-over was written before the answer");
    assert_eq!(get(new).await, StatusCode::OK);
    let shown = site.json(&["token", "show", &old_id.to_string()]);
    assert_eq!((shown["status"].as_str(), shown["revoke_reason"].as_str()), (Some("revoked"), Some("rotation")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_address_still_serves_valid_credentials_on_both_listeners() {
    let upstream = Recorder::start().await;
    let site = Site::new(upstream.addr, "");
    let (_, secret) = site.token(ANN, "laptop", &["read", "admin"]);
    let gw = site.start();
    let proxy = gw.proxy;
    let proxied = |secret: &str| {
        let secret = secret.to_owned();
        async move { raw_request(proxy, "GET", "/orders", (ANN, &secret), "").await }
    };
    for _ in 0..3 {
        assert_eq!(proxied("tg_guess").await, 401);
    }
    for _ in 0..5 {
        assert_eq!(proxied("tg_guess").await, 429, "failures past the limit are throttled");
    }
    assert_eq!(proxied(&secret).await, 200, "valid credentials from the throttled address are served");
    let (status, _) = api(&gw, "GET", "/api/v1/me", (ANN, &secret), None).await;
    assert_eq!(status, StatusCode::OK, "on the admin API too");
    let (status, _) = api(&gw, "GET", "/api/v1/me", (ANN, "tg_guess"), None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "failures on the admin API are throttled too");
    let (_, lines) = gw.terminate();
    let reports = lines.iter().filter(|l| l.contains("too many failed authentications")).count();
    assert_eq!(reports, 1, "one log line per throttled address per window, not per request");
}

#[tokio::test(flavor = "multi_thread")]
async fn using_the_admin_api_is_use() {
    let upstream = Recorder::start().await;
    let site = Site::new(upstream.addr, "\n[usage]\nflush_interval = \"100ms\"\n");
    let (id, secret) = site.token(ANN, "web page only", &["admin"]);
    let gw = site.start();
    let (status, _) = api(&gw, "GET", "/api/v1/tokens", (ANN, &secret), None).await;
    assert_eq!(status, StatusCode::OK);
    let mut shown = Value::Null;
    eventually("the admin call to be recorded as last use", || {
        shown = site.json(&["token", "show", &id.to_string()]);
        let used = !shown["last_used_at"].is_null();
        async move { used }
    })
    .await;
    assert_eq!(shown["last_used_method"], "GET");
    assert_eq!(shown["last_used_path"], "/api/v1/tokens");
    assert_eq!(shown["last_used_ip"], "127.0.0.1");
    drop(gw);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_spelling_of_a_method_gets_past_the_admin_scope() {
    let upstream = Recorder::start().await;
    let site = Site::new(upstream.addr, "");
    let (_, reader) = site.token(ROOT, "dashboard", &["admin:read"]);
    let (ann_id, _) = site.token(ANN, "laptop", &[]);
    let gw = site.start();
    let path = format!("/api/v1/tokens/{ann_id}");
    // A read-only admin token under other spellings of a change: refused, whatever the answer.
    for method in ["delete", "Delete", "DELETE", "patch", "POST"] {
        let status = raw_request(gw.admin, method, &path, (ROOT, &reader), "").await;
        assert!(matches!(status, 403 | 405), "{method}: {status}");
    }
    // HEAD reads: admin:read suffices, and nothing changes either way.
    assert_eq!(raw_request(gw.admin, "HEAD", &path, (ROOT, &reader), "").await, 200);
    let ann = site.json(&["token", "show", &ann_id.to_string()]);
    assert_eq!(ann["status"], "active", "nothing was revoked");
}
