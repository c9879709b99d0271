//! Per-route policies compiled from configuration and applied by the pipeline. Each runs at a
//! fixed place in the pipeline's order (see `pipeline/mod.rs`): CORS preflight first (preflights
//! carry no credentials), then JWT auth, then rate limiting (after auth, so a limit can key on a
//! claim); plugins will follow.

pub mod cors;
pub mod jwt;
pub mod rate_limit;
