//! The messages the pipeline works on, whatever front end received the request: the client's
//! request head, the request as it will go upstream, and the response with its body. A front
//! end (`crate::frontend`) turns its own types into these and back; nothing here names one.

use bytes::Bytes;
use futures_util::stream::LocalBoxStream;

use crate::http_types::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version, header};

/// The client's request head, as received.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The request target (origin form, or absolute form for a proxy-style request).
    pub uri: Uri,
    /// The protocol version of the client's connection.
    pub version: Version,
    /// The headers, repeats and order kept.
    pub headers: HeaderMap,
}

/// The request as it will be sent upstream, built once after routing and edited by the route's
/// filters (the JWT policy's claim headers and token-less query, the plugins' edits). Each
/// attempt copies it and adds the gateway's own headers (`Host`, `X-Forwarded-*`, `Via`,
/// `X-Request-Id`, `traceparent`).
#[derive(Debug, Default)]
pub struct UpstreamRequest {
    /// The path after `strip_prefix` (the backend's base path is prepended per attempt).
    pub path: String,
    /// The query, without `?`.
    pub query: Option<String>,
    /// The client's end-to-end headers, cleaned of what the gateway owns.
    pub headers: HeaderMap,
    /// The request goes upstream as a WebSocket handshake (`Connection: upgrade`,
    /// `Upgrade: websocket`) on a connection of its own: the route relays WebSocket sessions.
    pub websocket: bool,
}

/// An error while reading a body, in a form every front end and client can carry.
pub type BoxError = Box<dyn std::error::Error>;

/// The trailers of a streamed body, filled in by the stream when they arrive (after its last
/// chunk): a front end that can send trailers (hyper's) reads them when the stream has ended.
pub type Trailers = std::rc::Rc<std::cell::RefCell<Option<HeaderMap>>>;

/// A connection that switched protocols: bytes both ways.
pub trait Tunnel: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Tunnel for T {}

/// A response body.
pub enum ResponseBody {
    /// No body (and no `Content-Length` written): 204, 304, a HEAD answer of unknown length.
    None,
    /// The answer to a HEAD request whose GET would have a body of this many bytes: the
    /// length is announced, nothing is sent.
    HeadOf(u64),
    /// A body held whole (the gateway's own answers).
    Full(Bytes),
    /// The backend switched protocols (`101`): its connection, which the driver turns into the
    /// session's relay before the front end sees the response.
    Switched(Box<dyn Tunnel>),
    /// A body streamed as it arrives (the backend's), of a known length or not.
    Stream {
        /// The length, when the backend declared it.
        length: Option<u64>,
        /// The chunks.
        stream: LocalBoxStream<'static, Result<Bytes, BoxError>>,
        /// Its trailers, when the backend's protocol carries them (HTTP/2: gRPC's status).
        trailers: Option<Trailers>,
    },
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::HeadOf(n) => write!(f, "HeadOf({n})"),
            Self::Full(b) => write!(f, "Full({} bytes)", b.len()),
            Self::Switched(_) => f.write_str("Switched"),
            Self::Stream { length, .. } => write!(f, "Stream({length:?})"),
        }
    }
}

/// A response, the backend's or the gateway's.
#[derive(Debug)]
pub struct Response {
    /// The status.
    pub status: StatusCode,
    /// The headers (hop-by-hop ones never included).
    pub headers: HeaderMap,
    /// The body.
    pub body: ResponseBody,
}

impl Response {
    /// A response with no headers and no body.
    pub fn new(status: StatusCode) -> Self {
        Self { status, headers: HeaderMap::new(), body: ResponseBody::None }
    }

    /// A complete response with a body of `content_type`.
    pub fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        let mut headers = HeaderMap::with_capacity(1);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        Self { status, headers, body: ResponseBody::Full(body.into()) }
    }
}
