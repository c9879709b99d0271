//! Loading a served certificate: a PEM chain and its key, checked to match, with the names
//! and validity read from the leaf.

use std::{path::Path, sync::Arc};

use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    sign::CertifiedKey,
};

/// A certificate ready to serve, with what the SNI choice and the operators need of it.
#[derive(Debug, Clone)]
pub struct LoadedCertificate {
    /// The chain and the signing key.
    pub key: Arc<CertifiedKey>,
    /// The leaf's DNS names (subject alternative names), lower-case; `*.example.com` for a
    /// wildcard.
    pub names: Vec<String>,
    /// The leaf's subject, as text.
    pub subject: String,
    /// The leaf's issuer, as text.
    pub issuer: String,
    /// The leaf's serial number, hex.
    pub serial: String,
    /// The SHA-256 of the leaf's DER, hex.
    pub sha256: String,
    /// The start of the leaf's validity, in seconds since the Unix epoch.
    pub not_before: i64,
    /// The end of the leaf's validity, in seconds since the Unix epoch.
    pub not_after: i64,
}

/// Why a pair could not be loaded: the certificate file's fault, or the key file's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairError {
    /// About the certificate file.
    Cert(String),
    /// About the key file (a key that does not match the certificate included).
    Key(String),
}

/// Loads a PEM certificate chain (leaf first) and its private key, checks that they match and
/// that the leaf is valid now (`now`: seconds since the Unix epoch).
pub fn load_pair(cert_file: &Path, key_file: &Path, now: i64) -> Result<LoadedCertificate, PairError> {
    let (cert_text, key_text) = read_pair(cert_file, key_file)?;
    parse_pair(cert_file, &cert_text, key_file, &key_text, now)
}

/// The bytes of a certificate file and its key file.
pub fn read_pair(cert_file: &Path, key_file: &Path) -> Result<(Vec<u8>, Vec<u8>), PairError> {
    let cert =
        std::fs::read(cert_file).map_err(|e| PairError::Cert(format!("cannot read {}: {e}", cert_file.display())))?;
    let key =
        std::fs::read(key_file).map_err(|e| PairError::Key(format!("cannot read {}: {e}", key_file.display())))?;
    Ok((cert, key))
}

/// [`load_pair`] on bytes already read (the file names are for messages).
pub fn parse_pair(
    cert_file: &Path,
    cert_text: &[u8],
    key_file: &Path,
    key_text: &[u8],
    now: i64,
) -> Result<LoadedCertificate, PairError> {
    let chain = CertificateDer::pem_slice_iter(cert_text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PairError::Cert(format!("{}: not a PEM certificate chain ({e})", cert_file.display())))?;
    let Some(leaf) = chain.first() else {
        return Err(PairError::Cert(format!("{}: no PEM CERTIFICATE block", cert_file.display())));
    };
    let leaf_facts = read_leaf(leaf).map_err(PairError::Cert)?;
    let (not_before, not_after) = (leaf_facts.not_before, leaf_facts.not_after);
    if now > not_after {
        return Err(PairError::Cert(format!("{}: the certificate expired ({})", cert_file.display(), utc(not_after))));
    }
    if now < not_before {
        return Err(PairError::Cert(format!(
            "{}: the certificate is not valid before {}",
            cert_file.display(),
            utc(not_before)
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(key_text)
        .map_err(|e| PairError::Key(format!("{}: not a PEM private key ({e})", key_file.display())))?;
    let key = CertifiedKey::from_der(chain, key, &super::provider::provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => PairError::Key(format!(
            "{}: the key does not match the certificate {}",
            key_file.display(),
            cert_file.display()
        )),
        other => PairError::Key(format!("{}: unusable key ({other})", key_file.display())),
    })?;
    let LeafFacts { names, subject, issuer, serial, sha256, .. } = leaf_facts;
    Ok(LoadedCertificate { key: Arc::new(key), names, subject, issuer, serial, sha256, not_before, not_after })
}

/// What the loader reads from a leaf.
struct LeafFacts {
    names: Vec<String>,
    subject: String,
    issuer: String,
    serial: String,
    sha256: String,
    not_before: i64,
    not_after: i64,
}

/// The leaf's DNS names, subject, issuer, serial, fingerprint and validity bounds.
fn read_leaf(leaf: &CertificateDer<'_>) -> Result<LeafFacts, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("the first certificate cannot be parsed as X.509 ({e})"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    let validity = cert.validity();
    Ok(LeafFacts {
        names,
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string(),
        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(leaf.as_ref())),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    })
}

/// A Unix time as an RFC 3339 UTC date, for messages and `/admin/certificates`.
pub fn utc(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The CA certificates of a PEM bundle (client certificates' CAs, backends' CAs).
pub fn load_ca_bundle(ca_file: &Path) -> Result<rustls::RootCertStore, String> {
    let text = std::fs::read(ca_file).map_err(|e| format!("cannot read {}: {e}", ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&text) {
        let cert = cert.map_err(|e| format!("{}: not a PEM certificate bundle ({e})", ca_file.display()))?;
        roots.add(cert).map_err(|e| format!("{}: a CA certificate cannot be used ({e})", ca_file.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no PEM CERTIFICATE block", ca_file.display()));
    }
    Ok(roots)
}
