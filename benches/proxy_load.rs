//! What proxying through tokengate costs next to nginx as a plain reverse proxy. Three runs of
//! the same small authenticated `GET /hello` against real processes, all in front of one echo
//! upstream (a child process of this bench): straight to the echo upstream (the baseline),
//! through nginx (`proxy_pass` to a keep-alive `upstream`, no authentication), and through
//! `tokengate serve` (SQLite, one route, Basic authentication with a real token, no rate
//! limit). For each it prints requests/s, p50 and p99 latency and, from /proc/<pid>/stat, the
//! CPU microseconds per request spent by the proxy process and by the echo upstream; then the
//! ratio of tokengate's CPU per request to nginx's: the measurement the forwarder was designed
//! on (small GET, CPU of the proxy process per request, nginx in the same run), now of the
//! whole gateway: authentication, usage recording, metrics (the rate limits are off).
//!
//! ```text
//! cargo bench --bench proxy_load
//! ```
//!
//! The load comes from `wrk` (`wrk -t1 -c32 --latency`) when it is on PATH, otherwise from an
//! in-process HTTP/1.1 client with as many keep-alive connections (`PROXY_LOAD_CLIENT=builtin`
//! forces it). nginx is `/usr/sbin/nginx` (or `nginx` on PATH); without it that run is skipped.
//! On Debian: `apt-get install -y nginx-light wrk`. With `taskset` and two or more CPUs, the proxy
//! under test gets the last CPU to itself and the load generator and echo upstream share the
//! others (`PROXY_LOAD_NO_PIN=1` turns that off). `PROXY_LOAD_SECS` (default 10) sets the length
//! of each measured run, after a 2 s warm-up. `PROXY_LOAD_BASELINE=/path/to/tokengate` also
//! measures another build (say, of the commit before a change) in the same run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

#[path = "../examples/support/echo.rs"]
mod echo;

#[path = "support/cpu.rs"]
mod cpu;
use cpu::{clock_ticks_per_second, cpu_ticks};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokengate::clock::Clock;
use tokengate::config::{Config, SecretUrl};
use tokengate::control::service::{Actor, CreateAccount, CreateToken, ExpiryRequest, LifecycleService};
use tokengate::control::store::Store;

/// Set in the environment of the child that serves as the echo upstream.
const ECHO_CHILD: &str = "PROXY_LOAD_ECHO_CHILD";
const EMAIL: &str = "load@example.com";
const PATH: &str = "/hello";
const CONNECTIONS: usize = 32;
const WARM_UP: Duration = Duration::from_secs(2);

fn main() {
    if std::env::var_os(ECHO_CHILD).is_some() {
        run_echo_child();
        return;
    }
    let measured =
        Duration::from_secs(std::env::var("PROXY_LOAD_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10));
    let pinning = Pinning::decide();
    let clk_tck = clock_ticks_per_second();
    let dir = tempfile::tempdir().unwrap();

    let echo = start_echo();
    let echo_addr = echo.addr;
    let secret = create_token_and_config(dir.path(), echo_addr);
    let authorization = format!("Basic {}", STANDARD.encode(format!("{EMAIL}:{secret}")));

    let config = dir.path().join("tokengate.toml");
    let tokengate = start_tokengate(Path::new(env!("CARGO_BIN_EXE_tokengate")), &config, &pinning);
    // Another build of tokengate (say, of the commit before a change) measured in the same run.
    let baseline =
        std::env::var_os("PROXY_LOAD_BASELINE").map(|binary| start_tokengate(Path::new(&binary), &config, &pinning));
    let nginx = nginx_binary().map(|binary| start_nginx(&binary, dir.path(), echo_addr, &pinning));
    let load = Load::choose(&authorization);

    println!();
    println!(
        "proxy_load: GET {PATH} with Basic auth, {CONNECTIONS} keep-alive connections, {} s measured after {} s \
         warm-up, load from {}",
        measured.as_secs(),
        WARM_UP.as_secs(),
        load.describe()
    );
    println!("  {}", pinning.describe());

    let mut targets: Vec<(&str, SocketAddr, Option<u32>)> = vec![("echo (direct)", echo_addr, None)];
    match &nginx {
        Some(nginx) => targets.push(("nginx", nginx.addr, Some(nginx.process.pid()))),
        None => println!("  nginx: SKIPPED, no /usr/sbin/nginx and no nginx on PATH (apt-get install -y nginx-light)"),
    }
    targets.push(("tokengate", tokengate.addr, Some(tokengate.process.pid())));
    if let Some(baseline) = &baseline {
        targets.push(("tokengate (baseline)", baseline.addr, Some(baseline.process.pid())));
    }

    // One request each first: a 200 with the echo's body, and a 401 from tokengate without credentials,
    // so the run below measures authenticated proxying and not refusals.
    let mut rows = Vec::new();
    for (name, addr, proxy_pid) in targets {
        let (status, body_bytes) = probe(addr, Some(&authorization));
        assert_eq!(status, 200, "{name}: a single authenticated GET {PATH} answered {status}");
        if name == "tokengate" {
            assert_eq!(probe(addr, None).0, 401, "tokengate let a request without credentials through");
        }
        load.run(addr, WARM_UP);
        let proxy_before = proxy_pid.map(cpu_ticks);
        let echo_before = cpu_ticks(echo.process.pid());
        let host_before = host_cpu();
        let result = load.run(addr, measured);
        let host_after = host_cpu();
        let echo_after = cpu_ticks(echo.process.pid());
        let proxy_after = proxy_pid.map(cpu_ticks);
        let per_request = |ticks: u64| ticks as f64 / clk_tck as f64 * 1e6 / result.requests.max(1) as f64;
        rows.push(Row {
            name,
            proxy_us: proxy_before.zip(proxy_after).map(|(b, a)| per_request(a - b)),
            echo_us: per_request(echo_after - echo_before),
            host_busy: host_after.busy_since(&host_before),
            body_bytes,
            result,
        });
    }

    println!();
    println!(
        "  {:<20} {:>10} {:>9} {:>9} {:>13} {:>12} {:>9} {:>9} {:>8} {:>7}",
        "target", "req/s", "p50", "p99", "proxy µs/req", "echo µs/req", "host CPU", "body B", "non-2xx", "errors"
    );
    for row in &rows {
        let r = &row.result;
        println!(
            "  {:<20} {:>10.0} {:>9} {:>9} {:>13} {:>12.1} {:>8.0}% {:>9} {:>8} {:>7}",
            row.name,
            r.requests as f64 / r.seconds,
            format_latency(r.p50),
            format_latency(r.p99),
            row.proxy_us.map_or_else(|| "-".to_owned(), |us| format!("{us:.1}")),
            row.echo_us,
            row.host_busy * 100.0,
            row.body_bytes,
            r.non_2xx,
            r.socket_errors,
        );
    }
    let cpu_of = |name: &str| rows.iter().find(|r| r.name == name).and_then(|r| r.proxy_us);
    match (cpu_of("tokengate"), cpu_of("nginx")) {
        (Some(tokengate), Some(nginx)) => {
            println!("  tokengate / nginx CPU per request: {:.2}x ({tokengate:.1} vs {nginx:.1} µs)", tokengate / nginx)
        }
        _ => println!("  tokengate / nginx CPU per request: - (no nginx run)"),
    }
    if let (Some(tokengate), Some(baseline)) = (cpu_of("tokengate"), cpu_of("tokengate (baseline)")) {
        println!(
            "  tokengate / baseline CPU per request: {:.2}x ({tokengate:.1} vs {baseline:.1} µs)",
            tokengate / baseline
        );
    }
    println!(
        "  (\"host CPU\": share of all {} CPUs busy during the run, load generator and echo included; \
         \"body B\": size of the echo's answer, which lists the headers it received)",
        pinning.cpus
    );
    println!();

    for row in &rows {
        assert!(row.result.requests > 0, "{}: no request completed", row.name);
        assert_eq!(row.result.non_2xx, 0, "{}: answers other than 2xx/3xx: the figures are not of proxying", row.name);
    }
    drop(tokengate);
    drop(nginx);
    drop(echo);
}

struct Row {
    name: &'static str,
    proxy_us: Option<f64>,
    echo_us: f64,
    host_busy: f64,
    body_bytes: usize,
    result: LoadResult,
}

/// A child process, killed and reaped when dropped (also while a panic unwinds).
struct Process {
    name: &'static str,
    child: Child,
}

impl Process {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        } else {
            eprintln!("proxy_load: {} had already exited", self.name);
        }
        let _ = self.child.wait();
    }
}

struct Server {
    process: Process,
    addr: SocketAddr,
}

// ---------------------------------------------------------------------------------------------
// CPU placement and accounting
// ---------------------------------------------------------------------------------------------

/// Where the processes run: with `taskset`, the proxy under test on the last CPU, this bench
/// (and so the echo upstream and wrk, which inherit its affinity) on the others.
struct Pinning {
    /// CPUs this bench could use before it pinned itself.
    cpus: usize,
    proxy_cpu: Option<usize>,
    others: String,
}

impl Pinning {
    fn decide() -> Pinning {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let off = Pinning { cpus, proxy_cpu: None, others: String::new() };
        if cpus < 2 || std::env::var_os("PROXY_LOAD_NO_PIN").is_some() || find_on_path("taskset").is_none() {
            return off;
        }
        let proxy_cpu = cpus - 1;
        let others = if proxy_cpu == 1 { "0".to_owned() } else { format!("0-{}", proxy_cpu - 1) };
        // Before any other thread exists: threads and children inherit the mask.
        let pinned = Command::new("taskset")
            .args(["-a", "-p", "-c", &others, &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if pinned { Pinning { cpus, proxy_cpu: Some(proxy_cpu), others } } else { off }
    }

    /// A command that runs `program` on the proxy's CPU (or anywhere, unpinned). `taskset`
    /// execs the program, so the child's pid is the program's.
    fn command(&self, program: &Path) -> Command {
        match self.proxy_cpu {
            Some(cpu) => {
                let mut command = Command::new("taskset");
                command.arg("-c").arg(cpu.to_string()).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    fn describe(&self) -> String {
        match self.proxy_cpu {
            Some(cpu) => {
                format!("proxy under test pinned to CPU {cpu}; load generator and echo upstream on CPU {}", self.others)
            }
            None => "not pinned (no taskset, one CPU, or PROXY_LOAD_NO_PIN): the figures are noisier".to_owned(),
        }
    }
}

/// The machine's CPU time from /proc/stat: (busy, total) in ticks.
struct HostCpu(u64, u64);

fn host_cpu() -> HostCpu {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let line = stat.lines().find(|l| l.starts_with("cpu ")).unwrap();
    let ticks: Vec<u64> = line.split_whitespace().skip(1).take(8).map(|t| t.parse().unwrap()).collect();
    let total: u64 = ticks.iter().sum();
    // idle and iowait
    HostCpu(total - ticks[3] - ticks[4], total)
}

impl HostCpu {
    fn busy_since(&self, before: &HostCpu) -> f64 {
        (self.0 - before.0) as f64 / (self.1 - before.1).max(1) as f64
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(program)).find(|p| p.is_file())
}

// ---------------------------------------------------------------------------------------------
// The three servers
// ---------------------------------------------------------------------------------------------

/// In the child: serve the echo upstream on 127.0.0.1:0, print the address, stop when stdin
/// closes (when the bench drops its end, or dies).
fn run_echo_child() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap());
        std::io::stdout().flush().unwrap();
        let stdin_closed = async {
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut Vec::new()).await;
        };
        echo::serve(listener, stdin_closed).await;
    });
    std::process::exit(0);
}

fn start_echo() -> Server {
    let child = Command::new(std::env::current_exe().unwrap())
        .env(ECHO_CHILD, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut process = Process { name: "echo upstream", child };
    let stderr = BufReader::new(process.child.stderr.take().unwrap());
    std::thread::spawn(move || {
        // A load generator that stops mid-request leaves this on each of its connections.
        for line in stderr.lines().map_while(Result::ok).filter(|l| !l.ends_with("closed before message completed")) {
            eprintln!("{line}");
        }
    });
    let mut line = String::new();
    BufReader::new(process.child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().parse().unwrap_or_else(|_| panic!("the echo upstream printed {line:?}"));
    Server { process, addr }
}

/// Writes tokengate.toml in `dir` and, in its SQLite database, an account with one token;
/// returns the token's secret.
fn create_token_and_config(dir: &Path, echo: SocketAddr) -> String {
    let db_url = format!("sqlite://{}", dir.join("tokengate.db").display());
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

[rate_limit]
default = "none"
failed_auth = "none"

[[routes]]
prefix = "/"
upstream = "http://{echo}"
"#
        ),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let config = Config::load(Some(&config_path), Vec::new()).unwrap();
        let store = Store::open(&SecretUrl::new(&db_url)).await.unwrap();
        let service = LifecycleService::new(store, config.tokens.clone(), Clock::System, None);
        let actor = Actor::cli();
        let account = CreateAccount { email: EMAIL.into(), can_create_tokens: true, ..CreateAccount::default() };
        service.create_account(account, &actor).await.unwrap();
        let request = CreateToken {
            owner_email: EMAIL.into(),
            name: "load".into(),
            description: None,
            expiry: ExpiryRequest::Default,
            scopes: vec![],
            rate_limit: None,
        };
        let created = service.create_token(request, &actor).await.unwrap();
        let secret = created.secret.expose().to_owned();
        service.store().close().await;
        secret
    })
}

fn start_tokengate(binary: &Path, config: &Path, pinning: &Pinning) -> Server {
    let mut child = pinning
        .command(binary)
        .args(["--config", config.to_str().unwrap(), "serve"])
        .env("TOKENGATE_LOG_FORMAT", "json")
        .env("TOKENGATE_LOG", "warn,tokengate::gateway=info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    // Owned from here on, so a failure below still kills and reaps the child (see Drop).
    let process = Process { name: "tokengate", child };
    let mut lines = stderr.lines();
    for line in lines.by_ref().map_while(Result::ok) {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
            eprintln!("tokengate: {line}");
            continue;
        };
        if entry["fields"]["message"] == "tokengate listening" {
            let addr = entry["fields"]["proxy"].as_str().unwrap().parse().unwrap();
            // Keep reading, so warnings are seen and a full pipe never stalls the gateway.
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    eprintln!("tokengate: {line}");
                }
            });
            return Server { process, addr };
        }
        eprintln!("tokengate: {line}");
    }
    panic!("tokengate exited before listening");
}

fn nginx_binary() -> Option<PathBuf> {
    let debian = PathBuf::from("/usr/sbin/nginx");
    if debian.is_file() { Some(debian) } else { find_on_path("nginx") }
}

/// nginx as a plain reverse proxy: one process (no master), keep-alive connections upstream,
/// no access log, everything it writes in `dir`.
fn start_nginx(binary: &Path, dir: &Path, echo: SocketAddr, pinning: &Pinning) -> Server {
    let addr = free_port();
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(&prefix).unwrap();
    let p = prefix.display();
    let config = format!(
        r#"daemon off;
master_process off;
worker_processes 1;
error_log stderr warn;
pid {p}/nginx.pid;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    # Not the default 1000: tokengate does not close a busy keep-alive connection either.
    keepalive_requests 1000000;
    client_body_temp_path {p}/body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    upstream echo {{
        server {echo};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen {addr};
        location / {{
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#
    );
    let config_path = prefix.join("nginx.conf");
    std::fs::write(&config_path, config).unwrap();
    let child = pinning
        .command(binary)
        .arg("-p")
        .arg(&prefix)
        .arg("-e")
        .arg("stderr")
        .arg("-c")
        .arg(&config_path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut process = Process { name: "nginx", child };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = process.child.try_wait() {
            panic!("nginx exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "nginx did not listen on {addr} within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { process, addr }
}

/// A port nobody listens on now (nginx binds it itself a moment later).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// One GET of PATH on a new connection: status and body length.
fn probe(addr: SocketAddr, authorization: Option<&str>) -> (u16, usize) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    write!(stream, "GET {PATH} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.find("\r\n\r\n").map_or(0, |head| response.len() - head - 4);
    (status, body)
}

// ---------------------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------------------

struct LoadResult {
    requests: u64,
    seconds: f64,
    p50: Duration,
    p99: Duration,
    non_2xx: u64,
    socket_errors: u64,
}

enum Load<'a> {
    Wrk { wrk: PathBuf, authorization: &'a str },
    Builtin { runtime: tokio::runtime::Runtime, authorization: &'a str },
}

impl<'a> Load<'a> {
    fn choose(authorization: &'a str) -> Load<'a> {
        let forced = std::env::var("PROXY_LOAD_CLIENT").is_ok_and(|c| c == "builtin");
        match find_on_path("wrk").filter(|_| !forced) {
            Some(wrk) => Load::Wrk { wrk, authorization },
            None => Load::Builtin {
                // One thread, like wrk -t1.
                runtime: tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(),
                authorization,
            },
        }
    }

    fn describe(&self) -> String {
        match self {
            Load::Wrk { wrk, .. } => format!("{} -t1 -c{CONNECTIONS}", wrk.display()),
            Load::Builtin { .. } => "the in-process client (one thread; wrk not found or not chosen)".to_owned(),
        }
    }

    fn run(&self, addr: SocketAddr, duration: Duration) -> LoadResult {
        match self {
            Load::Wrk { wrk, authorization } => run_wrk(wrk, authorization, addr, duration),
            Load::Builtin { runtime, authorization } => runtime.block_on(run_builtin(authorization, addr, duration)),
        }
    }
}

fn run_wrk(wrk: &Path, authorization: &str, addr: SocketAddr, duration: Duration) -> LoadResult {
    let output = Command::new(wrk)
        .args(["-t1", &format!("-c{CONNECTIONS}"), &format!("-d{}s", duration.as_secs()), "--latency", "-H"])
        .arg(format!("Authorization: {authorization}"))
        .arg(format!("http://{addr}{PATH}"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    // Not the command line: it holds the token.
    assert!(output.status.success(), "wrk failed: {}\n{text}", String::from_utf8_lossy(&output.stderr));
    parse_wrk(&text)
}

/// Reads wrk's `--latency` report.
fn parse_wrk(text: &str) -> LoadResult {
    let mut result = LoadResult {
        requests: 0,
        seconds: 0.0,
        p50: Duration::ZERO,
        p99: Duration::ZERO,
        non_2xx: 0,
        socket_errors: 0,
    };
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", value] => result.p50 = parse_wrk_duration(value),
            ["99%", value] => result.p99 = parse_wrk_duration(value),
            [count, "requests", "in", seconds, ..] => {
                result.requests = count.parse().unwrap();
                result.seconds = parse_wrk_duration(seconds.trim_end_matches(',')).as_secs_f64();
            }
            ["Non-2xx", "or", "3xx", "responses:", count] => result.non_2xx = count.parse().unwrap(),
            ["Socket", "errors:", ..] => {
                // Socket errors: connect 0, read 0, write 0, timeout 0
                result.socket_errors = words.iter().filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok()).sum();
            }
            _ => {}
        }
    }
    assert!(result.seconds > 0.0, "no \"requests in\" line in wrk's output:\n{text}");
    result
}

/// wrk's durations: `812.00us`, `1.23ms`, `10.00s`, `1.50m`.
fn parse_wrk_duration(text: &str) -> Duration {
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().unwrap_or_else(|_| panic!("wrk duration {text:?}"));
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => panic!("wrk duration {text:?}"),
    };
    Duration::from_secs_f64(seconds)
}

/// CONNECTIONS keep-alive HTTP/1.1 connections, each sending GET PATH back to back until
/// `duration` has passed. A connection the server closes is opened again, as wrk does; only
/// failures count as errors.
async fn run_builtin(authorization: &str, addr: SocketAddr, duration: Duration) -> LoadResult {
    let started = Instant::now();
    let deadline = started + duration;
    let connections = (0..CONNECTIONS).map(|_| async move {
        let mut latencies = Vec::new();
        let (mut non_2xx, mut errors) = (0u64, 0u64);
        let mut open: Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> = None;
        while Instant::now() < deadline {
            let mut sender = match open.take().filter(|s| !s.is_closed()) {
                Some(sender) => sender,
                None => match connect(addr).await {
                    Some(sender) => sender,
                    None => {
                        errors += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            let request = http::Request::get(PATH)
                .header(http::header::HOST, addr.to_string())
                .header(http::header::AUTHORIZATION, authorization)
                .body(Empty::<Bytes>::new())
                .unwrap();
            let sent = Instant::now();
            let Ok(response) = sender.send_request(request).await else {
                errors += 1;
                continue;
            };
            let status = response.status();
            let closing = response.headers().get(http::header::CONNECTION).is_some_and(|v| v == "close");
            if response.into_body().collect().await.is_err() {
                errors += 1;
                continue;
            }
            latencies.push(sent.elapsed());
            if !(status.is_success() || status.is_redirection()) {
                non_2xx += 1;
            }
            if !closing {
                open = Some(sender);
            }
        }
        (latencies, non_2xx, errors)
    });
    let mut latencies = Vec::new();
    let (mut non_2xx, mut socket_errors) = (0, 0);
    for (l, n, e) in futures_util::future::join_all(connections).await {
        latencies.extend(l);
        non_2xx += n;
        socket_errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        if latencies.is_empty() {
            Duration::ZERO
        } else {
            latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
        }
    };
    LoadResult {
        requests: latencies.len() as u64,
        seconds,
        p50: percentile(0.50),
        p99: percentile(0.99),
        non_2xx,
        socket_errors,
    }
}

async fn connect(addr: SocketAddr) -> Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(connection);
    Some(sender)
}

fn format_latency(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 { format!("{us:.0}µs") } else { format!("{:.2}ms", us / 1000.0) }
}
