//! A build without the `wasm` feature runs no plugins: every route's chain is empty (validation
//! refuses any configuration naming plugins).

use super::exchange::{ChainResult, Exchange};

/// The plugin versions a request runs with: none in this build.
#[derive(Debug, Default)]
pub struct Pinned(());

/// A route's plugins, in order: always empty in a build without the `wasm` feature.
#[derive(Debug, Default)]
pub struct PluginChain;

impl PluginChain {
    /// Always true: this build runs no plugins.
    pub fn is_empty(&self) -> bool {
        true
    }

    /// Nothing to run.
    pub fn on_request(&self, _: &mut Exchange, _: &mut Pinned) -> Result<ChainResult, crate::error::GatewayError> {
        Ok(ChainResult::Continue)
    }

    /// Never: nothing ran.
    pub fn wants_response(&self, _: &Pinned) -> bool {
        false
    }

    /// Nothing to run.
    pub fn on_response(&self, _: &mut Exchange, _: &Pinned) -> Result<ChainResult, crate::error::GatewayError> {
        Ok(ChainResult::Continue)
    }
}
