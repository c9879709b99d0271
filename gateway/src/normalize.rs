//! The normalisation policy applied to every request **before** routing (docs/security.md,
//! "Path normalisation"): the path a route is matched on is the path the backend receives, so a
//! request cannot be routed as one path and served by the backend as another.
//!
//! Paths, in the spirit of RFC 3986 §6.2.2 and §5.2.4 and of Envoy's `normalize_path` +
//! `merge_slashes`:
//!
//! * percent-encoded unreserved characters are decoded (`%7E` → `~`, `%2e` → `.`); every other
//!   escape is kept as sent; a malformed escape (`%zz`, `%4`) is refused;
//! * repeated slashes are merged (`//a///b` → `/a/b`);
//! * `.` and `..` segments are resolved (`/a/./b/../c` → `/a/c`); a path that climbs above `/`
//!   is refused;
//! * because backends differ in what they decode, a path is refused if a segment would be `.`
//!   or `..` under any common reading: with `%2F`/`%5C` taken as separators, with `;` path
//!   parameters dropped (Tomcat: `..;/`), or decoded twice (`%252e`);
//! * `%00`, a raw backslash and anything not a path (`*`, an authority) are refused;
//! * an encoded slash or backslash (`%2F`, `%5C`) is refused unless the route opts in
//!   (`allow_encoded_slashes`), in which case it is kept encoded.
//!
//! Hosts: case folded, the port and one trailing dot removed; a value that is not a valid
//! authority (`a b`, `a@b`) is refused.
//!
//! The common case — a path with no escape, no empty segment and no dot segment — is checked
//! in one pass and borrowed, not copied.

use std::borrow::Cow;

/// Why a request target or host was refused (the 400's message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The target is not an absolute path (`*`, authority form, empty).
    NotAPath,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// `%00` or a control character.
    NulByte,
    /// A raw backslash.
    Backslash,
    /// `..` above the root.
    AboveRoot,
    /// A `.`/`..` segment under another reading (encoded separators, `;` parameters,
    /// double decoding).
    AmbiguousDotSegment,
    /// `%2F` or `%5C` on a route that does not allow them.
    EncodedSlash,
    /// A `Host` that is not a valid authority.
    BadHost,
    /// More than one `Host` header (RFC 9112 §3.2).
    DuplicateHost,
    /// An HTTP/1.1 request without `Host` (RFC 9112 §3.2).
    MissingHost,
    /// A method with lower-case letters: methods are case-sensitive (RFC 9110 §9.1), and a
    /// backend that folds case would serve `get` as `GET` past a route's `methods`.
    MethodCase,
    /// A request pipelined after one that closed the connection.
    AfterClose,
    /// An absolute-form target whose host is not the `Host` header's.
    HostMismatch,
    /// An `Upgrade` request declaring a body.
    UpgradeWithBody,
    /// An escape of an overlong UTF-8 sequence (`%c0%ae` is `.` to some decoders).
    Overlong,
    /// A `;` parameter right after the prefix of a `strip_prefix` route.
    PrefixParameter,
}

impl Refusal {
    /// The message of the 400 answer (never echoes the input).
    pub fn message(self) -> &'static str {
        match self {
            Self::NotAPath => "the request target is not a path",
            Self::BadEscape => "the request path has a malformed percent-encoding",
            Self::NulByte => "the request path contains a NUL or control character",
            Self::Backslash => "the request path contains a backslash",
            Self::AboveRoot => "the request path climbs above the root",
            Self::AmbiguousDotSegment => "the request path has an ambiguous dot segment",
            Self::EncodedSlash => "the request path contains an encoded slash or backslash",
            Self::BadHost => "the Host header is not a valid host",
            Self::DuplicateHost => "the request has more than one Host header",
            Self::MissingHost => "an HTTP/1.1 request must have a Host header",
            Self::MethodCase => "methods are case-sensitive: this method is not known",
            Self::AfterClose => "a request after `Connection: close` on the same connection is not served",
            Self::HostMismatch => "the request target's host is not the Host header's",
            Self::UpgradeWithBody => "an upgrade request cannot carry a body",
            Self::Overlong => "the request path has an overlong UTF-8 escape",
            Self::PrefixParameter => "the request path has a `;` parameter right after the route's prefix",
        }
    }

    /// The `reason` label of `rustygate_client_errors_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::NotAPath => "bad_target",
            Self::BadEscape => "bad_escape",
            Self::NulByte => "nul_byte",
            Self::Backslash => "backslash",
            Self::AboveRoot => "above_root",
            Self::AmbiguousDotSegment => "ambiguous_dot_segment",
            Self::EncodedSlash => "encoded_slash",
            Self::BadHost => "bad_host",
            Self::DuplicateHost => "duplicate_host",
            Self::MissingHost => "missing_host",
            Self::MethodCase => "method_case",
            Self::AfterClose => "after_close",
            Self::HostMismatch => "host_mismatch",
            Self::UpgradeWithBody => "upgrade_with_body",
            Self::Overlong => "overlong_utf8",
            Self::PrefixParameter => "prefix_parameter",
        }
    }
}

/// A normalised request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath<'a> {
    /// The path routes are matched on and the backend receives.
    pub path: Cow<'a, str>,
    /// The path keeps an encoded `/` or `\` (`%2F`, `%5C`): allowed only on routes that opt in.
    pub encoded_slash: bool,
}

/// Normalises a request path (no query). See the module documentation for the rules.
pub fn path(raw: &str) -> Result<NormalPath<'_>, Refusal> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(Refusal::NotAPath);
    }
    if is_normal(bytes) {
        return Ok(NormalPath { path: Cow::Borrowed(raw), encoded_slash: false });
    }
    let mut encoded_slash = false;
    // Segments of the output, each already decoded per the rules; `..` pops.
    let mut out: Vec<String> = Vec::new();
    let mut trailing_slash = false;
    for raw_seg in raw[1..].split('/') {
        let seg = decode_unreserved(raw_seg)?;
        check_other_readings(&seg)?;
        if has_encoded_separator(&seg) {
            encoded_slash = true;
        }
        match seg.as_str() {
            // `//` merged; a trailing empty segment is a trailing slash.
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                if out.pop().is_none() {
                    return Err(Refusal::AboveRoot);
                }
                trailing_slash = true;
            }
            _ => {
                out.push(seg);
                trailing_slash = false;
            }
        }
    }
    let mut path = String::with_capacity(raw.len());
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if trailing_slash || out.is_empty() {
        path.push('/');
    }
    Ok(NormalPath { path: Cow::Owned(path), encoded_slash })
}

/// One pass over the common case: no escape, no backslash or control byte, no empty segment,
/// no segment starting with a dot (which covers `.`, `..` and `..;x`).
fn is_normal(bytes: &[u8]) -> bool {
    let mut prev = 0u8;
    for &b in bytes {
        match b {
            b'%' | b'\\' | 0..=0x1f | 0x7f => return false,
            b'/' if prev == b'/' => return false,
            b'.' if prev == b'/' => return false,
            _ => {}
        }
        prev = b;
    }
    true
}

/// Whether a segment holds `%2F` or `%5C` (either case).
fn has_encoded_separator(seg: &str) -> bool {
    seg.as_bytes().windows(3).any(|w| w[0] == b'%' && matches!((w[1], w[2] | 0x20), (b'2', b'f') | (b'5', b'c')))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decodes escaped unreserved characters of one segment, keeping the other escapes as sent.
fn decode_unreserved(seg: &str) -> Result<String, Refusal> {
    let b = seg.as_bytes();
    let mut out = String::with_capacity(seg.len());
    let mut i = 0;
    // The previous escaped byte (0 after anything else), for overlong sequences.
    let mut prev = 0u8;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let (Some(hi), Some(lo)) = (b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex))
                else {
                    return Err(Refusal::BadEscape);
                };
                let c = hi << 4 | lo;
                if c < 0x20 || c == 0x7f {
                    return Err(Refusal::NulByte);
                }
                // Never valid UTF-8: C0/C1 leads, and E0 80-9F / F0 80-8F (overlong forms).
                if matches!(c, 0xC0 | 0xC1) || (prev == 0xE0 && c < 0xA0) || (prev == 0xF0 && c < 0x90) {
                    return Err(Refusal::Overlong);
                }
                prev = c;
                if is_unreserved(c) {
                    out.push(c as char);
                } else {
                    // Kept as the client wrote it: byte-exact forwarding of everything the
                    // policy does not need to change.
                    out.push_str(&seg[i..i + 3]);
                }
                i += 3;
            }
            b'\\' => return Err(Refusal::Backslash),
            0..=0x1f | 0x7f => return Err(Refusal::NulByte),
            _ => {
                prev = 0;
                // Copy the run up to the next byte that needs a look (keeps UTF-8 intact).
                let start = i;
                while i < b.len() && !matches!(b[i], b'%' | b'\\' | 0..=0x1f | 0x7f) {
                    i += 1;
                }
                out.push_str(&seg[start..i]);
            }
        }
    }
    Ok(out)
}

/// Refuses a segment that some backend would read as `.` or `..`: with `%2F`/`%5C` as
/// separators, with `;` parameters dropped, or with escapes decoded once more (`%252e` →
/// `%2e` → `.`). `seg` has its unreserved escapes decoded already.
fn check_other_readings(seg: &str) -> Result<(), Refusal> {
    if !seg.contains(['%', ';']) {
        // Plain text can still be dot-like for some servers (`...`); `.`/`..` themselves are
        // resolved by the caller.
        if seg != "." && seg != ".." && is_dot_like(seg) {
            return Err(Refusal::AmbiguousDotSegment);
        }
        return Ok(());
    }
    // Decode every escape, up to three times (a backend that decodes more than we do).
    let once = decode_all(seg);
    let twice = decode_all(&once);
    let thrice = decode_all(&twice);
    for reading in [seg, once.as_str(), twice.as_str(), thrice.as_str()] {
        for piece in reading.split(['/', '\\']) {
            let piece = piece.split(';').next().unwrap_or_default();
            if is_dot_like(piece) {
                return Err(Refusal::AmbiguousDotSegment);
            }
        }
        if reading.as_bytes().contains(&0) {
            return Err(Refusal::NulByte);
        }
    }
    Ok(())
}

/// `.` or `..` as some backend reads it: Windows servers drop trailing dots and spaces
/// (`..%20`, `...`), NFKC folds the fullwidth dot `．` (U+FF0E) to `.`.
fn is_dot_like(piece: &str) -> bool {
    let core = piece.trim_end_matches([' ', '\t']);
    !core.is_empty() && core.chars().all(|c| c == '.' || c == '\u{FF0E}')
}

/// Decodes every well-formed escape (lossily: only used to look for dot segments).
fn decode_all(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(hi), Some(lo)) = (b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Normalises a `Host` value for matching: the name without port, lower-cased, one trailing
/// dot removed. `Err` for a value that is not an authority; `Ok(None)` for an empty one.
pub fn host(raw: &str) -> Result<Option<Cow<'_, str>>, Refusal> {
    let raw = raw.trim_matches([' ', '\t']);
    if raw.is_empty() {
        return Ok(None);
    }
    let name = if let Some(rest) = raw.strip_prefix('[') {
        // IP-literal, then an optional `:port`.
        let (inside, after) = rest.split_once(']').ok_or(Refusal::BadHost)?;
        if inside.is_empty() || !inside.bytes().all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.')) {
            return Err(Refusal::BadHost);
        }
        check_port(after)?;
        &raw[..inside.len() + 2]
    } else {
        let (name, port) = match raw.rfind(':') {
            Some(i) => (&raw[..i], &raw[i..]),
            None => (raw, ""),
        };
        check_port(port)?;
        let name = name.strip_suffix('.').unwrap_or(name);
        // DNS names and IPv4 addresses only: letters, digits, `-`, `.`, `_`. RFC 3986 would
        // also allow sub-delims and escapes, but backends read `a.test,evil` (a list in
        // X-Forwarded-Host), `a%2etest` or `a;b` as other hosts than the one routed on.
        let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
        if name.is_empty()
            || !name.bytes().all(valid)
            || name.starts_with('.')
            || name.ends_with('.')
            || name.contains("..")
        {
            return Err(Refusal::BadHost);
        }
        name
    };
    Ok(Some(if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }))
}

/// `""` or `:` followed by a port number (0-65535).
fn check_port(port: &str) -> Result<(), Refusal> {
    match port.strip_prefix(':') {
        None if port.is_empty() => Ok(()),
        Some(digits) if digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit()) => {
            digits.parse::<u16>().map(|_| ()).map_err(|_| Refusal::BadHost)
        }
        _ => Err(Refusal::BadHost),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, Refusal> {
        path(p).map(|n| n.path.into_owned())
    }

    #[test]
    fn common_paths_are_borrowed_unchanged() {
        for p in ["/", "/api/test", "/a/b/", "/a.b/c..d/.e/x", "/a;b=c/d", "/~user/ünï"] {
            let n = path(p).unwrap();
            assert_eq!(n.path, p);
            if !p.contains("/.") {
                assert!(matches!(n.path, Cow::Borrowed(_)), "{p}");
            }
        }
    }

    #[test]
    fn dot_segments_resolve_and_slashes_merge() {
        assert_eq!(norm("/pub/../api/secret").unwrap(), "/api/secret");
        assert_eq!(norm("/pub/%2e%2e/api/secret").unwrap(), "/api/secret");
        assert_eq!(norm("/pub/%2E%2e/api/secret").unwrap(), "/api/secret");
        assert_eq!(norm("//api2/secret").unwrap(), "/api2/secret");
        assert_eq!(norm("/a//b///c").unwrap(), "/a/b/c");
        assert_eq!(norm("/a/./b/.").unwrap(), "/a/b/");
        assert_eq!(norm("/a/b/..").unwrap(), "/a/");
        assert_eq!(norm("/a/..").unwrap(), "/");
        assert_eq!(norm("/.").unwrap(), "/");
        assert_eq!(norm("/%7Euser/%41").unwrap(), "/~user/A");
        assert_eq!(norm("/a%2fb").unwrap(), "/a%2fb");
        assert_eq!(norm("/a%c3%a9/%20").unwrap(), "/a%c3%a9/%20");
    }

    #[test]
    fn climbing_and_ambiguous_paths_are_refused() {
        use Refusal::*;
        let cases = [
            ("/..", AboveRoot),
            ("/strip/../../etc/passwd", AboveRoot),
            ("/a/%2e%2e/%2e%2e/x", AboveRoot),
            ("/pub/..%2fapi/secret", AmbiguousDotSegment),
            ("/pub/..%2Fapi", AmbiguousDotSegment),
            ("/pub/..%5capi", AmbiguousDotSegment),
            ("/pub/..;/api/secret", AmbiguousDotSegment),
            ("/pub/.;/x", AmbiguousDotSegment),
            ("/pub/..;jsessionid=1/x", AmbiguousDotSegment),
            ("/pub/%252e%252e/api", AmbiguousDotSegment),
            ("/pub/%252e%252e%252fapi", AmbiguousDotSegment),
            ("/pub/%25252e%25252e/api", AmbiguousDotSegment),
            ("/pub/..%20/api", AmbiguousDotSegment),
            ("/pub/...", AmbiguousDotSegment),
            ("/pub/%ef%bc%8e%ef%bc%8e/api", AmbiguousDotSegment),
            ("/a%00b", NulByte),
            ("/a%2500", NulByte),
            ("/a%0d%0a", NulByte),
            ("/a\\b", Backslash),
            ("/a%zz", BadEscape),
            ("/a%4", BadEscape),
            ("/pub/%c0%ae%c0%ae/api", Overlong),
            ("/pub/%e0%80%ae", Overlong),
            ("/pub/%C1%9C", Overlong),
            ("*", NotAPath),
            ("", NotAPath),
            ("example.com:443", NotAPath),
        ];
        for (p, want) in cases {
            assert_eq!(norm(p), Err(want), "{p}");
        }
    }

    #[test]
    fn encoded_slashes_are_flagged() {
        assert!(path("/files/a%2Fb").unwrap().encoded_slash);
        assert!(path("/files/a%5cb").unwrap().encoded_slash);
        assert!(!path("/files/a%20b").unwrap().encoded_slash);
    }

    #[test]
    fn normal_form_is_a_fixed_point() {
        for p in ["/pub/../api/x", "//a//b/", "/a/%2e/b/%7e", "/x/y/../../z/"] {
            let once = norm(p).unwrap();
            assert_eq!(norm(&once).unwrap(), once, "{p}");
        }
    }

    #[test]
    fn hosts() {
        let h = |s| host(s).map(|o| o.map(Cow::into_owned));
        assert_eq!(h("Secure.Example.com.").unwrap().as_deref(), Some("secure.example.com"));
        assert_eq!(h("secure.example.com.:8080").unwrap().as_deref(), Some("secure.example.com"));
        assert_eq!(h("api.example.com:80").unwrap().as_deref(), Some("api.example.com"));
        assert_eq!(h("[::1]:8080").unwrap().as_deref(), Some("[::1]"));
        assert_eq!(h("127.0.0.1").unwrap().as_deref(), Some("127.0.0.1"));
        assert_eq!(h("").unwrap(), None);
        for bad in [
            "a b",
            "a@b",
            "a/b",
            "a:b:c",
            "a:99999x",
            "a:99999",
            "[::1",
            "[zz]",
            ".",
            "..",
            "a..b",
            ".a",
            "a\\b",
            "a..",
            "a.test,evil",
            "a;b",
            "a%2etest",
            "a!",
        ] {
            assert_eq!(h(bad), Err(Refusal::BadHost), "{bad}");
        }
    }
}
