//! The forwarding client: hyper's HTTP/1.1 client connections, pooled by each worker.
//!
//! Why hyper at the connection level rather than awc or a ready-made pooled client: the
//! pipeline's request is already in `http` 1.x types, which hyper takes as they are (awc speaks
//! actix's `http` 0.2, so every header crossed two more maps, ~15 % of the instructions of a
//! plain request: docs/benchmarks.md); and each actix worker runs its own single-threaded event
//! loop, so a pool of its own needs no lock, no `Send` body (the client's payload is not `Send`:
//! no channel between it and the backend) and wakes no other thread. hyper-util's pooled client
//! would ask for all three.
//!
//! The pool: idle connections by backend origin and TLS settings, last used first; one is handed
//! back when its response body has been read to its end (a response abandoned half-way closes
//! its connection), kept at most [`POOL_IDLE`] idle and [`POOL_LIFETIME`] in all, at most
//! [`MAX_IDLE_PER_ORIGIN`] per origin and worker. A pooled connection the backend closed before
//! the request could be written is replaced by a new one, once, whatever the method: nothing
//! reached the backend.
//!
//! What the backend receives is what the pipeline prepared: no header is added (`Host` is the
//! pipeline's), `Content-Length` for a body of known length, `Transfer-Encoding: chunked` for
//! one of unknown length, neither without a body. Interim responses (`100`, `103`) are read
//! and dropped: the final response is relayed.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::Stream;
use http_body::{Body, Frame, SizeHint};
use hyper::{body::Incoming, client::conn::http1};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::upstream_response::UpstreamResponse;
use crate::{
    error::GatewayError,
    http_types::{HeaderMap, HeaderValue, Method, Request, Uri, Version, header},
    pipeline::body::{BodyError, LimitedPayload, RequestBody},
    upstream::Dial,
};

/// How long an idle pooled upstream connection is kept.
pub const POOL_IDLE: Duration = Duration::from_secs(60);
/// The longest an upstream connection is reused before it is replaced.
pub const POOL_LIFETIME: Duration = Duration::from_secs(300);
/// Idle connections kept per origin by one worker: past it, a finished connection is closed
/// (bounds the descriptors a burst leaves open).
pub const MAX_IDLE_PER_ORIGIN: usize = 512;
/// Every this many returns to the pool, the whole pool drops what expired or was closed (an
/// origin no longer used is otherwise never looked at again).
const SWEEP_EVERY: u32 = 1024;

/// An idle connection's key: the backend's origin and its TLS configuration (by address, as
/// one upstream's backends share it; `0` for `http://`).
type PoolKey = (Arc<str>, usize);

/// One connection's sending half, with its age.
struct Pooled {
    sender: http1::SendRequest<OutgoingBody>,
    born: Instant,
    idle_since: Instant,
}

impl Pooled {
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.idle_since) >= POOL_IDLE || now.duration_since(self.born) >= POOL_LIFETIME
    }
}

thread_local! {
    static POOL: RefCell<HashMap<PoolKey, Vec<Pooled>>> = RefCell::new(HashMap::new());
    static RETURNS: Cell<u32> = const { Cell::new(0) };
}

/// Takes the worker's most recently used idle connection to `key` that is still open and
/// ready, dropping (so closing) those that expired or that the backend closed.
async fn checkout(key: &PoolKey) -> Option<Pooled> {
    let now = Instant::now();
    loop {
        let mut pooled = POOL.with(|pool| pool.borrow_mut().get_mut(key).and_then(Vec::pop))?;
        if pooled.expired(now) || pooled.sender.is_closed() {
            continue;
        }
        // Ready once the connection's task has seen the end of the previous exchange (it may
        // not have run yet); an error when the backend closed it meanwhile.
        if pooled.sender.ready().await.is_ok() {
            return Some(pooled);
        }
    }
}

/// Gives a connection whose exchange is over back to the worker's pool.
fn check_in(key: PoolKey, mut pooled: Pooled) {
    let now = Instant::now();
    if now.duration_since(pooled.born) >= POOL_LIFETIME || pooled.sender.is_closed() {
        return;
    }
    pooled.idle_since = now;
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.entry(key).or_default();
        if idle.len() < MAX_IDLE_PER_ORIGIN {
            idle.push(pooled);
        }
        let returns = RETURNS.with(|r| {
            r.set(r.get().wrapping_add(1));
            r.get()
        });
        if returns.is_multiple_of(SWEEP_EVERY) {
            pool.retain(|_, idle| {
                idle.retain(|p| !p.expired(now) && !p.sender.is_closed());
                !idle.is_empty()
            });
        }
    });
}

/// Where and how to reach one backend, for one request.
pub struct Target<'a> {
    /// The backend's address.
    pub dial: &'a Dial,
    /// The upstream's TLS configuration (`https://` backends).
    pub tls: Option<&'a Arc<rustls::ClientConfig>>,
    /// Bounds the TCP connection and the TLS handshake together.
    pub connect_timeout: Duration,
}

/// Sends one request to the backend (origin-form `path_and_query`) on a pooled connection or
/// a new one; `timeout` bounds the wait for the response head, connecting included.
pub async fn send(
    target: Target<'_>,
    method: &Method,
    path_and_query: String,
    mut headers: HeaderMap,
    body: RequestBody,
    timeout: Duration,
) -> Result<UpstreamResponse<UpstreamBody>, GatewayError> {
    let uri =
        Uri::try_from(path_and_query).map_err(|_| GatewayError::BadRequest("the request path cannot be forwarded"))?;
    // The framing, said in the headers hyper respects: a streamed body of unknown length is
    // chunked even on a GET (hyper would otherwise send none of it).
    match &body {
        RequestBody::Empty => {}
        RequestBody::Sized(len, _) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(*len));
        }
        RequestBody::Buffered(bytes) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        }
        RequestBody::Streamed(_) => {
            headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        }
    }
    let mut request = Request::new(OutgoingBody::from(body));
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    match tokio::time::timeout(timeout, exchange(&target, request)).await {
        Err(_elapsed) => Err(GatewayError::UpstreamTimeout),
        Ok(result) => result,
    }
}

async fn exchange(
    target: &Target<'_>,
    mut request: Request<OutgoingBody>,
) -> Result<UpstreamResponse<UpstreamBody>, GatewayError> {
    let key: PoolKey = (target.dial.origin.clone(), target.tls.map_or(0, |t| Arc::as_ptr(t) as usize));
    if let Some(mut pooled) = checkout(&key).await {
        match pooled.sender.try_send_request(request).await {
            Ok(response) => return Ok(UpstreamBody::response(response, key, pooled)),
            Err(mut failed) => match failed.take_message() {
                // The connection closed before the request was written: nothing was sent, a new
                // connection gets it.
                Some(unsent) => request = unsent,
                None => return Err(send_error(failed.into_error())),
            },
        }
    }
    let mut pooled = connect(target, false).await?;
    match pooled.sender.send_request(request).await {
        Ok(response) => Ok(UpstreamBody::response(response, key, pooled)),
        Err(e) => Err(send_error(e)),
    }
}

/// What a WebSocket handshake got from the backend.
pub enum Upgrade {
    /// `101 Switching Protocols`: the answer's head, and the connection, now the session's.
    Switched {
        /// The backend's HTTP version.
        version: Version,
        /// The `101`'s headers.
        headers: HeaderMap,
        /// The connection.
        io: TokioIo<hyper::upgrade::Upgraded>,
    },
    /// Any other answer (the backend refused the upgrade): relayed as it is.
    Answered(UpstreamResponse<UpstreamBody>),
}

/// Sends a WebSocket handshake (the pipeline's `GET` with `Connection: upgrade` and
/// `Upgrade: websocket`) on a new connection of its own — never a pooled one: after a `101` it
/// belongs to the session, and a refused upgrade closes it. `timeout` bounds connecting and the
/// answer's head.
pub async fn upgrade(
    target: Target<'_>,
    path_and_query: String,
    headers: HeaderMap,
    timeout: Duration,
) -> Result<Upgrade, GatewayError> {
    let uri =
        Uri::try_from(path_and_query).map_err(|_| GatewayError::BadRequest("the request path cannot be forwarded"))?;
    let mut request = Request::new(OutgoingBody::Empty);
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    let exchange = async {
        let mut pooled = connect(&target, true).await?;
        let mut response = pooled.sender.send_request(request).await.map_err(send_error)?;
        if response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
            let (head, incoming) = response.into_parts();
            let body = UpstreamBody { incoming, connection: None };
            return Ok(Upgrade::Answered(UpstreamResponse {
                status: head.status,
                version: head.version,
                headers: head.headers,
                body,
                trailers: None,
            }));
        }
        let upgraded =
            hyper::upgrade::on(&mut response).await.map_err(|e| GatewayError::UpstreamProtocol(Box::new(e)))?;
        let (head, _) = response.into_parts();
        Ok(Upgrade::Switched { version: head.version, headers: head.headers, io: TokioIo::new(upgraded) })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_elapsed) => Err(GatewayError::UpstreamTimeout),
        Ok(result) => result,
    }
}

/// A new connection (TCP, then TLS for `https://`), its task spawned on the worker's loop;
/// `upgrades`: the task hands the connection over after a `101` instead of closing it.
async fn connect(target: &Target<'_>, upgrades: bool) -> Result<Pooled, GatewayError> {
    let dial = target.dial;
    let connecting = async {
        let tcp = tcp_connect(dial).await?;
        match (target.tls, &dial.server_name) {
            (Some(tls), Some(name)) => handshake(TokioIo::new(tls_connect(tls, name, tcp).await?), upgrades).await,
            _ => handshake(TokioIo::new(tcp), upgrades).await,
        }
    };
    match tokio::time::timeout(target.connect_timeout, connecting).await {
        Err(_elapsed) => Err(GatewayError::UpstreamConnectTimeout),
        Ok(result) => result,
    }
}

/// A TCP connection to the backend, with Nagle's algorithm off (small request and response
/// heads must not wait for it).
pub(super) async fn tcp_connect(dial: &Dial) -> Result<TcpStream, GatewayError> {
    let tcp = TcpStream::connect((dial.host.as_str(), dial.port))
        .await
        .map_err(|e| GatewayError::UpstreamConnect(Box::new(e)))?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// The TLS handshake with a backend, its failure said as the TLS refusal it is when it is one.
pub(super) async fn tls_connect(
    tls: &Arc<rustls::ClientConfig>,
    name: &rustls::pki_types::ServerName<'static>,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, GatewayError> {
    tokio_rustls::TlsConnector::from(tls.clone()).connect(name.clone(), tcp).await.map_err(|e| {
        match crate::tls::upstream::failure_reason(&e) {
            Some(reason) => GatewayError::UpstreamTls { reason, detail: e.to_string() },
            None => GatewayError::UpstreamConnect(Box::new(e)),
        }
    })
}

async fn handshake<T>(io: T, upgrades: bool) -> Result<Pooled, GatewayError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    // Head and body written with one `write` from one buffer, not `writev` from a queue of
    // them: 4-7 % less CPU per request measured on this box (docs/benchmarks.md, "Fourth round").
    let (sender, connection) = http1::Builder::new()
        .writev(false)
        .handshake(io)
        .await
        .map_err(|e| GatewayError::UpstreamConnect(Box::new(e)))?;
    // The connection's reading and writing run on this worker's loop, as long as it is open.
    actix_web::rt::spawn(async move {
        let ended = if upgrades { connection.with_upgrades().await } else { connection.await };
        if let Err(e) = ended {
            tracing::debug!(error = %e, "upstream connection ended");
        }
    });
    let now = Instant::now();
    Ok(Pooled { sender, born: now, idle_since: now })
}

/// How a failed exchange is said: a TLS refusal that arrives on reading the answer (TLS 1.3:
/// a backend refuses the gateway's certificate after the client's side of the handshake) as
/// such, anything else as the backend's protocol failure.
pub(super) fn send_error(e: hyper::Error) -> GatewayError {
    match crate::tls::upstream::failure_reason(&e) {
        Some(reason) => GatewayError::UpstreamTls { reason, detail: e.to_string() },
        None => GatewayError::UpstreamProtocol(Box::new(e)),
    }
}

/// The request body as hyper sends it, its length known when the pipeline knows it.
pub enum OutgoingBody {
    /// None.
    Empty,
    /// Read whole (small, or kept for retries).
    Full(Option<Bytes>),
    /// The client's body as it arrives; `remaining` when its length is known.
    Stream {
        /// The client's payload.
        payload: LimitedPayload,
        /// Bytes still to come, when the length is known.
        remaining: Option<u64>,
    },
}

impl From<RequestBody> for OutgoingBody {
    fn from(body: RequestBody) -> Self {
        match body {
            RequestBody::Empty => Self::Empty,
            RequestBody::Buffered(bytes) => Self::Full(Some(bytes)),
            RequestBody::Sized(len, payload) => Self::Stream { payload, remaining: Some(len) },
            RequestBody::Streamed(payload) => Self::Stream { payload, remaining: None },
        }
    }
}

impl Body for OutgoingBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream { payload, remaining } => match ready!(Pin::new(payload).poll_next(cx)) {
                Some(Ok(chunk)) => {
                    if let Some(left) = remaining {
                        *left = left.saturating_sub(chunk.len() as u64);
                    }
                    Poll::Ready(Some(Ok(Frame::data(chunk))))
                }
                Some(Err(e)) => Poll::Ready(Some(Err(e))),
                None => Poll::Ready(None),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Full(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            Self::Stream { remaining, .. } => *remaining == Some(0),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Stream { remaining: Some(left), .. } => SizeHint::with_exact(*left),
            Self::Stream { remaining: None, .. } => SizeHint::default(),
        }
    }
}

/// The backend's response body, streamed; its connection goes back to the worker's pool once
/// the body has been read to its end (or had none).
pub struct UpstreamBody {
    incoming: Incoming,
    /// The connection, until it is handed back (or dropped with an unfinished body).
    connection: Option<(PoolKey, Pooled)>,
}

impl UpstreamBody {
    fn response(response: hyper::Response<Incoming>, key: PoolKey, pooled: Pooled) -> UpstreamResponse<UpstreamBody> {
        let (head, incoming) = response.into_parts();
        UpstreamResponse {
            status: head.status,
            version: head.version,
            headers: head.headers,
            body: UpstreamBody { incoming, connection: Some((key, pooled)) },
            trailers: None,
        }
    }

    fn release(&mut self) {
        if let Some((key, pooled)) = self.connection.take() {
            check_in(key, pooled);
        }
    }
}

impl Stream for UpstreamBody {
    type Item = Result<Bytes, hyper::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match ready!(Pin::new(&mut this.incoming).poll_frame(cx)) {
                None => {
                    this.release();
                    return Poll::Ready(None);
                }
                Some(Err(e)) => {
                    this.connection = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Some(Ok(frame)) => {
                    // Trailers of a chunked answer are not relayed over HTTP/1.1.
                    if let Ok(data) = frame.into_data() {
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
            }
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A body read to its end (or an answer without one: HEAD, 204, 304) leaves the
        // connection ready for the next request; one dropped half-way is closed by hyper.
        if self.incoming.is_end_stream() {
            self.release();
        }
    }
}
