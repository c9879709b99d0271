//! The hyper front end (`server.frontend: hyper`, experimental): hyper's HTTP/1.1 server, and
//! HTTP/2 with prior knowledge when `server.h2c` is on; on the HTTPS listener, the TLS handshake
//! (tokio-rustls with the listener's rustls configuration, counted by result and version), then
//! HTTP/2 or HTTP/1.1 by ALPN; in front of the same pipeline as the actix front end. Each
//! connection runs on the actix worker that accepted it (actix-server's accept loop and
//! workers), so the pipeline's per-worker state (the upstream pools) is shared with nothing else.
//!
//! Why a second front end: the request head arrives in the pipeline's own types (`http` 1.x,
//! no conversion), and hyper's server sends response trailers and takes HTTP/2 limits, which
//! gRPC and the HTTPS listener's handshake accounting need. Like the actix front end: the
//! connection limits (a 503 that closes the connection past them), `server.send_timeout` (the
//! kernel's limit on unacknowledged writes), `server.keep_alive` (a per-connection watchdog),
//! lingering after an early answer, WebSocket sessions. Not yet (docs/architecture.md, "Front
//! ends"): a 408 on a slow head (hyper closes the connection without an answer).

use std::{
    cell::Cell,
    convert::Infallible,
    net::{IpAddr, Ipv6Addr},
    pin::Pin,
    rc::Rc,
    sync::Arc,
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};

use super::{connection::ConnectionState, metered_body::MeteredBody};
use crate::{
    error::GatewayError,
    gateway::Gateway,
    http_types::StatusCode,
    pipeline::{
        body::{BodyError, BodySource},
        ctx::Finish,
        driver::{self, Connection, Served},
        message::{RequestHead, ResponseBody},
    },
    proxy::h2_client::LocalExec,
    tls::ConnectionTls,
};

/// Serves one plain client connection until it ends; `rank` is its number among the open
/// connections when it was accepted (past `server.max_connections`, its requests get 503).
pub async fn serve_connection(gateway: Arc<Gateway>, tcp: tokio::net::TcpStream, state: ConnectionState, h2c: bool) {
    let peer = prepare(&gateway, &tcp);
    let protocols = if h2c { Protocols::Auto } else { Protocols::Http1 };
    serve_io(
        gateway,
        TokioIo::new(tcp),
        Accepted { peer, activity: Rc::new(Activity::new()), state: Rc::new(state), tls: None },
        protocols,
    )
    .await;
}

/// The peer's address, and the socket set up as the actix front end sets its own: no Nagle, and
/// `server.send_timeout` as the kernel's limit on unacknowledged writes (a client that stops
/// reading cannot hold the connection).
fn prepare(gateway: &Gateway, tcp: &tokio::net::TcpStream) -> IpAddr {
    let _ = tcp.set_nodelay(true);
    let send_timeout = gateway.runtime.load().config.server.send_timeout.0;
    let _ = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(send_timeout));
    tcp.peer_addr().map(|a| a.ip()).unwrap_or(Ipv6Addr::UNSPECIFIED.into())
}

/// What the front end knows of an accepted connection.
#[derive(Clone)]
struct Accepted {
    peer: IpAddr,
    /// Its open requests (for the keep-alive idle timeout).
    activity: Rc<Activity>,
    /// Its place in the connection counts (decremented when the connection ends).
    state: Rc<ConnectionState>,
    tls: Option<Arc<ConnectionTls>>,
}

/// Serves one connection of the HTTPS listener: the TLS handshake (counted in
/// `rustygate_tls_handshakes_total`), then HTTP/2 or HTTP/1.1 as ALPN agreed.
pub async fn serve_tls_connection(
    gateway: Arc<Gateway>,
    tcp: tokio::net::TcpStream,
    state: ConnectionState,
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: std::time::Duration,
) {
    let peer = prepare(&gateway, &tcp);
    let counted = |version: &str, result: &str| {
        gateway.metrics.tls_handshakes_total.with_label_values(&["https", version, result]).inc();
    };
    let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            counted("unknown", "failed");
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_elapsed) => {
            counted("unknown", "failed");
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let tls = ConnectionTls::of(stream.get_ref().1);
    counted(if tls.version.is_empty() { "unknown" } else { tls.version }, "success");
    let protocols = match stream.get_ref().1.alpn_protocol() {
        Some(b"h2") => Protocols::Http2,
        // ACME's TLS-ALPN-01 validation ends with the handshake.
        Some(b"acme-tls/1") => return,
        _ => Protocols::Http1,
    };
    serve_io(
        gateway,
        TokioIo::new(stream),
        Accepted { peer, activity: Rc::new(Activity::new()), state: Rc::new(state), tls: Some(Arc::new(tls)) },
        protocols,
    )
    .await;
}

/// What a connection may speak.
#[derive(Clone, Copy)]
enum Protocols {
    Http1,
    Http2,
    /// HTTP/1.1, or HTTP/2 with prior knowledge (told apart by the first bytes).
    Auto,
}

async fn serve_io<T>(gateway: Arc<Gateway>, io: TokioIo<T>, accepted: Accepted, protocols: Protocols)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let server = &gateway.runtime.load().config.server;
    let header_timeout = server.client_header_timeout.0;
    // HTTP/2 header blocks up to four times the pipeline's own head limit are decoded, so that the
    // pipeline answers 431 as over HTTP/1.1; larger ones reset the stream (bounded memory).
    let header_list = u32::try_from(server.max_request_head_size.0.saturating_mul(4)).unwrap_or(u32::MAX);
    let keep_alive = server.keep_alive.0;
    let activity = accepted.activity.clone();
    let service = hyper::service::service_fn(move |req| handle(gateway.clone(), accepted.clone(), req));
    let result = if let Protocols::Http2 = protocols {
        let mut builder = hyper::server::conn::http2::Builder::new(LocalExec);
        builder.timer(TokioTimer::new()).max_header_list_size(header_list);
        let conn = builder.serve_connection(io, service);
        close_when_idle(conn, &activity, keep_alive, |c| c.graceful_shutdown()).await.map_err(Into::into)
    } else if let Protocols::Auto = protocols {
        let mut builder = hyper_util::server::conn::auto::Builder::new(LocalExec);
        builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
        builder.http2().timer(TokioTimer::new()).max_header_list_size(header_list);
        let conn = builder.serve_connection_with_upgrades(io, service);
        close_when_idle(conn, &activity, keep_alive, |c| c.graceful_shutdown()).await
    } else {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(header_timeout).writev(false);
        let conn = builder.serve_connection(io, service).with_upgrades();
        close_when_idle(conn, &activity, keep_alive, |c| c.graceful_shutdown()).await.map_err(Into::into)
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "client connection ended");
    }
}

/// The requests open on one connection, and since when it has had none.
struct Activity {
    open: Cell<usize>,
    idle_since: Cell<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self { open: Cell::new(0), idle_since: Cell::new(Instant::now()) }
    }
}

/// A request open on its connection, until its response has been sent (or dropped).
struct Active(Rc<Activity>);

impl Active {
    fn new(activity: &Rc<Activity>) -> Self {
        activity.open.set(activity.open.get() + 1);
        Self(activity.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        let open = self.0.open.get().saturating_sub(1);
        self.0.open.set(open);
        if open == 0 {
            self.0.idle_since.set(Instant::now());
        }
    }
}

/// Runs a connection, shutting it down gracefully once it has had no request open for
/// `server.keep_alive` (hyper has no idle timeout of its own: its header timeout would govern).
async fn close_when_idle<C, E>(
    conn: C,
    activity: &Activity,
    keep_alive: Duration,
    shutdown: impl Fn(Pin<&mut C>),
) -> Result<(), E>
where
    C: std::future::Future<Output = Result<(), E>>,
{
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let due = activity.idle_since.get() + keep_alive;
        tokio::select! {
            result = conn.as_mut() => return result,
            _ = tokio::time::sleep_until(due.into()), if !closing => {
                if activity.open.get() == 0 && activity.idle_since.get() + keep_alive <= Instant::now() {
                    shutdown(conn.as_mut());
                    closing = true;
                }
            }
        }
    }
}

/// One request: its head and body into the pipeline, the pipeline's response back.
async fn handle(
    gateway: Arc<Gateway>,
    accepted: Accepted,
    mut req: hyper::Request<Incoming>,
) -> Result<hyper::Response<FrontBody>, Infallible> {
    let active = Active::new(&accepted.activity);
    let rt = gateway.runtime.load_full();
    // A WebSocket handshake: what the client sends after it comes from the upgraded connection.
    let upgrade = crate::websocket::is_handshake(req.method(), req.version(), req.headers())
        .then(|| Upgrade::new(hyper::upgrade::on(&mut req)));
    // Over `server.max_connections`: refused with a 503 that closes the connection.
    let refused = accepted.state.over_limits(&rt).then_some(GatewayError::TooManyConnections);
    let closing = refused.is_some() && req.version() < hyper::Version::HTTP_2;
    let (parts, incoming) = req.into_parts();
    let head = RequestHead { method: parts.method, uri: parts.uri, version: parts.version, headers: parts.headers };
    let (body, client_writer): (BodySource, _) = match upgrade {
        Some(upgrade) => (upgrade.client_bytes, Some(upgrade.writer)),
        None => (request_body(incoming), None),
    };
    let Served { response, finish } =
        driver::serve(&gateway, rt, head, body, Connection { peer: accepted.peer, refused, tls: accepted.tls }).await;
    // A WebSocket session: the 101 goes out bodiless, and its relay is written to the upgraded
    // connection by a task that keeps the request's record until the session ends.
    let (resp_body, finish) = match (response.body, client_writer) {
        (ResponseBody::Stream { stream, .. }, Some(writer)) if response.status == StatusCode::SWITCHING_PROTOCOLS => {
            actix_web::rt::spawn(relay_to_client(stream, writer, finish));
            (ResponseBody::None, None)
        }
        (body, _) => (body, Some(finish)),
    };
    let mut resp = hyper::Response::new(FrontBody::new(resp_body, finish, active));
    *resp.status_mut() = response.status;
    *resp.headers_mut() = response.headers;
    if response.status == StatusCode::SWITCHING_PROTOCOLS {
        // The connection option that goes with `Upgrade` (hyper adds none).
        resp.headers_mut()
            .insert(crate::http_types::header::CONNECTION, crate::http_types::HeaderValue::from_static("upgrade"));
    }
    if closing {
        resp.headers_mut()
            .insert(crate::http_types::header::CONNECTION, crate::http_types::HeaderValue::from_static("close"));
    }
    Ok(resp)
}

/// The request body as the pipeline reads it: the data frames of hyper's body (trailers are
/// not read: the pipeline has no use for them).
fn request_body(incoming: Incoming) -> BodySource {
    if incoming.is_end_stream() {
        stream::empty().boxed_local()
    } else {
        stream::unfold(Lingering(Some(incoming)), move |mut state| async move {
            let incoming = state.0.as_mut()?;
            loop {
                match std::future::poll_fn(|cx| Pin::new(&mut *incoming).poll_frame(cx)).await? {
                    Ok(frame) => {
                        if let Ok(data) = frame.into_data() {
                            return Some((Ok(data), state));
                        }
                    }
                    Err(e) => return Some((Err(BodyError::Read(e.to_string())), state)),
                }
            }
        })
        .boxed_local()
    }
}

/// How much of a request body the gateway reads and discards after answering without it (a 413,
/// a 401 to an upload), and for how long: enough for the client to finish sending and read the
/// answer, instead of a reset that can lose it (as actix's lingering does).
const LINGER_BYTES: usize = 1024 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(2);

/// A request body that, dropped before its end, is read and discarded in the background
/// (within [`LINGER_BYTES`] and [`LINGER_TIME`]), so that the connection ends cleanly.
struct Lingering(Option<Incoming>);

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(mut incoming) = self.0.take().filter(|i| !i.is_end_stream()) else { return };
        actix_web::rt::spawn(async move {
            let drained = async {
                let mut read = 0;
                while let Some(Ok(frame)) = std::future::poll_fn(|cx| Pin::new(&mut incoming).poll_frame(cx)).await {
                    read += frame.data_ref().map_or(0, Bytes::len);
                    if read > LINGER_BYTES {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(LINGER_TIME, drained).await;
        });
    }
}

/// The client's side of a WebSocket handshake on this front end: once hyper has sent the 101 and
/// handed the connection over, its bytes (for the relay's client-to-backend direction) and its
/// writing half (for the backend-to-client one).
struct Upgrade {
    client_bytes: BodySource,
    writer: tokio::sync::oneshot::Receiver<ClientWriter>,
}

type ClientWriter = tokio::io::WriteHalf<TokioIo<hyper::upgrade::Upgraded>>;

impl Upgrade {
    fn new(on_upgrade: hyper::upgrade::OnUpgrade) -> Self {
        let (tx, writer) = tokio::sync::oneshot::channel();
        let mut tx = Some(tx);
        let client_bytes = stream::once(on_upgrade)
            .flat_map(move |upgraded| -> BodySource {
                match upgraded {
                    Ok(upgraded) => {
                        let (reader, writer) = tokio::io::split(TokioIo::new(upgraded));
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(writer);
                        }
                        read_stream(reader)
                    }
                    Err(e) => stream::once(async move { Err(BodyError::Read(e.to_string())) }).boxed_local(),
                }
            })
            .boxed_local();
        Self { client_bytes, writer }
    }
}

/// Bytes read from `reader` until it ends or fails.
fn read_stream(reader: tokio::io::ReadHalf<TokioIo<hyper::upgrade::Upgraded>>) -> BodySource {
    use tokio::io::AsyncReadExt;
    stream::unfold(Some((reader, bytes::BytesMut::new())), |state| async move {
        let (mut reader, mut buf) = state?;
        buf.reserve(16 * 1024);
        match reader.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(buf.split().freeze()), Some((reader, buf)))),
            Err(e) => Some((Err(BodyError::Read(e.to_string())), None)),
        }
    })
    .boxed_local()
}

/// Writes the session's backend-to-client bytes to the upgraded connection, then ends the
/// request's record (its access log line is the session's).
async fn relay_to_client(
    mut relay: futures_util::stream::LocalBoxStream<'static, Result<Bytes, crate::pipeline::message::BoxError>>,
    writer: tokio::sync::oneshot::Receiver<ClientWriter>,
    mut finish: Finish,
) {
    use tokio::io::AsyncWriteExt;
    let Ok(mut writer) = writer.await else { return };
    while let Some(Ok(chunk)) = relay.next().await {
        if writer.write_all(&chunk).await.is_err() {
            break;
        }
        finish.bytes_out += chunk.len() as u64;
    }
    let _ = writer.shutdown().await;
    drop(relay);
    finish.completed = true;
}

/// The pipeline's response body as hyper sends it: the front ends' [`MeteredBody`] (counted, the
/// request's record ended with it), then the backend's trailers, if it sent any.
pub struct FrontBody {
    metered: MeteredBody,
    /// Its request counts as open on the connection while the body lives.
    _active: Active,
    /// The body has ended (it is not polled again); its trailers go next, if it has any.
    ended: bool,
}

impl FrontBody {
    fn new(inner: ResponseBody, finish: Option<Finish>, active: Active) -> Self {
        Self { metered: MeteredBody::new(inner, finish), _active: active, ended: false }
    }
}

impl Body for FrontBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match ready!(this.metered.poll_chunk(cx)) {
            Some(Ok(chunk)) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            Some(Err(e)) => Poll::Ready(Some(Err(std::io::Error::other(e.to_string())))),
            None => {
                this.ended = true;
                // The backend's trailers, once, after the last chunk (a copy: the request's
                // record reads gRPC's status from them).
                match this.metered.body() {
                    ResponseBody::Stream { trailers: Some(trailers), .. } => {
                        Poll::Ready(trailers.borrow().clone().map(|map| Ok(Frame::trailers(map))))
                    }
                    _ => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.metered.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.metered.body() {
            ResponseBody::None | ResponseBody::Switched(_) => SizeHint::with_exact(0),
            // A HEAD answer: hyper sends no body, and the length announced is the `Content-Length`
            // header the pipeline set.
            ResponseBody::HeadOf(_) => SizeHint::default(),
            ResponseBody::Full(b) => SizeHint::with_exact(b.len() as u64),
            ResponseBody::Stream { length: Some(n), .. } => SizeHint::with_exact(*n),
            ResponseBody::Stream { length: None, .. } => SizeHint::default(),
        }
    }
}
