//! Listeners: accepts connections (plain, or TLS with rustls), serves HTTP/1.1 and HTTP/2
//! (by ALPN, or h2c prior knowledge) with hyper, bounds what a client can hold open, and drains
//! connections gracefully on shutdown. The proxy and the admin listener share this loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::{Service, service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::data::connections::ConnectionTable;
use crate::data::proxy::Proxy;
use crate::data::tls::ListenerCertificate;
use crate::data::write_timeout::WriteTimeout;

/// Largest request head (request line and headers) accepted; a larger one gets 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// A client has this long to send the first byte of a connection and then each request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 connections are pinged this often, and closed when a ping goes unanswered this long.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// How long open connections get to finish at shutdown before they are cut.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent HTTP/2 streams per client connection: what an API client needs, and a bound on
/// how many upstream requests one connection can have in flight.
const H2_MAX_STREAMS: u32 = 100;

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
        .max_concurrent_streams(H2_MAX_STREAMS)
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

/// What a listener serves with, besides its service.
#[derive(Clone)]
pub struct ServeOptions {
    /// Its open connections, bounded overall (the listener waits for a free slot) and per
    /// client address (a connection over that share is closed at once).
    pub connections: Arc<ConnectionTable>,
    /// Set: each connection is a TLS handshake first (ALPN offers h2 and http/1.1), with the
    /// certificate current when it was accepted.
    pub tls: Option<Arc<ListenerCertificate>>,
    /// A response write that waits this long for the client to read closes the connection.
    pub send_timeout: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `listener` until `shutdown` is cancelled, with at most `max_connections` open at
/// once; then lets open connections finish their requests for up to [`DRAIN_TIMEOUT`] and cuts
/// those still open. `service_for` makes the service of one connection from its peer address.
/// Both listeners, proxy and admin, are served by this one loop.
pub async fn run_listener<F, S, B>(
    listener: TcpListener,
    service_for: F,
    options: ServeOptions,
    shutdown: CancellationToken,
) where
    F: Fn(SocketAddr) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let builder = connection_builder();
    let graceful = GracefulShutdown::new();
    let table = options.connections;
    let (tls, send_timeout) = (options.tls, options.send_timeout);
    let mut connections = JoinSet::new();
    loop {
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            slot = table.slot() => match slot {
                Some(slot) => slot,
                None => break,
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
        let Some(slot) = table.admit(peer.ip(), slot) else {
            // Closed at once: this address holds its share of the table.
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = service_for(peer);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.as_ref().map(|certificate| TlsAcceptor::from(certificate.current()));
        connections.spawn(async move {
            let _slot = slot;
            if !first_byte_arrives(&stream).await {
                return;
            }
            let stream = WriteTimeout::new(stream, send_timeout);
            let result = match tls {
                None => watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service)).await,
                Some(acceptor) => match tokio::time::timeout(HEAD_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service)).await
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
            };
            if let Err(error) = result {
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

/// Serves proxied traffic (see [`run_listener`]).
pub async fn run_proxy_listener(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    options: ServeOptions,
    shutdown: CancellationToken,
) {
    let service_for = |peer: SocketAddr| {
        let proxy = Arc::clone(&proxy);
        // Dropped with the connection's service, which hands its upstream connection back.
        let pinned = Arc::new(proxy.pin());
        let peer = Arc::new(proxy.peer(peer));
        service_fn(move |request| {
            let (proxy, pinned, peer) = (Arc::clone(&proxy), Arc::clone(&pinned), Arc::clone(&peer));
            async move { Ok::<_, std::convert::Infallible>(proxy.handle(request, &peer, &pinned).await) }
        })
    };
    run_listener(listener, service_for, options, shutdown).await;
}

/// Binds a TCP listener, naming the address in the error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}
