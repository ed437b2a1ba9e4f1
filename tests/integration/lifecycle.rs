//! The token lifecycle through a real gateway: rotation (at once, with a grace, until the
//! successor's first use), blocking and restoring with its audit trail, and attempts with dead
//! tokens counted on the token.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokengate::clock::Clock;
use tokengate::control::service::{Actor, ServiceError};
use tokengate::control::store::{AccountChanges, TokenRecord};

use crate::support::{TestGateway, client};

const ANN: &str = "ann@example.com";
const START: i64 = 1_800_000_000;

async fn status(gw: &TestGateway, secret: &str) -> StatusCode {
    client().get(gw.url("/x")).basic_auth(ANN, Some(secret)).send().await.unwrap().status()
}

/// Polls the token until `done` holds (the flusher runs every 100 ms in tests).
async fn eventually(gw: &TestGateway, id: i64, done: impl Fn(&TokenRecord) -> bool) -> TokenRecord {
    let started = Instant::now();
    loop {
        let token = gw.service.token(id).await.unwrap();
        if done(&token) {
            return token;
        }
        assert!(started.elapsed() < Duration::from_secs(3), "token {id} never reached the state: {token:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn event_kinds(gw: &TestGateway, token: i64) -> Vec<String> {
    gw.service.events(None, Some(token), 100).await.unwrap().into_iter().map(|e| e.kind).collect()
}

#[tokio::test]
async fn rotation_without_grace_revokes_the_old_token_at_once() {
    let gw = TestGateway::spawn().await;
    gw.account(ANN).await;
    let (old_id, old) = gw.token(ANN, "deploy", &["read"]).await;
    let rotated = gw.service.rotate_token(old_id, None, false, &Actor::cli()).await.unwrap();
    let new = rotated.successor.secret.expose().to_owned();
    let successor = &rotated.successor.token;
    assert_eq!((successor.name.as_str(), successor.scopes.as_str()), ("deploy", "read"));
    assert_eq!(successor.rotated_from, Some(old_id.into()));
    assert_eq!(rotated.predecessor.rotated_to, Some(successor.id));
    assert_eq!(rotated.predecessor.revoke_reason.as_deref(), Some("rotation"));
    assert_eq!(status(&gw, &old).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&gw, &new).await, StatusCode::OK);
    assert!(event_kinds(&gw, old_id).await.contains(&"token.rotated".to_owned()));

    let again = gw.service.rotate_token(old_id, None, false, &Actor::cli()).await;
    assert!(matches!(again, Err(ServiceError::Invalid(_))), "a revoked token cannot be rotated");
}

#[tokio::test]
async fn during_a_grace_both_tokens_work_and_the_old_one_stops_at_its_end() {
    let clock = Clock::manual(START);
    let gw = TestGateway::spawn_with("", &[], clock.clone()).await;
    gw.account(ANN).await;
    let (old_id, old) = gw.token(ANN, "ci", &[]).await;
    let rotated = gw.service.rotate_token(old_id, Some(Duration::from_secs(3600)), false, &Actor::cli()).await.unwrap();
    let new = rotated.successor.secret.expose().to_owned();
    assert_eq!(rotated.predecessor.revoked_at, Some(START + 3600), "the scheduled revocation is shown");
    assert_eq!(rotated.predecessor.status(START).as_str(), "active");
    assert_eq!(status(&gw, &old).await, StatusCode::OK);
    assert_eq!(status(&gw, &new).await, StatusCode::OK);
    let twice = gw.service.rotate_token(old_id, None, false, &Actor::cli()).await;
    assert!(matches!(twice, Err(ServiceError::Conflict(_))), "rotate the successor instead");

    clock.advance(3599);
    assert_eq!(status(&gw, &old).await, StatusCode::OK);
    clock.advance(1);
    assert_eq!(status(&gw, &old).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&gw, &new).await, StatusCode::OK);
    assert_eq!(gw.service.token(old_id).await.unwrap().status(clock.now()).as_str(), "revoked");
}

#[tokio::test]
async fn the_grace_never_outlives_the_old_tokens_expiry() {
    let clock = Clock::manual(START);
    let gw = TestGateway::spawn_with("", &[], clock.clone()).await;
    gw.account(ANN).await;
    let expiry = tokengate::control::service::ExpiryRequest::In(Duration::from_secs(600));
    let (old_id, _) = gw.token_with(ANN, "short", &[], expiry).await;
    let rotated =
        gw.service.rotate_token(old_id, Some(Duration::from_secs(86_400)), false, &Actor::cli()).await.unwrap();
    assert_eq!(rotated.predecessor.revoked_at, Some(START + 600));
    assert_eq!(rotated.successor.token.expires_at, Some(START + 600), "the successor gets the same lifetime");
}

#[tokio::test]
async fn until_first_use_hands_over_when_the_successor_is_first_seen() {
    let gw = TestGateway::spawn().await;
    gw.account(ANN).await;
    let (old_id, old) = gw.token(ANN, "ci", &[]).await;
    let rotated = gw.service.rotate_token(old_id, None, true, &Actor::cli()).await.unwrap();
    let new = rotated.successor.secret.expose().to_owned();
    assert_eq!(status(&gw, &old).await, StatusCode::OK, "the old token works until the new one is used");
    assert_eq!(status(&gw, &old).await, StatusCode::OK);

    assert_eq!(status(&gw, &new).await, StatusCode::OK);
    assert_eq!(status(&gw, &old).await, StatusCode::UNAUTHORIZED, "refused from the successor's first use on");

    let predecessor = eventually(&gw, old_id, |t| t.revoked_at.is_some_and(|at| at <= gw.service.now())).await;
    assert_eq!(predecessor.revoke_reason.as_deref(), Some("rotation"));
    assert_eq!(predecessor.revoked_by.as_deref(), Some("gateway"));
    let events = gw.service.events(None, Some(old_id), 100).await.unwrap();
    let handover = events.iter().find(|e| e.kind == "token.revoked").expect("a revocation event");
    assert!(handover.detail.contains("successor_first_used"), "{}", handover.detail);

    // Another gateway on the same database learns of the hand-over through the change log.
    let store = tokengate::control::store::Store::open(&gw.config.database.url).await.unwrap();
    let synced = tokengate::control::sync::IndexSync::load(store).await.unwrap();
    let old_entry = synced.index().token(&tokengate::model::secret::TokenDigest::of(&old)).unwrap();
    assert!(old_entry.is_revoked(gw.service.now()));
}

#[tokio::test]
async fn blocking_and_restoring_an_account_is_audited_on_each_token() {
    let gw = TestGateway::spawn().await;
    gw.account(ANN).await;
    let (a, secret) = gw.token(ANN, "a", &[]).await;
    let (b, _) = gw.token(ANN, "b", &[]).await;
    let block = AccountChanges { can_create_tokens: Some(false), ..AccountChanges::default() };
    gw.service.update_account(ANN, block, &Actor::cli()).await.unwrap();
    assert_eq!(status(&gw, &secret).await, StatusCode::UNAUTHORIZED);
    let restore = AccountChanges { can_create_tokens: Some(true), ..AccountChanges::default() };
    gw.service.update_account(ANN, restore, &Actor::cli()).await.unwrap();
    assert_eq!(status(&gw, &secret).await, StatusCode::OK);
    // (Token a was also presented while blocked: that attempt is audited separately.)
    let lifecycle_kinds =
        |kinds: Vec<String>| kinds.into_iter().filter(|k| k != "token.refused_use").collect::<Vec<_>>();
    for id in [a, b] {
        let kinds = lifecycle_kinds(event_kinds(&gw, id).await);
        assert_eq!(kinds, ["token.unblocked", "token.blocked", "token.created"], "token {id}");
    }
    // A change that does not affect usability writes no token events.
    let promote = AccountChanges { token_manager: Some(true), ..AccountChanges::default() };
    gw.service.update_account(ANN, promote, &Actor::cli()).await.unwrap();
    assert_eq!(event_kinds(&gw, b).await.len(), 3);
}

#[tokio::test]
async fn attempts_with_dead_tokens_are_counted_on_the_token_and_audited_once_a_minute() {
    let clock = Clock::manual(START);
    let gw = TestGateway::spawn_with("", &[], clock.clone()).await;
    gw.account(ANN).await;
    let (id, secret) = gw.token(ANN, "old-laptop", &[]).await;
    gw.service.revoke_token(id, &Actor::cli()).await.unwrap();

    for path in ["/a", "/b", "/c?q=1"] {
        let response = client()
            .post(gw.url(path))
            .basic_auth(ANN, Some(&secret))
            .header("User-Agent", "legacy-script/1.0")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let token = eventually(&gw, id, |t| t.refused_count == 3).await;
    assert_eq!(token.refused_last_method.as_deref(), Some("POST"));
    assert_eq!(token.refused_last_path.as_deref(), Some("/c"));
    assert_eq!(token.refused_last_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(token.refused_last_at, Some(START));
    let refused = |events: Vec<tokengate::control::store::EventRecord>| {
        events.into_iter().filter(|e| e.kind == "token.refused_use").collect::<Vec<_>>()
    };
    let events = refused(gw.service.events(None, Some(id), 100).await.unwrap());
    assert_eq!(events.len(), 1, "one event for a burst of attempts");
    assert_eq!(events[0].user_agent.as_deref(), Some("legacy-script/1.0"));
    assert_eq!(events[0].ip.as_deref(), Some("127.0.0.1"));

    clock.advance(61);
    assert_eq!(status(&gw, &secret).await, StatusCode::UNAUTHORIZED);
    eventually(&gw, id, |t| t.refused_count == 4).await;
    assert_eq!(refused(gw.service.events(None, Some(id), 100).await.unwrap()).len(), 2, "a minute later, another");

    // Unknown tokens are not attributed to anyone.
    assert_eq!(status(&gw, "tg_unknown").await, StatusCode::UNAUTHORIZED);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gw.service.token(id).await.unwrap().refused_count, 4, "an unknown token counts on no token");
}
