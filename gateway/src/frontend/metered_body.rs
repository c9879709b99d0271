//! The response body as actix sends it: the pipeline's [`ResponseBody`], counted, ending the
//! request's record ([`Finish`]) when the body is done or dropped (client gone). It is actix's
//! `MessageBody` itself, so a streamed body costs no second box.

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
    /// Wraps `inner`; `finish` is written when the body ends or is dropped.
    pub fn new(inner: ResponseBody, mut finish: Finish) -> Self {
        let body = Self { inner, finish: None };
        // actix never polls an empty body: it is complete as soon as the head is written.
        if matches!(body.size(), BodySize::None | BodySize::Sized(0)) {
            finish.completed = true;
        }
        Self { finish: Some(finish), ..body }
    }
}

impl MessageBody for MeteredBody {
    type Error = BoxError;

    fn size(&self) -> BodySize {
        match &self.inner {
            // (Relayed by the driver before a front end sees it.)
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
        let this = self.get_mut();
        let polled = match &mut this.inner {
            ResponseBody::None | ResponseBody::HeadOf(_) | ResponseBody::Switched(_) => Poll::Ready(None),
            ResponseBody::Full(bytes) if bytes.is_empty() => Poll::Ready(None),
            ResponseBody::Full(bytes) => Poll::Ready(Some(Ok(std::mem::take(bytes)))),
            ResponseBody::Stream { stream, .. } => stream.as_mut().poll_next(cx),
        };
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
