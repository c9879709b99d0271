//! The bodies an attempt carries: the client's request body as it is sent on (none, sized,
//! streamed, or read ahead whole so a retry can replay it), cut at the size limit and ended
//! when the client stalls; what the client's side did (for telling its faults from the
//! backend's); and the backend's response head with its streaming body.

use std::{
    cell::Cell,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
};

use actix_web::{
    HttpRequest,
    dev::Payload,
    error::PayloadError,
    http::{Method, StatusCode, Version, header},
};
use bytes::Bytes;
use futures_util::Stream;

use super::idle::IdleTimer;
use crate::error::GatewayError;

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
/// pipeline: a failed attempt is the client's fault, not the backend's, when the body broke or
/// the gateway was waiting for the client's next bytes.
#[derive(Debug, Default)]
pub struct ClientSide {
    /// The body stream failed (malformed chunked framing, the connection reset or closed).
    broken: Cell<bool>,
    /// The client sent nothing for `server.client_body_timeout`.
    stalled: Cell<bool>,
    /// The body stream was last seen waiting for the client to send more.
    waiting: Cell<bool>,
}

impl ClientSide {
    /// The client-side error behind a failed attempt, if the client caused it: a broken body
    /// (400) or, on a timeout, a stalled upload (408).
    pub fn fault(&self, attempt: &GatewayError) -> Option<GatewayError> {
        if self.stalled.get() {
            return Some(BODY_STALLED);
        }
        if self.broken.get() {
            return Some(BODY_BROKEN);
        }
        (matches!(attempt, GatewayError::UpstreamTimeout) && self.waiting.get()).then_some(BODY_STALLED)
    }
}

/// A request body that could not be read to its end: the client's fault.
const BODY_BROKEN: GatewayError = GatewayError::ClientBody {
    status: StatusCode::BAD_REQUEST,
    reason: "bad_body",
    message: "the request body is malformed or was cut short",
};

/// A request body whose client stopped sending.
const BODY_STALLED: GatewayError = GatewayError::ClientBody {
    status: StatusCode::REQUEST_TIMEOUT,
    reason: "body_timeout",
    message: "the client stopped sending the request body",
};

impl RequestBody {
    /// Decides how to forward the body. A declared length over `limit` is refused before any
    /// byte is read; an undeclared one is cut when it passes the limit.
    pub fn new(
        req: &HttpRequest,
        payload: Payload,
        limit: u64,
        seen: Rc<Cell<u64>>,
        idle: std::time::Duration,
    ) -> Result<Self, GatewayError> {
        let headers = req.headers();
        let stream = || LimitedPayload {
            inner: payload,
            prefix: None,
            seen,
            limit,
            exceeded: false,
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
        let has_body = match req.version() {
            Version::HTTP_2 | Version::HTTP_3 => {
                !matches!(*req.method(), Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS)
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
                Some(Err(PayloadError::Overflow)) => return Err(GatewayError::PayloadTooLarge { limit: stream.limit }),
                Some(Err(_)) if stream.client.stalled.get() => return Err(BODY_STALLED),
                Some(Err(_)) => return Err(BODY_BROKEN),
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
/// [`RequestBody::prefetch`] comes first.
pub struct LimitedPayload {
    inner: Payload,
    prefix: Option<Bytes>,
    seen: Rc<Cell<u64>>,
    limit: u64,
    exceeded: bool,
    client: Rc<ClientSide>,
    /// `server.client_body_timeout`.
    timer: IdleTimer,
}

impl Stream for LimitedPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(prefix) = this.prefix.take() {
            return Poll::Ready(Some(Ok(prefix)));
        }
        if this.exceeded {
            return Poll::Ready(Some(Err(PayloadError::Overflow)));
        }
        let polled = Pin::new(&mut this.inner).poll_next(cx);
        this.client.waiting.set(polled.is_pending());
        if polled.is_pending() {
            if this.timer.expired(cx) {
                this.client.stalled.set(true);
                return Poll::Ready(Some(Err(PayloadError::Io(std::io::ErrorKind::TimedOut.into()))));
            }
            return Poll::Pending;
        }
        this.timer.progress();
        match polled {
            Poll::Ready(Some(Ok(chunk))) => {
                let total = this.seen.get() + chunk.len() as u64;
                this.seen.set(total);
                if total > this.limit {
                    this.exceeded = true;
                    return Poll::Ready(Some(Err(PayloadError::Overflow)));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.client.broken.set(true);
                Poll::Ready(Some(Err(e)))
            }
            other => other,
        }
    }
}

/// The backend's response head and its body, in actix types whichever client fetched it.
pub struct UpstreamResponse<S> {
    /// Status.
    pub status: StatusCode,
    /// Protocol version the backend answered with.
    pub version: Version,
    /// Headers as received.
    pub headers: header::HeaderMap,
    /// The body, streaming.
    pub body: S,
}
