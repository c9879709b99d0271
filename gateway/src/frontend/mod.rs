//! Front ends: what turns a protocol's requests into the pipeline's messages and its responses
//! back. The actix one serves HTTP/1.1 (and, with TLS, HTTP/2); the hyper one (experimental,
//! `server.frontend: hyper`) the plain listener's HTTP/1.1 and h2c; another (QUIC/HTTP/3) plugs
//! in the same way: build a `RequestHead` and a `BodySource`, call `pipeline::driver::serve`, send
//! the `Response` and drop the `Finish` when the body has gone out.

pub mod actix;
pub mod connection;
pub mod hyper;
mod metered_body;
