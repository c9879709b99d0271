//! The response body as the front ends send it: the pipeline's [`ResponseBody`], counted, ending
//! the request's record ([`Finish`]) when the body is done or dropped (client gone). For actix it
//! is the `MessageBody` itself, so a streamed body costs no second box; the hyper front end
//! wraps it in its `http_body::Body` (with the trailers).

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use actix_web::body::{BodySize, MessageBody};
use bytes::Bytes;

use crate::pipeline::{
    ctx::Finish,
    message::{BoxError, ResponseBody},
};

/// A response body that reports its end to the request's [`Finish`].
pub struct MeteredBody {
    inner: ResponseBody,
    finish: Option<Finish>,
}

impl MeteredBody {
    /// Wraps `inner`; `finish`, if the body owns the record, is written when the body ends or
    /// is dropped.
    pub fn new(inner: ResponseBody, mut finish: Option<Finish>) -> Self {
        // An empty body is never polled: it is complete as soon as the head is written.
        if is_empty(&inner)
            && let Some(f) = finish.as_mut()
        {
            f.completed = true;
        }
        Self { inner, finish }
    }

    /// The body being sent.
    pub fn body(&self) -> &ResponseBody {
        &self.inner
    }

    /// Whether there is nothing to send (no body, an empty one, or a HEAD answer).
    pub fn is_empty(&self) -> bool {
        is_empty(&self.inner)
    }

    /// The next chunk, counted in the record; at the end, the record is completed.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BoxError>>> {
        let polled = match &mut self.inner {
            ResponseBody::None | ResponseBody::HeadOf(_) | ResponseBody::Switched(_) => Poll::Ready(None),
            ResponseBody::Full(bytes) if bytes.is_empty() => Poll::Ready(None),
            ResponseBody::Full(bytes) => Poll::Ready(Some(Ok(std::mem::take(bytes)))),
            ResponseBody::Stream { stream, .. } => stream.as_mut().poll_next(cx),
        };
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(f) = self.finish.as_mut() {
                    f.bytes_out += chunk.len() as u64;
                }
            }
            Poll::Ready(None) => {
                // Record now rather than when the body is dropped, so the duration and the log
                // line reflect the end of the response.
                if let Some(mut f) = self.finish.take() {
                    f.completed = true;
                }
            }
            _ => {}
        }
        polled
    }
}

/// Whether a body has nothing to send. (`Switched` is relayed by the driver before a front end
/// sees the response.)
fn is_empty(body: &ResponseBody) -> bool {
    match body {
        ResponseBody::None | ResponseBody::HeadOf(_) | ResponseBody::Switched(_) => true,
        ResponseBody::Full(bytes) => bytes.is_empty(),
        ResponseBody::Stream { length, .. } => *length == Some(0),
    }
}

impl MessageBody for MeteredBody {
    type Error = BoxError;

    fn size(&self) -> BodySize {
        match &self.inner {
            ResponseBody::None | ResponseBody::Switched(_) => BodySize::None,
            // The head carries `Content-Length` and is marked not to be chunked: an empty stream
            // then makes actix's encoder write no body and keep the header, whatever it believes
            // of the request (with pipelining, its idea of "the request was HEAD" belongs to the
            // last request parsed, not to this one).
            ResponseBody::HeadOf(_) => BodySize::Stream,
            ResponseBody::Full(bytes) => BodySize::Sized(bytes.len() as u64),
            ResponseBody::Stream { length: Some(len), .. } => BodySize::Sized(*len),
            ResponseBody::Stream { length: None, .. } => BodySize::Stream,
        }
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        self.get_mut().poll_chunk(cx)
    }
}
