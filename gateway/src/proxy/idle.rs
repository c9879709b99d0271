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

use actix_web::rt::time::{Instant, Sleep, sleep};
use bytes::Bytes;
use futures_util::Stream;

/// The error a stalled body ends with.
#[derive(Debug, thiserror::Error)]
#[error("the backend sent no response bytes for {0:?} (read_timeout)")]
pub struct BodyStalled(pub Duration);

/// A body stream cut after `idle` without bytes. The timer is only made when the backend first
/// makes the gateway wait, so bodies that arrive with their head cost nothing.
pub struct IdleTimeout<S> {
    inner: S,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<S> IdleTimeout<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, idle: Duration) -> Self {
        Self { inner, idle, timer: None }
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
                if let Some(timer) = &mut this.timer {
                    timer.as_mut().reset(Instant::now() + this.idle);
                }
                Poll::Ready(item.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this.timer.get_or_insert_with(|| Box::pin(sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyStalled(idle))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}
