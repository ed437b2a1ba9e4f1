//! Notifications to token owners, delivered to a real SMTP listener (and a real webhook
//! receiver): creation and revocation with time, IP and user agent; delivery after a restart
//! while the mail server was down; expiry reminders; the inactivity policy.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use tokengate::clock::Clock;
use tokengate::service::{Actor, ExpiryRequest};

use crate::smtp::SmtpSink;
use crate::support::{TestGateway, closed_port};

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
        authority: tokengate::service::Authority::Host,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn creation_and_revocation_are_emailed_with_time_ip_and_user_agent() {
    let sink = SmtpSink::start().await;
    let gw = spawn(&smtp_env(sink.addr), Clock::System).await;
    gw.account(ANN).await;
    let request = tokengate::service::CreateToken {
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
    let events = gw.service.events(None, Some(created.token.id), 10).await.unwrap();
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
    let received: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let store = Arc::clone(&received);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let store = Arc::clone(&store);
            let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let store = Arc::clone(&store);
                async move {
                    use http_body_util::BodyExt;
                    let signature = request
                        .headers()
                        .get("x-tokengate-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    store.lock().unwrap().push((signature, String::from_utf8_lossy(&body).into_owned()));
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                        bytes::Bytes::new(),
                    )))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    let env = vec![
        ("TOKENGATE_NOTIFY__WEBHOOK_URL".to_owned(), format!("http://{addr}/hook")),
        ("TOKENGATE_NOTIFY__WEBHOOK_SECRET".to_owned(), "s3cret".to_owned()),
    ];
    let gw = spawn(&env, Clock::System).await;
    gw.account(ANN).await;
    gw.token(ANN, "hooked", &[]).await;
    let started = Instant::now();
    let (signature, body) = loop {
        if let Some(delivery) = received.lock().unwrap().first().cloned() {
            break delivery;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no webhook delivery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["kind"], "token.created");
    assert_eq!(json["recipient"], ANN);
    assert_eq!(json["event"]["detail"]["name"], "hooked");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(body.as_bytes());
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(signature, format!("sha256={expected}"));
}
