//! WASM plugins (docs/plugins.md): a route's chain of sandboxed modules run on the request
//! (`on_request`, before the upstream request) and on the backend's response (`on_response`).
//!
//! [`Exchange`] is what a chain reads and edits; it is plain HTTP data and exists in every
//! build. The engine (wasmer, metering, the instance pools, the file watcher) exists only with
//! the `wasm` feature; without it a route's [`PluginChain`] is always empty, because validation
//! refuses any configuration naming plugins.

#[cfg(feature = "wasm")]
mod chain;
#[cfg(feature = "wasm")]
mod engine;
mod exchange;
mod filter;
#[cfg(feature = "wasm")]
#[doc(hidden)]
pub mod fuzz;
#[cfg(feature = "wasm")]
mod host;
#[cfg(feature = "wasm")]
mod memory_cap;
#[cfg(not(feature = "wasm"))]
mod no_engine;
#[cfg(feature = "wasm")]
mod pool;
#[cfg(feature = "wasm")]
mod registry;

#[cfg(feature = "wasm")]
pub use chain::{Pinned, PluginChain, RoutePlugin};
pub use exchange::{ChainResult, Exchange, Hook};
pub use filter::PluginFilter;
#[cfg(not(feature = "wasm"))]
pub use no_engine::{Pinned, PluginChain};
#[cfg(feature = "wasm")]
pub use registry::{PluginRegistry, PluginStatus, Resolved};
