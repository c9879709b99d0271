//! What a forwarding client hands back: the backend's response head and its streaming body.

use crate::http_types::{HeaderMap, StatusCode, Version};

/// The backend's response head (in the core's types, whichever client fetched it) and its body.
pub struct UpstreamResponse<S> {
    /// Status.
    pub status: StatusCode,
    /// Protocol version the backend answered with.
    pub version: Version,
    /// Headers as received.
    pub headers: HeaderMap,
    /// The body, streaming.
    pub body: S,
    /// Where the body's trailers go when they arrive (clients that read them: HTTP/2).
    pub trailers: Option<crate::pipeline::message::Trailers>,
}
