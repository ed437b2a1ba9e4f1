//! The cap on connections per upstream (`proxy.max_upstream_connections`), against the real
//! binary and an upstream that counts the connections it has open at once: an HTTP/2 client's
//! fan-out stays within the cap (its requests queue instead), a request that cannot get a
//! connection within `proxy.upstream_queue_timeout` gets 503, and connections that keep-alive
//! clients hold between requests are taken back for a queued request rather than making it wait.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{GatewayProcess, h2, write_config};

/// An upstream that answers `/slow/MS` after MS milliseconds and anything else at once, and
/// counts its connections: open now, the most open at once, and opened in all.
struct CountingUpstream {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    opened: Arc<AtomicUsize>,
}

impl CountingUpstream {
    async fn start() -> CountingUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, peak, opened): (Arc<AtomicUsize>, Arc<AtomicUsize>, Arc<AtomicUsize>) = Default::default();
        let counters = (Arc::clone(&open), Arc::clone(&peak), Arc::clone(&opened));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (open, peak, opened) = (Arc::clone(&counters.0), Arc::clone(&counters.1), Arc::clone(&counters.2));
                opened.fetch_add(1, Ordering::SeqCst);
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = service_fn(|request: hyper::Request<hyper::body::Incoming>| async move {
                        let delay = request.uri().path().strip_prefix("/slow/").and_then(|ms| ms.parse().ok());
                        if let Some(ms) = delay {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        CountingUpstream { addr, open, peak, opened }
    }

    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

struct Site {
    _dir: TempDir,
    gateway: GatewayProcess,
    upstream: CountingUpstream,
}

/// A gateway with one public route to a counting upstream, capped at `cap` connections, with
/// requests queuing for `queue`.
async fn site(cap: usize, queue: &str) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let upstream = CountingUpstream::start().await;
    let proxy = format!("max_upstream_connections = {cap}\nupstream_queue_timeout = \"{queue}\"");
    let routes = format!("[[routes]]\nprefix = \"/\"\nupstream = \"http://{}\"\npublic = true\n", upstream.addr);
    let config = write_config(dir.path(), &proxy, &routes);
    let gateway = GatewayProcess::start(&config);
    Site { _dir: dir, gateway, upstream }
}

/// Sends a GET for `path` on `sender`; the status and the body.
async fn get(mut sender: hyper::client::conn::http2::SendRequest<Empty<Bytes>>, path: &str) -> (u16, Bytes) {
    let request = hyper::Request::get(format!("http://gateway{path}")).body(Empty::new()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    (status, response.into_body().collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn an_http2_clients_fan_out_queues_within_the_upstream_cap() {
    let site = site(4, "10s").await;
    let sender = h2(site.gateway.proxy).await;
    let started = Instant::now();
    let requests: Vec<_> = (0..24).map(|_| tokio::spawn(get(sender.clone(), "/slow/300"))).collect();
    for request in requests {
        let (status, body) = request.await.unwrap();
        assert_eq!((status, &body[..]), (200, &b"ok"[..]));
    }
    // 24 requests of 300 ms through 4 connections: six rounds, not one.
    assert!(started.elapsed() >= Duration::from_millis(1500), "took {:?}", started.elapsed());
    assert!(site.upstream.peak() <= 4, "the upstream saw {} connections at once", site.upstream.peak());
    assert!(site.upstream.opened.load(Ordering::SeqCst) <= 4, "connections were churned, not reused");
    let metrics = site.gateway.metrics().await;
    let open = format!("tokengate_upstream_connections{{upstream=\"http://{}\"}}", site.upstream.addr);
    let line = metrics.lines().find(|line| line.starts_with(&open)).unwrap_or_else(|| panic!("{metrics}"));
    let count: usize = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((1..=4).contains(&count), "{line}");
}

#[tokio::test]
async fn a_request_that_finds_no_connection_within_the_queue_timeout_gets_503() {
    let site = site(2, "500ms").await;
    let sender = h2(site.gateway.proxy).await;
    let busy: Vec<_> = (0..2).map(|_| tokio::spawn(get(sender.clone(), "/slow/3000"))).collect();
    // Both connections taken.
    crate::support::eventually("two upstream connections open", || async {
        site.upstream.open.load(Ordering::SeqCst) == 2
    })
    .await;
    let started = Instant::now();
    let request = hyper::Request::get("http://gateway/fast").body(Empty::<Bytes>::new()).unwrap();
    let response = sender.clone().send_request(request).await.unwrap();
    let waited = started.elapsed();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["code"], "upstream_busy", "{body}");
    assert!(waited >= Duration::from_millis(450) && waited < Duration::from_millis(2500), "waited {waited:?}");
    for request in busy {
        assert_eq!(request.await.unwrap().0, 200, "the requests holding the connections finish");
    }
    assert_eq!(site.upstream.peak(), 2);
    let metrics = site.gateway.metrics().await;
    let timeouts = format!("tokengate_upstream_queue_timeouts_total{{upstream=\"http://{}\"}} 1", site.upstream.addr);
    assert!(metrics.contains(&timeouts), "{metrics}");
    assert!(metrics.contains("status=\"503\",outcome=\"upstream_error\""), "{metrics}");
    // Free again: served at once.
    assert_eq!(get(sender, "/fast").await.0, 200);
}

/// Writes a keep-alive GET for `path` and reads its whole answer (head and the
/// `Content-Length` bytes of body, whatever the status), leaving the connection open.
async fn keep_alive_get(stream: &mut tokio::net::TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: gateway\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let whole_length = loop {
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
            let length = head.lines().find_map(|line| line.strip_prefix("content-length:"));
            let length: usize = length.expect("a Content-Length").trim().parse().unwrap();
            break end + 4 + length;
        }
        read_some(stream, &mut answer, &mut chunk).await;
    };
    while answer.len() < whole_length {
        read_some(stream, &mut answer, &mut chunk).await;
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// Reads what comes next on `stream` into `answer`; fails on a close or 10 s of silence.
async fn read_some(stream: &mut tokio::net::TcpStream, answer: &mut Vec<u8>, chunk: &mut [u8]) {
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(chunk)).await.unwrap().unwrap();
    assert!(n > 0, "closed: {}", String::from_utf8_lossy(answer));
    answer.extend_from_slice(&chunk[..n]);
}

#[tokio::test]
async fn connections_idle_clients_hold_are_taken_back_for_a_queued_request() {
    let site = site(2, "5s").await;
    // Two keep-alive clients, each now holding an upstream connection between requests.
    let mut first = tokio::net::TcpStream::connect(site.gateway.proxy).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(site.gateway.proxy).await.unwrap();
    assert!(keep_alive_get(&mut first, "/a").await.starts_with("HTTP/1.1 200"));
    assert!(keep_alive_get(&mut second, "/b").await.starts_with("HTTP/1.1 200"));
    assert_eq!(site.upstream.open.load(Ordering::SeqCst), 2);
    // A third client: served on a connection taken back, without waiting out the queue.
    let started = Instant::now();
    let mut third = tokio::net::TcpStream::connect(site.gateway.proxy).await.unwrap();
    assert!(keep_alive_get(&mut third, "/c").await.starts_with("HTTP/1.1 200"));
    assert!(started.elapsed() < Duration::from_secs(2), "waited {:?}", started.elapsed());
    // And the first two are still served (each takes a connection back in turn).
    assert!(keep_alive_get(&mut first, "/d").await.starts_with("HTTP/1.1 200"));
    assert!(keep_alive_get(&mut second, "/e").await.starts_with("HTTP/1.1 200"));
    assert_eq!(site.upstream.peak(), 2, "never more than the cap open at once");
    assert_eq!(site.upstream.opened.load(Ordering::SeqCst), 2, "the same two connections throughout");
}
