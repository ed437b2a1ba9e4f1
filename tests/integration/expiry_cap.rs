//! A stricter policy reaches existing tokens: `tokengate token list --no-expiry` and
//! `tokengate token cap-expiry [--dry-run] [--json]` through the real binary with a real `serve`
//! process on the same database (SQLite and PostgreSQL), and `POST /api/v1/tokens/cap-expiry`
//! with a clock the test moves: exact new expiries, a dry run that changes nothing, events and
//! notices for each token, the running gateway obeying the new expiry, superusers only.

use std::path::PathBuf;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokengate::clock::{Clock, parse_rfc3339, to_rfc3339};
use tokengate::control::service::{Actor, CreateAccount, ExpiryRequest};

use crate::postgres::TestDatabase;
use crate::support::{GatewayProcess, TestGateway, Upstream, client, run_cli_env, write_config_on};

const ROOT: &str = "root@example.com";
const ANN: &str = "ann@example.com";
const MANAGER: &str = "manager@example.com";
const DAY: i64 = 86_400;
const START: i64 = 1_800_000_000;

/// Tokens minted under a lax policy (`max_lifetime` 400 days, never-expiring allowed), then
/// capped under a strict one (30 days, set in the environment of the commands that apply it).
const LAX: [(&str, &str); 1] = [("TOKENGATE_TOKENS__MAX_LIFETIME", "400d")];
const STRICT: [(&str, &str); 1] = [("TOKENGATE_TOKENS__MAX_LIFETIME", "30d")];

/// A config file and database shared by the CLI and a `serve` process, before the echo upstream.
struct Site {
    dir: TempDir,
    config: PathBuf,
    url: String,
    _upstream: Upstream,
}

impl Site {
    async fn new(database: Option<&TestDatabase>) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let url = match database {
            Some(db) => db.url.clone(),
            None => format!("sqlite://{}", dir.path().join("tokengate.db").display()),
        };
        let upstream = Upstream::start().await;
        let text = format!(
            r#"
[sync]
interval = "10s"

[tokens]
allow_never_expires = true
warn_before = "7d"

[[routes]]
prefix = "/"
upstream = "http://{upstream}"
"#,
            upstream = upstream.addr
        );
        let config = write_config_on(dir.path(), &url, "", &text);
        Site { dir, config, url, _upstream: upstream }
    }

    /// Runs `tokengate ARGS` with `env`; returns (status, stdout, stderr).
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        run_cli_env(&self.config, args, env)
    }

    fn ok(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let (code, stdout, stderr) = self.run(args, env);
        assert_eq!(code, 0, "tokengate {args:?} in {}: {stderr}", self.dir.path().display());
        stdout
    }

    fn json(&self, args: &[&str], env: &[(&str, &str)]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.ok(&args, env)).unwrap()
    }

    /// Mints a token for ann; returns its JSON (with the secret).
    fn token(&self, name: &str, expiry: &[&str]) -> Value {
        let mut args = vec!["token", "create", "--user", ANN, "--name", name];
        args.extend_from_slice(expiry);
        self.json(&args, &LAX)
    }

    /// Runs one statement on the database directly (to make a token old).
    async fn execute(&self, sql: &str) {
        if self.url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(&pool).await.unwrap();
            pool.close().await;
        } else {
            let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }

    /// How many notices of `kind` are queued for `token`.
    async fn notices(&self, kind: &str, token: i64) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM outbox WHERE kind = '{kind}' AND token_id = {token}");
        if self.url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
            let count = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&pool).await.unwrap();
            pool.close().await;
            count
        } else {
            let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
            let count = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&pool).await.unwrap();
            pool.close().await;
            count
        }
    }
}

fn id(token: &Value) -> i64 {
    token["id"].as_i64().unwrap()
}

fn unix(value: &Value) -> i64 {
    parse_rfc3339(value.as_str().unwrap()).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The names in a listing, sorted.
fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().into()).collect();
    names.sort();
    names
}

async fn cap_expiry_through_the_cli(database: Option<&TestDatabase>) {
    let site = Site::new(database).await;
    site.ok(&["user", "add", ROOT, "--superuser"], &[]);
    site.ok(&["user", "add", ANN], &[]);
    let forever = site.token("forever", &["--never-expires"]);
    let long = site.token("long", &["--expires-in", "300d"]);
    let short = site.token("short", &["--expires-in", "10d"]);
    let old = site.token("old", &["--never-expires"]);
    let dead = site.token("dead", &["--never-expires"]);
    site.ok(&["token", "revoke", &id(&dead).to_string()], &[]);
    // "old" was minted 100 days ago: past the new maximum already.
    let old_created = now() - 100 * DAY;
    site.execute(&format!("UPDATE tokens SET created_at = {old_created} WHERE id = {}", id(&old))).await;

    // The tokens without expiry, live ones by default.
    assert_eq!(names(&site.json(&["token", "list", "--no-expiry"], &[])), ["forever", "old"]);
    assert_eq!(
        names(&site.json(&["token", "list", "--no-expiry", "--status", "all"], &[])),
        ["dead", "forever", "old"]
    );

    // Without a max_lifetime the operator chose, nothing is capped.
    let (code, _, stderr) = site.run(&["token", "cap-expiry", "--dry-run"], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("tokengate:") && l.contains("tokens.max_lifetime")), "{stderr}");

    let gateway = GatewayProcess::start(&site.config);

    // The dry run: exactly what would change, and nothing changes.
    let before = now();
    let plan = site.json(&["token", "cap-expiry", "--dry-run"], &STRICT);
    let after = now();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["max_lifetime"], "30d");
    assert!(plan.get("gateways_running").is_none(), "a dry run waits for nobody: {plan}");
    let tokens = plan["tokens"].as_array().unwrap();
    let ids: Vec<i64> = tokens.iter().map(id).collect();
    assert_eq!(ids, [id(&forever), id(&long), id(&old)], "{plan:#}");
    let created = |token: &Value| unix(&token["created_at"]);
    assert_eq!(
        tokens[0],
        json!({"id": id(&forever), "user": ANN, "name": "forever", "prefix": forever["prefix"],
               "old_expires_at": null, "new_expires_at": to_rfc3339(created(&forever) + 30 * DAY)})
    );
    assert_eq!(
        tokens[1],
        json!({"id": id(&long), "user": ANN, "name": "long", "prefix": long["prefix"],
               "old_expires_at": long["expires_at"], "new_expires_at": to_rfc3339(created(&long) + 30 * DAY)})
    );
    // Older than the maximum: the grace (tokens.warn_before) from now.
    assert_eq!(tokens[2]["old_expires_at"], Value::Null);
    let grace = unix(&tokens[2]["new_expires_at"]);
    assert!((before + 7 * DAY..=after + 7 * DAY).contains(&grace), "{plan:#}");
    assert_eq!(site.json(&["token", "show", &id(&forever).to_string()], &[])["expires_at"], Value::Null);
    assert!(site.json(&["events", "--kind", "token.expiry_capped"], &[]).as_array().unwrap().is_empty());
    assert_eq!(site.notices("token.expiry_capped", id(&forever)).await, 0);

    // Without --json: a table, and a note saying nothing changed.
    let (code, table, note) = site.run(&["token", "cap-expiry", "--dry-run"], &STRICT);
    assert_eq!(code, 0, "{note}");
    assert!(table.lines().next().unwrap().split_whitespace().eq([
        "ID",
        "USER",
        "NAME",
        "PREFIX",
        "OLD_EXPIRES",
        "NEW_EXPIRES"
    ]));
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table.lines().any(|l| l.contains("forever") && l.contains("never")), "{table}");
    assert!(note.contains("would cap the expiry of 3 token(s)") && note.contains("nothing changed"), "{note}");

    // The real run: the running gateway applies it before the command returns.
    let capped = site.json(&["token", "cap-expiry"], &STRICT);
    assert_eq!(capped["dry_run"], false);
    assert_eq!((capped["gateways_running"].as_i64(), capped["gateways_confirmed"].as_i64()), (Some(1), Some(1)));
    let changed: Vec<i64> = capped["tokens"].as_array().unwrap().iter().map(id).collect();
    assert_eq!(changed, ids);
    assert_eq!(capped["tokens"][0], tokens[0]);
    assert_eq!(capped["tokens"][1], tokens[1]);
    let new_long = capped["tokens"][1]["new_expires_at"].clone();
    assert_eq!(site.json(&["token", "show", &id(&long).to_string()], &[])["expires_at"], new_long);
    assert_eq!(site.json(&["token", "show", &id(&short).to_string()], &[])["expires_at"], short["expires_at"]);
    assert_eq!(site.json(&["token", "show", &id(&dead).to_string()], &[])["expires_at"], Value::Null, "dead stays");
    let response =
        client().get(gateway.url("/x")).basic_auth(ANN, Some(long["token"].as_str().unwrap())).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-auth-token-expires"].to_str().unwrap(), new_long.as_str().unwrap());

    // One event (old and new expiry) and one notice per token.
    let events = site.json(&["events", "--kind", "token.expiry_capped"], &[]);
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 3);
    let about_long = events.iter().find(|e| e["token_id"] == id(&long)).unwrap();
    assert_eq!(about_long["account"], ANN);
    assert!(about_long["actor"].as_str().unwrap().starts_with("cli:"));
    assert_eq!(about_long["detail"]["old_expires_at"], long["expires_at"]);
    assert_eq!(about_long["detail"]["new_expires_at"], new_long);
    assert_eq!(about_long["detail"]["max_lifetime"], "30d");
    for token in [&forever, &long, &old] {
        assert_eq!(site.notices("token.expiry_capped", id(token)).await, 1, "{token}");
    }
    assert_eq!(site.notices("token.expiry_capped", id(&short)).await, 0);

    // Nothing outlives the maximum any more.
    let again = site.json(&["token", "cap-expiry"], &STRICT);
    assert_eq!(again["tokens"], json!([]));
    assert!(again.get("gateways_running").is_none(), "nothing changed, nothing to wait for: {again}");
    let (_, _, note) = site.run(&["token", "cap-expiry"], &STRICT);
    assert!(note.contains("nothing changed"), "{note}");
    assert!(site.json(&["token", "list", "--no-expiry"], &[]).as_array().unwrap().is_empty());
    drop(gateway);
}

#[tokio::test(flavor = "multi_thread")]
async fn cap_expiry_through_the_cli_on_sqlite() {
    cap_expiry_through_the_cli(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cap_expiry_through_the_cli_on_postgres() {
    let Some(db) = TestDatabase::create().await else { return };
    cap_expiry_through_the_cli(Some(&db)).await;
}

/// Calls the admin API as (email, secret); returns the status and the JSON answer.
async fn call(
    gw: &TestGateway,
    method: reqwest::Method,
    path: &str,
    who: (&str, &str),
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = client().request(method, format!("http://{}{path}", gw.admin)).basic_auth(who.0, Some(who.1));
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_owned());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null))
}

async fn proxied(gw: &TestGateway, secret: &str) -> reqwest::Response {
    client().get(gw.url("/x")).basic_auth(ANN, Some(secret)).send().await.unwrap()
}

async fn cap_expiry_through_the_api(database: Option<&str>) {
    let clock = Clock::manual(START);
    let mut env = vec![("TOKENGATE_TOKENS__MAX_LIFETIME", "30d")];
    if let Some(url) = database {
        env.push(("TOKENGATE_DATABASE__URL", url));
    }
    let gw = TestGateway::spawn_with("", &env, clock.clone()).await;
    for (email, superuser, token_manager) in [(ROOT, true, false), (MANAGER, false, true), (ANN, false, false)] {
        let request = CreateAccount {
            email: email.into(),
            superuser,
            token_manager,
            can_create_tokens: true,
            ..Default::default()
        };
        gw.service.create_account(request, &Actor::cli()).await.unwrap();
    }
    let (early, early_secret) = gw.token_with(ANN, "early", &["read"], ExpiryRequest::Never).await;
    clock.advance(40 * DAY);
    let (fresh, fresh_secret) = gw.token_with(ANN, "fresh", &["read"], ExpiryRequest::Never).await;
    // The callers' tokens live the default 30 days from now.
    let (_, root) = gw.token(ROOT, "admin", &["*"]).await;
    let (_, manager) = gw.token(MANAGER, "admin", &["*"]).await;
    let (_, ann) = gw.token(ANN, "admin", &["read", "admin"]).await;

    // The listing's filter.
    let (status, listed) =
        call(&gw, reqwest::Method::GET, "/api/v1/tokens?no_expiry=true&sort=created", (ROOT, &root), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(names(&listed), ["early", "fresh"]);
    let (_, listed) = call(&gw, reqwest::Method::GET, "/api/v1/tokens?no_expiry=false", (ROOT, &root), None).await;
    assert_eq!(listed.as_array().unwrap().len(), 5);

    // Superusers only.
    let post = reqwest::Method::POST;
    for who in [(ANN, ann.as_str()), (MANAGER, manager.as_str())] {
        let (status, body) =
            call(&gw, post.clone(), "/api/v1/tokens/cap-expiry", who, Some(r#"{"dry_run": true}"#)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who:?}: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    let (status, body) =
        call(&gw, post.clone(), "/api/v1/tokens/cap-expiry", (ROOT, &root), Some(r#"{"dryrun": true}"#)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // The dry run: "early" (40 days old) gets the grace from now, "fresh" its 30 days.
    let now = START + 40 * DAY;
    let expected = json!([
        {"id": early, "user": ANN, "name": "early", "prefix": gw.service.token(early).await.unwrap().prefix,
         "old_expires_at": null, "new_expires_at": to_rfc3339(now + 7 * DAY)},
        {"id": fresh, "user": ANN, "name": "fresh", "prefix": gw.service.token(fresh).await.unwrap().prefix,
         "old_expires_at": null, "new_expires_at": to_rfc3339(now + 30 * DAY)},
    ]);
    let (status, plan) =
        call(&gw, post.clone(), "/api/v1/tokens/cap-expiry", (ROOT, &root), Some(r#"{"dry_run": true}"#)).await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan, json!({"dry_run": true, "max_lifetime": "30d", "tokens": expected}));
    assert_eq!(gw.service.token(early).await.unwrap().expires_at, None, "a dry run changes nothing");
    assert!(proxied(&gw, &early_secret).await.headers().get("x-auth-token-expires").is_none());

    // An empty body is a real run; it answers once the gateway applied it.
    let (status, capped) = call(&gw, post.clone(), "/api/v1/tokens/cap-expiry", (ROOT, &root), None).await;
    assert_eq!(status, StatusCode::OK, "{capped}");
    assert_eq!((capped["dry_run"].as_bool(), capped["tokens"].clone()), (Some(false), expected));
    assert_eq!(capped["gateways_confirmed"], capped["gateways_running"]);
    let response = proxied(&gw, &early_secret).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-auth-token-expires"].to_str().unwrap(), to_rfc3339(now + 7 * DAY));
    let events = gw.service.events(None, Some(early), 100).await.unwrap();
    let event = events.iter().find(|e| e.kind == "token.expiry_capped").unwrap();
    assert_eq!(event.actor, ROOT);
    let detail: Value = serde_json::from_str(&event.detail).unwrap();
    assert_eq!(
        (detail["old_expires_at"].clone(), detail["new_expires_at"].clone()),
        (Value::Null, json!(to_rfc3339(now + 7 * DAY)))
    );

    // Eight days on, the capped token has expired in the running gateway; the fresh one works.
    clock.advance(8 * DAY);
    assert_eq!(proxied(&gw, &early_secret).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(proxied(&gw, &fresh_secret).await.status(), StatusCode::OK);
    let (_, again) = call(&gw, post, "/api/v1/tokens/cap-expiry", (ROOT, &root), Some("{}")).await;
    assert_eq!(again["tokens"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn cap_expiry_through_the_api_on_sqlite() {
    cap_expiry_through_the_api(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cap_expiry_through_the_api_on_postgres() {
    let Some(db) = TestDatabase::create().await else { return };
    cap_expiry_through_the_api(Some(&db.url)).await;
}

#[tokio::test]
async fn the_api_refuses_cap_expiry_without_a_configured_max_lifetime() {
    let gw = TestGateway::spawn().await;
    let request = CreateAccount { email: ROOT.into(), superuser: true, can_create_tokens: true, ..Default::default() };
    gw.service.create_account(request, &Actor::cli()).await.unwrap();
    let (_, root) = gw.token(ROOT, "admin", &["*"]).await;
    let (status, body) =
        call(&gw, reqwest::Method::POST, "/api/v1/tokens/cap-expiry", (ROOT, &root), Some(r#"{"dry_run": true}"#))
            .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("tokens.max_lifetime"), "{body}");
}
