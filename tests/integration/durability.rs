//! Crash durability as a test, not a hope: every change the CLI or the admin API acknowledged
//! still holds after the gateway is killed with SIGKILL and started again, on SQLite and on
//! PostgreSQL, through the proxy and in `token show --json`.
//!
//! A seeded loop of [`CYCLES`] cycles against the real `tokengate serve`. Each cycle starts the
//! gateway on the same database and checks what the model of acknowledged changes expects:
//! accounts through `user list --json`, every token through `token list --status all --json`,
//! the tokens changed since the last start through `token show --json` as well, and then one
//! request per token through the proxy — its very first request since the restart, with no
//! waiting. Then it makes one to four changes chosen at random (revoke; rotate now, with a
//! grace, or until the successor's first use; revoke-all; block an account by disabling it or
//! by taking its token permission away; unblock; create; a successor's first use through the
//! proxy), each through the CLI (acknowledged when it exits 0) or through the admin API of the
//! running gateway (acknowledged when it answers 2xx), and SIGKILLs the gateway: right after an
//! acknowledgement, a moment later (perhaps during a usage flush or a heartbeat), or while the
//! last change is in flight. A change in flight when the gateway died is not acknowledged:
//! the next check accepts either outcome, and from then on holds the model to what the
//! database says (a revoke-all, one transaction, must have happened for all tokens or none).
//!
//! What a broken gateway would show here: an API that answers before its transaction commits
//! (the kill right after the answer loses the change); an index loaded at start-up that
//! misses a revocation, a scheduled one (a grace), a pending hand-over or an account's blocked
//! state (the first request after the restart gets 200 instead of 401, or the reverse); a
//! successor's first use that retires its predecessor only in memory or only at the next usage
//! flush (the predecessor works again after the restart). What a SIGKILL cannot show: writes
//! the kernel still held when the power went (that is `synchronous=FULL`'s job) — the process
//! dies, the kernel keeps what it was given.
//!
//! The seed is printed at the start of each run (with the cycle count); run again with
//! `TOKENGATE_DURABILITY_SEED=N` to replay the same choices. Timing is not replayed: whether a
//! change in flight lands before the kill is up to the race.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::postgres::TestDatabase;
use crate::support::{GatewayProcess, Upstream, run_cli, spawn_cli, write_config_on};

mod model;

use model::{Account, Fate, Rng, Shown, Token, Window, now, set_bool};

/// Kill-and-restart cycles per store. 50 cycles took 25–31 s on SQLite and 36–48 s on
/// PostgreSQL here (a debug build on 2 cores shared with other builds): the whole count fits
/// the 60–90 s a test may take, so it is not lowered.
const CYCLES: usize = 50;
/// The admin API's caller: a superuser whose account no cycle touches.
const ROOT: &str = "root@example.com";
/// The accounts the cycles change.
const ACCOUNTS: [&str; 3] = ["ann@example.com", "bob@example.com", "cy@example.com"];
/// Rotation graces: one that ends during the run (so some checks find it over, after restarts),
/// one that outlasts it.
const GRACES: [(&str, i64); 2] = [("3s", 3), ("1h", 3600)];
/// Longest pause into a change in flight before a SIGKILL, and half the longest after an
/// acknowledgement (a CLI change takes about 30 ms here, an API change a few, up to the 100 ms
/// confirm timeout).
const MAX_KILL_DELAY_MS: u64 = 40;

/// The seed: `TOKENGATE_DURABILITY_SEED`, else from the clock.
fn seed() -> u64 {
    if let Ok(text) = std::env::var("TOKENGATE_DURABILITY_SEED") {
        return text.parse().unwrap_or_else(|_| panic!("TOKENGATE_DURABILITY_SEED={text:?} is not a number"));
    }
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Now,
    Grace(usize),
    UntilFirstUse,
}

#[derive(Clone, Copy, Debug)]
enum Block {
    Disable,
    TakePermission,
}

/// A change; `FirstUse` is a rotation successor's first use, through the proxy.
#[derive(Clone, Debug)]
enum Op {
    Create { account: usize },
    Revoke { token: usize },
    Rotate { token: usize, mode: Mode },
    RevokeAll { account: usize },
    Block { account: usize, how: Block },
    Unblock { account: usize },
    FirstUse { token: usize },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Channel {
    Cli,
    Api,
    Proxy,
}

/// A change under way.
enum Running {
    Cli(Child),
    Http(tokio::task::JoinHandle<Option<(StatusCode, Option<Value>)>>),
}

/// How a change ended: acknowledged (with its answer, when there was one to read), or not.
enum Outcome {
    Acked(Option<Value>),
    Unacked,
}

/// When, in a cycle, the SIGKILL comes.
#[derive(Clone, Copy, Debug)]
enum Kill {
    RightAfterAck,
    AfterPause(u64),
    InFlight(u64),
}

#[derive(Default)]
struct Stats {
    changes: usize,
    cli: usize,
    api: usize,
    proxy: usize,
    in_flight: usize,
    in_flight_acked: usize,
    unacked_landed: usize,
    unacked_not_landed: usize,
    proxy_checks: usize,
    show_checks: usize,
    /// Seconds spent starting gateways, checking, and changing.
    starting: f64,
    checking: f64,
    changing: f64,
}

/// A change that was in flight at a kill, and what it touched, to see after the restart
/// whether it landed.
struct Unsettled {
    what: String,
    /// Tokens, each with what its JSON shows once the change landed.
    tokens: Vec<(usize, Landed)>,
    /// Accounts, with the (enabled, can_create_tokens) the change sets (`None`: left alone).
    accounts: Vec<(usize, Option<bool>, Option<bool>)>,
    /// A revoke-all, one transaction: it landed for all of these tokens or for none.
    all_or_none: bool,
}

/// How a token's JSON shows that a change to it landed.
#[derive(Clone, Copy, Debug)]
enum Landed {
    /// Revoked with this reason.
    Revoked(&'static str),
    /// Rotated: it names a successor.
    Rotated,
    /// Retired by its successor's first use (its reason says rotation before too).
    HandedOver,
}

impl Landed {
    fn shows(self, doc: &Shown) -> bool {
        match self {
            Landed::Revoked(reason) => doc.reason.as_deref() == Some(reason),
            Landed::Rotated => doc.rotated_to.is_some(),
            Landed::HandedOver => doc.status == "revoked",
        }
    }
}

struct Run {
    store: &'static str,
    seed: u64,
    rng: Rng,
    /// Holds the configuration (and the SQLite database) for the run.
    _dir: TempDir,
    config: PathBuf,
    _upstream: Upstream,
    root_secret: String,
    accounts: Vec<Account>,
    tokens: Vec<Token>,
    /// Ids shown with `token show` at the next check: those changed since the last start.
    touched: BTreeSet<i64>,
    unsettled: Vec<Unsettled>,
    names: usize,
    cycle: usize,
    journal: Vec<String>,
    stats: Stats,
    http: reqwest::Client,
}

impl Run {
    /// A run on `database_url`, or on a SQLite file in the run's own directory.
    async fn new(store: &'static str, database_url: Option<&str>) -> Run {
        let seed = seed();
        eprintln!("durability on {store}: seed {seed}, {CYCLES} cycles (replay with TOKENGATE_DURABILITY_SEED={seed})");
        let dir = tempfile::tempdir().unwrap();
        let upstream = Upstream::start().await;
        let sqlite = format!("sqlite://{}", dir.path().join("tokengate.db").display());
        let database_url = database_url.unwrap_or(&sqlite);
        // A short confirm timeout: for `stale_after` (3 s, the least allowed) after each kill
        // the dead gateway still counts as running and every change waits for it this long.
        // Flushes every 100 ms, so kills often land in one. Failed authentications are many
        // and legitimate here: no throttling.
        let text = format!(
            r#"
[sync]
interval = "250ms"
confirm_timeout = "100ms"
stale_after = "3s"

[usage]
flush_interval = "100ms"

[rate_limit]
default = "100000/min"
failed_auth = "100000/min"

[[routes]]
prefix = "/"
upstream = "http://{upstream}"
require = {{ GET = "read", "*" = "write" }}
"#,
            upstream = upstream.addr
        );
        let config = write_config_on(dir.path(), database_url, "", &text);
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
        let mut run = Run {
            store,
            seed,
            rng: Rng::new(seed),
            _dir: dir,
            config,
            _upstream: upstream,
            root_secret: String::new(),
            accounts: Vec::new(),
            tokens: Vec::new(),
            touched: BTreeSet::new(),
            unsettled: Vec::new(),
            names: 0,
            cycle: 0,
            journal: Vec::new(),
            stats: Stats::default(),
            http,
        };
        run.cli(&["user", "add", ROOT, "--superuser"]);
        // The API's caller needs the scopes of every token it rotates or creates.
        let root = run.cli(&[
            "token", "create", "--user", ROOT, "--name", "admin", "--scope", "admin", "--scope", "read", "--scope",
            "write", "--json",
        ]);
        run.root_secret = root["token"].as_str().unwrap().to_owned();
        for (index, email) in ACCOUNTS.iter().enumerate() {
            run.cli(&["user", "add", email]);
            run.accounts.push(Account { email, enabled: vec![true], can_create_tokens: vec![true] });
            for _ in 0..2 {
                let name = run.name();
                let doc = run.cli(&["token", "create", "--user", email, "--name", &name, "--json"]);
                run.adopt(index, &doc);
            }
        }
        run
    }

    /// Runs `tokengate ARGS`, which must succeed; returns its JSON.
    fn cli(&self, args: &[&str]) -> Value {
        let (code, stdout, stderr) = run_cli(&self.config, args);
        if code != 0 {
            self.fail(format!("tokengate {args:?} exited {code}: {stderr}"));
        }
        serde_json::from_str(&stdout).unwrap_or(Value::Null)
    }

    fn name(&mut self) -> String {
        self.names += 1;
        format!("t{}", self.names)
    }

    /// Adds a token from a create or rotate answer (`id`, `token`) to the model.
    fn adopt(&mut self, account: usize, doc: &Value) -> usize {
        let id = doc["id"].as_i64().unwrap_or_else(|| self.fail(format!("no id in {doc}")));
        let secret = doc["token"].as_str().unwrap_or_else(|| self.fail(format!("no token in {doc}"))).to_owned();
        self.tokens.push(Token { id, account, secret, fates: vec![Fate::Active] });
        self.touched.insert(id);
        self.tokens.len() - 1
    }

    fn note(&mut self, line: String) {
        self.journal.push(format!("cycle {}: {line}", self.cycle));
    }

    /// Fails with the seed, the cycle and the recent history, so the failure can be read and
    /// replayed.
    fn fail(&self, what: String) -> ! {
        let start = self.journal.len().saturating_sub(25);
        let history = self.journal[start..].join("\n  ");
        panic!(
            "durability on {} (seed {}, cycle {} of {CYCLES}): {what}\nrecent history:\n  {history}",
            self.store, self.seed, self.cycle,
        );
    }

    // ---- checks after a restart ----

    /// Checks everything against the model on a freshly started gateway, and settles what
    /// changes in flight at the last kill left open.
    async fn check(&mut self, gw: &GatewayProcess) {
        let users = self.cli(&["user", "list", "--json"]);
        for index in 0..self.accounts.len() {
            let email = self.accounts[index].email;
            let Some(doc) = users.as_array().unwrap().iter().find(|u| u["email"] == email) else {
                self.fail(format!("account {email} is missing from user list"));
            };
            let enabled = doc["enabled"].as_bool().unwrap();
            let can = doc["can_create_tokens"].as_bool().unwrap();
            let account = &self.accounts[index];
            if !account.enabled.contains(&enabled) || !account.can_create_tokens.contains(&can) {
                self.fail(format!(
                    "account {email}: enabled {enabled}, can_create_tokens {can}; acknowledged: enabled one of {:?}, \
                     can_create_tokens one of {:?}",
                    account.enabled, account.can_create_tokens
                ));
            }
            self.accounts[index].enabled = vec![enabled];
            self.accounts[index].can_create_tokens = vec![can];
        }

        let before = now();
        let listed = self.cli(&["token", "list", "--status", "all", "--json"]);
        let read = Window(before, now());
        let listed: BTreeMap<i64, Value> =
            listed.as_array().unwrap().iter().map(|t| (t["id"].as_i64().unwrap(), t.clone())).collect();
        let touched = std::mem::take(&mut self.touched);
        let mut all_shown = BTreeMap::new();
        for index in 0..self.tokens.len() {
            let id = self.tokens[index].id;
            let Some(doc) = listed.get(&id) else { self.fail(format!("token {id} is missing from token list")) };
            let shown = Shown::of(doc);
            self.settle(index, &shown, "token list", read);
            if touched.contains(&id) {
                let before = now();
                let doc = self.cli(&["token", "show", &id.to_string(), "--json"]);
                let again = Shown::of(&doc);
                // (Only a grace that ended in between may make them differ.)
                if again != shown && !matches!(self.tokens[index].fates.as_slice(), [Fate::Grace { .. }]) {
                    self.fail(format!("token {id}: token show says {again:?}, token list {shown:?}"));
                }
                self.settle(index, &again, "token show", Window(before, now()));
                self.stats.show_checks += 1;
            }
            all_shown.insert(index, shown);
        }
        self.settle_unsettled(&all_shown);

        // Through the proxy: each token's first request since the restart, in creation order,
        // so that a predecessor waiting for its successor's first use is tried before it.
        for index in 0..self.tokens.len() {
            let (id, account, secret, fates) = {
                let token = &self.tokens[index];
                (token.id, token.account, token.secret.clone(), token.fates.clone())
            };
            // A successor that a predecessor waits for is held back now and then, so that the
            // hand-over still pending is carried over a kill and checked after it.
            let awaited = self.tokens.iter().any(|t| t.fates.contains(&Fate::Handover(Some(id))));
            if awaited && self.rng.percent(50) {
                self.note(format!("token {id} held back: its predecessor stays pending"));
                continue;
            }
            let open = self.accounts[account].open().unwrap();
            let before = now();
            let Some(status) = self.proxy_get(gw, account, &secret).await else {
                self.fail(format!("token {id}: no answer from the proxy"))
            };
            let during = Window(before, now());
            let verdicts: BTreeSet<Option<bool>> = fates.iter().map(|f| f.served(open, during)).collect();
            let expected = match verdicts.into_iter().collect::<Vec<_>>().as_slice() {
                [Some(served)] => Some(*served),
                _ => None,
            };
            self.stats.proxy_checks += 1;
            let served = match status {
                StatusCode::OK => true,
                StatusCode::UNAUTHORIZED => false,
                other => self.fail(format!("token {id}: the proxy answered {other}")),
            };
            if let Some(expected) = expected.filter(|e| *e != served) {
                self.fail(format!(
                    "token {id} of {} (account open: {open}), its first request after the restart: {status}, \
                     expected {} from {fates:?}",
                    self.accounts[account].email,
                    if expected { "200" } else { "401" }
                ));
            }
            if served {
                self.first_use_seen(index);
            }
        }
    }

    /// Narrows token `index`'s fates to those `shown` fits; fails when none does.
    fn settle(&mut self, index: usize, shown: &Shown, source: &str, read: Window) {
        let token = &self.tokens[index];
        let open = self.accounts[token.account].open().unwrap();
        let fitting: Vec<Fate> = token.fates.iter().filter(|f| f.fits(shown, open, read)).cloned().collect();
        if fitting.is_empty() {
            self.fail(format!(
                "token {} of {} (account open: {open}): {source} says {shown:?}; acknowledged: one of {:?}",
                token.id, self.accounts[token.account].email, token.fates
            ));
        }
        // A grace's end is fixed once written: from now on it must stay exactly this.
        let pinned = fitting
            .into_iter()
            .map(|f| match (f, shown.revoked_at) {
                (Fate::Grace { .. }, Some(at)) => Fate::Grace { lo: at, hi: at },
                (f, _) => f,
            })
            .collect();
        self.tokens[index].fates = pinned;
    }

    /// Counts whether the changes in flight at the last kill landed, now that the database has
    /// been read (`shown`: each token's JSON), and holds a revoke-all to all or nothing.
    fn settle_unsettled(&mut self, shown: &BTreeMap<usize, Shown>) {
        for unsettled in std::mem::take(&mut self.unsettled) {
            let tokens: Vec<(i64, bool, &Shown)> = unsettled
                .tokens
                .iter()
                .map(|(index, landed)| (self.tokens[*index].id, landed.shows(&shown[index]), &shown[index]))
                .collect();
            let accounts = unsettled.accounts.iter().map(|(index, enabled, can)| {
                let account = &self.accounts[*index];
                enabled.is_none_or(|e| account.enabled == [e]) && can.is_none_or(|c| account.can_create_tokens == [c])
            });
            let landed: Vec<bool> = tokens.iter().map(|t| t.1).chain(accounts).collect();
            if unsettled.all_or_none && landed.iter().any(|l| *l) && !landed.iter().all(|l| *l) {
                self.fail(format!(
                    "{}, in flight at the kill, landed for some tokens only: (id, landed, shown) {tokens:?}",
                    unsettled.what
                ));
            }
            if landed.iter().any(|l| *l) {
                self.stats.unacked_landed += 1;
            } else {
                self.stats.unacked_not_landed += 1;
            }
        }
    }

    /// `op` for the history, with token ids and emails.
    fn describe(&self, op: &Op) -> String {
        let id = |index: &usize| self.tokens[*index].id;
        let email = |index: &usize| self.accounts[*index].email;
        match op {
            Op::Create { account } => format!("create a token for {}", email(account)),
            Op::Revoke { token } => format!("revoke token {}", id(token)),
            Op::Rotate { token, mode: Mode::Now } => format!("rotate token {} now", id(token)),
            Op::Rotate { token, mode: Mode::Grace(g) } => {
                format!("rotate token {} with a grace of {}", id(token), GRACES[*g].0)
            }
            Op::Rotate { token, mode: Mode::UntilFirstUse } => format!("rotate token {} until first use", id(token)),
            Op::RevokeAll { account } => format!("revoke-all of {}", email(account)),
            Op::Block { account, how } => format!("block {} ({how:?})", email(account)),
            Op::Unblock { account } => format!("unblock {}", email(account)),
            Op::FirstUse { token } => format!("first use of successor {}", id(token)),
        }
    }

    /// A token was served: if it is a successor some predecessor waits for, that predecessor
    /// is retired, and that is acknowledged by this very answer.
    fn first_use_seen(&mut self, successor: usize) {
        let id = self.tokens[successor].id;
        for token in &mut self.tokens {
            if token.fates.contains(&Fate::Handover(Some(id))) {
                let mut fates: Vec<Fate> = token
                    .fates
                    .iter()
                    .map(|f| if *f == Fate::Handover(Some(id)) { Fate::Revoked(vec!["rotation"]) } else { f.clone() })
                    .collect();
                fates.dedup();
                token.fates = fates;
                self.touched.insert(token.id);
            }
        }
    }

    async fn proxy_get(&self, gw: &GatewayProcess, account: usize, secret: &str) -> Option<StatusCode> {
        self.proxy_request(gw, account, secret).send().await.ok().map(|r| r.status())
    }

    /// A GET through the proxy with `account`'s email and `secret` as credentials.
    fn proxy_request(&self, gw: &GatewayProcess, account: usize, secret: &str) -> reqwest::RequestBuilder {
        self.http.get(gw.url("/x")).basic_auth(self.accounts[account].email, Some(secret))
    }

    // ---- changes ----

    /// The changes possible now, with weights.
    fn candidates(&self) -> Vec<(u32, Op)> {
        let mut ops = Vec::new();
        for (account, state) in self.accounts.iter().enumerate() {
            let open = state.open().unwrap();
            let live =
                (0..self.tokens.len()).filter(|&i| self.tokens[i].account == account && self.tokens[i].surely_live());
            let live = live.count();
            if open {
                ops.push((if live < 2 { 6 } else { 1 }, Op::Create { account }));
                // (How it is blocked is chosen once this is picked.)
                ops.push((2, Op::Block { account, how: Block::Disable }));
            } else {
                ops.push((4, Op::Unblock { account }));
            }
            if live > 0 {
                ops.push((1, Op::RevokeAll { account }));
            }
        }
        for (index, token) in self.tokens.iter().enumerate() {
            let open = self.accounts[token.account].open().unwrap();
            if token.surely_live() {
                ops.push((2, Op::Revoke { token: index }));
            }
            if token.fates == [Fate::Active] && open {
                ops.push((1, Op::Rotate { token: index, mode: Mode::Now }));
                ops.push((1, Op::Rotate { token: index, mode: Mode::Grace(0) }));
                ops.push((1, Op::Rotate { token: index, mode: Mode::UntilFirstUse }));
                let waited = self.tokens.iter().any(|t| t.fates.contains(&Fate::Handover(Some(token.id))));
                if waited {
                    ops.push((20, Op::FirstUse { token: index }));
                }
            }
        }
        ops
    }

    fn choose(&mut self) -> Op {
        let ops = self.candidates();
        let total: u32 = ops.iter().map(|(w, _)| w).sum();
        let mut pick = self.rng.below(total as usize) as u32;
        for (weight, op) in ops {
            if pick < weight {
                return match op {
                    Op::Rotate { token, mode: Mode::Grace(_) } => {
                        Op::Rotate { token, mode: Mode::Grace(self.rng.below(GRACES.len())) }
                    }
                    Op::Block { account, .. } => {
                        let how = if self.rng.percent(50) { Block::Disable } else { Block::TakePermission };
                        Op::Block { account, how }
                    }
                    op => op,
                };
            }
            pick -= weight;
        }
        unreachable!("the weights add up")
    }

    /// Starts `op` through `channel`.
    fn start(&mut self, gw: &GatewayProcess, op: &Op, channel: Channel) -> Running {
        match channel {
            Channel::Cli => {
                let mut args = self.cli_args(op);
                args.push("--json".into());
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Running::Cli(spawn_cli(&self.config, &args))
            }
            Channel::Api | Channel::Proxy => {
                let request = match channel {
                    Channel::Api => self.api_request(gw, op),
                    _ => {
                        let Op::FirstUse { token } = op else { unreachable!("only a first use goes to the proxy") };
                        let token = &self.tokens[*token];
                        self.proxy_request(gw, token.account, &token.secret)
                    }
                };
                Running::Http(tokio::spawn(async move {
                    let response = request.send().await.ok()?;
                    let status = response.status();
                    let body = response.text().await.ok().and_then(|text| serde_json::from_str(&text).ok());
                    Some((status, body))
                }))
            }
        }
    }

    fn cli_args(&mut self, op: &Op) -> Vec<String> {
        let owned = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        match op {
            Op::Create { account } => {
                let name = self.name();
                owned(&["token", "create", "--user", self.accounts[*account].email, "--name", &name])
            }
            Op::Revoke { token } => owned(&["token", "revoke", &self.tokens[*token].id.to_string()]),
            Op::Rotate { token, mode } => {
                let mut args = owned(&["token", "rotate", &self.tokens[*token].id.to_string()]);
                match mode {
                    Mode::Now => {}
                    Mode::Grace(g) => args.extend(owned(&["--grace", GRACES[*g].0])),
                    Mode::UntilFirstUse => args.push("--until-first-use".into()),
                }
                args
            }
            Op::RevokeAll { account } => owned(&["token", "revoke-all", "--user", self.accounts[*account].email]),
            Op::Block { account, how } => {
                let flag = match how {
                    Block::Disable => "--enabled",
                    Block::TakePermission => "--can-create-tokens",
                };
                owned(&["user", "set", self.accounts[*account].email, flag, "false"])
            }
            Op::Unblock { account } => owned(&[
                "user",
                "set",
                self.accounts[*account].email,
                "--enabled",
                "true",
                "--can-create-tokens",
                "true",
            ]),
            Op::FirstUse { .. } => unreachable!("a first use goes through the proxy"),
        }
    }

    fn api_request(&mut self, gw: &GatewayProcess, op: &Op) -> reqwest::RequestBuilder {
        let (method, path, body) = match op {
            Op::Create { account } => {
                let name = self.name();
                (
                    Method::POST,
                    "/api/v1/tokens".to_owned(),
                    Some(json!({"name": name, "user": self.accounts[*account].email})),
                )
            }
            Op::Revoke { token } => (Method::DELETE, format!("/api/v1/tokens/{}", self.tokens[*token].id), None),
            Op::Rotate { token, mode } => {
                let body = match mode {
                    Mode::Now => json!({}),
                    Mode::Grace(g) => json!({"grace": GRACES[*g].0}),
                    Mode::UntilFirstUse => json!({"until_first_use": true}),
                };
                (Method::POST, format!("/api/v1/tokens/{}/rotate", self.tokens[*token].id), Some(body))
            }
            Op::RevokeAll { account } => {
                (Method::POST, format!("/api/v1/users/{}/tokens/revoke-all", self.accounts[*account].email), None)
            }
            Op::Block { account, how } => {
                let body = match how {
                    Block::Disable => json!({"enabled": false}),
                    Block::TakePermission => json!({"can_create_tokens": false}),
                };
                (Method::PATCH, format!("/api/v1/users/{}", self.accounts[*account].email), Some(body))
            }
            Op::Unblock { account } => (
                Method::PATCH,
                format!("/api/v1/users/{}", self.accounts[*account].email),
                Some(json!({"enabled": true, "can_create_tokens": true})),
            ),
            Op::FirstUse { .. } => unreachable!("a first use goes through the proxy"),
        };
        let mut request = self.http.request(method, gw.admin_url(&path)).basic_auth(ROOT, Some(&self.root_secret));
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        request
    }

    /// Waits for a change to end. A CLI change is acknowledged when it exits 0; an HTTP one
    /// when it was answered 2xx (anything else answered is a failure: the model allows it).
    async fn finish(&self, op: &Op, running: Running) -> Outcome {
        match running {
            Running::Cli(child) => {
                let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
                if output.status.success() {
                    let doc = serde_json::from_slice(&output.stdout)
                        .unwrap_or_else(|e| self.fail(format!("{}: the CLI printed no JSON ({e})", self.describe(op))));
                    Outcome::Acked(Some(doc))
                } else {
                    // Not acknowledged, so allowed; but a CLI change has no reason to fail when
                    // only the gateway died, so say so loudly.
                    eprintln!(
                        "note: {} through the CLI exited {:?} around a kill: {}",
                        self.describe(op),
                        output.status.code(),
                        String::from_utf8_lossy(&output.stderr)
                    );
                    Outcome::Unacked
                }
            }
            Running::Http(task) => match task.await.unwrap() {
                Some((status, body)) if status.is_success() => Outcome::Acked(body),
                Some((status, body)) => self.fail(format!("{} was answered {status}: {body:?}", self.describe(op))),
                None => Outcome::Unacked,
            },
        }
    }

    /// Puts what `op` did (or, unacknowledged, may have done) within `during` into the model.
    fn apply(&mut self, op: &Op, channel: Channel, outcome: &Outcome, during: Window) {
        let acked = matches!(outcome, Outcome::Acked(_));
        let answer = match outcome {
            Outcome::Acked(answer) => answer.clone(),
            Outcome::Unacked => None,
        };
        let verdict = if acked { "acknowledged" } else { "NOT acknowledged" };
        self.note(format!("{channel:?} {}: {verdict}", self.describe(op)));
        let what = format!("{channel:?} {}", self.describe(op));
        let mut unsettled = Unsettled { what, tokens: Vec::new(), accounts: Vec::new(), all_or_none: false };
        match op {
            Op::Create { account } => {
                if let Some(doc) = answer.filter(|_| acked) {
                    let index = self.adopt(*account, &doc);
                    let id = self.tokens[index].id;
                    self.note(format!("  created token {id}"));
                }
                // An unacknowledged creation that landed made a token whose secret nobody
                // knows: nothing to check.
            }
            Op::Revoke { token } => {
                unsettled.tokens.push((*token, Landed::Revoked("manual")));
                self.change_token(*token, acked, |f| f.revoked("manual", during));
            }
            Op::RevokeAll { account } => {
                let indexes: Vec<usize> =
                    (0..self.tokens.len()).filter(|&i| self.tokens[i].account == *account).collect();
                for index in indexes {
                    // (A token in a grace may have been revoked by its end meanwhile.)
                    if self.tokens[index].surely_live() {
                        unsettled.tokens.push((index, Landed::Revoked("revoke_all")));
                    }
                    self.change_token(index, acked, |f| f.revoked("revoke_all", during));
                }
                unsettled.all_or_none = true;
            }
            Op::Rotate { token, mode } => {
                // The successor, when the answer named it.
                let successor = answer.as_ref().filter(|_| acked).map(|doc| {
                    let account = self.tokens[*token].account;
                    let index = self.adopt(account, doc);
                    self.tokens[index].id
                });
                if acked && successor.is_none() {
                    self.note("  acknowledged without a readable answer: the successor is unknown".into());
                }
                if let Some(id) = successor {
                    self.note(format!("  successor {id}"));
                }
                let rotated = match mode {
                    Mode::Now => Fate::Revoked(vec!["rotation"]),
                    Mode::Grace(g) => {
                        let grace = GRACES[*g].1;
                        Fate::Grace { lo: during.0.floor() as i64 + grace, hi: during.1.floor() as i64 + grace }
                    }
                    Mode::UntilFirstUse => Fate::Handover(successor),
                };
                unsettled.tokens.push((*token, Landed::Rotated));
                self.touched.insert(self.tokens[*token].id);
                self.change_token(*token, acked, |_| rotated.clone());
            }
            Op::Block { account, how } => {
                let changes = match how {
                    Block::Disable => (Some(false), None),
                    Block::TakePermission => (None, Some(false)),
                };
                unsettled.accounts.push((*account, changes.0, changes.1));
                let field = match how {
                    Block::Disable => &mut self.accounts[*account].enabled,
                    Block::TakePermission => &mut self.accounts[*account].can_create_tokens,
                };
                set_bool(field, false, acked);
                self.touch_account(*account);
            }
            Op::Unblock { account } => {
                unsettled.accounts.push((*account, Some(true), Some(true)));
                set_bool(&mut self.accounts[*account].enabled, true, acked);
                set_bool(&mut self.accounts[*account].can_create_tokens, true, acked);
                self.touch_account(*account);
            }
            Op::FirstUse { token } => {
                let id = self.tokens[*token].id;
                let waiting: Vec<usize> = (0..self.tokens.len())
                    .filter(|&i| self.tokens[i].fates.contains(&Fate::Handover(Some(id))))
                    .collect();
                for index in waiting {
                    unsettled.tokens.push((index, Landed::HandedOver));
                    self.change_token(index, acked, |f| {
                        if *f == Fate::Handover(Some(id)) { Fate::Revoked(vec!["rotation"]) } else { f.clone() }
                    });
                }
            }
        }
        let touched_anything = !unsettled.tokens.is_empty() || !unsettled.accounts.is_empty();
        if !acked && touched_anything {
            self.unsettled.push(unsettled);
        }
    }

    /// Applies `effect` to every alternative of token `index`; unacknowledged, the old
    /// alternatives stay possible too.
    fn change_token(&mut self, index: usize, acked: bool, effect: impl Fn(&Fate) -> Fate) {
        self.tokens[index].change(acked, effect);
        self.touched.insert(self.tokens[index].id);
    }

    fn touch_account(&mut self, account: usize) {
        let ids: Vec<i64> = (0..self.tokens.len())
            .filter(|&i| self.tokens[i].account == account && self.tokens[i].surely_live())
            .map(|i| self.tokens[i].id)
            .collect();
        self.touched.extend(ids);
    }

    /// One cycle: start, check, change, kill.
    async fn one_cycle(&mut self) {
        let started = Instant::now();
        let gw = GatewayProcess::start(&self.config);
        let checking = Instant::now();
        self.stats.starting += (checking - started).as_secs_f64();
        self.check(&gw).await;
        let changing = Instant::now();
        self.stats.checking += (changing - checking).as_secs_f64();
        let changes = 1 + self.rng.below(4);
        let kill = match self.rng.below(10) {
            0..=2 => Kill::RightAfterAck,
            3..=4 => Kill::AfterPause(self.rng.below(MAX_KILL_DELAY_MS as usize * 2 + 1) as u64),
            _ => Kill::InFlight(self.rng.below(MAX_KILL_DELAY_MS as usize + 1) as u64),
        };
        for n in 0..changes {
            let op = self.choose();
            let channel = match op {
                Op::FirstUse { .. } => Channel::Proxy,
                _ if self.rng.percent(50) => Channel::Cli,
                _ => Channel::Api,
            };
            match channel {
                Channel::Cli => self.stats.cli += 1,
                Channel::Api => self.stats.api += 1,
                Channel::Proxy => self.stats.proxy += 1,
            }
            self.stats.changes += 1;
            let last = n + 1 == changes;
            let t0 = now();
            let running = self.start(&gw, &op, channel);
            if let (true, Kill::InFlight(delay)) = (last, kill) {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                self.note(format!("SIGKILL {delay} ms into the change below"));
                gw.kill_now();
                let outcome = self.finish(&op, running).await;
                self.stats.in_flight += 1;
                if matches!(outcome, Outcome::Acked(_)) {
                    self.stats.in_flight_acked += 1;
                }
                self.apply(&op, channel, &outcome, Window(t0, now()));
                self.stats.changing += changing.elapsed().as_secs_f64();
                return;
            }
            let outcome = self.finish(&op, running).await;
            if matches!(outcome, Outcome::Unacked) {
                self.fail(format!("{} through {channel:?} failed with no kill under way", self.describe(&op)));
            }
            self.apply(&op, channel, &outcome, Window(t0, now()));
        }
        match kill {
            Kill::AfterPause(delay) => {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                self.note(format!("SIGKILL {delay} ms after the last acknowledgement"));
            }
            _ => self.note("SIGKILL right after the last acknowledgement".into()),
        }
        gw.kill_now();
        self.stats.changing += changing.elapsed().as_secs_f64();
    }

    async fn run(mut self) {
        let started = Instant::now();
        while self.cycle < CYCLES {
            self.one_cycle().await;
            self.cycle += 1;
        }
        // The last kill is checked too.
        let gw = GatewayProcess::start(&self.config);
        self.check(&gw).await;
        gw.kill_now();
        let s = &self.stats;
        eprintln!(
            "durability on {}: seed {}, {CYCLES} cycles in {:.1} s: {} changes ({} CLI, {} API, {} first uses), \
             {} killed in flight ({} acknowledged anyway; of the rest {} landed, {} did not), {} tokens, \
             {} proxy checks, {} token show checks; {:.1} s starting gateways, {:.1} s checking, {:.1} s changing",
            self.store,
            self.seed,
            started.elapsed().as_secs_f64(),
            s.changes,
            s.cli,
            s.api,
            s.proxy,
            s.in_flight,
            s.in_flight_acked,
            s.unacked_landed,
            s.unacked_not_landed,
            self.tokens.len(),
            s.proxy_checks,
            s.show_checks,
            s.starting,
            s.checking,
            s.changing,
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_changes_survive_sigkill_on_sqlite() {
    Run::new("SQLite", None).await.run().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_changes_survive_sigkill_on_postgres() {
    let Some(db) = TestDatabase::create().await else { return };
    Run::new("PostgreSQL", Some(&db.url)).await.run().await;
}
