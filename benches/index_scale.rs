//! A million tokens: how long `tokengate serve` takes to become ready, how much memory it holds
//! once it is, and what one authentication decision costs over an index that size.
//!
//! ```text
//! cargo bench --bench index_scale
//! ```
//!
//! Fills a SQLite file (and a PostgreSQL database, when one answers at
//! `TOKENGATE_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`) with
//! 1 000 000 tokens over 1 000 accounts — five scope sets, three rate limits and no limit,
//! expiries spread over a year, some never expiring, some expired, 5% revoked, a few rotation
//! hand-overs, half with last-use columns filled — by bulk `INSERT … SELECT` statements. The
//! filled database is kept between runs (under the bench's target tmp directory; a PostgreSQL
//! database `tg_index_scale_…`), keyed by the fill version and the latest migration, with the
//! secrets of a sample of its tokens beside it.
//!
//! Then, per backend, three times each:
//! - `serve` as a fresh child process (this build's `tokengate` binary; proxy and admin on
//!   127.0.0.1:0): the time from spawn to its "index loaded" and "tokengate listening" log lines
//!   (`/readyz` is asked to confirm), then, a second after ready, `VmRSS` and `VmHWM` from
//!   /proc/<pid>/status;
//! - in this process, where the load's time goes: the index `SELECT` through sqlx alone (rows
//!   fetched, not decoded: how the load read them before it read SQLite directly), the store's
//!   own scan of every row (`Store::scan_index_tokens`, rows borrowed and dropped), the scan with
//!   each row decoded into an index entry (`TokenIndex::prepare`, then dropped), and the whole
//!   [`IndexSync::load`] (scan, decode and insert on two threads, into a pre-sized index);
//! - over the index so loaded, the authentication decision (`authenticate`: Basic parse,
//!   checksum, SHA-256, lookup, checks) for 1 000 sample tokens of each kind (valid, unknown,
//!   revoked), in rounds of 1 000 decisions: the median round, in ns per decision.
//!
//! `INDEX_SCALE_BASELINE=/path/to/tokengate` also starts another build (say, of the commit
//! before a change) in each run, right after this one's, and prints its figures beside.
//!
//! Prints each run, then medians with the spread (min–max). Targets (issue 14): ready < 3 s,
//! < 300 MiB resident after ready, a decision < 300 ns. The SQLite file is read once before
//! the first start, so that every start is a warm one (the file in the page cache).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::TryStreamExt;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use sqlx::{Connection, PgConnection, SqliteConnection};
use tokengate::clock::{Clock, UnixTime};
use tokengate::config::SecretUrl;
use tokengate::control::store::{IndexTokenRef, Store};
use tokengate::control::sync::IndexSync;
use tokengate::data::index::TokenIndex;
use tokengate::data::proxy::authenticate::{AuthFailure, authenticate};
use tokengate::model::secret::Secret;

const TOKENS: i64 = 1_000_000;
const ACCOUNTS: i64 = 1_000;
/// Sample tokens with known secrets, per kind.
const SAMPLE: usize = 1_000;
const RUNS: usize = 3;
/// Rounds of `SAMPLE` decisions per run and kind.
const ROUNDS: usize = 300;
/// Bump when the fill changes, so a kept database is filled again.
const FILL_VERSION: u32 = 1;
/// The statement of the index's full load, as `src/control/store/sync_reads.rs` has it: timed
/// here through sqlx, rows fetched and not decoded.
const INDEX_SELECT: &str = "SELECT t.id, t.account_id, t.name, t.digest, t.scopes, t.rate_limit, t.expires_at, \
     t.revoked_at, t.handover_from, \
     CASE WHEN t.handover_from IS NULL THEN NULL \
          ELSE (SELECT p.digest FROM tokens p WHERE p.id = t.handover_from) END AS handover_digest \
     FROM tokens t";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!(
        "index_scale: {TOKENS} tokens over {ACCOUNTS} accounts; targets: ready < 3 s, < 300 MiB resident \
         after ready, a decision < 300 ns"
    );
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("index_scale");
    std::fs::create_dir_all(&dir).unwrap();
    let key = fill_key();

    let mut results = Vec::new();
    let sqlite = Backend::Sqlite { path: dir.join(format!("tokens-{key}.db")) };
    results.push(runtime.block_on(measure(&sqlite, &dir, &key)));

    let server = std::env::var("TOKENGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    match runtime.block_on(PgConnection::connect(&server)) {
        Ok(admin) => {
            let postgres = Backend::Postgres { server: server.clone(), name: format!("tg_index_scale_{key}") };
            runtime.block_on(admin.close()).ok();
            results.push(runtime.block_on(measure(&postgres, &dir, &key)));
        }
        Err(error) => println!("PostgreSQL: SKIPPED — cannot connect to {server}: {error}"),
    }
    print_summary(&results);
}

/// The fill's key: its version and the latest migration, so a schema change refills.
fn fill_key() -> String {
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let latest = std::fs::read_dir(migrations)
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.split('_').next().map(str::to_owned))
        .max()
        .unwrap_or_default();
    format!("v{FILL_VERSION}_m{latest}")
}

enum Backend {
    Sqlite { path: PathBuf },
    Postgres { server: String, name: String },
}

impl Backend {
    fn label(&self) -> &'static str {
        match self {
            Backend::Sqlite { .. } => "SQLite",
            Backend::Postgres { .. } => "PostgreSQL",
        }
    }

    fn url(&self) -> String {
        match self {
            Backend::Sqlite { path } => format!("sqlite://{}", path.display()),
            Backend::Postgres { server, name } => format!("{}/{name}", &server[..server.rfind('/').unwrap()]),
        }
    }

    fn secrets_file(&self, dir: &Path, key: &str) -> PathBuf {
        dir.join(format!("{}-{key}.secrets", self.label().to_lowercase()))
    }
}

/// A sample token: the account's email and the secret.
struct Known {
    email: String,
    secret: String,
}

struct Samples {
    valid: Vec<Known>,
    revoked: Vec<Known>,
}

fn email(account: i64) -> String {
    format!("user{account}@example.com")
}

fn account_of(token: i64) -> i64 {
    token % ACCOUNTS + 1
}

/// Accounts 7, 107, ... are disabled and 13, 113, ... lack the token permission.
fn account_usable(account: i64) -> bool {
    account % 100 != 7 && account % 100 != 13
}

/// Ids of the sample tokens: spread over the table, owned by usable accounts.
fn sample_ids() -> (Vec<i64>, Vec<i64>) {
    let mut valid = Vec::new();
    let mut revoked = Vec::new();
    let mut id = 1;
    while valid.len() < SAMPLE {
        if account_usable(account_of(id)) && account_usable(account_of(id + 1)) {
            valid.push(id);
            revoked.push(id + 1);
        }
        id += 997;
        id = (id - 1) % (TOKENS - 1) + 1;
    }
    (valid, revoked)
}

/// The bulk statements of the fill. `{from}` is the source of `i` (1..=TOKENS), `{digest}` and
/// `{prefix}` the backend's random bytes and short text.
const ACCOUNTS_FILL: &str = "INSERT INTO accounts (id, email, email_norm, name, superuser, token_manager, enabled, \
     can_create_tokens, created_at, updated_at) \
     SELECT i, 'user' || i || '@example.com', 'user' || i || '@example.com', 'User ' || i, FALSE, FALSE, \
     i % 100 <> 7, i % 100 <> 13, 1700000000, 1700000000 FROM {from}";

const TOKENS_FILL: &str = "INSERT INTO tokens (id, account_id, name, live_name, description, digest, prefix, \
     scopes, rate_limit, created_at, created_by, expires_at, revoked_at, revoked_by, revoke_reason, handover_from, \
     last_used_at, last_used_method, last_used_path, last_used_ip) \
     SELECT i, i % 1000 + 1, 'ci-deploy-' || (i / 1000), \
     CASE WHEN i % 20 = 0 THEN NULL ELSE 'ci-deploy-' || (i / 1000) END, \
     CASE WHEN i % 4 = 0 THEN 'nightly export for team ' || (i % 97) END, {digest}, {prefix}, \
     CASE i % 10 WHEN 0 THEN '*' WHEN 1 THEN 'read write' WHEN 2 THEN 'read write' \
          WHEN 3 THEN 'read admin:read' WHEN 4 THEN 'deploy read' ELSE 'read' END, \
     CASE i % 7 WHEN 0 THEN '100/s' WHEN 1 THEN '600/min burst 50' WHEN 2 THEN '10/s' END, \
     1700000000 + i, 'admin@example.com', \
     CASE WHEN i % 3 = 0 THEN NULL WHEN i % 50 = 1 THEN 1700000000 + i ELSE 1900000000 + (i % 365) * 86400 END, \
     CASE WHEN i % 20 = 0 THEN 1750000000 + i END, \
     CASE WHEN i % 20 = 0 THEN 'admin@example.com' END, \
     CASE WHEN i % 20 = 0 THEN 'manual' END, \
     CASE WHEN i % 5000 = 1 AND i > 1 THEN i - 1 END, \
     CASE WHEN i % 2 = 0 THEN 1760000000 + i END, \
     CASE WHEN i % 2 = 0 THEN 'GET' END, \
     CASE WHEN i % 2 = 0 THEN '/api/v4/projects/' || (i % 5000) || '/pipelines' END, \
     CASE WHEN i % 2 = 0 THEN '10.0.' || (i % 256) || '.' || (i % 251) END \
     FROM {from}";

/// Makes a sample token's row usable (or revoked) and gives it a known secret.
const SAMPLE_UPDATE: &str = "UPDATE tokens SET digest = $1, revoked_at = $2, live_name = name, \
     expires_at = 1900000000, handover_from = NULL WHERE id = $3";

/// Fills the backend unless a complete fill of this key is there; returns the sample secrets.
async fn prepare(backend: &Backend, dir: &Path, key: &str) -> Samples {
    let secrets_file = backend.secrets_file(dir, key);
    if let Some(samples) = kept_fill(backend, &secrets_file).await {
        println!("{}: reusing the filled database ({})", backend.label(), backend.url());
        return samples;
    }
    println!("{}: filling {TOKENS} tokens into {} …", backend.label(), backend.url());
    let started = Instant::now();
    let (valid_ids, revoked_ids) = sample_ids();
    let mint = |id: &i64| (*id, Secret::generate().unwrap());
    let valid: Vec<(i64, Secret)> = valid_ids.iter().map(mint).collect();
    let revoked: Vec<(i64, Secret)> = revoked_ids.iter().map(mint).collect();
    let from_n = |sql: &str| sql.replace("{from}", "n");
    match backend {
        Backend::Sqlite { path } => {
            let filling = path.with_extension("filling");
            for suffix in ["", "-wal", "-shm"] {
                std::fs::remove_file(format!("{}{suffix}", filling.display())).ok();
            }
            let url = format!("sqlite://{}", filling.display());
            Store::open(&SecretUrl::new(&url)).await.unwrap().close().await;
            let mut db = SqliteConnection::connect(&url).await.unwrap();
            sqlx::query("PRAGMA synchronous = OFF").execute(&mut db).await.unwrap();
            let numbers =
                |n: i64| format!("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) ");
            let mut tx = db.begin().await.unwrap();
            let accounts = numbers(ACCOUNTS) + &from_n(ACCOUNTS_FILL);
            sqlx::query(sqlx::AssertSqlSafe(accounts)).execute(&mut *tx).await.unwrap();
            let tokens = numbers(TOKENS)
                + &from_n(TOKENS_FILL)
                    .replace("{digest}", "randomblob(32)")
                    .replace("{prefix}", "'tg_' || lower(hex(randomblob(4)))");
            sqlx::query(sqlx::AssertSqlSafe(tokens)).execute(&mut *tx).await.unwrap();
            for (kind, tokens) in [(None, &valid), (Some(1_750_000_000i64), &revoked)] {
                for (id, secret) in tokens {
                    let digest = secret.digest().as_bytes().to_vec();
                    sqlx::query(SAMPLE_UPDATE).bind(digest).bind(kind).bind(id).execute(&mut *tx).await.unwrap();
                }
            }
            tx.commit().await.unwrap();
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut db).await.unwrap();
            db.close().await.unwrap();
            for suffix in ["-wal", "-shm"] {
                std::fs::remove_file(format!("{}{suffix}", filling.display())).ok();
            }
            std::fs::rename(&filling, path).unwrap();
        }
        Backend::Postgres { server, name } => {
            let mut admin = PgConnection::connect(server).await.unwrap();
            let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&mut admin).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
            admin.close().await.ok();
            let url = backend.url();
            Store::open(&SecretUrl::new(&url)).await.unwrap().close().await;
            let mut db = PgConnection::connect(&url).await.unwrap();
            sqlx::query("SET synchronous_commit = off").execute(&mut db).await.unwrap();
            let mut tx = db.begin().await.unwrap();
            let series = |n: i64| format!("generate_series(1, {n}) AS n(i)");
            let accounts = ACCOUNTS_FILL.replace("{from}", &series(ACCOUNTS));
            sqlx::query(sqlx::AssertSqlSafe(accounts)).execute(&mut *tx).await.unwrap();
            let tokens = TOKENS_FILL
                .replace("{from}", &series(TOKENS))
                .replace("{digest}", "sha256(convert_to('filler-' || i || '-' || random(), 'UTF8'))")
                .replace("{prefix}", "'tg_' || substr(md5(i::text), 1, 8)");
            sqlx::query(sqlx::AssertSqlSafe(tokens)).execute(&mut *tx).await.unwrap();
            for (kind, tokens) in [(None, &valid), (Some(1_750_000_000i64), &revoked)] {
                for (id, secret) in tokens {
                    let digest = secret.digest().as_bytes().to_vec();
                    sqlx::query(SAMPLE_UPDATE).bind(digest).bind(kind).bind(id).execute(&mut *tx).await.unwrap();
                }
            }
            for table in ["accounts", "tokens"] {
                let advance =
                    format!("SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))");
                sqlx::query(sqlx::AssertSqlSafe(advance)).execute(&mut *tx).await.unwrap();
            }
            tx.commit().await.unwrap();
            sqlx::query("VACUUM ANALYZE tokens").execute(&mut db).await.unwrap();
            db.close().await.ok();
        }
    }
    let mut text = String::new();
    for (kind, tokens) in [("valid", &valid), ("revoked", &revoked)] {
        for (id, secret) in tokens {
            text.push_str(&format!("{kind} {} {}\n", email(account_of(*id)), secret.expose()));
        }
    }
    std::fs::write(&secrets_file, text).unwrap();
    println!("{}: filled in {:.1} s", backend.label(), started.elapsed().as_secs_f64());
    samples_from(&std::fs::read_to_string(&secrets_file).unwrap())
}

/// The samples of a complete earlier fill, if the database still holds every token.
async fn kept_fill(backend: &Backend, secrets_file: &Path) -> Option<Samples> {
    let text = std::fs::read_to_string(secrets_file).ok()?;
    if let Backend::Sqlite { path } = backend
        && !path.exists()
    {
        return None;
    }
    let url = backend.url();
    let count: i64 = if url.starts_with("sqlite:") {
        let mut db = SqliteConnection::connect(&url).await.ok()?;
        sqlx::query_scalar("SELECT COUNT(*) FROM tokens").fetch_one(&mut db).await.ok()?
    } else {
        let mut db = PgConnection::connect(&url).await.ok()?;
        sqlx::query_scalar("SELECT COUNT(*) FROM tokens").fetch_one(&mut db).await.ok()?
    };
    (count == TOKENS).then(|| samples_from(&text))
}

fn samples_from(text: &str) -> Samples {
    let mut samples = Samples { valid: Vec::new(), revoked: Vec::new() };
    for line in text.lines() {
        let mut fields = line.split(' ');
        let (kind, email, secret) = (fields.next().unwrap(), fields.next().unwrap(), fields.next().unwrap());
        let known = Known { email: email.into(), secret: secret.into() };
        match kind {
            "valid" => samples.valid.push(known),
            _ => samples.revoked.push(known),
        }
    }
    samples
}

/// One `serve` start.
struct ServeRun {
    loaded: Duration,
    ready: Duration,
    tokens: u64,
    rss: u64,
    hwm: u64,
}

/// One in-process load, split where the time goes, and the decisions over its index.
struct LoadRun {
    sqlx_select: Duration,
    scan: Duration,
    scan_prepare: Duration,
    load: Duration,
    index_growth: u64,
    decision_ok: f64,
    decision_unknown: f64,
    decision_revoked: f64,
}

struct BackendResult {
    label: &'static str,
    serve: Vec<ServeRun>,
    baseline: Vec<ServeRun>,
    load: Vec<LoadRun>,
}

async fn measure(backend: &Backend, dir: &Path, key: &str) -> BackendResult {
    let samples = prepare(backend, dir, key).await;
    if let Backend::Sqlite { path } = backend {
        // Every start is a warm start, the first too (builds may have pushed the file out of
        // the page cache since it was filled): one read of the whole file first.
        let mut file = std::fs::File::open(path).unwrap();
        std::io::copy(&mut file, &mut std::io::sink()).unwrap();
    }
    let config = write_config(dir, backend);
    let mut result =
        BackendResult { label: backend.label(), serve: Vec::new(), baseline: Vec::new(), load: Vec::new() };
    let baseline = std::env::var_os("INDEX_SCALE_BASELINE").map(PathBuf::from);
    println!(
        "{:<10} {:>3} {:>9} {:>9} {:>9} {:>9} {:>8} | {:>7} {:>7} {:>7} {:>7} {:>8} | {:>6} {:>7} {:>7}",
        "backend",
        "run",
        "loaded s",
        "ready s",
        "RSS MiB",
        "peak MiB",
        "B/token",
        "sqlx s",
        "scan s",
        "+prep s",
        "load s",
        "idx MiB",
        "ok ns",
        "unkn ns",
        "revk ns"
    );
    for run in 1..=RUNS {
        let serve = serve_once(Path::new(env!("CARGO_BIN_EXE_tokengate")), &config);
        assert_eq!(serve.tokens, TOKENS as u64, "serve loaded every token");
        if let Some(binary) = &baseline {
            let before = serve_once(binary, &config);
            println!(
                "{:<10} {:>3} {:>9.2} {:>9.2} {:>9.1} {:>9.1} {:>8} | baseline: {}",
                backend.label(),
                run,
                before.loaded.as_secs_f64(),
                before.ready.as_secs_f64(),
                mib(before.rss),
                mib(before.hwm),
                before.rss / TOKENS as u64,
                binary.display()
            );
            result.baseline.push(before);
        }
        let load = load_once(backend, &samples).await;
        println!(
            "{:<10} {:>3} {:>9.2} {:>9.2} {:>9.1} {:>9.1} {:>8} | {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>8.1} | {:>6.0} {:>7.0} {:>7.0}",
            backend.label(),
            run,
            serve.loaded.as_secs_f64(),
            serve.ready.as_secs_f64(),
            mib(serve.rss),
            mib(serve.hwm),
            serve.rss / TOKENS as u64,
            load.sqlx_select.as_secs_f64(),
            load.scan.as_secs_f64(),
            load.scan_prepare.as_secs_f64(),
            load.load.as_secs_f64(),
            mib(load.index_growth),
            load.decision_ok,
            load.decision_unknown,
            load.decision_revoked,
        );
        result.serve.push(serve);
        result.load.push(load);
    }
    result
}

fn write_config(dir: &Path, backend: &Backend) -> PathBuf {
    let path = dir.join(format!("{}.toml", backend.label().to_lowercase()));
    std::fs::write(
        &path,
        format!(
            r#"[proxy]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[database]
url = "{}"

[[routes]]
prefix = "/"
upstream = "http://127.0.0.1:9"
"#,
            backend.url()
        ),
    )
    .unwrap();
    path
}

/// Starts `serve`, waits for it to be ready, reads its memory a second later, stops it.
fn serve_once(binary: &Path, config: &Path) -> ServeRun {
    let started = Instant::now();
    let mut child = Command::new(binary)
        .args(["--config", config.to_str().unwrap(), "serve"])
        .env("TOKENGATE_LOG_FORMAT", "json")
        .env("TOKENGATE_LOG", "warn,tokengate::gateway=info,tokengate::control::sync=info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    // Reads the log to the end, so a full pipe never stalls the gateway.
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let at = started.elapsed();
            match serde_json::from_str::<serde_json::Value>(&line) {
                Ok(entry) if entry["fields"]["message"] == "index loaded" => {
                    tx.send(Event::Loaded(at, entry["fields"]["tokens"].as_u64().unwrap_or(0))).ok();
                }
                Ok(entry) if entry["fields"]["message"] == "tokengate listening" => {
                    let admin = entry["fields"]["admin"].as_str().unwrap_or_default().parse().ok();
                    tx.send(Event::Listening(at, admin)).ok();
                }
                _ => eprintln!("tokengate: {line}"),
            }
        }
    });
    let mut guard = Stopper(Some(child));
    let mut loaded = None;
    let (ready, admin) = loop {
        match rx.recv_timeout(Duration::from_secs(120)).expect("tokengate became ready") {
            Event::Loaded(at, tokens) => loaded = Some((at, tokens)),
            Event::Listening(at, admin) => break (at, admin),
        }
    };
    let (loaded, tokens) = loaded.expect("an index loaded line before listening");
    assert!(admin.is_some_and(ready_probe), "/readyz answers 200 once tokengate listens");
    std::thread::sleep(Duration::from_secs(1));
    let (rss, hwm) = memory(pid);
    guard.stop();
    ServeRun { loaded, ready, tokens, rss, hwm }
}

enum Event {
    Loaded(Duration, u64),
    Listening(Duration, Option<SocketAddr>),
}

/// Stops the child with SIGTERM (an orderly shutdown leaves the registry clean), killing it
/// if it takes more than 10 s; also on a panic.
struct Stopper(Option<Child>);

impl Stopper {
    fn stop(&mut self) {
        let Some(mut child) = self.0.take() else { return };
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().ok();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().ok();
        child.wait().ok();
    }
}

impl Drop for Stopper {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `GET /readyz` answers 200.
fn ready_probe(admin: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(admin) else { return false };
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let request = "GET /readyz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    stream.read_to_string(&mut response).ok();
    response.starts_with("HTTP/1.1 200")
}

/// `VmRSS` and `VmHWM` of a process, in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Times the index `SELECT` through sqlx, the store's scan, the scan with decoding, and the
/// whole load; then decisions.
async fn load_once(backend: &Backend, samples: &Samples) -> LoadRun {
    let url = backend.url();
    let sqlx_select = if url.starts_with("sqlite:") {
        let mut db = SqliteConnection::connect(&url).await.unwrap();
        time_select(sqlx::query(INDEX_SELECT).fetch(&mut db)).await
    } else {
        let mut db = PgConnection::connect(&url).await.unwrap();
        time_select(sqlx::query(INDEX_SELECT).fetch(&mut db)).await
    };

    let store = Store::connect(&SecretUrl::new(&url)).await.unwrap();
    let rows = Arc::new(AtomicI64::new(0));
    let started = Instant::now();
    let counter = Arc::clone(&rows);
    let count = move |row: IndexTokenRef<'_>| {
        black_box(row);
        counter.fetch_add(1, Relaxed);
    };
    let _ = store.scan_index_tokens(count).await.unwrap();
    let scan = started.elapsed();
    assert_eq!(rows.load(Relaxed), TOKENS);
    let scratch = Arc::new(TokenIndex::new());
    let started = Instant::now();
    let prepare = move |row: IndexTokenRef<'_>| drop(black_box(scratch.prepare(row)));
    let _ = store.scan_index_tokens(prepare).await.unwrap();
    let scan_prepare = started.elapsed();

    let before = memory(std::process::id()).0;
    let started = Instant::now();
    let sync = IndexSync::load(store.clone()).await.unwrap();
    let load = started.elapsed();
    let index_growth = memory(std::process::id()).0.saturating_sub(before);
    store.close().await;
    let index = sync.index();
    assert_eq!(index.token_count(), TOKENS as usize);

    let now = Clock::System.now();
    let requests = |known: &[Known]| known.iter().map(|k| basic_headers(&k.email, &k.secret)).collect::<Vec<_>>();
    let valid = requests(&samples.valid);
    let revoked = requests(&samples.revoked);
    let unknown: Vec<HeaderMap> =
        samples.valid.iter().map(|k| basic_headers(&k.email, Secret::generate().unwrap().expose())).collect();
    // The bench measures what it claims to: every request gets the decision of its kind.
    assert!(valid.iter().all(|h| authenticate(index, h, now).is_ok()));
    assert!(revoked.iter().all(|h| matches!(authenticate(index, h, now), Err(AuthFailure::Revoked(_)))));
    assert!(unknown.iter().all(|h| authenticate(index, h, now).err() == Some(AuthFailure::UnknownToken)));
    LoadRun {
        sqlx_select,
        scan,
        scan_prepare,
        load,
        index_growth,
        decision_ok: decision_ns(index, &valid, now),
        decision_unknown: decision_ns(index, &unknown, now),
        decision_revoked: decision_ns(index, &revoked, now),
    }
}

/// Drains a row stream, counting the rows; the time it took.
async fn time_select<S, R>(mut rows: S) -> Duration
where
    S: futures_util::Stream<Item = Result<R, sqlx::Error>> + Unpin,
{
    let started = Instant::now();
    let mut count = 0i64;
    while let Some(row) = rows.try_next().await.unwrap() {
        black_box(&row);
        count += 1;
    }
    assert_eq!(count, TOKENS);
    started.elapsed()
}

fn basic_headers(email: &str, secret: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let value = format!("Basic {}", STANDARD.encode(format!("{email}:{secret}")));
    headers.insert(AUTHORIZATION, HeaderValue::from_str(&value).unwrap());
    headers.insert(http::header::HOST, HeaderValue::from_static("api.example.com"));
    headers.insert(http::header::USER_AGENT, HeaderValue::from_static("bench/1.0"));
    headers
}

/// The median over `ROUNDS` rounds of one decision per request, in ns per decision.
fn decision_ns(index: &TokenIndex, requests: &[HeaderMap], now: UnixTime) -> f64 {
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            for headers in requests {
                black_box(authenticate(index, black_box(headers), black_box(now)).is_ok());
            }
            started.elapsed().as_nanos() as f64 / requests.len() as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

/// The median and the spread of some figures.
/// A median with its spread: `1.23 (1.10–1.40)`.
fn show((median, min, max): (f64, f64, f64), digits: usize) -> String {
    format!("{median:.digits$} ({min:.digits$}–{max:.digits$})")
}

/// The table's cells of `serve` runs: ready, index loaded, RSS after ready, peak, RSS per token.
fn serve_cells(runs: &[ServeRun]) -> String {
    let serve = |f: fn(&ServeRun) -> f64| stats(runs.iter().map(f).collect());
    [
        show(serve(|s| s.ready.as_secs_f64()), 2),
        show(serve(|s| s.loaded.as_secs_f64()), 2),
        show(serve(|s| mib(s.rss)), 0),
        show(serve(|s| mib(s.hwm)), 0),
        show(serve(|s| (s.rss / TOKENS as u64) as f64), 0),
    ]
    .join(" | ")
}

fn stats(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 2], values[0], values[values.len() - 1])
}

fn print_summary(results: &[BackendResult]) {
    println!();
    println!("Medians of {RUNS} runs (min–max):");
    println!(
        "| backend | ready s | index loaded s | RSS after ready MiB | peak MiB | RSS bytes/token | sqlx SELECT s | scan s | scan + prepare s | in-process load s | index growth MiB (run 1) | decision ok ns | unknown ns | revoked ns |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for result in results {
        if !result.baseline.is_empty() {
            println!("| {} (baseline) | {} | | | | | | | | |", result.label, serve_cells(&result.baseline));
        }
        let load = |f: fn(&LoadRun) -> f64| stats(result.load.iter().map(f).collect());
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} |",
            result.label,
            serve_cells(&result.serve),
            show(load(|l| l.sqlx_select.as_secs_f64()), 2),
            show(load(|l| l.scan.as_secs_f64()), 2),
            show(load(|l| l.scan_prepare.as_secs_f64()), 2),
            show(load(|l| l.load.as_secs_f64()), 2),
            mib(result.load[0].index_growth),
            show(load(|l| l.decision_ok), 0),
            show(load(|l| l.decision_unknown), 0),
            show(load(|l| l.decision_revoked), 0),
        );
    }
}
