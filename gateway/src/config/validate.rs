//! Semantic checks on a deserialized [`Config`]: everything serde's types cannot express
//! (addresses, URLs, references between sections, duplicates, features not built yet).
//! Returns every problem found, never only the first.

use std::{collections::HashSet, net::SocketAddr};

use super::{
    issues::ConfigIssue,
    schema::{BackendConfig, Config, JwtConfig, NO_POLICY, RateLimitConfig, Strategy},
    suggest::closest,
};

/// The largest weight a backend may have (the round-robin schedule is precomputed).
pub const MAX_WEIGHT: u32 = 1000;

use super::values::{check_plugin_name, normalize_host, trim_prefix};

/// Checks a configuration; an empty result means it can be compiled.
pub fn validate(config: &Config) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    let mut issue = |path: String, msg: String| issues.push(ConfigIssue::at(path, msg));

    check_plugins(config, &mut issue);

    let proxy_addr = check_listen(&config.server.listen, "server.listen", &mut issue);
    if config.server.redirect_https && config.server.tls.is_none() {
        issue("server.redirect_https".into(), "needs an HTTPS listener to redirect to (server.tls)".into());
    }
    let asks_client_certs =
        config.server.tls.as_ref().is_some_and(|t| t.client_auth.mode != super::schema::ClientAuthMode::None);
    for (i, route) in config.routes.iter().enumerate() {
        check_websocket(route, &format!("routes[{i}]"), &mut issue);
        if let Some(cc) = &route.client_cert
            && (cc.required || !cc.allowed_subjects.is_empty() || !cc.allowed_sans.is_empty())
            && !asks_client_certs
        {
            issue(
                format!("routes[{i}].client_cert"),
                "no listener asks for client certificates: set server.tls.client_auth (optional or require)".into(),
            );
        }
    }
    if let Some(tls) = &config.server.tls {
        check_tls_listener(tls, proxy_addr, &mut issue);
    }
    let admin_addr = check_listen(&config.admin.listen, "admin.listen", &mut issue);
    if let (Some(p), Some(a)) = (proxy_addr, admin_addr)
        && p.port() == a.port()
        && p.port() != 0
        && (p.ip() == a.ip() || p.ip().is_unspecified() || a.ip().is_unspecified())
    {
        issue("admin.listen".into(), format!("the admin listener must not share the proxy's address {p}"));
    }
    if config.server.max_body_size.0 == 0 {
        issue("server.max_body_size".into(), "must be greater than 0".into());
    }
    let sv = &config.server;
    for (name, d) in [
        ("client_header_timeout", sv.client_header_timeout),
        ("keep_alive", sv.keep_alive),
        ("client_body_timeout", sv.client_body_timeout),
        ("send_timeout", sv.send_timeout),
    ] {
        if d.0.is_zero() {
            issue(format!("server.{name}"), "must be greater than 0".into());
        }
    }
    if sv.max_connections == 0 {
        issue("server.max_connections".into(), "must be at least 1".into());
    }
    // A head must hold at least a request line and a Host header.
    for (name, size) in [("max_header_size", sv.max_header_size), ("max_request_head_size", sv.max_request_head_size)] {
        if size.0 < 256 {
            issue(format!("server.{name}"), "must be at least 256 bytes".into());
        }
    }
    for (i, cidr) in config.server.trusted_proxies.iter().enumerate() {
        if let Err(e) = cidr.get() {
            issue(format!("server.trusted_proxies[{i}]"), e.to_owned());
        }
    }
    check_tracing(&config.tracing, &mut issue);
    if let Err(e) = config.log.level.parse::<tracing_subscriber::EnvFilter>() {
        issue(
            "log.level".into(),
            format!("invalid level {:?}: {e} (use error, warn, info, debug or trace)", config.log.level),
        );
    }

    for (name, up) in &config.upstreams {
        let base = format!("upstreams.{name}");
        if name.is_empty() {
            issue(base.clone(), "an upstream name cannot be empty".into());
        }
        check_backends(&up.backends, &format!("{base}.backends"), &mut issue);
        if up.strategy == Strategy::HeaderHash && up.hash_header.is_none() {
            issue(format!("{base}.hash_header"), "strategy header_hash needs `hash_header: NAME`".into());
        }
        if let Some(h) = &up.hash_header {
            if crate::http_types::HeaderName::from_bytes(h.as_bytes()).is_err() {
                issue(format!("{base}.hash_header"), format!("{h:?} is not a header name"));
            } else if up.strategy != Strategy::HeaderHash {
                issue(format!("{base}.hash_header"), "`hash_header` applies to strategy header_hash".into());
            }
        }
        if let Some(hc) = &up.health_check {
            check_health(hc, &format!("{base}.health_check"), &mut issue);
            if hc.protocol == super::schema::HealthCheckProtocol::Grpc && !up.protocol.is_http2() {
                issue(
                    format!("{base}.health_check.protocol"),
                    "grpc health checks need an HTTP/2 upstream (protocol: h2 or h2c)".into(),
                );
            }
        }
        check_retries(up, &base, &mut issue);
        if let Some(tls) = &up.tls {
            check_upstream_tls(tls, &base, &mut issue);
        }
        if up.timeout.0.is_zero() {
            issue(format!("{base}.timeout"), "must be greater than 0".into());
        }
        if up.read_timeout.0.is_zero() {
            issue(format!("{base}.read_timeout"), "must be greater than 0".into());
        }
        if up.connect_timeout.0.is_zero() {
            issue(format!("{base}.connect_timeout"), "must be greater than 0".into());
        }
        check_protocol(up, &base, &mut issue);
    }
    // WebSocket sessions are HTTP/1.1 upgrades: their route's backends must speak HTTP/1.1.
    for (i, route) in config.routes.iter().enumerate() {
        let protocol = route.upstream.as_ref().and_then(|u| config.upstreams.get(u)).map(|u| u.protocol);
        if route.websocket && protocol.is_some_and(|p| p.is_http2()) {
            issue(
                format!("routes[{i}].websocket"),
                "WebSocket sessions are HTTP/1.1 upgrades: the route's upstream must have protocol: http1".into(),
            );
        }
    }

    for (name, policy) in &config.cors {
        check_policy_name("cors", name, &mut issue);
        check_cors(policy, &format!("cors.{name}"), &mut issue);
    }
    for (name, policy) in &config.auth {
        check_policy_name("auth", name, &mut issue);
        check_jwt(policy, &format!("auth.{name}"), &mut issue);
    }
    for (name, policy) in &config.rate_limits {
        check_policy_name("rate_limits", name, &mut issue);
        if !name.bytes().all(|b| b.is_ascii_graphic()) {
            issue(
                format!("rate_limits.{name}"),
                "a rate-limit policy name is sent in headers: use printable ASCII".into(),
            );
        }
        check_rate_limit(policy, &format!("rate_limits.{name}"), &mut issue);
    }
    let cors_names: Vec<&str> = config.cors.keys().map(String::as_str).collect();
    let auth_names: Vec<&str> = config.auth.keys().map(String::as_str).collect();
    let limit_names: Vec<&str> = config.rate_limits.keys().map(String::as_str).collect();
    let kinds = [("auth", "JWT policy", &auth_names), ("rate_limit", "rate-limit policy", &limit_names)];
    let kinds = [kinds[0], kinds[1], ("cors", "CORS policy", &cors_names)];
    let defaults = [&config.defaults.auth, &config.defaults.rate_limit, &config.defaults.cors];
    for ((key, kind, known), name) in kinds.iter().zip(defaults) {
        if let Some(name) = name
            && name != NO_POLICY
            && !known.contains(&name.as_str())
        {
            issue(format!("defaults.{key}"), unknown_reference(kind, name, known));
        }
    }

    let upstream_names: Vec<&str> = config.upstreams.keys().map(String::as_str).collect();
    let mut names = HashSet::new();
    let mut explicit_names: HashSet<&str> = HashSet::new();
    let mut matchers = HashSet::new();
    // (host, path) pairs seen, for the any-method overlap check without a scan.
    let mut prefixes = HashSet::new();
    for (i, route) in config.routes.iter().enumerate() {
        let base = format!("routes[{i}]");
        let path = &route.path;
        if path.is_empty() {
            issue(format!("{base}.path"), "a route needs a `path` (like /api/users)".into());
        } else if !path.starts_with('/') {
            issue(format!("{base}.path"), format!("{path:?} must start with `/`"));
        } else if path.contains(['?', '#']) || path.contains(char::is_whitespace) {
            issue(
                format!("{base}.path"),
                format!("{path:?} must be a plain path prefix, without query, fragment or spaces"),
            );
        } else {
            // Requests are matched after normalisation, so a prefix that is not in normal form
            // could never match (docs/security.md).
            match crate::normalize::path(path) {
                Err(refusal) => issue(format!("{base}.path"), format!("{path:?}: {}", refusal.message())),
                Ok(n) if n.encoded_slash => issue(
                    format!("{base}.path"),
                    format!("{path:?}: a route prefix cannot hold an encoded slash or backslash"),
                ),
                Ok(n) if n.path != path.as_str() => issue(
                    format!("{base}.path"),
                    format!("{path:?} never matches: requests are normalised first; write {:?}", n.path),
                ),
                Ok(_) => {}
            }
        }
        if let Some(name) = &route.name {
            if name.is_empty() {
                issue(format!("{base}.name"), "cannot be empty".into());
            }
            explicit_names.insert(name.as_str());
        }
        // Two routes with the same derived name are the same matcher, reported below; a name
        // is a duplicate when one of the two was given.
        if !names.insert(route.display_name().to_owned())
            && (route.name.is_some() || explicit_names.contains(route.display_name()))
        {
            issue(
                format!("{base}.name"),
                format!(
                    "duplicate route name {:?} (names label metrics and must be unique; set `name:`)",
                    route.display_name()
                ),
            );
        }
        let mut methods: Vec<String> = Vec::new();
        for (j, m) in route.methods.iter().enumerate() {
            if let Err(e) = m.get() {
                issue(format!("{base}.methods[{j}]"), e.to_owned());
            }
            methods.push(m.raw().to_ascii_uppercase());
        }
        let host = route.host.as_deref().and_then(normalize_host);
        if let Some(raw) = &route.host
            && host.is_none()
        {
            issue(format!("{base}.host"), format!("{raw:?} is not a host name"));
        }
        // Same host and path with overlapping methods can never both be reached.
        let trimmed = trim_prefix(path).to_owned();
        let method_set: Vec<String> = if methods.is_empty() { vec!["*".into()] } else { methods.clone() };
        for m in &method_set {
            let overlapping = matchers.contains(&(host.clone(), trimmed.clone(), m.clone()))
                || (m != "*" && matchers.contains(&(host.clone(), trimmed.clone(), "*".to_owned())))
                || (m == "*" && prefixes.contains(&(host.clone(), trimmed.clone())));
            if overlapping {
                issue(
                    format!("{base}.path"),
                    format!(
                        "duplicate route: another route already matches {path:?}{} with the same host and methods",
                        host.as_ref().map(|h| format!(" on host {h}")).unwrap_or_default()
                    ),
                );
                break;
            }
        }
        for m in method_set {
            matchers.insert((host.clone(), trimmed.clone(), m));
        }
        prefixes.insert((host.clone(), trimmed.clone()));

        let targets = [route.upstream.is_some(), route.backend.is_some(), route.backends.is_some()];
        match targets.iter().filter(|t| **t).count() {
            0 => issue(base.clone(), "a route needs one of `upstream`, `backend` or `backends`".into()),
            1 => {}
            _ => issue(base.clone(), "give only one of `upstream`, `backend` or `backends`".into()),
        }
        if let Some(up) = &route.upstream
            && !config.upstreams.contains_key(up)
        {
            issue(format!("{base}.upstream"), unknown_reference("upstream", up, &upstream_names));
        }
        let own = [&route.auth, &route.rate_limit, &route.cors];
        for ((key, kind, known), name) in kinds.iter().zip(own) {
            if let Some(name) = name
                && name != NO_POLICY
                && !known.contains(&name.as_str())
            {
                issue(format!("{base}.{key}"), unknown_reference(kind, name, known));
            }
        }
        let [auth, rate_limit, _] = config.route_policies(route);
        if let Some(limit) = rate_limit.and_then(|name| config.rate_limits.get(name).map(|p| (name, p)))
            && matches!(limit.1.key.get(), Ok(super::values::KeySpec::Claim(_)))
            && auth.is_none()
        {
            issue(
                format!("{base}.rate_limit"),
                format!(
                    "rate-limit policy {:?} keys on a JWT claim ({}), but this route has no `auth` policy",
                    limit.0,
                    limit.1.key.raw()
                ),
            );
        }
        if let Some(url) = &route.backend
            && let Err(e) = url.get()
        {
            issue(format!("{base}.backend"), e.to_owned());
        }
        if let Some(backends) = &route.backends {
            check_backends(backends, &format!("{base}.backends"), &mut issue);
        }
        if let Some(strategy) = route.strategy {
            if route.backends.is_none() {
                issue(
                    format!("{base}.strategy"),
                    "`strategy` applies to inline `backends:`; set it on the upstream instead".into(),
                );
            }
            if strategy == Strategy::HeaderHash {
                issue(
                    format!("{base}.strategy"),
                    "header_hash needs `hash_header`: define a named upstream for it".into(),
                );
            }
        }
        for (key, t) in [("timeout", route.timeout), ("request_timeout", route.request_timeout)] {
            if t.is_some_and(|t| t.0.is_zero()) {
                issue(format!("{base}.{key}"), "must be greater than 0".into());
            }
        }
    }
    issues
}

/// "unknown upstream \"x\" (known: a, b); did you mean \"a\"?"
fn unknown_reference(kind: &str, name: &str, known: &[&str]) -> String {
    let hint = closest(name, known).map(|s| format!("; did you mean {s:?}?")).unwrap_or_default();
    let list = if known.is_empty() { "none defined".to_owned() } else { known.join(", ") };
    format!("unknown {kind} {name:?} (known: {list}){hint}")
}

fn check_policy_name(section: &str, name: &str, issue: &mut impl FnMut(String, String)) {
    if name.is_empty() {
        issue(section.into(), "a policy name cannot be empty".into());
    } else if name == NO_POLICY {
        issue(
            format!("{section}.{name}"),
            format!("{NO_POLICY:?} is reserved (a route uses it to opt out of a default)"),
        );
    }
}

/// Headers a claim may not be forwarded as: the gateway or the HTTP framing owns them.
const RESERVED_CLAIM_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "via",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
    "authorization",
    "cookie",
];

fn check_jwt(policy: &JwtConfig, path: &str, issue: &mut impl FnMut(String, String)) {
    use super::values::{KeyKind, parse_algorithms};
    let algorithms = match parse_algorithms(&policy.algorithms) {
        Ok(a) => Some(a),
        Err(e) => {
            issue(format!("{path}.algorithms"), e);
            None
        }
    };
    let sources = [
        ("secret", policy.secret.is_some()),
        ("public_key_file", policy.public_key_file.is_some()),
        ("jwks_file", policy.jwks_file.is_some()),
        ("jwks_url", policy.jwks_url.is_some()),
    ];
    let given: Vec<&str> = sources.iter().filter(|(_, set)| *set).map(|(k, _)| *k).collect();
    let kind = match given.as_slice() {
        [] => {
            issue(path.into(), "needs a key: one of `secret`, `public_key_file`, `jwks_file` or `jwks_url`".into());
            None
        }
        [one] => Some(match *one {
            "secret" => KeyKind::Secret,
            "public_key_file" => KeyKind::PublicKey,
            _ => KeyKind::Jwks,
        }),
        many => {
            issue(path.into(), format!("give only one key source, found {}", many.join(", ")));
            None
        }
    };
    if let (Some(kind), Some(algorithms)) = (kind, &algorithms)
        && let Err(e) = kind.accepts(algorithms)
    {
        issue(format!("{path}.algorithms"), e);
    }
    if let Some(secret) = &policy.secret
        && secret.len() < 32
    {
        issue(
            format!("{path}.secret"),
            format!(
                "an HMAC secret must be at least 32 bytes (RFC 7518 §3.2), found {}; generate one with `openssl rand -base64 48`",
                secret.len()
            ),
        );
    }
    for (key, file) in [("public_key_file", &policy.public_key_file), ("jwks_file", &policy.jwks_file)] {
        if file.as_deref().is_some_and(str::is_empty) {
            issue(format!("{path}.{key}"), "cannot be empty".into());
        }
    }
    if let Some(url) = &policy.jwks_url {
        match url::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()) => {}
            _ => issue(format!("{path}.jwks_url"), "is not an http:// or https:// URL".into()),
        }
    }
    if policy.jwks_refresh.0.is_zero() {
        issue(format!("{path}.jwks_refresh"), "must be greater than 0".into());
    }
    for (i, claim) in policy.required_claims.iter().enumerate() {
        if claim.is_empty() {
            issue(format!("{path}.required_claims[{i}]"), "a claim name cannot be empty".into());
        }
    }
    let mut headers = HashSet::new();
    for (claim, header) in &policy.forward_claims {
        let at = format!("{path}.forward_claims.{claim}");
        match crate::http_types::HeaderName::from_bytes(header.as_bytes()) {
            Err(_) => issue(at, format!("{header:?} is not a header name")),
            Ok(name) if RESERVED_CLAIM_HEADERS.contains(&name.as_str()) => {
                issue(at, format!("{header:?} is managed by the gateway; forward the claim as another header"))
            }
            Ok(name) => {
                if !headers.insert(name) {
                    issue(at, format!("header {header:?} is already used by another claim"));
                }
            }
        }
    }
    if let Some(cookie) = &policy.cookie
        && (cookie.is_empty() || !cookie.bytes().all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)))
    {
        issue(format!("{path}.cookie"), format!("{cookie:?} is not a cookie name"));
    }
    if policy.query_param.as_deref().is_some_and(|q| q.is_empty() || q.contains(['&', '=', '#'])) {
        issue(format!("{path}.query_param"), "must be a plain query parameter name".into());
    }
}

fn check_rate_limit(policy: &RateLimitConfig, path: &str, issue: &mut impl FnMut(String, String)) {
    if policy.requests == 0 {
        issue(format!("{path}.requests"), "must be at least 1".into());
    }
    if policy.window.0.is_zero() {
        issue(format!("{path}.window"), "must be greater than 0".into());
    } else if policy.requests > 0 && (policy.window.0 / policy.requests).is_zero() {
        issue(format!("{path}.requests"), "more than one request per nanosecond cannot be limited".into());
    }
    if policy.burst == Some(0) {
        issue(format!("{path}.burst"), "must be at least 1".into());
    }
    if let Err(e) = policy.key.get() {
        issue(format!("{path}.key"), e.to_owned());
    }
}

fn check_cors(policy: &super::schema::CorsConfig, path: &str, issue: &mut impl FnMut(String, String)) {
    if policy.allow_origins.is_empty() {
        issue(format!("{path}.allow_origins"), "list at least one origin (or \"*\")".into());
    }
    for (i, origin) in policy.allow_origins.iter().enumerate() {
        match origin.get() {
            Ok(super::values::AllowedOrigin::Any) if policy.allow_credentials => issue(
                format!("{path}.allow_origins[{i}]"),
                "\"*\" cannot be combined with allow_credentials: true (browsers refuse it); list the origins".into(),
            ),
            Ok(_) => {}
            Err(e) => issue(format!("{path}.allow_origins[{i}]"), e.to_owned()),
        }
    }
    for (i, m) in policy.allow_methods.iter().enumerate() {
        if let Err(e) = m.get() {
            issue(format!("{path}.allow_methods[{i}]"), e.to_owned());
        }
    }
    for (key, list) in [("allow_headers", &policy.allow_headers), ("expose_headers", &policy.expose_headers)] {
        for (i, h) in list.iter().enumerate() {
            let wildcard_ok = key == "allow_headers" && h == "*";
            if !wildcard_ok && crate::http_types::HeaderName::from_bytes(h.as_bytes()).is_err() {
                issue(format!("{path}.{key}[{i}]"), format!("{h:?} is not a header name"));
            }
        }
    }
}

/// `server.tls`: its address, and every certificate pair loaded as it will be served (readable
/// PEM, key matching the certificate, valid now).
fn check_tls_listener(
    tls: &super::schema::TlsListenerConfig,
    proxy_addr: Option<SocketAddr>,
    issue: &mut impl FnMut(String, String),
) {
    if let (Some(a), Some(p)) = (check_listen(&tls.listen, "server.tls.listen", issue), proxy_addr)
        && a.port() == p.port()
        && a.port() != 0
        && (a.ip() == p.ip() || a.ip().is_unspecified() || p.ip().is_unspecified())
    {
        issue(
            "server.tls.listen".into(),
            format!("the HTTPS listener must not share the plain listener's address {p}"),
        );
    }
    if tls.certificates.is_empty() && tls.acme.is_none() {
        issue(
            "server.tls.certificates".into(),
            "at least one certificate (cert_file, key_file) is needed, or automatic ones (server.tls.acme)".into(),
        );
    }
    if let Some(acme) = &tls.acme {
        check_acme(acme, tls.client_auth.mode, issue);
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let auth = &tls.client_auth;
    match (auth.mode, &auth.ca_file) {
        (super::schema::ClientAuthMode::None, _) => {}
        (_, None) => issue(
            "server.tls.client_auth.ca_file".into(),
            "the CA certificates client certificates must chain to are needed when mode is optional or require".into(),
        ),
        (_, Some(ca)) => {
            if let Err(e) = crate::tls::client_auth::load_verifier(ca, crate::tls::ClientAuth::Required) {
                issue("server.tls.client_auth.ca_file".into(), e);
            }
        }
    }
    for (i, pair) in tls.certificates.iter().enumerate() {
        match crate::tls::load_pair(&pair.cert_file, &pair.key_file, now) {
            Ok(_) => {}
            Err(crate::tls::certs::PairError::Cert(e)) => issue(format!("server.tls.certificates[{i}].cert_file"), e),
            Err(crate::tls::certs::PairError::Key(e)) => issue(format!("server.tls.certificates[{i}].key_file"), e),
        }
    }
}

/// `server.tls.acme`: an `https://` directory whose host resolves, a contact that looks like
/// an address, host names (no wildcard, no IP address), a challenge the listener can answer.
fn check_acme(
    acme: &super::schema::AcmeConfig,
    client_auth: super::schema::ClientAuthMode,
    issue: &mut impl FnMut(String, String),
) {
    match url::Url::parse(&acme.directory) {
        Ok(u) if u.scheme() == "https" && u.host_str().is_some() => {
            let port = u.port_or_known_default().unwrap_or(443);
            let host = u.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
            if std::net::ToSocketAddrs::to_socket_addrs(&(host, port)).is_err() {
                issue("server.tls.acme.directory".into(), format!("unknown host {host:?}: it does not resolve"));
            }
        }
        Ok(_) => issue("server.tls.acme.directory".into(), format!("{:?} is not an https:// URL", acme.directory)),
        Err(e) => issue("server.tls.acme.directory".into(), format!("{:?}: {e}", acme.directory)),
    }
    if let Some(email) = &acme.email
        && (!email.contains('@') || email.contains(char::is_whitespace) || email.contains(':'))
    {
        issue("server.tls.acme.email".into(), format!("{email:?} is not an email address"));
    }
    if acme.domains.is_empty() {
        issue("server.tls.acme.domains".into(), "at least one host name is needed".into());
    }
    for (i, domain) in acme.domains.iter().enumerate() {
        let path = format!("server.tls.acme.domains[{i}]");
        if domain.starts_with("*.") {
            issue(path, format!("{domain:?}: wildcard certificates need the DNS-01 challenge, which is not supported"));
        } else if domain.parse::<std::net::IpAddr>().is_ok() {
            issue(path, format!("{domain:?}: an IP address, not a host name"));
        } else if rustls::pki_types::DnsName::try_from(domain.as_str()).is_err()
            || !domain.contains('.') && domain != "localhost"
        {
            issue(path, format!("{domain:?} is not a host name"));
        }
    }
    if acme.challenge == super::schema::AcmeChallenge::TlsAlpn01
        && client_auth == super::schema::ClientAuthMode::Require
    {
        issue(
            "server.tls.acme.challenge".into(),
            "tls-alpn-01 cannot be answered on a listener that requires client certificates (the CA has none): use http-01".into(),
        );
    }
    if let Some(ca) = acme.directory_ca_file.as_deref()
        && let Err(e) = crate::tls::upstream::load_roots(ca)
    {
        issue("server.tls.acme.directory_ca_file".into(), e);
    }
}

fn check_listen(
    value: &super::values::Parsed<SocketAddr>,
    path: &str,
    issue: &mut impl FnMut(String, String),
) -> Option<SocketAddr> {
    match value.get() {
        Ok(a) => Some(*a),
        Err(e) => {
            issue(path.into(), e.to_owned());
            None
        }
    }
}

/// `upstreams.NAME.tls`: the CA bundle loads, the client certificate and key come together,
/// load, match and are valid now.
fn check_upstream_tls(tls: &super::schema::UpstreamTlsConfig, base: &str, issue: &mut impl FnMut(String, String)) {
    if let Some(ca) = tls.ca_file.as_deref()
        && let Err(e) = crate::tls::upstream::load_roots(ca)
    {
        issue(format!("{base}.tls.ca_file"), e);
    }
    if let Some(name) = tls.server_name.as_deref()
        && let Err(e) = crate::tls::upstream::server_name(name)
    {
        issue(format!("{base}.tls.server_name"), e);
    }
    match (tls.cert_file.as_deref(), tls.key_file.as_deref()) {
        (Some(cert), Some(key)) => match crate::tls::load_pair(cert, key, crate::tls::certs::unix_now()) {
            Ok(_) => {}
            Err(crate::tls::certs::PairError::Cert(e)) => issue(format!("{base}.tls.cert_file"), e),
            Err(crate::tls::certs::PairError::Key(e)) => issue(format!("{base}.tls.key_file"), e),
        },
        (Some(_), None) => issue(format!("{base}.tls.key_file"), "cert_file needs its key_file".into()),
        (None, Some(_)) => issue(format!("{base}.tls.cert_file"), "key_file needs its cert_file".into()),
        (None, None) => {}
    }
}

fn check_retries(up: &super::schema::UpstreamConfig, base: &str, issue: &mut impl FnMut(String, String)) {
    if up.retries > 10 {
        issue(format!("{base}.retries"), format!("at most 10 extra attempts, found {}", up.retries));
    }
    for (i, cond) in up.retry_on.iter().enumerate() {
        if let Err(e) = cond.get() {
            issue(format!("{base}.retry_on[{i}]"), e.to_owned());
        }
    }
    let b = &up.retry_budget;
    if !(0.0..=10.0).contains(&b.ratio) || b.ratio.is_nan() {
        issue(format!("{base}.retry_budget.ratio"), format!("must be between 0 and 10, found {}", b.ratio));
    }
    if up.request_timeout.is_some_and(|t| t.0.is_zero()) {
        issue(format!("{base}.request_timeout"), "must be greater than 0".into());
    }
    let o = &up.outlier_detection;
    if o.max_ejected_percent > 100 {
        issue(format!("{base}.outlier_detection.max_ejected_percent"), "must be between 0 and 100".into());
    }
    if o.consecutive_failures > 0 && (o.base_ejection.0.is_zero() || o.max_ejection.0 < o.base_ejection.0) {
        issue(
            format!("{base}.outlier_detection"),
            "base_ejection must be greater than 0 and not above max_ejection".into(),
        );
    }
}

fn check_health(hc: &super::schema::HealthCheckConfig, path: &str, issue: &mut impl FnMut(String, String)) {
    if !hc.path.starts_with('/') || hc.path.contains(char::is_whitespace) {
        issue(format!("{path}.path"), format!("{:?} must be a path starting with `/`", hc.path));
    }
    for (key, d) in [("interval", hc.interval), ("timeout", hc.timeout)] {
        if d.0.is_zero() {
            issue(format!("{path}.{key}"), "must be greater than 0".into());
        }
    }
    if hc.timeout.0 > hc.interval.0 {
        issue(format!("{path}.timeout"), format!("must not exceed the interval ({})", hc.interval));
    }
    if let Some(j) = hc.jitter
        && j.0 > hc.interval.0
    {
        issue(format!("{path}.jitter"), format!("must not exceed the interval ({})", hc.interval));
    }
    for (key, n) in [("unhealthy_threshold", hc.unhealthy_threshold), ("healthy_threshold", hc.healthy_threshold)] {
        if n == 0 {
            issue(format!("{path}.{key}"), "must be at least 1".into());
        }
    }
    if let Err(e) = hc.status_range() {
        issue(format!("{path}.expected_status"), e);
    }
}

fn check_backends(backends: &[BackendConfig], path: &str, issue: &mut impl FnMut(String, String)) {
    if backends.is_empty() {
        issue(path.into(), "needs at least one backend".into());
    }
    let mut seen = HashSet::new();
    for (i, b) in backends.iter().enumerate() {
        if let Err(e) = b.url.get() {
            issue(format!("{path}[{i}].url"), e.to_owned());
        }
        if b.weight == 0 || b.weight > MAX_WEIGHT {
            issue(format!("{path}[{i}].weight"), format!("must be between 1 and {MAX_WEIGHT}, found {}", b.weight));
        }
        if !seen.insert(b.url.raw().trim_end_matches('/')) {
            issue(
                format!("{path}[{i}].url"),
                format!("duplicate backend {:?}", super::values::redacted_url(b.url.raw())),
            );
        }
    }
}

/// Without the `wasm` feature: a refusal wherever plugins are named. With it: plugin names,
/// lists and settings.
fn check_plugins(config: &Config, issue: &mut impl FnMut(String, String)) {
    let lists = config
        .routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.plugins.as_ref().map(|list| (format!("routes[{i}].plugins"), list)))
        .chain(config.defaults.plugins.as_ref().map(|list| ("defaults.plugins".to_owned(), list)));
    if !cfg!(feature = "wasm") {
        let keys = config.plugins.as_ref().map(|_| "plugins".to_owned()).into_iter().chain(lists.map(|(key, _)| key));
        for key in keys {
            issue(
                key,
                "this binary was built without WASM plugin support (cargo feature `wasm`); \
                 use a build with it (`make build`, the lab image) or remove the key"
                    .into(),
            );
        }
        return;
    }
    for (key, list) in lists {
        for (j, name) in list.iter().enumerate() {
            if let Err(e) = check_plugin_name(name) {
                issue(format!("{key}[{j}]"), e);
            } else if list[..j].contains(name) {
                issue(format!("{key}[{j}]"), format!("plugin {name:?} is listed twice"));
            }
        }
    }
    let Some(plugins) = &config.plugins else { return };
    if plugins.dir.trim().is_empty() {
        issue("plugins.dir".into(), "must not be empty".into());
    }
    for (name, s) in &plugins.settings {
        let base = format!("plugins.settings.{name}");
        if let Err(e) = check_plugin_name(name) {
            issue(base.clone(), e);
        }
        if s.fuel == 0 {
            issue(format!("{base}.fuel"), "must be greater than 0".into());
        }
        // One 64 KiB WebAssembly page at least; a 32-bit guest cannot address more than 4 GiB.
        if !(64 * 1024..=4 << 30).contains(&s.max_memory.0) {
            issue(format!("{base}.max_memory"), "must be between 64KiB (one page) and 4GiB".into());
        }
        match &s.config {
            None | Some(serde_yaml_ng::Value::Mapping(_)) => {}
            Some(_) => issue(format!("{base}.config"), "must be a map (handed to the plugin as a JSON object)".into()),
        }
        if let Some(c) = &s.config
            && let Err(e) = serde_json::to_value(c)
        {
            issue(format!("{base}.config"), format!("cannot be expressed as JSON: {e}"));
        }
    }
}

/// `tracing:` checks (made whether or not tracing is enabled, so a config that turns it on
/// later is already known to be sound).
fn check_tracing(t: &super::schema::TracingConfig, issue: &mut impl FnMut(String, String)) {
    if let Some(endpoint) = &t.endpoint {
        match url::Url::parse(endpoint) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            Ok(_) => {
                issue("tracing.endpoint".into(), format!("{endpoint:?} must be an http:// or https:// URL with a host"))
            }
            Err(e) => issue("tracing.endpoint".into(), format!("{endpoint:?} is not a URL: {e}")),
        }
    }
    if !(0.0..=1.0).contains(&t.sampling_ratio) || t.sampling_ratio.is_nan() {
        issue("tracing.sampling_ratio".into(), format!("must be between 0 and 1, found {}", t.sampling_ratio));
    }
    if t.service_name.trim().is_empty() {
        issue("tracing.service_name".into(), "must not be empty".into());
    }
    if t.max_queue_size == 0 {
        issue("tracing.max_queue_size".into(), "must be greater than 0".into());
    }
    if t.max_export_batch_size == 0 || t.max_export_batch_size > t.max_queue_size {
        issue(
            "tracing.max_export_batch_size".into(),
            format!("must be between 1 and max_queue_size ({}), found {}", t.max_queue_size, t.max_export_batch_size),
        );
    }
    for (key, d) in [("scheduled_delay", t.scheduled_delay), ("export_timeout", t.export_timeout)] {
        if d.0.is_zero() {
            issue(format!("tracing.{key}"), "must be greater than 0".into());
        }
    }
    for (name, value) in &t.headers {
        if crate::http_types::HeaderName::from_bytes(name.as_bytes()).is_err() {
            issue(format!("tracing.headers.{name}"), format!("{name:?} is not a valid header name"));
        } else if crate::http_types::HeaderValue::from_str(value).is_err() {
            issue(format!("tracing.headers.{name}"), "the value is not a valid header value".into());
        }
    }
}

/// A route's `websocket_*` limits: only with `websocket: true`, and not zero.
fn check_websocket(route: &super::schema::RouteConfig, at: &str, issue: &mut impl FnMut(String, String)) {
    let set = [
        ("websocket_idle_timeout", route.websocket_idle_timeout.map(|d| d.0.is_zero())),
        ("websocket_max_duration", route.websocket_max_duration.map(|d| d.0.is_zero())),
        ("websocket_max_frame_size", route.websocket_max_frame_size.map(|s| s.0 == 0)),
    ];
    for (key, zero) in set {
        match zero {
            Some(_) if !route.websocket => {
                issue(format!("{at}.{key}"), "has no effect without `websocket: true` on the route".into())
            }
            Some(true) => issue(format!("{at}.{key}"), "must be greater than 0".into()),
            _ => {}
        }
    }
}

/// `protocol`: `h2` needs `https://` backends (HTTP/2 is chosen by ALPN in the TLS handshake),
/// `h2c` `http://` ones; a stream limit of at least 1.
fn check_protocol(up: &super::schema::UpstreamConfig, base: &str, issue: &mut impl FnMut(String, String)) {
    use super::schema::UpstreamProtocol;
    let want = match up.protocol {
        UpstreamProtocol::Http1 => None,
        UpstreamProtocol::H2 => Some("https"),
        UpstreamProtocol::H2c => Some("http"),
    };
    if let Some(scheme) = want {
        for (i, b) in up.backends.iter().enumerate() {
            if let Ok(url) = b.url.get()
                && url.scheme() != scheme
            {
                issue(
                    format!("{base}.backends[{i}].url"),
                    format!("protocol {:?} needs {scheme}:// backends", up.protocol).to_lowercase(),
                );
            }
        }
    }
    if up.max_concurrent_streams == 0 {
        issue(format!("{base}.max_concurrent_streams"), "must be at least 1".into());
    }
}
