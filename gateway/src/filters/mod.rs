//! The built-in per-route policies, compiled from configuration. Each is a
//! `pipeline::filter::Filter` in the route's chain, in this order: CORS (preflights carry no
//! credentials, so they are answered first), JWT auth, then rate limiting (after auth, so a limit
//! can key on a claim); the route's plugins come after them (`plugins::PluginFilter`).

pub mod cors;
pub mod jwt;
pub mod rate_limit;
