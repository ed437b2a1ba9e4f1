//! The proxy's HTTP behaviour (docs/reference.md "The proxy"), through a real gateway, real sockets
//! and the real echo upstream.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use reqwest::StatusCode;
use serde_json::Value;
use tokengate::clock::Clock;
use tokengate::control::service::{Actor, ExpiryRequest};
use tokengate::control::store::AccountChanges;

use crate::support::{TestGateway, client};

const ANN: &str = "ann@example.com";

/// GETs `path` with Basic credentials; returns the status, headers and body.
async fn get(
    gw: &TestGateway,
    path: &str,
    email: &str,
    secret: &str,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let response = client().get(gw.url(path)).basic_auth(email, Some(secret)).send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

/// The echo upstream's report of what it received.
fn echoed(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not the echo's JSON ({e}): {body}"))
}

#[tokio::test]
async fn authorised_requests_reach_the_upstream_with_identity_and_forwarding_headers() {
    let gw = TestGateway::spawn().await;
    gw.account(ANN).await;
    let (id, secret) = gw.token(ANN, "ci", &[]).await;

    let (status, headers, body) = get(&gw, "/orders/7?expand=items", ANN, &secret).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let echo = echoed(&body);
    assert_eq!(echo["path"], "/orders/7");
    assert_eq!(echo["query"], "expand=items");
    let h = &echo["headers"];
    assert_eq!(h["x-auth-user"], ANN);
    assert_eq!(h["x-auth-token-id"], id.to_string());
    assert_eq!(h["x-auth-token-name"], "ci");
    assert_eq!(h["x-auth-scopes"], "read write");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], gw.proxy.to_string());
    assert_eq!(h["host"], gw.upstream.addr.to_string());
    assert!(h.get("authorization").is_none(), "the client's credentials must not reach the upstream");
    let expires = headers.get("x-auth-token-expires").expect("authorised responses carry the expiry");
    let token = gw.service.token(id).await.unwrap();
    assert_eq!(expires.to_str().unwrap(), tokengate::clock::to_rfc3339(token.expires_at.unwrap()));
}

#[tokio::test]
async fn every_refusal_is_the_same_401_with_a_challenge() {
    let gw = TestGateway::spawn().await;
    gw.account(ANN).await;
    gw.account("bob@example.com").await;
    let (_, secret) = gw.token(ANN, "ci", &[]).await;
    let (revoked_id, revoked) = gw.token(ANN, "old", &[]).await;
    gw.service.revoke_token(revoked_id, &Actor::cli()).await.unwrap();

    let no_credentials = client().get(gw.url("/x")).send().await.unwrap();
    assert_eq!(no_credentials.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(no_credentials.headers()["www-authenticate"], "Basic realm=\"tokengate\", charset=\"UTF-8\"");
    let reference = no_credentials.text().await.unwrap();

    let cases = [
        ("wrong email", "bob@example.com", secret.as_str()),
        ("unknown token", ANN, "tg_not-a-real-token"),
        ("revoked token", ANN, revoked.as_str()),
    ];
    for (what, email, secret) in cases {
        let (status, headers, body) = get(&gw, "/x", email, secret).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(headers["www-authenticate"], "Basic realm=\"tokengate\", charset=\"UTF-8\"", "{what}");
        assert_eq!(body, reference, "{what}: the body must not reveal the reason");
    }
    // The owner's email matches without regard to case.
    let (status, _, _) = get(&gw, "/x", "ANN@Example.COM", &secret).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn disabled_accounts_and_accounts_without_the_permission_are_refused_until_restored() {
    let gw = TestGateway::spawn().await;
    gw.account(ANN).await;
    let (_, secret) = gw.token(ANN, "ci", &[]).await;
    let actor = Actor::cli();
    assert_eq!(get(&gw, "/x", ANN, &secret).await.0, StatusCode::OK);

    let disable = AccountChanges { enabled: Some(false), ..AccountChanges::default() };
    gw.service.update_account(ANN, disable, &actor).await.unwrap();
    assert_eq!(get(&gw, "/x", ANN, &secret).await.0, StatusCode::UNAUTHORIZED);

    let enable = AccountChanges { enabled: Some(true), can_create_tokens: Some(false), ..AccountChanges::default() };
    gw.service.update_account(ANN, enable, &actor).await.unwrap();
    assert_eq!(get(&gw, "/x", ANN, &secret).await.0, StatusCode::UNAUTHORIZED);

    let restore = AccountChanges { can_create_tokens: Some(true), ..AccountChanges::default() };
    gw.service.update_account(ANN, restore, &actor).await.unwrap();
    assert_eq!(get(&gw, "/x", ANN, &secret).await.0, StatusCode::OK, "blocking keeps the token");
}

#[tokio::test]
async fn expired_tokens_are_refused_as_the_clock_passes_their_expiry() {
    let clock = Clock::manual(1_800_000_000);
    let gw = TestGateway::spawn_with("", &[], clock.clone()).await;
    gw.account(ANN).await;
    let (_, secret) = gw.token_with(ANN, "short", &[], ExpiryRequest::In(Duration::from_secs(3600))).await;
    assert_eq!(get(&gw, "/x", ANN, &secret).await.0, StatusCode::OK);
    clock.advance(3599);
    assert_eq!(get(&gw, "/x", ANN, &secret).await.0, StatusCode::OK);
    clock.advance(1);
    assert_eq!(get(&gw, "/x", ANN, &secret).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_missing_scope_is_403_naming_it_and_the_upstream_is_not_called() {
    let gw = TestGateway::spawn().await;
    gw.account(ANN).await;
    let (_, read_only) = gw.token(ANN, "reader", &["read"]).await;
    assert_eq!(get(&gw, "/items", ANN, &read_only).await.0, StatusCode::OK);

    let response = client().post(gw.url("/items")).basic_auth(ANN, Some(&read_only)).body("x").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get("x-echo").is_none(), "the upstream must not answer a forbidden request");
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["error"]["missing_scope"], "write");

    let (_, all) = gw.token(ANN, "everything", &["*"]).await;
    let response = client().post(gw.url("/items")).basic_auth(ANN, Some(&all)).body("x").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn hop_by_hop_and_spoofed_identity_headers_are_dropped() {
    let gw = TestGateway::spawn().await;
    gw.account(ANN).await;
    let (_, secret) = gw.token(ANN, "ci", &[]).await;
    let send = |path: &str| {
        client()
            .get(gw.url(path))
            .header("Connection", "keep-alive, X-Private-Hop")
            .header("X-Private-Hop", "secret-hop")
            .header("Keep-Alive", "timeout=5")
            .header("Proxy-Authorization", "Basic Zm9vOmJhcg==")
            .header("TE", "trailers")
            .header("X-Auth-User", "mallory@example.com")
            .header("X-Auth-Token-Id", "999")
            .header("X-Auth-Scopes", "admin")
            .header("X-Forwarded-For", "6.6.6.6")
            .header("X_Auth_User", "mallory@example.com")
            .header("X_Forwarded_For", "6.6.6.6")
            .header("Forwarded", "for=6.6.6.6;host=evil.example")
            .header("X-Real-IP", "6.6.6.6")
            .header("X-HTTP-Method-Override", "DELETE")
            .header("X-Original-URL", "/admin")
    };
    let body = send("/x").basic_auth(ANN, Some(&secret)).send().await.unwrap().text().await.unwrap();
    let h = &echoed(&body)["headers"];
    for name in [
        "connection",
        "x-private-hop",
        "keep-alive",
        "proxy-authorization",
        "te",
        "x_auth_user",
        "x_forwarded_for",
        "forwarded",
        "x-real-ip",
        "x-http-method-override",
        "x-original-url",
    ] {
        assert!(h.get(name).is_none(), "{name} must not be forwarded: {h}");
    }
    assert_eq!(h["x-auth-user"], ANN);
    assert_ne!(h["x-auth-token-id"], "999");
    assert_eq!(h["x-auth-scopes"], "read write");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "an untrusted client cannot extend X-Forwarded-For");

    // On a public route too: no credentials needed, and no identity headers survive.
    let response = send("/public/page").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let h = &echoed(&response.text().await.unwrap())["headers"];
    for name in ["x-auth-user", "x-auth-token-id", "x-auth-scopes", "x-auth-token-name"] {
        assert!(h.get(name).is_none(), "{name} must be dropped on public routes: {h}");
    }
}

#[tokio::test]
async fn routes_keep_authorization_and_strip_prefixes_when_told() {
    let gw = TestGateway::spawn().await;
    gw.account(ANN).await;
    let (_, secret) = gw.token(ANN, "ci", &[]).await;
    let (status, _, body) = get(&gw, "/kept/a", ANN, &secret).await;
    assert_eq!(status, StatusCode::OK);
    assert!(echoed(&body)["headers"]["authorization"].as_str().unwrap().starts_with("Basic "));
    let (_, _, body) = get(&gw, "/strip/a/b?q=1", ANN, &secret).await;
    assert_eq!(echoed(&body)["path"], "/base/a/b");
    assert_eq!(echoed(&body)["query"], "q=1");
}

#[tokio::test]
async fn unreachable_and_slow_upstreams_give_502_and_504() {
    let gw = TestGateway::spawn().await;
    gw.account(ANN).await;
    let (_, secret) = gw.token(ANN, "ci", &[]).await;
    let (status, _, body) = get(&gw, "/dead/x", ANN, &secret).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let started = std::time::Instant::now();
    let (status, _, _) = get(&gw, "/slow?ms=3000", ANN, &secret).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(2), "the 500 ms upstream timeout applies");
}

#[tokio::test]
async fn paths_that_servers_resolve_differently_are_refused_before_routing() {
    let gw = TestGateway::spawn().await;
    for path in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/..%2fadmin",
        "/public/..;/admin",
        "/public;x/../admin",
        "/public%2Fpage",
        "//public/page",
        "/public\\..\\admin",
    ] {
        let mut stream = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 400"), "{path}: {response}");
    }
    // Escaped ordinary characters are decoded before routing, and forwarded decoded.
    let response = client().get(gw.url("/%70ublic/p%61ge")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "routed to the public route");
    assert_eq!(echoed(&response.text().await.unwrap())["path"], "/public/page");
}

#[tokio::test]
async fn a_revoked_token_is_refused_on_the_next_request_of_an_open_connection() {
    let gw = TestGateway::spawn().await;
    gw.account(ANN).await;
    let (id, secret) = gw.token(ANN, "ci", &[]).await;
    let stream = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let credentials = format!("Basic {}", base64_encode(&format!("{ANN}:{secret}")));
    let request = || {
        http::Request::get("/x")
            .header("host", "gateway")
            .header("authorization", &credentials)
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let first = sender.send_request(request()).await.unwrap();
    assert_eq!(first.status(), 200);
    first.into_body().collect().await.unwrap();

    gw.service.revoke_token(id, &Actor::cli()).await.unwrap();
    let second = sender.send_request(request()).await.unwrap();
    assert_eq!(second.status(), 401, "same connection, next request, refused");
}

fn base64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    let gw = TestGateway::spawn().await;
    gw.account(ANN).await;
    let (_, secret) = gw.token(ANN, "ci", &[]).await;
    let h2 = reqwest::Client::builder().no_proxy().http2_prior_knowledge().build().unwrap();
    let response = h2.get(gw.url("/h2?x=1")).basic_auth(ANN, Some(&secret)).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    let echo = echoed(&response.text().await.unwrap());
    assert_eq!(echo["path"], "/h2");
    assert_eq!(echo["headers"]["x-auth-user"], ANN);
    assert_eq!(echo["headers"]["x-forwarded-host"], gw.proxy.to_string());
}

#[tokio::test]
async fn last_use_is_recorded_by_the_flusher_and_at_shutdown() {
    let gw = TestGateway::spawn().await;
    gw.account(ANN).await;
    let (id, secret) = gw.token(ANN, "ci", &[]).await;
    assert!(gw.service.token(id).await.unwrap().last_used_at.is_none());
    let response = client().delete(gw.url("/things/1?force=true")).basic_auth(ANN, Some(&secret)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let token = loop {
        let token = gw.service.token(id).await.unwrap();
        if token.last_used_at.is_some() {
            break token;
        }
        assert!(std::time::Instant::now() < deadline, "last use not written within 3 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(token.last_used_method.as_deref(), Some("DELETE"));
    assert_eq!(token.last_used_path.as_deref(), Some("/things/1"));
    assert_eq!(token.last_used_ip.as_deref(), Some("127.0.0.1"));

    // A use just before shutdown is written by the final flush.
    let gw2 = TestGateway::spawn_with("", &[("TOKENGATE_USAGE__FLUSH_INTERVAL", "1h")], Clock::System).await;
    gw2.account(ANN).await;
    let (id2, secret2) = gw2.token(ANN, "ci", &[]).await;
    assert_eq!(get(&gw2, "/late", ANN, &secret2).await.0, StatusCode::OK);
    let (store, _dir) = gw2.stop().await;
    let token = store.token_by_id(id2.into()).await.unwrap().unwrap();
    assert_eq!(token.last_used_path.as_deref(), Some("/late"));
}

#[tokio::test]
async fn a_revocation_by_another_writer_reaches_the_index_through_the_change_log() {
    let gw = TestGateway::spawn().await;
    gw.account(ANN).await;
    let (id, secret) = gw.token(ANN, "ci", &[]).await;
    assert_eq!(get(&gw, "/x", ANN, &secret).await.0, StatusCode::OK);

    // A second writer on the same database, like the CLI: it has no index of its own to update.
    let store = tokengate::control::store::Store::open(&gw.config.database.url).await.unwrap();
    let other =
        tokengate::control::service::LifecycleService::new(store, gw.config.tokens.clone(), Clock::System, None);
    let (other_id, other_secret) = {
        let request = tokengate::control::service::CreateToken {
            owner_email: ANN.into(),
            name: "from-elsewhere".into(),
            description: None,
            expiry: ExpiryRequest::Default,
            scopes: vec![],
            rate_limit: None,
        };
        let created = other.create_token(request, &Actor::cli()).await.unwrap();
        (created.token.id, created.secret.expose().to_owned())
    };
    other.revoke_token(id, &Actor::cli()).await.unwrap();
    let revoked_at = std::time::Instant::now();

    // sync.interval is 50 ms in the test config.
    let deadline = revoked_at + Duration::from_secs(2);
    while get(&gw, "/x", ANN, &secret).await.0 == StatusCode::OK {
        assert!(std::time::Instant::now() < deadline, "the revocation never reached the gateway");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = revoked_at.elapsed();
    // Loose bound: the suite runs many tests at once on two cores. The fleet bench measures it.
    assert!(elapsed < Duration::from_millis(50 + 1000), "took {elapsed:?} with a 50 ms interval");
    assert_eq!(get(&gw, "/x", ANN, &other_secret).await.0, StatusCode::OK, "token {other_id} minted elsewhere works");
}

#[tokio::test]
async fn health_and_readiness_answer_on_the_admin_listener() {
    let gw = TestGateway::spawn().await;
    let health = client().get(format!("http://{}/healthz", gw.admin)).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = client().get(format!("http://{}/readyz", gw.admin)).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK, "the index is loaded before the listeners serve");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_chain_is_extended_and_its_client_recorded() {
    let trusted = [("TOKENGATE_PROXY__TRUSTED_PROXIES", "[\"127.0.0.1/32\"]")];
    let gw = TestGateway::spawn_with("", &trusted, Clock::System).await;
    gw.account(ANN).await;
    let (id, secret) = gw.token(ANN, "ci", &[]).await;
    let response = client()
        .get(gw.url("/x"))
        .basic_auth(ANN, Some(&secret))
        .header("X-Forwarded-For", "203.0.113.50, 198.51.100.7")
        .header("X-Forwarded-Proto", "https")
        .send()
        .await
        .unwrap();
    let h = &echoed(&response.text().await.unwrap())["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.50, 198.51.100.7, 127.0.0.1", "the trusted hop is appended");
    assert_eq!(h["x-forwarded-proto"], "https", "a trusted proxy's protocol is kept");
    let started = std::time::Instant::now();
    let token = loop {
        let token = gw.service.token(id).await.unwrap();
        if token.last_used_at.is_some() {
            break token;
        }
        assert!(started.elapsed() < Duration::from_secs(3));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(token.last_used_ip.as_deref(), Some("198.51.100.7"), "the right-most untrusted address");
}
