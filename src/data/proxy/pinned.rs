//! Upstream connections pinned to client connections (DESIGN.md, "The forwarder"): each client
//! connection keeps the HTTP/1.1 upstream connection its last request used, and sends its next
//! request on it without a pool checkout, an absolute URI or a hand-back task. When the client
//! connection ends, its upstream connection goes to a small idle pool per upstream, so that short
//! client connections still reuse upstream ones ([`super::upstreams`]).
//!
//! What a production client needs beyond that: one retry of a request that was never written
//! because a reused connection had been closed by the upstream meanwhile, and, at an upstream's
//! connection cap, giving a held connection up to a request that queues for one.

use std::sync::{Arc, PoisonError};

use http::uri::{Authority, Scheme};
use http::{Request, Response, Version};
use hyper::body::Incoming;

use super::progress::ProgressBody;
use super::upstreams::{Connection, HeldSlot, Reuse, SendError, UpstreamKey, Upstreams};

/// The upstream connection one client connection holds. Dropped with the client connection,
/// which hands the upstream connection to the idle pool.
pub struct Pinned {
    upstreams: Arc<Upstreams>,
    /// Shared with the upstream's pool (weakly), which may take an idle connection back for a
    /// request queued at the cap.
    held: Arc<HeldSlot>,
}

impl Pinned {
    /// A client connection's holder, empty until its first forwarded request.
    pub fn new(upstreams: Arc<Upstreams>) -> Self {
        Pinned { upstreams, held: Arc::default() }
    }

    /// Sends `request` (origin-form URI, `Host` set) to the upstream at `scheme://authority`
    /// and returns the response head; the body streams behind it.
    pub async fn send(
        &self,
        scheme: &Scheme,
        authority: &Authority,
        request: Request<ProgressBody>,
        client_version: Version,
    ) -> Result<Response<Incoming>, SendError> {
        let key = UpstreamKey { scheme: scheme.clone(), authority: authority.clone() };
        let (mut connection, reused) = match self.reuse(&key, client_version).await {
            Some(connection) => (connection, true),
            None => self.upstreams.checkout(&key, Reuse::Allowed).await?,
        };
        let response = match connection.sender.try_send_request(request).await {
            Ok(response) => response,
            Err(mut failed) => match failed.take_message() {
                // Never written: the reused connection had been closed by the upstream
                // meanwhile. Once, on a new connection.
                Some(request) if reused => {
                    (connection, _) = self.upstreams.checkout(&key, Reuse::No).await?;
                    let sent = connection.sender.try_send_request(request).await;
                    sent.map_err(|error| SendError::Failed(error.into_error().into()))?
                }
                _ => return Err(SendError::Failed(failed.into_error().into())),
            },
        };
        self.hold(connection);
        Ok(response)
    }

    /// Sends an upgrade request (WebSocket) on a new connection of its own, neither held nor
    /// pooled afterwards: once upgraded it belongs to the tunnel, which keeps its place under
    /// the upstream's cap (the response's extensions carry it).
    pub async fn send_alone(
        &self,
        scheme: &Scheme,
        authority: &Authority,
        request: Request<ProgressBody>,
    ) -> Result<Response<Incoming>, SendError> {
        let key = UpstreamKey { scheme: scheme.clone(), authority: authority.clone() };
        let (mut connection, _) = self.upstreams.checkout(&key, Reuse::No).await?;
        let mut response = connection.sender.send_request(request).await.map_err(|e| SendError::Failed(e.into()))?;
        response.extensions_mut().insert(connection.lease());
        Ok(response)
    }

    /// The held connection when it leads to `key`, else an idle one. An HTTP/1 client sends its
    /// next request only after the previous response was written out, so its held connection
    /// is (about to be) ready; an HTTP/2 client's concurrent requests do not wait for each
    /// other's connection.
    async fn reuse(&self, key: &UpstreamKey, client_version: Version) -> Option<Connection> {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner).connection.take();
        match held {
            // Closed by the upstream, or idle too long: another is taken below.
            Some(connection) if connection.expired() => drop(connection),
            Some(mut connection) if connection.leads_to(key) => {
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
            Some(other) => other.pool_when_ready(),
            None => {}
        }
        None
    }

    /// Keeps `connection` for this client connection's next request. One held already (an
    /// HTTP/2 client's concurrent requests) sends this one to the idle pool, and so does a
    /// queue at the upstream's cap: a connection is not kept idle while requests wait for one.
    fn hold(&self, mut connection: Connection) {
        if connection.wanted_elsewhere() {
            connection.pool_when_ready();
            return;
        }
        connection.touch();
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        match &held.connection {
            // A held connection the upstream has closed makes room.
            Some(current) if !current.sender.is_closed() => {
                drop(held);
                connection.pool_when_ready();
            }
            _ => {
                connection.register_holder(&self.held, &mut held.registered);
                held.connection = Some(connection);
            }
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner).connection.take();
        if let Some(connection) = held {
            connection.pool_when_ready();
        }
    }
}
