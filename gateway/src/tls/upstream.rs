//! TLS to `https://` backends: the rustls client configuration of an upstream (its CA bundle,
//! or the system's trusted roots), and what a failed handshake says about the backend.

use std::{
    path::Path,
    sync::{Arc, OnceLock},
};

use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    pki_types::{CertificateDer, ServerName, UnixTime},
};

use super::provider::provider;

/// The system's trusted roots, read once (rustls-native-certs: the OS store, `SSL_CERT_FILE`).
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "a system root certificate could not be read");
            }
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "system roots for https:// backends");
            Arc::new(roots)
        })
        .clone()
}

/// The CA certificates of a PEM bundle.
pub fn load_roots(ca_file: &Path) -> Result<Arc<RootCertStore>, String> {
    super::certs::load_ca_bundle(ca_file).map(Arc::new)
}

/// A configured `server_name`, as rustls takes it: a DNS name or an IP address.
pub fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.to_owned()).map_err(|_| format!("{name:?} is neither a DNS name nor an IP address"))
}

/// The client configuration for an upstream's `https://` backends: verification always on,
/// against `ca_file`'s CAs or the system's roots, for `server_name` when given (else the name
/// each connection is made for: the backend URL's host); the gateway's own certificate for
/// backends that ask for one when `client_cert` (certificate file, key file) is given; ALPN
/// `h2` when `http2` (the upstream's protocol is `h2`), else `http/1.1`.
pub fn client_config(
    ca_file: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
    server_name: Option<&str>,
    http2: bool,
) -> Result<Arc<ClientConfig>, String> {
    let roots = match ca_file {
        Some(path) => load_roots(path)?,
        None => system_roots(),
    };
    let versions = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match server_name {
        None => versions.with_root_certificates(roots),
        Some(name) => {
            let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| format!("cannot verify backends with these roots: {e}"))?;
            let name = self::server_name(name)?;
            versions.dangerous().with_custom_certificate_verifier(Arc::new(NamedVerifier { inner: verifier, name }))
        }
    };
    let mut config = match client_cert {
        Some((cert, key)) => {
            // Checked as a served certificate is (PEM, key match, validity) for the messages.
            let loaded = super::certs::load_pair(cert, key, super::certs::unix_now()).map_err(|e| match e {
                super::certs::PairError::Cert(m) | super::certs::PairError::Key(m) => m,
            })?;
            builder.with_client_cert_resolver(Arc::new(GatewayCertificate(loaded.key)))
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![if http2 { b"h2".to_vec() } else { b"http/1.1".to_vec() }];
    Ok(Arc::new(config))
}

/// The standard verification (chain, validity, name), for the configured name instead of the
/// one a connection was made for: `upstreams.NAME.tls.server_name`. Nothing is relaxed.
#[derive(Debug)]
struct NamedVerifier {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NamedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _connected_for: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The gateway's certificate, offered to every backend that asks for one.
#[derive(Debug)]
struct GatewayCertificate(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for GatewayCertificate {
    fn resolve(&self, _: &[&[u8]], schemes: &[rustls::SignatureScheme]) -> Option<Arc<rustls::sign::CertifiedKey>> {
        // Offered only when its key can sign with a scheme the backend accepts.
        self.0.key.choose_scheme(schemes).map(|_| self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Why a TLS connection to a backend failed, as the `reason` of
/// `rustygate_upstream_tls_errors_total`, if `error` (or what it wraps) is a TLS error.
pub fn failure_reason(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    use rustls::{CertificateError, Error};
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(tls) = e.downcast_ref::<Error>() {
            return Some(match tls {
                Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
                    "certificate_expired"
                }
                Error::InvalidCertificate(
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
                ) => "wrong_host",
                Error::InvalidCertificate(CertificateError::UnknownIssuer) => "unknown_ca",
                Error::InvalidCertificate(_) => "bad_certificate",
                Error::AlertReceived(_) => "alert_received",
                _ => "handshake_failed",
            });
        }
        // An I/O error wrapping the TLS stack's error hides it from `source()`.
        cause = match e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}
