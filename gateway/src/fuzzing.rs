//! The bodies of the fuzz targets (issue 14): `gateway/fuzz` runs them under libFuzzer
//! (`make fuzz`), and `gateway/tests/fuzz_corpus.rs` replays their committed corpora on every
//! `make test`. Each takes arbitrary bytes, must never panic, and asserts the properties the
//! gateway's security rests on; a violated property is a crash, which becomes a corpus entry and
//! so a regression test.

use std::sync::{Arc, OnceLock};

use crate::{
    config,
    filters::jwt,
    headers as h,
    http_types::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version, header},
    normalize,
    pipeline::message::RequestHead,
    routing,
};

/// The configuration loader: YAML, `${VAR}` expansion (from a fixed environment), validation,
/// and the redacted form `/admin/config` serves. Never panics; a loaded configuration
/// serializes.
pub fn config_loader(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env = |name: &str| match name {
        "SECRET" => Some("s3cr3t-value".to_owned()),
        "PORT" => Some("8080".to_owned()),
        _ => None,
    };
    match config::load::load_with_env(text, "fuzz.yaml", &env) {
        Ok(cfg) => {
            // What `/admin/config` shows: secrets redacted.
            let shown = serde_json::to_value(&cfg).expect("a loaded configuration serializes");
            if !cfg.admin.token.is_empty() {
                assert_eq!(shown["admin"]["token"], "[redacted]");
            }
            for (name, policy) in &cfg.auth {
                if policy.secret.as_deref().is_some_and(|s| !s.is_empty()) {
                    assert_eq!(shown["auth"][name]["secret"], "[redacted]", "auth.{name}.secret shown");
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// A small route table: a public prefix, a protected one, a `strip_prefix` one and the root.
fn table() -> &'static routing::RouteTable {
    static TABLE: OnceLock<routing::RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let route = |name: &str, prefix: &str, strip: bool| Arc::new(routing::Route::for_tests(name, prefix, strip));
        routing::RouteTable::new(vec![
            route("pub", "/pub", false),
            route("api", "/api", false),
            route("strip", "/strip", true),
            route("root", "/", false),
        ])
    })
}

/// Whether a path has an empty, `.` or `..` segment under the readings the normaliser guards
/// against (as sent, and with escapes decoded once).
fn has_dot_or_empty_segment(path: &str) -> bool {
    let decoded = percent_decode(path);
    path.contains("//") || [path, decoded.as_str()].iter().any(|p| p.split(['/', '\\']).any(|s| s == "." || s == ".."))
}

/// Decodes every escape once: an oracle written apart from the normaliser's own decoder, so a
/// bug there is not shared by the property that checks it.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(byte) = s.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path normaliser and the route table: a normalised path starts with `/`, has no empty,
/// `.` or `..` segment (also with escapes decoded), no backslash or NUL, is its own normal form;
/// and what `strip_prefix` leaves of it starts with `/` and has no dot segment either. Hosts:
/// a normalised host is lower-case, without port and trailing dot.
pub fn path_and_routes(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (raw_host, raw_path) = text.split_once('\n').unwrap_or(("", text));
    if let Ok(Some(host)) = normalize::host(raw_host) {
        assert!(!host.bytes().any(|b| b.is_ascii_uppercase()), "{host}");
        assert!(!host.ends_with('.') && !host.is_empty(), "{host}");
        assert!(host.starts_with('[') || !host.contains(':'), "{host}");
    }
    let Ok(normal) = normalize::path(raw_path) else { return };
    let path = &*normal.path;
    assert!(path.starts_with('/'), "{raw_path:?} -> {path:?}");
    assert!(!has_dot_or_empty_segment(path), "{raw_path:?} -> {path:?}");
    assert!(!path.contains(['\\', '\0']), "{raw_path:?} -> {path:?}");
    let again = normalize::path(path).expect("a normal path is accepted");
    assert_eq!(again.path, path, "not a fixed point: {raw_path:?}");
    for method in [Method::GET, Method::POST] {
        if let routing::RouteMatch::Found(route) = table().find(None, path, &method) {
            let upstream = route.upstream_path(path);
            assert!(upstream.starts_with('/'), "{path:?} -> {upstream:?}");
            assert!(!has_dot_or_empty_segment(upstream), "{path:?} -> {upstream:?}");
        }
    }
}

/// Header rewriting: whatever the client sends, the headers forwarded carry no hop-by-hop
/// header, nothing named in `Connection`, no claim header and no underscored name.
pub fn header_rules(data: &[u8]) {
    let mut incoming = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(&line[colon + 1..]))
        else {
            continue;
        };
        incoming.append(name, value);
    }
    let claim = HeaderName::from_static("x-user-id");
    let rules =
        h::RequestHeaderRules { claim_headers: vec![claim.clone()], keep_underscores: data.first() == Some(&b'k') };
    let mut out = incoming.clone();
    h::retain_end_to_end(&mut out, &h::REQUEST_SET_BY_GATEWAY);
    rules.apply(&mut out);
    let connection_named: Vec<String> = incoming
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .collect();
    for name in out.keys() {
        assert!(!h::is_hop_by_hop(name), "{name} forwarded");
        assert!(!h::REQUEST_SET_BY_GATEWAY.contains(name), "{name} copied");
        assert!(!connection_named.iter().any(|c| c == name.as_str()), "{name} named in Connection, forwarded");
        assert!(name != claim && name.as_str().replace('_', "-") != claim.as_str(), "{name} forged");
        assert!(rules.keep_underscores || !name.as_str().contains('_'), "{name} has an underscore");
    }
}

/// JWT token extraction from the `Authorization` header, a cookie and a query parameter, and
/// the verification of what is found (HS256 policy): never panics, and a query token is never
/// left in the query forwarded or logged.
pub fn jwt_token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut parts = text.splitn(3, '\n');
    let (auth, cookie, query) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    // The query as the token-taking and redaction code sees it.
    if let Some((token, rest)) = jwt::token::take_query_param(query, "access_token") {
        assert!(!rest.split('&').any(|p| jwt::token::query_key_is(p.split('=').next().unwrap_or(""), "access_token")));
        let _ = token;
    }
    // Redacted: no `access_token` pair (split on `&`, or on `;` within one) keeps its value.
    let redacted = jwt::token::redact_query(query, &["access_token".to_owned()]);
    for pair in redacted.split('&') {
        let mut parts = pair.split(';');
        while let Some(part) = parts.next() {
            if let Some((k, v)) = part.split_once('=')
                && jwt::token::query_key_is(k, "access_token")
            {
                assert_eq!(v, "[redacted]", "{query:?} -> {redacted:?}");
                assert!(parts.next().is_none(), "text after a redacted value: {query:?} -> {redacted:?}");
            }
        }
    }
    let (policy, rt) = policy();
    let mut req = RequestHead {
        method: Method::GET,
        uri: Uri::from_static("/api"),
        version: Version::HTTP_11,
        headers: HeaderMap::new(),
    };
    if let Ok(uri) = format!("/api?{query}").parse::<Uri>() {
        req.uri = uri;
    }
    if let Ok(v) = HeaderValue::from_str(auth)
        && !auth.is_empty()
    {
        req.headers.insert(header::AUTHORIZATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(cookie)
        && !cookie.is_empty()
    {
        req.headers.insert(header::COOKIE, v);
    }
    let _ = rt.block_on(policy.authenticate(&req));
}

/// An HS256 policy taking tokens from the header, the `session` cookie and `access_token`.
fn policy() -> &'static (jwt::JwtPolicy, tokio::runtime::Runtime) {
    static POLICY: OnceLock<(jwt::JwtPolicy, tokio::runtime::Runtime)> = OnceLock::new();
    POLICY.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let config = config::JwtConfig {
            algorithms: vec!["HS256".into()],
            secret: Some("fuzz-secret-0123456789abcdef0123456789".into()),
            cookie: Some("session".into()),
            query_param: Some("access_token".into()),
            forward_claims: [("sub".to_owned(), "X-User-Id".to_owned())].into_iter().collect(),
            ..Default::default()
        };
        let metrics = crate::metrics::Metrics::new();
        let policy = jwt::JwtPolicy::new("fuzz", &config, rt.handle(), &metrics.jwks_fetches).expect("a valid policy");
        (policy, rt)
    })
}

/// The plugin host ABI: a guest calling every host import with arbitrary pointers, lengths and
/// values (see `plugins::fuzz`). Needs the `wasm` feature.
#[cfg(feature = "wasm")]
pub fn plugin_abi(data: &[u8]) {
    crate::plugins::fuzz::plugin_abi(data);
}
