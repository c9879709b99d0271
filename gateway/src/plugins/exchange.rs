//! What a route's plugins read and edit: the request on its way upstream, later the backend's
//! response head. Plain HTTP data, in every build.

use crate::{
    http_types::{HeaderMap, Method, StatusCode},
    pipeline::message::Response,
};
use bytes::Bytes;

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
    pub(super) claim_headers: Option<std::sync::Arc<crate::filters::jwt::JwtPolicy>>,
    /// The snapshot's header rules: every policy's claim headers and underscored names are
    /// reserved too, on every route.
    #[cfg_attr(not(feature = "wasm"), allow(dead_code))]
    pub(super) header_rules: std::sync::Arc<crate::headers::RequestHeaderRules>,
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
        header_rules: std::sync::Arc<crate::headers::RequestHeaderRules>,
    ) -> Self {
        Self { method, path, query, request_headers: headers, claim_headers: auth, header_rules, ..Self::default() }
    }
}

/// What a chain decided.
#[derive(Debug)]
pub enum ChainResult {
    /// Go on (to the backend, or to the client with the backend's response).
    Continue,
    /// A plugin answered: send this instead (the backend is not called, or its answer is replaced).
    Respond(Response),
}
