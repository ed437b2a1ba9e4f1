//! Rate limits through a real gateway: a token's allowance then 429 with the IETF headers,
//! recovery, isolation between tokens, live limit changes, and failed-authentication
//! throttling by client address (not evaded by a spoofed X-Forwarded-For, honoured behind a
//! trusted proxy).

use std::net::IpAddr;
use std::time::Duration;

use reqwest::StatusCode;
use tokengate::clock::Clock;
use tokengate::control::service::Actor;

use crate::support::TestGateway;

const ANN: &str = "ann@example.com";

fn client_from(address: &str) -> reqwest::Client {
    let ip: IpAddr = address.parse().unwrap();
    reqwest::Client::builder().no_proxy().local_address(ip).build().unwrap()
}

async fn get(client: &reqwest::Client, gw: &TestGateway, email: &str, secret: &str) -> reqwest::Response {
    client.get(gw.url("/x")).basic_auth(email, Some(secret)).send().await.unwrap()
}

async fn spawn(env: &[(&str, &str)]) -> TestGateway {
    TestGateway::spawn_with("", env, Clock::System).await
}

#[tokio::test]
async fn a_token_gets_its_allowance_then_429_with_retry_after_and_ratelimit_headers() {
    let gw = spawn(&[("TOKENGATE_RATE_LIMIT__DEFAULT", "3/min")]).await;
    gw.account(ANN).await;
    let (_, secret) = gw.token(ANN, "ci", &[]).await;
    let (_, other) = gw.token(ANN, "other", &[]).await;
    let client = client_from("127.0.0.1");
    for remaining in [2, 1, 0] {
        let response = get(&client, &gw, ANN, &secret).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["ratelimit-policy"], "\"token\";q=3;w=60");
        let state = response.headers()["ratelimit"].to_str().unwrap().to_owned();
        assert!(state.starts_with(&format!("\"token\";r={remaining};t=")), "{state}");
    }
    let limited = get(&client, &gw, ANN, &secret).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(limited.headers()["ratelimit"], format!("\"token\";r=0;t={retry_after}").as_str());
    assert!(limited.headers().get("x-echo").is_none(), "the upstream is not called");
    assert_eq!(get(&client, &gw, ANN, &other).await.status(), StatusCode::OK, "limits are per token");
}

#[tokio::test]
async fn a_limited_token_recovers_as_its_bucket_refills() {
    let gw = spawn(&[]).await;
    gw.account(ANN).await;
    let (id, secret) = gw.token(ANN, "fast", &[]).await;
    gw.service.set_rate_limit(id, Some("2/s".parse().unwrap()), &Actor::cli()).await.unwrap();
    let client = client_from("127.0.0.1");
    assert_eq!(get(&client, &gw, ANN, &secret).await.status(), StatusCode::OK);
    assert_eq!(get(&client, &gw, ANN, &secret).await.status(), StatusCode::OK);
    assert_eq!(get(&client, &gw, ANN, &secret).await.status(), StatusCode::TOO_MANY_REQUESTS);
    tokio::time::sleep(Duration::from_millis(550)).await;
    assert_eq!(get(&client, &gw, ANN, &secret).await.status(), StatusCode::OK, "one request every 500 ms");
}

#[tokio::test]
async fn a_limit_change_applies_on_the_next_request_and_401s_never_count() {
    let gw = spawn(&[]).await;
    gw.account(ANN).await;
    let (id, secret) = gw.token(ANN, "ci", &[]).await;
    let client = client_from("127.0.0.1");
    let unlimited = get(&client, &gw, ANN, &secret).await;
    assert!(unlimited.headers().get("ratelimit").is_none(), "no limit, no headers");

    let token = gw.service.set_rate_limit(id, Some("2/h".parse().unwrap()), &Actor::cli()).await.unwrap();
    assert_eq!(token.rate_limit.as_deref(), Some("2/h"));
    // Failed authentications with this token (the wrong email) do not use its quota.
    for _ in 0..3 {
        assert_eq!(get(&client, &gw, "bob@example.com", &secret).await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(get(&client, &gw, ANN, &secret).await.status(), StatusCode::OK);
    assert_eq!(get(&client, &gw, ANN, &secret).await.status(), StatusCode::OK);
    assert_eq!(get(&client, &gw, ANN, &secret).await.status(), StatusCode::TOO_MANY_REQUESTS);

    gw.service.set_rate_limit(id, None, &Actor::cli()).await.unwrap();
    assert_eq!(get(&client, &gw, ANN, &secret).await.status(), StatusCode::OK, "back to no limit at once");
    let kinds: Vec<String> = gw.service.events(None, Some(id), 10).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "token.limit_changed").count(), 2);
}

#[tokio::test]
async fn too_many_failed_authentications_throttle_the_address_but_never_valid_credentials() {
    let gw = spawn(&[("TOKENGATE_RATE_LIMIT__FAILED_AUTH", "3/min")]).await;
    gw.account(ANN).await;
    let (_, secret) = gw.token(ANN, "ci", &[]).await;
    let guesser = client_from("127.0.0.1");
    for _ in 0..3 {
        assert_eq!(get(&guesser, &gw, ANN, "tg_guess").await.status(), StatusCode::UNAUTHORIZED);
    }
    let over = get(&guesser, &gw, ANN, "tg_guess").await;
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(over.headers().contains_key("retry-after"));
    // Valid credentials from the throttled address are served: behind a NAT, one forgotten
    // script must not lock everyone out.
    assert_eq!(get(&guesser, &gw, ANN, &secret).await.status(), StatusCode::OK, "valid credentials pass");
    assert_eq!(get(&guesser, &gw, ANN, "tg_guess").await.status(), StatusCode::TOO_MANY_REQUESTS, "still throttled");
    // A spoofed X-Forwarded-For does not make a new address.
    let spoofed = guesser
        .get(gw.url("/x"))
        .basic_auth(ANN, Some("tg_guess"))
        .header("X-Forwarded-For", "198.51.100.99")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another address is unaffected.
    assert_eq!(get(&client_from("127.0.0.2"), &gw, ANN, "tg_guess").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(get(&client_from("127.0.0.2"), &gw, ANN, &secret).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_is_throttled_on_its_own() {
    let gw = spawn(&[
        ("TOKENGATE_RATE_LIMIT__FAILED_AUTH", "2/min"),
        ("TOKENGATE_PROXY__TRUSTED_PROXIES", "[\"127.0.0.1/32\"]"),
    ])
    .await;
    gw.account(ANN).await;
    let (_, secret) = gw.token(ANN, "ci", &[]).await;
    let proxy = client_from("127.0.0.1");
    let via = |forwarded: &'static str, secret: String| {
        let request = proxy.get(gw.url("/x")).basic_auth(ANN, Some(secret)).header("X-Forwarded-For", forwarded);
        async move { request.send().await.unwrap().status() }
    };
    for _ in 0..2 {
        assert_eq!(via("198.51.100.1", "tg_guess".into()).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(via("198.51.100.1", "tg_guess".into()).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(via("198.51.100.1", secret.clone()).await, StatusCode::OK, "valid credentials pass");
    assert_eq!(via("198.51.100.2", "tg_guess".into()).await, StatusCode::UNAUTHORIZED, "another client");
    assert_eq!(via("198.51.100.2", secret).await, StatusCode::OK, "another client behind the same proxy");
}

/// Waits until the gateway's limiter has connected to Redis.
async fn until_shared(gw: &TestGateway) {
    let started = std::time::Instant::now();
    while gw.limits_shared() != Some(true) {
        assert!(started.elapsed() < Duration::from_secs(10), "never connected to Redis");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gateways_sharing_redis_enforce_one_combined_limit_and_fall_back_locally_without_it() {
    let Some(redis) = crate::redis::RedisServer::start() else { return };
    let (url, redis_addr) = (redis.url(), redis.addr);
    let env = [("TOKENGATE_RATE_LIMIT__BACKEND", "redis"), ("TOKENGATE_RATE_LIMIT__REDIS_URL", url.as_str())];
    let one = spawn(&env).await;
    one.account(ANN).await;
    let (id, secret) = one.token(ANN, "fleet", &[]).await;
    one.service.set_rate_limit(id, Some("4/min".parse().unwrap()), &Actor::cli()).await.unwrap();
    let db = one.config.database.url.expose().to_owned();
    let mut shared_db = env.to_vec();
    shared_db.push(("TOKENGATE_DATABASE__URL", db.as_str()));
    let two = spawn(&shared_db).await;
    until_shared(&one).await;
    until_shared(&two).await;
    // The second gateway knows the token (and its limit) through the change log.
    let client = client_from("127.0.0.1");
    let started = std::time::Instant::now();
    while get(&client, &two, ANN, &secret).await.status() != StatusCode::OK {
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One request already used on `two`; three more anywhere fill the shared bucket of four.
    assert_eq!(get(&client, &one, ANN, &secret).await.status(), StatusCode::OK);
    assert_eq!(get(&client, &two, ANN, &secret).await.status(), StatusCode::OK);
    let last = get(&client, &one, ANN, &secret).await;
    assert_eq!(last.status(), StatusCode::OK);
    assert_eq!(last.headers()["ratelimit"].to_str().unwrap().split(';').nth(1), Some("r=0"));
    assert_eq!(get(&client, &two, ANN, &secret).await.status(), StatusCode::TOO_MANY_REQUESTS, "one limit for both");
    assert_eq!(get(&client, &one, ANN, &secret).await.status(), StatusCode::TOO_MANY_REQUESTS);

    // Redis stops: each gateway limits on its own, never failing and never unlimited.
    drop(redis);
    let (_, fresh) = one.token(ANN, "during-outage", &[]).await;
    let token_id =
        one.service.list_tokens(Default::default(), &tokengate::control::service::Actor::cli()).await.unwrap()[0].id;
    one.service.set_rate_limit(token_id, Some("2/min".parse().unwrap()), &Actor::cli()).await.unwrap();
    let statuses = [
        get(&client, &one, ANN, &fresh).await.status(),
        get(&client, &one, ANN, &fresh).await.status(),
        get(&client, &one, ANN, &fresh).await.status(),
    ];
    assert_eq!(statuses, [StatusCode::OK, StatusCode::OK, StatusCode::TOO_MANY_REQUESTS], "limited locally");
    assert_eq!(one.limits_shared(), Some(false), "the fallback is visible");
    let ready: serde_json::Value = serde_json::from_str(
        &client.get(format!("http://{}/readyz", one.admin)).send().await.unwrap().text().await.unwrap(),
    )
    .unwrap();
    assert_eq!(ready["rate_limits"], "local (redis unavailable)");

    // Redis is back: the gateway returns to it by itself.
    let _redis = crate::redis::RedisServer::start_on(redis_addr).unwrap();
    let started = std::time::Instant::now();
    while one.limits_shared() != Some(true) {
        assert!(started.elapsed() < Duration::from_secs(15), "never returned to Redis");
        let status = get(&client, &one, ANN, &secret).await.status();
        assert!(status == StatusCode::OK || status == StatusCode::TOO_MANY_REQUESTS, "{status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
