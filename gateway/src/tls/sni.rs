//! The certificate for a handshake, by the client's SNI: an exact name first, then a wildcard
//! (`*.example.com` covers one label: `a.example.com`, not `a.b.example.com` nor
//! `example.com`), else the default (the first configured). The set is swapped as a whole.

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;
use rustls::{server::ClientHello, sign::CertifiedKey};

use super::certs::LoadedCertificate;

/// The served certificates, chosen per handshake.
#[derive(Debug)]
pub struct SniResolver {
    current: ArcSwap<Certificates>,
}

#[derive(Debug)]
struct Certificates {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the suffix a wildcard covers (`example.com` for `*.example.com`).
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl Certificates {
    /// The first certificate naming a host wins it; the first certificate is the default.
    fn new(certs: &[LoadedCertificate]) -> Option<Self> {
        let default = certs.first()?.key.clone();
        let (mut exact, mut wildcard) = (HashMap::new(), HashMap::new());
        for cert in certs {
            for name in &cert.names {
                match name.strip_prefix("*.") {
                    Some(suffix) => wildcard.entry(suffix.to_owned()).or_insert_with(|| cert.key.clone()),
                    None => exact.entry(name.clone()).or_insert_with(|| cert.key.clone()),
                };
            }
        }
        Some(Self { exact, wildcard, default })
    }

    fn choose(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = server_name.map(|n| n.trim_end_matches('.').to_ascii_lowercase()) else {
            return self.default.clone();
        };
        if let Some(key) = self.exact.get(&name) {
            return key.clone();
        }
        if let Some((_, parent)) = name.split_once('.')
            && let Some(key) = self.wildcard.get(parent)
        {
            return key.clone();
        }
        self.default.clone()
    }
}

impl SniResolver {
    /// A resolver serving `certs` (at least one: the first is the default).
    pub fn new(certs: &[LoadedCertificate]) -> Option<Self> {
        Certificates::new(certs).map(|c| Self { current: ArcSwap::from_pointee(c) })
    }

    /// Serves `certs` from the next handshake on; handshakes under way keep what they chose.
    pub fn replace(&self, certs: &[LoadedCertificate]) -> bool {
        match Certificates::new(certs) {
            Some(c) => {
                self.current.store(Arc::new(c));
                true
            }
            None => false,
        }
    }

    /// The certificate a client naming `server_name` gets.
    pub fn choose(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        self.current.load().choose(server_name)
    }
}

impl rustls::server::ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.choose(client_hello.server_name()))
    }
}
