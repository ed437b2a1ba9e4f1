//! Forward-auth through the real binary: a trusted proxy asks `forward_auth.path` about a
//! request it will forward itself (Traefik/Caddy's `X-Forwarded-*` headers and nginx's
//! `X-Original-*`), and gets 200 with the identity headers, 401, 403 or 429 as the request would
//! have got through tokengate; last use, rate limits and refused uses behave alike; untrusted
//! callers get 403.

use std::path::PathBuf;

use reqwest::header::HeaderMap;
use serde_json::Value;
use tempfile::TempDir;

use crate::support::{GatewayProcess, Upstream, client, eventually, run_cli};

const ANN: &str = "ann@example.com";
const CHECK: &str = "/_tokengate/auth";

struct Setup {
    _dir: TempDir,
    _upstream: Upstream,
    config: PathBuf,
}

/// A config with forward-auth on (unless `check` is `None`), `trusted` proxies, a route `/api`
/// (GET needs `read`, other methods `write`) and a public `/public`; no route for other paths.
async fn setup(check: Option<&str>, trusted: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start().await;
    let forward_auth = check.map(|path| format!("[forward_auth]\npath = \"{path}\"\n")).unwrap_or_default();
    let text = format!(
        r#"
[proxy]
listen = "127.0.0.1:0"
trusted_proxies = [{trusted}]

[admin]
listen = "127.0.0.1:0"

[database]
url = "sqlite://{db}"

[usage]
flush_interval = "100ms"

{forward_auth}
[[routes]]
prefix = "/api"
upstream = "http://{upstream}"
require = {{ GET = "read", "*" = "write" }}

[[routes]]
prefix = "/public"
upstream = "http://{upstream}"
public = true
"#,
        db = dir.path().join("tokengate.db").display(),
        upstream = upstream.addr,
    );
    let config = dir.path().join("tokengate.toml");
    std::fs::write(&config, text).unwrap();
    let (code, _, stderr) = run_cli(&config, &["user", "add", ANN]);
    assert_eq!(code, 0, "{stderr}");
    Setup { _dir: dir, _upstream: upstream, config }
}

fn cli_json(setup: &Setup, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (code, stdout, stderr) = run_cli(&setup.config, &all);
    assert_eq!(code, 0, "{args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn token(setup: &Setup, name: &str, scopes: &[&str]) -> (i64, String) {
    let mut args = vec!["token", "create", "--user", ANN, "--name", name];
    for scope in scopes {
        args.extend(["--scope", scope]);
    }
    let created = cli_json(setup, &args);
    (created["id"].as_i64().unwrap(), created["token"].as_str().unwrap().to_owned())
}

/// Asks the check about `method uri` with `headers` (name, value) and optional credentials.
async fn ask(gateway: &GatewayProcess, headers: &[(&str, &str)], secret: Option<&str>) -> (u16, HeaderMap) {
    let mut request = client().get(gateway.url(CHECK));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(secret) = secret {
        request = request.basic_auth(ANN, Some(secret));
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.headers().clone())
}

fn traefik<'a>(method: &'a str, uri: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("x-forwarded-method", method), ("x-forwarded-uri", uri), ("x-forwarded-for", "203.0.113.9")]
}

fn nginx<'a>(method: &'a str, uri: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("x-original-method", method), ("x-original-uri", uri), ("x-forwarded-for", "198.51.100.4")]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxy_gets_the_decision_a_proxied_request_would_get() {
    let setup = setup(Some(CHECK), r#""127.0.0.1/32""#).await;
    let (reader_id, reader) = token(&setup, "reader", &["read"]);
    let (_, plain) = token(&setup, "plain", &[]);
    let (dead_id, dead) = token(&setup, "dead", &["read"]);
    let (_, slow) = token(&setup, "slow", &["read"]);
    let gateway = GatewayProcess::start(&setup.config);
    let (code, _, stderr) = run_cli(&setup.config, &["token", "revoke", &dead_id.to_string()]);
    assert_eq!(code, 0, "{stderr}");
    let slow_id =
        cli_json(&setup, &["token", "list"]).as_array().unwrap().iter().find(|t| t["name"] == "slow").unwrap()["id"]
            .as_i64()
            .unwrap();
    let (code, _, stderr) = run_cli(&setup.config, &["token", "set-limit", &slow_id.to_string(), "1/min"]);
    assert_eq!(code, 0, "{stderr}");

    // Traefik's headers: admitted, with the identity for the proxy to pass on.
    let (status, headers) = ask(&gateway, &traefik("GET", "/api/orders/1?page=2"), Some(&reader)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-auth-user"], ANN);
    assert_eq!(headers["x-auth-token-id"], reader_id.to_string().as_str());
    assert_eq!(headers["x-auth-token-name"], "reader");
    assert_eq!(headers["x-auth-scopes"], "read");
    // The use is the original request's, from the forwarded client address.
    eventually("last use recorded", || async {
        let shown = cli_json(&setup, &["token", "show", &reader_id.to_string()]);
        shown["last_used_path"] == "/api/orders/1" && shown["last_used_method"] == "GET"
    })
    .await;
    let shown = cli_json(&setup, &["token", "show", &reader_id.to_string()]);
    assert_eq!(shown["last_used_ip"], "203.0.113.9");

    // nginx's headers: a POST needs `write`.
    let (status, headers) = ask(&gateway, &nginx("POST", "/api/orders"), Some(&reader)).await;
    assert_eq!(status, 403);
    assert!(headers.get("x-auth-user").is_none());
    // No credentials, and a revoked token: 401 with the challenge.
    let (status, headers) = ask(&gateway, &traefik("GET", "/api/x"), None).await;
    assert_eq!(status, 401);
    assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    assert_eq!(ask(&gateway, &traefik("GET", "/api/x"), Some(&dead)).await.0, 401);
    eventually("refused use counted", || async {
        cli_json(&setup, &["token", "show", &dead_id.to_string()])["refused_count"] == 1
    })
    .await;
    // A public route needs nothing; a path no route matches needs authentication only.
    let (status, headers) = ask(&gateway, &traefik("GET", "/public/page"), None).await;
    assert_eq!(status, 200);
    assert!(headers.get("x-auth-user").is_none());
    assert_eq!(ask(&gateway, &traefik("DELETE", "/elsewhere"), Some(&plain)).await.0, 200);
    assert_eq!(ask(&gateway, &traefik("DELETE", "/elsewhere"), None).await.0, 401);
    // The token's rate limit applies, with its headers.
    let (status, headers) = ask(&gateway, &traefik("GET", "/api/a"), Some(&slow)).await;
    assert_eq!(status, 200);
    assert!(headers.contains_key("ratelimit"), "{headers:?}");
    assert_eq!(ask(&gateway, &traefik("GET", "/api/b"), Some(&slow)).await.0, 429);
    // A proxy that does not say which request it asks about is misconfigured.
    assert_eq!(ask(&gateway, &[("x-forwarded-method", "GET")], Some(&reader)).await.0, 400);
    // Counted in the token's usage like proxied requests.
    tokio::task::spawn_blocking(move || gateway.terminate()).await.unwrap();
    let usage = cli_json(&setup, &["token", "usage", &reader_id.to_string()]);
    let outcomes: Vec<(String, String, i64)> = usage["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["route"].as_str().unwrap().into(),
                r["outcome"].as_str().unwrap().into(),
                r["requests"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(outcomes, [("/api".into(), "2xx".into(), 1), ("/api".into(), "forbidden".into(), 1)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_callers_are_refused_and_without_forward_auth_the_path_is_proxied() {
    let setup = setup(Some(CHECK), r#""10.0.0.0/8""#).await;
    let (_, reader) = token(&setup, "reader", &["read"]);
    let gateway = GatewayProcess::start(&setup.config);
    let (status, headers) = ask(&gateway, &traefik("GET", "/api/orders"), Some(&reader)).await;
    assert_eq!(status, 403);
    assert!(headers.get("x-auth-user").is_none());
    drop(gateway);

    let setup = setup_without_check().await;
    let gateway = GatewayProcess::start(&setup.config);
    // No route matches the check's path when forward-auth is off: a plain 404 from the proxy.
    let (status, _) = ask(&gateway, &traefik("GET", "/api/orders"), None).await;
    assert_eq!(status, 404);
}

async fn setup_without_check() -> Setup {
    setup(None, r#""127.0.0.1/32""#).await
}
