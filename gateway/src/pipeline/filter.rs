//! The filter trait: what a route policy (CORS, JWT, rate limit, plugins, and whatever comes
//! next) implements to take part in a request. A route's policies are compiled once into its
//! chain, in order; the driver (`pipeline::driver`) runs their phases:
//!
//! | phase | when | may |
//! |---|---|---|
//! | [`request`](Filter::request) | after routing, in chain order, before the body is read | answer ([`Flow::Respond`]) or refuse (`Err`); edit the upstream request |
//! | [`upstream_request`](Filter::upstream_request) | each attempt, once its headers are built | edit that attempt's headers |
//! | [`upstream_response`](Filter::upstream_response) | the backend's response head, last filter first | replace it, or refuse |
//! | [`response`](Filter::response) | every answer (backend's, a filter's, an error), last filter first | edit its headers |
//! | [`logging`](Filter::logging) | when the request's record is written | edit what the access log shows |
//!
//! Only filters whose `request` phase ran take part in the later phases (a request refused by
//! the JWT policy never reaches the rate limit, so it gets no rate-limit headers). A filter
//! keeps what it learns about a request in the session's [`FilterState`](super::session::FilterState) (by type), where a
//! later filter may read it (the rate limit reads the JWT policy's verified claims).

use std::{future::Future, pin::Pin};

use super::{
    message::Response,
    session::{LogFields, Session},
};
use crate::{config::RouteConfig, error::GatewayError, http_types::HeaderMap};

/// Builds a filter for a route from the route's configuration, or none for routes it does not
/// apply to: how a filter that is not one of the built-in policies joins routes (an embedding
/// program, a test, the worked example in docs/architecture.md). Factories run at every
/// compile (start and reloads); their filters come after the built-in ones in the chain.
pub type FilterFactory = std::sync::Arc<dyn Fn(&RouteConfig) -> Option<std::sync::Arc<dyn Filter>> + Send + Sync>;

/// What a filter decided about a request.
#[derive(Debug)]
pub enum Flow {
    /// Go on (to the next filter, then the backend).
    Continue,
    /// Answer with this instead; the backend is not called.
    Respond(Response),
}

/// The outcome of a [`Filter::request`] phase: ready at once (most filters), or a future for a
/// filter that must wait (a JWT policy fetching its key set). Boxing only the waiting case
/// keeps the common path free of allocations.
pub enum Phase<'a> {
    /// Decided.
    Ready(Result<Flow, GatewayError>),
    /// Decided when the future completes.
    Pending(Pin<Box<dyn Future<Output = Result<Flow, GatewayError>> + 'a>>),
}

impl Phase<'_> {
    /// Go on.
    pub const CONTINUE: Self = Self::Ready(Ok(Flow::Continue));

    /// The decision, waiting for it if needed.
    pub async fn decided(self) -> Result<Flow, GatewayError> {
        match self {
            Self::Ready(decision) => decision,
            Self::Pending(future) => future.await,
        }
    }
}

/// A route policy's part in the request pipeline. Every phase has a default that does nothing,
/// so a filter implements only the phases it needs. Filters are compiled per route (their
/// metric series resolved then) and shared by every request on it.
pub trait Filter: Send + Sync + std::fmt::Debug {
    /// The filter's kind, for logs and `/admin` output (`cors`, `jwt`, `rate_limit`, `plugins`).
    fn name(&self) -> &'static str;

    /// The request head, before any body byte is read and before a backend is chosen.
    fn request<'a>(&'a self, session: &'a mut Session) -> Phase<'a> {
        let _ = session;
        Phase::CONTINUE
    }

    /// The headers of one upstream attempt, after the gateway set its own.
    fn upstream_request(&self, session: &Session, headers: &mut HeaderMap) {
        let _ = (session, headers);
    }

    /// The backend's response head (its body still streaming): returned as is, replaced, or
    /// refused.
    fn upstream_response(&self, session: &mut Session, response: Response) -> Result<Response, GatewayError> {
        let _ = session;
        Ok(response)
    }

    /// Every answer the client gets, the gateway's own errors included.
    fn response(&self, session: &mut Session, response: &mut Response) {
        let _ = (session, response);
    }

    /// The request's access log fields, when its record is written.
    fn logging(&self, session: &Session, fields: &mut LogFields) {
        let _ = (session, fields);
    }
}
