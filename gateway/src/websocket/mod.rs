//! WebSocket sessions through the gateway (RFC 6455): the handshake is an ordinary request of
//! the pipeline (routing, policies, balancing, retries before the `101`); after the backend's
//! `101`, [`relay`] splices the two connections, reading only frame headers ([`frames`]).

pub mod frames;
pub mod relay;

pub use relay::{Outcome, Policy, Record, RouteSessions, Sessions};

use crate::http_types::{HeaderMap, Method, Version, header};

/// Whether a request is a WebSocket opening handshake the gateway can relay: `GET` over
/// HTTP/1.1 with `Connection: upgrade` and `Upgrade: websocket` — exactly what makes actix
/// hand over the rest of the connection as the request's payload.
pub fn is_handshake(method: &Method, version: Version, headers: &HeaderMap) -> bool {
    let mut upgrades = headers.get_all(header::UPGRADE).iter();
    let websocket = match (upgrades.next(), upgrades.next()) {
        (Some(v), None) => v.to_str().is_ok_and(|v| v.trim().eq_ignore_ascii_case("websocket")),
        _ => false,
    };
    websocket && *method == Method::GET && version == Version::HTTP_11 && crate::headers::asks_upgrade(headers)
}
