//! Usage counters through the real binary: a known mix of requests over two routes and every
//! outcome gives exact counts per route and outcome; the counts survive SIGTERM (the flush
//! interval is an hour, so only the shutdown flush writes them), add up across a restart and
//! across two gateways on one database (a SQLite file, and PostgreSQL); the CLI, the admin API
//! and the listings (`requests_30d`, `--sort -requests_30d`) show them; old rows are pruned in
//! batches.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use tempfile::TempDir;
use tokengate::clock::{Clock, utc_day};
use tokengate::config::{Config, SecretUrl};
use tokengate::control::service::{Actor, CreateAccount, CreateToken, ExpiryRequest, LifecycleService};
use tokengate::control::store::{ActivityBatch, Store, UsageCount};
use tokengate::model::UsageOutcome;

use crate::postgres::TestDatabase;
use crate::support::{GatewayProcess, Upstream, cli_ok, config_text, run_cli_env};

const APP_USER: &str = "ann@example.com";
const BOSS: &str = "boss@example.com";

/// (route, outcome) → requests.
type Counts = BTreeMap<(String, String), i64>;

/// A directory, an echo upstream, a config file and the environment every command gets (the
/// database, and a flush interval of an hour: counts reach the database only at SIGTERM).
struct Fixture {
    _dir: TempDir,
    _upstream: Upstream,
    config: PathBuf,
    env: Vec<(String, String)>,
}

impl Fixture {
    async fn new(database_url: Option<&str>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let upstream = Upstream::start().await;
        let config = dir.path().join("tokengate.toml");
        std::fs::write(&config, config_text(dir.path(), upstream.addr, "")).unwrap();
        let mut env = vec![("TOKENGATE_USAGE__FLUSH_INTERVAL".to_owned(), "1h".to_owned())];
        if let Some(url) = database_url {
            env.push(("TOKENGATE_DATABASE__URL".to_owned(), url.to_owned()));
        }
        Fixture { _dir: dir, _upstream: upstream, config, env }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    /// Runs the CLI; asserts success and returns stdout.
    async fn cli(&self, args: &[&str]) -> String {
        cli_ok(&self.config, args, &self.env()).await
    }

    async fn cli_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let stdout = self.cli(&all).await;
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
    }

    async fn token(&self, user: &str, name: &str, scopes: &[&str]) -> (i64, String) {
        let mut args = vec!["token", "create", "--user", user, "--name", name];
        for scope in scopes {
            args.extend(["--scope", scope]);
        }
        let created = self.cli_json(&args).await;
        (created["id"].as_i64().unwrap(), created["token"].as_str().unwrap().to_owned())
    }

    fn start(&self) -> GatewayProcess {
        GatewayProcess::start_with_env(&self.config, &self.env())
    }
}

/// The tokens the mix presents.
struct Tokens {
    app: (i64, String),
    slow: (i64, String),
    old: (i64, String),
}

async fn tokens(fixture: &Fixture) -> Tokens {
    fixture.cli(&["user", "add", APP_USER]).await;
    let app = fixture.token(APP_USER, "app", &["read"]).await;
    let slow = fixture.token(APP_USER, "slow", &["read"]).await;
    fixture.cli(&["token", "set-limit", &slow.0.to_string(), "2/min", "--no-wait"]).await;
    let old = fixture.token(APP_USER, "old", &["read"]).await;
    fixture.cli(&["token", "revoke", &old.0.to_string(), "--no-wait"]).await;
    Tokens { app, slow, old }
}

/// Sends the mix through `gateway`: every outcome on route `/`, 502s on route `/dead`, and
/// requests that must not be counted (a public route, an unknown token, no credentials).
async fn send_mix(gateway: &GatewayProcess, tokens: &Tokens) {
    // No redirects followed: a 302 is an outcome of its own.
    let client = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let send = |method: reqwest::Method, path: &str, secret: &str, expected: u16| {
        let request = client.request(method, gateway.url(path)).basic_auth(APP_USER, Some(secret));
        let path = path.to_owned();
        async move {
            let status = request.send().await.unwrap().status().as_u16();
            assert_eq!(status, expected, "{path}");
        }
    };
    let (app, slow, old) = (&tokens.app.1, &tokens.slow.1, &tokens.old.1);
    for _ in 0..3 {
        send(reqwest::Method::GET, "/status/200", app, 200).await;
    }
    send(reqwest::Method::GET, "/status/302", app, 302).await;
    send(reqwest::Method::GET, "/status/404", app, 404).await;
    send(reqwest::Method::GET, "/status/409", app, 409).await;
    send(reqwest::Method::GET, "/status/503", app, 503).await;
    send(reqwest::Method::GET, "/dead/a", app, 502).await;
    send(reqwest::Method::GET, "/dead/b", app, 502).await;
    send(reqwest::Method::POST, "/needs-write", app, 403).await;
    send(reqwest::Method::GET, "/public/free", app, 200).await;
    send(reqwest::Method::GET, "/a", slow, 200).await;
    send(reqwest::Method::GET, "/b", slow, 200).await;
    send(reqwest::Method::GET, "/c", slow, 429).await;
    send(reqwest::Method::GET, "/x", old, 401).await;
    send(reqwest::Method::GET, "/y", old, 401).await;
    send(reqwest::Method::GET, "/x", "tg_unknown_secret", 401).await;
    let anonymous = client.get(gateway.url("/x")).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
}

/// What one [`send_mix`] counts, per token, times `runs`.
fn expected(tokens: &Tokens, runs: i64) -> BTreeMap<i64, Counts> {
    let rows = |rows: &[(&str, &str, i64)]| -> Counts {
        rows.iter().map(|(route, outcome, n)| ((route.to_string(), outcome.to_string()), n * runs)).collect()
    };
    BTreeMap::from([
        (
            tokens.app.0,
            rows(&[
                ("/", "2xx", 3),
                ("/", "3xx", 1),
                ("/", "4xx", 2),
                ("/", "5xx", 1),
                ("/", "forbidden", 1),
                ("/dead", "5xx", 2),
            ]),
        ),
        (tokens.slow.0, rows(&[("/", "2xx", 2), ("/", "limited", 1)])),
        (tokens.old.0, rows(&[("/", "refused", 2)])),
    ])
}

/// The usage document's rows summed per (route, outcome) (a run that crosses midnight UTC
/// splits a count over two days), after checking the document's own shape.
fn counts_of(document: &Value, token_id: i64) -> Counts {
    assert_eq!(document["token_id"], token_id);
    assert_eq!(document["days"], 30);
    let today = tokengate::clock::day_to_date(utc_day(Clock::System.now()));
    let mut counts = Counts::new();
    let mut total = 0;
    for row in document["rows"].as_array().unwrap() {
        let day = row["day"].as_str().unwrap();
        assert!(day <= today.as_str() && day.len() == 10, "{row}");
        let requests = row["requests"].as_i64().unwrap();
        *counts.entry((row["route"].as_str().unwrap().into(), row["outcome"].as_str().unwrap().into())).or_default() +=
            requests;
        total += requests;
    }
    assert_eq!(document["total"], total, "{document}");
    counts
}

async fn check_counts(fixture: &Fixture, tokens: &Tokens, runs: i64) {
    for (token_id, counts) in expected(tokens, runs) {
        let document = fixture.cli_json(&["token", "usage", &token_id.to_string()]).await;
        assert_eq!(counts_of(&document, token_id), counts, "token {token_id} after {runs} run(s): {document}");
    }
}

/// Terminates on a blocking thread; asserts a clean exit.
async fn terminate(gateway: GatewayProcess) {
    let (code, log) = tokio::task::spawn_blocking(move || gateway.terminate()).await.unwrap();
    assert_eq!(code, Some(0), "the gateway did not exit cleanly on SIGTERM; log:\n{}", log.join("\n"));
}

/// The whole story on one database: one gateway, a restart, then two gateways at once.
async fn counts_add_up(database_url: Option<&str>) {
    let fixture = Fixture::new(database_url).await;
    let tokens = tokens(&fixture).await;

    let gateway = fixture.start();
    send_mix(&gateway, &tokens).await;
    terminate(gateway).await;
    check_counts(&fixture, &tokens, 1).await;

    let gateway = fixture.start();
    send_mix(&gateway, &tokens).await;
    terminate(gateway).await;
    check_counts(&fixture, &tokens, 2).await;

    let (one, two) = (fixture.start(), fixture.start());
    send_mix(&one, &tokens).await;
    send_mix(&two, &tokens).await;
    terminate(one).await;
    terminate(two).await;
    check_counts(&fixture, &tokens, 4).await;

    // The listing carries each token's 30-day total and sorts by it.
    let listed = fixture.cli_json(&["token", "list", "--status", "all", "--sort", "-requests_30d"]).await;
    let listed: Vec<(i64, i64)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_i64().unwrap(), t["requests_30d"].as_i64().unwrap()))
        .collect();
    assert_eq!(listed, [(tokens.app.0, 40), (tokens.slow.0, 12), (tokens.old.0, 8)]);
    let ascending = fixture.cli_json(&["token", "list", "--status", "all", "--sort", "requests_30d"]).await;
    assert_eq!(ascending[0]["id"], tokens.old.0);

    // The admin API answers the same document as the CLI, to the owner and to a superuser.
    fixture.cli(&["user", "add", BOSS, "--superuser"]).await;
    let boss = fixture.token(BOSS, "admin", &["admin:read"]).await;
    let owner = fixture.token(APP_USER, "reader", &["admin:read"]).await;
    let gateway = fixture.start();
    let path = format!("/api/v1/tokens/{}/usage", tokens.app.0);
    let from_cli = fixture.cli_json(&["token", "usage", &tokens.app.0.to_string()]).await;
    for who in [(BOSS, boss.1.as_str()), (APP_USER, owner.1.as_str())] {
        let (status, document) = gateway.admin_call(reqwest::Method::GET, &path, who, None).await;
        assert_eq!(status, 200, "{document}");
        assert_eq!(document, from_cli);
    }
    let (status, listed) =
        gateway.admin_call(reqwest::Method::GET, "/api/v1/tokens?status=all", (BOSS, &boss.1), None).await;
    assert_eq!(status, 200);
    let app = listed.as_array().unwrap().iter().find(|t| t["id"] == tokens.app.0).unwrap();
    assert_eq!(app["requests_30d"], 40);
    let (status, narrowed) =
        gateway.admin_call(reqwest::Method::GET, &format!("{path}?days=1"), (BOSS, &boss.1), None).await;
    assert_eq!((status.as_u16(), narrowed["days"].as_i64()), (200, Some(1)));
    let (status, refused) =
        gateway.admin_call(reqwest::Method::GET, &format!("{path}?days=401"), (BOSS, &boss.1), None).await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("keep_days"), "{refused}");
    let (status, _) =
        gateway.admin_call(reqwest::Method::GET, &format!("{path}?days=soon"), (BOSS, &boss.1), None).await;
    assert_eq!(status, 400);
    terminate(gateway).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_are_exact_survive_restarts_and_add_up_across_gateways_on_sqlite() {
    counts_add_up(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_are_exact_survive_restarts_and_add_up_across_gateways_on_postgres() {
    let Some(db) = TestDatabase::create().await else { return };
    counts_add_up(Some(&db.url)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn another_accounts_token_usage_is_not_found_and_the_human_table_reads() {
    let fixture = Fixture::new(None).await;
    let tokens = tokens(&fixture).await;
    fixture.cli(&["user", "add", "eve@example.com"]).await;
    let eve = fixture.token("eve@example.com", "eve", &["admin:read"]).await;
    let gateway = fixture.start();
    send_mix(&gateway, &tokens).await;
    let path = format!("/api/v1/tokens/{}/usage", tokens.app.0);
    let (status, _) = gateway.admin_call(reqwest::Method::GET, &path, ("eve@example.com", &eve.1), None).await;
    assert_eq!(status, 404, "another account's token is not found");
    terminate(gateway).await;
    let table = fixture.cli(&["token", "usage", &tokens.app.0.to_string()]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("DAY") && lines[0].contains("ROUTE") && lines[0].contains("REQUESTS"), "{table}");
    assert!(lines.iter().any(|l| l.contains("/dead") && l.contains("5xx") && l.trim_end().ends_with('2')), "{table}");
    let (code, _, stderr) = run_cli_env(&fixture.config, &["token", "usage", "999999"], &fixture.env());
    assert_ne!(code, 0);
    assert!(stderr.contains("999999"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn counting_can_be_turned_off() {
    let fixture = Fixture::new(None).await;
    let tokens = tokens(&fixture).await;
    let mut env = fixture.env();
    env.push(("TOKENGATE_USAGE__COUNTERS", "false"));
    let gateway = GatewayProcess::start_with_env(&fixture.config, &env);
    send_mix(&gateway, &tokens).await;
    terminate(gateway).await;
    let document = fixture.cli_json(&["token", "usage", &tokens.app.0.to_string()]).await;
    assert_eq!((document["total"].as_i64(), document["rows"].as_array().map(Vec::len)), (Some(0), Some(0)));
    let shown = fixture.cli_json(&["token", "show", &tokens.app.0.to_string()]).await;
    assert!(shown["last_used_at"].is_string(), "last use is still recorded: {shown}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_older_than_keep_days_are_pruned_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let url = SecretUrl::new(format!("sqlite://{}", dir.path().join("usage.db").display()));
    let store = Store::open(&url).await.unwrap();
    let service =
        LifecycleService::new(store.clone(), Config::load(None, Vec::new()).unwrap().tokens, Clock::System, None)
            .with_usage_retention(30);
    let account = CreateAccount { email: APP_USER.into(), can_create_tokens: true, ..CreateAccount::default() };
    service.create_account(account, &Actor::cli()).await.unwrap();
    let request = CreateToken {
        owner_email: APP_USER.into(),
        name: "app".into(),
        description: None,
        expiry: ExpiryRequest::Default,
        scopes: vec![],
        rate_limit: None,
    };
    let id = service.create_token(request, &Actor::cli()).await.unwrap().token.id;
    let today = utc_day(Clock::System.now());
    let route: Arc<str> = Arc::from("/");
    let row = |day: i64| UsageCount {
        token_id: id.0,
        day,
        route: route.clone(),
        outcome: UsageOutcome::Success,
        requests: 1,
    };
    // 12 000 rows past the 30 days kept (more than two pruning batches), and the 30 days.
    let counts: Vec<UsageCount> = (30..12_030).chain(0..30).map(|ago| row(today - ago)).collect();
    store.record_activity(&ActivityBatch { counts, ..ActivityBatch::default() }).await.unwrap();
    assert_eq!(service.prune_usage().await.unwrap(), 12_000);
    let kept = store.token_usage(id, today - 100_000).await.unwrap();
    assert_eq!(kept.len(), 30);
    assert_eq!(kept.first().map(|r| r.day), Some(today - 29));
    assert_eq!(service.prune_usage().await.unwrap(), 0);
    let (_, _, rows) = service.token_usage(id, Some(30), &Actor::cli()).await.unwrap();
    assert_eq!(rows.len(), 30);
    let too_far = service.token_usage(id, Some(31), &Actor::cli()).await.unwrap_err().to_string();
    assert!(too_far.contains("keep_days"), "{too_far}");
}
