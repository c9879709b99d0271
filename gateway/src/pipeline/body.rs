//! The client's request body on its way upstream: as the front end delivers it
//! ([`BodySource`]), as it is sent on ([`RequestBody`]: none, sized, streamed, or read ahead
//! whole so a retry can replay it), cut at the size limit and ended when the client stalls,
//! with what the client's side did ([`ClientSide`]) so that a failed attempt it caused is
//! answered as the client's fault with its own typed cause, never held against a backend.

use std::{
    cell::Cell,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::{Stream, stream::LocalBoxStream};

use super::message::RequestHead;
use crate::{
    error::GatewayError,
    http_types::{Method, Version, header},
    proxy::idle::IdleTimer,
};

/// The request body as a front end delivers it: chunks, or the front end's read error.
pub type BodySource = LocalBoxStream<'static, Result<Bytes, BodyError>>;

/// Why a request body stream ended early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The front end could not read it (malformed chunked framing, the connection reset or
    /// closed early).
    #[error("the request body could not be read: {0}")]
    Read(String),
    /// It passed `server.max_body_size`.
    #[error("the request body exceeds the limit of {0} bytes")]
    TooLarge(u64),
    /// The client sent nothing for `server.client_body_timeout`.
    #[error("the client stopped sending the request body")]
    Stalled,
}

/// How the request body is sent on.
pub enum RequestBody {
    /// No body (no `Content-Length` nor `Transfer-Encoding`).
    Empty,
    /// A body of known length, streamed.
    Sized(u64, LimitedPayload),
    /// A body of unknown length, streamed (chunked upstream).
    Streamed(LimitedPayload),
    /// A small body read whole, so that a retry can send it again.
    Buffered(Bytes),
}

/// What the client's side of a request body did, shared between the body stream and the
/// pipeline: a failed attempt is the client's fault, not the backend's, when the body broke,
/// passed the size limit, or the gateway was waiting for the client's next bytes.
#[derive(Debug, Default)]
pub struct ClientSide {
    /// How the body stream ended early, if it did.
    fault: Cell<Option<Fault>>,
    /// The body stream was last seen waiting for the client to send more.
    waiting: Cell<bool>,
}

/// How a body stream ended early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Broken,
    TooLarge(u64),
    Stalled,
}

impl Fault {
    fn error(self) -> GatewayError {
        match self {
            Self::Broken => GatewayError::BodyBroken,
            Self::TooLarge(limit) => GatewayError::PayloadTooLarge { limit },
            Self::Stalled => GatewayError::BodyStalled,
        }
    }
}

impl ClientSide {
    /// The client-side error behind a failed attempt, if the client caused it: a broken body
    /// (400), a body over the limit (413) or, on a timeout, a stalled upload (408).
    pub fn fault(&self, attempt: &GatewayError) -> Option<GatewayError> {
        if let Some(fault) = self.fault.get() {
            return Some(fault.error());
        }
        (matches!(attempt, GatewayError::UpstreamTimeout) && self.waiting.get()).then_some(GatewayError::BodyStalled)
    }
}

impl RequestBody {
    /// Decides how to forward the body. A declared length over `limit` is refused before any
    /// byte is read; an undeclared one is cut when it passes the limit.
    pub fn new(
        head: &RequestHead,
        source: BodySource,
        limit: u64,
        seen: Rc<Cell<u64>>,
        idle: std::time::Duration,
    ) -> Result<Self, GatewayError> {
        let headers = &head.headers;
        let stream = || LimitedPayload {
            inner: source,
            prefix: None,
            seen,
            limit,
            client: Rc::default(),
            timer: IdleTimer::new(idle),
        };
        if let Some(len) = headers.get(header::CONTENT_LENGTH) {
            let len: u64 = len
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or(GatewayError::BadRequest("invalid Content-Length"))?;
            if len > limit {
                return Err(GatewayError::PayloadTooLarge { limit });
            }
            return Ok(Self::Sized(len, stream()));
        }
        let has_body = match head.version {
            Version::HTTP_2 | Version::HTTP_3 => {
                !matches!(head.method, Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS)
            }
            _ => headers.contains_key(header::TRANSFER_ENCODING),
        };
        Ok(if has_body { Self::Streamed(stream()) } else { Self::Empty })
    }

    /// Reads the start of the body before a backend is chosen, as NGINX buffers request bodies:
    /// a body of up to `cap` bytes (declared or chunked) is read whole and sent with its length
    /// (and can be replayed); of a longer chunked body the first `cap` bytes are read and the
    /// rest streams. So a malformed, cut or stalled body within the first `cap` bytes is
    /// answered 400/408/413 with nothing sent to a backend.
    pub async fn prefetch(self, cap: u64) -> Result<Self, GatewayError> {
        use futures_util::StreamExt;
        let (declared, mut stream) = match self {
            Self::Sized(len, stream) if len <= cap => (Some(len), stream),
            Self::Streamed(stream) => (None, stream),
            other => return Ok(other),
        };
        let mut buf = bytes::BytesMut::with_capacity(declared.unwrap_or(0) as usize);
        loop {
            match stream.next().await {
                None => return Ok(Self::Buffered(buf.freeze())),
                Some(Err(_)) => {
                    let fault = stream.client.fault.get().unwrap_or(Fault::Broken);
                    return Err(fault.error());
                }
                Some(Ok(chunk)) => {
                    buf.extend_from_slice(&chunk);
                    if declared.is_none() && buf.len() as u64 > cap {
                        stream.prefix = Some(buf.freeze());
                        return Ok(Self::Streamed(stream));
                    }
                }
            }
        }
    }

    /// What the client's side of a streamed body does, for telling a failed attempt that was the
    /// client's fault (none for a body already read whole, or no body).
    pub fn client_side(&self) -> Option<Rc<ClientSide>> {
        match self {
            Self::Sized(_, stream) | Self::Streamed(stream) => Some(stream.client.clone()),
            Self::Empty | Self::Buffered(_) => None,
        }
    }

    /// Whether the body can be sent again (none, or buffered).
    pub fn is_replayable(&self) -> bool {
        matches!(self, Self::Empty | Self::Buffered(_))
    }

    /// A copy for one more attempt, if the body is replayable.
    pub fn replay(&self) -> Option<Self> {
        match self {
            Self::Empty => Some(Self::Empty),
            Self::Buffered(b) => Some(Self::Buffered(b.clone())),
            _ => None,
        }
    }
}

/// The client's request body, counted and cut at the size limit, and ended with an error when
/// the client sends nothing for `server.client_body_timeout`; what was read ahead by
/// [`RequestBody::prefetch`] comes first. Once it failed, it keeps failing the same way.
pub struct LimitedPayload {
    inner: BodySource,
    prefix: Option<Bytes>,
    seen: Rc<Cell<u64>>,
    limit: u64,
    client: Rc<ClientSide>,
    /// `server.client_body_timeout`.
    timer: IdleTimer,
}

impl LimitedPayload {
    fn fail(&self, fault: Fault) -> Poll<Option<Result<Bytes, BodyError>>> {
        self.client.fault.set(Some(fault));
        Poll::Ready(Some(Err(match fault {
            Fault::Broken => BodyError::Read("the stream failed earlier".into()),
            Fault::TooLarge(limit) => BodyError::TooLarge(limit),
            Fault::Stalled => BodyError::Stalled,
        })))
    }
}

impl Stream for LimitedPayload {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(prefix) = this.prefix.take() {
            return Poll::Ready(Some(Ok(prefix)));
        }
        if let Some(fault) = this.client.fault.get() {
            return this.fail(fault);
        }
        let polled = this.inner.as_mut().poll_next(cx);
        this.client.waiting.set(polled.is_pending());
        if polled.is_pending() {
            if this.timer.expired(cx) {
                return this.fail(Fault::Stalled);
            }
            return Poll::Pending;
        }
        this.timer.progress();
        match polled {
            Poll::Ready(Some(Ok(chunk))) => {
                let total = this.seen.get() + chunk.len() as u64;
                this.seen.set(total);
                if total > this.limit {
                    return this.fail(Fault::TooLarge(this.limit));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.client.fault.set(Some(match e {
                    BodyError::TooLarge(limit) => Fault::TooLarge(limit),
                    BodyError::Stalled => Fault::Stalled,
                    BodyError::Read(_) => Fault::Broken,
                }));
                Poll::Ready(Some(Err(e)))
            }
            other => other,
        }
    }
}
