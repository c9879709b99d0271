//! The one place where `http` 0.2 types (actix, awc) and `http` 1.x types (reqwest, hyper,
//! OpenTelemetry) meet. Conversions go through names and bytes, never through parsing twice.

use actix_web::http::{Method, StatusCode, Version, header};

/// An actix method as an `http` 1.x method.
pub fn method_to_1(m: &Method) -> reqwest::Method {
    reqwest::Method::from_bytes(m.as_str().as_bytes()).expect("a parsed method is a valid token")
}

/// actix headers as `http` 1.x headers (repeated values kept, in order).
pub fn headers_to_1(src: &header::HeaderMap) -> reqwest::header::HeaderMap {
    let mut dst = reqwest::header::HeaderMap::with_capacity(src.len());
    for (name, value) in src.iter() {
        let name = reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()).expect("valid header name");
        let value = reqwest::header::HeaderValue::from_bytes(value.as_bytes()).expect("valid header value");
        dst.append(name, value);
    }
    dst
}

/// `http` 1.x headers as actix headers (repeated values kept, in order).
pub fn headers_from_1(src: &reqwest::header::HeaderMap) -> header::HeaderMap {
    let mut dst = header::HeaderMap::with_capacity(src.len());
    for (name, value) in src {
        let name = header::HeaderName::from_bytes(name.as_str().as_bytes()).expect("valid header name");
        let value = header::HeaderValue::from_bytes(value.as_bytes()).expect("valid header value");
        dst.append(name, value);
    }
    dst
}

/// An `http` 1.x status as an actix status.
pub fn status_from_1(s: reqwest::StatusCode) -> StatusCode {
    StatusCode::from_u16(s.as_u16()).expect("a received status is in range")
}

/// An `http` 1.x version as an actix version.
pub fn version_from_1(v: reqwest::Version) -> Version {
    match v {
        reqwest::Version::HTTP_09 => Version::HTTP_09,
        reqwest::Version::HTTP_10 => Version::HTTP_10,
        reqwest::Version::HTTP_2 => Version::HTTP_2,
        reqwest::Version::HTTP_3 => Version::HTTP_3,
        _ => Version::HTTP_11,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_with_repeats() {
        let mut h = header::HeaderMap::new();
        h.append(header::HeaderName::from_static("x-a"), header::HeaderValue::from_static("1"));
        h.append(header::HeaderName::from_static("x-a"), header::HeaderValue::from_static("2"));
        h.append(header::HeaderName::from_static("x-b"), header::HeaderValue::from_bytes(b"\xfe").unwrap());
        let back = headers_from_1(&headers_to_1(&h));
        let pairs = |m: &header::HeaderMap| {
            let mut v: Vec<_> = m.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect();
            v.sort();
            v
        };
        assert_eq!(pairs(&back), pairs(&h));
        assert_eq!(method_to_1(&Method::PATCH), reqwest::Method::PATCH);
        assert_eq!(status_from_1(reqwest::StatusCode::IM_A_TEAPOT).as_u16(), 418);
    }
}
