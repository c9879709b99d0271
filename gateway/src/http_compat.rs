//! The one place where `http` 0.2 types (actix, awc) and the core's `http` 1.x types
//! ([`crate::http_types`]) meet: the actix front end and the awc client convert here.
//! Conversions go through names and bytes, never through parsing a whole message twice.

use actix_web::http as v02;
use bytes::{Bytes, BytesMut};

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

/// The header names on (almost) every proxied request and response — the common standard
/// ones and the gateway's own — in both `http` versions, so that converting one is a `match`
/// and a copy of a static name instead of parsing its bytes again (and, for a name that is not
/// standard, allocating a copy).
macro_rules! common_names {
    ($($i:literal: $name:literal),* $(,)?) => {
        static COMMON_1X: [HeaderName; [$($i),*].len()] = [$(HeaderName::from_static($name)),*];
        static COMMON_02: [v02::header::HeaderName; [$($i),*].len()] =
            [$(v02::header::HeaderName::from_static($name)),*];
        /// The index of `name` in the tables, if it is a common name.
        fn common_name(name: &str) -> Option<usize> {
            match name {
                $($name => Some($i),)*
                _ => None,
            }
        }
    };
}
common_names!(
    0: "host",
    1: "content-type",
    2: "content-length",
    3: "date",
    4: "via",
    5: "server",
    6: "accept",
    7: "accept-encoding",
    8: "accept-language",
    9: "user-agent",
    10: "authorization",
    11: "cookie",
    12: "set-cookie",
    13: "cache-control",
    14: "content-encoding",
    15: "etag",
    16: "last-modified",
    17: "location",
    18: "vary",
    19: "origin",
    20: "referer",
    21: "access-control-allow-origin",
    22: "access-control-allow-credentials",
    23: "access-control-expose-headers",
    24: "x-request-id",
    25: "x-forwarded-for",
    26: "x-forwarded-proto",
    27: "x-forwarded-host",
    28: "traceparent",
    29: "tracestate",
    30: "traceresponse",
    31: "ratelimit",
    32: "ratelimit-policy",
    33: "ratelimit-limit",
    34: "ratelimit-remaining",
    35: "ratelimit-reset",
);

/// A header name of actix's as the core's.
fn name_from_02(name: &v02::header::HeaderName) -> HeaderName {
    let s = name.as_str();
    match common_name(s) {
        Some(i) => COMMON_1X[i].clone(),
        None => HeaderName::from_lowercase(s.as_bytes()).expect("a valid header name"),
    }
}

/// A header name of the core's as actix's.
fn name_to_02(name: &HeaderName) -> v02::header::HeaderName {
    let s = name.as_str();
    match common_name(s) {
        Some(i) => COMMON_02[i].clone(),
        None => v02::header::HeaderName::from_lowercase(s.as_bytes()).expect("a valid header name"),
    }
}

/// Where the values of a client's request head are copied: one buffer, each value split off it
/// as it is written, so that the head costs two allocations (the buffer and its shared counter)
/// instead of one a value, and the clones of its values (the upstream request is a clone of
/// the client's headers) only count references instead of allocating a counter each. Heads
/// with more value bytes grow it once.
const VALUE_BUFFER: usize = 512;

/// actix headers as the core's (repeated values kept, in order).
pub fn headers_from_02(src: &v02::header::HeaderMap) -> HeaderMap {
    // Room for what the gateway and the filters add (forwarding headers, `Via`, the request id,
    // rate-limit and CORS headers …) without growing the map (a rehash of every entry).
    let mut dst = HeaderMap::with_capacity(src.len_keys() + 16);
    let mut buf = BytesMut::with_capacity(VALUE_BUFFER);
    for (name, value) in src.iter() {
        buf.extend_from_slice(value.as_bytes());
        // SAFETY: the bytes of a valid value of `http` 0.2, whose rules for values are those of
        // 1.x (`http` checks them again in debug builds). Not checked again here: a byte loop
        // over every value, four times a request.
        #[allow(unsafe_code)]
        let mut converted = unsafe { HeaderValue::from_maybe_shared_unchecked(buf.split().freeze()) };
        converted.set_sensitive(value.is_sensitive());
        dst.append(name_from_02(name), converted);
    }
    dst
}

/// The core's headers as actix's (repeated values kept, in order).
pub fn headers_to_02(src: &HeaderMap) -> v02::header::HeaderMap {
    let mut dst = v02::header::HeaderMap::with_capacity(src.keys_len());
    headers_into_02(src, &mut dst);
    dst
}

/// The core's headers into an actix map (repeated values kept, in order). The values are
/// copied one by one: they go to the wire from there and are never cloned (measured: as cheap
/// as splitting them off one buffer).
pub fn headers_into_02(src: &HeaderMap, dst: &mut v02::header::HeaderMap) {
    for (name, value) in src.iter() {
        // SAFETY: as in `headers_from_02`, the other way: a valid 1.x value is a valid 0.2 one.
        #[allow(unsafe_code)]
        let mut converted =
            unsafe { v02::header::HeaderValue::from_maybe_shared_unchecked(Bytes::copy_from_slice(value.as_bytes())) };
        converted.set_sensitive(value.is_sensitive());
        dst.append(name_to_02(name), converted);
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
    fn common_names_map_to_themselves() {
        for (i, name) in COMMON_1X.iter().enumerate() {
            assert_eq!(common_name(name.as_str()), Some(i), "{name}: index and table disagree");
            assert_eq!(COMMON_02[i].as_str(), name.as_str());
            assert_eq!(name_to_02(name).as_str(), name.as_str());
            assert_eq!(name_from_02(&COMMON_02[i]), *name);
        }
        assert_eq!(common_name("x-other"), None);
    }

    #[test]
    fn headers_round_trip_with_repeats() {
        let mut h = HeaderMap::new();
        h.append(HeaderName::from_static("x-a"), HeaderValue::from_static("1"));
        h.append(HeaderName::from_static("x-a"), HeaderValue::from_static("2"));
        h.append(HeaderName::from_static("x-b"), HeaderValue::from_bytes(b"\xfe").unwrap());
        // More value bytes than the conversion buffer holds at first.
        h.append(HeaderName::from_static("cookie"), HeaderValue::from_str(&"c".repeat(3 * VALUE_BUFFER)).unwrap());
        h.append(HeaderName::from_static("x-c"), HeaderValue::from_static(""));
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
            assert_eq!(uri_from_02(&uri).unwrap().to_string(), uri.to_string());
        }
    }
}
