//! Forwarding to a backend: the upstream clients (awc by default, one per worker; reqwest for
//! comparison), header rewriting, and one attempt of sending a request and receiving the
//! response head.

pub mod client;
pub mod forward;
pub mod idle;
pub mod reqwest_client;
pub mod upstream_response;
