//! Several gateways on one PostgreSQL database: revocations travel between them through the
//! change log (NOTIFY only wakes them up), survive lost connections, and no concurrent change
//! is skipped. Also the move from SQLite with `tokengate db copy`.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokengate::clock::Clock;
use tokengate::config::SecretUrl;
use tokengate::control::service::{Actor, CreateAccount, CreateToken, ExpiryRequest, LifecycleService};
use tokengate::control::store::Store;

use crate::postgres::TestDatabase;
use crate::support::{TestGateway, client, run_cli};

const ANN: &str = "ann@example.com";

async fn on_postgres(db: &TestDatabase, interval: &str) -> TestGateway {
    TestGateway::spawn_with(
        "",
        &[("TOKENGATE_DATABASE__URL", &db.url), ("TOKENGATE_SYNC__INTERVAL", interval)],
        Clock::System,
    )
    .await
}

async fn status(gw: &TestGateway, secret: &str) -> StatusCode {
    client().get(gw.url("/x")).basic_auth(ANN, Some(secret)).send().await.unwrap().status()
}

/// Polls until `gw` refuses `secret`; returns how long that took.
async fn until_refused(gw: &TestGateway, secret: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    while status(gw, secret).await != StatusCode::UNAUTHORIZED {
        assert!(started.elapsed() < limit, "still accepted after {limit:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    started.elapsed()
}

/// A writer on the database with no index of its own, like the CLI or another node's API.
async fn writer(db: &TestDatabase, gw: &TestGateway) -> LifecycleService {
    let store = Store::open(&SecretUrl::new(&db.url)).await.unwrap();
    LifecycleService::new(store, gw.config.tokens.clone(), Clock::System, None)
}

async fn mint(service: &LifecycleService, name: &str) -> (i64, String) {
    let request = CreateToken {
        owner_email: ANN.into(),
        name: name.into(),
        description: None,
        expiry: ExpiryRequest::Default,
        scopes: vec![],
        rate_limit: None,
    };
    let created = service.create_token(request, &Actor::cli()).await.unwrap();
    (created.token.id.0, created.secret.expose().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_through_one_gateway_is_refused_by_the_other_at_once() {
    let Some(db) = TestDatabase::create().await else { return };
    // A long poll interval: only the NOTIFY wake-up can make this fast.
    let (one, two) = (on_postgres(&db, "5s").await, on_postgres(&db, "5s").await);
    one.account(ANN).await;
    let (id, secret) = one.token(ANN, "shared", &[]).await;
    // The other gateway learns of the new token through the change log.
    let started = Instant::now();
    while status(&two, &secret).await != StatusCode::OK {
        assert!(started.elapsed() < Duration::from_secs(2), "the new token never reached the second gateway");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    one.service.revoke_token(id, &Actor::cli()).await.unwrap();
    assert_eq!(status(&one, &secret).await, StatusCode::UNAUTHORIZED, "the revoking gateway refuses at once");
    let elapsed = until_refused(&two, &secret, Duration::from_millis(1000)).await;
    eprintln!("revocation reached the other gateway in {elapsed:?} (poll interval 5 s)");
    assert!(elapsed < Duration::from_millis(250), "took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missed_notification_still_converges_by_polling() {
    let Some(db) = TestDatabase::create().await else { return };
    let gw = on_postgres(&db, "200ms").await;
    gw.account(ANN).await;
    let (id, secret) = gw.token(ANN, "ci", &[]).await;
    let other = writer(&db, &gw).await;

    assert!(db.terminate_connections(true).await >= 1, "the gateway's listener connection was found and killed");
    other.revoke_token(id, &Actor::cli()).await.unwrap();
    let elapsed = until_refused(&gw, &secret, Duration::from_secs(3)).await;
    eprintln!("converged {elapsed:?} after a killed listener");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_lose_no_change() {
    let Some(db) = TestDatabase::create().await else { return };
    let gw = on_postgres(&db, "100ms").await;
    gw.account(ANN).await;
    let mut writers = Vec::new();
    for w in 0..4 {
        let service = writer(&db, &gw).await;
        writers.push(tokio::spawn(async move {
            let mut outcome = Vec::new();
            for i in 0..15 {
                let (id, secret) = mint(&service, &format!("w{w}-t{i}")).await;
                let revoke = i % 3 == 0;
                if revoke {
                    service.revoke_token(id, &Actor::cli()).await.unwrap();
                }
                outcome.push((secret, revoke));
            }
            outcome
        }));
    }
    let mut expected = Vec::new();
    for writer in writers {
        expected.extend(writer.await.unwrap());
    }
    // Wait until the gateway has applied everything in the log, then check every token.
    let latest = gw.store().latest_change_seq().await.unwrap();
    let started = Instant::now();
    while gw.sync.applied_seq() < latest {
        assert!(started.elapsed() < Duration::from_secs(5), "the follower never caught up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (secret, revoked) in &expected {
        let want = if *revoked { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
        assert_eq!(status(&gw, secret).await, want);
    }
    assert_eq!(expected.len(), 60);
}

#[tokio::test(flavor = "multi_thread")]
async fn gateways_recover_when_every_database_connection_is_cut() {
    let Some(db) = TestDatabase::create().await else { return };
    let gw = on_postgres(&db, "100ms").await;
    gw.account(ANN).await;
    let (id, secret) = gw.token(ANN, "ci", &[]).await;
    let (other_id, other_secret) = gw.token(ANN, "other", &[]).await;

    assert!(db.terminate_connections(false).await >= 1);
    // Still serving from the index while the pool reconnects; this use is written later.
    assert_eq!(status(&gw, &other_secret).await, StatusCode::OK);
    let other = writer(&db, &gw).await;
    other.revoke_token(id, &Actor::cli()).await.unwrap();
    until_refused(&gw, &secret, Duration::from_secs(5)).await;

    let started = Instant::now();
    while other.token(other_id).await.unwrap().last_used_at.is_none() {
        assert!(started.elapsed() < Duration::from_secs(5), "last use never written after the reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn db_copy_moves_everything_and_every_token_keeps_working() {
    let Some(db) = TestDatabase::create().await else { return };
    // With a webhook, so each notice's delivery record is copied too.
    let hook = crate::notify::WebhookReceiver::start().await;
    let sqlite = TestGateway::spawn_with("", &[("TOKENGATE_NOTIFY__WEBHOOK_URL", &hook.url)], Clock::System).await;
    sqlite.account(ANN).await;
    let (live_id, live) = sqlite.token(ANN, "live", &[]).await;
    let (dead_id, dead) = sqlite.token(ANN, "dead", &[]).await;
    sqlite.service.revoke_token(dead_id, &Actor::cli()).await.unwrap();
    assert_eq!(status(&sqlite, &live).await, StatusCode::OK);
    hook.wait_for("about the revocation", "token.revoked").await;
    let started = Instant::now();
    while sqlite.store().outbox_backlog().await.unwrap() > 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "notices not delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sqlite_url = sqlite.config.database.url.expose().to_owned();
    let (_, dir) = sqlite.stop().await;

    let config = dir.path().join("tokengate.toml");
    let (code, stdout, stderr) = run_cli(&config, &["db", "copy", "--from", &sqlite_url, "--to", &db.url, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let counts: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((counts["accounts"].as_i64(), counts["tokens"].as_i64()), (Some(1), Some(2)));
    assert_eq!((counts["outbox"].as_i64(), counts["outbox_deliveries"].as_i64()), (Some(3), Some(3)), "{counts}");
    let (code, _, stderr) = run_cli(&config, &["db", "copy", "--from", &sqlite_url, "--to", &db.url]);
    assert_eq!(code, 1, "a second copy into a non-empty database is refused");
    assert!(stderr.contains("not empty"), "{stderr}");

    let pg = on_postgres(&db, "250ms").await;
    assert_eq!(status(&pg, &live).await, StatusCode::OK);
    assert_eq!(status(&pg, &dead).await, StatusCode::UNAUTHORIZED);
    assert_eq!(pg.service.token(live_id).await.unwrap().name, "live", "ids are kept");
    let (new_id, _) = pg.token(ANN, "after-the-move", &[]).await;
    assert!(new_id > dead_id, "new ids continue after the copied ones");
    let newcomer = CreateAccount { email: "new@example.com".into(), can_create_tokens: true, ..Default::default() };
    pg.service.create_account(newcomer, &Actor::cli()).await.unwrap();
}

/// Makes the test's database refuse (or accept again) every new connection, and cuts the
/// open ones: an outage of this database alone, without touching the shared server.
async fn set_reachable(db: &TestDatabase, reachable: bool) {
    let mut conn = db.server_connection().await;
    let name = db.url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
    let sql = format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {reachable}");
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
    if !reachable {
        db.terminate_connections(false).await;
    }
}

async fn readiness(gw: &TestGateway) -> (StatusCode, serde_json::Value) {
    let response = client().get(format!("http://{}/readyz", gw.admin)).send().await.unwrap();
    let status = response.status();
    (status, serde_json::from_str(&response.text().await.unwrap()).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn during_an_outage_gateways_serve_the_last_index_and_catch_up_afterwards() {
    let Some(db) = TestDatabase::create().await else { return };
    let gw = TestGateway::spawn_with(
        "",
        &[
            ("TOKENGATE_DATABASE__URL", &db.url),
            ("TOKENGATE_SYNC__INTERVAL", "100ms"),
            ("TOKENGATE_SYNC__MAX_LAG", "1s"),
        ],
        Clock::System,
    )
    .await;
    gw.account(ANN).await;
    let (live_id, live) = gw.token(ANN, "live", &[]).await;
    let (dead_id, dead) = gw.token(ANN, "dead", &[]).await;
    gw.service.revoke_token(dead_id, &Actor::cli()).await.unwrap();
    assert_eq!(readiness(&gw).await.0, StatusCode::OK);

    set_reachable(&db, false).await;
    // The index keeps answering: the live token works, the revoked one stays refused.
    assert_eq!(status(&gw, &live).await, StatusCode::OK);
    assert_eq!(status(&gw, &dead).await, StatusCode::UNAUTHORIZED);
    // Readiness reports the growing lag and turns 503 past sync.max_lag.
    let started = Instant::now();
    let report = loop {
        let (code, report) = readiness(&gw).await;
        if code == StatusCode::SERVICE_UNAVAILABLE {
            break report;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still ready after 10 s of outage: {report}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(report["sync_lag_seconds"].as_f64().unwrap() > 1.0, "{report}");
    // The control path fails with one clear line.
    let config = gw.dir.path().join("tokengate.toml");
    let (code, _, stderr) =
        crate::support::run_cli_env(&config, &["token", "list"], &[("TOKENGATE_DATABASE__URL", &db.url)]);
    assert_eq!(code, 1);
    let errors: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("config: ")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].starts_with("tokengate: cannot open database"), "{stderr}");
    assert_eq!(status(&gw, &live).await, StatusCode::OK, "this use is kept for the next flush");

    set_reachable(&db, true).await;
    let started = Instant::now();
    while readiness(&gw).await.0 != StatusCode::OK {
        assert!(started.elapsed() < Duration::from_secs(15), "never ready again after the outage");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let other = writer(&db, &gw).await;
    other.revoke_token(live_id, &Actor::cli()).await.unwrap();
    until_refused(&gw, &live, Duration::from_secs(5)).await;
    assert!(other.token(live_id).await.unwrap().last_used_at.is_some(), "uses during the outage were written");
}
