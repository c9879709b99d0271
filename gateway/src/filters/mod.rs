//! Per-route policies compiled from configuration and applied by the pipeline. Each runs at a
//! fixed place in the pipeline's order (see `pipeline/mod.rs`): CORS preflight first (preflights
//! carry no credentials), then — as they land — auth, rate limiting and plugins.

pub mod cors;
