//! gRPC calls through the gateway: which requests are gRPC calls, the gRPC status each
//! gateway-made error is (a gRPC client reads a status, not a JSON body), and the call's
//! deadline from `grpc-timeout`.
//!
//! A gateway-made error on a gRPC call is a *Trailers-Only* response (gRPC over HTTP/2,
//! "Responses"): HTTP 200, `content-type: application/grpc`, `grpc-status` and `grpc-message`
//! in the one header block, no body. Mapping (docs/protocols.md#grpc):
//!
//! | gateway error | gRPC status |
//! |---|---|
//! | no route, method not allowed | 12 UNIMPLEMENTED |
//! | JWT refusal (401) | 16 UNAUTHENTICATED |
//! | 403 (client certificate, plugin) | 7 PERMISSION_DENIED |
//! | rate limit (429), body or connections over the limits | 8 RESOURCE_EXHAUSTED |
//! | malformed request (400, 414, 431) | 3 INVALID_ARGUMENT |
//! | no healthy backend, connect failure, backend protocol or TLS failure | 14 UNAVAILABLE |
//! | backend timeout (the call's deadline or the route's), stalled upload | 4 DEADLINE_EXCEEDED |
//! | plugin failure, internal error | 13 INTERNAL |

use std::time::Duration;

use crate::{
    error::GatewayError,
    http_types::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    pipeline::message::Response,
};

/// `grpc-status`.
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// `grpc-message`.
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// `grpc-timeout`.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// Whether a request is a gRPC call: `content-type: application/grpc` (or `application/grpc+…`).
/// gRPC-Web (`application/grpc-web…`, HTTP/1.1, trailers in the body) is not: its errors stay
/// HTTP errors.
pub fn is_call(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.len() >= 16
            && v[..16].eq_ignore_ascii_case(b"application/grpc")
            && matches!(v.get(16), None | Some(b'+' | b';'))
    })
}

/// The gRPC status code of a gateway-made error.
pub fn status_of(err: &GatewayError) -> u8 {
    use GatewayError as E;
    match err {
        E::NoRoute | E::MethodNotAllowed(_) => 12,
        E::Unauthorized(_) => 16,
        E::Forbidden(_) | E::ClientCertRequired(_) => 7,
        E::TooManyRequests { .. } | E::PayloadTooLarge { .. } | E::TooManyConnections => 8,
        E::BadRequest(_) | E::Malformed(_) | E::HeadersTooLarge | E::UriTooLong | E::BodyBroken => 3,
        E::NoHealthyUpstream(_)
        | E::UpstreamConnect(_)
        | E::UpstreamConnectTimeout
        | E::UpstreamProtocol(_)
        | E::UpstreamInterim(_)
        | E::UpstreamTls { .. } => 14,
        E::UpstreamTimeout | E::BodyStalled => 4,
        E::Internal(_) | E::PluginFailed { .. } => 13,
        E::ClientGone => 1,
    }
}

/// The Trailers-Only answer to a gRPC call the gateway refuses or cannot complete.
pub fn error_response(err: &GatewayError) -> Response {
    let mut resp = Response::new(StatusCode::OK);
    resp.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    resp.headers.insert(GRPC_STATUS, HeaderValue::from(u16::from(status_of(err))));
    if let Ok(message) = HeaderValue::from_str(&percent_encode(&err.to_string())) {
        resp.headers.insert(GRPC_MESSAGE, message);
    }
    // A JWT refusal still says how to authenticate.
    if let GatewayError::Unauthorized(rejection) = err {
        resp.headers.insert(header::WWW_AUTHENTICATE, rejection.challenge());
    }
    resp
}

/// `grpc-message` is percent-encoded: bytes outside printable ASCII, and `%` itself.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The call's deadline, from `grpc-timeout` (1 to 8 digits and a unit: `H`, `M`, `S`, `m`,
/// `u`, `n`); `None` when absent or malformed (a malformed one is ignored, as gRPC servers do).
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(GRPC_TIMEOUT)?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The `grpc_status` label of `rustygate_grpc_requests_total` for an answer: its `grpc-status`
/// header (a gateway-made error, or a backend's Trailers-Only answer), else `none` (the status
/// of a call the backend answered comes in its trailers, which the actix front end cannot
/// relay: docs/protocols.md).
pub fn status_label(headers: &HeaderMap) -> &'static str {
    const CODES: [&str; 17] =
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16"];
    headers
        .get(GRPC_STATUS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .and_then(|n| CODES.get(n).copied())
        .unwrap_or("none")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn grpc_calls_are_told_by_their_content_type() {
        for yes in ["application/grpc", "application/grpc+proto", "Application/GRPC+json", "application/grpc;x=1"] {
            assert!(is_call(&headers(&[("content-type", yes)])), "{yes}");
        }
        for no in ["application/grpc-web", "application/grpc-web+proto", "application/json", "application/grpcx"] {
            assert!(!is_call(&headers(&[("content-type", no)])), "{no}");
        }
        assert!(!is_call(&HeaderMap::new()));
    }

    #[test]
    fn grpc_timeout_is_parsed_in_every_unit_and_bad_values_are_ignored() {
        let t = |v: &'static str| timeout(&headers(&[("grpc-timeout", v)]));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("2M"), Some(Duration::from_secs(120)));
        assert_eq!(t("3S"), Some(Duration::from_secs(3)));
        assert_eq!(t("300m"), Some(Duration::from_millis(300)));
        assert_eq!(t("5u"), Some(Duration::from_micros(5)));
        assert_eq!(t("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "123456789m", "10", "1.5S", "-1S", "10x"] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn errors_are_trailers_only_answers_with_their_status() {
        let resp = error_response(&GatewayError::NoRoute);
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(resp.headers["content-type"], "application/grpc");
        assert_eq!(resp.headers["grpc-status"], "12");
        assert_eq!(status_label(&resp.headers), "12");
        assert_eq!(status_of(&GatewayError::UpstreamTimeout), 4);
        assert_eq!(status_of(&GatewayError::NoHealthyUpstream("u".into())), 14);
        assert_eq!(percent_encode("50% naïve"), "50%25 na%C3%AFve");
        assert_eq!(status_label(&HeaderMap::new()), "none");
    }
}
