//! Echo upstream: a tiny HTTP/1.1 + h2c server that reports back what it received.
//!
//! Used by the `echo_upstream` example (the quick start's stand-in backend) and by
//! integration tests (`#[path = "../examples/support/echo.rs"] mod echo;`) as the
//! upstream behind the gateway. Routes:
//!
//! - any method, any path: streams the request body (never buffered whole) and answers
//!   200 JSON `{method, path, query, headers, body_sha256, body_bytes}`;
//! - `GET /slow?ms=N`: waits N ms before answering with the echo JSON;
//! - `/status/N`: answers status N with the echo JSON;
//! - `GET /stream?bytes=N`: streams N bytes (byte i = i % 251) in 64 KiB chunks.
//!
//! Every response carries `x-echo: 1`, and `x-echo-connection: N`, the number of the connection
//! it came on (counted from 1 in this process), so tests can see connections being reused.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

type EchoBody = BoxBody<Bytes, Infallible>;

const CHUNK: u64 = 64 * 1024;
/// Connections served so far by this process.
static CONNECTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Accepts connections on `listener` until `shutdown` completes; each connection is
/// served (HTTP/1.1 or HTTP/2 prior knowledge) in its own task.
pub(crate) async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    eprintln!("echo: accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        tokio::spawn(serve_connection(stream));
    }
}

/// Serves one connection — a TCP stream, or a TLS stream over one — until it closes.
pub(crate) async fn serve_connection<I>(io: I)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let connection = HeaderValue::from(CONNECTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
    let service = service_fn(move |req| {
        let connection = connection.clone();
        async move {
            let mut response = handle(req).await?;
            response.headers_mut().insert("x-echo-connection", connection);
            Ok::<_, hyper::Error>(response)
        }
    });
    let builder = Builder::new(TokioExecutor::new());
    if let Err(err) = builder.serve_connection(TokioIo::new(io), service).await {
        eprintln!("echo: connection error: {err}");
    }
}

async fn handle(req: Request<Incoming>) -> Result<Response<EchoBody>, hyper::Error> {
    let path = req.uri().path().to_owned();
    let mut status = StatusCode::OK;

    if req.method() == Method::GET && path == "/stream" {
        let Some(total) = query_u64(req.uri(), "bytes") else {
            return Ok(bad_request("expected /stream?bytes=N"));
        };
        let body = PatternBody { sent: 0, total };
        return Ok(respond(StatusCode::OK, "application/octet-stream", body.boxed()));
    }
    if req.method() == Method::GET && path == "/slow" {
        let Some(ms) = query_u64(req.uri(), "ms") else {
            return Ok(bad_request("expected /slow?ms=N"));
        };
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(code) = path.strip_prefix("/status/") {
        match code.parse::<u16>().ok().filter(|c| (200..=599).contains(c)) {
            Some(code) => status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
            None => return Ok(bad_request("expected /status/N with 200 <= N <= 599")),
        }
    }

    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in req.headers() {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let method = req.method().to_string();
    let query = req.uri().query().map(str::to_owned);

    // Hash the body frame by frame so large uploads are never held in memory.
    let mut body = req.into_body();
    let mut hasher = Sha256::new();
    let mut body_bytes: u64 = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            hasher.update(&data);
            body_bytes += data.len() as u64;
        }
    }
    let body_sha256: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();

    let json = serde_json::json!({
        "method": method,
        "path": path,
        "query": query,
        "headers": headers,
        "body_sha256": body_sha256,
        "body_bytes": body_bytes,
    });
    let body = Full::new(Bytes::from(json.to_string())).boxed();
    Ok(respond(status, "application/json", body))
}

fn respond(status: StatusCode, content_type: &'static str, body: EchoBody) -> Response<EchoBody> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert("x-echo", HeaderValue::from_static("1"));
    resp
}

fn bad_request(msg: &'static str) -> Response<EchoBody> {
    let body = Full::new(Bytes::from_static(msg.as_bytes())).boxed();
    respond(StatusCode::BAD_REQUEST, "text/plain", body)
}

/// Value of `key` in the query string, parsed as an unsigned integer.
fn query_u64(uri: &Uri, key: &str) -> Option<u64> {
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

/// Response body of `total` bytes (byte i = i % 251), generated one chunk at a time.
struct PatternBody {
    sent: u64,
    total: u64,
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent >= self.total {
            return Poll::Ready(None);
        }
        let end = self.total.min(self.sent + CHUNK);
        let chunk: Vec<u8> = (self.sent..end).map(|i| (i % 251) as u8).collect();
        self.sent = end;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.total
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.total - self.sent)
    }
}
