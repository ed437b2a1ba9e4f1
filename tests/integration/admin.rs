//! The admin JSON API on the admin listener: every endpoint, the three roles' boundaries, the
//! bad-input matrix, and revocations that the very next proxied request obeys.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokengate::control::service::{Actor, CreateAccount};
use tokengate::control::store::AccountChanges;

use crate::support::{TestGateway, client};

const ROOT: &str = "root@example.com";
const MANAGER: &str = "manager@example.com";
const ANN: &str = "ann@example.com";
const BOB: &str = "bob@example.com";

/// A gateway with a superuser, a token manager and two ordinary accounts, and a token each.
struct Fixture {
    gw: TestGateway,
    root: String,
    manager: String,
    ann: String,
    bob: String,
}

impl Fixture {
    async fn new() -> Fixture {
        let gw = TestGateway::spawn().await;
        for (email, superuser, token_manager) in
            [(ROOT, true, false), (MANAGER, false, true), (ANN, false, false), (BOB, false, false)]
        {
            let request = CreateAccount {
                email: email.into(),
                superuser,
                token_manager,
                can_create_tokens: true,
                ..Default::default()
            };
            gw.service.create_account(request, &Actor::cli()).await.unwrap();
        }
        let root = gw.token(ROOT, "admin", &["*"]).await.1;
        let manager = gw.token(MANAGER, "admin", &["*"]).await.1;
        // The admin API needs the `admin` scope; the proxy routes need read and write.
        let ann = gw.token(ANN, "laptop", &["read", "write", "admin"]).await.1;
        let bob = gw.token(BOB, "laptop", &["read", "write", "admin"]).await.1;
        Fixture { gw, root, manager, ann, bob }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gw.admin)
    }

    async fn call(&self, method: &str, path: &str, who: (&str, &str), body: Option<Value>) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = client()
            .request(method, self.url(path))
            .basic_auth(who.0, Some(who.1))
            .header("user-agent", "admin-tests/1.0");
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        who: (&str, &str),
        body: &'static str,
    ) -> (StatusCode, Value) {
        let response = client()
            .request(method, self.url(path))
            .basic_auth(who.0, Some(who.1))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null))
    }
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_else(|| panic!("not an API error: {body}"))
}

#[tokio::test]
async fn callers_authenticate_like_on_the_proxy() {
    let f = Fixture::new().await;
    let (status, me) = f.call("GET", "/api/v1/me", (ANN, &f.ann), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["email"], ANN);
    let anonymous = client().get(f.url("/api/v1/me")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    assert_eq!(f.call("GET", "/api/v1/me", (BOB, &f.bob), None).await.1["email"], BOB);
    let (status, body) = f.call("GET", "/api/v1/me", (BOB, &f.ann), None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "unauthorized"), "another account's email");
    // A disabled caller is refused.
    let disable = AccountChanges { enabled: Some(false), ..Default::default() };
    f.gw.service.update_account(ANN, disable, &Actor::cli()).await.unwrap();
    assert_eq!(f.call("GET", "/api/v1/me", (ANN, &f.ann), None).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn owners_manage_their_own_tokens_only() {
    let f = Fixture::new().await;
    let me = (ANN, f.ann.as_str());
    let (status, created) = f
        .call("POST", "/api/v1/tokens", me, Some(json!({"name": "ci", "expires_in": "30d", "scopes": ["read"]})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created["token"].as_str().unwrap().starts_with("tg_"));
    let id = created["id"].as_i64().unwrap();
    let (status, shown) = f.call("GET", &format!("/api/v1/tokens/{id}"), me, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(shown.get("token").is_none(), "the secret is shown once");
    let (_, listed) = f.call("GET", "/api/v1/tokens", me, None).await;
    assert!(listed.as_array().unwrap().iter().all(|t| t["user"] == ANN), "own tokens only: {listed}");

    let (status, _) = f.call("POST", "/api/v1/tokens", me, Some(json!({"name": "x", "user": BOB}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "not for another account");
    let (status, _) = f.call("GET", "/api/v1/tokens?user=bob@example.com", me, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let bobs =
        f.gw.service
            .list_tokens(
                tokengate::control::service::TokenQuery { users: vec![BOB.into()], ..Default::default() },
                &tokengate::control::service::Actor::cli(),
            )
            .await
            .unwrap();
    for (method, path) in
        [("GET", format!("/api/v1/tokens/{}", bobs[0].id)), ("DELETE", format!("/api/v1/tokens/{}", bobs[0].id))]
    {
        assert_eq!(f.call(method, &path, me, None).await.0, StatusCode::NOT_FOUND, "{method} {path}: as if missing");
    }
    assert_eq!(
        f.call("POST", "/api/v1/users/bob@example.com/tokens/revoke-all", me, None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(f.call("GET", "/api/v1/users", me, None).await.0, StatusCode::FORBIDDEN);
    let (_, events) = f.call("GET", "/api/v1/events", me, None).await;
    assert!(events.as_array().unwrap().iter().all(|e| e["account"] == ANN), "own events only");

    let (status, limited) =
        f.call("PATCH", &format!("/api/v1/tokens/{id}"), me, Some(json!({"rate_limit": "10/min"}))).await;
    assert_eq!((status, limited["rate_limit"].as_str()), (StatusCode::OK, Some("10/min")));
    let (status, rotated) =
        f.call("POST", &format!("/api/v1/tokens/{id}/rotate"), me, Some(json!({"grace": "1h"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    assert_eq!(rotated["rotated_from"], id);
    let (status, all) = f.call("POST", "/api/v1/users/ann@example.com/tokens/revoke-all", me, None).await;
    assert_eq!((status, all["revoked"].as_i64()), (StatusCode::OK, Some(3)), "{all}");
}

#[tokio::test]
async fn token_managers_handle_every_token_but_no_account() {
    let f = Fixture::new().await;
    let manager = (MANAGER, f.manager.as_str());
    let (status, created) =
        f.call("POST", "/api/v1/tokens", manager, Some(json!({"name": "for-bob", "user": BOB}))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["user"], BOB);
    assert_eq!(created["created_by"], MANAGER);
    let (_, listed) =
        f.call("GET", "/api/v1/tokens?user=ann@example.com&user=bob@example.com&sort=user", manager, None).await;
    let owners: Vec<&str> = listed.as_array().unwrap().iter().map(|t| t["user"].as_str().unwrap()).collect();
    assert_eq!(owners, [ANN, BOB, BOB]);
    let id = created["id"].as_i64().unwrap();
    assert_eq!(f.call("DELETE", &format!("/api/v1/tokens/{id}"), manager, None).await.0, StatusCode::OK);
    assert_eq!(f.call("GET", "/api/v1/users", manager, None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        f.call("PATCH", "/api/v1/users/ann@example.com", manager, Some(json!({"enabled": false}))).await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn superusers_manage_accounts_and_blocking_takes_effect_at_once() {
    let f = Fixture::new().await;
    let root = (ROOT, f.root.as_str());
    let (status, created) =
        f.call("POST", "/api/v1/users", root, Some(json!({"email": "carol@example.com", "name": "Carol"}))).await;
    assert_eq!((status, created["can_create_tokens"].as_bool()), (StatusCode::CREATED, Some(true)));
    let (status, _) = f.call("POST", "/api/v1/users", root, Some(json!({"email": "CAROL@example.com"}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, users) = f.call("GET", "/api/v1/users", root, None).await;
    assert_eq!(users.as_array().unwrap().len(), 5);

    let proxied = || client().get(f.gw.url("/x")).basic_auth(ANN, Some(&f.ann)).send();
    assert_eq!(proxied().await.unwrap().status(), StatusCode::OK);
    let (status, changed) =
        f.call("PATCH", "/api/v1/users/ann@example.com", root, Some(json!({"can_create_tokens": false}))).await;
    assert_eq!((status, changed["can_create_tokens"].as_bool()), (StatusCode::OK, Some(false)));
    assert_eq!(proxied().await.unwrap().status(), StatusCode::UNAUTHORIZED, "blocked on the very next request");
    f.call("PATCH", "/api/v1/users/ann@example.com", root, Some(json!({"can_create_tokens": true}))).await;
    assert_eq!(proxied().await.unwrap().status(), StatusCode::OK, "restored");
}

#[tokio::test]
async fn a_revocation_through_the_api_is_obeyed_by_the_next_proxied_request() {
    let f = Fixture::new().await;
    let me = (ANN, f.ann.as_str());
    let (_, created) = f.call("POST", "/api/v1/tokens", me, Some(json!({"name": "short-lived"}))).await;
    let secret = created["token"].as_str().unwrap().to_owned();
    let proxied = || client().get(f.gw.url("/x")).basic_auth(ANN, Some(&secret)).send();
    assert_eq!(proxied().await.unwrap().status(), StatusCode::OK);
    let (status, revoked) = f.call("DELETE", &format!("/api/v1/tokens/{}", created["id"]), me, None).await;
    assert_eq!((status, revoked["status"].as_str()), (StatusCode::OK, Some("revoked")));
    assert_eq!(proxied().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let events = f.gw.service.events(Some(ANN), created["id"].as_i64(), 10).await.unwrap();
    let event = events.iter().find(|e| e.kind == "token.revoked").unwrap();
    assert_eq!(event.ip.as_deref(), Some("127.0.0.1"), "the caller's address is audited");
    assert_eq!(event.user_agent.as_deref(), Some("admin-tests/1.0"));
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_never_a_5xx() {
    let f = Fixture::new().await;
    let me = (ANN, f.ann.as_str());
    use reqwest::Method;
    let cases: Vec<(Method, &str, &'static str, StatusCode)> = vec![
        (Method::POST, "/api/v1/tokens", "{not json", StatusCode::BAD_REQUEST),
        (Method::POST, "/api/v1/tokens", r#"{"name": "x", "colour": "red"}"#, StatusCode::UNPROCESSABLE_ENTITY),
        (Method::POST, "/api/v1/tokens", r#"{"name": 42}"#, StatusCode::UNPROCESSABLE_ENTITY),
        (Method::POST, "/api/v1/tokens", r#"{"scopes": ["read"]}"#, StatusCode::UNPROCESSABLE_ENTITY),
        (Method::POST, "/api/v1/tokens", r#"{"name": "x", "expires_in": "2y"}"#, StatusCode::UNPROCESSABLE_ENTITY),
        (Method::POST, "/api/v1/tokens", r#"{"name": "x", "expires_in": "soon"}"#, StatusCode::UNPROCESSABLE_ENTITY),
        (Method::POST, "/api/v1/tokens", r#"{"name": "x", "rate_limit": "lots"}"#, StatusCode::UNPROCESSABLE_ENTITY),
        (Method::POST, "/api/v1/tokens", r#"{"name": "x", "scopes": ["deploy"]}"#, StatusCode::BAD_REQUEST),
        (Method::POST, "/api/v1/tokens", r#"{"name": "laptop"}"#, StatusCode::CONFLICT),
        (
            Method::POST,
            "/api/v1/tokens",
            r#"{"name": "x", "expires_in": "1d", "never_expires": true}"#,
            StatusCode::BAD_REQUEST,
        ),
        (Method::GET, "/api/v1/tokens/abc", "", StatusCode::BAD_REQUEST),
        (Method::GET, "/api/v1/tokens/999999", "", StatusCode::NOT_FOUND),
        (Method::GET, "/api/v1/tokens?colour=red", "", StatusCode::BAD_REQUEST),
        (Method::GET, "/api/v1/tokens?created_after=yesterday", "", StatusCode::BAD_REQUEST),
        (Method::GET, "/api/v1/nothing", "", StatusCode::NOT_FOUND),
    ];
    for (method, path, body, expected) in cases {
        let (status, answer) = f.raw(method.clone(), path, me, body).await;
        assert_eq!(status, expected, "{method} {path} {body}: {answer}");
        assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer}");
        assert!(!answer.to_string().to_lowercase().contains("sqlite"), "no database text: {answer}");
    }
    let huge = format!(r#"{{"name": "{}"}}"#, "x".repeat(100_000));
    let response = client()
        .post(f.url("/api/v1/tokens"))
        .basic_auth(ANN, Some(&f.ann))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn metrics_count_outcomes_without_per_token_labels() {
    let f = Fixture::new().await;
    let proxied = |secret: &str| client().get(f.gw.url("/x")).basic_auth(ANN, Some(secret.to_owned())).send();
    assert_eq!(proxied(&f.ann).await.unwrap().status(), StatusCode::OK);
    assert_eq!(proxied("tg_unknown").await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let forbidden = client().post(f.gw.url("/public/x")).send().await.unwrap();
    assert_eq!(forbidden.status(), StatusCode::OK, "public routes are counted too");
    let response = client().get(f.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    for expected in [
        r#"tokengate_requests_total{route="/",status="200",outcome="authorised"} 1"#,
        r#"tokengate_requests_total{route="/",status="401",outcome="unauthenticated"} 1"#,
        r#"tokengate_requests_total{route="/public",status="200",outcome="public"} 1"#,
        r#"tokengate_auth_failures_total{reason="unknown_token"} 1"#,
        "tokengate_index_tokens 4",
        "tokengate_sync_lag_seconds",
        "tokengate_upstream_duration_seconds_bucket",
        "tokengate_request_duration_seconds_count 3",
        "tokengate_notification_backlog",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    assert!(!text.contains(ANN) && !text.contains("laptop"), "no per-account or per-token labels");
}

#[tokio::test]
async fn the_last_enabled_superuser_cannot_be_demoted_or_disabled() {
    let f = Fixture::new().await;
    let root = (ROOT, f.root.as_str());
    for change in [json!({"superuser": false}), json!({"enabled": false})] {
        let (status, body) = f.call("PATCH", "/api/v1/users/root@example.com", root, Some(change)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("last enabled superuser"), "{body}");
    }
    // With a second superuser, the first may step down.
    let (status, _) = f.call("PATCH", "/api/v1/users/ann@example.com", root, Some(json!({"superuser": true}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) =
        f.call("PATCH", "/api/v1/users/root@example.com", root, Some(json!({"superuser": false}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["superuser"], false);
}

#[tokio::test]
async fn metrics_can_require_an_api_token() {
    let gw = TestGateway::spawn_with(
        "",
        &[("TOKENGATE_ADMIN__METRICS_REQUIRE_AUTH", "true")],
        tokengate::clock::Clock::System,
    )
    .await;
    gw.account("scraper@example.com").await;
    let (id, secret) = gw.token("scraper@example.com", "prometheus", &[]).await;
    let url = format!("http://{}/metrics", gw.admin);
    let anonymous = client().get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers().contains_key("www-authenticate"), "scrapers are told to authenticate");
    let scraped = client().get(&url).basic_auth("scraper@example.com", Some(&secret)).send().await.unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    assert!(scraped.text().await.unwrap().contains("tokengate_index_tokens 1"));
    gw.service.revoke_token(id, &Actor::cli()).await.unwrap();
    let revoked = client().get(&url).basic_auth("scraper@example.com", Some(&secret)).send().await.unwrap();
    assert_eq!(revoked.status(), StatusCode::UNAUTHORIZED, "a revoked scraper token is refused at once");
    // Health probes stay open: a load balancer has no token.
    assert_eq!(client().get(format!("http://{}/healthz", gw.admin)).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(client().get(format!("http://{}/readyz", gw.admin)).send().await.unwrap().status(), StatusCode::OK);
}

/// The OpenAPI document is generated from the code; this snapshot makes every change to the
/// API's description visible in review. After an intended change, regenerate it with
/// `UPDATE_SNAPSHOTS=1 cargo nextest run -E 'test(/openapi/)'`.
#[tokio::test]
async fn the_openapi_document_matches_its_snapshot_and_is_served() {
    let generated = tokengate::admin::api::openapi_json();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/openapi.json");
    if std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
    }
    let snapshot = std::fs::read_to_string(&path).unwrap();
    assert_eq!(generated, snapshot, "the API description changed: review it and regenerate the snapshot");
    let document: Value = serde_json::from_str(&generated).unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    for endpoint in ["/api/v1/tokens", "/api/v1/tokens/{id}/rotate", "/api/v1/users/{email}", "/api/v1/events"] {
        assert!(document["paths"].get(endpoint).is_some(), "{endpoint} is described");
    }
    let gw = TestGateway::spawn().await;
    let served = client().get(format!("http://{}/api/v1/openapi.json", gw.admin)).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.text().await.unwrap(), generated);
}
