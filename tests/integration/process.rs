//! The real `tokengate serve` process, set up and inspected through the real CLI: how fast a
//! revocation made by another process takes effect, that last use survives SIGTERM and the
//! periodic flush, and that large bodies stream through without being buffered.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::support::{GatewayProcess, Upstream, cli_ok, client, config_text};

/// A test's own directory, echo upstream and config file.
struct Setup {
    _dir: TempDir,
    _upstream: Upstream,
    config: PathBuf,
}

impl Setup {
    async fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let upstream = Upstream::start().await;
        let config = dir.path().join("tokengate.toml");
        std::fs::write(&config, config_text(dir.path(), upstream.addr, "")).unwrap();
        Setup { _dir: dir, _upstream: upstream, config }
    }

    /// Runs the CLI on a blocking thread; asserts success and returns stdout.
    async fn cli(&self, args: &[&str]) -> String {
        cli_ok(&self.config, args, &[]).await
    }

    async fn cli_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let stdout = self.cli(&all).await;
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
    }

    /// Mints a token with the CLI; returns (id, secret).
    async fn token(&self, email: &str, name: &str) -> (i64, String) {
        let created = self.cli_json(&["token", "create", "--user", email, "--name", name]).await;
        (created["id"].as_i64().unwrap(), created["token"].as_str().unwrap().to_owned())
    }

    async fn show(&self, id: i64) -> Value {
        self.cli_json(&["token", "show", &id.to_string()]).await
    }
}

/// Terminates on a blocking thread; asserts a clean exit.
async fn terminate_cleanly(gateway: GatewayProcess) -> Vec<String> {
    let (code, log) = tokio::task::spawn_blocking(move || gateway.terminate()).await.unwrap();
    assert_eq!(code, Some(0), "the gateway did not exit cleanly on SIGTERM; log:\n{}", log.join("\n"));
    log
}

async fn status(client: &reqwest::Client, url: &str, email: &str, secret: &str) -> u16 {
    client.get(url).basic_auth(email, Some(secret)).send().await.unwrap().status().as_u16()
}

// ---- revocation and creation by another process ----

/// With the gateway already running: an account and tokens created by the CLI become usable,
/// and a token revoked by the CLI is refused within the sync interval (plus slack).
async fn cli_changes_reach_the_running_gateway(gateway: GatewayProcess, setup: &Setup, interval: Duration) {
    let label = format!("{}ms", interval.as_millis());
    let client = client();
    let url = gateway.url("/");
    let email = "ann@example.com";

    setup.cli(&["user", "add", email]).await;
    let (revoked, revoked_secret) = setup.token(email, "first").await;
    let usable = wait_until_usable(&client, &url, email, &revoked_secret).await;
    eprintln!("token created by the CLI usable after {} ms (sync.interval = {label})", usable.as_millis());
    assert!(usable < interval + Duration::from_millis(1000), "new token usable only after {usable:?}");
    let (_, kept_secret) = setup.token(email, "second").await;
    wait_until_usable(&client, &url, email, &kept_secret).await;

    // Revoke the first; poll with a fresh request every ~5 ms until the gateway refuses it.
    setup.cli(&["token", "revoke", &revoked.to_string()]).await;
    let exited = Instant::now();
    let propagation = loop {
        let response = client.get(&url).basic_auth(email, Some(&revoked_secret)).send().await.unwrap();
        match response.status().as_u16() {
            200 => {}
            401 => {
                let elapsed = exited.elapsed();
                let challenge = response.headers().get("www-authenticate").and_then(|v| v.to_str().ok());
                assert!(challenge.is_some_and(|c| c.starts_with("Basic realm=")), "401 without a challenge");
                break elapsed;
            }
            other => panic!("unexpected status {other} while waiting for the revocation"),
        }
        assert!(exited.elapsed() < Duration::from_secs(10), "the revoked token still works after 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!("revocation propagation: {} ms (sync.interval = {label})", propagation.as_millis());
    assert!(
        propagation < interval + Duration::from_millis(500),
        "revocation took {propagation:?} with sync.interval = {label}"
    );
    // It stays refused; the other token is unaffected.
    assert_eq!(status(&client, &url, email, &revoked_secret).await, 401);
    assert_eq!(status(&client, &url, email, &kept_secret).await, 200);

    terminate_cleanly(gateway).await;
}

/// Polls (every 50 ms, so the few 401s stay far below the failed-authentication limit) until
/// the token is accepted; returns how long that took.
async fn wait_until_usable(client: &reqwest::Client, url: &str, email: &str, secret: &str) -> Duration {
    let start = Instant::now();
    loop {
        match status(client, url, email, secret).await {
            200 => return start.elapsed(),
            401 => {}
            other => panic!("unexpected status {other} while waiting for a new token"),
        }
        assert!(start.elapsed() < Duration::from_secs(10), "a token created by the CLI is not usable after 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_revocation_reaches_the_gateway_within_the_sync_interval() {
    let setup = Setup::new().await;
    let gateway = GatewayProcess::start(&setup.config);
    cli_changes_reach_the_running_gateway(gateway, &setup, Duration::from_millis(50)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_revocation_reaches_the_gateway_within_the_default_sync_interval() {
    let setup = Setup::new().await;
    let gateway = GatewayProcess::start_with_env(&setup.config, &[("TOKENGATE_SYNC__INTERVAL", "250ms")]);
    cli_changes_reach_the_running_gateway(gateway, &setup, Duration::from_millis(250)).await;
}

// ---- last use ----

fn assert_last_use(token: &Value, path: &str) {
    assert!(token["last_used_at"].is_string(), "last use not recorded: {token}");
    assert_eq!(token["last_used_method"], "GET", "{token}");
    assert_eq!(token["last_used_path"], path, "{token}");
    assert_eq!(token["last_used_ip"], "127.0.0.1", "{token}");
}

#[tokio::test(flavor = "multi_thread")]
async fn last_use_is_flushed_on_sigterm() {
    let setup = Setup::new().await;
    setup.cli(&["user", "add", "ann@example.com"]).await;
    let (id, secret) = setup.token("ann@example.com", "deploy").await;
    // Only the shutdown flush can write within this test.
    let gateway = GatewayProcess::start_with_env(&setup.config, &[("TOKENGATE_USAGE__FLUSH_INTERVAL", "1h")]);
    let client = client();

    let response = client
        .get(gateway.url("/some/path?secret=1"))
        .basic_auth("ann@example.com", Some(&secret))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echoed: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(echoed["path"], "/some/path");
    assert_eq!(echoed["query"], "secret=1");

    let before = setup.show(id).await;
    assert_eq!(before["last_used_at"], Value::Null, "written before shutdown despite flush_interval = 1h: {before}");

    terminate_cleanly(gateway).await;
    let after = setup.show(id).await;
    assert_last_use(&after, "/some/path");
}

#[tokio::test(flavor = "multi_thread")]
async fn last_use_is_flushed_periodically() {
    let setup = Setup::new().await;
    setup.cli(&["user", "add", "ann@example.com"]).await;
    let (id, secret) = setup.token("ann@example.com", "deploy").await;
    let gateway = GatewayProcess::start(&setup.config); // usage.flush_interval = 100ms
    let client = client();

    let response =
        client.get(gateway.url("/periodic?x=1")).basic_auth("ann@example.com", Some(&secret)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let sent = Instant::now();
    let token = loop {
        let token = setup.show(id).await;
        if token["last_used_at"].is_string() {
            break token;
        }
        assert!(sent.elapsed() < Duration::from_secs(3), "last use not written within 3 s: {token}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("last use written {} ms after the request (flush_interval = 100ms)", sent.elapsed().as_millis());
    assert_last_use(&token, "/periodic");

    terminate_cleanly(gateway).await;
}

// ---- streaming ----

const STREAM_BYTES: usize = 50 * 1024 * 1024;
const CHUNK_BYTES: usize = 64 * 1024;

/// Byte `i` of the upload: varied enough that a reordered or dropped chunk changes the hash.
fn upload_chunk(start: usize) -> Vec<u8> {
    (start..start + CHUNK_BYTES).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_mebibytes_stream_both_ways_without_buffering() {
    let setup = Setup::new().await;
    setup.cli(&["user", "add", "ann@example.com"]).await;
    let (_, secret) = setup.token("ann@example.com", "bulk").await;
    // The 500 ms upstream timeout of the test config applies: it counts from the upload's
    // last progress, so a long upload is not cut off.
    let gateway = GatewayProcess::start(&setup.config);
    let peak_mib = || gateway.memory_kib().1 as f64 / 1024.0;
    let client = client();

    // Warm up the paths (connection pools, buffers) before the baseline.
    let warm_up = client.post(gateway.url("/")).basic_auth("ann@example.com", Some(&secret)).body(vec![7u8; 4096]);
    assert_eq!(warm_up.send().await.unwrap().status(), 200);
    let warm_up = client.get(gateway.url("/stream?bytes=65536")).basic_auth("ann@example.com", Some(&secret));
    assert_eq!(warm_up.send().await.unwrap().bytes().await.unwrap().len(), 65536);
    let baseline = peak_mib();

    // Upload: generated and hashed chunk by chunk as the client sends it.
    let (digest_sender, digest) = tokio::sync::oneshot::channel::<String>();
    let chunks = futures_util::stream::unfold((0usize, Sha256::new(), Some(digest_sender)), |state| async move {
        let (sent, mut hasher, mut sender) = state;
        if sent >= STREAM_BYTES {
            return None;
        }
        let chunk = upload_chunk(sent);
        hasher.update(&chunk);
        let sent = sent + chunk.len();
        if sent >= STREAM_BYTES
            && let Some(sender) = sender.take()
        {
            let _ = sender.send(hex(&hasher.clone().finalize()));
        }
        Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), (sent, hasher, sender)))
    });
    let started = Instant::now();
    let response = client
        .post(gateway.url("/"))
        .basic_auth("ann@example.com", Some(&secret))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echoed: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    let upload_time = started.elapsed();
    let digest = digest.await.unwrap();
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["body_bytes"], STREAM_BYTES as u64);
    assert_eq!(echoed["body_sha256"], digest);
    let after_upload = peak_mib();

    // Download: consumed chunk by chunk; byte i is i % 251.
    let started = Instant::now();
    let mut response = client
        .get(gateway.url(&format!("/stream?bytes={STREAM_BYTES}")))
        .basic_auth("ann@example.com", Some(&secret))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut received = 0usize;
    let mut chunks = 0usize;
    while let Some(chunk) = response.chunk().await.unwrap() {
        let offset = received;
        assert!(
            chunk.iter().enumerate().all(|(j, b)| *b == ((offset + j) % 251) as u8),
            "corrupt data in the chunk at offset {offset}"
        );
        received += chunk.len();
        chunks += 1;
    }
    let download_time = started.elapsed();
    assert_eq!(received, STREAM_BYTES);
    assert!(chunks > 1, "the download arrived in one piece");
    let after_download = peak_mib();

    let up = after_upload - baseline;
    let down = after_download - after_upload;
    let total = after_download - baseline;
    eprintln!(
        "streaming 50 MiB: peak RSS {baseline:.1} MiB -> {after_upload:.1} MiB after upload (+{up:.1} MiB, {} ms) \
         -> {after_download:.1} MiB after download (+{down:.1} MiB, {} ms); total growth {total:.1} MiB",
        upload_time.as_millis(),
        download_time.as_millis()
    );
    assert!(total < 16.0, "the gateway's peak memory grew by {total:.1} MiB streaming 50 MiB each way");

    terminate_cleanly(gateway).await;
}

/// A client that uploads slowly (here ~1 s, past the test config's 500 ms upstream_timeout) to
/// an upstream that answers after reading the body must not be cut off: the timeout is for
/// "waiting for the upstream's response head", which starts once the request has been sent.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_upload_is_not_cut_off_by_the_upstream_timeout() {
    let setup = Setup::new().await;
    setup.cli(&["user", "add", "ann@example.com"]).await;
    let (_, secret) = setup.token("ann@example.com", "slow").await;
    let gateway = GatewayProcess::start(&setup.config); // proxy.upstream_timeout = 500ms
    let chunks = futures_util::stream::unfold(0usize, |sent| async move {
        if sent == 10 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 1024])), sent + 1))
    });
    let response = client()
        .post(gateway.url("/"))
        .basic_auth("ann@example.com", Some(&secret))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    let response = response.unwrap_or_else(|e| panic!("the gateway cut the upload off: {e:?}"));
    assert_eq!(response.status(), 200);
    let echoed: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(echoed["body_bytes"], 10 * 1024);
    terminate_cleanly(gateway).await;
}

// ---- runtime size ----

/// The runtime worker threads of a process (tokio names them `tokio-rt-worker`; older versions
/// `tokio-runtime-worker`, which the kernel cuts to 15 characters).
fn worker_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.unwrap().path().join("comm")).ok())
        .filter(|name| matches!(name.trim(), "tokio-rt-worker" | "tokio-runtime-w"))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_log_pipe_loses_no_request() {
    let setup = Setup::new().await;
    let mut gateway = GatewayProcess::start(&setup.config);
    gateway.close_log();
    // Each refusal writes a log line: the first one closes the pipe, the next ones meet it closed.
    for attempt in 0..5 {
        let response = crate::support::client().get(gateway.url("/api/x")).send().await;
        let status = response.map(|r| r.status().as_u16()).map_err(|e| e.to_string());
        assert_eq!(status, Ok(401), "attempt {attempt}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    terminate_cleanly(gateway).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_workers_sizes_the_runtime_of_serve() {
    let setup = Setup::new().await;
    for workers in [1, 3] {
        let env = [("TOKENGATE_PROXY__WORKERS", workers.to_string())];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let gateway = GatewayProcess::start_with_env(&setup.config, &env);
        assert_eq!(worker_threads(gateway.child.id()), workers, "proxy.workers = {workers}");
        terminate_cleanly(gateway).await;
    }
    let (code, _, stderr) =
        crate::support::run_cli_env(&setup.config, &["check-config"], &[("TOKENGATE_PROXY__WORKERS", "0")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("proxy.workers"), "{stderr}");
}
