//! Shared test helpers: [`TestGateway`] (an in-process gateway on `127.0.0.1:0` with its own
//! database and echo upstream), [`GatewayProcess`] (the real binary), and small HTTP helpers.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokengate::clock::Clock;
use tokengate::config::Config;
use tokengate::control::service::{Actor, CreateAccount, CreateToken, ExpiryRequest, LifecycleService};
use tokengate::control::store::Store;
use tokengate::gateway::{Gateway, Listeners};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// An upstream that answers 200 to every request and keeps each request as received, so a
/// test can prove what reached it and what never did: head and body bytes (a `Content-Length` body, or a chunked one up to its last chunk).
pub struct Recorder {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    pub async fn start() -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(record_requests(stream, Arc::clone(&seen)));
            }
        });
        Recorder { addr, requests }
    }

    /// Every request received, head and body, as text.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// Every request head received (up to and including the blank line).
    pub fn heads(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .map(|request| match request.find("\r\n\r\n") {
                Some(at) => request[..at + 4].to_owned(),
                None => request,
            })
            .collect()
    }
}

async fn record_requests(mut stream: tokio::net::TcpStream, seen: Arc<Mutex<Vec<String>>>) {
    let mut buffer = Vec::new();
    let read_more = async |stream: &mut tokio::net::TcpStream, buffer: &mut Vec<u8>| {
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                buffer.extend_from_slice(&chunk[..n]);
                true
            }
        }
    };
    loop {
        let head_end = loop {
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if !read_more(&mut stream, &mut buffer).await {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
        let end = if head.contains("transfer-encoding: chunked") {
            loop {
                if let Some(at) = buffer[head_end..].windows(5).position(|w| w == b"0\r\n\r\n") {
                    break head_end + at + 5;
                }
                if !read_more(&mut stream, &mut buffer).await {
                    seen.lock().unwrap().push(String::from_utf8_lossy(&buffer).into_owned());
                    return;
                }
            }
        } else {
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while buffer.len() < head_end + length {
                if !read_more(&mut stream, &mut buffer).await {
                    seen.lock().unwrap().push(String::from_utf8_lossy(&buffer).into_owned());
                    return;
                }
            }
            head_end + length
        };
        seen.lock().unwrap().push(String::from_utf8_lossy(&buffer[..end]).into_owned());
        buffer.drain(..end);
        let answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok";
        if stream.write_all(answer).await.is_err() {
            return;
        }
    }
}

/// The echo upstream, running as a task on its own port.
pub struct Upstream {
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let signal = stop.clone();
        tokio::spawn(crate::echo::serve(listener, async move { signal.cancelled().await }));
        Upstream { addr, stop }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// An address nothing listens on (bound, then released).
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// The config every test gateway starts from: routes for each behaviour the tests exercise.
pub fn config_text(dir: &Path, upstream: SocketAddr, extra: &str) -> String {
    let db = dir.join("tokengate.db");
    let dead = closed_port();
    format!(
        r#"
[proxy]
listen = "127.0.0.1:0"
upstream_timeout = "500ms"
connect_timeout = "1s"

[admin]
listen = "127.0.0.1:0"

[database]
url = "sqlite://{db}"

[sync]
interval = "50ms"

[usage]
flush_interval = "100ms"

[tokens]
allow_never_expires = true

[[routes]]
prefix = "/"
upstream = "http://{upstream}"
require = {{ GET = "read", HEAD = "read", "*" = "write" }}

[[routes]]
prefix = "/public"
upstream = "http://{upstream}"
public = true

[[routes]]
prefix = "/kept"
upstream = "http://{upstream}"
keep_authorization = true

[[routes]]
prefix = "/strip"
upstream = "http://{upstream}/base"
strip_prefix = true

[[routes]]
prefix = "/dead"
upstream = "http://{dead}"
{extra}
"#,
        db = db.display()
    )
}

/// Writes `tokengate.toml` in `dir` for a gateway binary on free ports with a SQLite database
/// in `dir`: `proxy` goes into `[proxy]`, then `rest` (the `[[routes]]` tables, and any other
/// table). Returns its path.
pub fn write_config(dir: &Path, proxy: &str, rest: &str) -> PathBuf {
    let sqlite = format!("sqlite://{}", dir.join("tokengate.db").display());
    write_config_on(dir, &sqlite, proxy, rest)
}

/// [`write_config`] on the database at `database_url` (a test's PostgreSQL database, say).
pub fn write_config_on(dir: &Path, database_url: &str, proxy: &str, rest: &str) -> PathBuf {
    let config = dir.join("tokengate.toml");
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\n{proxy}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [database]\nurl = \"{database_url}\"\n\n{rest}"
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// An HTTP/2 connection to `addr` (prior knowledge, as gRPC-style clients speak it), its driver
/// in a task of its own.
pub async fn h2(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let (sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await.unwrap();
    tokio::spawn(connection);
    sender
}

/// Creates a token through the CLI (`token create --json`) and returns its secret.
pub fn cli_token(config: &Path, email: &str, name: &str, scope: &str) -> String {
    let (code, stdout, stderr) =
        run_cli(config, &["token", "create", "--user", email, "--name", name, "--scope", scope, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["token"].as_str().unwrap().to_owned()
}

/// A gateway running in this process, with its own temporary database and echo upstream.
pub struct TestGateway {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub service: LifecycleService,
    pub sync: std::sync::Arc<tokengate::control::sync::IndexSync>,
    pub limits: std::sync::Arc<tokengate::data::ratelimit::RateLimits>,
    pub config: Config,
    pub upstream: Upstream,
    pub dir: TempDir,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl TestGateway {
    pub async fn spawn() -> TestGateway {
        Self::spawn_with("", &[], Clock::System).await
    }

    /// `extra` is appended to the config file (more routes or sections); `env` holds
    /// `TOKENGATE_<SECTION>__<KEY>` overrides of the base config's keys.
    pub async fn spawn_with(extra: &str, env: &[(&str, &str)], clock: Clock) -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        let upstream = Upstream::start().await;
        let path = dir.path().join("tokengate.toml");
        std::fs::write(&path, config_text(dir.path(), upstream.addr, extra)).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let config = Config::load(Some(&path), env).unwrap();
        let listeners = Listeners::bind(&config).await.unwrap();
        let (proxy, admin) = listeners.addresses().unwrap();
        let gateway = Gateway::start(&config).await.unwrap();
        let service = LifecycleService::new(
            gateway.store.clone(),
            config.tokens.clone(),
            clock.clone(),
            Some(gateway.sync.clone()),
        );
        let sync = gateway.sync.clone();
        let limits = gateway.limits.clone();
        let shutdown = CancellationToken::new();
        let task = {
            let config = config.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move { gateway.serve(&config, listeners, clock, shutdown, None).await })
        };
        TestGateway { proxy, admin, service, sync, limits, config, upstream, dir, shutdown, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }

    /// Whether token limits are shared through Redis right now (`None`: not configured).
    pub fn limits_shared(&self) -> Option<bool> {
        self.limits.shared_healthy()
    }

    pub fn store(&self) -> &Store {
        self.service.store()
    }

    /// Creates an account that may hold tokens.
    pub async fn account(&self, email: &str) {
        let request = CreateAccount { email: email.into(), can_create_tokens: true, ..CreateAccount::default() };
        self.service.create_account(request, &Actor::cli()).await.unwrap();
    }

    /// Mints a token with the given scopes (empty: the defaults); returns (id, secret).
    pub async fn token(&self, email: &str, name: &str, scopes: &[&str]) -> (i64, String) {
        self.token_with(email, name, scopes, ExpiryRequest::Default).await
    }

    pub async fn token_with(&self, email: &str, name: &str, scopes: &[&str], expiry: ExpiryRequest) -> (i64, String) {
        let request = CreateToken {
            owner_email: email.into(),
            name: name.into(),
            description: None,
            expiry,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            rate_limit: None,
        };
        let created = self.service.create_token(request, &Actor::cli()).await.unwrap();
        (created.token.id.0, created.secret.expose().to_owned())
    }

    /// Stops the gateway the way SIGTERM does, and waits for it to finish.
    pub async fn stop(self) -> (Store, TempDir) {
        self.shutdown.cancel();
        self.task.await.unwrap();
        let store = Store::open(&self.config.database.url).await.unwrap();
        (store, self.dir)
    }
}

/// Polls `check` every 20 ms until it holds; fails naming `what` after 10 s.
pub async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(10), "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain HTTP client that never reuses connections between tests.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// The real `tokengate` binary.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tokengate"))
}

/// Runs `tokengate ARGS` with the given config; returns (status, stdout, stderr).
pub fn run_cli(config: &Path, args: &[&str]) -> (i32, String, String) {
    run_cli_env(config, args, &[])
}

/// [`run_cli`] with extra environment variables.
pub fn run_cli_env(config: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(binary())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("TOKENGATE_CONFIG")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// [`run_cli_env`] on a blocking thread, for async tests: asserts success and returns stdout.
pub async fn cli_ok(config: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let config = config.to_owned();
    let owned: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = owned.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_cli_env(&config, &args, &env)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "tokengate {args:?} failed: {stderr}");
    stdout
}

/// Starts `tokengate ARGS` with the given config, stdout and stderr piped, for a test that
/// reads the output while the command runs.
pub fn spawn_cli(config: &Path, args: &[&str]) -> Child {
    Command::new(binary())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("TOKENGATE_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `tokengate serve` as a child process, its addresses read from its JSON log.
pub struct GatewayProcess {
    pub child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    /// The log lines up to and including `tokengate listening`.
    pub startup_log: Vec<String>,
    log: std::sync::mpsc::Receiver<String>,
}

impl GatewayProcess {
    pub fn start(config: &Path) -> GatewayProcess {
        Self::start_with_env(config, &[])
    }

    /// Stops reading the gateway's log: the pipe closes at its next line, as when whatever read
    /// a gateway's stderr has gone away.
    pub fn close_log(&mut self) {
        let (_, closed) = std::sync::mpsc::channel();
        self.log = closed;
    }

    /// [`GatewayProcess::start`] with extra environment (`TOKENGATE_<SECTION>__<KEY>` overrides).
    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> GatewayProcess {
        let mut command = Command::new(binary());
        command.arg("--config").arg(config).arg("serve").envs(env.iter().copied()).env_remove("TOKENGATE_CONFIG");
        Self::start_command(command)
    }

    /// Starts `command` (a `tokengate ... serve` of any binary, in any directory) with its log
    /// in JSON and waits until it listens.
    pub fn start_command(mut command: Command) -> GatewayProcess {
        let mut child =
            command.env("TOKENGATE_LOG_FORMAT", "json").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (sender, log) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        // Owned from here on, so a failure below still kills and reaps the child (see Drop).
        let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut process = GatewayProcess { child, proxy: unknown, admin: unknown, startup_log: Vec::new(), log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let line = process
                .log
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("the gateway did not report its listeners within 30 s"));
            process.startup_log.push(line.clone());
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            let fields = &entry["fields"];
            if fields["message"] == "tokengate listening" {
                process.proxy = fields["proxy"].as_str().unwrap().parse().unwrap();
                process.admin = fields["admin"].as_str().unwrap().parse().unwrap();
                return process;
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }

    /// A URL on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// The Prometheus text of its `/metrics`.
    pub async fn metrics(&self) -> String {
        client().get(self.admin_url("/metrics")).send().await.unwrap().text().await.unwrap()
    }

    /// Calls this gateway's admin API as `who` (email, token) with an optional JSON body;
    /// returns the status and the JSON answer (or the text, when it is not JSON).
    pub async fn admin_call(
        &self,
        method: reqwest::Method,
        path: &str,
        who: (&str, &str),
        body: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let mut request = client().request(method, self.admin_url(path)).basic_auth(who.0, Some(who.1));
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }

    /// Kills the process at once (SIGKILL): no drain, no final flush.
    pub fn kill_now(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits (at most 10 s) for a log line whose message is `message`; returns its fields.
    pub fn wait_for_log(&self, message: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let line = self
                .log
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("the gateway never logged {message:?}"));
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if entry["fields"]["message"] == message {
                return entry["fields"].clone();
            }
        }
    }

    /// Sends the process a signal (`HUP`, `TERM`, ...) by name.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Resident memory now and at its peak, in KiB, from /proc.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap()
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit code and its log lines.
    pub fn terminate(mut self) -> (Option<i32>, Vec<String>) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the gateway did not exit within 20 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        let lines = self.log.try_iter().collect();
        (status.code(), lines)
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
