//! Graceful shutdown (SIGTERM, SIGINT): stop taking work, let in-flight requests finish for up to
//! `server.shutdown_timeout`, then go.
//!
//! 1. `/readyz` answers 503 at once, so load balancers stop sending new requests; the admin
//!    listener keeps answering (probes, metrics) until the drain ends.
//! 2. The proxy listener closes: new connections are refused. Requests already received go on.
//! 3. The drain waits until no request is in flight (`rustygate_requests_in_flight`, from the
//!    route match to the end of the response body), logging the count every second, or until
//!    the timeout: the requests still running then are cut, and their number is returned (the
//!    process exits non-zero, saying so). WebSocket sessions are requests in flight: at the
//!    timeout they are closed with a close frame (1001, going away) and counted as cut.
//! 4. The admin listener closes; the caller exports the queued spans and exits.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use actix_web::dev::ServerHandle;

use crate::gateway::Gateway;

/// How often the drain looks at the in-flight count.
const POLL: Duration = Duration::from_millis(20);
/// After the last response body was handed to its connection: time for its bytes to leave.
const LAST_BYTES: Duration = Duration::from_millis(200);
/// At the end of the drain: how long WebSocket sessions have to send their close frames.
const WEBSOCKET_CLOSE: Duration = Duration::from_millis(500);

/// Drains the gateway after `signal`; returns how many requests had to be cut.
pub async fn drain(
    gateway: &Arc<Gateway>,
    signal: &str,
    proxy: ServerHandle,
    admin: ServerHandle,
    timeout: Duration,
) -> i64 {
    gateway.ready.store(false, Ordering::Relaxed);
    let in_flight = gateway.metrics.requests_in_flight_total();
    tracing::info!(
        signal,
        in_flight,
        shutdown_timeout_s = timeout.as_secs_f64(),
        "shutting down gracefully: /readyz answers 503, new connections are refused, in-flight requests may finish"
    );
    // Closes the listening socket now; actix's workers stop once their connections end. Idle
    // keep-alive connections would hold them until the timeout, so the drain below decides
    // when the work is done, and the process exits without waiting for them.
    actix_web::rt::spawn(proxy.stop(true));
    let deadline = Instant::now() + timeout;
    let mut last_report = Instant::now();
    let cut = loop {
        let n = gateway.metrics.requests_in_flight_total();
        if n == 0 {
            tokio::time::sleep(LAST_BYTES).await;
            tracing::info!("in-flight requests done");
            break 0;
        }
        if Instant::now() >= deadline {
            tracing::warn!(cut = n, "server.shutdown_timeout reached: cutting the requests still in flight");
            close_websockets(gateway).await;
            break n;
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            tracing::info!(in_flight = n, "draining");
            last_report = Instant::now();
        }
        tokio::time::sleep(POLL).await;
    };
    admin.stop(false).await;
    tracing::info!(cut, "listeners closed");
    cut
}

/// Closes the WebSocket sessions still open with 1001 ("going away"), and gives their close
/// frames time to leave (actix's own force-stop comes a second after the drain's deadline).
async fn close_websockets(gateway: &Gateway) {
    let open = gateway.websockets.open();
    if open == 0 {
        return;
    }
    gateway.websockets.close_all();
    let until = Instant::now() + WEBSOCKET_CLOSE;
    while gateway.websockets.open() > 0 && Instant::now() < until {
        tokio::time::sleep(POLL).await;
    }
    tracing::warn!(sessions = open, "WebSocket sessions closed with 1001 (going away)");
    tokio::time::sleep(LAST_BYTES).await;
}
