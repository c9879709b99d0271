//! State shared by all workers of one mock backend: its identity, the hit counter, the health
//! flag and the pending injected failures.
//!
//! Everything is lock-free: counters are atomics and the failure injection (a count plus a
//! status) is packed into one `AtomicU64`, so "fail the next N requests" counts down exactly
//! even under concurrency.

use std::{
    io,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::Duration,
};

use actix_web::{
    HttpResponse, HttpResponseBuilder,
    http::{
        StatusCode,
        header::{HeaderName, HeaderValue},
    },
};
use serde::Serialize;

use crate::MockOptions;

/// Name of the response header that carries the backend name.
pub(crate) const X_BACKEND: HeaderName = HeaderName::from_static("x-backend");

/// Bits of the packed failure word that hold the remaining count; the status is above them.
const COUNT_BITS: u32 = 48;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// Per-server shared state.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Backend name.
    pub(crate) name: String,
    /// Whether it serves HTTPS.
    pub(crate) tls: bool,
    /// `name` as a ready-made header value.
    header: HeaderValue,
    /// Latency added to every non-control request, in ms (settable at run time).
    latency_ms: AtomicU64,
    /// The configured latency, restored by a reset.
    initial_latency: Duration,
    /// Fraction of non-control requests answered 500.
    pub(crate) error_rate: f64,
    hits: AtomicU64,
    healthy: AtomicBool,
    /// `status << 48 | remaining`; no failure pending when `remaining == 0`.
    failures: AtomicU64,
}

/// A snapshot of the pending injected failures.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct PendingFailures {
    /// How many requests will still fail.
    pub(crate) remaining: u64,
    /// The status they get (0: the connection is dropped).
    pub(crate) status: u16,
}

impl Shared {
    /// Validates the options and builds the state.
    pub(crate) fn new(opts: &MockOptions) -> io::Result<Self> {
        let header = HeaderValue::from_str(&opts.name).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("backend name {:?} is not a valid header value", opts.name),
            )
        })?;
        let error_rate = if opts.error_rate.is_nan() { 0.0 } else { opts.error_rate.clamp(0.0, 1.0) };
        Ok(Shared {
            name: opts.name.clone(),
            tls: opts.tls.is_some(),
            header,
            latency_ms: AtomicU64::new(opts.latency.as_millis() as u64),
            initial_latency: opts.latency,
            error_rate,
            hits: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            failures: AtomicU64::new(0),
        })
    }

    /// Requests counted so far (everything but `/control/*` and `/health`).
    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Counts one request.
    pub(crate) fn record_hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether `/health` answers 200.
    pub(crate) fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Sets what `/health` answers.
    pub(crate) fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// Makes the next `count` requests answer `status` (0: drop the connection). A status that
    /// is neither 0 nor in `200..=599` is replaced by 500; `count == 0` clears.
    pub(crate) fn fail_next(&self, count: u64, status: u16) {
        let status = if status == 0 || (200..=599).contains(&status) { status } else { 500 };
        let word = (u64::from(status) << COUNT_BITS) | count.min(COUNT_MASK);
        self.failures.store(word, Ordering::Release);
    }

    /// Cancels pending injected failures.
    pub(crate) fn clear_failures(&self) {
        self.failures.store(0, Ordering::Release);
    }

    /// Consumes one pending failure, returning its status.
    pub(crate) fn take_failure(&self) -> Option<u16> {
        self.failures
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| (word & COUNT_MASK != 0).then(|| word - 1))
            .ok()
            .map(|previous| (previous >> COUNT_BITS) as u16)
    }

    /// The pending injected failures.
    pub(crate) fn pending_failures(&self) -> PendingFailures {
        let word = self.failures.load(Ordering::Acquire);
        let remaining = word & COUNT_MASK;
        PendingFailures { remaining, status: if remaining == 0 { 0 } else { (word >> COUNT_BITS) as u16 } }
    }

    /// Back to the initial state: no hits, healthy, no pending failures.
    pub(crate) fn reset(&self) {
        self.hits.store(0, Ordering::Relaxed);
        self.set_healthy(true);
        self.clear_failures();
        self.set_latency(self.initial_latency);
    }

    /// The latency added to non-control requests.
    pub(crate) fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms.load(Ordering::Relaxed))
    }

    /// Changes the latency (like `POST /control/latency`).
    pub(crate) fn set_latency(&self, latency: Duration) {
        self.latency_ms.store(latency.as_millis() as u64, Ordering::Relaxed);
    }

    /// Whether this request is picked by the configured `error_rate`.
    pub(crate) fn roll_error_rate(&self) -> bool {
        self.error_rate > 0.0 && rand::random::<f64>() < self.error_rate
    }

    /// A response builder carrying the `x-backend` header.
    pub(crate) fn response(&self, status: StatusCode) -> HttpResponseBuilder {
        let mut builder = HttpResponse::build(status);
        builder.insert_header((X_BACKEND, self.header.clone()));
        builder
    }

    /// A JSON response carrying the `x-backend` header.
    pub(crate) fn json(&self, status: StatusCode, body: impl Serialize) -> HttpResponse {
        self.response(status).json(body)
    }

    /// The answer of `/status/{code}` and of injected failures: `{"status", "backend"}` (plus
    /// `"injected": true` when `injected`), or no body at all for 204 and 304.
    pub(crate) fn status_response(&self, status: StatusCode, injected: bool) -> HttpResponse {
        #[derive(Serialize)]
        struct StatusBody<'a> {
            status: u16,
            backend: &'a str,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            injected: bool,
        }
        if matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED) {
            return self.response(status).finish();
        }
        self.json(status, StatusBody { status: status.as_u16(), backend: &self.name, injected })
    }

    /// A JSON error answer `{"status", "backend", "error"}`.
    pub(crate) fn error(&self, status: StatusCode, error: impl std::fmt::Display) -> HttpResponse {
        #[derive(Serialize)]
        struct ErrorBody<'a> {
            status: u16,
            backend: &'a str,
            error: String,
        }
        self.json(status, ErrorBody { status: status.as_u16(), backend: &self.name, error: error.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        Shared::new(&MockOptions::default()).unwrap()
    }

    #[test]
    fn failures_count_down_and_keep_their_status() {
        let s = shared();
        assert_eq!(s.take_failure(), None);
        s.fail_next(2, 503);
        assert_eq!(s.pending_failures().remaining, 2);
        assert_eq!(s.take_failure(), Some(503));
        assert_eq!(s.take_failure(), Some(503));
        assert_eq!(s.take_failure(), None);
        s.fail_next(1, 0);
        assert_eq!(s.take_failure(), Some(0));
        s.fail_next(5, 42);
        assert_eq!(s.pending_failures().status, 500);
        s.reset();
        assert_eq!(s.take_failure(), None);
    }

    #[test]
    fn invalid_names_and_rates() {
        let bad = MockOptions { name: "a\nb".into(), ..Default::default() };
        assert!(Shared::new(&bad).is_err());
        let nan = MockOptions { error_rate: f64::NAN, ..Default::default() };
        assert_eq!(Shared::new(&nan).unwrap().error_rate, 0.0);
    }
}
