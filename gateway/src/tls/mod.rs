//! TLS on the proxy listener (docs/security.md, "TLS"): the served certificates, chosen by the
//! client's SNI, and what a connection negotiated, for the pipeline and the access log.
//!
//! rustls with the aws-lc-rs crypto provider, the one jsonwebtoken and reqwest use: one
//! provider in the whole binary. This module knows files and rustls, not the configuration's
//! types (the configuration's checks call it to load what a config names).

pub mod certs;
pub mod client_auth;
pub mod connection;
pub mod provider;
pub mod rustls_config;
pub mod served;
pub mod sni;
pub mod upstream;

pub use certs::{LoadedCertificate, load_pair};
pub use client_auth::{ClientAuth, ClientIdentity, SwappableVerifier};
pub use connection::ConnectionTls;
pub use provider::provider;
pub use rustls_config::server_config;
pub use served::ServedCertificates;
pub use sni::SniResolver;
