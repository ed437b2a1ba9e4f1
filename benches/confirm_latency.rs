//! How long a confirmed change waits for the fleet, and what the wake-ups cost an idle gateway.
//!
//! 1. Confirm latency: fleets of 1, 3 and 10 real `tokengate serve` processes on one SQLite
//!    file, then on one PostgreSQL database (default `[sync]` settings). A writer in this
//!    process, built like the CLI's (a store of its own, no index,
//!    `LifecycleService::with_confirmation`), revokes 200 tokens one by one, 0-50 ms apart. For
//!    each it records `Confirmation.elapsed` (from reading the change's sequence until every
//!    running gateway reported it), the wall time of the whole `revoke_token` call, and when the
//!    last gateway began reporting it had applied the change (the latest `applied_ms` in the
//!    registry, from the call's start: what is left of the confirm time after it is the
//!    reporting). It counts confirmations that are not complete (`confirmed == running == N`),
//!    and right after each call asks every gateway to admit the revoked token: any answer but
//!    401 is a confirmation that lied; a token never revoked must still pass at the end. It also
//!    takes the fleet's CPU time while idle (5 s before the revocations) and during them.
//! 2. Idle cost: four idle gateways side by side (no traffic, no changes, a database each):
//!    SQLite and PostgreSQL, each with the default `sync.interval` (250 ms) and with
//!    `sync.interval = "1h"`, which leaves the wake-ups and the heartbeat (there is no switch
//!    that turns the wake-ups off). CPU time over 20 s after a 3 s warm-up: utime + stime from
//!    /proc/PID/stat over the window, and the window's 1 s samples (median, min, max) from
//!    /proc/PID/task/*/schedstat, whose nanoseconds a 1 s sample needs; then, with `strace` on
//!    PATH, each gateway's system calls per second over 5 s (after the CPU window: strace slows
//!    what it traces).
//! 3. A summary table.
//!
//! ```text
//! cargo bench --bench confirm_latency
//! ```
//!
//! PostgreSQL: `TOKENGATE_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! the bench creates and drops databases of its own, and says so and skips the PostgreSQL part
//! when none answers. SQLite files live in a temporary directory (`TMPDIR`): with
//! `synchronous=FULL` every commit, a gateway's report included, waits for an fsync, so the
//! disk under it shows in the figures. Nothing is pinned: the fleets and the writer share the
//! machine's CPUs. About two minutes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../examples/support/echo.rs"]
mod echo;

#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/serve.rs"]
mod serve;
use cpu::{clock_ticks_per_second, cpu_ticks};
use serve::{spawn_serve, wait_until_listening};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use tokengate::clock::Clock;
use tokengate::config::{Config, SecretUrl};
use tokengate::control::service::{Actor, CreateAccount, CreateToken, ExpiryRequest, LifecycleService};
use tokengate::control::store::Store;

const FLEETS: [usize; 3] = [1, 3, 10];
const REVOCATIONS: usize = 200;
/// Revocations start 0..=this many ms after the previous one returned (a fixed pseudo-random
/// sequence), so they do not fall in step with the gateways' one-second heartbeats.
const MAX_GAP_MS: u64 = 50;
const FLEET_IDLE: Duration = Duration::from_secs(5);
const IDLE_WARM_UP: Duration = Duration::from_secs(3);
const IDLE_WINDOW: Duration = Duration::from_secs(20);
const STRACE_WINDOW: Duration = Duration::from_secs(5);
const EMAIL: &str = "confirm@example.com";

// ---------------------------------------------------------------------------------------------
// Gateways
// ---------------------------------------------------------------------------------------------

/// A `tokengate serve` child, killed and reaped when dropped (also while a panic unwinds).
struct Gateway {
    child: Child,
    proxy: SocketAddr,
    /// Its WARN and ERROR log lines, read on a thread of their own after it listens.
    warnings: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_gateway(config: &Path) -> Gateway {
    let (child, mut lines) = spawn_serve(without_access_log(), config);
    let warnings = Arc::new(Mutex::new(Vec::new()));
    // Owned from here on, so a failure below still kills and reaps the child (see Drop).
    let mut gateway = Gateway { child, proxy: SocketAddr::from(([0, 0, 0, 0], 0)), warnings: warnings.clone() };
    gateway.proxy = wait_until_listening(&mut lines, |_| {}).expect("a gateway exited before listening");
    // Keep reading, so the gateway never writes into a full or closed pipe.
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if line.contains("\"WARN\"") || line.contains("\"ERROR\"") {
                warnings.lock().unwrap().push(line);
            }
        }
    });
    gateway
}

fn write_config(dir: &Path, name: &str, db_url: &str, upstream: SocketAddr, interval: Option<&str>) -> PathBuf {
    let path = dir.join(name);
    let sync = interval.map_or_else(String::new, |i| format!("[sync]\ninterval = \"{i}\"\n"));
    std::fs::write(
        &path,
        format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = \"{db_url}\"\n\
             [rate_limit]\nfailed_auth = \"none\"\n{sync}[[routes]]\nprefix = \"/\"\nupstream = \"http://{upstream}\"\n"
        ),
    )
    .unwrap();
    path
}

// ---------------------------------------------------------------------------------------------
// CPU accounting
// ---------------------------------------------------------------------------------------------

/// On-CPU time of every live thread of a process in nanoseconds (/proc/PID/task/*/schedstat):
/// finer than the clock ticks of /proc/PID/stat, which a 1 s sample of an idle process needs,
/// but blind to threads that exit in between (the totals from /proc/PID/stat are not).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn fleet_cpu_ns(pids: &[u32]) -> u64 {
    pids.iter().map(|&p| cpu_ns(p)).sum()
}

/// The system calls a process makes per second, most frequent first, from `strace -f -c`
/// attached for `window`; `None` without strace or when it cannot attach.
fn start_strace(pid: u32, out: &Path) -> Option<Child> {
    Command::new("strace")
        .args(["-f", "-c", "-o", out.to_str().unwrap(), "-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

fn stop_strace(mut strace: Child, out: &Path, window: Duration) -> Option<(f64, Vec<(String, f64)>)> {
    // SIGINT (not kill): strace then detaches, writes its summary and exits (status 130).
    let _ = Command::new("kill").args(["-INT", &strace.id().to_string()]).status();
    strace.wait().ok()?;
    let text = std::fs::read_to_string(out).ok().filter(|text| text.contains("total"))?;
    let mut calls = Vec::new();
    let mut total = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('%') && !l.starts_with('-')) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 5 {
            continue;
        }
        let name = fields[fields.len() - 1].to_owned();
        let Ok(count) = fields[3].parse::<f64>() else { continue };
        let rate = count / window.as_secs_f64();
        if name == "total" {
            total = rate;
        } else {
            calls.push((name, rate));
        }
    }
    calls.sort_by(|a, b| b.1.total_cmp(&a.1));
    Some((total, calls))
}

// ---------------------------------------------------------------------------------------------
// Databases
// ---------------------------------------------------------------------------------------------

/// The PostgreSQL server and the databases this bench made on it.
struct Postgres {
    server: String,
    admin: PgConnection,
    made: Vec<String>,
}

impl Postgres {
    async fn connect() -> Result<Postgres, String> {
        let server = std::env::var("TOKENGATE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&server)).await {
            Ok(Ok(admin)) => Ok(Postgres { server, admin, made: Vec::new() }),
            Ok(Err(error)) => Err(format!("no PostgreSQL at {server}: {error}")),
            Err(_) => Err(format!("no PostgreSQL answer from {server} within 5 s")),
        }
    }

    /// A fresh database; its URL.
    async fn create(&mut self, suffix: &str) -> String {
        let name = format!("tg_confirm_{}_{suffix}", std::process::id());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut self.admin).await.unwrap();
        self.made.push(name.clone());
        format!("{}/{name}", &self.server[..self.server.rfind('/').unwrap()])
    }

    async fn drop_all(&mut self) {
        for name in std::mem::take(&mut self.made) {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            if let Err(error) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut self.admin).await {
                eprintln!("confirm_latency: cannot drop database {name}: {error}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Confirm latency
// ---------------------------------------------------------------------------------------------

struct LatencyRow {
    backend: &'static str,
    gateways: usize,
    /// `Confirmation.elapsed`, sorted.
    confirm: Vec<Duration>,
    /// The whole `revoke_token` call, sorted.
    call: Vec<Duration>,
    /// From the call's start until the last gateway began reporting it had applied the change
    /// (the latest `applied_ms` in the registry; millisecond wall clock), sorted.
    applied: Vec<Duration>,
    incomplete: usize,
    /// Probes right after a confirmed revocation that the gateway still admitted.
    admitted: usize,
    probes: usize,
    idle_cpu_ms_per_s: f64,
    cpu_ms_per_revocation: f64,
    warnings: Vec<String>,
}

/// A fixed pseudo-random sequence (xorshift64), for the gaps between revocations.
struct Gaps(u64);

impl Gaps {
    fn next(&mut self) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(self.0 % (MAX_GAP_MS + 1))
    }
}

async fn probe(client: &reqwest::Client, gateway: &Gateway, secret: &str) -> u16 {
    let url = format!("http://{}/x", gateway.proxy);
    client.get(url).basic_auth(EMAIL, Some(secret)).send().await.unwrap().status().as_u16()
}

async fn latency_run(
    backend: &'static str,
    db_url: &str,
    gateways: usize,
    dir: &Path,
    upstream: SocketAddr,
) -> LatencyRow {
    let config_path = write_config(dir, &format!("{backend}-{gateways}.toml"), db_url, upstream, None);
    let config = Config::load(Some(&config_path), Vec::new()).unwrap();
    let store = Store::open(&SecretUrl::new(db_url)).await.unwrap();
    let actor = Actor::cli();

    // Tokens first, before any gateway runs: nothing to wait for yet. One more than revoked:
    // at the end it must still be admitted everywhere, so the refusals were not of everything.
    let setup = LifecycleService::new(store.clone(), config.tokens.clone(), Clock::System, None);
    let account = CreateAccount { email: EMAIL.into(), can_create_tokens: true, ..CreateAccount::default() };
    setup.create_account(account, &actor).await.unwrap();
    let mut tokens = Vec::new();
    for i in 0..=REVOCATIONS {
        let request = CreateToken {
            owner_email: EMAIL.into(),
            name: format!("t{i}"),
            description: None,
            expiry: ExpiryRequest::Default,
            scopes: vec![],
            rate_limit: None,
        };
        let created = setup.create_token(request, &actor).await.unwrap();
        tokens.push((created.token.id, created.secret.expose().to_owned()));
    }
    let (control_id, control_secret) = tokens.pop().unwrap();

    let fleet: Vec<Gateway> = (0..gateways).map(|_| start_gateway(&config_path)).collect();
    let pids: Vec<u32> = fleet.iter().map(Gateway::pid).collect();
    let policy = config.sync.confirm_policy();
    let since = || tokengate::clock::wall_ms() - policy.stale_after.as_millis() as i64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.running_gateways(since()).await.unwrap().len() != gateways {
        assert!(Instant::now() < deadline, "{backend}: the {gateways} gateways did not all register");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_before = (fleet_cpu_ns(&pids), Instant::now());
    tokio::time::sleep(FLEET_IDLE).await;
    let idle_cpu_ms_per_s = (fleet_cpu_ns(&pids) - idle_before.0) as f64 / 1e6 / idle_before.1.elapsed().as_secs_f64();

    // The writer, as the CLI builds it: no index of its own, waits for the fleet.
    let writer = LifecycleService::new(store.clone(), config.tokens.clone(), Clock::System, None)
        .with_confirmation(Some(policy), None);
    let clients: Vec<reqwest::Client> =
        (0..gateways).map(|_| reqwest::Client::builder().no_proxy().build().unwrap()).collect();
    let mut gaps = Gaps(0x9E37_79B9_7F4A_7C15);
    let (mut confirm, mut call, mut applied) = (Vec::new(), Vec::new(), Vec::new());
    let (mut incomplete, mut admitted, mut probes) = (0, 0, 0);
    let cpu_before = fleet_cpu_ns(&pids);
    for (id, secret) in &tokens {
        tokio::time::sleep(gaps.next()).await;
        let started_ms = tokengate::clock::wall_ms();
        let started = Instant::now();
        let revoked = writer.revoke_token(*id, &actor).await.unwrap();
        call.push(started.elapsed());
        assert!(!revoked.already, "token {id} was revoked before its turn");
        match &revoked.confirmation {
            Some(c) => {
                confirm.push(c.elapsed);
                if !(c.complete() && c.running == gateways && c.confirmed == gateways) {
                    incomplete += 1;
                }
            }
            None => incomplete += 1,
        }
        let answers =
            futures_util::future::join_all(fleet.iter().zip(&clients).map(|(g, client)| probe(client, g, secret)))
                .await;
        probes += answers.len();
        admitted += answers.iter().filter(|&&status| status != 401).count();
        let last_applied = store.running_gateways(since()).await.unwrap().iter().map(|g| g.applied_ms).max().unwrap();
        applied.push(Duration::from_millis((last_applied - started_ms).max(0) as u64));
    }
    let cpu_after = fleet_cpu_ns(&pids);
    for (gateway, client) in fleet.iter().zip(&clients) {
        assert_eq!(probe(client, gateway, &control_secret).await, 200, "token {control_id}, never revoked, refused");
    }
    let warnings = fleet.iter().flat_map(|g| g.warnings.lock().unwrap().clone()).collect();
    drop(fleet);
    store.close().await;
    confirm.sort();
    call.sort();
    applied.sort();
    LatencyRow {
        backend,
        gateways,
        confirm,
        call,
        applied,
        incomplete,
        admitted,
        probes,
        idle_cpu_ms_per_s,
        cpu_ms_per_revocation: (cpu_after - cpu_before) as f64 / 1e6 / REVOCATIONS as f64,
        warnings,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn spread(sorted: &[Duration]) -> String {
    if sorted.is_empty() {
        return "-".into();
    }
    format!(
        "p50 {:>6}  p90 {:>6}  p99 {:>6}  max {:>7} ms",
        ms(percentile(sorted, 0.50)),
        ms(percentile(sorted, 0.90)),
        ms(percentile(sorted, 0.99)),
        ms(sorted[sorted.len() - 1])
    )
}

fn print_latency(row: &LatencyRow) {
    println!("  {}, {} gateway(s), {} revocations:", row.backend, row.gateways, row.call.len());
    println!("    Confirmation.elapsed  {}", spread(&row.confirm));
    println!("    revoke_token call     {}", spread(&row.call));
    println!("    last gateway applied  {}  (its applied_ms, from the call's start)", spread(&row.applied));
    println!(
        "    incomplete {} of {}; admitted right after the call {} of {} probes; \
         fleet CPU idle {:.1} ms/s, {:.1} ms per revocation (with the probes)",
        row.incomplete,
        row.call.len(),
        row.admitted,
        row.probes,
        row.idle_cpu_ms_per_s,
        row.cpu_ms_per_revocation
    );
    if !row.warnings.is_empty() {
        println!("    {} warning(s) from the gateways, the first: {}", row.warnings.len(), row.warnings[0]);
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Idle cost
// ---------------------------------------------------------------------------------------------

struct IdleRow {
    label: String,
    /// utime + stime over the whole window (/proc/PID/stat).
    cpu_ms_per_s: f64,
    /// The same from schedstat, one value per second of the window, sorted.
    per_second: Vec<f64>,
    syscalls: Option<(f64, Vec<(String, f64)>)>,
}

async fn idle_run(dir: &Path, upstream: SocketAddr, postgres: Option<&mut Postgres>, clk_tck: u64) -> Vec<IdleRow> {
    let mut setups: Vec<(String, String, Option<&str>)> = Vec::new();
    for (i, (interval, label)) in [(None, "250ms (default)"), (Some("1h"), "1h")].into_iter().enumerate() {
        // A directory each: the watch is on the database's directory.
        let db_dir = dir.join(format!("idle-sqlite-{i}"));
        let url = format!("sqlite://{}/tokengate.db", db_dir.display());
        setups.push((format!("SQLite, sync.interval {label}"), url, interval));
    }
    if let Some(pg) = postgres {
        for (interval, label, suffix) in [(None, "250ms (default)", "idle_default"), (Some("1h"), "1h", "idle_1h")] {
            setups.push((format!("PostgreSQL, sync.interval {label}"), pg.create(suffix).await, interval));
        }
    }
    let mut gateways = Vec::new();
    for (i, (label, url, interval)) in setups.iter().enumerate() {
        let config = write_config(dir, &format!("idle-{i}.toml"), url, upstream, *interval);
        gateways.push((label.clone(), start_gateway(&config)));
    }
    tokio::time::sleep(IDLE_WARM_UP).await;
    // All at once over the same window, so the machine's other work weighs on each alike.
    let pids: Vec<u32> = gateways.iter().map(|(_, g)| g.pid()).collect();
    let before: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p)).collect();
    let started = Instant::now();
    let mut per_second: Vec<Vec<f64>> = vec![Vec::new(); pids.len()];
    let mut last: Vec<(u64, Instant)> = pids.iter().map(|&p| (cpu_ns(p), Instant::now())).collect();
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
    for _ in 0..IDLE_WINDOW.as_secs() {
        ticker.tick().await;
        for ((pid, samples), last) in pids.iter().zip(&mut per_second).zip(&mut last) {
            let now = (cpu_ns(*pid), Instant::now());
            samples.push((now.0 - last.0) as f64 / 1e6 / (now.1 - last.1).as_secs_f64());
            *last = now;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu: Vec<f64> =
        pids.iter().zip(&before).map(|(&p, b)| (cpu_ticks(p) - b) as f64 * 1000.0 / clk_tck as f64 / seconds).collect();
    // Then what the time goes on: system calls, after the CPU window (strace slows them).
    let outs: Vec<PathBuf> = (0..gateways.len()).map(|i| dir.join(format!("strace-{i}.txt"))).collect();
    let straces: Vec<Option<Child>> =
        gateways.iter().zip(&outs).map(|((_, g), out)| start_strace(g.pid(), out)).collect();
    tokio::time::sleep(STRACE_WINDOW).await;
    let syscalls: Vec<_> = straces
        .into_iter()
        .zip(&outs)
        .map(|(strace, out)| strace.and_then(|s| stop_strace(s, out, STRACE_WINDOW)))
        .collect();
    let rows = gateways
        .iter()
        .zip(cpu)
        .zip(per_second)
        .zip(syscalls)
        .map(|((((label, _), cpu_ms_per_s), mut per_second), syscalls)| {
            per_second.sort_by(f64::total_cmp);
            IdleRow { label: label.clone(), cpu_ms_per_s, per_second, syscalls }
        })
        .collect();
    for (label, gateway) in &gateways {
        for warning in gateway.warnings.lock().unwrap().iter().take(3) {
            println!("  warning from the idle gateway {label}: {warning}");
        }
    }
    rows
}

fn print_idle(row: &IdleRow) {
    let s = &row.per_second;
    println!(
        "  {:<42} {:>5.2} ms/s = {:>5.2}% of a core; per 1 s: median {:.2}, min {:.2}, max {:.2} ms",
        row.label,
        row.cpu_ms_per_s,
        row.cpu_ms_per_s / 10.0,
        s[s.len() / 2],
        s[0],
        s[s.len() - 1]
    );
    match &row.syscalls {
        Some((total, calls)) => {
            let top: Vec<String> = calls.iter().take(6).map(|(name, rate)| format!("{name} {rate:.1}")).collect();
            println!("  {:<42} syscalls/s {total:.1}: {}", "", top.join(", "));
        }
        None => println!("  {:<42} syscalls/s: - (no strace, or it cannot attach)", ""),
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() {
    let clk_tck = clock_ticks_per_second();
    let dir = tempfile::tempdir().unwrap();
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    tokio::spawn(echo::serve(upstream, std::future::pending()));
    let mut postgres = match Postgres::connect().await {
        Ok(pg) => Some(pg),
        Err(why) => {
            println!("PostgreSQL part SKIPPED: {why}");
            None
        }
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!();
    println!("confirm_latency: {cpus} CPUs, nothing pinned, SQLite files under {}", dir.path().display());

    println!();
    println!(
        "idle cost: one idle gateway each, side by side, CPU over {} s after {} s warm-up; then system calls over {} s",
        IDLE_WINDOW.as_secs(),
        IDLE_WARM_UP.as_secs(),
        STRACE_WINDOW.as_secs()
    );
    let idle = idle_run(dir.path(), upstream_addr, postgres.as_mut(), clk_tck).await;
    for row in &idle {
        print_idle(row);
    }

    println!();
    let policy = {
        let path = write_config(dir.path(), "policy.toml", "sqlite::memory:", upstream_addr, None);
        Config::load(Some(&path), Vec::new()).unwrap().sync.confirm_policy()
    };
    println!(
        "confirm latency: {REVOCATIONS} revocations per fleet, 0-{MAX_GAP_MS} ms apart, by a writer in this process \
         (no index, with_confirmation; confirm_timeout {:?}, stale_after {:?})",
        policy.timeout, policy.stale_after
    );
    let mut rows = Vec::new();
    for n in FLEETS {
        let db_dir = dir.path().join(format!("fleet-{n}"));
        let url = format!("sqlite://{}/tokengate.db", db_dir.display());
        let row = latency_run("SQLite", &url, n, dir.path(), upstream_addr).await;
        print_latency(&row);
        rows.push(row);
    }
    if let Some(pg) = postgres.as_mut() {
        for n in FLEETS {
            let url = pg.create(&format!("fleet_{n}")).await;
            let row = latency_run("PostgreSQL", &url, n, dir.path(), upstream_addr).await;
            print_latency(&row);
            rows.push(row);
        }
    }

    println!();
    println!(
        "summary (ms; conf = Confirmation.elapsed, call = the whole revoke_token call, applied = last gateway's \
         applied_ms from the call's start; CPU: fleet ms per revocation, idle % of a core per gateway)"
    );
    println!(
        "  {:<10} {:>3}  {:>8} {:>6} {:>6} {:>6}  {:>8} {:>6} {:>6}  {:>8} {:>6}  {:>10} {:>8}  {:>7} {:>7}",
        "backend",
        "N",
        "conf p50",
        "p90",
        "p99",
        "max",
        "call p50",
        "p99",
        "max",
        "appl p50",
        "p99",
        "incomplete",
        "admitted",
        "CPU/rev",
        "idle/gw"
    );
    for row in &rows {
        println!(
            "  {:<10} {:>3}  {:>8} {:>6} {:>6} {:>6}  {:>8} {:>6} {:>6}  {:>8} {:>6}  {:>10} {:>8}  {:>7.1} {:>6.2}%",
            row.backend,
            row.gateways,
            ms(percentile(&row.confirm, 0.5)),
            ms(percentile(&row.confirm, 0.9)),
            ms(percentile(&row.confirm, 0.99)),
            ms(row.confirm[row.confirm.len() - 1]),
            ms(percentile(&row.call, 0.5)),
            ms(percentile(&row.call, 0.99)),
            ms(row.call[row.call.len() - 1]),
            ms(percentile(&row.applied, 0.5)),
            ms(percentile(&row.applied, 0.99)),
            format!("{}/{}", row.incomplete, row.call.len()),
            format!("{}/{}", row.admitted, row.probes),
            row.cpu_ms_per_revocation,
            row.idle_cpu_ms_per_s / row.gateways as f64 / 10.0,
        );
    }
    println!("  one idle gateway alone (/proc/PID/stat over {} s, % of a core):", IDLE_WINDOW.as_secs());
    for row in &idle {
        println!("    {:<40} {:>6.2}%", row.label, row.cpu_ms_per_s / 10.0);
    }
    println!();

    if let Some(pg) = postgres.as_mut() {
        pg.drop_all().await;
    }
}

/// The gateway binary with its access log off: these measurements need no record per request.
fn without_access_log() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokengate"));
    command.env("TOKENGATE_LOG__ACCESS", "false");
    command
}
