//! A route's plugins in the pipeline: `on_request` in the `request` phase (after the other
//! policies; it may edit the upstream request, answer, or fail the request), `on_response` in
//! the `upstream_response` phase (it may edit or replace the backend's answer), and the
//! response headers `on_request` set go on whatever answer the client gets.

use std::sync::Arc;

use opentelemetry::KeyValue;

#[cfg(feature = "wasm")]
use super::chain::{Pinned, PluginChain};
use super::exchange::{ChainResult, Exchange};
#[cfg(not(feature = "wasm"))]
use super::no_engine::{Pinned, PluginChain};
use crate::{
    error::GatewayError,
    filters::jwt::JwtPolicy,
    headers::RequestHeaderRules,
    http_types::HeaderMap,
    pipeline::{
        filter::{Filter, Flow, Phase},
        message::Response,
        session::Session,
    },
};

/// The plugins of one route.
#[derive(Debug)]
pub struct PluginFilter {
    chain: Arc<PluginChain>,
    /// The route's JWT policy: its claim headers are reserved (plugins cannot forge them).
    auth: Option<Arc<JwtPolicy>>,
    /// The snapshot's header rules (every policy's claim headers, underscored names).
    header_rules: Arc<RequestHeaderRules>,
}

impl PluginFilter {
    /// The chain of a route, with what it may not touch.
    pub fn new(chain: Arc<PluginChain>, auth: Option<Arc<JwtPolicy>>, header_rules: Arc<RequestHeaderRules>) -> Self {
        Self { chain, auth, header_rules }
    }
}

/// What the plugins keep about one request between its phases.
struct PluginRun {
    exchange: Exchange,
    pinned: Pinned,
    /// Headers `on_request` set for the response, until an answer takes them.
    response_headers: Option<HeaderMap>,
}

/// Moves the upstream request into the exchange (or back), so plugins see it as it will be
/// forwarded without copying it.
fn swap_request(session: &mut Session, ex: &mut Exchange) {
    let up = &mut session.upstream;
    std::mem::swap(&mut up.path, &mut ex.path);
    std::mem::swap(&mut up.query, &mut ex.query);
    std::mem::swap(&mut up.headers, &mut ex.request_headers);
}

impl Filter for PluginFilter {
    fn name(&self) -> &'static str {
        "plugins"
    }

    fn request<'a>(&'a self, session: &'a mut Session) -> Phase<'a> {
        let mut ex = Exchange::for_request(
            session.head.method.clone(),
            String::new(),
            None,
            HeaderMap::new(),
            self.auth.clone(),
            self.header_rules.clone(),
        );
        swap_request(session, &mut ex);
        let mut pinned = Pinned::default();
        let result = self.chain.on_request(&mut ex, &mut pinned);
        swap_request(session, &mut ex);
        // Response headers set so far go on whatever answer the client gets (a plugin's answer
        // carries them already).
        let response_headers = (!ex.response_headers.is_empty()).then(|| std::mem::take(&mut ex.response_headers));
        session.state.insert(PluginRun { exchange: ex, pinned, response_headers });
        Phase::Ready(match result {
            Ok(ChainResult::Continue) => Ok(Flow::Continue),
            Ok(ChainResult::Respond(answer)) => {
                session.trace_event("plugin responded", Vec::new);
                Ok(Flow::Respond(answer))
            }
            Err(e) => Err(failed(session, e)),
        })
    }

    fn upstream_response(&self, session: &mut Session, mut response: Response) -> Result<Response, GatewayError> {
        if !session.state.get::<PluginRun>().is_some_and(|run| self.chain.wants_response(&run.pinned)) {
            return Ok(response);
        }
        let Some(mut run) = session.state.take::<PluginRun>() else { return Ok(response) };
        let ex = &mut run.exchange;
        swap_request(session, ex);
        ex.status = Some(response.status);
        ex.response_headers = std::mem::take(&mut response.headers);
        // `on_response` sees (and may change) the headers `on_request` set too.
        if let Some(headers) = run.response_headers.take() {
            set_all(&mut ex.response_headers, headers);
        }
        let result = self.chain.on_response(ex, &run.pinned);
        swap_request(session, ex);
        match result {
            Ok(ChainResult::Continue) => {
                response.headers = std::mem::take(&mut ex.response_headers);
                Ok(response)
            }
            Ok(ChainResult::Respond(answer)) => {
                session.trace_event("plugin replaced the response", Vec::new);
                Ok(answer)
            }
            Err(e) => Err(failed(session, e)),
        }
    }

    fn response(&self, session: &mut Session, response: &mut Response) {
        if let Some(headers) = session.state.get_mut::<PluginRun>().and_then(|run| run.response_headers.take()) {
            set_all(&mut response.headers, headers);
        }
    }
}

/// Sets each header of `from` on `to`, replacing what `to` had under that name (a name set
/// more than once keeps its last value).
fn set_all(to: &mut HeaderMap, from: HeaderMap) {
    let mut name = None;
    for (next, value) in from {
        // The map yields a name with its first value only.
        if next.is_some() {
            name = next;
        }
        if let Some(name) = &name {
            to.insert(name.clone(), value);
        }
    }
}

/// Marks a closed-policy plugin failure on the request's span.
fn failed(session: &mut Session, e: GatewayError) -> GatewayError {
    if let GatewayError::PluginFailed { plugin, outcome } = &e {
        session.trace_event("plugin failed", || {
            vec![
                KeyValue::new("rustygate.plugin", plugin.to_string()),
                KeyValue::new("rustygate.plugin.outcome", *outcome),
            ]
        });
    }
    e
}
