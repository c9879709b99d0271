//! `mock-backends`: an httpbin-like HTTP backend for RustyGate's integration tests, the lab
//! and the benchmarks.
//!
//! The same server is used in two ways. Tests embed it with [`MockServer::start`] (or
//! [`MockServer::start_with`]): the server then runs on its own thread with its own actix
//! `System`, so it works from `#[tokio::test]`, from plain threads or from any other runtime.
//! The `mock-backend` binary runs it in the foreground through [`run`].
//!
//! Endpoints (any method unless noted; all but `/control/*` and `/health` count as hits and
//! get the configured latency and injected failures; every response has `x-backend: NAME`):
//!
//! - `/health`: 200 `{"status":"ok","backend"}` or 503 `{"status":"unhealthy","backend"}`.
//! - `POST /control/health` `{"healthy": bool}`; `POST /control/fail` `{"count", "status"}`
//!   (status 0 closes the connection unanswered) or `{"reset": true}`; `POST /control/latency`
//!   `{"ms": n}` (the latency from now on); `GET /control/stats`; `POST /control/reset` (also
//!   restores the configured latency).
//! - `/status/{code}`: that status (200 to 599), body `{"status","backend"}` (none for
//!   204/304).
//! - `/delay/{ms}`: waits (at most 60 s), then echoes.
//! - `/bytes/{n}[?chunked=1]`: `n` bytes (at most 8 GiB) of the pattern `i % 251`, see
//!   [`pattern_sha256`].
//! - `/drip/{n}?interval_ms=X`: `n` one-byte chunks, `X` ms apart (default 100).
//! - `GET /ws/echo[?headers=1]`: a WebSocket echo (with `headers=1`, the first message is the
//!   handshake's headers as JSON).
//! - anything else: the echo, a JSON description of the request (raw path, query and
//!   request-target, headers, body length and SHA-256).
//!
//! [`otlp_sink`] is a stand-in OTLP receiver with Jaeger's trace query (`otlp-sink` binary).
//!
//! Request bodies are always consumed as streams and generated bodies are never held whole in
//! memory, so multi-GiB transfers run in constant memory.

mod control;
mod echo;
mod gate;
pub mod otlp_sink;
mod server;
mod state;
mod streams;
mod websocket;

use std::{net::SocketAddr, time::Duration};

pub use server::{MockServer, run};
pub use streams::{PATTERN_MODULUS, pattern_sha256};

/// Settings of one mock backend.
///
/// Build it with struct-update syntax over [`MockOptions::default`] so that fields added later
/// do not break callers:
///
/// ```
/// let opts = mock_backends::MockOptions {
///     name: "slow".into(),
///     latency: std::time::Duration::from_millis(50),
///     ..Default::default()
/// };
/// assert_eq!(opts.workers, 1);
/// ```
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Backend name, reported in every JSON body and in the `x-backend` response header.
    /// Must be a valid header value (visible ASCII).
    pub name: String,
    /// Address to listen on; the default `127.0.0.1:0` picks a free port.
    pub bind: SocketAddr,
    /// Delay added to every request except `/control/*` and `/health`.
    pub latency: Duration,
    /// Fraction (0.0 to 1.0) of requests, except `/control/*` and `/health`, answered with an
    /// injected `500`. Values outside the range are clamped; NaN counts as 0.
    pub error_rate: f64,
    /// Number of actix worker threads (at least 1).
    pub workers: usize,
    /// Serve HTTPS (HTTP/1.1 and h2 by ALPN) with this PEM certificate chain and key instead of
    /// plain HTTP (the gateway's `https://` backends).
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// With `tls`: require a client certificate chaining to this CA bundle (PEM), as a backend
    /// that only talks to gateways it knows does.
    pub tls_client_ca: Option<std::path::PathBuf>,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            name: "mock".to_owned(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            latency: Duration::ZERO,
            error_rate: 0.0,
            workers: 1,
            tls: None,
            tls_client_ca: None,
        }
    }
}
