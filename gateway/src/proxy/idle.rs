//! A response body that gives up when the backend stops sending: [`IdleTimeout`] ends the
//! stream with an error when no bytes arrive for `upstreams.*.read_timeout` (NGINX's
//! `proxy_read_timeout`). actix then closes the client's connection (the head is already sent,
//! so the cut body is the signal) and dropping the backend's body closes that connection.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures_util::Stream;
use tokio::time::{Instant, Sleep, sleep};

/// The error a stalled body ends with.
#[derive(Debug, thiserror::Error)]
#[error("the backend sent no response bytes for {0:?} (read_timeout)")]
pub struct BodyStalled(pub Duration);

/// The idle deadline of a stream: restarted whenever the stream yields, checked whenever it
/// makes its reader wait. The timer is only made at the first wait, so a stream whose bytes
/// are always ready costs nothing.
pub struct IdleTimer {
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl IdleTimer {
    /// A deadline of `idle` without progress.
    pub fn new(idle: Duration) -> Self {
        Self { idle, timer: None }
    }

    /// The stream yielded something: the deadline starts again.
    pub fn progress(&mut self) {
        if let Some(timer) = &mut self.timer {
            timer.as_mut().reset(Instant::now() + self.idle);
        }
    }

    /// The stream is waiting: whether the deadline has passed (if not, `cx` is woken at it).
    pub fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let idle = self.idle;
        self.timer.get_or_insert_with(|| Box::pin(sleep(idle))).as_mut().poll(cx).is_ready()
    }
}

/// A body stream cut after `idle` without bytes.
pub struct IdleTimeout<S> {
    inner: S,
    timer: IdleTimer,
}

impl<S> IdleTimeout<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, idle: Duration) -> Self {
        Self { inner, timer: IdleTimer::new(idle) }
    }
}

impl<S, E> Stream for IdleTimeout<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<Box<dyn std::error::Error>>,
{
    type Item = Result<Bytes, Box<dyn std::error::Error>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(item) => {
                this.timer.progress();
                Poll::Ready(item.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending if this.timer.expired(cx) => Poll::Ready(Some(Err(Box::new(BodyStalled(this.timer.idle))))),
            Poll::Pending => Poll::Pending,
        }
    }
}
