//! Forwarding to a backend: the upstream clients (hyper connections pooled by each worker, by
//! default; awc and reqwest for comparison; hyper's HTTP/2 client for `h2`/`h2c` upstreams),
//! header rewriting, and one attempt of sending a request and receiving the response head.

pub mod client;
pub mod forward;
pub mod h2_client;
pub mod hyper_client;
pub mod idle;
pub mod reqwest_client;
pub mod upstream_response;
