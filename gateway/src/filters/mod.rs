//! The built-in per-route policies, compiled from configuration. Each is a
//! `pipeline::filter::Filter` in the route's chain, in this order: the client-certificate
//! requirement (mTLS: the connection's identity, known before anything else), CORS (preflights carry no
//! credentials, so they are answered first), JWT auth, then rate limiting (after auth, so a limit
//! can key on a claim); the route's plugins come after them (`plugins::PluginFilter`).

pub mod client_cert;
pub mod cors;
pub mod hsts;
pub mod jwt;
pub mod rate_limit;
