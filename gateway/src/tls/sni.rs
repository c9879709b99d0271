//! The certificate for a handshake, by the client's SNI: the ACME certificate for its domains
//! (`server.tls.acme`), then an exact name, then a wildcard (`*.example.com` covers one label:
//! `a.example.com`, not `a.b.example.com` nor `example.com`), else the default (the first
//! configured file, or the ACME certificate when there is none). The set of files is swapped
//! as a whole. A TLS-ALPN-01 validation (ALPN `acme-tls/1`) gets the validation certificate of
//! its name, or no certificate at all: never one of the served ones.

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;
use rustls::{server::ClientHello, sign::CertifiedKey};

use super::certs::LoadedCertificate;

/// The ALPN protocol of TLS-ALPN-01 validation connections (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Certificates kept by someone else (ACME: `crate::acme`) that the resolver serves for their
/// own names, with the validation certificates of pending TLS-ALPN-01 challenges.
pub trait ManagedCertificates: std::fmt::Debug + Send + Sync {
    /// Whether a client naming `server_name` (lower-case, no trailing dot) gets [`Self::current`].
    fn covers(&self, server_name: &str) -> bool;
    /// The certificate served for those names now.
    fn current(&self) -> Arc<CertifiedKey>;
    /// The validation certificate for `server_name`, while its challenge is pending.
    fn validation_certificate(&self, server_name: &str) -> Option<Arc<CertifiedKey>>;
}

/// The served certificates, chosen per handshake.
#[derive(Debug)]
pub struct SniResolver {
    current: ArcSwap<Certificates>,
    acme: Option<Arc<dyn ManagedCertificates>>,
}

#[derive(Debug)]
struct Certificates {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the suffix a wildcard covers (`example.com` for `*.example.com`).
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// The first file's; none when only ACME serves.
    default: Option<Arc<CertifiedKey>>,
}

impl Certificates {
    /// The first certificate naming a host wins it; the first certificate is the default.
    fn new(certs: &[LoadedCertificate]) -> Self {
        let default = certs.first().map(|c| c.key.clone());
        let (mut exact, mut wildcard) = (HashMap::new(), HashMap::new());
        for cert in certs {
            for name in &cert.names {
                match name.strip_prefix("*.") {
                    Some(suffix) => wildcard.entry(suffix.to_owned()).or_insert_with(|| cert.key.clone()),
                    None => exact.entry(name.clone()).or_insert_with(|| cert.key.clone()),
                };
            }
        }
        Self { exact, wildcard, default }
    }

    fn choose(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = name else { return self.default.clone() };
        if let Some(key) = self.exact.get(name) {
            return Some(key.clone());
        }
        if let Some((_, parent)) = name.split_once('.')
            && let Some(key) = self.wildcard.get(parent)
        {
            return Some(key.clone());
        }
        self.default.clone()
    }
}

impl SniResolver {
    /// A resolver serving `certs` (the first is the default) and the ACME certificate, if
    /// any; `None` when it would have nothing to serve.
    pub fn new(certs: &[LoadedCertificate], acme: Option<Arc<dyn ManagedCertificates>>) -> Option<Self> {
        (!certs.is_empty() || acme.is_some())
            .then(|| Self { current: ArcSwap::from_pointee(Certificates::new(certs)), acme })
    }

    /// Serves `certs` from the next handshake on; handshakes under way keep what they chose.
    /// Refused (false) when it would leave nothing to serve.
    pub fn replace(&self, certs: &[LoadedCertificate]) -> bool {
        if certs.is_empty() && self.acme.is_none() {
            return false;
        }
        self.current.store(Arc::new(Certificates::new(certs)));
        true
    }

    /// The certificate a client naming `server_name` gets (always one: `new` and `replace`
    /// never leave the resolver without).
    pub fn choose(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let name = server_name.map(|n| n.trim_end_matches('.').to_ascii_lowercase());
        if let Some(acme) = &self.acme
            && name.as_deref().is_some_and(|n| acme.covers(n))
        {
            return Some(acme.current());
        }
        // No file: the ACME certificate is the default.
        self.current.load().choose(name.as_deref()).or_else(|| self.acme.as_ref().map(|a| a.current()))
    }
}

impl rustls::server::ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A TLS-ALPN-01 validation connection (RFC 8737): only its validation certificate.
        if let Some(acme) = &self.acme
            && client_hello.alpn().is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN))
        {
            return acme.validation_certificate(client_hello.server_name()?);
        }
        self.choose(client_hello.server_name())
    }
}
