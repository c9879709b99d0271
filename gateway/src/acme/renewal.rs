//! When to order: at start when nothing valid is stored, then at two thirds of each
//! certificate's lifetime; a failed order is retried after a jittered, doubling pause (1 min
//! up to 1 h), the certificate being served staying in place meanwhile.

use std::{sync::Arc, time::Duration};

use prometheus::IntCounterVec;

use super::{certificates::Source, issuer::Issuer};
use crate::tls::certs::{unix_now, utc};

/// The first pause after a failed order; each further failure doubles it.
const RETRY_FIRST: Duration = Duration::from_secs(60);
/// The longest pause between attempts.
const RETRY_MAX: Duration = Duration::from_secs(3600);

/// When a certificate valid from `not_before` to `not_after` (Unix seconds) is renewed:
/// two thirds into its lifetime.
pub fn renew_at(not_before: i64, not_after: i64) -> i64 {
    not_before + (not_after - not_before).max(0) * 2 / 3
}

/// The pause after the `failures`-th failed order in a row (1-based): 1, 2, 4 … 60 minutes,
/// each between half and all of that (jitter, so gateways that failed together do not retry
/// together).
pub fn retry_pause(failures: u32) -> Duration {
    let full = RETRY_FIRST.saturating_mul(1u32 << failures.saturating_sub(1).min(12)).min(RETRY_MAX);
    full.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

/// Runs for the life of the gateway: serves what the state directory holds, orders when it is
/// missing or due, and keeps renewing. `orders` is `rustygate_acme_orders_total{result}`;
/// `on_new` is called with every certificate installed (for the expiry gauge).
pub async fn run(issuer: Arc<Issuer>, orders: IntCounterVec, on_new: impl Fn(&crate::tls::LoadedCertificate) + Send) {
    match issuer.stored() {
        Ok(Some(cert)) => {
            tracing::info!(
                file = %issuer.certificate_path().display(),
                not_after = %utc(cert.not_after),
                "ACME certificate found in the state directory: served"
            );
            on_new(&cert);
            issuer.certificates.install(cert, Source::Acme);
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "the ACME certificate in the state directory cannot be served: ordering a new one")
        }
    }
    let mut failures = 0u32;
    loop {
        let served = issuer.certificates.served();
        if served.source == Source::Acme {
            let due = renew_at(served.certificate.not_before, served.certificate.not_after);
            let wait = (due - unix_now()).max(0) as u64;
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
        match issuer.issue().await {
            Ok(cert) => {
                failures = 0;
                orders.with_label_values(&["issued"]).inc();
                tracing::info!(
                    domains = ?issuer.certificates.domains(),
                    not_after = %utc(cert.not_after),
                    "ACME certificate issued: served from the next handshake"
                );
                on_new(&cert);
            }
            Err(e) => {
                failures += 1;
                orders.with_label_values(&["failed"]).inc();
                let pause = retry_pause(failures);
                let serving = issuer.certificates.served();
                tracing::warn!(
                    directory = %issuer.directory,
                    error = %e,
                    serving = serving.source.as_str(),
                    serving_not_after = %utc(serving.certificate.not_after),
                    retry_in_s = pause.as_secs(),
                    "ACME order failed: the certificate being served stays"
                );
                tokio::time::sleep(pause).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_at_two_thirds_of_the_lifetime() {
        // 90 days from day 0: day 60.
        assert_eq!(renew_at(0, 90 * 86_400), 60 * 86_400);
        assert_eq!(renew_at(1_000, 1_030), 1_020);
        // A certificate that ends before it starts is due at once.
        assert_eq!(renew_at(500, 100), 500);
    }

    #[test]
    fn retries_back_off_with_jitter_up_to_an_hour() {
        for (failures, full) in [(1, 60), (2, 120), (3, 240), (7, 3600), (40, 3600)] {
            for _ in 0..50 {
                let pause = retry_pause(failures).as_secs_f64();
                assert!(pause >= full as f64 * 0.5 && pause <= full as f64, "{failures}: {pause}");
            }
        }
    }
}
