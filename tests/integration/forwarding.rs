//! The forwarder's upstream connections (`proxy/pinned.rs`): a client connection keeps one
//! upstream connection, a closed client connection's upstream connection is reused by the next,
//! an HTTP/2 client's concurrent requests do not queue behind one upstream connection, and an
//! upstream that closes its connections after every response still answers every request (the
//! held connection is seen closed and replaced; the retry of a request that lost the race with
//! such a close has no deterministic test).

use std::time::Duration;

use reqwest::StatusCode;
use tokengate::clock::Clock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::TestGateway;

const ANN: &str = "ann@example.com";

async fn gateway_with_token(extra: &str) -> (TestGateway, String) {
    // A test's gateway, upstream and client share one thread: big bodies make heads slow.
    let gw = TestGateway::spawn_with(extra, &[("TOKENGATE_PROXY__UPSTREAM_TIMEOUT", "10s")], Clock::System).await;
    gw.account(ANN).await;
    let (_, secret) = gw.token(ANN, "laptop", &[]).await;
    (gw, secret)
}

/// The echo upstream's number for the connection a response came on.
async fn upstream_connection(client: &reqwest::Client, gw: &TestGateway, secret: &str, path: &str) -> String {
    let started = std::time::Instant::now();
    let response = client.get(gw.url(path)).basic_auth(ANN, Some(secret)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path} after {:?}", started.elapsed());
    let connection = response.headers()["x-echo-connection"].to_str().unwrap().to_owned();
    response.bytes().await.unwrap();
    connection
}

#[tokio::test]
async fn a_client_connection_keeps_its_upstream_connection_and_hands_it_on() {
    let (gw, secret) = gateway_with_token("").await;
    let first_client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(upstream_connection(&first_client, &gw, &secret, "/things").await);
    }
    assert!(seen.iter().all(|c| *c == seen[0]), "one upstream connection per client connection: {seen:?}");
    // The client connection closes; its upstream connection waits in the idle pool for the next.
    drop(first_client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second_client = reqwest::Client::builder().no_proxy().build().unwrap();
    assert_eq!(upstream_connection(&second_client, &gw, &secret, "/things").await, seen[0]);
}

#[tokio::test]
async fn an_http2_clients_concurrent_requests_do_not_wait_for_one_upstream_connection() {
    let (gw, secret) = gateway_with_token("").await;
    let h2 = reqwest::Client::builder().no_proxy().http2_prior_knowledge().build().unwrap();
    // Bodies large enough to be still streaming when each response head is forwarded.
    let requests = (0..8).map(|_| upstream_connection(&h2, &gw, &secret, "/stream?bytes=2000000"));
    let connections = futures_util::future::join_all(requests).await;
    let mut distinct = connections.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() > 1, "concurrent requests shared one upstream connection: {connections:?}");
    // Those connections went to the idle pool when their responses ended: a second round
    // reuses them instead of opening new ones.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let requests = (0..4).map(|_| upstream_connection(&h2, &gw, &secret, "/slow?ms=100"));
    for connection in futures_util::future::join_all(requests).await {
        assert!(distinct.contains(&connection), "{connection} is new; the first round used {distinct:?}");
    }
}

#[tokio::test]
async fn an_upstream_that_closes_after_every_response_still_answers_every_request() {
    // Answers one request per connection, then closes it without saying so
    // (no `Connection: close`), as an upstream with a short keep-alive timeout does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                let _ = stream.shutdown().await;
            });
        }
    });
    let route = format!("\n[[routes]]\nprefix = \"/closing\"\nupstream = \"http://{addr}\"\n");
    let (gw, secret) = gateway_with_token(&route).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for i in 0..20 {
        let response = client.get(gw.url("/closing/x")).basic_auth(ANN, Some(&secret)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "request {i}");
        assert_eq!(response.text().await.unwrap(), "ok");
    }
}
