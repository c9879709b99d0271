//! WASM plugins (docs/plugins.md): a route's chain of sandboxed modules run on the request
//! (`on_request`, before the upstream request) and on the backend's response (`on_response`).
//!
//! [`Exchange`] is what a chain reads and edits; it is plain HTTP data and exists in every
//! build. The engine (wasmer, metering, the instance pools, the file watcher) exists only with
//! the `wasm` feature; without it a route's [`PluginChain`] is always empty, because validation
//! refuses any configuration naming plugins.

use actix_web::http::{Method, StatusCode, header::HeaderMap};
use bytes::Bytes;

#[cfg(feature = "wasm")]
mod chain;
#[cfg(feature = "wasm")]
mod engine;
#[cfg(feature = "wasm")]
#[doc(hidden)]
pub mod fuzz;
#[cfg(feature = "wasm")]
mod host;
#[cfg(feature = "wasm")]
mod memory_cap;
#[cfg(feature = "wasm")]
mod pool;
#[cfg(feature = "wasm")]
mod registry;

#[cfg(feature = "wasm")]
pub use chain::{PluginChain, RoutePlugin};
#[cfg(feature = "wasm")]
pub use registry::{PluginRegistry, PluginStatus, Resolved};

/// Which guest export runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Hook {
    /// `on_request`: after the route's policies, before the upstream request.
    #[default]
    Request,
    /// `on_response`: when the backend's response head arrives.
    Response,
}

impl Hook {
    /// The `hook` label and the export's name.
    pub fn label(self) -> &'static str {
        match self {
            Self::Request => "on_request",
            Self::Response => "on_response",
        }
    }
}

/// The request (and later the response) as a route's plugins see and edit it. One exchange
/// goes through the whole chain, so each plugin sees the edits of the ones before it.
#[derive(Debug, Default)]
pub struct Exchange {
    /// The hook being run.
    pub hook: Hook,
    /// The request method.
    pub method: Method,
    /// The path sent upstream (after `strip_prefix`); `rg_set_path` rewrites it.
    pub path: String,
    /// The query sent upstream, without `?` (a token taken from it by the JWT policy is gone).
    pub query: Option<String>,
    /// The client's headers as they will be forwarded (the gateway then sets `Host`,
    /// `X-Forwarded-*`, `Via` and `X-Request-Id` itself).
    pub request_headers: HeaderMap,
    /// The backend's status (`on_response` only).
    pub status: Option<StatusCode>,
    /// In `on_request`: headers to set on whatever response the client gets. In `on_response`:
    /// the backend's response headers.
    pub response_headers: HeaderMap,
    /// The answer of a plugin that returned action 1 (`rg_respond`).
    pub respond: Option<(StatusCode, Bytes)>,
    /// The route's JWT policy: its claim headers are reserved (plugins cannot forge them).
    /// (Read by the host imports, which only a `wasm` build has.)
    #[cfg_attr(not(feature = "wasm"), allow(dead_code))]
    claim_headers: Option<std::sync::Arc<crate::filters::jwt::JwtPolicy>>,
    /// The snapshot's header rules: every policy's claim headers and underscored names are
    /// reserved too, on every route.
    #[cfg_attr(not(feature = "wasm"), allow(dead_code))]
    header_rules: std::sync::Arc<crate::proxy::headers::RequestHeaderRules>,
    /// The plugin versions `on_request` ran with, one per chain entry: `on_response` runs the
    /// same ones, so a plugin swapped mid-request does not mix versions within the request.
    #[cfg(feature = "wasm")]
    pinned: Vec<Option<std::sync::Arc<engine::CompiledPlugin>>>,
}

impl Exchange {
    /// The exchange of a request about to go upstream with `path`, `query` and `headers` (the
    /// client's, as they will be forwarded); `auth` is the route's JWT policy, whose claim
    /// headers plugins may not touch.
    pub fn for_request(
        method: Method,
        path: String,
        query: Option<String>,
        headers: HeaderMap,
        auth: Option<std::sync::Arc<crate::filters::jwt::JwtPolicy>>,
        header_rules: std::sync::Arc<crate::proxy::headers::RequestHeaderRules>,
    ) -> Self {
        Self { method, path, query, request_headers: headers, claim_headers: auth, header_rules, ..Self::default() }
    }
}

/// A route's plugins, in order: always empty in a build without the `wasm` feature.
#[cfg(not(feature = "wasm"))]
#[derive(Debug, Default)]
pub struct PluginChain;

#[cfg(not(feature = "wasm"))]
impl PluginChain {
    /// Always true: this build runs no plugins.
    pub fn is_empty(&self) -> bool {
        true
    }

    /// Nothing to run.
    pub fn on_request(&self, _: &mut Exchange) -> Result<ChainResult, crate::error::GatewayError> {
        Ok(ChainResult::Continue)
    }

    /// Never: nothing ran.
    pub fn wants_response(&self, _: &Exchange) -> bool {
        false
    }

    /// Nothing to run.
    pub fn on_response(&self, _: &mut Exchange) -> Result<ChainResult, crate::error::GatewayError> {
        Ok(ChainResult::Continue)
    }
}

/// What a chain decided.
#[derive(Debug)]
pub enum ChainResult {
    /// Go on (to the backend, or to the client with the backend's response).
    Continue,
    /// A plugin answered: send this instead (the backend is not called, or its answer is replaced).
    Respond(actix_web::HttpResponse),
}
