//! Listeners: accepts connections, serves HTTP/1.1 and HTTP/2 (h2c prior knowledge) with
//! hyper, bounds what a client can hold open, and drains connections gracefully on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::proxy::Proxy;

/// Largest request head (request line and headers) accepted; a larger one gets 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// A client has this long to send the first byte of a connection and then each request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 connections are pinged this often, and closed when a ping goes unanswered this long.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// How long open connections get to finish at shutdown before they are cut.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    builder
}

/// Waits for a connection's first byte, at most [`HEAD_TIMEOUT`]: hyper's protocol detection
/// would otherwise wait for ever on a connection that sends nothing.
async fn first_byte_arrives(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(tokio::time::timeout(HEAD_TIMEOUT, stream.peek(&mut probe)).await, Ok(Ok(n)) if n > 0)
}

/// Serves proxied traffic on `listener` until `shutdown` is cancelled, with at most
/// `max_connections` open at once; then lets open connections finish their requests for up
/// to [`DRAIN_TIMEOUT`] and cuts those still open.
pub async fn serve_proxy(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    max_connections: usize,
    shutdown: CancellationToken,
) {
    let builder = connection_builder();
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut connections = JoinSet::new();
    loop {
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let proxy = Arc::clone(&proxy);
        let service = service_fn(move |request| {
            let proxy = Arc::clone(&proxy);
            async move { Ok::<_, std::convert::Infallible>(proxy.handle(request, peer).await) }
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        connections.spawn(async move {
            let _slot = slot;
            if !first_byte_arrives(&stream).await {
                return;
            }
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!(open = connections.len(), "connections still open after the drain timeout; cutting them");
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

/// Binds a TCP listener, naming the address in the error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}
