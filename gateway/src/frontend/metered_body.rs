//! The response body wrapper that counts bytes sent and ends the request's record
//! ([`Finish`]) when the body is done or dropped (client gone).

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use bytes::Bytes;

use crate::pipeline::ctx::Finish;

/// A response body that reports its end to the request's [`Finish`].
pub struct MeteredBody {
    inner: BoxBody,
    finish: Option<Finish>,
}

impl MeteredBody {
    /// Wraps `inner`; `finish` is written when the body ends or is dropped.
    pub fn new(inner: BoxBody, mut finish: Finish) -> Self {
        // actix never polls an empty body: it is complete as soon as the head is written.
        if matches!(inner.size(), BodySize::None | BodySize::Sized(0)) {
            finish.completed = true;
        }
        Self { inner, finish: Some(finish) }
    }
}

impl MessageBody for MeteredBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(f) = this.finish.as_mut() {
                    f.bytes_out += chunk.len() as u64;
                }
            }
            Poll::Ready(None) => {
                // Record now rather than when actix drops the body, so the duration and the
                // log line reflect the end of the response.
                if let Some(mut f) = this.finish.take() {
                    f.completed = true;
                }
            }
            _ => {}
        }
        polled
    }
}
