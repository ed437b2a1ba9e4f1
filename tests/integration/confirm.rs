//! A change the data path obeys is obeyed by every running gateway by the time the command
//! that made it tells its user so, through the real binary and real sockets: the very next
//! request after `token create`, `token revoke` or `user set` (on one SQLite gateway, and on
//! each of three gateways sharing PostgreSQL; checked as soon as the command prints its result,
//! even before it exits) and after an admin API change made on another gateway already gets the
//! new answer, with no sleep in between. The gateways poll the change log only every 10 s, so
//! nothing but the commit's wake-up and the command's wait for the fleet makes that hold. A
//! stopped gateway delays a command by `sync.confirm_timeout` and is named, `--no-wait` skips
//! the wait, and `tokengate gateways` / `GET /api/v1/gateways` list exactly the running ones.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::postgres::TestDatabase;
use crate::support::{GatewayProcess, Upstream, client, run_cli_env, write_config_on};

const ROOT: &str = "root@example.com";
const ANN: &str = "ann@example.com";

/// One database (SQLite file or PostgreSQL) shared by the CLI and every gateway started on it,
/// in front of the echo upstream.
struct Fleet {
    dir: TempDir,
    config: PathBuf,
    _upstream: Upstream,
}

impl Fleet {
    async fn sqlite() -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("tokengate.db").display());
        Fleet::new(dir, &url).await
    }

    async fn postgres(db: &TestDatabase) -> Fleet {
        Fleet::new(tempfile::tempdir().unwrap(), &db.url).await
    }

    /// Polling every 10 s: only the wake-up on commit and the wait for confirmation make a
    /// change visible by the next request. Usage is flushed only at shutdown, so a gateway
    /// writes nothing between heartbeats (one stopped mid-write would block SQLite writers).
    async fn new(dir: TempDir, database_url: &str) -> Fleet {
        let upstream = Upstream::start().await;
        let text = format!(
            r#"
[sync]
interval = "10s"

[usage]
flush_interval = "1h"

[[routes]]
prefix = "/"
upstream = "http://{upstream}"
require = {{ GET = "read", "*" = "write" }}
"#,
            upstream = upstream.addr
        );
        let config = write_config_on(dir.path(), database_url, "", &text);
        let fleet = Fleet { dir, config, _upstream: upstream };
        fleet.cli(&["user", "add", ROOT, "--superuser"]);
        fleet.cli(&["user", "add", ANN]);
        fleet
    }

    fn start(&self) -> GatewayProcess {
        GatewayProcess::start(&self.config)
    }

    /// Runs `tokengate ARGS`, which must succeed; returns (stdout, stderr).
    fn cli(&self, args: &[&str]) -> (String, String) {
        self.cli_env(args, &[])
    }

    fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> (String, String) {
        let (code, stdout, stderr) = run_cli_env(&self.config, args, env);
        assert_eq!(code, 0, "tokengate {args:?} in {}: {stderr}", self.dir.path().display());
        (stdout, stderr)
    }

    fn json(&self, args: &[&str]) -> Value {
        self.json_env(args, &[])
    }

    /// Runs `tokengate ARGS --json`; returns the document.
    fn json_env(&self, args: &[&str], env: &[(&str, &str)]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.cli_env(&args, env).0).unwrap()
    }

    /// Starts `tokengate ARGS` and returns as soon as it has printed its first line on `stream`
    /// (past the note naming the configuration, which comes before any work): the moment it
    /// tells its user the result, a little before it exits. Checking the gateways then is
    /// stricter than checking them after the command returned.
    fn reported(&self, args: &[&str], stream: Stream) -> Reported {
        let mut child = crate::support::spawn_cli(&self.config, args);
        let taken: Box<dyn Read + Send> = match stream {
            Stream::Stdout => Box::new(child.stdout.take().unwrap()),
            Stream::Stderr => Box::new(child.stderr.take().unwrap()),
        };
        let mut reader = BufReader::new(taken);
        let mut skipped = String::new();
        let mut first = String::new();
        while first.is_empty() || first.starts_with("config: ") {
            skipped.push_str(&first);
            first.clear();
            assert_ne!(reader.read_line(&mut first).unwrap(), 0, "tokengate {args:?} printed nothing on {stream:?}");
        }
        Reported { child, stream, skipped, first, reader }
    }

    /// `token create` without `--json`: (id, secret, stderr).
    fn create(&self, user: &str, name: &str, scopes: &[&str]) -> (i64, String, String) {
        let mut args = vec!["token", "create", "--user", user, "--name", name];
        for scope in scopes {
            args.extend(["--scope", scope]);
        }
        let (stdout, stderr) = self.cli(&args);
        (created_id(&stderr).parse().unwrap(), stdout.trim().to_owned(), stderr)
    }

    /// `tokengate gateways --json`.
    fn gateways(&self) -> Vec<Value> {
        self.json(&["gateways"]).as_array().unwrap().clone()
    }
}

#[derive(Debug)]
enum Stream {
    Stdout,
    Stderr,
}

/// A command that has printed its first line on one stream and may still be running.
struct Reported {
    child: Child,
    stream: Stream,
    /// The note naming the configuration, read before the first line.
    skipped: String,
    /// That first line.
    first: String,
    reader: BufReader<Box<dyn Read + Send>>,
}

impl Reported {
    /// Waits for the command, which must succeed; returns its whole (stdout, stderr).
    fn finish(mut self) -> (String, String) {
        let mut rest = String::new();
        self.reader.read_to_string(&mut rest).unwrap();
        let output = self.child.wait_with_output().unwrap();
        let taken = self.skipped + &self.first + &rest;
        let other = match self.stream {
            Stream::Stdout => &output.stderr,
            Stream::Stderr => &output.stdout,
        };
        let other = String::from_utf8_lossy(other).into_owned();
        let (stdout, stderr) = match self.stream {
            Stream::Stdout => (taken, other),
            Stream::Stderr => (other, taken),
        };
        assert!(output.status.success(), "{stderr}");
        (stdout, stderr)
    }
}

/// The status of one proxied GET made with `secret` of `user`.
async fn status(gw: &GatewayProcess, user: &str, secret: &str) -> StatusCode {
    client().get(gw.url("/x")).basic_auth(user, Some(secret)).send().await.unwrap().status()
}

/// Calls the admin API of `gw`; returns the status and the JSON body.
async fn api(
    gw: &GatewayProcess,
    method: reqwest::Method,
    path: &str,
    who: (&str, &str),
    body: Option<Value>,
) -> (StatusCode, Value) {
    gw.admin_call(method, path, who, body).await
}

/// The id in `token create`'s first line: `created token 7 (laptop) for ...`.
fn created_id(stderr: &str) -> String {
    stderr.split("created token ").nth(1).and_then(|rest| rest.split(' ').next()).unwrap().to_owned()
}

/// Asserts `stderr` says all `n` running gateways confirmed the change (`...; refused by 3 of 3
/// running gateways after 12 ms`), and warns of none.
fn assert_confirmed_line(stderr: &str, verb: &str, n: usize) {
    let noun = if n == 1 { "gateway" } else { "gateways" };
    let said = format!("; {verb} by {n} of {n} running {noun} after ");
    let line = stderr.lines().find(|l| l.contains(&said)).unwrap_or_else(|| panic!("no {said:?} in {stderr:?}"));
    let ms = line.rsplit(&said).next().unwrap().strip_suffix(" ms").unwrap_or_else(|| panic!("{line:?}"));
    ms.parse::<u64>().unwrap_or_else(|_| panic!("{line:?}"));
    assert!(!stderr.contains("warning"), "{stderr}");
}

/// Asserts the document of a change says all `n` running gateways confirmed it.
fn assert_confirmed_json(doc: &Value, n: u64) {
    assert_eq!(doc["gateways_running"], json!(n), "{doc}");
    assert_eq!(doc["gateways_confirmed"], json!(n), "{doc}");
    assert_eq!(doc["gateways_pending"], json!([]), "{doc}");
    assert!(doc["confirm_ms"].is_u64(), "{doc}");
}

/// The fields that identify a listed gateway: (id, host, pid, proxy, admin).
fn identity(gateway: &Value) -> (String, String, u64, String, String) {
    let text = |key: &str| gateway[key].as_str().unwrap().to_owned();
    (text("id"), text("host"), gateway["pid"].as_u64().unwrap(), text("proxy"), text("admin"))
}

/// Sends SIGCONT to a gateway stopped with SIGSTOP when dropped, so a failing assertion does
/// not leave it stopped.
struct Stopped<'a>(&'a GatewayProcess);

impl<'a> Stopped<'a> {
    fn stop(gw: &'a GatewayProcess) -> Self {
        gw.signal("STOP");
        Stopped(gw)
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        self.0.signal("CONT");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_token_changes_are_obeyed_by_the_next_request() {
    let fleet = Fleet::sqlite().await;
    let gw = fleet.start();
    for round in 0..20 {
        let name = format!("round {round}");
        let created = fleet.reported(&["token", "create", "--user", ANN, "--name", &name], Stream::Stdout);
        let secret = created.first.trim().to_owned();
        assert_eq!(status(&gw, ANN, &secret).await, StatusCode::OK, "round {round}: the new token");
        let (_, stderr) = created.finish();
        assert_confirmed_line(&stderr, "accepted", 1);
        let id = &created_id(&stderr);

        let revoked = fleet.reported(&["token", "revoke", id], Stream::Stderr);
        assert_eq!(status(&gw, ANN, &secret).await, StatusCode::UNAUTHORIZED, "round {round}: the revoked token");
        assert_confirmed_line(&revoked.finish().1, "refused", 1);
    }
    let created = fleet.reported(&["token", "create", "--user", ANN, "--name", "as json", "--json"], Stream::Stdout);
    let created: Value = serde_json::from_str(&created.finish().0).unwrap();
    let secret = created["token"].as_str().unwrap();
    assert_eq!(status(&gw, ANN, secret).await, StatusCode::OK);
    assert_confirmed_json(&created, 1);
    let revoked = fleet.json(&["token", "revoke", &created["id"].to_string()]);
    assert_eq!(status(&gw, ANN, secret).await, StatusCode::UNAUTHORIZED);
    assert_confirmed_json(&revoked, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn blocking_an_account_is_obeyed_by_the_next_request() {
    let fleet = Fleet::sqlite().await;
    let (_, secret, _) = fleet.create(ANN, "laptop", &[]);
    let gw = fleet.start();
    assert_eq!(status(&gw, ANN, &secret).await, StatusCode::OK);
    for flag in ["--can-create-tokens", "--enabled"] {
        for (value, want) in [
            ("false", StatusCode::UNAUTHORIZED),
            ("true", StatusCode::OK),
            ("false", StatusCode::UNAUTHORIZED),
            ("true", StatusCode::OK),
        ] {
            let set = fleet.reported(&["user", "set", ANN, flag, value], Stream::Stderr);
            assert_eq!(status(&gw, ANN, &secret).await, want, "after {flag} {value}");
            assert_confirmed_line(&set.finish().1, "applied", 1);
        }
    }
    let blocked = fleet.json(&["user", "set", ANN, "--enabled", "false"]);
    assert_eq!(status(&gw, ANN, &secret).await, StatusCode::UNAUTHORIZED);
    assert_confirmed_json(&blocked, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn three_gateways_on_postgres_all_obey_each_change_when_the_command_returns() {
    let Some(db) = TestDatabase::create().await else { return };
    let fleet = Fleet::postgres(&db).await;
    let nodes = [fleet.start(), fleet.start(), fleet.start()];
    for round in 0..5 {
        let name = format!("round {round}");
        let created = fleet.reported(&["token", "create", "--user", ANN, "--name", &name], Stream::Stdout);
        let secret = created.first.trim().to_owned();
        for (n, node) in nodes.iter().enumerate() {
            assert_eq!(status(node, ANN, &secret).await, StatusCode::OK, "round {round}, node {n}: the new token");
        }
        let (_, stderr) = created.finish();
        assert_confirmed_line(&stderr, "accepted", 3);
        let id = &created_id(&stderr);
        let revoked = fleet.reported(&["token", "revoke", id], Stream::Stderr);
        for (n, node) in nodes.iter().enumerate() {
            assert_eq!(status(node, ANN, &secret).await, StatusCode::UNAUTHORIZED, "round {round}, node {n}: revoked");
        }
        assert_confirmed_line(&revoked.finish().1, "refused", 3);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_gateway_delays_a_change_by_the_timeout_and_is_named() {
    let fleet = Fleet::sqlite().await;
    let (running, stopped) = (fleet.start(), fleet.start());
    let listed = fleet.gateways();
    let pid = u64::from(stopped.child.id());
    let host = listed.iter().find(|g| g["pid"] == json!(pid)).unwrap()["host"].as_str().unwrap().to_owned();
    let tokens: Vec<(i64, String)> = ["waited", "as json", "no wait", "no wait as json"]
        .iter()
        .map(|name| fleet.create(ANN, name, &[]))
        .map(|(id, secret, _)| (id, secret))
        .collect();
    let timeout = [("TOKENGATE_SYNC__CONFIRM_TIMEOUT", "1s")];

    // Right after a confirmed change, so it holds no SQLite write lock (its next heartbeat is
    // a second away).
    let pause = Stopped::stop(&stopped);
    let started = Instant::now();
    let (_, stderr) = fleet.cli_env(&["token", "revoke", &tokens[0].0.to_string()], &timeout);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "took {waited:?}: {stderr}");
    assert!(stderr.contains("; refused by 1 of 2 running gateways after "), "{stderr}");
    let named = format!("warning: not yet applied by {host} pid {pid} (proxy {}); ", stopped.proxy);
    assert!(stderr.lines().any(|l| l.starts_with(&named)), "no {named:?} in {stderr}");
    assert_eq!(status(&running, ANN, &tokens[0].1).await, StatusCode::UNAUTHORIZED, "the running gateway obeys");

    let revoked = fleet.json_env(&["token", "revoke", &tokens[1].0.to_string()], &timeout);
    assert_eq!((revoked["gateways_running"].as_u64(), revoked["gateways_confirmed"].as_u64()), (Some(2), Some(1)));
    assert!(revoked["confirm_ms"].as_u64().unwrap() >= 900, "{revoked}");
    let pending = revoked["gateways_pending"].as_array().unwrap();
    assert_eq!(pending.len(), 1, "{revoked}");
    assert_eq!(pending[0]["pid"], json!(pid));
    assert_eq!(pending[0]["proxy"], json!(stopped.proxy.to_string()));
    assert_eq!(pending[0]["host"], json!(host));

    let started = Instant::now();
    let (_, stderr) = fleet.cli_env(&["--no-wait", "token", "revoke", &tokens[2].0.to_string()], &timeout);
    let quick = started.elapsed();
    assert!(quick < Duration::from_millis(600), "--no-wait took {quick:?}");
    assert!(!stderr.contains("running gateway") && !stderr.contains("warning"), "{stderr}");
    assert!(stderr.contains(&format!("revoked token {}", tokens[2].0)), "{stderr}");
    let started = Instant::now();
    let unwaited = fleet.json_env(&["--no-wait", "token", "revoke", &tokens[3].0.to_string()], &timeout);
    assert!(started.elapsed() < Duration::from_millis(600), "--no-wait --json took {:?}", started.elapsed());
    assert!(unwaited["revoked_at"].is_string(), "{unwaited}");
    assert!(unwaited.get("gateways_running").is_none() && unwaited.get("gateways_pending").is_none(), "{unwaited}");

    // Resumed, it catches up on its own: here (and only here) the test waits.
    drop(pause);
    for (id, secret) in &tokens {
        let deadline = Instant::now() + Duration::from_secs(5);
        while status(&stopped, ANN, secret).await != StatusCode::UNAUTHORIZED {
            assert!(Instant::now() < deadline, "the resumed gateway still accepts token {id}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_running_gateways_are_listed_and_a_clean_stop_leaves_the_list() {
    let fleet = Fleet::sqlite().await;
    let (one, two) = (fleet.start(), fleet.start());
    let (_, reader, _) = fleet.create(ROOT, "dashboard", &["admin:read"]);
    // Confirmed by both: each has applied the latest change, so neither lags.
    let (_, plain_reader, _) = fleet.create(ANN, "dashboard", &["admin:read"]);

    let mut listed = fleet.gateways();
    listed.sort_by_key(|g| g["pid"].as_u64());
    let mut children = vec![&one, &two];
    children.sort_by_key(|gw| gw.child.id());
    assert_eq!(listed.len(), 2, "{listed:?}");
    for (gateway, child) in listed.iter().zip(&children) {
        assert_eq!(gateway["pid"], json!(child.child.id()), "{gateway}");
        assert_eq!(gateway["proxy"], json!(child.proxy.to_string()), "{gateway}");
        assert_eq!(gateway["admin"], json!(child.admin.to_string()), "{gateway}");
        assert_eq!((gateway["lag_seqs"].as_i64(), gateway["lag_ms"].as_i64()), (Some(0), Some(0)), "{gateway}");
        assert_eq!(gateway["version"], json!(env!("CARGO_PKG_VERSION")));
    }
    let (code, answer) = api(&one, reqwest::Method::GET, "/api/v1/gateways", (ROOT, &reader), None).await;
    assert_eq!(code, StatusCode::OK, "{answer}");
    let mut through_api: Vec<_> = answer.as_array().unwrap().iter().map(identity).collect();
    through_api.sort_by_key(|g| g.2);
    assert_eq!(through_api, listed.iter().map(identity).collect::<Vec<_>>());
    let (code, answer) = api(&one, reqwest::Method::GET, "/api/v1/gateways", (ANN, &plain_reader), None).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "a non-superuser: {answer}");

    let (two_pid, one_pid) = (two.child.id(), one.child.id());
    let (exit, _) = two.terminate();
    assert_eq!(exit, Some(0));
    let listed = fleet.gateways();
    let pids: Vec<_> = listed.iter().map(|g| g["pid"].as_u64().unwrap()).collect();
    assert_eq!(pids, [u64::from(one_pid)], "gateway {two_pid} stopped cleanly and left the list");
    let (_, answer) = api(&one, reqwest::Method::GET, "/api/v1/gateways", (ROOT, &reader), None).await;
    assert_eq!(answer.as_array().unwrap().iter().map(identity).collect::<Vec<_>>(), [identity(&listed[0])]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_api_change_on_one_gateway_is_obeyed_by_the_other_before_the_answer() {
    let fleet = Fleet::sqlite().await;
    let (a, b) = (fleet.start(), fleet.start());
    let (_, admin, _) = fleet.create(ROOT, "admin", &["admin"]);
    let (id, secret, _) = fleet.create(ANN, "laptop", &[]);
    let (_, other, _) = fleet.create(ANN, "desktop", &[]);
    assert_eq!(status(&b, ANN, &secret).await, StatusCode::OK);

    let (code, revoked) = api(&a, reqwest::Method::DELETE, &format!("/api/v1/tokens/{id}"), (ROOT, &admin), None).await;
    assert_eq!(code, StatusCode::OK, "{revoked}");
    assert_eq!(status(&b, ANN, &secret).await, StatusCode::UNAUTHORIZED, "the other gateway refuses at once");
    assert_confirmed_json(&revoked, 2);
    assert_eq!(status(&a, ANN, &secret).await, StatusCode::UNAUTHORIZED);

    // The other way round, for an account: disabled through B, refused by A.
    assert_eq!(status(&a, ANN, &other).await, StatusCode::OK);
    let body = json!({"enabled": false});
    let (code, changed) =
        api(&b, reqwest::Method::PATCH, &format!("/api/v1/users/{ANN}"), (ROOT, &admin), Some(body)).await;
    assert_eq!(code, StatusCode::OK, "{changed}");
    assert_eq!(status(&a, ANN, &other).await, StatusCode::UNAUTHORIZED, "the other gateway blocks the account at once");
    assert_confirmed_json(&changed, 2);
}
