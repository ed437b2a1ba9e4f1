//! `SIGHUP` through the real binary: the file is read and validated again and what a running
//! gateway can change applies to the next request, on connections that stay open; a file that
//! does not validate changes nothing; settings that need a restart are named.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tempfile::TempDir;

use crate::notify::WebhookReceiver;
use crate::support::{GatewayProcess, Upstream, binary, client, eventually, run_cli};

const ANN: &str = "ann@example.com";

/// A config file in `dir`: a `/api` route (GET needs `read`) to `upstream`, plus `extra`
/// (sections or routes appended at the end).
fn config_text(dir: &Path, upstream: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[proxy]
listen = "127.0.0.1:0"
trusted_proxies = ["127.0.0.1/32"]

[admin]
listen = "127.0.0.1:0"

[database]
url = "sqlite://{db}"

[[routes]]
prefix = "/api"
upstream = "http://{upstream}"
require = {{ GET = "read", "*" = "write" }}
{extra}
"#,
        db = dir.join("tokengate.db").display(),
    )
}

struct Setup {
    dir: TempDir,
    upstream: Upstream,
    config: PathBuf,
}

impl Setup {
    async fn new(extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let upstream = Upstream::start().await;
        let config = dir.path().join("tokengate.toml");
        let setup = Setup { dir, upstream, config };
        setup.write(extra);
        let (code, _, stderr) = run_cli(&setup.config, &["user", "add", ANN, "--superuser"]);
        assert_eq!(code, 0, "{stderr}");
        setup
    }

    /// Rewrites the file with `extra`, as an operator edits it before `systemctl reload`.
    fn write(&self, extra: &str) {
        std::fs::write(&self.config, config_text(self.dir.path(), self.upstream.addr, extra)).unwrap();
    }

    /// A new token of ann's with `scopes`: its secret.
    fn token(&self, name: &str, scopes: &[&str]) -> String {
        let mut args = vec!["token", "create", "--user", ANN, "--name", name, "--json"];
        for scope in scopes {
            args.extend(["--scope", scope]);
        }
        let (code, stdout, stderr) = run_cli(&self.config, &args);
        assert_eq!(code, 0, "{stderr}");
        serde_json::from_str::<Value>(&stdout).unwrap()["token"].as_str().unwrap().to_owned()
    }
}

/// One HTTP/1.1 connection to the proxy, kept open: every request on it goes over the same
/// socket, so a reload that closed connections would fail the next one.
struct Connection {
    sender: SendRequest<Empty<Bytes>>,
}

impl Connection {
    async fn open(addr: SocketAddr) -> Connection {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        Connection { sender }
    }

    /// GET `path` with Basic credentials `(email, secret)` and `headers`: the status, the
    /// response headers and the body.
    async fn get(
        &mut self,
        path: &str,
        secret: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, http::HeaderMap, String) {
        use base64::Engine;
        let mut request = hyper::Request::get(path).header("host", "localhost");
        if let Some(secret) = secret {
            let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{ANN}:{secret}"));
            request = request.header("authorization", format!("Basic {credentials}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.sender.ready().await.expect("the connection was closed");
        let response =
            self.sender.send_request(request.body(Empty::new()).unwrap()).await.expect("the connection was closed");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (parts.status.as_u16(), parts.headers, String::from_utf8_lossy(&body).into_owned())
    }
}

/// Sends SIGHUP and waits for the reload's outcome in the log: the fields of `message`.
fn reload(gw: &GatewayProcess, message: &str) -> Value {
    gw.signal("HUP");
    gw.wait_for_log(message)
}

async fn readyz(gw: &GatewayProcess) -> Value {
    let text = client().get(gw.admin_url("/readyz")).send().await.unwrap().text().await.unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn sighup_applies_routes_limits_policy_forward_auth_and_channels_on_open_connections() {
    let setup = Setup::new("").await;
    let (limited, other, admin) =
        (setup.token("limited", &["read"]), setup.token("other", &["read"]), setup.token("admin", &["admin", "read"]));
    let gw = GatewayProcess::start(&setup.config);
    let mut connection = Connection::open(gw.proxy).await;

    // Before: no route for /v2, no limit, no forward-auth, no channel, the default policy.
    assert_eq!(connection.get("/v2/things", Some(&other), &[]).await.0, 404);
    for _ in 0..3 {
        assert_eq!(connection.get("/api/things", Some(&limited), &[]).await.0, 200);
    }
    let (status, headers, _) = connection.get("/_tokengate/auth", Some(&other), &[("x-forwarded-uri", "/api/x")]).await;
    assert_eq!(status, 404, "forward-auth is off: the path is routed (and no route matches)");
    assert!(!headers.contains_key("x-auth-user"));
    assert_eq!(readyz(&gw).await["notify_channels"], serde_json::json!([]));
    let (status, policy) = gw.admin_call(reqwest::Method::GET, "/api/v1/policy", (ANN, &admin), None).await;
    assert_eq!(status, 200, "{policy}");
    assert_ne!(policy["max_lifetime"], "30d", "{policy}");

    // The operator adds a route, a default limit, forward-auth, a webhook and a shorter maximum
    // lifetime, then reloads.
    let hook = WebhookReceiver::start().await;
    setup.write(&format!(
        r#"
[rate_limit]
default = "2/min"

[tokens]
max_lifetime = "30d"
default_lifetime = "7d"

[forward_auth]
path = "/_tokengate/auth"

[notify]
webhook_url = "{hook}"
retry_base = "1s"

[[routes]]
prefix = "/v2"
upstream = "http://{upstream}/moved"
strip_prefix = true
require = {{ GET = "read" }}
"#,
        hook = hook.url,
        upstream = setup.upstream.addr,
    ));
    let reloaded = reload(&gw, "configuration reloaded");
    let changed = reloaded["changed"].as_str().unwrap();
    for key in ["routes", "rate_limit.default", "tokens.max_lifetime", "forward_auth.path", "notify.webhook_url"] {
        assert!(changed.contains(key), "{key} not named in {changed:?}");
    }

    // The same connection: the new route, with its rewrite.
    let (status, _, body) = connection.get("/v2/things", Some(&other), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["path"], "/moved/things");
    // Forward-auth answers on its path, routing the original URI with the new routes.
    let (status, headers, _) = connection
        .get("/_tokengate/auth", Some(&other), &[("x-forwarded-uri", "/v2/x"), ("x-forwarded-method", "GET")])
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-auth-user"], ANN);
    // The default limit: 2 a minute, counted from the reload.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(connection.get("/api/things", Some(&limited), &[]).await.0);
    }
    assert_eq!(statuses, [200, 200, 429]);
    // The token policy, and the notification sender with the new channel: a token created now
    // is delivered to the webhook.
    let (_, policy) = gw.admin_call(reqwest::Method::GET, "/api/v1/policy", (ANN, &admin), None).await;
    assert_eq!(policy["max_lifetime"], "30d", "{policy}");
    assert_eq!(readyz(&gw).await["notify_channels"], serde_json::json!(["webhook"]));
    let body = serde_json::json!({"user": ANN, "name": "too-long", "expires_in": "60d"});
    let (status, refused) = gw.admin_call(reqwest::Method::POST, "/api/v1/tokens", (ANN, &admin), Some(body)).await;
    assert_eq!(status, 422, "60 days is past the reloaded maximum of 30: {refused}");
    assert_eq!(refused["error"]["code"], "outside_policy");
    let body = serde_json::json!({"user": ANN, "name": "after-reload", "scopes": ["read"]});
    let (status, created) = gw.admin_call(reqwest::Method::POST, "/api/v1/tokens", (ANN, &admin), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    hook.wait_for("about the token created after the reload", "token.created").await;
    let scraped = gw.metrics().await;
    assert!(scraped.contains("tokengate_config_reloads_total{result=\"applied\"} 1"), "{scraped}");

    let (code, _) = tokio::task::spawn_blocking(move || gw.terminate()).await.unwrap();
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn sighup_with_a_broken_file_keeps_the_running_configuration_and_names_restart_only_settings() {
    let setup = Setup::new("").await;
    let secret = setup.token("script", &["read"]);
    let gw = GatewayProcess::start(&setup.config);
    let mut connection = Connection::open(gw.proxy).await;
    assert_eq!(connection.get("/api/things", Some(&secret), &[]).await.0, 200);

    // A route naming a scope nobody defined: refused with the key, nothing applied.
    setup.write(
        r#"
[rate_limit]
default = "1/min"

[[routes]]
prefix = "/v2"
upstream = "http://127.0.0.1:1"
require = { GET = "nonexistent-scope" }
"#,
    );
    let refused = reload(&gw, "configuration not reloaded; the running configuration stays");
    let error = refused["error"].as_str().unwrap();
    assert!(error.contains("prefix \"/v2\"") && error.contains("nonexistent-scope"), "{error}");
    for _ in 0..3 {
        assert_eq!(connection.get("/api/things", Some(&secret), &[]).await.0, 200, "the old limits stay");
    }
    assert_eq!(connection.get("/v2/things", Some(&secret), &[]).await.0, 404, "the old routes stay");
    let scraped = gw.metrics().await;
    assert!(scraped.contains("tokengate_config_reloads_total{result=\"rejected\"} 1"), "{scraped}");
    assert!(scraped.contains("tokengate_config_last_reload_successful 0"), "{scraped}");

    // Not TOML at all: the same.
    std::fs::write(&setup.config, "[proxy\nlisten = ").unwrap();
    let refused = reload(&gw, "configuration not reloaded; the running configuration stays");
    assert!(refused["error"].as_str().unwrap().contains("line"), "{refused}");
    assert_eq!(connection.get("/api/things", Some(&secret), &[]).await.0, 200);

    // Fixed, with a new admin address: applied, and the address named as needing a restart
    // (the admin listener stays where it is).
    let text = config_text(setup.dir.path(), setup.upstream.addr, "")
        .replace("[admin]\nlisten = \"127.0.0.1:0\"", "[admin]\nlisten = \"127.0.0.1:1\"");
    std::fs::write(&setup.config, text).unwrap();
    gw.signal("HUP");
    let pending = gw.wait_for_log("these settings differ from the running ones and apply only after a restart");
    assert_eq!(pending["settings"], "admin.listen");
    let scraped = gw.metrics().await;
    assert!(scraped.contains("tokengate_config_last_reload_successful 1"), "{scraped}");
    assert!(scraped.contains("tokengate_config_reloads_total{result=\"applied\"} 1"), "{scraped}");
    assert_eq!(connection.get("/api/things", Some(&secret), &[]).await.0, 200);

    let (code, _) = tokio::task::spawn_blocking(move || gw.terminate()).await.unwrap();
    assert_eq!(code, Some(0));
}

/// A gateway whose log format comes from the file alone (the harness's `TOKENGATE_LOG_FORMAT`
/// would outrank it): its stderr lines, as they arrive.
struct PlainProcess {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl PlainProcess {
    fn start(config: &Path) -> PlainProcess {
        use std::io::BufRead;
        let mut child = Command::new(binary())
            .arg("--config")
            .arg(config)
            .arg("serve")
            .env_remove("TOKENGATE_CONFIG")
            .env_remove("TOKENGATE_LOG_FORMAT")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        PlainProcess { child, lines }
    }

    /// The first line (within 10 s) that contains `text`.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let line = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("the gateway never logged a line with {text:?}"));
            if line.contains(text) {
                return line;
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for PlainProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn sighup_switches_the_log_format_and_the_access_log() {
    let setup = Setup::new("\n[log]\nformat = \"text\"\naccess = false\n").await;
    let secret = setup.token("script", &["read"]);
    let gw = PlainProcess::start(&setup.config);
    let listening = gw.wait_for("tokengate listening");
    assert!(serde_json::from_str::<Value>(&listening).is_err(), "text, not JSON: {listening}");
    let proxy: SocketAddr = listening
        .split_whitespace()
        .find_map(|part| part.strip_prefix("proxy="))
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no proxy address in {listening}"));
    let mut connection = Connection::open(proxy).await;
    assert_eq!(connection.get("/api/before", Some(&secret), &[]).await.0, 200);

    setup.write("\n[log]\nformat = \"json\"\naccess = true\n");
    gw.signal("HUP");
    let reloaded = gw.wait_for("configuration reloaded");
    let reloaded: Value = serde_json::from_str(&reloaded).expect("the reload's own line is JSON");
    assert!(reloaded["fields"]["changed"].as_str().unwrap().contains("log.format"), "{reloaded}");

    let (status, headers, _) = connection.get("/api/after", Some(&secret), &[]).await;
    assert_eq!(status, 200);
    let request_id = headers["x-request-id"].to_str().unwrap().to_owned();
    let record: Value = serde_json::from_str(&gw.wait_for(&request_id)).unwrap();
    assert_eq!(record["path"], "/api/after", "{record}");
    assert_eq!(record["user"], ANN, "{record}");
    // Nothing was logged for the request before the reload, when the access log was off.
    eventually("no access record of the request before the reload", || async {
        gw.lines.try_iter().all(|line| !line.contains("/api/before"))
    })
    .await;
}
