//! The process's one crypto provider.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The process's crypto provider (aws-lc-rs), installed as rustls' default once.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let provider = rustls::crypto::aws_lc_rs::default_provider();
            // Another part of the process may have installed it first: the same provider.
            let _ = provider.clone().install_default();
            Arc::new(provider)
        })
        .clone()
}
