//! What proxying through tokengate costs next to nginx as a plain reverse proxy, on three
//! workloads, against real processes: the issue's one bench command for the data path.
//!
//! ```text
//! scripts/bench-deps                 # once: nginx-light and wrk (Debian, as root)
//! cargo bench --bench proxy_load
//! ```
//!
//! Workloads (`PROXY_LOAD_WORKLOADS=get,post,large` picks some, in that order): a small
//! `GET /hello` (the echo's small JSON), a `POST /upload` of 4 KiB (streamed and hashed by
//! the echo), and `GET /stream?bytes=1048576` (1 MiB). Each runs against three targets in front
//! of one echo upstream (a child process of this bench): the echo upstream direct (the
//! baseline), nginx as a plain reverse proxy (`proxy_pass` to a keep-alive `upstream`, no
//! authentication) and `tokengate serve` with everything on: SQLite, Basic authentication, the
//! route's scope check, a per-token rate limit that never trips (`rate_limit.default =
//! "1000000/s"`), the failed-auth limit, last-use recording (flushed every second) and metrics.
//! Every request carries one of 1 000 distinct tokens (round-robin over the requests, so every
//! connection uses many), the same Authorization headers for every target; before measuring,
//! each of the 1 000 is sent once to tokengate and must answer 200.
//!
//! Runs are interleaved: run 1 of direct, nginx and tokengate, then run 2 of each, and so on
//! (`PROXY_LOAD_RUNS`, default 3), each measured for `PROXY_LOAD_SECS` (default 10) after a 2 s
//! warm-up, with 64 keep-alive connections. The load comes from `wrk -t1 -c64 --latency` with a
//! Lua script when `wrk` is on PATH, otherwise from an in-process HTTP/1.1 client
//! (`PROXY_LOAD_CLIENT=builtin` forces it). With `taskset` and two or more CPUs the proxy under
//! test gets the last CPU to itself, and the load generator and echo upstream share the others
//! (`PROXY_LOAD_NO_PIN=1` turns that off). CPU per request is the proxy process's utime + stime
//! from /proc over the measured run, divided by the requests completed.
//!
//! It prints the date, machine, versions and command, then per workload a Markdown table for
//! `benches/RESULTS.md`: req/s median (min–max over the runs), p50 and p99 medians, the proxy's
//! CPU µs per request, how busy its core was; and tokengate / nginx for throughput and CPU (the
//! ratio of the medians, and the range of the per-run ratios) with the p99 difference. nginx is
//! `/usr/sbin/nginx` (or `nginx` on PATH); without it its runs print SKIPPED.
//! `PROXY_LOAD_BASELINE=/path/to/tokengate` also measures another build (say, of the commit
//! before a change) in the same runs, on the same database; `PROXY_LOAD_COUNTERS_OFF=1` also
//! measures this build with the usage counters off (`usage.counters = false`), and
//! `PROXY_LOAD_ACCESS_OFF=1` with the access log off (`log.access = false`; it is on in the
//! main tokengate target, as by default, its lines read and dropped by the bench), to show what
//! each costs. About 6 minutes with the defaults.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

#[path = "../examples/support/echo.rs"]
mod echo;

#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/load.rs"]
mod load;
#[path = "support/serve.rs"]
mod serve;
#[path = "support/servers.rs"]
mod servers;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cpu::{clock_ticks_per_second, cpu_ticks};
use load::{CONNECTIONS, Load, LoadResult, Workload};
use servers::{Pinning, nginx_binary, probe, start_echo, start_nginx, start_tokengate};
use tokengate::clock::Clock;
use tokengate::config::{Config, SecretUrl};
use tokengate::control::service::{Actor, CreateAccount, CreateToken, ExpiryRequest, LifecycleService};
use tokengate::control::store::Store;

const EMAIL: &str = "load@example.com";
const TOKENS: usize = 1_000;
const WARM_UP: Duration = Duration::from_secs(2);
const LARGE_BYTES: usize = 1024 * 1024;

static WORKLOADS: [Workload; 3] = [
    Workload { key: "get", title: "small GET /hello", method: "GET", path: "/hello", body_bytes: 0 },
    Workload { key: "post", title: "POST 4 KiB", method: "POST", path: "/upload", body_bytes: 4096 },
    Workload { key: "large", title: "GET 1 MiB", method: "GET", path: "/stream?bytes=1048576", body_bytes: 0 },
];

/// The environment knobs, read once.
struct Settings {
    measured: Duration,
    runs: usize,
    workloads: Vec<&'static Workload>,
}

impl Settings {
    fn from_env() -> Settings {
        let number = |name: &str, default: u64| {
            std::env::var(name).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}={v}: not a number")))
        };
        let workloads = match std::env::var("PROXY_LOAD_WORKLOADS") {
            Ok(list) => list
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(|key| {
                    WORKLOADS.iter().find(|w| w.key == key).unwrap_or_else(|| {
                        panic!("PROXY_LOAD_WORKLOADS: no workload {key:?} (there are get, post, large)")
                    })
                })
                .collect(),
            Err(_) => WORKLOADS.iter().collect(),
        };
        Settings {
            measured: Duration::from_secs(number("PROXY_LOAD_SECS", 10).max(1)),
            runs: number("PROXY_LOAD_RUNS", 3).max(1) as usize,
            workloads,
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Direct,
    Nginx,
    Tokengate,
    Baseline,
    CountersOff,
    AccessOff,
}

struct Target {
    kind: Kind,
    name: &'static str,
    addr: SocketAddr,
    /// The proxy's process, whose CPU is counted; none for the upstream direct.
    proxy_pid: Option<u32>,
}

/// One measured run of one target.
struct Sample {
    result: LoadResult,
    proxy_us: Option<f64>,
    /// Share of one core the proxy used during the run.
    proxy_busy: Option<f64>,
}

fn main() {
    if servers::run_echo_child_if_asked() {
        return;
    }
    let settings = Settings::from_env();
    // Before pinning, which narrows what this process may use.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinning = Pinning::decide();
    let clk_tck = clock_ticks_per_second();
    let dir = tempfile::tempdir().unwrap();

    let echo = start_echo();
    let minting = Instant::now();
    let authorizations = create_tokens_and_config(dir.path(), echo.addr);
    let minted_in = minting.elapsed();
    let config = dir.path().join("tokengate.toml");
    let this_build = Path::new(env!("CARGO_BIN_EXE_tokengate"));
    let tokengate = start_tokengate("tokengate", this_build, &config, &pinning, &[]);
    // Another build of tokengate (say, of the commit before a change) measured in the same runs.
    let baseline = std::env::var_os("PROXY_LOAD_BASELINE")
        .map(|binary| start_tokengate("tokengate (baseline)", Path::new(&binary), &config, &pinning, &[]));
    // This build without usage counters, or without the access log: what each costs.
    let variant = |knob: &str, name: &'static str, setting: &'static str| {
        std::env::var_os(knob)
            .filter(|v| v != "0")
            .map(|_| start_tokengate(name, this_build, &config, &pinning, &[(setting, "false")]))
    };
    let counters_off = variant("PROXY_LOAD_COUNTERS_OFF", "tokengate (counters off)", "TOKENGATE_USAGE__COUNTERS");
    let access_off = variant("PROXY_LOAD_ACCESS_OFF", "tokengate (access log off)", "TOKENGATE_LOG__ACCESS");
    let nginx = nginx_binary().map(|binary| start_nginx(&binary, dir.path(), echo.addr, &pinning));
    let load = Load::choose(authorizations.clone(), dir.path());

    print_header(&settings, cpus, &pinning, &load, minted_in);
    let mut targets =
        vec![Target { kind: Kind::Direct, name: "echo upstream direct", addr: echo.addr, proxy_pid: None }];
    match &nginx {
        Some(nginx) => targets.push(Target {
            kind: Kind::Nginx,
            name: "nginx (plain proxy, no auth)",
            addr: nginx.addr,
            proxy_pid: Some(nginx.process.pid()),
        }),
        None => println!("nginx: SKIPPED, no /usr/sbin/nginx and no nginx on PATH (scripts/bench-deps installs it)"),
    }
    // Each tokengate that runs: this build, and the optional baseline and variants.
    let proxies = [
        (Kind::Tokengate, "tokengate (auth, limits, last use)", Some(&tokengate)),
        (Kind::Baseline, "tokengate baseline", baseline.as_ref()),
        (Kind::CountersOff, "tokengate, usage counters off", counters_off.as_ref()),
        (Kind::AccessOff, "tokengate, access log off", access_off.as_ref()),
    ];
    for (kind, name, server) in proxies {
        if let Some(server) = server {
            targets.push(Target { kind, name, addr: server.addr, proxy_pid: Some(server.process.pid()) });
        }
    }

    check_targets(&targets, &load, &settings, &authorizations);

    let mut failures = Vec::new();
    for workload in &settings.workloads {
        let mut samples: Vec<Vec<Sample>> = targets.iter().map(|_| Vec::new()).collect();
        for run in 1..=settings.runs {
            for (target, samples) in targets.iter().zip(&mut samples) {
                let sample = measure(&load, workload, target, settings.measured, clk_tck);
                eprintln!(
                    "proxy_load: {} run {run}/{}: {}: {:.0} req/s",
                    workload.key,
                    settings.runs,
                    target.name,
                    sample.result.requests as f64 / sample.result.seconds
                );
                let r = &sample.result;
                if r.requests == 0 || r.non_2xx > 0 || r.errors > 0 {
                    failures.push(format!(
                        "{} run {run}, {}: {} requests, {} non-2xx, {} errors",
                        workload.key, target.name, r.requests, r.non_2xx, r.errors
                    ));
                }
                samples.push(sample);
            }
        }
        print_table(workload, &targets, &samples, &settings);
    }

    assert!(failures.is_empty(), "the figures are not all of proxying:\n  {}", failures.join("\n  "));
    drop(tokengate);
    drop(baseline);
    drop(counters_off);
    drop(access_off);
    drop(nginx);
    drop(echo);
}

/// Before anything is measured: every target answers each workload as the echo would (so the
/// runs measure proxying, not refusals or errors), tokengate refuses a request without
/// credentials, and admits each of the tokens.
fn check_targets(targets: &[Target], load: &Load, settings: &Settings, authorizations: &[String]) {
    for target in targets {
        for workload in &settings.workloads {
            let answer = probe(target.addr, workload, Some(&authorizations[0]));
            assert_eq!(
                answer.status, 200,
                "{}: {} {} answered {}",
                target.name, workload.method, workload.path, answer.status
            );
            let body = String::from_utf8_lossy(&answer.body);
            let expected = match workload.key {
                "post" => body.contains(&format!("\"body_bytes\":{}", workload.body_bytes)),
                "large" => answer.body.len() == LARGE_BYTES,
                _ => body.contains(&format!("\"path\":\"{}\"", workload.path)),
            };
            assert!(
                expected,
                "{}: an unexpected answer to {}: {} bytes",
                target.name,
                workload.title,
                answer.body.len()
            );
        }
        if matches!(target.kind, Kind::Tokengate | Kind::Baseline | Kind::CountersOff | Kind::AccessOff) {
            let refused = probe(target.addr, &WORKLOADS[0], None).status;
            assert_eq!(refused, 401, "{} answered {refused} to a request without credentials", target.name);
            let statuses = load.statuses_of_each(&WORKLOADS[0], target.addr);
            let admitted = statuses.iter().filter(|&&s| s == 200).count();
            println!("{}: {admitted} of {} tokens answered 200 to GET /hello", target.name, statuses.len());
            assert_eq!(admitted, authorizations.len(), "{}: not every token was admitted: {statuses:?}", target.name);
        }
    }
}

/// A warm-up, then one measured run, with the proxy's CPU time around it.
fn measure(load: &Load, workload: &Workload, target: &Target, measured: Duration, clk_tck: u64) -> Sample {
    load.run(workload, target.addr, WARM_UP);
    let before = target.proxy_pid.map(cpu_ticks);
    let started = Instant::now();
    let result = load.run(workload, target.addr, measured);
    let wall = started.elapsed().as_secs_f64();
    let after = target.proxy_pid.map(cpu_ticks);
    let seconds = before.zip(after).map(|(b, a)| (a - b) as f64 / clk_tck as f64);
    Sample {
        proxy_us: seconds.map(|s| s * 1e6 / result.requests.max(1) as f64),
        proxy_busy: seconds.map(|s| s / wall),
        result,
    }
}

// ---------------------------------------------------------------------------------------------
// Setup: the tokens and tokengate's configuration
// ---------------------------------------------------------------------------------------------

/// Writes tokengate.toml in `dir` and, in its SQLite database, an account with `TOKENS` tokens
/// (through the library's lifecycle service, in one runtime); returns their Authorization
/// headers. The tokens are minted in a database in /dev/shm, where the commit of each (an fsync,
/// with `synchronous=FULL`) costs nothing (on a busy disk a thousand took 20 s), and the file is
/// then copied into `dir`: the gateway under test writes its last-use records to a real disk.
fn create_tokens_and_config(dir: &Path, echo: SocketAddr) -> Vec<String> {
    let db_path = dir.join("tokengate.db");
    let db_url = format!("sqlite://{}", db_path.display());
    let config_path = dir.join("tokengate.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"[proxy]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[database]
url = "{db_url}"

[usage]
flush_interval = "1s"

# A per-token limit that never trips at these rates, and the default failed-auth limit.
[rate_limit]
default = "1000000/s"
failed_auth = "30/min"

[[routes]]
prefix = "/"
upstream = "http://{echo}"
require = {{ GET = "read", HEAD = "read", "*" = "write" }}
"#
        ),
    )
    .unwrap();
    let shm = Path::new("/dev/shm");
    let minting_dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap();
    let minting_db = minting_dir.path().join("tokengate.db");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let authorizations = runtime.block_on(async {
        let config = Config::load(Some(&config_path), Vec::new()).unwrap();
        let store = Store::open(&SecretUrl::new(format!("sqlite://{}", minting_db.display()))).await.unwrap();
        let service = LifecycleService::new(store, config.tokens.clone(), Clock::System, None);
        let actor = Actor::cli();
        let account = CreateAccount { email: EMAIL.into(), can_create_tokens: true, ..CreateAccount::default() };
        service.create_account(account, &actor).await.unwrap();
        let mut authorizations = Vec::with_capacity(TOKENS);
        for i in 0..TOKENS {
            let request = CreateToken {
                owner_email: EMAIL.into(),
                name: format!("load-{i:04}"),
                description: None,
                expiry: ExpiryRequest::Default,
                scopes: vec![],
                rate_limit: None,
            };
            let created = service.create_token(request, &actor).await.unwrap();
            authorizations.push(format!("Basic {}", STANDARD.encode(format!("{EMAIL}:{}", created.secret.expose()))));
        }
        service.store().close().await;
        authorizations
    });
    // Closing the last connection checkpointed the write-ahead log into the file and removed it.
    assert!(!minting_dir.path().join("tokengate.db-wal").exists(), "the minting database kept its WAL");
    std::fs::copy(&minting_db, &db_path).unwrap();
    authorizations
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

fn print_header(settings: &Settings, cpus: usize, pinning: &Pinning, load: &Load, minted_in: Duration) {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    let date = time::OffsetDateTime::now_utc().format(&format).unwrap();
    let mut command: Vec<String> = ["PROXY_LOAD_WORKLOADS", "PROXY_LOAD_RUNS", "PROXY_LOAD_SECS", "PROXY_LOAD_CLIENT"]
        .iter()
        .chain(&["PROXY_LOAD_NO_PIN", "PROXY_LOAD_BASELINE"])
        .filter_map(|name| std::env::var(name).ok().map(|value| format!("{name}={value}")))
        .collect();
    command.push("cargo bench --bench proxy_load".to_owned());
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find(|l| l.starts_with("model name"))?.split_once(':').map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let kernel =
        std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| "?".to_owned(), |k| k.trim().to_owned());
    let workloads: Vec<&str> = settings.workloads.iter().map(|w| w.title).collect();

    println!();
    println!("## Proxying next to nginx — {date}");
    println!();
    println!("`{}`", command.join(" "));
    println!();
    println!("- machine: {cpus} CPUs ({cpu_model}), Linux {kernel}");
    println!(
        "- versions: {}; {}; {}; tokengate {}",
        first_line("rustc", &["--version"]),
        nginx_binary().map_or_else(
            || "nginx not installed".to_owned(),
            |nginx| first_line(&nginx.to_string_lossy(), &["-v"]).replace("nginx version: ", "")
        ),
        load.version(),
        tokengate_commit()
    );
    println!("- load: {}", load.describe());
    println!("- placement: {}", pinning.describe());
    println!(
        "- tokengate: SQLite, {} tokens of one account (minted in {:.1} s), round-robin over the requests; \
         rate_limit.default = \"1000000/s\", failed_auth = \"30/min\"; last use flushed every 1 s",
        grouped(TOKENS as f64),
        minted_in.as_secs_f64()
    );
    println!(
        "- {}; {} interleaved run(s) of {} s per target after a {} s warm-up each, {CONNECTIONS} connections",
        workloads.join(", "),
        settings.runs,
        settings.measured.as_secs(),
        WARM_UP.as_secs()
    );
    println!();
}

fn print_table(workload: &Workload, targets: &[Target], samples: &[Vec<Sample>], settings: &Settings) {
    println!("### {} (`{} {}`)", workload.title, workload.method, workload.path);
    println!();
    println!(
        "| target | req/s median (min–max) | p50 | p99 median (min–max) | proxy CPU µs/req median (min–max) | proxy core busy | non-2xx | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (target, samples) in targets.iter().zip(samples) {
        let rates: Vec<f64> = samples.iter().map(|s| s.result.requests as f64 / s.result.seconds).collect();
        let p50: Vec<f64> = samples.iter().map(|s| s.result.p50.as_secs_f64()).collect();
        let p99: Vec<f64> = samples.iter().map(|s| s.result.p99.as_secs_f64()).collect();
        let cpu: Vec<f64> = samples.iter().filter_map(|s| s.proxy_us).collect();
        let busy: Vec<f64> = samples.iter().filter_map(|s| s.proxy_busy).collect();
        let spread = |values: &[f64], show: &dyn Fn(f64) -> String| match values {
            [] => "-".to_owned(),
            [only] => show(*only),
            _ => format!("{} ({}–{})", show(median(values)), show(min(values)), show(max(values))),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            target.name,
            spread(&rates, &|r| grouped(r)),
            format_latency(median(&p50)),
            spread(&p99, &format_latency),
            spread(&cpu, &|us| format!("{us:.1}")),
            if busy.is_empty() { "-".to_owned() } else { format!("{:.0}%", median(&busy) * 100.0) },
            samples.iter().map(|s| s.result.non_2xx).sum::<u64>(),
            samples.iter().map(|s| s.result.errors).sum::<u64>(),
        );
    }
    println!();
    let of = |kind: Kind| targets.iter().position(|t| t.kind == kind).map(|i| &samples[i]);
    let tokengate = of(Kind::Tokengate).unwrap();
    match of(Kind::Nginx) {
        Some(nginx) => println!("tokengate / nginx: {}", compare(tokengate, nginx, settings.runs)),
        None => println!("tokengate / nginx: - (nginx SKIPPED)"),
    }
    if let Some(baseline) = of(Kind::Baseline) {
        println!("tokengate / baseline: {}", compare(tokengate, baseline, settings.runs));
    }
    if let Some(counters_off) = of(Kind::CountersOff) {
        println!("tokengate / counters off: {}", compare(tokengate, counters_off, settings.runs));
    }
    if let Some(access_off) = of(Kind::AccessOff) {
        println!("tokengate / access log off: {}", compare(tokengate, access_off, settings.runs));
    }
    println!();
}

/// Throughput and CPU per request of `ours` over `theirs` (the ratio of the medians, and the
/// range of the ratios within each run, which share the machine's state), and the p99 difference.
fn compare(ours: &[Sample], theirs: &[Sample], runs: usize) -> String {
    let rate = |s: &Sample| s.result.requests as f64 / s.result.seconds;
    let ratio = |value: &dyn Fn(&Sample) -> Option<f64>| {
        let mine: Vec<f64> = ours.iter().filter_map(value).collect();
        let other: Vec<f64> = theirs.iter().filter_map(value).collect();
        if mine.is_empty() || other.is_empty() {
            return "-".to_owned();
        }
        let per_run: Vec<f64> = mine.iter().zip(&other).map(|(m, o)| m / o).collect();
        let of_medians = format!("{:.2}×", median(&mine) / median(&other));
        if runs > 1 { format!("{of_medians} (runs {:.2}–{:.2})", min(&per_run), max(&per_run)) } else { of_medians }
    };
    let p99 = |samples: &[Sample]| median(&samples.iter().map(|s| s.result.p99.as_secs_f64()).collect::<Vec<_>>());
    format!(
        "throughput {}, CPU per request {}, p99 {:+.2} ms",
        ratio(&|s| Some(rate(s))),
        ratio(&|s| s.proxy_us),
        (p99(ours) - p99(theirs)) * 1e3
    )
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// `48707.4` as `48 707`.
fn grouped(value: f64) -> String {
    let digits = format!("{value:.0}");
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(digit);
    }
    out
}

fn format_latency(seconds: f64) -> String {
    let us = seconds * 1e6;
    if us < 1000.0 { format!("{us:.0} µs") } else { format!("{:.2} ms", us / 1000.0) }
}

/// The first line a program prints (on stdout or stderr), or that it is missing.
fn first_line(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(output) => {
            let text = if output.stdout.is_empty() { output.stderr } else { output.stdout };
            String::from_utf8_lossy(&text).lines().next().unwrap_or("").trim().to_owned()
        }
        Err(_) => format!("{program}: not found"),
    }
}

/// The commit this bench was built from, and whether the checkout had changes.
fn tokengate_commit() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let commit = first_line("git", &["-C", dir, "rev-parse", "--short", "HEAD"]);
    let dirty = Command::new("git")
        .args(["-C", dir, "status", "--porcelain", "--untracked-files=no"])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    if dirty { format!("{commit} + uncommitted changes") } else { commit }
}
