//! The HTTP vocabulary the gateway's core uses (methods, URIs, headers, statuses, versions): the
//! `http` 1.x crate's, as hyper, h3, reqwest and OpenTelemetry use it. actix and awc speak
//! `http` 0.2; their adapters (`frontend::actix`, `proxy::client`) convert at the boundary, in
//! [`crate::http_compat`].

pub use http::{
    HeaderMap, Method, Request, StatusCode, Uri, Version,
    header::{self, HeaderName, HeaderValue},
    uri,
};
