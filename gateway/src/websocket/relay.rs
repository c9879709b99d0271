//! One WebSocket session after the backend's `101`: the client's bytes to the backend and the
//! backend's to the client, each direction scanned for frame boundaries
//! ([`FrameScanner`]), with back-pressure (a side that does not read stops the other from
//! being read), until a peer closes, a limit is reached or the gateway shuts down.
//!
//! The client-to-backend direction is a task on the worker's loop, so that it goes on while the
//! client is slow to read; the backend-to-client direction is the 101 response's body, which
//! the front end pulls as the client's connection takes it. Either direction may end the
//! session ([`Shared::stop`]); the other then ends too, each writing a close frame of the
//! gateway's to its peer when the session ends for a reason of the gateway's (1001 for a
//! shutdown, the idle timeout or the maximum duration; 1009 and 1002 for a frame that breaks
//! the route's limit or the protocol) and the stream is between two frames there.

use std::{
    cell::Cell,
    io,
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt, stream};
use prometheus::{IntCounter, IntCounterVec, IntGauge};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf},
    sync::{Notify, watch},
    time::Instant,
};

use super::frames::{FrameScanner, GOING_AWAY, MESSAGE_TOO_BIG, Sender, Violation};

/// A route's WebSocket limits (`websocket_idle_timeout`, `websocket_max_duration`,
/// `websocket_max_frame_size`).
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// A session with no byte in either direction for this long is closed (1001).
    pub idle_timeout: Duration,
    /// A session older than this is closed (1001); `None`: no limit.
    pub max_duration: Option<Duration>,
    /// A frame with a longer payload closes the session (1009).
    pub max_frame_size: u64,
}

/// How a session ended: the `result` label of `rustygate_websocket_connections_total` and the
/// access log's `websocket` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A peer closed it (close frames, or its connection's orderly end).
    Closed,
    /// No byte either way for `websocket_idle_timeout`.
    IdleTimeout,
    /// Open for `websocket_max_duration`.
    MaxDuration,
    /// Still open when the gateway's `shutdown_timeout` ran out.
    Cut,
    /// A frame over `websocket_max_frame_size`.
    MessageTooBig,
    /// A frame that breaks RFC 6455's framing rules.
    ProtocolError,
    /// The client's connection failed (reset, or gone while the backend was sending).
    ClientError,
    /// The backend's connection failed.
    BackendError,
}

impl Outcome {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::IdleTimeout => "idle_timeout",
            Self::MaxDuration => "max_duration",
            Self::Cut => "cut",
            Self::MessageTooBig => "message_too_big",
            Self::ProtocolError => "protocol_error",
            Self::ClientError => "client_error",
            Self::BackendError => "backend_error",
        }
    }

    fn of(v: Violation) -> Self {
        if v.code == MESSAGE_TOO_BIG { Self::MessageTooBig } else { Self::ProtocolError }
    }
}

/// The gateway's open sessions, and the signal that closes them all (the end of a drain).
#[derive(Debug)]
pub struct Sessions {
    open: Arc<AtomicUsize>,
    close: watch::Sender<bool>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self { open: Arc::default(), close: watch::Sender::new(false) }
    }
}

impl Sessions {
    /// Sessions open now, on every route and worker.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Closes every open session with 1001 (and every session opened after: the gateway is
    /// stopping).
    pub fn close_all(&self) {
        self.close.send_replace(true);
    }
}

/// A route's sessions: its policy and its metric series, resolved when the route is compiled.
#[derive(Debug)]
pub struct RouteSessions {
    /// The limits.
    pub policy: Policy,
    route: Arc<str>,
    open: IntGauge,
    ended: IntCounterVec,
    bytes_in: IntCounter,
    bytes_out: IntCounter,
}

impl RouteSessions {
    /// The sessions of route `route` with `policy`.
    pub fn new(policy: Policy, route: &str, metrics: &crate::metrics::Metrics) -> Self {
        Self {
            policy,
            route: route.into(),
            open: metrics.websocket_connections.with_label_values(&[route]),
            ended: metrics.websocket_connections_total.clone(),
            bytes_in: metrics.websocket_bytes_total.with_label_values(&[route, "client_to_backend"]),
            bytes_out: metrics.websocket_bytes_total.with_label_values(&[route, "backend_to_client"]),
        }
    }

    /// Counts a handshake the backend answered without switching protocols.
    pub fn refused(&self) {
        self.ended.with_label_values(&[&self.route, "refused"]).inc();
    }
}

/// What the access log line of a session says of it, filled in as it runs.
#[derive(Debug, Default)]
pub struct Record {
    outcome: Cell<Option<Outcome>>,
    client_close: Cell<Option<u16>>,
    backend_close: Cell<Option<u16>>,
}

impl Record {
    /// How the session ended (`None` while it runs).
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome.get()
    }

    /// The code of the client's close frame, if it sent one.
    pub fn client_close(&self) -> Option<u16> {
        self.client_close.get()
    }

    /// The code of the backend's close frame, if it sent one.
    pub fn backend_close(&self) -> Option<u16> {
        self.backend_close.get()
    }
}

/// Why the session stops, and the close frame the gateway sends its peers, if any.
#[derive(Clone, Copy, Debug)]
struct Stop {
    outcome: Outcome,
    close: Option<(u16, &'static str)>,
}

impl Stop {
    fn quiet(outcome: Outcome) -> Self {
        Self { outcome, close: None }
    }

    fn going_away(outcome: Outcome, reason: &'static str) -> Self {
        Self { outcome, close: Some((GOING_AWAY, reason)) }
    }
}

/// What both directions share (one worker thread: cells, no locks).
struct Shared {
    stop: Cell<Option<Stop>>,
    /// Wakes the backend-to-client direction when the other one stops the session.
    to_client: Notify,
    /// Wakes the client-to-backend task when the other direction stops the session.
    to_backend: Notify,
    last_activity: Cell<Instant>,
    record: Rc<Record>,
}

impl Shared {
    /// Stops the session (the first reason wins) and wakes both directions.
    fn stop(&self, stop: Stop) {
        if self.stop.get().is_none() {
            self.stop.set(Some(stop));
            self.record.outcome.set(Some(stop.outcome));
        }
        self.to_client.notify_one();
        self.to_backend.notify_one();
    }

    fn touch(&self) {
        self.last_activity.set(Instant::now());
    }
}

/// How long the gateway waits to hand its close frame (and the end of its stream) to a backend
/// before it drops the connection.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Reads from the backend: room kept in the read buffer.
const READ_CHUNK: usize = 16 * 1024;

/// Starts a session between `client` (the bytes the client sends after its handshake) and
/// `backend` (the connection that answered `101`): spawns the client-to-backend direction on
/// the current worker and returns the backend-to-client one, the body of the client's `101`.
/// Bytes from the client are also added to `bytes_in` (the request's access-log counter).
pub fn start<C, E: 'static, T>(
    route: Arc<RouteSessions>,
    sessions: &Sessions,
    backend: T,
    client: C,
    bytes_in: Rc<Cell<u64>>,
) -> (impl Stream<Item = Result<Bytes, io::Error>> + 'static, Rc<Record>)
where
    C: Stream<Item = Result<Bytes, E>> + Unpin + 'static,
    T: AsyncRead + AsyncWrite + 'static,
{
    let record = Rc::new(Record::default());
    let shared = Rc::new(Shared {
        stop: Cell::new(None),
        to_client: Notify::new(),
        to_backend: Notify::new(),
        last_activity: Cell::new(Instant::now()),
        record: record.clone(),
    });
    let (reader, writer) = tokio::io::split(backend);
    sessions.open.fetch_add(1, Ordering::Relaxed);
    route.open.inc();
    let to_backend = ClientToBackend {
        scanner: FrameScanner::new(Sender::Client, route.policy.max_frame_size),
        shared: shared.clone(),
        policy: route.policy,
        close_all: sessions.close.subscribe(),
        counted: route.bytes_in.clone(),
        bytes_in,
    };
    actix_web::rt::spawn(to_backend.run(client, writer));
    let to_client = BackendToClient {
        reader,
        buf: BytesMut::new(),
        scanner: FrameScanner::new(Sender::Backend, route.policy.max_frame_size),
        shared,
        done: false,
        guard: SessionGuard { route, open: sessions.open.clone() },
    };
    let body = stream::unfold(to_client, |mut to_client| async move {
        let item = to_client.next().await?;
        Some((item, to_client))
    });
    (Box::pin(body), record)
}

/// Ends a session's accounting once, when its backend-to-client direction is dropped (the
/// session over, or the client's connection gone).
struct SessionGuard {
    route: Arc<RouteSessions>,
    /// The gateway-wide count (the drain waits on it).
    open: Arc<AtomicUsize>,
}

/// The client-to-backend direction.
struct ClientToBackend {
    scanner: FrameScanner,
    shared: Rc<Shared>,
    policy: Policy,
    close_all: watch::Receiver<bool>,
    counted: IntCounter,
    bytes_in: Rc<Cell<u64>>,
}

impl ClientToBackend {
    async fn run<C, E, W>(mut self, mut client: C, mut backend: WriteHalf<W>)
    where
        C: Stream<Item = Result<Bytes, E>> + Unpin,
        W: AsyncRead + AsyncWrite,
    {
        let shared = self.shared.clone();
        let idle = self.policy.idle_timeout;
        let max_end = self.policy.max_duration.map(|d| Instant::now() + d);
        let idle_timer = tokio::time::sleep(idle);
        tokio::pin!(idle_timer);
        loop {
            let next = tokio::select! {
                biased;
                _ = shared.to_backend.notified() => break,
                _ = self.close_all.wait_for(|closing| *closing) => {
                    shared.stop(Stop::going_away(Outcome::Cut, "the gateway is shutting down"));
                    break;
                }
                _ = tokio::time::sleep_until(max_end.unwrap_or_else(Instant::now)), if max_end.is_some() => {
                    shared.stop(Stop::going_away(Outcome::MaxDuration, "the session reached its maximum duration"));
                    break;
                }
                _ = &mut idle_timer => {
                    let due = shared.last_activity.get() + idle;
                    if due <= Instant::now() {
                        shared.stop(Stop::going_away(Outcome::IdleTimeout, "idle timeout"));
                        break;
                    }
                    idle_timer.as_mut().reset(due);
                    continue;
                }
                next = client.next() => next,
            };
            let chunk = match next {
                Some(Ok(chunk)) => chunk,
                Some(Err(_)) => {
                    shared.stop(Stop::quiet(Outcome::ClientError));
                    break;
                }
                // The client closed its side of the connection.
                None => {
                    shared.stop(Stop::quiet(Outcome::Closed));
                    break;
                }
            };
            shared.touch();
            self.bytes_in.set(self.bytes_in.get() + chunk.len() as u64);
            let (forward, violation) = match self.scanner.scan(chunk) {
                Ok(forward) => (forward, None),
                Err((forward, v)) => (forward, Some(v)),
            };
            // Known as soon as seen: the session's log line may be written before this task ends.
            shared.record.client_close.set(self.scanner.close_code());
            if !forward.is_empty() {
                if !self.write(&mut backend, &forward).await {
                    break;
                }
                // Relayed bytes (a refused frame is not).
                self.counted.inc_by(forward.len() as u64);
            }
            if let Some(v) = violation {
                shared.stop(Stop { outcome: Outcome::of(v), close: Some((v.code, v.reason)) });
                break;
            }
        }
        // The gateway's close frame, when the session ends for a reason of the gateway's and the
        // backend is between two frames; then the end of the gateway's side.
        let close = self.shared.stop.get().and_then(|s| s.close);
        let ending = async {
            if let Some((code, reason)) = close
                && self.scanner.at_boundary()
            {
                backend.write_all(&super::frames::close_frame(code, reason, Sender::Backend)).await?;
            }
            backend.shutdown().await
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, ending).await;
    }

    /// Writes to the backend while the session lasts: `false` when it stopped meanwhile, or the
    /// backend failed or took no byte for the idle timeout.
    async fn write<W: AsyncWrite>(&mut self, backend: &mut WriteHalf<W>, bytes: &[u8]) -> bool {
        let shared = &self.shared;
        let outcome = tokio::select! {
            biased;
            _ = shared.to_backend.notified() => return false,
            _ = self.close_all.wait_for(|closing| *closing) => {
                Stop::going_away(Outcome::Cut, "the gateway is shutting down")
            }
            written = tokio::time::timeout(self.policy.idle_timeout, backend.write_all(bytes)) => match written {
                Ok(Ok(())) => return true,
                Ok(Err(_)) => Stop::going_away(Outcome::BackendError, "the backend's connection failed"),
                Err(_) => Stop::going_away(Outcome::IdleTimeout, "idle timeout"),
            },
        };
        shared.stop(outcome);
        false
    }
}

/// The backend-to-client direction: the 101's body.
struct BackendToClient<R> {
    reader: ReadHalf<R>,
    buf: BytesMut,
    scanner: FrameScanner,
    shared: Rc<Shared>,
    done: bool,
    guard: SessionGuard,
}

impl<R: AsyncRead + AsyncWrite> BackendToClient<R> {
    /// The next bytes for the client; `None` once the session is over.
    async fn next(&mut self) -> Option<Result<Bytes, io::Error>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(stop) = self.shared.stop.get() {
                self.done = true;
                return match stop.close {
                    Some((code, reason)) if self.scanner.at_boundary() => {
                        Some(Ok(super::frames::close_frame(code, reason, Sender::Client)))
                    }
                    _ => None,
                };
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                self.buf.reserve(READ_CHUNK);
            }
            let read = tokio::select! {
                biased;
                _ = self.shared.to_client.notified() => continue,
                read = self.reader.read_buf(&mut self.buf) => read,
            };
            match read {
                Ok(0) => self.shared.stop(Stop::quiet(Outcome::Closed)),
                Err(_) => self.shared.stop(Stop::quiet(Outcome::BackendError)),
                Ok(_) => {
                    self.shared.touch();
                    let chunk = self.buf.split().freeze();
                    let scanned = self.scanner.scan(chunk);
                    self.shared.record.backend_close.set(self.scanner.close_code());
                    let forward = match scanned {
                        Ok(forward) => forward,
                        Err((forward, v)) => {
                            self.shared.stop(Stop { outcome: Outcome::of(v), close: Some((v.code, v.reason)) });
                            forward
                        }
                    };
                    if !forward.is_empty() {
                        // Relayed bytes (a refused frame is not).
                        self.guard.route.bytes_out.inc_by(forward.len() as u64);
                        return Some(Ok(forward));
                    }
                }
            }
        }
    }
}

impl<R> Drop for BackendToClient<R> {
    fn drop(&mut self) {
        // Dropped before the session ended: the client's connection is gone — after the
        // backend's close frame reached it (an orderly end whose last steps the front end cut
        // short), or unannounced.
        if self.shared.stop.get().is_none() {
            let closing = self.scanner.close_code().is_some();
            self.shared.stop(Stop::quiet(if closing { Outcome::Closed } else { Outcome::ClientError }));
        }
        let outcome = self.shared.record.outcome().unwrap_or(Outcome::ClientError);
        let route = &self.guard.route;
        route.open.dec();
        route.ended.with_label_values(&[&route.route, outcome.label()]).inc();
        self.guard.open.fetch_sub(1, Ordering::Relaxed);
    }
}
