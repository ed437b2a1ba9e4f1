//! Upstream connections pinned to client connections (DESIGN.md, "The forwarder"): each client
//! connection keeps the HTTP/1.1 upstream connection its last request used, and sends its next
//! request on it without a pool checkout, an absolute URI or a hand-back task. When the client
//! connection ends, its upstream connection goes to a small idle pool per upstream, so that short
//! client connections still reuse upstream ones.
//!
//! What a production client needs beyond that: connect timeouts (TCP and TLS), an idle timeout
//! and a bound on idle connections per upstream, and one retry of a request that was never
//! written because a reused connection had been closed by the upstream meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::uri::{Authority, Scheme};
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::progress::ProgressBody;

/// Idle upstream connections kept per upstream, at most.
const MAX_IDLE_PER_UPSTREAM: usize = 256;
/// An idle upstream connection older than this is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Which upstream a connection leads to.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct UpstreamKey {
    scheme: Scheme,
    authority: Authority,
}

struct Connection {
    key: UpstreamKey,
    sender: SendRequest<ProgressBody>,
    /// When it was last held or pooled after a request: one idle for [`IDLE_TIMEOUT`] is not
    /// reused (its upstream may close it at any moment, and a request lost that way is a 502).
    last_used: Instant,
}

impl Connection {
    fn expired(&self) -> bool {
        self.last_used.elapsed() >= IDLE_TIMEOUT || self.sender.is_closed()
    }
}

/// Why no response came from the upstream.
pub type UpstreamError = Box<dyn std::error::Error + Send + Sync>;

/// Opens upstream connections and keeps the idle ones.
pub struct Upstreams {
    connect_timeout: Duration,
    tls: TlsConnector,
    idle: Mutex<HashMap<UpstreamKey, Vec<Connection>>>,
}

impl Upstreams {
    /// Upstream connections that give up connecting after `connect_timeout`, and speak TLS to
    /// `https://` upstreams with `tls` (its ALPN set to HTTP/1.1 only).
    pub fn new(connect_timeout: Duration, mut tls: rustls::ClientConfig) -> Self {
        // The pinned connection speaks HTTP/1.1 only.
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Upstreams { connect_timeout, tls: TlsConnector::from(Arc::new(tls)), idle: Mutex::new(HashMap::new()) }
    }

    /// An idle connection to `key` that can take a request now, if one is kept.
    fn take_idle(&self, key: &UpstreamKey) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = idle.get_mut(key)?;
        while let Some(connection) = kept.pop() {
            if !connection.expired() && connection.sender.is_ready() {
                return Some(connection);
            }
        }
        None
    }

    /// Keeps a connection for later, once it can take another request: one still streaming a
    /// response body (an HTTP/2 client's extra connection) is handed back by a small task when
    /// the body is done, so concurrent clients do not open a new upstream connection per request.
    fn keep_idle(self: &Arc<Self>, mut connection: Connection) {
        if connection.sender.is_closed() {
            return;
        }
        if !connection.sender.is_ready() {
            // No runtime (a drop during shutdown): the connection just closes.
            let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
            let upstreams = Arc::clone(self);
            runtime.spawn(async move {
                if connection.sender.ready().await.is_ok() {
                    upstreams.keep_ready(connection);
                }
            });
            return;
        }
        self.keep_ready(connection);
    }

    fn keep_ready(&self, mut connection: Connection) {
        connection.last_used = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = idle.entry(connection.key.clone()).or_default();
        kept.retain(|c| !c.expired());
        if kept.len() < MAX_IDLE_PER_UPSTREAM {
            kept.push(connection);
        }
    }

    /// A new connection: TCP, TLS for `https`, the HTTP/1.1 handshake, all within the connect
    /// timeout. Its driver runs in a task of its own until either side closes it.
    async fn connect(&self, key: &UpstreamKey) -> Result<Connection, UpstreamError> {
        let host = key.authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = key.authority.port_u16().unwrap_or_else(|| crate::config::default_port(&key.scheme));
        let connecting = async {
            let tcp = self.connect_tcp(&host, port).await?;
            tcp.set_nodelay(true)?;
            if key.scheme == Scheme::HTTPS {
                let name = ServerName::try_from(host.clone())?;
                let tls = self.tls.connect(name, tcp).await?;
                handshake(tls).await
            } else {
                handshake(tcp).await
            }
        };
        let sender = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| format!("connecting to {} timed out", key.authority))??;
        Ok(Connection { key: key.clone(), sender, last_used: Instant::now() })
    }

    /// Each address the host resolves to in turn, each with an equal share of the connect
    /// timeout, so one address that drops packets does not use up the whole of it.
    async fn connect_tcp(&self, host: &str, port: u16) -> Result<TcpStream, UpstreamError> {
        let addresses: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
        let share = self.connect_timeout / u32::try_from(addresses.len().max(1)).unwrap_or(u32::MAX);
        let mut last_error = format!("{host} resolves to no address");
        for address in addresses {
            match tokio::time::timeout(share, TcpStream::connect(address)).await {
                Ok(Ok(tcp)) => return Ok(tcp),
                Ok(Err(error)) => last_error = format!("connecting to {address}: {error}"),
                Err(_) => last_error = format!("connecting to {address} timed out"),
            }
        }
        Err(last_error.into())
    }
}

async fn handshake<I>(io: I) -> Result<SendRequest<ProgressBody>, UpstreamError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::Builder::new().handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        // With upgrades: a `101` hands the connection to the tunnel instead of ending it.
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// The upstream connection one client connection holds. Dropped with the client connection,
/// which hands the upstream connection to the idle pool.
pub struct Pinned {
    upstreams: Arc<Upstreams>,
    held: Mutex<Option<Connection>>,
}

impl Pinned {
    /// A client connection's holder, empty until its first forwarded request.
    pub fn new(upstreams: Arc<Upstreams>) -> Self {
        Pinned { upstreams, held: Mutex::new(None) }
    }

    /// Sends `request` (origin-form URI, `Host` set) to the upstream at `scheme://authority`
    /// and returns the response head; the body streams behind it.
    pub async fn send(
        &self,
        scheme: &Scheme,
        authority: &Authority,
        request: Request<ProgressBody>,
        client_version: Version,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let key = UpstreamKey { scheme: scheme.clone(), authority: authority.clone() };
        let (mut connection, reused) = match self.reuse(&key, client_version).await {
            Some(connection) => (connection, true),
            None => (self.upstreams.connect(&key).await?, false),
        };
        let response = match connection.sender.try_send_request(request).await {
            Ok(response) => response,
            Err(mut failed) => match failed.take_message() {
                // Never written: the reused connection had been closed by the upstream
                // meanwhile. Once, on a new connection.
                Some(request) if reused => {
                    connection = self.upstreams.connect(&key).await?;
                    connection.sender.try_send_request(request).await.map_err(|e| e.into_error())?
                }
                _ => return Err(failed.into_error().into()),
            },
        };
        self.hold(connection);
        Ok(response)
    }

    /// Sends an upgrade request (WebSocket) on a new connection of its own, neither held nor
    /// pooled afterwards: once upgraded it belongs to the tunnel.
    pub async fn send_alone(
        &self,
        scheme: &Scheme,
        authority: &Authority,
        request: Request<ProgressBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let key = UpstreamKey { scheme: scheme.clone(), authority: authority.clone() };
        let mut connection = self.upstreams.connect(&key).await?;
        Ok(connection.sender.send_request(request).await?)
    }

    /// The held connection when it leads to `key`, else an idle one. An HTTP/1 client sends its
    /// next request only after the previous response was written out, so its held connection
    /// is (about to be) ready; an HTTP/2 client's concurrent requests do not wait for each
    /// other's connection.
    async fn reuse(&self, key: &UpstreamKey, client_version: Version) -> Option<Connection> {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner).take();
        match held {
            // Closed by the upstream, or idle too long: a new one is taken below.
            Some(connection) if connection.expired() => drop(connection),
            Some(mut connection) if connection.key == *key => {
                if connection.sender.is_ready() {
                    return Some(connection);
                }
                if client_version < Version::HTTP_2 {
                    if connection.sender.ready().await.is_ok() {
                        return Some(connection);
                    }
                } else {
                    self.hold(connection);
                }
            }
            Some(other) => self.upstreams.keep_idle(other),
            None => {}
        }
        self.upstreams.take_idle(key)
    }

    /// Keeps `connection` for this client connection's next request; one held already (an
    /// HTTP/2 client's concurrent requests) sends this one to the idle pool.
    fn hold(&self, mut connection: Connection) {
        connection.last_used = Instant::now();
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        match held.as_ref() {
            // A held connection the upstream has closed makes room.
            Some(current) if !current.sender.is_closed() => {
                drop(held);
                self.upstreams.keep_idle(connection);
            }
            _ => *held = Some(connection),
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let held = self.held.get_mut().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(connection) = held {
            self.upstreams.keep_idle(connection);
        }
    }
}
