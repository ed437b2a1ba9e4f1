//! The command line through the real binary: accounts, tokens, the audit log, configuration
//! errors and `check-config`. Each test has its own directory, config file and SQLite database.
//!
//! These tests drive only child processes, so they are plain `#[test]`s.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{binary, closed_port, config_text, run_cli};

/// The fields of docs/reference.md's "Token JSON".
const TOKEN_FIELDS: &[&str] = &[
    "id",
    "user",
    "name",
    "prefix",
    "scopes",
    "rate_limit",
    "created_at",
    "created_by",
    "expires_at",
    "revoked_at",
    "status",
    "last_used_at",
    "last_used_method",
    "last_used_path",
    "last_used_ip",
    "revoked_by",
    "revoke_reason",
    "rotated_from",
    "rotated_to",
    "refused_count",
    "refused_last_at",
    "refused_last_ip",
    "refused_last_method",
    "refused_last_path",
];

const EVENT_FIELDS: &[&str] = &["id", "at", "kind", "actor", "account", "token_id", "ip", "user_agent", "detail"];

/// One CLI run's outcome.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts success and parses stdout as exactly one JSON document.
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "expected success: {self:?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:?}"))
    }

    /// Asserts the exit status and that stderr is exactly one line starting `tokengate:`
    /// besides the note naming the configuration (`config: ...`); returns that line.
    fn error(&self, code: i32) -> &str {
        assert_eq!(self.code, code, "unexpected exit status: {self:?}");
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.starts_with("config: ")).collect();
        assert_eq!(lines.len(), 1, "expected one line on stderr: {self:?}");
        assert!(lines[0].starts_with("tokengate:"), "expected `tokengate:` first: {self:?}");
        lines[0]
    }
}

/// A directory with a config file (from [`config_text`]) whose database lives in the directory.
struct Setup {
    dir: TempDir,
    config: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        Self::with_extra("")
    }

    fn with_extra(extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("tokengate.toml");
        std::fs::write(&config, config_text(dir.path(), closed_port(), extra)).unwrap();
        Setup { dir, config }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("tokengate.db")
    }

    fn run(&self, args: &[&str]) -> Run {
        let (code, stdout, stderr) = run_cli(&self.config, args);
        Run { code, stdout, stderr }
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        run_with(Some(&self.config), args, env)
    }

    fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, 0, "tokengate {args:?} failed: {run:?}");
        run
    }

    fn add_user(&self, email: &str) {
        self.ok(&["user", "add", email]);
    }

    /// Mints a token; returns its JSON (with `token`, the secret).
    fn create_token(&self, email: &str, name: &str) -> Value {
        self.ok(&["token", "create", "--user", email, "--name", name, "--json"]).json()
    }

    fn token_list(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["token", "list", "--json"];
        all.extend_from_slice(args);
        self.ok(&all).json().as_array().unwrap().clone()
    }

    fn events(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["events", "--json"];
        all.extend_from_slice(args);
        self.ok(&all).json().as_array().unwrap().clone()
    }
}

/// Runs the binary with an optional `--config`, the given environment additions, and no
/// inherited `TOKENGATE_*` variables.
fn run_with(config: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(binary());
    for (name, _) in std::env::vars() {
        if name.starts_with("TOKENGATE_") {
            command.env_remove(name);
        }
    }
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let output = command.args(args).envs(env.iter().copied()).output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn ids(tokens: &[Value]) -> Vec<i64> {
    tokens.iter().map(|t| t["id"].as_i64().unwrap()).collect()
}

fn unix(rfc3339: &Value) -> i64 {
    let text = rfc3339.as_str().unwrap_or_else(|| panic!("not a time: {rfc3339}"));
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
        .unix_timestamp()
}

#[test]
fn user_add_prints_the_account_and_refuses_duplicates_and_bad_emails() {
    let setup = Setup::new();
    let account = setup.run(&["user", "add", "ann@example.com", "--name", "Ann", "--json"]).json();
    assert_eq!(account["email"], "ann@example.com");
    assert_eq!(account["name"], "Ann");
    assert_eq!(account["superuser"], false);
    assert_eq!(account["token_manager"], false);
    assert_eq!(account["enabled"], true);
    assert_eq!(account["can_create_tokens"], true);

    let boss = setup
        .run(&["user", "add", "boss@example.com", "--superuser", "--token-manager", "--no-token-permission", "--json"])
        .json();
    assert_eq!(boss["email"], "boss@example.com");
    assert_eq!(boss["name"], Value::Null);
    assert_eq!(boss["superuser"], true);
    assert_eq!(boss["token_manager"], true);
    assert_eq!(boss["can_create_tokens"], false);

    // Without --json: nothing on stdout, a note on stderr.
    let plain = setup.ok(&["user", "add", "carl@example.com"]);
    assert_eq!(plain.stdout, "", "{plain:?}");

    // The same email in another case is a duplicate.
    let duplicate = setup.run(&["user", "add", "ANN@Example.COM"]);
    let line = duplicate.error(1);
    assert!(line.to_lowercase().contains("ann@example.com"), "{line}");

    for bad in ["ann.example.com", "a b@example.com", "ann@"] {
        let invalid = setup.run(&["user", "add", bad]);
        let line = invalid.error(2);
        assert!(line.contains("email"), "{line}");
    }

    let listed = setup.ok(&["user", "list", "--json"]).json();
    let emails: Vec<&str> = listed.as_array().unwrap().iter().map(|a| a["email"].as_str().unwrap()).collect();
    assert_eq!(emails.len(), 3, "{listed}");
}

#[test]
fn user_list_counts_live_tokens_and_user_set_changes_flags() {
    let setup = Setup::new();
    setup.add_user("ann@example.com");
    setup.add_user("bob@example.com");
    let first = setup.create_token("ann@example.com", "one");
    setup.create_token("ann@example.com", "two");
    setup.ok(&["token", "revoke", &first["id"].to_string()]);

    let find = |email: &str| -> Value {
        let listed = setup.ok(&["user", "list", "--json"]).json();
        let account = listed.as_array().unwrap().iter().find(|a| a["email"] == email).cloned();
        account.unwrap_or_else(|| panic!("{email} missing from {listed}"))
    };
    let ann = find("ann@example.com");
    for field in ["email", "name", "superuser", "token_manager", "enabled", "can_create_tokens", "tokens"] {
        assert!(ann.get(field).is_some(), "user list lacks {field}: {ann}");
    }
    assert_eq!(ann["tokens"], 1, "one live token (the other is revoked): {ann}");
    assert_eq!(ann["enabled"], true);
    assert_eq!(ann["can_create_tokens"], true);
    assert_eq!(find("bob@example.com")["tokens"], 0);

    // An expired token is not live either.
    let short =
        setup.ok(&["token", "create", "--user", "bob@example.com", "--name", "short", "--expires-in", "3s", "--json"]);
    let short = short.json()["id"].as_i64().unwrap();
    assert_eq!(find("bob@example.com")["tokens"], 1);
    let start = std::time::Instant::now();
    while setup.ok(&["token", "show", &short.to_string(), "--json"]).json()["status"] != "expired" {
        assert!(start.elapsed() < std::time::Duration::from_secs(6), "a 3s token has not expired after 6 s");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(find("bob@example.com")["tokens"], 0);
    assert!(setup.token_list(&["--user", "bob@example.com"]).is_empty());
    assert_eq!(ids(&setup.token_list(&["--user", "bob@example.com", "--status", "expired"])), vec![short]);

    let changed = setup.run(&["user", "set", "ann@example.com", "--enabled", "false", "--json"]).json();
    assert_eq!(changed["enabled"], false);
    let ann = find("ann@example.com");
    assert_eq!(ann["enabled"], false);
    assert_eq!(ann["can_create_tokens"], true);
    assert_eq!(ann["tokens"], 1, "a blocked token is still live: {ann}");
    let tokens = setup.token_list(&["--user", "ann@example.com"]);
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(tokens[0]["status"], "blocked");

    setup.ok(&["user", "set", "ann@example.com", "--enabled", "true"]);
    setup.ok(&["user", "set", "ann@example.com", "--can-create-tokens", "false"]);
    let ann = find("ann@example.com");
    assert_eq!(ann["enabled"], true);
    assert_eq!(ann["can_create_tokens"], false);
    assert_eq!(setup.token_list(&["--user", "ann@example.com"])[0]["status"], "blocked");

    setup.ok(&["user", "set", "ann@example.com", "--can-create-tokens", "true"]);
    assert_eq!(find("ann@example.com")["can_create_tokens"], true);
    assert_eq!(setup.token_list(&["--user", "ann@example.com"])[0]["status"], "active");

    setup.ok(&["user", "set", "bob@example.com", "--superuser", "true", "--token-manager", "true"]);
    let bob = find("bob@example.com");
    assert_eq!(bob["superuser"], true);
    assert_eq!(bob["token_manager"], true);

    let nothing = setup.run(&["user", "set", "ann@example.com"]);
    nothing.error(2);
    let unknown = setup.run(&["user", "set", "nobody@example.com", "--enabled", "false"]);
    unknown.error(1);
}

#[test]
fn token_create_prints_every_field_and_the_secret_only_once() {
    let setup = Setup::new();
    setup.add_user("ann@example.com");
    let created = setup
        .run(&[
            "token",
            "create",
            "--user",
            "ann@example.com",
            "--name",
            "deploy",
            "--expires-in",
            "30d",
            "--scope",
            "read",
            "--json",
        ])
        .json();
    for field in TOKEN_FIELDS.iter().chain(&["token"]) {
        assert!(created.get(field).is_some(), "token create --json lacks {field}: {created}");
    }
    let secret = created["token"].as_str().unwrap().to_owned();
    let prefix = created["prefix"].as_str().unwrap();
    assert!(secret.starts_with("tg_"), "{secret}");
    assert!(secret.starts_with(prefix) && prefix.len() < secret.len(), "prefix {prefix} of {secret}");
    assert_eq!(created["user"], "ann@example.com");
    assert_eq!(created["name"], "deploy");
    assert_eq!(created["scopes"], serde_json::json!(["read"]));
    assert_eq!(created["status"], "active");
    assert_eq!(created["rate_limit"], Value::Null);
    assert_eq!(created["revoked_at"], Value::Null);
    assert_eq!(created["last_used_at"], Value::Null);
    assert_eq!(created["refused_count"], 0);
    assert!(created["created_by"].as_str().unwrap().starts_with("cli:"), "{created}");
    let lifetime = unix(&created["expires_at"]) - unix(&created["created_at"]);
    assert!((30 * 86_400 - 1..=30 * 86_400 + 1).contains(&lifetime), "lifetime {lifetime} s");
    let id = created["id"].as_i64().unwrap();

    // Without --json: the secret alone on stdout.
    let plain = setup.ok(&["token", "create", "--user", "ann@example.com", "--name", "plain"]);
    let plain_secret = plain.stdout.trim_end_matches('\n');
    assert!(plain_secret.starts_with("tg_") && !plain_secret.contains(char::is_whitespace), "{plain:?}");
    assert_eq!(plain.stdout.lines().count(), 1, "{plain:?}");
    assert!(!plain.stderr.contains(plain_secret), "the secret is on stderr too: {plain:?}");

    // Never again: not in show, list, events, nor the database files.
    let show = setup.ok(&["token", "show", &id.to_string(), "--json"]);
    let shown = show.json();
    for field in TOKEN_FIELDS {
        assert!(shown.get(field).is_some(), "token show --json lacks {field}: {shown}");
    }
    assert!(shown.get("token").is_none(), "{shown}");
    assert_eq!(shown["prefix"], prefix);
    let human_show = setup.ok(&["token", "show", &id.to_string()]);
    let list = setup.ok(&["token", "list", "--json", "--status", "all"]);
    let human_list = setup.ok(&["token", "list", "--status", "all"]);
    let events = setup.ok(&["events", "--json"]);
    for output in [&show, &human_show, &list, &human_list, &events] {
        for s in [secret.as_str(), plain_secret] {
            assert!(!output.stdout.contains(s) && !output.stderr.contains(s), "the secret leaked: {output:?}");
        }
    }
    for token in list.json().as_array().unwrap() {
        assert!(token.get("token").is_none(), "{token}");
    }

    let mut files = 0;
    for suffix in ["", "-wal", "-shm"] {
        let mut path = setup.db().into_os_string();
        path.push(suffix);
        if let Ok(bytes) = std::fs::read(&path) {
            files += 1;
            for s in [secret.as_str(), plain_secret] {
                let found = bytes.windows(s.len()).any(|w| w == s.as_bytes());
                assert!(!found, "the secret is stored in {}", Path::new(&path).display());
            }
        }
    }
    assert!(files >= 1, "no database file at {}", setup.db().display());
}

#[test]
fn token_create_errors_name_the_problem() {
    let setup = Setup::new();
    setup.add_user("ann@example.com");
    setup.create_token("ann@example.com", "deploy");

    let unknown = setup.run(&["token", "create", "--user", "nobody@example.com", "--name", "x"]);
    let line = unknown.error(1);
    assert!(line.contains("nobody@example.com"), "{line}");

    let duplicate = setup.run(&["token", "create", "--user", "ann@example.com", "--name", "deploy"]);
    let line = duplicate.error(1);
    assert!(line.contains("deploy"), "{line}");

    // Clap rejects the duration itself: a usage error (exit 2; clap's own format).
    let malformed =
        setup.run(&["token", "create", "--user", "ann@example.com", "--name", "x", "--expires-in", "3parsecs"]);
    assert_eq!(malformed.code, 2, "{malformed:?}");
    assert!(malformed.stderr.contains("3parsecs"), "{malformed:?}");

    // max_lifetime is 365d by default.
    let too_long = setup.run(&["token", "create", "--user", "ann@example.com", "--name", "x", "--expires-in", "2y"]);
    let line = too_long.error(2);
    assert!(line.contains("max"), "{line}");
    assert!(line.contains("365d") || line.contains("1y"), "the maximum is not named: {line}");

    let unknown_scope =
        setup.run(&["token", "create", "--user", "ann@example.com", "--name", "x", "--scope", "deploy"]);
    let line = unknown_scope.error(2);
    assert!(line.contains("deploy") && line.contains("admin:read"), "names the scope and the valid ones: {line}");

    // A name freed by revocation can be used again.
    let listed = setup.token_list(&["--user", "ann@example.com"]);
    setup.ok(&["token", "revoke", &listed[0]["id"].to_string()]);
    setup.create_token("ann@example.com", "deploy");

    // Nothing of the failed attempts was stored.
    let all = setup.token_list(&["--status", "all"]);
    assert_eq!(all.len(), 2, "{all:?}");

    // The reserved admin scope needs no entry in tokens.scopes.
    let admin =
        setup.run(&["token", "create", "--user", "ann@example.com", "--name", "ops", "--scope", "admin", "--json"]);
    assert_eq!(admin.json()["scopes"], serde_json::json!(["admin"]));
}

#[test]
fn configuration_and_database_errors_are_one_line() {
    let setup = Setup::new();

    let missing = run_with(Some(Path::new("/nonexistent.toml")), &["user", "list"], &[]);
    let line = missing.error(2);
    assert!(line.contains("/nonexistent.toml"), "{line}");

    let unknown_key = setup.dir.path().join("unknown.toml");
    std::fs::write(&unknown_key, "[proxy]\nlisten = \"127.0.0.1:0\"\nlisen = \"127.0.0.1:1\"\n").unwrap();
    let run = run_with(Some(&unknown_key), &["check-config"], &[]);
    let line = run.error(2);
    assert!(line.contains("lisen"), "{line}");
    let run = run_with(Some(&unknown_key), &["user", "list"], &[]);
    assert!(run.error(2).contains("lisen"));

    let unknown_section = setup.dir.path().join("section.toml");
    std::fs::write(&unknown_section, "[proxxy]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let run = run_with(Some(&unknown_section), &["user", "list"], &[]);
    assert!(run.error(2).contains("proxxy"));

    // A database that cannot be created (`user add` creates one), and one that does not exist
    // (the other commands create none).
    let run = setup.run(&["--database", "sqlite:///proc/nope/x.db", "user", "add", "a@example.com"]);
    run.error(1);
    let file = setup.dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let under_file = format!("sqlite://{}/x.db", file.display());
    let run = setup.run(&["user", "add", "a@example.com", "--database", &under_file]);
    run.error(1);
    let run = setup.run(&["--database", &under_file, "token", "create", "--user", "a@example.com", "--name", "n"]);
    assert!(run.error(1).contains("no database at"), "{run:?}");

    let run = setup.run_env(&["user", "list"], &[("TOKENGATE_PROXY__LISTN", "x")]);
    assert!(run.error(2).contains("TOKENGATE_PROXY__LISTN"));

    setup.add_user("ann@example.com");
    let run = setup.run(&["token", "show", "12345"]);
    assert!(run.error(1).contains("12345"));

    // Clap's own usage errors: exit 2 (multi-line text allowed).
    assert_eq!(setup.run(&["user", "frobnicate"]).code, 2);
    assert_eq!(setup.run(&["token", "create", "--name", "x"]).code, 2);
    assert_eq!(setup.run(&["token", "show", "not-a-number"]).code, 2);
    assert_eq!(setup.run(&["user", "set", "ann@example.com", "--enabled", "perhaps"]).code, 2);
}

#[test]
fn token_list_filters_by_user_and_status_and_revoke_all() {
    let setup = Setup::new();
    setup.add_user("ann@example.com");
    setup.add_user("bob@example.com");
    let ann: Vec<i64> = ["a1", "a2", "a3"]
        .iter()
        .map(|name| setup.create_token("ann@example.com", name)["id"].as_i64().unwrap())
        .collect();
    let bob: Vec<i64> =
        ["b1", "b2"].iter().map(|name| setup.create_token("bob@example.com", name)["id"].as_i64().unwrap()).collect();

    let mut listed = ids(&setup.token_list(&["--user", "ann@example.com"]));
    listed.sort_unstable();
    assert_eq!(listed, ann);
    for token in setup.token_list(&["--user", "bob@example.com"]) {
        assert_eq!(token["user"], "bob@example.com");
        for field in TOKEN_FIELDS {
            assert!(token.get(field).is_some(), "token list --json lacks {field}: {token}");
        }
    }
    assert_eq!(setup.token_list(&[]).len(), 5);
    assert_eq!(setup.token_list(&["--user", "ann@example.com", "--user", "bob@example.com"]).len(), 5);
    let searched = setup.token_list(&["--search", "B2"]);
    assert_eq!(ids(&searched), vec![bob[1]]);

    // Revoking one: gone from the default (live) listing, present under --status revoked.
    let revoked = setup.run(&["token", "revoke", &ann[0].to_string(), "--json"]).json();
    assert_eq!(revoked["status"], "revoked");
    let live = ids(&setup.token_list(&["--user", "ann@example.com"]));
    assert!(!live.contains(&ann[0]) && live.len() == 2, "{live:?}");
    let dead = setup.token_list(&["--user", "ann@example.com", "--status", "revoked"]);
    assert_eq!(ids(&dead), vec![ann[0]]);
    let created_by = dead[0]["created_by"].as_str().unwrap();
    assert!(created_by.starts_with("cli:") && created_by.len() > 4, "{created_by}");
    assert_eq!(dead[0]["revoked_by"], created_by, "revoked_by is cli:<os user>: {}", dead[0]);
    assert_eq!(dead[0]["revoke_reason"], "manual");
    assert!(dead[0]["revoked_at"].is_string());
    assert_eq!(dead[0]["status"], "revoked");
    assert_eq!(setup.token_list(&["--user", "ann@example.com", "--status", "all"]).len(), 3);
    assert_eq!(setup.token_list(&["--status", "active"]).len(), 4);

    // Revoking again changes nothing.
    let again = setup.ok(&["token", "revoke", &ann[0].to_string()]);
    assert_eq!(again.stdout, "");

    let result = setup.run(&["token", "revoke-all", "--user", "ann@example.com", "--json"]).json();
    assert_eq!(result["revoked"], 2, "{result}");
    assert!(setup.token_list(&["--user", "ann@example.com"]).is_empty());
    let all_ann = setup.token_list(&["--user", "ann@example.com", "--status", "all"]);
    for token in &all_ann {
        assert_eq!(token["status"], "revoked", "{token}");
    }
    let reasons: Vec<&str> = all_ann.iter().map(|t| t["revoke_reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.iter().filter(|r| **r == "revoke_all").count(), 2, "{reasons:?}");
    // Bob's tokens are untouched.
    assert_eq!(setup.token_list(&["--user", "bob@example.com"]).len(), 2);

    let result = setup.run(&["token", "revoke-all", "--user", "ann@example.com", "--json"]).json();
    assert_eq!(result["revoked"], 0);
    setup.run(&["token", "revoke-all", "--user", "nobody@example.com"]).error(1);
    setup.run(&["token", "list", "--user", "nobody@example.com"]).error(1);
}

#[test]
fn events_list_the_audit_log_with_filters() {
    let setup = Setup::new();
    setup.add_user("ann@example.com");
    setup.add_user("bob@example.com");
    setup.ok(&["user", "set", "ann@example.com", "--token-manager", "true"]);
    let token = setup.create_token("ann@example.com", "deploy")["id"].as_i64().unwrap();
    let other = setup.create_token("ann@example.com", "other")["id"].as_i64().unwrap();
    setup.create_token("bob@example.com", "bobs");
    setup.ok(&["token", "revoke", &token.to_string()]);

    let events = setup.events(&[]);
    assert_eq!(events.len(), 7, "{events:#?}");
    for event in &events {
        for field in EVENT_FIELDS {
            assert!(event.get(field).is_some(), "event lacks {field}: {event}");
        }
        assert!(event["detail"].is_object(), "{event}");
        assert!(event["actor"].as_str().unwrap().starts_with("cli:"), "{event}");
        unix(&event["at"]);
    }
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in ["account.created", "account.updated", "token.created", "token.revoked"] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    // Newest first.
    let event_ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(event_ids.windows(2).all(|w| w[0] > w[1]), "{event_ids:?}");
    assert_eq!(kinds[0], "token.revoked");
    assert_eq!(events[0]["token_id"], token);
    assert_eq!(events[0]["account"], "ann@example.com");
    let created = events.iter().find(|e| e["kind"] == "account.created").unwrap();
    assert_eq!(created["token_id"], Value::Null);
    assert_eq!(created["ip"], Value::Null);

    let for_token = setup.events(&["--token", &token.to_string()]);
    let kinds: Vec<&str> = for_token.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["token.revoked", "token.created"], "{for_token:#?}");
    assert!(for_token.iter().all(|e| e["token_id"] == token));
    assert_eq!(setup.events(&["--token", &other.to_string()]).len(), 1);

    let for_ann = setup.events(&["--user", "ann@example.com"]);
    assert_eq!(for_ann.len(), 5, "{for_ann:#?}");
    assert!(for_ann.iter().all(|e| e["account"] == "ann@example.com"), "{for_ann:#?}");
    let for_bob = setup.events(&["--user", "bob@example.com"]);
    assert_eq!(for_bob.len(), 2, "{for_bob:#?}");

    let newest = setup.events(&["--limit", "1"]);
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0]["id"], events[0]["id"]);
    assert_eq!(setup.events(&["--limit", "3"]).len(), 3);
    assert_eq!(setup.run(&["events", "--limit", "0"]).code, 2);
    setup.run(&["events", "--user", "nobody@example.com"]).error(1);

    // revoke-all records one event per token.
    setup.create_token("bob@example.com", "bobs-second");
    let bobs: Vec<i64> = ids(&setup.token_list(&["--user", "bob@example.com"]));
    setup.ok(&["token", "revoke-all", "--user", "bob@example.com"]);
    for id in bobs {
        let newest = setup.events(&["--token", &id.to_string(), "--limit", "1"]);
        assert_eq!(newest[0]["kind"], "token.revoked", "{newest:?}");
        assert_eq!(newest[0]["detail"]["reason"], "revoke_all", "{newest:?}");
        assert_eq!(newest[0]["account"], "bob@example.com");
    }
}

#[test]
fn check_config_prints_the_effective_settings_and_env_overrides() {
    let setup = Setup::new();
    let run = setup.ok(&["check-config"]);
    for expected in [
        "[proxy]",
        "listen = \"127.0.0.1:0\"",
        "upstream_timeout = \"500ms\"",
        "interval = \"50ms\"",
        "flush_interval = \"100ms\"",
        "allow_never_expires = true",
        "prefix = \"/public\"",
        "strip_prefix = true",
    ] {
        assert!(run.stdout.contains(expected), "check-config does not print {expected:?}: {run:?}");
    }
    assert!(run.stdout.contains(&setup.db().display().to_string()), "{run:?}");
    assert!(run.stderr.contains("notifications: no channel configured: this gateway delivers none"), "{run:?}");
    let channels =
        [("TOKENGATE_NOTIFY__SMTP_HOST", "127.0.0.1"), ("TOKENGATE_NOTIFY__WEBHOOK_URL", "http://127.0.0.1:9/hook")];
    let run = setup.run_env(&["check-config"], &channels);
    assert!(run.stderr.contains("notifications: delivered by smtp, webhook\n"), "{run:?}");
    let run = setup.run_env(&["check-config"], &channels[1..]);
    assert!(run.stderr.contains("notifications: delivered by webhook\n"), "{run:?}");

    // The environment outranks the file; a wrong variable is named.
    let run = setup.run_env(&["check-config"], &[("TOKENGATE_PROXY__LISTEN", "127.0.0.1:9999")]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("listen = \"127.0.0.1:9999\""), "{run:?}");
    let run = setup.run_env(&["check-config"], &[("TOKENGATE_PROXY__LISTN", "x")]);
    assert!(run.error(2).contains("TOKENGATE_PROXY__LISTN"));
    let run = setup.run_env(&["check-config"], &[("TOKENGATE_SYNC__INTERVAL", "soon")]);
    assert!(run.error(2).contains("sync.interval"), "{run:?}");
}

#[test]
fn check_config_reports_every_problem_at_once() {
    let setup = Setup::new();
    let config = setup.dir.path().join("three.toml");
    let db = setup.db().display().to_string();
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nlisen = \"127.0.0.1:1\"\n\n[database]\nurl = \"sqlite://{db}\"\n\n\
         [sync]\ninterval = \"soon\"\n\n[log]\nformat = \"yaml\"\n"
    );
    std::fs::write(&config, text).unwrap();
    let run = run_with(Some(&config), &["check-config"], &[]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    let report = problem_report(&run);
    assert_eq!(report.len(), 4, "{run:?}");
    assert_eq!(report[0], "tokengate: invalid configuration: 3 problems:", "{run:?}");
    assert!(report[1].starts_with("  - proxy.lisen (line 3): unknown field `lisen`, expected one of "), "{run:?}");
    assert!(report[2].starts_with("  - sync.interval: invalid duration \"soon\""), "{run:?}");
    assert_eq!(report[3], "  - log.format: \"yaml\": expected \"text\" or \"json\"", "{run:?}");
    // Every command that refuses to start says the same, serve included.
    for args in [&["serve"][..], &["user", "list"]] {
        let other = run_with(Some(&config), args, &[]);
        assert_eq!(other.code, 2, "{args:?}: {other:?}");
        assert_eq!(problem_report(&other), report, "{args:?}: {other:?}");
    }
    assert!(!setup.db().exists(), "nothing ran on an invalid configuration");
}

/// The error report on stderr: the `tokengate:` line and the problem lines under it.
fn problem_report(run: &Run) -> Vec<&str> {
    run.stderr.lines().skip_while(|line| !line.starts_with("tokengate:")).collect()
}

fn assert_no_password(run: &Run) {
    assert!(!run.stdout.contains("hunter2") && !run.stderr.contains("hunter2"), "the password was printed: {run:?}");
}

#[test]
fn database_passwords_are_never_printed() {
    let setup = Setup::new();
    // A password given through url_file never appears, whether check-config gets as far as
    // connecting or fails there (nothing listens on the port: it fails after the pool's
    // acquire timeout, so the slow runs go in parallel).
    let secret_file = setup.dir.path().join("database-url");
    let dead = closed_port();
    let url = format!("postgres://app:hunter2@{dead}/tokens");
    std::fs::write(&secret_file, format!("{url}\n")).unwrap();
    let pg_config = setup.dir.path().join("pg.toml");
    std::fs::write(&pg_config, format!("[database]\nurl_file = {:?}\n", secret_file.display().to_string())).unwrap();
    let (check, list, env, flag) = std::thread::scope(|scope| {
        let check = scope.spawn(|| run_with(Some(&pg_config), &["check-config"], &[]));
        let list = scope.spawn(|| run_with(Some(&pg_config), &["user", "list"], &[]));
        let env = scope.spawn(|| setup.run_env(&["check-config"], &[("TOKENGATE_DATABASE__URL", &url)]));
        let flag = scope.spawn(|| setup.run(&["token", "list", "--database", &url]));
        (check.join().unwrap(), list.join().unwrap(), env.join().unwrap(), flag.join().unwrap())
    });
    for run in [&check, &list, &env, &flag] {
        assert_no_password(run);
    }
    assert!(check.stdout.contains("postgres://app:"), "the masked URL is shown: {check:?}");
    // check-config reports on stderr (the file is valid), then the one error line.
    assert_eq!(check.code, 1, "the database cannot be reached: {check:?}");
    let errors: Vec<&str> = check.stderr.lines().filter(|l| l.starts_with("tokengate:")).collect();
    assert_eq!(errors.len(), 1, "{check:?}");
    assert!(check.stderr.trim_end().ends_with(errors[0]), "the error is not the last line: {check:?}");
    list.error(1);
    assert_eq!(env.code, 1, "{env:?}");
    flag.error(1);

    // Failures before any connection attempt: a URL the driver rejects, a foreign scheme.
    let run = setup.run(&["check-config", "--database", "postgres://app:hunter2@127.0.0.1:99999/tokens"]);
    assert_no_password(&run);
    assert_eq!(run.code, 1, "{run:?}");
    let run = setup.run(&["user", "list", "--database", "mysql://app:hunter2@db/x"]);
    assert_no_password(&run);
    run.error(2);
    let both = setup.dir.path().join("both.toml");
    std::fs::write(&both, format!("[database]\nurl = \"{url}\"\nurl_file = {:?}\n", secret_file.display().to_string()))
        .unwrap();
    let run = run_with(Some(&both), &["check-config"], &[]);
    assert_no_password(&run);
    run.error(2);
}

/// libpq-style URLs may carry the password as a query parameter, which sqlx accepts.
#[test]
fn a_password_in_the_query_string_is_masked_too() {
    let setup = Setup::new();
    let url = "postgres://app@127.0.0.1:99999/tokens?password=hunter2";
    let run = setup.run(&["check-config", "--database", url]);
    assert_no_password(&run);
    let run = setup.run(&["user", "list", "--database", url]);
    assert_no_password(&run);
}

#[test]
fn check_config_reports_migrations_without_applying_them() {
    let setup = Setup::new();
    let db = setup.db();

    // A database that does not exist yet: reported, not created.
    let run = setup.ok(&["check-config"]);
    assert!(run.stderr.contains("created"), "{run:?}");
    assert!(!db.exists(), "check-config created {}", db.display());

    // An existing but empty database: its pending migrations are listed, not applied.
    let empty = setup.dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let empty_url = format!("sqlite://{}", empty.display());
    for _ in 0..2 {
        let run = setup.ok(&["check-config", "--database", &empty_url]);
        assert!(run.stderr.contains("pending"), "{run:?}");
        assert!(run.stderr.contains("initial"), "the migration is named: {run:?}");
    }

    // After a command that creates it, the database exists and is up to date.
    setup.add_user("ann@example.com");
    assert!(db.exists());
    let run = setup.ok(&["check-config"]);
    assert!(run.stderr.contains("up to date"), "{run:?}");
    assert!(!run.stderr.contains("pending"), "{run:?}");
    setup.ok(&["--database", &empty_url, "user", "list"]);
    let run = setup.ok(&["check-config", "--database", &empty_url]);
    assert!(run.stderr.contains("up to date"), "{run:?}");
}

#[test]
fn token_rotate_mints_a_linked_successor_and_the_audit_log_filters_by_kind() {
    let setup = Setup::new();
    setup.add_user("ann@example.com");
    let old = setup.create_token("ann@example.com", "deploy");
    let old_id = old["id"].as_i64().unwrap().to_string();

    let new = setup.ok(&["token", "rotate", &old_id, "--grace", "1h", "--json"]).json();
    assert!(new["token"].as_str().unwrap().starts_with("tg_"));
    assert_eq!(new["name"], "deploy");
    assert_eq!(new["rotated_from"], old["id"]);
    let shown = setup.ok(&["token", "show", &old_id, "--json"]).json();
    assert_eq!(shown["rotated_to"], new["id"]);
    assert_eq!(shown["revoke_reason"], "rotation");
    assert_eq!(shown["status"], "active", "still inside its grace");
    assert!(shown["revoked_at"].is_string(), "the scheduled revocation is shown");
    assert!(shown.get("token").is_none());
    // Rotating it again is refused; rotating the successor works, without a grace (now).
    setup.run(&["token", "rotate", &old_id]).error(1);
    let newest = setup.ok(&["token", "rotate", &new["id"].as_i64().unwrap().to_string()]);
    assert!(newest.stdout.trim().starts_with("tg_"), "the secret alone on stdout: {newest:?}");
    let middle = setup.ok(&["token", "show", &new["id"].as_i64().unwrap().to_string(), "--json"]).json();
    assert_eq!(middle["status"], "revoked");

    let rotated = setup.events(&["--kind", "token.rotated"]);
    assert_eq!(rotated.len(), 2);
    assert!(rotated.iter().all(|e| e["kind"] == "token.rotated"));
    let token_events = setup.events(&["--kind", "token."]);
    assert!(token_events.len() >= 5 && token_events.iter().all(|e| e["kind"].as_str().unwrap().starts_with("token.")));
    assert!(setup.events(&["--since", "2999-01-01"]).is_empty());
    assert!(!setup.events(&["--until", "2999-01-01"]).is_empty());
}

#[test]
fn token_sweep_needs_a_policy_and_lists_with_dry_run() {
    let setup = Setup::new();
    setup.add_user("ann@example.com");
    setup.create_token("ann@example.com", "fresh");
    let refused = setup.run(&["token", "sweep"]);
    assert!(refused.error(2).contains("revoke_unused_after"), "{refused:?}");
    let env = [("TOKENGATE_TOKENS__REVOKE_UNUSED_AFTER", "30d")];
    let dry = run_with(Some(&setup.config), &["token", "sweep", "--dry-run", "--json"], &env);
    assert_eq!(dry.json().as_array().unwrap().len(), 0, "a token minted now is not inactive");
}

// ---- a closed stdout ----

/// Runs `tokengate ARGS` with stdout a pipe that is closed after its first line (as
/// `| head -n 1` does); returns that line, the exit status (`None`: killed by a signal) and
/// stderr.
fn run_reading_one_line(setup: &Setup, args: &[&str]) -> (String, Option<i32>, String) {
    let mut child = crate::support::spawn_cli(&setup.config, args);
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    drop(stdout);
    let output = child.wait_with_output().unwrap();
    (line, output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// `tokengate token list | head -n 1` and the like: the command ends quietly, exit 0, no panic.
/// The outputs are larger than a pipe holds (64 KiB), so the writes after the close fail
/// for certain rather than fitting into the pipe before the reader goes.
#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let setup = Setup::new();
    setup.add_user("ann@example.com");
    let description = "d".repeat(8 * 1024);
    for n in 0..36 {
        let name = format!("token-{n:02}-{}", "n".repeat(80));
        setup.ok(&["token", "create", "--user", "ann@example.com", "--name", &name, "--description", &description]);
    }
    let huge = "h".repeat(100_000);
    let id = setup
        .ok(&["token", "create", "--user", "ann@example.com", "--name", "huge", "--description", &huge, "--json"])
        .json()["id"]
        .to_string();

    for args in
        [&["token", "list"][..], &["token", "list", "--json"], &["token", "show", &id], &["events"], &["check-config"]]
    {
        let (first, code, stderr) = run_reading_one_line(&setup, args);
        assert!(!first.is_empty(), "{args:?}: no first line");
        assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{args:?} panicked: {stderr}");
        assert!(!stderr.contains("tokengate:"), "{args:?}: a closed pipe is no error: {stderr}");
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
    }
}

// ---- secrets in the notification settings ----

#[test]
fn check_config_masks_the_webhook_url() {
    let setup = Setup::with_extra(
        "[notify]\nwebhook_url = \"https://hook-user:hunter2@hooks.example.com/x?token=hunter3&v=1\"\n",
    );
    let run = setup.ok(&["check-config"]);
    assert!(run.stdout.contains("hooks.example.com") && run.stdout.contains("hook-user"), "{run:?}");
    assert!(!run.stdout.contains("hunter") && !run.stderr.contains("hunter"), "a secret was printed: {run:?}");

    // From the environment, with the key in the path as Slack puts it.
    let url = "https://hooks.slack.com/services/T0000/B0000/hunter2hunter2hunter2xx";
    let run = setup.run_env(&["check-config"], &[("TOKENGATE_NOTIFY__WEBHOOK_URL", url)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("hooks.slack.com/services/T0000/B0000/"), "{run:?}");
    assert!(!run.stdout.contains("hunter") && !run.stderr.contains("hunter"), "a secret was printed: {run:?}");
}

// ---- default and maximum lifetime ----

/// A config of its own (the shared one has a `[tokens]` table already): the database in
/// `setup`'s directory, then `tokens`.
fn tokens_config(setup: &Setup, file: &str, tokens: &str) -> PathBuf {
    let path = setup.dir.path().join(file);
    let db = setup.db().display().to_string();
    std::fs::write(&path, format!("[database]\nurl = \"sqlite://{db}\"\n\n[tokens]\n{tokens}")).unwrap();
    path
}

/// The lifetime of a token created without an expiry, in days.
fn default_lifetime_days(config: &Path, env: &[(&str, &str)], name: &str) -> i64 {
    let run = run_with(Some(config), &["token", "create", "--user", "ann@example.com", "--name", name, "--json"], env);
    let token = run.json();
    let seconds = unix(&token["expires_at"]) - unix(&token["created_at"]);
    (seconds + 60) / 86_400
}

#[test]
fn an_unset_default_lifetime_follows_a_lower_max_lifetime() {
    let setup = Setup::new();
    setup.add_user("ann@example.com");

    // Only the maximum in the file: the default follows it, everywhere.
    let config = tokens_config(&setup, "max.toml", "max_lifetime = \"30d\"\n");
    let check = run_with(Some(&config), &["check-config"], &[]);
    assert_eq!(check.code, 0, "{check:?}");
    assert!(check.stdout.contains("default_lifetime = \"30d\""), "{check:?}");
    assert_eq!(default_lifetime_days(&config, &[], "file"), 30);

    // Only the maximum in the environment: the same.
    let env = [("TOKENGATE_TOKENS__MAX_LIFETIME", "30d")];
    assert_eq!(default_lifetime_days(&setup.config, &env, "env"), 30);
    // A maximum above the built-in default leaves the default alone.
    assert_eq!(default_lifetime_days(&setup.config, &[("TOKENGATE_TOKENS__MAX_LIFETIME", "400d")], "high"), 90);

    // A default the operator set above the maximum stays an error naming both keys, whether
    // it was set in the file or in the environment.
    let both = tokens_config(&setup, "both.toml", "max_lifetime = \"30d\"\ndefault_lifetime = \"90d\"\n");
    let env_default = [("TOKENGATE_TOKENS__DEFAULT_LIFETIME", "90d")];
    for run in [
        run_with(Some(&both), &["check-config"], &[]),
        run_with(Some(&config), &["check-config"], &env_default),
        run_with(Some(&config), &["token", "list"], &env_default),
        run_with(Some(&setup.config), &["check-config"], &[env[0], env_default[0]]),
    ] {
        let line = run.error(2);
        assert!(line.contains("tokens.default_lifetime") && line.contains("tokens.max_lifetime"), "{run:?}");
    }
    // An explicit default under the maximum is kept.
    let lower = tokens_config(&setup, "lower.toml", "max_lifetime = \"30d\"\ndefault_lifetime = \"7d\"\n");
    assert_eq!(default_lifetime_days(&lower, &[], "lower"), 7);
}
