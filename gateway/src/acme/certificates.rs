//! What the listeners need of ACME: the certificate served for the configured domains (issued,
//! or self-signed until it is), and the challenges being validated now.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
};

use arc_swap::ArcSwap;
use rustls::{
    pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer},
    sign::CertifiedKey,
};

use crate::tls::{
    LoadedCertificate,
    certs::{PairError, parse_pair, unix_now},
    provider,
};

/// Where the certificate being served comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Issued by the ACME directory (now, or found in the state directory at start).
    Acme,
    /// Made by the gateway while no issued certificate exists.
    SelfSigned,
}

impl Source {
    /// As `/admin/certificates` says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acme => "acme",
            Self::SelfSigned => "self-signed",
        }
    }
}

/// A certificate served for the ACME domains.
#[derive(Clone, Debug)]
pub struct Served {
    /// The certificate and what was read from it.
    pub certificate: LoadedCertificate,
    /// Issued or self-signed.
    pub source: Source,
}

/// The ACME domains' certificate and the pending challenges, shared by the HTTPS listener's
/// resolver, the plain listener (HTTP-01) and the renewal task.
#[derive(Debug)]
pub struct AcmeCertificates {
    domains: Vec<String>,
    served: ArcSwap<Served>,
    /// HTTP-01: token → key authorization.
    http01: Mutex<HashMap<String, String>>,
    /// TLS-ALPN-01: domain → the validation certificate.
    alpn: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl AcmeCertificates {
    /// Serves a self-signed certificate for `domains` (lower-case) until one is installed.
    pub fn new(domains: Vec<String>) -> Result<Self, String> {
        let fallback = self_signed(&domains)?;
        Ok(Self { domains, served: ArcSwap::from_pointee(fallback), http01: Mutex::default(), alpn: Mutex::default() })
    }

    /// The configured domains.
    pub fn domains(&self) -> &[String] {
        &self.domains
    }

    /// Whether a client naming `server_name` (lower-case) gets this certificate.
    pub fn covers(&self, server_name: &str) -> bool {
        self.domains.iter().any(|d| d == server_name)
    }

    /// The certificate served now.
    pub fn served(&self) -> Arc<Served> {
        self.served.load_full()
    }

    /// Serves `certificate` from the next handshake on.
    pub fn install(&self, certificate: LoadedCertificate, source: Source) {
        self.served.store(Arc::new(Served { certificate, source }));
    }

    /// The key authorization for an HTTP-01 `token`, while its challenge is pending.
    pub fn http01(&self, token: &str) -> Option<String> {
        lock(&self.http01).get(token).cloned()
    }

    /// The TLS-ALPN-01 validation certificate for `server_name`, while its challenge is pending.
    pub fn alpn_certificate(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        lock(&self.alpn).get(&server_name.to_ascii_lowercase()).cloned()
    }

    /// Answers an HTTP-01 challenge from now on.
    pub fn add_http01(&self, token: String, key_authorization: String) {
        lock(&self.http01).insert(token, key_authorization);
    }

    /// Answers a TLS-ALPN-01 challenge for `domain` from now on: a self-signed certificate for
    /// the domain alone, holding the key authorization's digest in the critical
    /// `acmeIdentifier` extension (RFC 8737).
    pub fn add_alpn(&self, domain: &str, digest: &[u8]) -> Result<(), String> {
        let mut params =
            rcgen::CertificateParams::new(vec![domain.to_owned()]).map_err(|e| format!("{domain}: {e}"))?;
        params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
        let key_pair = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params.self_signed(&key_pair).map_err(|e| e.to_string())?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
        // Not `CertifiedKey::from_der`: its key check parses the certificate, and webpki refuses
        // the critical extension it does not know.
        let signer = provider().key_provider.load_private_key(key).map_err(|e| e.to_string())?;
        lock(&self.alpn).insert(domain.to_owned(), Arc::new(CertifiedKey::new(vec![cert.der().clone()], signer)));
        Ok(())
    }

    /// Stops answering every challenge (the order is over, either way).
    pub fn clear_challenges(&self) {
        lock(&self.http01).clear();
        lock(&self.alpn).clear();
    }
}

impl crate::tls::sni::ManagedCertificates for AcmeCertificates {
    fn covers(&self, server_name: &str) -> bool {
        AcmeCertificates::covers(self, server_name)
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.served().certificate.key.clone()
    }

    fn validation_certificate(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        self.alpn_certificate(server_name)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A certificate from PEM text (a chain, leaf first, and its key), checked as a configured
/// one is: the pair matches and the leaf is valid now.
pub fn from_pem(chain: &str, key: &str, label: &Path) -> Result<LoadedCertificate, String> {
    parse_pair(label, chain.as_bytes(), label, key.as_bytes(), unix_now()).map_err(|e| match e {
        PairError::Cert(m) | PairError::Key(m) => m,
    })
}

/// The stand-in: self-signed for the domains (a fresh key each start; never written to disk).
fn self_signed(domains: &[String]) -> Result<Served, String> {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(domains.to_vec()).map_err(|e| format!("self-signed certificate: {e}"))?;
    let certificate = from_pem(&cert.pem(), &signing_key.serialize_pem(), Path::new("(self-signed)"))?;
    Ok(Served { certificate, source: Source::SelfSigned })
}
