//! Listeners: accepts connections, serves HTTP/1.1 and HTTP/2 (h2c prior knowledge) with
//! hyper, and drains them gracefully on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::proxy::Proxy;

/// Largest request head (request line and headers) accepted; a larger one gets 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// A client has this long to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long open connections get to finish at shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new()).max_header_list_size(MAX_HEAD_BYTES as u32).max_concurrent_streams(256);
    builder
}

/// Serves proxied traffic on `listener` until `shutdown` is cancelled, then lets open
/// connections finish their requests for up to [`DRAIN_TIMEOUT`].
pub async fn serve_proxy(listener: TcpListener, proxy: Arc<Proxy>, shutdown: CancellationToken) {
    let builder = connection_builder();
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
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
        let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after the drain timeout; closing them");
    }
}

/// Binds a TCP listener, naming the address in the error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}
