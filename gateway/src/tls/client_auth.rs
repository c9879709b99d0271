//! Client certificates on the HTTPS listener (mTLS): the CA bundle they must chain to, a
//! verifier that can be swapped when the bundle's file changes, and the identity a verified
//! certificate gives the request (forwarded as `X-Client-Cert-*`).

use std::{path::Path, sync::Arc};

use arc_swap::ArcSwap;
use rustls::{
    DigitallySignedStruct, DistinguishedName, Error, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    pki_types::{CertificateDer, UnixTime},
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};
use sha2::{Digest, Sha256};

use super::provider::provider;
use crate::{
    headers::{X_CLIENT_CERT_SAN, X_CLIENT_CERT_SHA256, X_CLIENT_CERT_SUBJECT},
    http_types::{HeaderName, HeaderValue},
};

/// Whether the listener asks for a client certificate, and whether it requires one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Asked for; a client without one is served (routes may still require one).
    Optional,
    /// Required: a client without a valid one fails the handshake.
    Required,
}

/// The CA certificates of a PEM bundle, as a rustls verifier for `mode`.
pub fn load_verifier(ca_file: &Path, mode: ClientAuth) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let roots = super::certs::load_ca_bundle(ca_file)?;
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    let builder = match mode {
        ClientAuth::Optional => builder.allow_unauthenticated(),
        ClientAuth::Required => builder,
    };
    builder.build().map_err(|e| format!("{}: {e}", ca_file.display()))
}

/// A client-certificate verifier whose CA bundle can be replaced while the listener runs: new
/// handshakes use the new one. It sends no list of acceptable CAs to clients (the hint is
/// optional in TLS; clients offer the certificate they were given).
#[derive(Debug)]
pub struct SwappableVerifier {
    mode: ClientAuth,
    inner: ArcSwap<Arc<dyn ClientCertVerifier>>,
}

impl SwappableVerifier {
    /// A verifier for `mode`, checking against `verifier`'s CAs.
    pub fn new(mode: ClientAuth, verifier: Arc<dyn ClientCertVerifier>) -> Self {
        Self { mode, inner: ArcSwap::from_pointee(verifier) }
    }

    /// Checks new handshakes against `verifier`'s CAs.
    pub fn replace(&self, verifier: Arc<dyn ClientCertVerifier>) {
        self.inner.store(Arc::new(verifier));
    }

    /// The mode it was made for.
    pub fn mode(&self) -> ClientAuth {
        self.mode
    }
}

impl ClientCertVerifier for SwappableVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mode == ClientAuth::Required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.inner.load().verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.load().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.load().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.load().supported_verify_schemes()
    }
}

/// What a verified client certificate says about the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The subject, as RFC 4514-like text (`CN=ops, O=Example`).
    pub subject: String,
    /// The subject alternative names: `DNS:…`, `URI:…`, `email:…`, in the certificate's order.
    pub sans: Vec<String>,
    /// The SHA-256 of the certificate's DER, lower-case hex.
    pub sha256: String,
    /// `X-Client-Cert-Subject`, `-SAN` and `-SHA256` as they go upstream, made once per
    /// connection. A value a header cannot carry (a control character or non-ASCII text in a
    /// name) is left out rather than forwarded altered; a `,` inside a SAN is written `%2C`, so
    /// that the list's `, ` separator cannot be forged from inside one name.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ClientIdentity {
    /// Reads a (verified) client certificate; `None` if it cannot be parsed.
    pub fn of(cert: &CertificateDer<'_>) -> Option<Self> {
        use x509_parser::extensions::GeneralName;
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
        let mut sans = Vec::new();
        if let Ok(Some(san)) = parsed.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => sans.push(format!("DNS:{n}")),
                    GeneralName::URI(u) => sans.push(format!("URI:{u}")),
                    GeneralName::RFC822Name(e) => sans.push(format!("email:{e}")),
                    _ => {}
                }
            }
        }
        let subject = parsed.subject().to_string();
        let sha256 = hex::encode(Sha256::digest(cert.as_ref()));
        let san_list = sans.iter().map(|s| s.replace(',', "%2C")).collect::<Vec<_>>().join(", ");
        let headers =
            [(X_CLIENT_CERT_SUBJECT, &subject), (X_CLIENT_CERT_SAN, &san_list), (X_CLIENT_CERT_SHA256, &sha256)]
                .into_iter()
                .filter_map(|(name, value)| HeaderValue::from_str(value).ok().map(|v| (name, v)))
                .collect();
        Some(Self { subject, sans, sha256, headers })
    }
}

/// The listener's client CA as a reloadable verifier: loaded again when the bundle's bytes
/// change; a bundle that fails to load leaves the one in use.
#[derive(Debug)]
pub struct ClientCa {
    verifier: Arc<SwappableVerifier>,
    loaded: std::sync::Mutex<(std::path::PathBuf, Vec<u8>)>,
}

impl ClientCa {
    /// Loads the bundle at `ca_file` for `mode`.
    pub fn load(ca_file: &Path, mode: ClientAuth) -> Result<Self, String> {
        let bytes = std::fs::read(ca_file).map_err(|e| format!("cannot read {}: {e}", ca_file.display()))?;
        let verifier = Arc::new(SwappableVerifier::new(mode, load_verifier(ca_file, mode)?));
        Ok(Self { verifier, loaded: std::sync::Mutex::new((ca_file.to_owned(), bytes)) })
    }

    /// The verifier the listener's rustls configuration holds.
    pub fn verifier(&self) -> Arc<SwappableVerifier> {
        self.verifier.clone()
    }

    /// Checks new handshakes against `ca_file` if it differs from the bundle in use. `Ok(true)`:
    /// replaced; `Ok(false)`: unchanged; `Err`: it failed to load and the old one stays.
    pub fn refresh(&self, ca_file: &Path) -> Result<bool, String> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = std::fs::read(ca_file).map_err(|e| format!("cannot read {}: {e}", ca_file.display()))?;
        if loaded.0 == ca_file && loaded.1 == bytes {
            return Ok(false);
        }
        self.verifier.replace(load_verifier(ca_file, self.verifier.mode())?);
        *loaded = (ca_file.to_owned(), bytes);
        Ok(true)
    }
}
