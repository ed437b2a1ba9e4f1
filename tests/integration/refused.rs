//! Attempts with dead tokens told to their owner: through real gateways (two of them sharing
//! one database, SQLite or PostgreSQL), a revoked token presented again and again and an expired
//! one give exactly one `token.refused_use` notice per token within the hour, while the audit
//! event stays once a minute; an hour later the owner hears again. The webhook's text says what
//! was presented from where, and `tokengate token show` (the real binary) prints it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokengate::clock::{Clock, to_rfc3339};
use tokengate::control::service::{Actor, ExpiryRequest};

use crate::notify::WebhookReceiver;
use crate::postgres::TestDatabase;
use crate::support::{TestGateway, client, eventually, run_cli};

const ANN: &str = "ann@example.com";
const START: i64 = 1_800_000_000;
const AGENT: &str = "legacy-script/1.0";

/// Presents `secret` as ann's at `path` (method from the path's first letter: P → POST).
async fn present(gw: &TestGateway, secret: &str, path: &str) {
    let method = if path.starts_with("/p") { reqwest::Method::POST } else { reqwest::Method::GET };
    let response = client()
        .request(method, gw.url(path))
        .basic_auth(ANN, Some(secret))
        .header("user-agent", AGENT)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
}

/// Waits until the token's refused uses, flushed by the gateways, add up to `count`.
async fn refused_count_reaches(gw: &TestGateway, id: i64, count: i64) {
    eventually(&format!("token {id} refused {count} times"), || async {
        gw.service.token(id).await.unwrap().refused_count == count
    })
    .await;
}

/// The `token.refused_use` notices in the outbox: (token id, stored payload), oldest first.
async fn refused_notices(url: &str) -> Vec<(i64, Value)> {
    const SQL: &str = "SELECT token_id, payload FROM outbox WHERE kind = 'token.refused_use' ORDER BY id";
    let rows: Vec<(i64, String)> = if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let rows = sqlx::query_as(SQL).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let rows = sqlx::query_as(SQL).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    };
    rows.into_iter().map(|(id, payload)| (id, serde_json::from_str(&payload).unwrap())).collect()
}

fn notices_of(notices: &[(i64, Value)], id: i64) -> Vec<Value> {
    notices.iter().filter(|(token, _)| *token == id).map(|(_, payload)| payload.clone()).collect()
}

async fn refused_events(gw: &TestGateway, id: i64) -> usize {
    gw.service.events(None, Some(id), 100).await.unwrap().iter().filter(|e| e.kind == "token.refused_use").count()
}

/// Two gateways on one database (`database`: PostgreSQL; `None`: the first one's SQLite file),
/// one clock; the first delivers to a webhook.
async fn refused_uses_are_told_once_an_hour(database: Option<&str>, hook: &WebhookReceiver) {
    let clock = Clock::manual(START);
    let mut env = vec![("TOKENGATE_NOTIFY__WEBHOOK_URL", hook.url.as_str())];
    if let Some(url) = database {
        env.push(("TOKENGATE_DATABASE__URL", url));
    }
    let one = TestGateway::spawn_with("", &env, clock.clone()).await;
    let url = one.config.database.url.expose().to_owned();
    let two = TestGateway::spawn_with("", &[("TOKENGATE_DATABASE__URL", url.as_str())], clock.clone()).await;
    one.account(ANN).await;
    let (revoked, revoked_secret) = one.token(ANN, "old-laptop", &[]).await;
    let (expired, expired_secret) =
        one.token_with(ANN, "short-lived", &[], ExpiryRequest::In(Duration::from_secs(60))).await;
    one.service.revoke_token(revoked, &Actor::cli()).await.unwrap();

    // The first refused use is told at once, with what was presented, from where, and why.
    present(&one, &revoked_secret, "/first").await;
    refused_count_reaches(&one, revoked, 1).await;
    let notices = refused_notices(&url).await;
    assert_eq!(notices.len(), 1, "{notices:#?}");
    let notice = &notices_of(&notices, revoked)[0];
    assert_eq!(notice["kind"], "token.refused_use");
    assert_eq!(notice["at"], START);
    assert_eq!((notice["ip"].as_str(), notice["user_agent"].as_str()), (Some("127.0.0.1"), Some(AGENT)));
    let detail = &notice["detail"];
    assert_eq!((detail["name"].as_str(), detail["reason"].as_str()), (Some("old-laptop"), Some("revoked")));
    assert_eq!((detail["method"].as_str(), detail["path"].as_str()), (Some("GET"), Some("/first")));
    assert_eq!((detail["attempts"].as_i64(), detail["refused_count"].as_i64()), (Some(1), Some(1)));
    assert!(detail["prefix"].as_str().unwrap().starts_with("tg_"));

    // More attempts, on both gateways, and the short-lived token once it has expired: one
    // notice per token, though the audit log gets its event once a minute.
    for path in ["/a", "/b", "/post"] {
        present(&one, &revoked_secret, path).await;
        present(&two, &revoked_secret, path).await;
    }
    clock.advance(61);
    present(&two, &expired_secret, "/expired").await;
    present(&one, &expired_secret, "/expired").await;
    present(&two, &revoked_secret, "/later").await;
    refused_count_reaches(&one, revoked, 8).await;
    refused_count_reaches(&one, expired, 2).await;
    let notices = refused_notices(&url).await;
    assert_eq!(notices_of(&notices, revoked).len(), 1, "once within the hour: {notices:#?}");
    let told = notices_of(&notices, expired);
    assert_eq!(told.len(), 1, "{notices:#?}");
    assert_eq!(told[0]["detail"]["reason"], "expired");
    assert_eq!(told[0]["at"], START + 61);
    assert_eq!(refused_events(&one, revoked).await, 2, "the audit event stays once a minute");

    // Still within the hour of the first notice: nothing new. Past it: told again.
    clock.advance(3000);
    present(&one, &revoked_secret, "/c").await;
    refused_count_reaches(&one, revoked, 9).await;
    assert_eq!(notices_of(&refused_notices(&url).await, revoked).len(), 1);
    clock.advance(600);
    present(&two, &revoked_secret, "/d").await;
    present(&one, &expired_secret, "/e").await;
    refused_count_reaches(&one, revoked, 10).await;
    refused_count_reaches(&one, expired, 3).await;
    let notices = refused_notices(&url).await;
    let again = notices_of(&notices, revoked);
    assert_eq!(again.len(), 2, "an hour later the owner hears again: {notices:#?}");
    assert_eq!(again[1]["detail"]["path"], "/d");
    assert_eq!(again[1]["detail"]["refused_count"], 10);
    assert_eq!(notices_of(&notices, expired).len(), 2, "an hour after its first notice");

    // The webhook's text says it readably.
    let (_, body) = hook.wait_for("about the refused use", "token.refused_use").await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["recipient"], ANN);
    assert_eq!(
        body["subject"],
        format!("Refused use of revoked API token \"old-laptop\" ({})", detail["prefix"].as_str().unwrap())
    );
    let text = body["text"].as_str().unwrap();
    for line in
        ["Request:    GET /first", "IP address: 127.0.0.1", "Reason:     revoked", "Attempts:   1 (1 refused in all)"]
    {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_uses_are_told_to_the_owner_once_an_hour_on_sqlite() {
    let hook = WebhookReceiver::start().await;
    refused_uses_are_told_once_an_hour(None, &hook).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_uses_are_told_to_the_owner_once_an_hour_on_postgres() {
    let Some(db) = TestDatabase::create().await else { return };
    let hook = WebhookReceiver::start().await;
    refused_uses_are_told_once_an_hour(Some(&db.url), &hook).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn token_show_prints_the_refused_uses() {
    let clock = Clock::manual(START);
    let gw = TestGateway::spawn_with("", &[], clock.clone()).await;
    gw.account(ANN).await;
    let (id, secret) = gw.token(ANN, "old-laptop", &[]).await;
    let (unused, _) = gw.token(ANN, "unused", &[]).await;
    gw.service.revoke_token(id, &Actor::cli()).await.unwrap();
    present(&gw, &secret, "/x").await;
    clock.advance(5);
    present(&gw, &secret, "/post/y").await;
    refused_count_reaches(&gw, id, 2).await;

    let config = gw.dir.path().join("tokengate.toml");
    let (code, stdout, stderr) = run_cli(&config, &["token", "show", &id.to_string()]);
    assert_eq!(code, 0, "{stderr}");
    let line = |name: &str| stdout.lines().find(|l| l.split_whitespace().next() == Some(name)).unwrap_or_default();
    assert_eq!(line("refused_count").split_whitespace().collect::<Vec<_>>(), ["refused_count", "2"], "{stdout}");
    assert!(line("refused_last_at").ends_with(&to_rfc3339(START + 5)), "{stdout}");
    assert!(line("refused_last").ends_with("POST /post/y from 127.0.0.1"), "{stdout}");

    // A token never refused says so.
    let (_, stdout, _) = run_cli(&config, &["token", "show", &unused.to_string()]);
    assert!(stdout.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["refused_count", "0"]), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["refused_last", "-", "-", "from", "-"])
    );
}
