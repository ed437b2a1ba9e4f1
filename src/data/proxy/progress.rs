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
    /// The client's body broke (malformed chunks, a connection closed mid-upload, or stalled
    /// past `proxy.client_body_timeout`): why the upstream request failed, if it did, is the
    /// client's doing.
    client_failed: AtomicBool,
    /// Of those: the body stalled.
    client_stalled: AtomicBool,
}

impl Progress {
    /// Whether reading the client's body failed.
    pub fn client_failed(&self) -> bool {
        self.client_failed.load(Ordering::Relaxed)
    }

    /// Whether the client's body stalled past `proxy.client_body_timeout`.
    pub fn client_stalled(&self) -> bool {
        self.client_stalled.load(Ordering::Relaxed)
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

/// The client's request body, passed through frame by frame, noting each frame's passage. A
/// body whose next piece does not come within `proxy.client_body_timeout` fails: a client
/// trickling a byte now and then must not hold its connection and an upstream connection.
#[derive(Debug)]
pub struct ProgressBody {
    inner: Incoming,
    progress: Arc<Progress>,
    idle_timeout: Duration,
    /// Armed when the body first has to wait, reset by every frame.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Why a body failed: hyper's reading of it, or its stall.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

impl ProgressBody {
    /// Wraps a request body whose pieces may be `idle_timeout` apart at most; the
    /// [`Progress`] it returns is what the upstream timeout watches.
    pub fn new(inner: Incoming, idle_timeout: Duration) -> (ProgressBody, Arc<Progress>) {
        let progress = Arc::new(Progress {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            client_failed: AtomicBool::new(false),
            client_stalled: AtomicBool::new(false),
        });
        (ProgressBody { inner, progress: Arc::clone(&progress), idle_timeout, deadline: None }, progress)
    }
}

impl Body for ProgressBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_ready() {
            self.progress.touch();
            self.deadline = None;
            if let Poll::Ready(Some(Err(_))) = &polled {
                self.progress.client_failed.store(true, Ordering::Relaxed);
            }
            return polled.map(|frame| frame.map(|result| result.map_err(BodyError::from)));
        }
        let idle_timeout = self.idle_timeout;
        let deadline = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle_timeout)));
        if deadline.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.progress.client_stalled.store(true, Ordering::Relaxed);
        self.progress.client_failed.store(true, Ordering::Relaxed);
        Poll::Ready(Some(Err("the request body stalled past proxy.client_body_timeout".into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
