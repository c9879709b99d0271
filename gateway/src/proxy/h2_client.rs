//! The HTTP/2 forwarding client (`upstreams.*.protocol: h2 | h2c`): hyper's HTTP/2 client
//! connections, multiplexed, pooled by each worker.
//!
//! Each worker keeps, per backend origin and TLS settings, the connections it opened; a request
//! goes on the first open connection with fewer than the upstream's `max_concurrent_streams`
//! requests in flight (and within what the backend's `SETTINGS_MAX_CONCURRENT_STREAMS` allows,
//! which hyper enforces by queueing), else on a new connection. So a worker holds one connection
//! per backend at moderate load, and as many as the concurrency needs beyond it. A connection is
//! dropped once closed (GOAWAY, an error), idle for [`super::hyper_client::POOL_IDLE`] or older
//! than [`super::hyper_client::POOL_LIFETIME`]
//! (it then finishes its streams and closes).
//!
//! `h2` is HTTP/2 over TLS, chosen by ALPN (the backend must select `h2`: anything else is the
//! backend's protocol failure); `h2c` is cleartext HTTP/2 with prior knowledge. The request
//! goes out with `:authority` from the pipeline's `Host` (which is then not sent as a header),
//! `:scheme` from the backend's URL, and no connection-specific headers.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    future::Future,
    pin::Pin,
    rc::Rc,
    sync::Arc,
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::Stream;
use http_body::Body;
use hyper::{body::Incoming, client::conn::http2};
use hyper_util::rt::TokioIo;
use tokio::sync::Notify;

use super::{
    hyper_client::{OutgoingBody, POOL_IDLE, POOL_LIFETIME, Target},
    upstream_response::UpstreamResponse,
};
use crate::{
    error::GatewayError,
    http_types::{HeaderMap, Method, Request, Uri, Version, header},
    pipeline::{body::RequestBody, message::Trailers},
};

/// Runs hyper's HTTP/2 tasks (the connection, each request body's sending) on the worker's own
/// event loop: the pipeline's request bodies are not `Send`.
#[derive(Clone, Copy, Debug)]
pub struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        actix_web::rt::spawn(async move {
            fut.await;
        });
    }
}

/// One multiplexed connection and the requests in flight on it.
struct H2Connection {
    sender: http2::SendRequest<OutgoingBody>,
    streams: Rc<Streams>,
    born: Instant,
}

impl H2Connection {
    fn usable(&self, now: Instant) -> bool {
        let busy_or_fresh =
            self.streams.open.get() > 0 || now.duration_since(self.streams.idle_since.get()) < POOL_IDLE;
        !self.sender.is_closed() && now.duration_since(self.born) < POOL_LIFETIME && busy_or_fresh
    }
}

/// The requests in flight on one connection, and since when it has had none.
struct Streams {
    open: Cell<usize>,
    idle_since: Cell<Instant>,
}

/// The key of a worker's connections: the backend's origin and its TLS settings (by address).
type PoolKey = (Arc<str>, usize);

/// A worker's connections to one backend, and the connection being opened, if one is (so that
/// a burst opens one connection, not one per request).
#[derive(Default)]
struct Origin {
    connections: Vec<H2Connection>,
    connecting: Option<Rc<Notify>>,
}

thread_local! {
    static POOL: RefCell<HashMap<PoolKey, Origin>> = RefCell::new(HashMap::new());
}

/// What a request finds in the worker's pool.
enum Checkout {
    /// A connection with room for its stream.
    Ready(http2::SendRequest<OutgoingBody>, Rc<Streams>),
    /// None, but one is being opened: wait for it, then look again.
    Wait(Rc<Notify>),
    /// None: this request opens one.
    Connect,
}

/// Whether the backend is reached over TLS (`h2`) or in clear (`h2c`): its URL's scheme.
fn scheme(target: &Target<'_>) -> &'static str {
    if target.tls.is_some() { "https" } else { "http" }
}

/// Sends one request over HTTP/2 to the backend; `timeout` bounds the wait for the response
/// head, connecting included. At most `max_streams` requests in flight per connection.
pub async fn send(
    target: Target<'_>,
    method: &Method,
    path_and_query: String,
    mut headers: HeaderMap,
    body: RequestBody,
    timeout: Duration,
    max_streams: usize,
) -> Result<UpstreamResponse<H2Body>, GatewayError> {
    // `:authority` takes the place of `Host` (RFC 9113 §8.3.1).
    let authority = headers
        .remove(header::HOST)
        .and_then(|h| h.to_str().ok().map(str::to_owned))
        .unwrap_or_else(|| target.dial.host.clone());
    let uri = Uri::try_from(format!("{}://{authority}{path_and_query}", scheme(&target)))
        .map_err(|_| GatewayError::BadRequest("the request target cannot be forwarded"))?;
    let length = match &body {
        RequestBody::Sized(len, _) => Some(*len),
        RequestBody::Buffered(bytes) => Some(bytes.len() as u64),
        RequestBody::Empty | RequestBody::Streamed(_) => None,
    };
    if let Some(len) = length {
        headers.insert(header::CONTENT_LENGTH, len.into());
    }
    let mut request = Request::new(OutgoingBody::from(body));
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_2;
    *request.headers_mut() = headers;
    let exchange = async {
        let key: PoolKey = (target.dial.origin.clone(), target.tls.map_or(0, |t| Arc::as_ptr(t) as usize));
        let (mut sender, in_flight) = loop {
            match checkout(&key, max_streams) {
                Checkout::Ready(sender, streams) => break (sender, streams),
                Checkout::Wait(opened) => opened.notified().await,
                Checkout::Connect => {
                    let opened = Rc::new(Notify::new());
                    POOL.with(|pool| {
                        pool.borrow_mut().entry(key.clone()).or_default().connecting = Some(opened.clone())
                    });
                    let connected = connect(&target, &key).await;
                    POOL.with(|pool| {
                        if let Some(origin) = pool.borrow_mut().get_mut(&key) {
                            origin.connecting = None;
                        }
                    });
                    opened.notify_waiters();
                    break connected?;
                }
            }
        };
        in_flight.open.set(in_flight.open.get() + 1);
        let guard = InFlight(in_flight);
        let response = sender.send_request(request).await.map_err(super::hyper_client::send_error)?;
        let (head, incoming) = response.into_parts();
        let trailers = Trailers::default();
        Ok(UpstreamResponse {
            status: head.status,
            version: head.version,
            headers: head.headers,
            body: H2Body { incoming, trailers: trailers.clone(), _in_flight: guard },
            trailers: Some(trailers),
        })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_elapsed) => Err(GatewayError::UpstreamTimeout),
        Ok(result) => result,
    }
}

/// The worker's first usable connection to `key` with room for another stream; connections that
/// closed or aged out are dropped on the way.
fn checkout(key: &PoolKey, max_streams: usize) -> Checkout {
    let now = Instant::now();
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let Some(origin) = pool.get_mut(key) else { return Checkout::Connect };
        origin.connections.retain(|c| c.usable(now));
        match origin.connections.iter().find(|c| c.streams.open.get() < max_streams) {
            Some(c) => Checkout::Ready(c.sender.clone(), c.streams.clone()),
            None => origin.connecting.clone().map_or(Checkout::Connect, Checkout::Wait),
        }
    })
}

/// A new connection to the backend (TCP, then TLS with ALPN `h2` for `h2`), its task spawned
/// on the worker's loop and the connection added to the worker's pool.
async fn connect(
    target: &Target<'_>,
    key: &PoolKey,
) -> Result<(http2::SendRequest<OutgoingBody>, Rc<Streams>), GatewayError> {
    let dial = target.dial;
    let connecting = async {
        let tcp = super::hyper_client::tcp_connect(dial).await?;
        match (target.tls, &dial.server_name) {
            (Some(tls), Some(name)) => {
                let stream = super::hyper_client::tls_connect(tls, name, tcp).await?;
                if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return Err(GatewayError::UpstreamProtocol(
                        "the backend did not select HTTP/2 (ALPN h2) for an upstream with protocol: h2".into(),
                    ));
                }
                handshake(TokioIo::new(stream)).await
            }
            _ => handshake(TokioIo::new(tcp)).await,
        }
    };
    let sender = match tokio::time::timeout(target.connect_timeout, connecting).await {
        Err(_elapsed) => return Err(GatewayError::UpstreamConnectTimeout),
        Ok(result) => result?,
    };
    let now = Instant::now();
    let streams = Rc::new(Streams { open: Cell::new(0), idle_since: Cell::new(now) });
    let connection = H2Connection { sender: sender.clone(), streams: streams.clone(), born: now };
    // Rare (a new connection): the moment to drop every worker's connection that closed or
    // outlived its use, to backends no longer asked for included.
    POOL.with(|pool| {
        pool.borrow_mut().retain(|_, origin| {
            origin.connections.retain(|c| c.usable(now));
            !origin.connections.is_empty() || origin.connecting.is_some()
        })
    });
    POOL.with(|pool| pool.borrow_mut().entry(key.clone()).or_default().connections.push(connection));
    Ok((sender, streams))
}

async fn handshake<T>(io: T) -> Result<http2::SendRequest<OutgoingBody>, GatewayError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
{
    let (sender, connection) =
        http2::Builder::new(LocalExec).handshake(io).await.map_err(|e| GatewayError::UpstreamConnect(Box::new(e)))?;
    actix_web::rt::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
        }
    });
    Ok(sender)
}

/// Counts a request in flight on its connection until its response body is done or dropped.
struct InFlight(Rc<Streams>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let open = self.0.open.get().saturating_sub(1);
        self.0.open.set(open);
        if open == 0 {
            self.0.idle_since.set(Instant::now());
        }
    }
}

/// The backend's response body over HTTP/2, streamed; its trailers (gRPC's status) are kept
/// for the front end, which sends them after the last chunk if it can.
pub struct H2Body {
    incoming: Incoming,
    trailers: Trailers,
    _in_flight: InFlight,
}

impl H2Body {
    /// Whether the answer has no body at all (its head ended the stream: a gRPC Trailers-Only
    /// answer, a 204).
    pub fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }
}

impl Stream for H2Body {
    type Item = Result<Bytes, hyper::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match ready!(Pin::new(&mut this.incoming).poll_frame(cx)) {
                None => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => return Poll::Ready(Some(Ok(data))),
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            *this.trailers.borrow_mut() = Some(trailers);
                        }
                    }
                },
            }
        }
    }
}
