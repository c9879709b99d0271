//! Automatic certificates (ACME, RFC 8555) for the HTTPS listener: `server.tls.acme`.
//!
//! One certificate for the configured `domains`, obtained from the ACME `directory` with the
//! HTTP-01 or TLS-ALPN-01 challenge, kept in `state_dir` (the account key, the certificate
//! and its key) and renewed at two thirds of its lifetime. Until a certificate is issued (or
//! found in `state_dir` at start) a self-signed one for the domains is served, so the listener
//! never waits for the CA. A failed order keeps the certificate being served, is counted
//! (`rustygate_acme_orders_total{result="failed"}`) and logged in one line, and is retried with
//! jittered exponential backoff.
//!
//! Why instant-acme (docs/security.md, "ACME"): a small RFC 8555 client on the hyper, rustls
//! and aws-lc-rs the gateway already links, with both challenges, and no resolver, cache
//! layout or runtime of its own — the gateway's SNI resolver stays the one place certificates
//! are chosen.

pub mod certificates;
pub mod issuer;
pub mod renewal;
pub mod state_dir;

pub use certificates::{AcmeCertificates, Source};
pub use issuer::Issuer;

pub use crate::tls::sni::ACME_TLS_ALPN;

/// The path prefix of HTTP-01 challenges (RFC 8555 §8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

use std::sync::{Arc, atomic::AtomicBool};

use crate::config::{AcmeChallenge, AcmeConfig};

/// ACME for the HTTPS listener: the certificates it serves and the issuer that renews them.
#[derive(Debug)]
pub struct Acme {
    /// What the listeners serve and answer.
    pub certificates: Arc<AcmeCertificates>,
    /// The orders.
    pub issuer: Arc<Issuer>,
    started: AtomicBool,
}

impl Acme {
    /// From `server.tls.acme` (checked): the self-signed stand-in is served from now on.
    pub fn new(config: &AcmeConfig) -> Result<Self, String> {
        let domains = config.domains.iter().map(|d| d.trim_end_matches('.').to_ascii_lowercase()).collect();
        let certificates = Arc::new(AcmeCertificates::new(domains)?);
        let challenge = match config.challenge {
            AcmeChallenge::Http01 => issuer::Challenge::Http01,
            AcmeChallenge::TlsAlpn01 => issuer::Challenge::TlsAlpn01,
        };
        let issuer = Issuer::new(
            config.directory.clone(),
            config.email.as_deref(),
            challenge,
            config.directory_ca_file.as_deref(),
            &config.state_dir,
            certificates.clone(),
        )?;
        Ok(Self { certificates, issuer: Arc::new(issuer), started: AtomicBool::new(false) })
    }

    /// Whether the HTTPS listener must offer ALPN `acme-tls/1`.
    pub fn answers_on_tls(&self) -> bool {
        self.issuer.challenge == issuer::Challenge::TlsAlpn01
    }

    /// Starts the renewal task on `background` (once: later calls do nothing), once the
    /// listeners that answer the challenges are bound.
    pub fn start(&self, background: &tokio::runtime::Handle, metrics: &crate::metrics::Metrics) {
        if self.started.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let (issuer, orders, expiry) =
            (self.issuer.clone(), metrics.acme_orders_total.clone(), metrics.tls_certificate_expiry.clone());
        for result in ["issued", "failed"] {
            orders.with_label_values(&[result]);
        }
        background.spawn(renewal::run(issuer, orders, move |cert| {
            let name = cert.names.first().cloned().unwrap_or_else(|| cert.subject.clone());
            expiry.with_label_values(&[&name]).set(cert.not_after as f64);
        }));
    }
}
