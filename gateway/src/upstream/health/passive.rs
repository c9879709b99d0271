//! Passive health (outlier detection): a backend that fails `consecutive_failures` attempts in
//! a row is ejected for `base_ejection`, doubling with each ejection up to `max_ejection`,
//! unless that would put more than `max_ejected_percent` of its pool out at once. The state is
//! three atomics per backend; a request's attempt updates it without a lock. Ejections are timed
//! on tokio's clock: the monotonic clock, except in a test that pauses it.

use std::{
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
    time::Duration,
};

use tokio::time::Instant;

use crate::config::OutlierConfig;

/// One backend's passive-health state.
#[derive(Debug, Default)]
pub struct PassiveHealth {
    /// Failed attempts in a row.
    consecutive_failures: AtomicU32,
    /// Ejected until this many ms after [`clock_epoch`] (0: not ejected).
    ejected_until_ms: AtomicU64,
    /// Ejections so far (each one lasts twice the previous, up to the cap).
    ejections: AtomicU32,
}

/// An ejection decided by [`PassiveHealth::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejected {
    /// The failures in a row that caused it.
    pub failures: u32,
    /// How long it lasts.
    pub length: Duration,
}

/// The origin of the ejection clock (process-wide, monotonic).
fn clock_epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    clock_epoch().elapsed().as_millis() as u64 + 1
}

impl PassiveHealth {
    /// Whether the backend is ejected now.
    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && now_ms() < until
    }

    /// Ends an ejection (and forgets the failures); returns whether there was one.
    pub fn lift(&self) -> bool {
        let was = self.is_ejected();
        self.ejected_until_ms.store(0, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        was
    }

    /// Records an attempt's outcome. After `consecutive_failures` failures in a row the backend
    /// is ejected, unless `ejected_in_pool` (how many of the pool's `pool_size` backends are out
    /// now) says one more would leave too few: `max_ejected_percent` of them, but always one
    /// of a pool of two or more, never the last.
    pub fn record(
        &self,
        failed: bool,
        outlier: &OutlierConfig,
        pool_size: usize,
        ejected_in_pool: impl FnOnce() -> usize,
    ) -> Option<Ejected> {
        if !failed {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            return None;
        }
        let threshold = outlier.consecutive_failures;
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if threshold == 0 || failures < threshold || self.is_ejected() {
            return None;
        }
        let allowed = pool_size * outlier.max_ejected_percent as usize / 100;
        if ejected_in_pool() + 1 > allowed.max(if pool_size > 1 { 1 } else { 0 }) {
            return None; // ejecting it would leave too few backends
        }
        let n = self.ejections.fetch_add(1, Ordering::Relaxed);
        let length = outlier.base_ejection.0.saturating_mul(1 << n.min(16)).min(outlier.max_ejection.0);
        self.ejected_until_ms.store(now_ms() + length.as_millis() as u64, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        Some(Ejected { failures, length })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;

    fn outlier() -> OutlierConfig {
        OutlierConfig {
            consecutive_failures: 3,
            base_ejection: HumanDuration::secs(10),
            max_ejection: HumanDuration::secs(25),
            max_ejected_percent: 50,
        }
    }

    #[test]
    fn ejects_after_the_threshold_and_doubles_up_to_the_cap() {
        let p = PassiveHealth::default();
        let o = outlier();
        assert_eq!(p.record(true, &o, 4, || 0), None);
        assert_eq!(p.record(true, &o, 4, || 0), None);
        assert_eq!(p.record(true, &o, 4, || 0), Some(Ejected { failures: 3, length: Duration::from_secs(10) }));
        assert!(p.is_ejected());
        assert!(p.lift());
        for _ in 0..2 {
            p.record(true, &o, 4, || 0);
        }
        assert_eq!(p.record(true, &o, 4, || 0).map(|e| e.length), Some(Duration::from_secs(20)));
        p.lift();
        for _ in 0..2 {
            p.record(true, &o, 4, || 0);
        }
        assert_eq!(p.record(true, &o, 4, || 0).map(|e| e.length), Some(Duration::from_secs(25)), "capped");
    }

    /// On a paused clock: an ejection ends exactly when its length has passed, and the next
    /// one lasts twice as long (fails if a length or the clock were off by a millisecond).
    #[tokio::test(start_paused = true)]
    async fn an_ejection_ends_when_its_length_has_passed_and_the_next_lasts_twice_as_long() {
        let p = PassiveHealth::default();
        let o = outlier();
        for length in [10_000, 20_000] {
            p.record(true, &o, 4, || 0);
            p.record(true, &o, 4, || 0);
            let ejected = p.record(true, &o, 4, || 0).expect("ejected at the threshold");
            assert_eq!(ejected.length, Duration::from_millis(length));
            tokio::time::advance(Duration::from_millis(length - 1)).await;
            assert!(p.is_ejected(), "1 ms before the end of a {length} ms ejection");
            tokio::time::advance(Duration::from_millis(1)).await;
            assert!(!p.is_ejected(), "after {length} ms");
        }
    }

    #[test]
    fn a_success_resets_the_count_and_the_pool_keeps_enough_backends() {
        let p = PassiveHealth::default();
        let o = outlier();
        p.record(true, &o, 4, || 0);
        p.record(true, &o, 4, || 0);
        p.record(false, &o, 4, || 0);
        assert_eq!(p.record(true, &o, 4, || 0), None, "the count started again");
        // Half of four may be out: two already are.
        p.record(true, &o, 4, || 2);
        assert_eq!(p.record(true, &o, 4, || 2), None);
        // A lone backend is never ejected.
        let lone = PassiveHealth::default();
        assert!((0..5).all(|_| lone.record(true, &o, 1, || 0).is_none()));
    }
}
