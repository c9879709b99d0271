//! Header rules of a proxy (RFC 9110 §7.6): hop-by-hop headers are removed in both directions,
//! `X-Forwarded-*`, `Via` and `X-Request-Id` are set, and the client IP is derived from the
//! socket peer or, behind trusted proxies, from `X-Forwarded-For`.

use std::net::IpAddr;

use crate::http_types::{
    Version,
    header::{self, HeaderMap, HeaderName, HeaderValue},
};

/// The request id header.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// The verified client certificate's subject (mTLS), set by the gateway only.
pub const X_CLIENT_CERT_SUBJECT: HeaderName = HeaderName::from_static("x-client-cert-subject");
/// Its subject alternative names, comma-separated (`DNS:…`, `URI:…`, `email:…`).
pub const X_CLIENT_CERT_SAN: HeaderName = HeaderName::from_static("x-client-cert-san");
/// The SHA-256 of its DER, lower-case hex.
pub const X_CLIENT_CERT_SHA256: HeaderName = HeaderName::from_static("x-client-cert-sha256");

/// Hop-by-hop headers of RFC 9110 §7.6.1 (plus the legacy `Proxy-Connection`): they describe one
/// connection and are never forwarded. Headers named in `Connection` are removed as well.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "proxy-connection" | "keep-alive" | "te" | "transfer-encoding" | "upgrade" | "trailer"
    )
}

/// Whether a request asks to switch protocols: a `Connection` header naming `upgrade` (and not
/// `close`), as actix reads it.
pub fn asks_upgrade(headers: &HeaderMap) -> bool {
    let mut upgrade = false;
    for value in headers.get_all(header::CONNECTION) {
        for option in value.to_str().unwrap_or_default().split(',').map(str::trim) {
            if option.eq_ignore_ascii_case("close") {
                return false;
            }
            upgrade |= option.eq_ignore_ascii_case("upgrade");
        }
    }
    upgrade
}

/// The header names listed in the `Connection` headers, lower-cased, each once (parsed once
/// per message: a long list must not cost once per header).
fn connection_tokens(headers: &HeaderMap) -> std::collections::HashSet<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The hop-by-hop headers of [`is_hop_by_hop`], as names to remove.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TRAILER,
];

/// Keeps only the end-to-end headers of a map the caller owns (repeats and order kept): removes
/// the hop-by-hop ones, those named in `Connection`, and those in `also_skip` (which the caller
/// sets itself). In place: no copy of the values.
pub fn retain_end_to_end(headers: &mut HeaderMap, also_skip: &[HeaderName]) {
    let plain = |v: &HeaderValue| {
        v.as_bytes().eq_ignore_ascii_case(b"keep-alive") || v.as_bytes().eq_ignore_ascii_case(b"close")
    };
    let named = (!headers.get_all(header::CONNECTION).iter().all(plain)).then(|| connection_tokens(headers));
    let unwanted = |name: &HeaderName| {
        HOP_BY_HOP.contains(name)
            || also_skip.contains(name)
            || named.as_ref().is_some_and(|n| n.contains(name.as_str()))
    };
    // A scan of the handful of names present, not a lookup of every name that might be: most
    // messages hold one or none of them (the request's `Host`).
    while let Some(name) = headers.keys().find(|name| unwanted(name)).cloned() {
        headers.remove(name);
    }
}

/// Rules for the client's headers that hold for every route of a runtime snapshot.
#[derive(Debug, Default)]
pub struct RequestHeaderRules {
    /// Every header any JWT policy fills from a verified claim. The client's copies are
    /// removed on every route, with or without auth: a backend behind two routes must never
    /// take a forged `X-User-Id` for the gateway's word.
    pub claim_headers: Vec<HeaderName>,
    /// `server.underscores_in_headers`: keep client headers whose name has `_` (NGINX drops
    /// them by default). Many frameworks (CGI, WSGI, Rack, PHP) read `X_User_Id` and
    /// `X-User-Id` as the same variable, so an underscored alias of a claim header is removed
    /// even then.
    pub keep_underscores: bool,
}

impl RequestHeaderRules {
    /// Removes the claim headers and the underscored headers (or, when those are kept, the
    /// underscored aliases of claim headers) from the headers about to go upstream.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.claim_headers {
            headers.remove(name);
        }
        if !headers.keys().any(|k| k.as_str().contains('_')) {
            return;
        }
        let underscored: Vec<HeaderName> = headers.keys().filter(|k| k.as_str().contains('_')).cloned().collect();
        for name in underscored {
            if !self.keep_underscores || self.claim_headers.iter().any(|c| same_with_dashes(c, &name)) {
                headers.remove(&name);
            }
        }
    }

    /// Whether a plugin may not set `name` on the upstream request: a claim header (or an
    /// underscored alias of one), or any underscored name when those are dropped.
    pub fn reserves(&self, name: &HeaderName) -> bool {
        self.claim_headers.iter().any(|c| c == name || same_with_dashes(c, name))
            || (!self.keep_underscores && name.as_str().contains('_'))
    }
}

/// `x_user-id` and `x-user-id` name the same variable in CGI-style frameworks.
fn same_with_dashes(claim: &HeaderName, name: &HeaderName) -> bool {
    let (a, b) = (claim.as_str().as_bytes(), name.as_str().as_bytes());
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y || (*x == b'-' && *y == b'_'))
}

/// Headers of the client request that the gateway sets itself instead of copying.
pub const REQUEST_SET_BY_GATEWAY: [HeaderName; 10] = [
    header::HOST,
    header::CONTENT_LENGTH,
    // The gateway answers `Expect: 100-continue` itself (actix does when the body is read), and
    // the upstream client does not implement interim responses.
    header::EXPECT,
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    X_REQUEST_ID,
    // The client's copies never pass: only the gateway vouches for a certificate.
    X_CLIENT_CERT_SUBJECT,
    X_CLIENT_CERT_SAN,
    X_CLIENT_CERT_SHA256,
];

/// Headers of the backend response that the gateway sets itself instead of copying.
pub const RESPONSE_SET_BY_GATEWAY: [HeaderName; 2] = [header::CONTENT_LENGTH, X_REQUEST_ID];

/// The `Via` value this hop adds (RFC 9110 §7.6.3), by the protocol version it received.
pub fn via_value(version: Version) -> HeaderValue {
    HeaderValue::from_static(match version {
        Version::HTTP_09 => "0.9 rustygate",
        Version::HTTP_10 => "1.0 rustygate",
        Version::HTTP_2 => "2 rustygate",
        Version::HTTP_3 => "3 rustygate",
        _ => "1.1 rustygate",
    })
}

/// `X-Forwarded-For` for the upstream request: the incoming list (all header lines, in order)
/// with the peer appended.
pub fn forwarded_for(incoming: &HeaderMap, peer: IpAddr) -> HeaderValue {
    let mut list = String::new();
    for v in incoming.get_all(X_FORWARDED_FOR) {
        if let Ok(s) = v.to_str() {
            let s = s.trim();
            if !s.is_empty() {
                if !list.is_empty() {
                    list.push_str(", ");
                }
                list.push_str(s);
            }
        }
    }
    if !list.is_empty() {
        list.push_str(", ");
    }
    push_ip(&mut list, peer);
    // The string's own buffer becomes the value's (no copy).
    HeaderValue::from_maybe_shared(bytes::Bytes::from(list))
        .unwrap_or_else(|_| HeaderValue::from_str(&peer.to_string()).expect("an IP is a valid header value"))
}

/// Appends `ip` as text: an IPv4 address digit by digit (on every proxied request; the
/// formatting machinery costs about thirty times as much), an IPv6 one through `Display`.
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

/// The client's address: the socket peer, unless the peer is a trusted proxy; then the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_ip(incoming: &HeaderMap, peer: IpAddr, is_trusted: impl Fn(IpAddr) -> bool) -> IpAddr {
    if !is_trusted(peer) {
        return peer;
    }
    let mut entries: Vec<&str> = Vec::new();
    for v in incoming.get_all(X_FORWARDED_FOR) {
        if let Ok(s) = v.to_str() {
            entries.extend(s.split(','));
        }
    }
    for entry in entries.iter().rev() {
        match parse_forwarded_ip(entry) {
            Some(ip) if is_trusted(ip) => continue,
            Some(ip) => return ip,
            // A garbled hop means the chain cannot be believed past this point.
            None => return peer,
        }
    }
    peer
}

/// Parses one `X-Forwarded-For` element: `1.2.3.4`, `1.2.3.4:5678`, `::1` or `[::1]:5678`.
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    if let Ok(ip) = e.parse() {
        return Some(ip);
    }
    if let Some(rest) = e.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    e.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok())
}

/// Whether `X-Request-Id` from a client is kept: 1–128 characters of `[A-Za-z0-9._:-]`.
pub fn is_valid_request_id(value: &[u8]) -> bool {
    (1..=128).contains(&value.len())
        && value.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_dropped() {
        let src = map(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("accept", "a"),
            ("accept", "b"),
            ("host", "h"),
        ]);
        let mut kept = src.clone();
        retain_end_to_end(&mut kept, &REQUEST_SET_BY_GATEWAY);
        let names: Vec<_> = kept.iter().map(|(k, v)| format!("{k}={}", v.to_str().unwrap())).collect();
        assert_eq!(names, ["accept=a", "accept=b"]);
    }

    #[test]
    fn claim_headers_and_underscored_names_are_removed() {
        let rules =
            RequestHeaderRules { claim_headers: vec![HeaderName::from_static("x-user-id")], ..Default::default() };
        let mut m = map(&[("x-user-id", "admin"), ("x_user_id", "admin"), ("x_other", "1"), ("accept", "a")]);
        rules.apply(&mut m);
        assert_eq!(m.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["accept"]);
        let keep = RequestHeaderRules { keep_underscores: true, ..rules };
        let mut m = map(&[("x_user_id", "admin"), ("x_user-id", "admin"), ("x_other", "1")]);
        keep.apply(&mut m);
        assert_eq!(m.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x_other"]);
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in ["0.0.0.0", "1.2.3.4", "10.99.100.255", "127.0.0.1", "::1", "2001:db8::a:b", "::ffff:1.2.3.4"] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = String::from("x");
            push_ip(&mut out, ip);
            assert_eq!(out, format!("x{ip}"));
        }
    }

    #[test]
    fn forwarded_for_appends_to_all_lines() {
        let src = map(&[("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "2.2.2.2, 3.3.3.3")]);
        let v = forwarded_for(&src, "127.0.0.1".parse().unwrap());
        assert_eq!(v, "1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1");
        assert_eq!(forwarded_for(&HeaderMap::new(), "::1".parse().unwrap()), "::1");
    }

    #[test]
    fn client_ip_believes_only_trusted_peers() {
        let src = map(&[("x-forwarded-for", "9.9.9.9, 10.0.0.5")]);
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let untrusted = |_: IpAddr| false;
        assert_eq!(client_ip(&src, peer, untrusted), peer);
        let trusted = |ip: IpAddr| ip.to_string().starts_with("10.");
        assert_eq!(client_ip(&src, peer, trusted), "9.9.9.9".parse::<IpAddr>().unwrap());
        let garbled = map(&[("x-forwarded-for", "9.9.9.9, bogus")]);
        assert_eq!(client_ip(&garbled, peer, trusted), peer);
    }

    #[test]
    fn request_id_rules() {
        assert!(is_valid_request_id(b"abc-123_x.y:z"));
        assert!(!is_valid_request_id(b""));
        assert!(!is_valid_request_id(&[b'a'; 129]));
        assert!(!is_valid_request_id(b"has space"));
        assert!(!is_valid_request_id(b"quote\""));
    }
}
