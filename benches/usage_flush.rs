//! The flush of 100 000 distinct tokens used in one interval: the usage recorder's `flush` of
//! their last uses and usage counts (one count per token, a second for every tenth), one
//! transaction, on SQLite (a file) and on PostgreSQL (a database the bench creates and drops).
//! Target: under 1 s. Prints the time of each of three flushes per backend (each flush after
//! recording a fresh use of every token), their median, and the resident memory the pending
//! records held before the first flush: what 100 000 active tokens add to a gateway between
//! flushes, whatever the number of tokens in its index.
//!
//! ```text
//! cargo bench --bench usage_flush
//! ```
//!
//! PostgreSQL: `TOKENGATE_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! when nothing answers there, that part is skipped and says so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use std::sync::Arc;

use http::Method;
use sqlx::{Connection, PgConnection};
use tokengate::config::SecretUrl;
use tokengate::control::store::{ActivityBatch, Store, UsageCount, UsageRecord};
use tokengate::data::usage::UsageRecorder;
use tokengate::model::UsageOutcome;

const TOKENS: i64 = 100_000;
const ROUNDS: usize = 3;

/// Fills a migrated database with one account and `TOKENS` tokens, in one statement each,
/// through a connection of the bench's own (minting them one by one would take minutes).
async fn fill(url: &str) {
    let account = "INSERT INTO accounts (email, email_norm, superuser, token_manager, enabled, can_create_tokens, \
                   created_at, updated_at) VALUES ('bench@example.com', 'bench@example.com', FALSE, FALSE, TRUE, TRUE, 0, 0)";
    if url.starts_with("sqlite:") {
        let mut db = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query(account).execute(&mut db).await.unwrap();
        let tokens = format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {TOKENS}) \
             INSERT INTO tokens (account_id, name, live_name, digest, prefix, scopes, created_at, created_by) \
             SELECT 1, 't' || i, 't' || i, randomblob(32), 'tg_bench', 'read', 0, 'bench' FROM n"
        );
        sqlx::query(sqlx::AssertSqlSafe(tokens)).execute(&mut db).await.unwrap();
    } else {
        let mut db = PgConnection::connect(url).await.unwrap();
        sqlx::query(account).execute(&mut db).await.unwrap();
        let tokens = format!(
            "INSERT INTO tokens (account_id, name, live_name, digest, prefix, scopes, created_at, created_by) \
             SELECT 1, 't' || i, 't' || i, sha256(i::text::bytea), 'tg_bench', 'read', 0, 'bench' \
             FROM generate_series(1, {TOKENS}) AS i"
        );
        sqlx::query(sqlx::AssertSqlSafe(tokens)).execute(&mut db).await.unwrap();
    }
}

/// The process's resident memory, in KiB (Linux).
fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Records a use of every token at `at` and counts it (one route, `2xx`; every tenth token also
/// a `4xx`, as a token's requests mostly end alike), then times one flush. Also returns how much
/// resident memory the pending records took (meaningful in the first round only, before freed
/// memory is reused).
async fn timed_flush(store: &Store, at: i64) -> (Duration, u64) {
    let before = resident_kib();
    let recorder = UsageRecorder::new();
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    let route: Arc<str> = Arc::from("/orders");
    for id in 1..=TOKENS {
        recorder.record(id, at, &Method::GET, "/orders/42", ip);
        recorder.count(id, at, &route, UsageOutcome::Success);
        if id % 10 == 0 {
            recorder.count(id, at, &route, UsageOutcome::ClientError);
        }
    }
    let held_kib = resident_kib().saturating_sub(before);
    let started = Instant::now();
    let written = recorder.flush(store).await.unwrap();
    let took = started.elapsed();
    assert_eq!(written as i64, 2 * TOKENS + TOKENS / 10, "every token's use and counts were written");
    (took, held_kib)
}

/// The last uses and the usage counts of every token, as two batches.
fn split_batches(at: i64) -> (ActivityBatch, ActivityBatch) {
    let route: Arc<str> = Arc::from("/orders");
    let uses = (1..=TOKENS)
        .map(|id| UsageRecord {
            token_id: id,
            at,
            method: "GET".into(),
            path: "/orders/42".into(),
            ip: "192.0.2.7".into(),
        })
        .collect();
    let mut counts = Vec::new();
    for id in 1..=TOKENS {
        let count = |outcome| UsageCount { token_id: id, day: at / 86_400, route: route.clone(), outcome, requests: 1 };
        counts.push(count(UsageOutcome::Success));
        if id % 10 == 0 {
            counts.push(count(UsageOutcome::ClientError));
        }
    }
    (ActivityBatch { uses, ..ActivityBatch::default() }, ActivityBatch { counts, ..ActivityBatch::default() })
}

async fn measure(name: &str, url: &str) {
    let store = Store::open(&SecretUrl::new(url)).await.unwrap();
    fill(url).await;
    let mut times = Vec::new();
    let mut held = Vec::new();
    for round in 0..ROUNDS {
        let (took, held_kib) = timed_flush(&store, 1_800_000_000 + round as i64).await;
        times.push(took);
        held.push(held_kib);
    }
    let shown: Vec<String> = times.iter().map(|t| format!("{:.0} ms", t.as_secs_f64() * 1000.0)).collect();
    times.sort();
    println!(
        "  {name:<11} {TOKENS} tokens, one transaction per flush: {}  (median {:.0} ms)",
        shown.join(", "),
        times[ROUNDS / 2].as_secs_f64() * 1000.0
    );
    // The two parts of the flush, each alone in a transaction of its own, to see which costs.
    let (uses, counts) = split_batches(1_800_000_100);
    let started = Instant::now();
    store.record_activity(&uses).await.unwrap();
    let uses_took = started.elapsed();
    let started = Instant::now();
    store.record_activity(&counts).await.unwrap();
    let counts_took = started.elapsed();
    println!(
        "  {name:<11} of which, each alone: last uses {:.0} ms, usage counts (today's rows updated) {:.0} ms",
        uses_took.as_secs_f64() * 1000.0,
        counts_took.as_secs_f64() * 1000.0
    );
    println!(
        "  {name:<11} pending in memory before the first flush: {:.1} MiB resident ({} bytes per active token)",
        held[0] as f64 / 1024.0,
        held[0] * 1024 / TOKENS as u64
    );
    store.close().await;
}

#[tokio::main]
async fn main() {
    println!(
        "usage_flush: the flush of {TOKENS} distinct tokens' last uses and usage counts (target < 1 s), and the \
         memory they hold until it"
    );
    let dir = tempfile::tempdir().unwrap();
    measure("SQLite", &format!("sqlite://{}", dir.path().join("flush.db").display())).await;

    let server = std::env::var("TOKENGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let Ok(mut admin) = PgConnection::connect(&server).await else {
        println!("  PostgreSQL  skipped: nothing answers at {server}");
        return;
    };
    let db_name = format!("tg_flush_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}"))).execute(&mut admin).await.unwrap();
    let db_url = format!("{}/{db_name}", &server[..server.rfind('/').unwrap()]);
    measure("PostgreSQL", &db_url).await;
    let drop_db = format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)");
    sqlx::query(sqlx::AssertSqlSafe(drop_db)).execute(&mut admin).await.unwrap();
}
