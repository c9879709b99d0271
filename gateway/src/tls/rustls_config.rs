//! The HTTPS listener's rustls configuration.

use std::sync::Arc;

use rustls::ServerConfig;

use super::{client_auth::SwappableVerifier, provider::provider, sni::SniResolver};

/// The rustls configuration of an HTTPS listener: the certificates of `resolver`, TLS 1.2 and
/// 1.3 (or 1.3 only), ALPN `h2` then `http/1.1` (and `acme-tls/1` when `acme_alpn`, for
/// TLS-ALPN-01 validations), client certificates checked by `client_auth` when the listener
/// asks for them.
pub fn server_config(
    resolver: Arc<SniResolver>,
    tls13_only: bool,
    client_auth: Option<Arc<SwappableVerifier>>,
    acme_alpn: bool,
) -> Result<ServerConfig, rustls::Error> {
    let versions: &[&rustls::SupportedProtocolVersion] =
        if tls13_only { &[&rustls::version::TLS13] } else { &[&rustls::version::TLS13, &rustls::version::TLS12] };
    let builder = ServerConfig::builder_with_provider(provider()).with_protocol_versions(versions)?;
    let builder = match client_auth {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if acme_alpn {
        // Last: a client offering it with another protocol never gets it.
        config.alpn_protocols.push(super::sni::ACME_TLS_ALPN.to_vec());
    }
    Ok(config)
}
