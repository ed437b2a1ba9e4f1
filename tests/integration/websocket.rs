//! WebSockets (HTTP/1.1 `Upgrade`) through the real binary: authenticated like any request,
//! then tunnelled both ways to an upstream that echoes what it gets after its `101`; refused
//! without credentials before any upstream; closed when idle.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{GatewayProcess, cli_token, run_cli, write_config};

const ANN: &str = "ann@example.com";

/// An upstream that answers an upgrade request with `101` and echoes every byte after it;
/// it keeps each request head it saw.
struct EchoUpgrades {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<http::HeaderMap>>>,
}

impl EchoUpgrades {
    async fn start() -> EchoUpgrades {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&heads);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                    seen.lock().unwrap().push(request.headers().clone());
                    let upgrade = request.headers().contains_key("upgrade");
                    if upgrade {
                        let on_upgrade = hyper::upgrade::on(&mut request);
                        tokio::spawn(async move {
                            let Ok(upgraded) = on_upgrade.await else { return };
                            let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
                            let _ = tokio::io::copy(&mut reader, &mut writer).await;
                        });
                    }
                    async move {
                        let mut response = hyper::Response::new(Empty::<Bytes>::new());
                        if upgrade {
                            *response.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
                            response.headers_mut().insert("upgrade", http::HeaderValue::from_static("websocket"));
                            response.headers_mut().insert("connection", http::HeaderValue::from_static("upgrade"));
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades(),
                );
            }
        });
        EchoUpgrades { addr, heads }
    }
}

struct Site {
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    upstream: EchoUpgrades,
    secret: String,
}

async fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let upstream = EchoUpgrades::start().await;
    let routes = format!(
        r#"
[[routes]]
prefix = "/ws"
upstream = "http://{upstream}"
require = {{ GET = "read" }}
"#,
        upstream = upstream.addr,
    );
    let config = write_config(dir.path(), r#"tunnel_idle_timeout = "1s""#, &routes);
    let (code, _, stderr) = run_cli(&config, &["user", "add", ANN]);
    assert_eq!(code, 0, "{stderr}");
    let secret = cli_token(&config, ANN, "socket", "read");
    Site { _dir: dir, config, upstream, secret }
}

/// Sends a WebSocket handshake (with `secret` as credentials, if any) and reads the response
/// head; returns the stream (positioned after the head) and the head.
async fn handshake(proxy: SocketAddr, secret: Option<&str>) -> (tokio::net::TcpStream, String) {
    let mut stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let authorization = secret
        .map(|secret| {
            let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{ANN}:{secret}"));
            format!("Authorization: Basic {credentials}\r\n")
        })
        .unwrap_or_default();
    let request = format!(
        "GET /ws/chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{authorization}\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await.unwrap().unwrap();
        assert_eq!(n, 1, "the connection closed before the head ended: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    (stream, String::from_utf8_lossy(&head).into_owned())
}

#[tokio::test]
async fn a_websocket_is_authenticated_then_tunnelled_both_ways_and_closed_when_idle() {
    let site = site().await;
    let gw = GatewayProcess::start(&site.config);

    // Without credentials: 401, and the upstream never heard of it.
    let (_, head) = handshake(gw.proxy, None).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(site.upstream.heads.lock().unwrap().is_empty());

    // With them: 101, and bytes go both ways.
    let (mut stream, head) = handshake(gw.proxy, Some(&site.secret)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: websocket") && lower.contains("connection: upgrade"), "{head}");
    for message in [&b"hello"[..], b"second message", &[0u8, 1, 2, 255][..]] {
        stream.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed)).await.unwrap().unwrap();
        assert_eq!(echoed, message);
    }
    // The upstream got the upgrade with the caller's identity, and no credentials.
    let seen = site.upstream.heads.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["upgrade"], "websocket");
    assert_eq!(seen[0]["x-auth-user"], ANN);
    assert!(!seen[0].contains_key("authorization"));

    // Idle for longer than tunnel_idle_timeout (1 s): closed.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle tunnel was not closed");

    // Counted like any request: status 101, authorised.
    let metrics = gw.metrics().await;
    assert!(
        metrics.lines().any(|l| l.starts_with("tokengate_requests_total")
            && l.contains("status=\"101\"")
            && l.contains("outcome=\"authorised\"")),
        "{metrics}"
    );
}
