//! Forwarding to a backend: the upstream client (awc, one per worker), header rewriting, and
//! one attempt of sending a request and receiving the response head.

pub mod client;
pub mod forward;
pub mod headers;
