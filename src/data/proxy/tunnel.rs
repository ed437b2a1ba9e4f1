//! Protocol upgrades (WebSocket and the like, HTTP/1.1 `Upgrade`): authenticated, authorised
//! and limited like any request, then sent upstream on a connection of their own (an upgraded
//! connection never returns to the pool); when the upstream answers `101 Switching Protocols`,
//! both sides' bytes are copied across until either closes or nothing moves for
//! `proxy.tunnel_idle_timeout`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CONNECTION, HeaderValue, UPGRADE};
use http::{HeaderMap, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::upstreams::UpstreamLease;

/// The protocol a request asks to switch to: an HTTP/1.1 request with `Connection: upgrade`
/// and an `Upgrade` header, except `h2c` (HTTP/2 is spoken on this listener already, or not at
/// all). `None`: an ordinary request.
pub fn requested(request: &Request<Incoming>) -> Option<HeaderValue> {
    if request.version() != Version::HTTP_11 {
        return None;
    }
    let upgrade = request.headers().get(UPGRADE)?;
    // Read as bytes, as `forward::strip_headers` reads `Connection`: one non-ASCII byte in the
    // value must not hide the `upgrade` beside it (found by the header-rewrite property).
    let connection_says_upgrade = request
        .headers()
        .get_all(CONNECTION)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
    let h2c = upgrade.as_bytes().trim_ascii().eq_ignore_ascii_case(b"h2c");
    (connection_says_upgrade && !h2c).then(|| upgrade.clone())
}

/// Puts the upgrade back on a request whose hop-by-hop headers were stripped for the upstream.
pub fn restore_request_headers(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, protocol);
}

/// Takes the client side of the coming upgrade out of its request (before the request goes
/// upstream).
pub fn client_side(request: &mut Request<Incoming>) -> OnUpgrade {
    hyper::upgrade::on(request)
}

/// With a `101` from the upstream: starts the tunnel between `client` and the upstream's side
/// in a task of its own, and gives the response for the client its upgrade headers back.
/// Anything else goes to the client as it is (the upstream refused to switch).
pub fn splice(
    mut response: Response<Incoming>,
    client: OnUpgrade,
    protocol: HeaderValue,
    idle: Duration,
) -> Response<Incoming> {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return response;
    }
    let upstream = hyper::upgrade::on(&mut response);
    // The upgraded connection counts against `proxy.max_upstream_connections` until the
    // tunnel ends.
    let lease = response.extensions_mut().remove::<UpstreamLease>();
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    if !headers.contains_key(UPGRADE) {
        headers.insert(UPGRADE, protocol);
    }
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(sides) => sides,
            Err(error) => {
                tracing::debug!(%error, "upgrade not completed");
                return;
            }
        };
        run(client, upstream, idle).await;
        drop(lease);
    });
    response
}

/// Copies both ways until either side closes or the tunnel is idle for `idle`.
async fn run(client: Upgraded, upstream: Upgraded, idle: Duration) {
    let activity = Arc::new(Activity { start: Instant::now(), last_ms: AtomicU64::new(0) });
    let mut client = Watched { inner: TokioIo::new(client), activity: Arc::clone(&activity) };
    let mut upstream = Watched { inner: TokioIo::new(upstream), activity: Arc::clone(&activity) };
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            if let Err(error) = copied {
                tracing::debug!(%error, "tunnel ended with an error");
            }
        }
        () = activity.idle_for(idle) => tracing::debug!(idle_ms = idle.as_millis() as u64, "tunnel closed: idle"),
    }
}

/// When bytes last moved through a tunnel, either way.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last_ms.fetch_max(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    async fn idle_for(&self, timeout: Duration) {
        loop {
            let now = self.start.elapsed().as_millis() as u64;
            let idle = Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)));
            if idle >= timeout {
                return;
            }
            tokio::time::sleep(timeout - idle).await;
        }
    }
}

/// One side of a tunnel, noting every read that brought bytes.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
