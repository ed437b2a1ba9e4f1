//! Notifications to token owners, delivered to a real SMTP listener and a real webhook
//! receiver: creation and revocation with time, IP and user agent; delivery after a restart
//! while the mail server was down; expiry reminders; the inactivity policy; every notice to
//! every configured channel, each channel retried on its own; and a gateway with no channel
//! leaving the outbox to one that has one.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use tokengate::clock::Clock;
use tokengate::control::service::{Actor, ExpiryRequest};
use tokio_util::sync::CancellationToken;

use crate::postgres::TestDatabase;
use crate::smtp::SmtpSink;
use crate::support::{TestGateway, closed_port, eventually};

const ANN: &str = "ann@example.com";
const START: i64 = 1_800_000_000;
const DAY: i64 = 86_400;

fn smtp_env(addr: SocketAddr) -> Vec<(String, String)> {
    vec![
        ("TOKENGATE_NOTIFY__SMTP_HOST".into(), addr.ip().to_string()),
        ("TOKENGATE_NOTIFY__SMTP_PORT".into(), addr.port().to_string()),
        ("TOKENGATE_NOTIFY__SMTP_TLS".into(), "none".into()),
        ("TOKENGATE_NOTIFY__FROM".into(), "tokengate@example.com".into()),
        ("TOKENGATE_NOTIFY__RETRY_BASE".into(), "1s".into()),
        ("TOKENGATE_TOKENS__SWEEP_INTERVAL".into(), "100ms".into()),
    ]
}

async fn spawn(env: &[(String, String)], clock: Clock) -> TestGateway {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    TestGateway::spawn_with("", &env, clock).await
}

fn admin() -> Actor {
    Actor {
        label: "admin@example.com".into(),
        ip: Some("203.0.113.9".into()),
        user_agent: Some("Mozilla/5.0 (tokengate test)".into()),
        authority: tokengate::control::service::Authority::Host,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn creation_and_revocation_are_emailed_with_time_ip_and_user_agent() {
    let sink = SmtpSink::start().await;
    let gw = spawn(&smtp_env(sink.addr), Clock::System).await;
    gw.account(ANN).await;
    let request = tokengate::control::service::CreateToken {
        owner_email: ANN.into(),
        name: "deploy-bot".into(),
        description: None,
        expiry: ExpiryRequest::Default,
        scopes: vec![],
        rate_limit: None,
    };
    let created = gw.service.create_token(request, &admin()).await.unwrap();
    let prefix = created.token.prefix.clone();

    let mail = sink.wait_for("about the creation", |m| m.subject().contains("New API token")).await;
    assert_eq!(mail.to, [ANN]);
    assert!(mail.subject().contains("deploy-bot") && mail.subject().contains(&prefix), "{}", mail.subject());
    for expected in ["203.0.113.9", "Mozilla/5.0 (tokengate test)", "admin@example.com", &prefix] {
        assert!(mail.data.contains(expected), "{expected} missing from:\n{}", mail.data);
    }
    assert!(!mail.data.contains(created.secret.expose()), "the secret is never mailed");
    // The audit row has the same who, where from and with what.
    let events = gw.service.events(None, Some(created.token.id.0), 10).await.unwrap();
    let event = events.iter().find(|e| e.kind == "token.created").unwrap();
    assert_eq!(event.actor, "admin@example.com");
    assert_eq!(event.ip.as_deref(), Some("203.0.113.9"));
    assert_eq!(event.user_agent.as_deref(), Some("Mozilla/5.0 (tokengate test)"));

    gw.service.revoke_token(created.token.id, &admin()).await.unwrap();
    let mail = sink.wait_for("about the revocation", |m| m.subject().contains("revoked")).await;
    assert!(mail.data.contains("manual"), "{}", mail.data);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_is_delivered_after_a_restart_while_the_mail_server_was_down() {
    let port = closed_port();
    let gw = spawn(&smtp_env(port), Clock::System).await;
    gw.account(ANN).await;
    let (id, _) = gw.token(ANN, "ci", &[]).await;
    // The attempt fails, is audited, and the message stays queued.
    let started = Instant::now();
    loop {
        let failures = gw.service.events(None, Some(id), 100).await.unwrap();
        if failures.iter().any(|e| e.kind == "notification.failed") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no failed attempt recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gw.store().outbox_backlog().await.unwrap(), 1);
    let db = gw.config.database.url.expose().to_owned();
    let (_, dir) = gw.stop().await;

    let sink = SmtpSink::start_on(port).await;
    let mut env = smtp_env(port);
    env.push(("TOKENGATE_DATABASE__URL".into(), db));
    let restarted = spawn(&env, Clock::System).await;
    sink.wait_for("after the restart", |m| m.subject().contains("New API token")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sink.mails().len(), 1, "sent once");
    assert_eq!(restarted.store().outbox_backlog().await.unwrap(), 0);
    drop(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn expiry_reminders_are_sent_once_for_each_lead_time() {
    let sink = SmtpSink::start().await;
    let clock = Clock::manual(START);
    let gw = spawn(&smtp_env(sink.addr), clock.clone()).await;
    gw.account(ANN).await;
    gw.token_with(ANN, "yearly", &[], ExpiryRequest::In(Duration::from_secs(30 * DAY as u64))).await;
    let reminders = || sink.mails().into_iter().filter(|m| m.subject().contains("expires soon")).count();
    sink.wait_for("about the creation", |m| m.subject().contains("New API token")).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(reminders(), 0, "30 days left: nothing to remind yet");

    clock.advance(17 * DAY); // 13 days left: inside the 14-day lead
    sink.wait_for("14 days ahead", |m| m.subject().contains("expires soon")).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(reminders(), 1, "once per lead time");

    clock.advance(12 * DAY + 3600); // 23 hours left: inside the 1-day lead
    let started = Instant::now();
    while reminders() < 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "no 1-day reminder");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(reminders(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_inactivity_policy_warns_then_revokes_unused_tokens() {
    let sink = SmtpSink::start().await;
    let clock = Clock::manual(START);
    let mut env = smtp_env(sink.addr);
    env.push(("TOKENGATE_TOKENS__REVOKE_UNUSED_AFTER".into(), "30d".into()));
    env.push(("TOKENGATE_TOKENS__WARN_BEFORE".into(), "7d".into()));
    let gw = spawn(&env, clock.clone()).await;
    gw.account(ANN).await;
    let (idle, _) = gw.token(ANN, "forgotten", &[]).await;
    let (busy, busy_secret) = gw.token(ANN, "busy", &[]).await;

    clock.advance(24 * DAY);
    let used = crate::support::client().get(gw.url("/x")).basic_auth(ANN, Some(&busy_secret)).send().await.unwrap();
    assert_eq!(used.status(), 200);
    let warning = sink.wait_for("warning of inactivity", |m| m.subject().contains("inactivity")).await;
    assert!(warning.subject().contains("forgotten"), "{}", warning.subject());

    clock.advance(7 * DAY);
    let started = Instant::now();
    let revoked = loop {
        let token = gw.service.token(idle).await.unwrap();
        if token.revoked_at.is_some() {
            break token;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never revoked for inactivity");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(revoked.revoke_reason.as_deref(), Some("inactivity"));
    assert_eq!(revoked.revoked_by.as_deref(), Some("system:inactivity"));
    assert!(gw.service.token(busy).await.unwrap().revoked_at.is_none(), "a token in use is kept");
    sink.wait_for("about the revocation", |m| m.subject().contains("revoked")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sweep_dry_run_lists_without_revoking() {
    let clock = Clock::manual(START);
    let env = vec![("TOKENGATE_TOKENS__REVOKE_UNUSED_AFTER".to_owned(), "30d".to_owned())];
    let gw = spawn(&env, clock.clone()).await;
    gw.account(ANN).await;
    let (id, _) = gw.token(ANN, "old", &[]).await;
    clock.advance(31 * DAY);
    let listed = gw.service.sweep_inactive(true, &Actor::cli()).await.unwrap();
    assert_eq!(listed.iter().map(|t| t.id).collect::<Vec<_>>(), [id]);
    assert!(gw.service.token(id).await.unwrap().revoked_at.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_carry_the_event_and_a_verifiable_signature() {
    let hook = WebhookReceiver::start().await;
    let mut env = webhook_env(&hook);
    env.push(("TOKENGATE_NOTIFY__WEBHOOK_SECRET".to_owned(), "s3cret".to_owned()));
    let gw = spawn(&env, Clock::System).await;
    gw.account(ANN).await;
    gw.token(ANN, "hooked", &[]).await;
    let (signature, body) = hook.wait_for("about the creation", "token.created").await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["kind"], "token.created");
    assert_eq!(json["recipient"], ANN);
    assert_eq!(json["event"]["detail"]["name"], "hooked");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(body.as_bytes());
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(signature, format!("sha256={expected}"));
}

/// A real webhook receiver over HTTP/1.1: answers each POST with the status it is set to (200
/// at first), keeps the deliveries it accepted (signature and body) and counts those it refused.
pub struct WebhookReceiver {
    pub url: String,
    accepted: Arc<Mutex<Vec<(String, String)>>>,
    refused: Arc<AtomicUsize>,
    status: Arc<AtomicU16>,
    stop: CancellationToken,
}

impl WebhookReceiver {
    pub async fn start() -> WebhookReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let receiver = WebhookReceiver {
            url,
            accepted: Arc::default(),
            refused: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
            stop: CancellationToken::new(),
        };
        let (accepted, refused, status, stop) = (
            Arc::clone(&receiver.accepted),
            Arc::clone(&receiver.refused),
            Arc::clone(&receiver.status),
            receiver.stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted { Ok((stream, _)) => stream, Err(_) => return },
                };
                let (accepted, refused, status) = (Arc::clone(&accepted), Arc::clone(&refused), Arc::clone(&status));
                let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let (accepted, refused, status) =
                        (Arc::clone(&accepted), Arc::clone(&refused), Arc::clone(&status));
                    async move {
                        use http_body_util::BodyExt;
                        let signature = request
                            .headers()
                            .get("x-tokengate-signature")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let code = status.load(Ordering::SeqCst);
                        if code == 200 {
                            accepted.lock().unwrap().push((signature, String::from_utf8_lossy(&body).into_owned()));
                        } else {
                            refused.fetch_add(1, Ordering::SeqCst);
                        }
                        let mut response = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
                        *response.status_mut() = hyper::StatusCode::from_u16(code).unwrap();
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        receiver
    }

    /// From now on every delivery is answered with `status` (200 accepts it).
    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// The accepted deliveries: (signature header, body).
    pub fn accepted(&self) -> Vec<(String, String)> {
        self.accepted.lock().unwrap().clone()
    }

    /// The `kind` of each accepted delivery, in order of arrival.
    pub fn kinds(&self) -> Vec<String> {
        self.accepted()
            .iter()
            .map(|(_, body)| {
                serde_json::from_str::<serde_json::Value>(body).unwrap()["kind"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    /// Deliveries answered with an error status.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// Waits until a delivery of `kind` is accepted; returns it.
    pub async fn wait_for(&self, what: &str, kind: &str) -> (String, String) {
        let started = Instant::now();
        loop {
            let found = self.accepted().into_iter().find(|(_, body)| body.contains(&format!("\"kind\":\"{kind}\"")));
            if let Some(delivery) = found {
                return delivery;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "no webhook {what} within 10 s: {:?}", self.kinds());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn webhook_env(hook: &WebhookReceiver) -> Vec<(String, String)> {
    vec![
        ("TOKENGATE_NOTIFY__WEBHOOK_URL".into(), hook.url.clone()),
        ("TOKENGATE_NOTIFY__RETRY_BASE".into(), "1s".into()),
    ]
}

async fn readyz(gw: &TestGateway) -> serde_json::Value {
    let response = crate::support::client().get(format!("http://{}/readyz", gw.admin)).send().await.unwrap();
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

/// The `notification.failed` events of `token`, newest first.
async fn failures(gw: &TestGateway, token: i64) -> Vec<serde_json::Value> {
    let events = gw.service.events(None, Some(token), 100).await.unwrap();
    events
        .into_iter()
        .filter(|e| e.kind == "notification.failed")
        .map(|e| serde_json::from_str(&e.detail).unwrap())
        .collect()
}

async fn create_and_revoke(gw: &TestGateway, name: &str) -> i64 {
    let (id, _) = gw.token(ANN, name, &[]).await;
    gw.service.revoke_token(id, &admin()).await.unwrap();
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn with_smtp_and_a_webhook_every_notice_reaches_both_once() {
    let sink = SmtpSink::start().await;
    let hook = WebhookReceiver::start().await;
    let mut env = smtp_env(sink.addr);
    env.extend(webhook_env(&hook));
    let gw = spawn(&env, Clock::System).await;
    assert_eq!(readyz(&gw).await["notify_channels"], serde_json::json!(["smtp", "webhook"]));
    gw.account(ANN).await;
    create_and_revoke(&gw, "both-ways").await;

    sink.wait_for("about the creation", |m| m.subject().contains("New API token")).await;
    sink.wait_for("about the revocation", |m| m.subject().contains("revoked")).await;
    hook.wait_for("about the creation", "token.created").await;
    hook.wait_for("about the revocation", "token.revoked").await;
    eventually("the backlog empties", || async { gw.store().outbox_backlog().await.unwrap() == 0 }).await;
    // Past a few more sender rounds, still once each.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sink.mails().len(), 2, "{:#?}", sink.mails());
    assert_eq!(hook.kinds(), ["token.created", "token.revoked"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_webhook_is_retried_on_its_own_and_email_goes_out_once() {
    let sink = SmtpSink::start().await;
    let hook = WebhookReceiver::start().await;
    hook.set_status(500);
    let mut env = smtp_env(sink.addr);
    env.extend(webhook_env(&hook));
    let gw = spawn(&env, Clock::System).await;
    gw.account(ANN).await;
    let (id, _) = gw.token(ANN, "half-way", &[]).await;

    sink.wait_for("about the creation", |m| m.subject().contains("New API token")).await;
    eventually("two failed webhook attempts", || async { failures(&gw, id).await.len() >= 2 }).await;
    let failed = failures(&gw, id).await;
    assert!(failed.iter().all(|d| d["channel"] == "webhook" && d["gave_up"] == false), "{failed:#?}");
    assert!(failed.iter().all(|d| d["error"].as_str().unwrap().contains("500")), "{failed:#?}");
    assert!(hook.refused() >= 2);
    assert_eq!(sink.mails().len(), 1, "the webhook's retries do not resend the email");
    assert_eq!(gw.store().outbox_backlog().await.unwrap(), 1, "not finished while the webhook still retries");

    hook.set_status(200);
    hook.wait_for("once it answers 200 again", "token.created").await;
    eventually("the backlog empties", || async { gw.store().outbox_backlog().await.unwrap() == 0 }).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sink.mails().len(), 1);
    assert_eq!(hook.kinds(), ["token.created"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_mail_server_is_retried_on_its_own_and_the_webhook_goes_out_once() {
    let port = closed_port();
    let hook = WebhookReceiver::start().await;
    let mut env = smtp_env(port);
    env.extend(webhook_env(&hook));
    let gw = spawn(&env, Clock::System).await;
    gw.account(ANN).await;
    let (id, _) = gw.token(ANN, "mail-down", &[]).await;

    hook.wait_for("about the creation", "token.created").await;
    eventually("two failed SMTP attempts", || async { failures(&gw, id).await.len() >= 2 }).await;
    let failed = failures(&gw, id).await;
    assert!(failed.iter().all(|d| d["channel"] == "smtp"), "{failed:#?}");
    assert_eq!(hook.kinds(), ["token.created"], "the mail server's retries do not resend the webhook");

    let sink = SmtpSink::start_on(port).await;
    sink.wait_for("once the mail server is up", |m| m.subject().contains("New API token")).await;
    eventually("the backlog empties", || async { gw.store().outbox_backlog().await.unwrap() == 0 }).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sink.mails().len(), 1);
    assert_eq!(hook.kinds(), ["token.created"]);
}

/// Each outbox row's (attempts, claimed_until, sent_at), and how many delivery rows exist: what
/// a gateway without a channel must leave as it found it.
async fn outbox_rows(url: &str) -> (Vec<(i64, Option<i64>, Option<i64>)>, i64) {
    const ROWS: &str = "SELECT attempts, claimed_until, sent_at FROM outbox ORDER BY id";
    const DELIVERIES: &str = "SELECT COUNT(*) FROM outbox_deliveries";
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let rows = sqlx::query_as(ROWS).fetch_all(&pool).await.unwrap();
        let deliveries = sqlx::query_scalar(DELIVERIES).fetch_one(&pool).await.unwrap();
        pool.close().await;
        (rows, deliveries)
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let rows = sqlx::query_as(ROWS).fetch_all(&pool).await.unwrap();
        let deliveries = sqlx::query_scalar(DELIVERIES).fetch_one(&pool).await.unwrap();
        pool.close().await;
        (rows, deliveries)
    }
}

/// A gateway with no channel, running alone, leaves the notices queued (rows untouched, counted
/// in the backlog); a gateway with a webhook on the same database then delivers them, while the
/// first keeps running.
async fn notices_wait_for_a_gateway_with_a_channel(database: Option<&str>) {
    let shared: Vec<(String, String)> =
        database.map(|url| ("TOKENGATE_DATABASE__URL".to_owned(), url.to_owned())).into_iter().collect();
    let silent = spawn(&shared, Clock::System).await;
    assert_eq!(readyz(&silent).await["notify_channels"], serde_json::json!([]));
    let url = silent.config.database.url.expose().to_owned();
    silent.account(ANN).await;
    let id = create_and_revoke(&silent, "queued").await;
    // Several sender rounds' worth (the sender polls every second, were there one).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(silent.store().outbox_backlog().await.unwrap(), 2);
    assert_eq!(outbox_rows(&url).await, (vec![(0, None, None); 2], 0), "the outbox is untouched");
    assert!(failures(&silent, id).await.is_empty());
    let metrics = crate::support::client().get(format!("http://{}/metrics", silent.admin)).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("tokengate_notification_backlog 2"), "{metrics}");

    let hook = WebhookReceiver::start().await;
    let mut env = webhook_env(&hook);
    env.push(("TOKENGATE_DATABASE__URL".to_owned(), url.clone()));
    let delivering = spawn(&env, Clock::System).await;
    assert_eq!(readyz(&delivering).await["notify_channels"], serde_json::json!(["webhook"]));
    hook.wait_for("about the creation", "token.created").await;
    hook.wait_for("about the revocation", "token.revoked").await;
    eventually("the backlog empties", || async { silent.store().outbox_backlog().await.unwrap() == 0 }).await;
    let (rows, deliveries) = outbox_rows(&url).await;
    assert!(rows.iter().all(|(attempts, _, sent_at)| *attempts == 1 && sent_at.is_some()), "{rows:?}");
    assert_eq!(deliveries, 2);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(hook.kinds(), ["token.created", "token.revoked"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn notices_wait_for_a_gateway_with_a_channel_on_sqlite() {
    notices_wait_for_a_gateway_with_a_channel(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn notices_wait_for_a_gateway_with_a_channel_on_postgres() {
    let Some(db) = TestDatabase::create().await else { return };
    notices_wait_for_a_gateway_with_a_channel(Some(&db.url)).await;
}
