//! Parsers of configuration values (URLs, CIDRs, hosts, path prefixes, names), shared by the
//! validator, which reports what they refuse, and the runtime, which compiles what they accept.

use std::str::FromStr;

use crate::http_types::HeaderName;
use jsonwebtoken::Algorithm;

/// Marks a feature the configuration names but this build does not offer yet.
pub const PLANNED: &str = "is not supported yet";

/// Checks a backend URL: `http://` or `https://host[:port][/base/path]`.
pub fn check_url(raw: &str) -> Result<url::Url, String> {
    // Messages show the URL redacted: its userinfo or query may hold a credential.
    let u = url::Url::parse(raw).map_err(|e| format!("not a valid URL ({e}); expected http://host:port"))?;
    let shown = redacted_url(raw);
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!("{:?}: credentials in backend URLs are not supported", u.host_str().unwrap_or_default()));
    }
    match u.scheme() {
        "http" | "https" => {}
        other => {
            return Err(format!("{shown:?}: unsupported scheme {other:?}; expected http:// or https://"));
        }
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("{shown:?} has no host"));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(format!("{shown:?} must not have a query or fragment"));
    }
    Ok(u)
}

/// Parses `10.0.0.0/8` or a bare address (taken as a /32 or /128).
pub fn parse_cidr(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>().ok().or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

/// A route's `host:` in the form requests' hosts are matched in: the request-side rules of
/// [`crate::normalize::host`] (case, port, one trailing dot), so the two can never disagree.
/// `None` for a value no request host could normalise to.
pub fn normalize_host(host: &str) -> Option<String> {
    crate::normalize::host(host).ok().flatten().map(std::borrow::Cow::into_owned)
}

/// `/api/` and `/api` are the same prefix; `/` stays `/`.
pub fn trim_prefix(path: &str) -> &str {
    let t = path.trim_end_matches('/');
    if t.is_empty() { "/" } else { t }
}

/// A plugin name is its file name without `.wasm`: letters, digits, `-` and `_`.
pub fn check_plugin_name(name: &str) -> Result<(), String> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Ok(())
    } else {
        Err(format!("{name:?} is not a plugin name (letters, digits, '-' and '_': the file name without .wasm)"))
    }
}

/// A configured URL as it may be shown (logs, `/admin/config`, error messages): its userinfo
/// and the values of its query parameters replaced, since either may hold a credential
/// (`https://user:pass@idp/jwks?api_key=…`). A value that does not parse as a URL is hidden
/// whole.
pub fn redacted_url(raw: &str) -> String {
    let Ok(mut u) = url::Url::parse(raw) else {
        return "[unparsable URL redacted]".into();
    };
    if u.username().is_empty() && u.password().is_none() && u.query().is_none() {
        return raw.to_owned();
    }
    if !u.username().is_empty() {
        let _ = u.set_username("redacted");
    }
    if u.password().is_some() {
        let _ = u.set_password(Some("redacted"));
    }
    if u.query().is_some() {
        let keys: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
        u.query_pairs_mut().clear().extend_pairs(keys.iter().map(|k| (k.as_str(), "redacted")));
    }
    u.to_string()
}

/// One `retry_on` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryOn {
    /// The connection could not be made (nothing was sent).
    ConnectError,
    /// No response head within the attempt's timeout.
    Timeout,
    /// The connection broke after the request was sent.
    Reset,
    /// Any 5xx status.
    Any5xx,
    /// One status.
    Status(u16),
}

impl RetryOn {
    /// Parses `connect_error`, `timeout`, `reset`, `5xx` or a status such as `503`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "connect_error" => Ok(Self::ConnectError),
            "timeout" => Ok(Self::Timeout),
            "reset" => Ok(Self::Reset),
            "5xx" => Ok(Self::Any5xx),
            s => match s.parse::<u16>() {
                Ok(code) if (400..=599).contains(&code) => Ok(Self::Status(code)),
                _ => Err(format!(
                    "unknown retry condition {raw:?}: use connect_error, timeout, reset, 5xx or a status like 503"
                )),
            },
        }
    }
}

/// What a bucket is keyed by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySpec {
    /// The client IP (see `server.trusted_proxies`).
    ClientIp,
    /// A request header's value; requests without it are keyed by client IP.
    Header(HeaderName),
    /// A JWT claim of the route's auth policy; tokens without it are keyed by client IP.
    Claim(String),
}

impl KeySpec {
    /// Parses `client_ip`, `header:NAME` or `claim:NAME`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw == "client_ip" {
            return Ok(Self::ClientIp);
        }
        if let Some(name) = raw.strip_prefix("header:") {
            return HeaderName::from_bytes(name.trim().as_bytes())
                .map(Self::Header)
                .map_err(|_| format!("{name:?} is not a header name"));
        }
        if let Some(claim) = raw.strip_prefix("claim:")
            && !claim.trim().is_empty()
        {
            return Ok(Self::Claim(claim.trim().to_owned()));
        }
        Err(format!("unknown key {raw:?}: use client_ip, header:NAME or claim:NAME"))
    }
}

/// One entry of `allow_origins` other than `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `scheme://host[:port]`, lower-cased.
    Exact(String),
    /// `scheme://*.domain[:port]`: any subdomain (one or more labels) of `domain`.
    Subdomains {
        /// `https://`
        scheme: String,
        /// `.example.com`
        suffix: String,
        /// `:8443` or empty
        port: String,
    },
}

impl OriginPattern {
    /// Parses an origin pattern, explaining what is wrong with a bad one.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let lower = raw.trim().to_ascii_lowercase();
        let (scheme, rest) = lower.split_once("://").ok_or_else(|| {
            format!("{raw:?} is not an origin: expected scheme://host[:port], like https://app.example.com")
        })?;
        if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) {
            return Err(format!("{raw:?}: invalid scheme"));
        }
        if rest.contains(['/', '?', '#']) {
            return Err(format!("{raw:?}: an origin has no path, query or fragment (drop the trailing part)"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("{raw:?}: invalid port"));
                }
                (h, format!(":{p}"))
            }
            _ => (rest, String::new()),
        };
        let host_ok = |h: &str| {
            !h.is_empty()
                && h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'))
        };
        if let Some(domain) = host.strip_prefix("*.") {
            if !host_ok(domain) || domain.contains('*') || !domain.contains('.') {
                return Err(format!(
                    "{raw:?}: a wildcard must be a whole leading label of a domain, like https://*.example.com"
                ));
            }
            return Ok(Self::Subdomains { scheme: format!("{scheme}://"), suffix: format!(".{domain}"), port });
        }
        if !host_ok(host) {
            return Err(format!(
                "{raw:?}: invalid host (a wildcard is only allowed as the first label: https://*.example.com)"
            ));
        }
        Ok(Self::Exact(format!("{scheme}://{host}{port}")))
    }

    /// Whether `origin` (lower case) matches a `Subdomains` pattern (exact ones are looked up
    /// in a set).
    pub fn matches(&self, origin: &str) -> bool {
        match self {
            Self::Exact(_) => false, // exact origins are looked up in a set
            Self::Subdomains { scheme, suffix, port } => {
                let Some(rest) = origin.strip_prefix(scheme.as_str()) else { return false };
                let Some(host) = rest.strip_suffix(port.as_str()) else { return false };
                // With no port in the pattern, an origin with a port does not match.
                if port.is_empty() && host.contains(':') {
                    return false;
                }
                match host.strip_suffix(suffix.as_str()) {
                    Some(sub) => {
                        !sub.is_empty()
                            && sub.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
                            && !sub.starts_with('.')
                            && !sub.ends_with('.')
                    }
                    None => false,
                }
            }
        }
    }
}

/// Which kind of key a policy verifies with; decides which algorithms it may accept, so that a
/// policy can never verify an HMAC token with a public key (the HS/RS confusion attack).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// `secret`: HS256/384/512 only.
    Secret,
    /// `public_key_file`: one asymmetric family.
    PublicKey,
    /// `jwks_file` / `jwks_url`: asymmetric families.
    Jwks,
}

impl KeyKind {
    /// Checks that `algorithms` suit this kind of key.
    pub fn accepts(self, algorithms: &[Algorithm]) -> Result<(), String> {
        let hmac = algorithms.iter().any(|a| is_hmac(*a));
        match self {
            Self::Secret if !algorithms.iter().all(|a| is_hmac(*a)) => {
                Err("a `secret` verifies only HS256, HS384 or HS512".into())
            }
            Self::PublicKey | Self::Jwks if hmac => {
                Err("HS* algorithms need a `secret`; a public key or JWKS policy accepts only RS*, PS*, ES* or EdDSA"
                    .into())
            }
            _ => Ok(()),
        }
    }
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// The algorithm names a policy may list.
pub const SUPPORTED_ALGORITHMS: &str =
    "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA";

/// Parses a policy's `algorithms`: at least one, all known, all from one family.
pub fn parse_algorithms(names: &[String]) -> Result<Vec<Algorithm>, String> {
    if names.is_empty() {
        return Err(format!(
            "list the accepted algorithms, like [HS256] or [RS256] (supported: {SUPPORTED_ALGORITHMS})"
        ));
    }
    let mut algorithms = Vec::with_capacity(names.len());
    for name in names {
        if name.eq_ignore_ascii_case("none") {
            return Err("`none` (unsigned tokens) is never accepted".into());
        }
        let alg = Algorithm::from_str(name)
            .map_err(|_| format!("unknown algorithm {name:?} (supported: {SUPPORTED_ALGORITHMS})"))?;
        algorithms.push(alg);
    }
    let family = algorithms[0].family();
    if algorithms.iter().any(|a| a.family() != family) {
        return Err("all algorithms of a policy must use the same kind of key (HS*, RS*/PS*, ES* or EdDSA)".into());
    }
    Ok(algorithms)
}

/// A value the configuration holds as written and that is parsed once, when it is read:
/// validation reports one that does not parse (with its key path and `line:column`), the runtime
/// takes the parsed value, and nothing parses it again or can drop it silently.
#[derive(Clone)]
pub struct Parsed<T> {
    raw: String,
    value: Result<T, String>,
}

/// How a [`Parsed`] value is read from its text.
pub trait ParseValue: Sized {
    /// The value, or what is wrong with `raw` (a sentence naming it).
    fn parse_value(raw: &str) -> Result<Self, String>;
}

impl<T: ParseValue> Parsed<T> {
    /// Parses `raw`.
    pub fn new(raw: impl Into<String>) -> Self {
        let raw = raw.into();
        let value = T::parse_value(&raw);
        Self { raw, value }
    }
}

impl<T> Parsed<T> {
    /// The text as written.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The parsed value, or why the text is not one.
    pub fn get(&self) -> Result<&T, &str> {
        self.value.as_ref().map_err(String::as_str)
    }
}

impl<T: ParseValue> From<&str> for Parsed<T> {
    fn from(raw: &str) -> Self {
        Self::new(raw)
    }
}

impl<T: ParseValue> From<String> for Parsed<T> {
    fn from(raw: String) -> Self {
        Self::new(raw)
    }
}

/// Equal when written the same (what a reload compares).
impl<T> PartialEq for Parsed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl<T> Eq for Parsed<T> {}

impl<T> PartialEq<&str> for Parsed<T> {
    fn eq(&self, other: &&str) -> bool {
        self.raw == *other
    }
}

impl<T> std::fmt::Display for Parsed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.raw)
    }
}

impl<T> std::fmt::Debug for Parsed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.raw.fmt(f)
    }
}

/// Read from a string, or from a YAML integer as its text (`retry_on: [502]`).
impl<'de, T: ParseValue> serde::Deserialize<'de> for Parsed<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged, expecting = "a string")]
        enum Text {
            Text(String),
            Number(i64),
        }
        Ok(Self::new(match Text::deserialize(d)? {
            Text::Text(s) => s,
            Text::Number(n) => n.to_string(),
        }))
    }
}

/// Written back as written.
impl<T> serde::Serialize for Parsed<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl ParseValue for RetryOn {
    fn parse_value(raw: &str) -> Result<Self, String> {
        Self::parse(raw)
    }
}

impl ParseValue for std::net::SocketAddr {
    fn parse_value(raw: &str) -> Result<Self, String> {
        raw.parse().map_err(|_| format!("{raw:?} is not an IP:PORT address (like 0.0.0.0:8080)"))
    }
}

/// One entry of a CORS policy's `allow_origins`: `*`, or an origin pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowedOrigin {
    /// `*`: any origin.
    Any,
    /// One origin, or the subdomains of one.
    Pattern(OriginPattern),
}

impl ParseValue for AllowedOrigin {
    fn parse_value(raw: &str) -> Result<Self, String> {
        if raw == "*" { Ok(Self::Any) } else { OriginPattern::parse(raw).map(Self::Pattern) }
    }
}

impl ParseValue for KeySpec {
    fn parse_value(raw: &str) -> Result<Self, String> {
        Self::parse(raw)
    }
}

impl ParseValue for ipnet::IpNet {
    fn parse_value(raw: &str) -> Result<Self, String> {
        parse_cidr(raw).ok_or_else(|| format!("{raw:?} is not an IP address or CIDR (like 10.0.0.0/8)"))
    }
}

impl ParseValue for url::Url {
    fn parse_value(raw: &str) -> Result<Self, String> {
        check_url(raw)
    }
}

/// A route's method: any token of letters, matched case-insensitively (written upper case).
impl ParseValue for crate::http_types::Method {
    fn parse_value(raw: &str) -> Result<Self, String> {
        let upper = raw.to_ascii_uppercase();
        if upper.is_empty() || !upper.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(format!("{raw:?} is not an HTTP method"));
        }
        Self::from_bytes(upper.as_bytes()).map_err(|_| format!("{raw:?} is not an HTTP method"))
    }
}
