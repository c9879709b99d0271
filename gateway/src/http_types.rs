//! The HTTP vocabulary the gateway's core uses (methods, URIs, headers, statuses, versions),
//! named in one place. Front ends and clients convert to and from these at their boundary.

pub use actix_web::http::{
    Method, StatusCode, Uri, Version,
    header::{self, HeaderMap, HeaderName, HeaderValue},
    uri,
};
