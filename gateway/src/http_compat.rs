//! The one place where `http` 0.2 types (actix, awc) and the core's `http` 1.x types
//! ([`crate::http_types`]) meet: the actix front end and the awc client convert here.
//! Conversions go through names and bytes, never through parsing a whole message twice.

use actix_web::http as v02;
use bytes::Bytes;

use crate::http_types::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};

/// An actix method as the core's. Standard methods map without allocating.
pub fn method_from_02(m: &v02::Method) -> Method {
    match *m {
        v02::Method::GET => Method::GET,
        v02::Method::POST => Method::POST,
        v02::Method::PUT => Method::PUT,
        v02::Method::DELETE => Method::DELETE,
        v02::Method::HEAD => Method::HEAD,
        v02::Method::OPTIONS => Method::OPTIONS,
        v02::Method::PATCH => Method::PATCH,
        v02::Method::CONNECT => Method::CONNECT,
        v02::Method::TRACE => Method::TRACE,
        _ => Method::from_bytes(m.as_str().as_bytes()).expect("a parsed method is a valid token"),
    }
}

/// The core's method as actix's.
pub fn method_to_02(m: &Method) -> v02::Method {
    match *m {
        Method::GET => v02::Method::GET,
        Method::POST => v02::Method::POST,
        Method::PUT => v02::Method::PUT,
        Method::DELETE => v02::Method::DELETE,
        Method::HEAD => v02::Method::HEAD,
        Method::OPTIONS => v02::Method::OPTIONS,
        Method::PATCH => v02::Method::PATCH,
        Method::CONNECT => v02::Method::CONNECT,
        Method::TRACE => v02::Method::TRACE,
        _ => v02::Method::from_bytes(m.as_str().as_bytes()).expect("a valid method is a valid token"),
    }
}

/// An actix request target as the core's; `None` if the 1.x parser refuses what actix's
/// accepted (the client's input: answered 400, never a panic).
pub fn uri_from_02(uri: &v02::Uri) -> Option<Uri> {
    match (uri.scheme(), uri.path_and_query()) {
        // Origin form, the usual case: the bytes of the path and query as they are.
        (None, Some(pq)) => Uri::from_maybe_shared(Bytes::copy_from_slice(pq.as_str().as_bytes())).ok(),
        _ => Uri::try_from(uri.to_string()).ok(),
    }
}

/// The core's URI as awc's, from its parts (no formatting and re-parsing of the whole).
pub fn uri_to_02(uri: &Uri) -> Result<v02::Uri, actix_web::error::HttpError> {
    let mut builder = v02::Uri::builder();
    if let Some(scheme) = uri.scheme_str() {
        builder = builder.scheme(scheme);
    }
    if let Some(authority) = uri.authority() {
        builder = builder.authority(authority.as_str());
    }
    if let Some(pq) = uri.path_and_query() {
        builder = builder.path_and_query(pq.as_str());
    }
    builder.build()
}

/// A header name, mapped through its bytes (standard names are matched without allocating).
fn name_from_02(name: &v02::header::HeaderName) -> HeaderName {
    HeaderName::from_bytes(name.as_str().as_bytes()).expect("a valid header name")
}

fn name_to_02(name: &HeaderName) -> v02::header::HeaderName {
    v02::header::HeaderName::from_bytes(name.as_str().as_bytes()).expect("a valid header name")
}

/// actix headers as the core's (repeated values kept, in order).
pub fn headers_from_02(src: &v02::header::HeaderMap) -> HeaderMap {
    let mut dst = HeaderMap::with_capacity(src.len());
    for (name, value) in src.iter() {
        let value = HeaderValue::from_bytes(value.as_bytes()).expect("a valid header value");
        dst.append(name_from_02(name), value);
    }
    dst
}

/// The core's headers as actix's (repeated values kept, in order).
pub fn headers_to_02(src: &HeaderMap) -> v02::header::HeaderMap {
    let mut dst = v02::header::HeaderMap::with_capacity(src.keys_len());
    headers_into_02(src, &mut dst);
    dst
}

/// The core's headers into an actix map (repeated values kept, in order).
pub fn headers_into_02(src: &HeaderMap, dst: &mut v02::header::HeaderMap) {
    for (name, value) in src.iter() {
        let value = v02::header::HeaderValue::from_bytes(value.as_bytes()).expect("a valid header value");
        dst.append(name_to_02(name), value);
    }
}

/// An actix status as the core's.
pub fn status_from_02(s: v02::StatusCode) -> StatusCode {
    StatusCode::from_u16(s.as_u16()).expect("a received status is in range")
}

/// The core's status as actix's.
pub fn status_to_02(s: StatusCode) -> v02::StatusCode {
    v02::StatusCode::from_u16(s.as_u16()).expect("a status is in range")
}

/// An actix version as the core's.
pub fn version_from_02(v: v02::Version) -> Version {
    match v {
        v02::Version::HTTP_09 => Version::HTTP_09,
        v02::Version::HTTP_10 => Version::HTTP_10,
        v02::Version::HTTP_2 => Version::HTTP_2,
        v02::Version::HTTP_3 => Version::HTTP_3,
        _ => Version::HTTP_11,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_with_repeats() {
        let mut h = HeaderMap::new();
        h.append(HeaderName::from_static("x-a"), HeaderValue::from_static("1"));
        h.append(HeaderName::from_static("x-a"), HeaderValue::from_static("2"));
        h.append(HeaderName::from_static("x-b"), HeaderValue::from_bytes(b"\xfe").unwrap());
        let back = headers_from_02(&headers_to_02(&h));
        // actix's map does not keep the order of names, only that of each name's values.
        let pairs = |m: &HeaderMap| {
            let mut v = m.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect::<Vec<_>>();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        assert_eq!(pairs(&back), pairs(&h), "same pairs, each name's values in order");
        for m in [Method::PATCH, Method::from_bytes(b"PURGE").unwrap()] {
            assert_eq!(method_from_02(&method_to_02(&m)), m);
        }
        assert_eq!(status_to_02(StatusCode::IM_A_TEAPOT).as_u16(), 418);
        assert_eq!(version_from_02(v02::Version::HTTP_2), Version::HTTP_2);
        for target in ["/a/b?c=d", "http://h:1/x?y", "*"] {
            let uri: v02::Uri = target.parse().unwrap();
            assert_eq!(uri_to_02(&uri_from_02(&uri).unwrap()).unwrap(), uri);
        }
    }
}
