//! What the filters see of a request: its head, the client, the request as it will go
//! upstream, the filters' own state and the request's span. The driver's own bookkeeping
//! (the record, the chosen backend, the snapshot) is not part of it.

use std::{
    any::{Any, TypeId},
    net::IpAddr,
};

use opentelemetry::KeyValue;

use super::message::{RequestHead, UpstreamRequest};
use crate::{http_types::HeaderValue, telemetry::otel::RequestTrace};

/// One request, as the filters see it.
#[derive(Debug)]
pub struct Session {
    /// The client's request head, as received.
    pub head: RequestHead,
    /// The request id (kept from the client if valid, else generated).
    pub request_id: HeaderValue,
    /// The client's address (the socket peer, or from `X-Forwarded-For` behind a trusted proxy).
    pub client_ip: IpAddr,
    /// The socket peer (appended to `X-Forwarded-For`).
    pub peer: IpAddr,
    /// Whether the peer is a trusted proxy (its `X-Forwarded-Proto/Host` are kept).
    pub peer_trusted: bool,
    /// What the client's connection negotiated, when it came over TLS.
    pub tls: Option<std::sync::Arc<crate::tls::ConnectionTls>>,
    /// The request as it will go upstream (set once the route is known).
    pub upstream: UpstreamRequest,
    /// What the filters keep about the request, by type.
    pub state: FilterState,
    /// The request's SERVER span, when tracing is enabled (only a sampled one records
    /// anything).
    pub trace: Option<RequestTrace>,
}

impl Session {
    /// Records an event on the request's span (a policy decision), if it is traced.
    pub fn trace_event(&mut self, name: &'static str, attributes: impl FnOnce() -> Vec<KeyValue>) {
        if let Some(trace) = &mut self.trace {
            trace.event(name, attributes);
        }
    }
}

/// The fields of the access log line a filter may edit in its `logging` phase.
#[derive(Debug, Default)]
pub struct LogFields {
    /// The request target as logged: the path, with the query when `log.include_query` (token
    /// values redacted).
    pub target: String,
}

/// What the filters of one request keep about it, one value per type (`Authenticated`, a
/// rate-limit `Decision` …). A handful of entries: a vector searched by type id beats a map.
#[derive(Default)]
pub struct FilterState(Vec<(TypeId, Box<dyn Any>)>);

impl FilterState {
    /// Stores `value`, replacing one of the same type.
    pub fn insert<T: 'static>(&mut self, value: T) {
        let id = TypeId::of::<T>();
        match self.0.iter_mut().find(|(t, _)| *t == id) {
            Some((_, slot)) => *slot = Box::new(value),
            None => self.0.push((id, Box::new(value))),
        }
    }

    /// The value of type `T`, if one was stored.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.0.iter().find(|(t, _)| *t == id).and_then(|(_, v)| v.downcast_ref())
    }

    /// The value of type `T`, mutably.
    pub fn get_mut<T: 'static>(&mut self) -> Option<&mut T> {
        let id = TypeId::of::<T>();
        self.0.iter_mut().find(|(t, _)| *t == id).and_then(|(_, v)| v.downcast_mut())
    }

    /// Takes the value of type `T` out.
    pub fn take<T: 'static>(&mut self) -> Option<T> {
        let id = TypeId::of::<T>();
        let i = self.0.iter().position(|(t, _)| *t == id)?;
        self.0.swap_remove(i).1.downcast().ok().map(|b| *b)
    }
}

impl std::fmt::Debug for FilterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FilterState({} entries)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_holds_one_value_per_type() {
        let mut state = FilterState::default();
        state.insert(1u32);
        state.insert("a");
        state.insert(2u32);
        assert_eq!(state.get::<u32>(), Some(&2));
        *state.get_mut::<&str>().unwrap() = "b";
        assert_eq!(state.take::<&str>(), Some("b"));
        assert_eq!(state.get::<&str>(), None);
        assert_eq!(state.get::<u64>(), None);
    }
}
