//! The request body on its way upstream, watched: the upstream timeout counts from the moment
//! the upload last made progress, so a large or slow upload is not cut off while it is still
//! being sent, and an upload that stalls still times out.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::Instant;

/// When the upload last moved, in milliseconds since `start`, and whether it failed.
#[derive(Debug)]
pub struct Progress {
    start: Instant,
    last_ms: AtomicU64,
    /// The client's body broke (malformed chunks, a connection closed mid-upload): why the
    /// upstream request failed, if it did, is the client's doing.
    client_failed: AtomicBool,
}

impl Progress {
    /// Whether reading the client's body failed.
    pub fn client_failed(&self) -> bool {
        self.client_failed.load(Ordering::Relaxed)
    }

    fn touch(&self) {
        let elapsed = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(elapsed, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }

    /// Resolves once nothing has moved for `timeout`: the body has been sent (or has stalled)
    /// and no response head came.
    pub async fn idle_for(&self, timeout: Duration) {
        loop {
            let idle = self.idle();
            if idle >= timeout {
                return;
            }
            tokio::time::sleep(timeout - idle).await;
        }
    }
}

/// The client's request body, passed through frame by frame, noting each frame's passage.
#[derive(Debug)]
pub struct ProgressBody {
    inner: Incoming,
    progress: Arc<Progress>,
}

impl ProgressBody {
    /// Wraps a request body; the [`Progress`] it returns is what the upstream timeout watches.
    pub fn new(inner: Incoming) -> (ProgressBody, Arc<Progress>) {
        let progress = Arc::new(Progress {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            client_failed: AtomicBool::new(false),
        });
        (ProgressBody { inner, progress: Arc::clone(&progress) }, progress)
    }
}

impl Body for ProgressBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_ready() {
            self.progress.touch();
        }
        if let Poll::Ready(Some(Err(_))) = &polled {
            self.progress.client_failed.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
