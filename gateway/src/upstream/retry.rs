//! Retry rules (DESIGN.md): what may be retried, the retry budget, and the backoff.
//!
//! * A connect failure (nothing sent) may be retried for any method whose body is replayable.
//! * A timeout, a reset or a retryable status (after the request was sent) only for idempotent
//!   methods (GET, HEAD, OPTIONS, PUT, DELETE), unless the upstream opts in.
//! * Never once response bytes went to the client: retries happen before the response is
//!   handed to actix.
//! * Each retry goes to another backend, after a backoff of 25 ms doubling, with jitter,
//!   capped at 250 ms — and only while the upstream's retry budget allows.
//!
//! The budget's window is timed on tokio's clock: the monotonic clock, except in a test that
//! pauses it.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tokio::time::Instant;

use crate::http_types::{Method, StatusCode};
use rand::Rng;

use crate::{
    config::{UpstreamConfig, values::RetryOn},
    error::GatewayError,
};

/// An upstream's compiled retry settings.
#[derive(Debug)]
pub struct RetryPolicy {
    /// Extra attempts allowed.
    pub retries: u32,
    on: Vec<RetryOn>,
    non_idempotent: bool,
    /// Bodies up to this size are buffered for replay.
    pub buffer: u64,
    /// The budget.
    pub budget: RetryBudget,
}

impl RetryPolicy {
    /// Compiles the retry settings of an upstream (a `retry_on` entry that does not parse is
    /// an error, never dropped).
    pub fn new(config: &UpstreamConfig) -> Result<Self, String> {
        let on = config.retry_on.iter().map(|r| r.get().copied().map_err(str::to_owned)).collect::<Result<_, _>>()?;
        Ok(Self {
            retries: config.retries,
            on,
            non_idempotent: config.retry_non_idempotent,
            buffer: config.retry_buffer.0,
            budget: RetryBudget::new(config.retry_budget.ratio, config.retry_budget.min_retries),
        })
    }

    /// Whether an attempt's outcome may be retried (budget and attempt count aside).
    pub fn retryable(&self, method: &Method, outcome: &Result<StatusCode, &GatewayError>) -> bool {
        let idempotent = self.non_idempotent
            || matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE);
        let has = |c: RetryOn| self.on.contains(&c);
        match outcome {
            // Nothing was sent: safe for any method.
            Err(GatewayError::UpstreamConnect(_) | GatewayError::UpstreamConnectTimeout) => has(RetryOn::ConnectError),
            Err(GatewayError::UpstreamTimeout) => idempotent && has(RetryOn::Timeout),
            Err(GatewayError::UpstreamProtocol(_)) => idempotent && has(RetryOn::Reset),
            Err(_) => false,
            Ok(status) => {
                idempotent
                    && (has(RetryOn::Status(status.as_u16())) || (status.is_server_error() && has(RetryOn::Any5xx)))
            }
        }
    }

    /// Whether there is any retry to consider at all.
    pub fn enabled(&self) -> bool {
        self.retries > 0 && !self.on.is_empty()
    }
}

/// The delay before retry number `n` (1-based): 25 ms doubling, ±50% jitter, at most 250 ms.
pub fn backoff(n: u32) -> Duration {
    let base = (25u64 << (n.saturating_sub(1)).min(4)).min(250);
    let jittered = rand::rng().random_range(base / 2..=base);
    Duration::from_millis(jittered)
}

/// Seconds per budget bucket, and buckets per window (10 s).
const BUCKETS: usize = 10;

/// Counts requests and retries over the last 10 seconds in one-second buckets; a retry is
/// allowed while retries < `ratio` × requests + `min_retries`. Counting is approximate under
/// races (a bucket reset may lose a few counts), which a budget tolerates.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    min_retries: u64,
    epoch: Instant,
    /// Per bucket: the second it holds, requests, retries.
    seconds: [AtomicU64; BUCKETS],
    requests: [AtomicU64; BUCKETS],
    retries: [AtomicU64; BUCKETS],
}

impl RetryBudget {
    fn new(ratio: f64, min_retries: u32) -> Self {
        Self {
            ratio,
            min_retries: u64::from(min_retries),
            epoch: Instant::now(),
            seconds: Default::default(),
            requests: Default::default(),
            retries: Default::default(),
        }
    }

    fn bucket(&self) -> usize {
        let now = self.epoch.elapsed().as_secs() + 1; // 0 marks an unused bucket
        let i = (now % BUCKETS as u64) as usize;
        if self.seconds[i].swap(now, Ordering::Relaxed) != now {
            self.requests[i].store(0, Ordering::Relaxed);
            self.retries[i].store(0, Ordering::Relaxed);
        }
        i
    }

    fn totals(&self) -> (u64, u64) {
        let now = self.epoch.elapsed().as_secs() + 1;
        let mut totals = (0, 0);
        for i in 0..BUCKETS {
            let s = self.seconds[i].load(Ordering::Relaxed);
            if s != 0 && now - s < BUCKETS as u64 {
                totals.0 += self.requests[i].load(Ordering::Relaxed);
                totals.1 += self.retries[i].load(Ordering::Relaxed);
            }
        }
        totals
    }

    /// Counts a client request.
    pub fn record_request(&self) {
        let i = self.bucket();
        self.requests[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget; false if it is spent.
    pub fn try_retry(&self) -> bool {
        let (requests, retries) = self.totals();
        if retries as f64 >= self.ratio * requests as f64 + self.min_retries as f64 {
            return false;
        }
        let i = self.bucket();
        self.retries[i].fetch_add(1, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse_or_explain() {
        assert_eq!(RetryOn::parse("503"), Ok(RetryOn::Status(503)));
        assert_eq!(RetryOn::parse("5xx"), Ok(RetryOn::Any5xx));
        assert!(RetryOn::parse("200").unwrap_err().contains("unknown retry condition"));
        assert!(RetryOn::parse("sometimes").is_err());
    }

    #[test]
    fn only_idempotent_methods_retry_after_sending() {
        let p = RetryPolicy::new(&UpstreamConfig::default()).unwrap();
        let connect = GatewayError::UpstreamConnect("refused".into());
        assert!(p.retryable(&Method::POST, &Err(&connect)), "nothing was sent");
        assert!(!p.retryable(&Method::POST, &Err(&GatewayError::UpstreamTimeout)));
        assert!(p.retryable(&Method::GET, &Err(&GatewayError::UpstreamTimeout)));
        assert!(p.retryable(&Method::PUT, &Ok(StatusCode::SERVICE_UNAVAILABLE)));
        assert!(!p.retryable(&Method::GET, &Ok(StatusCode::INTERNAL_SERVER_ERROR)), "500 is not in the default list");
        assert!(!p.retryable(&Method::GET, &Err(&GatewayError::UpstreamProtocol("reset".into()))), "reset not listed");
    }

    #[test]
    fn the_budget_allows_a_ratio_of_the_requests_plus_a_floor() {
        let b = RetryBudget::new(0.2, 3);
        let allowed = (0..10).filter(|_| b.try_retry()).count();
        assert_eq!(allowed, 3, "the floor alone");
        for _ in 0..100 {
            b.record_request();
        }
        let more = (0..100).filter(|_| b.try_retry()).count();
        assert_eq!(more, 20, "0.2 × 100 requests");
    }

    /// On a paused clock: retries spent come back exactly when they leave the 10 s window (fails
    /// if the window were longer or shorter by a bucket).
    #[tokio::test(start_paused = true)]
    async fn spent_retries_come_back_when_they_leave_the_ten_second_window() {
        let b = RetryBudget::new(0.0, 2);
        assert!(b.try_retry() && b.try_retry());
        assert!(!b.try_retry(), "the floor is spent");
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert!(!b.try_retry(), "1 ms before they leave the window");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(b.try_retry() && b.try_retry(), "10 s later both are back");
        assert!(!b.try_retry());
    }

    /// On a paused clock, the pause before retry `n` lasts what `backoff` drew: between half and
    /// all of 25 ms doubling per retry, capped at 250 ms (fails if the base, the doubling or the
    /// cap changed).
    #[tokio::test(start_paused = true)]
    async fn backoff_pauses_follow_the_doubling_capped_schedule() {
        let schedule = [25, 50, 100, 200, 250, 250, 250, 250];
        for (n, full) in (1..).zip(schedule) {
            for _ in 0..50 {
                let pause = backoff(n);
                let start = Instant::now();
                tokio::time::sleep(pause).await;
                assert_eq!(start.elapsed(), pause, "the clock moves only by the pause");
                assert!((full / 2..=full).contains(&pause.as_millis()), "retry {n}: {pause:?} (schedule {full} ms)");
            }
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for _ in 0..50 {
            assert!((12..=25).contains(&backoff(1).as_millis()));
            assert!((25..=50).contains(&backoff(2).as_millis()));
            assert!((125..=250).contains(&backoff(9).as_millis()));
        }
    }
}
