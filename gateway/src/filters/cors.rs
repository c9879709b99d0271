//! CORS (the Fetch standard's CORS protocol): a compiled policy answers preflights itself
//! (`OPTIONS` + `Origin` + `Access-Control-Request-Method`, never forwarded) and adds the CORS
//! response headers for allowed origins. Requests without `Origin` are untouched, and a
//! disallowed origin simply gets no CORS headers (the browser then blocks the response).
//! Everything that can be is precomputed here, at compile time.

use std::collections::HashSet;

use crate::{
    error::GatewayError,
    http_types::{HeaderMap, HeaderValue, Method, StatusCode, header},
    pipeline::{
        filter::{Filter, Flow, Phase},
        message::{RequestHead, Response},
        session::Session,
    },
};

use crate::config::{
    CorsConfig,
    values::{AllowedOrigin, OriginPattern},
};

/// A compiled CORS policy.
#[derive(Debug)]
pub struct CorsPolicy {
    /// The policy's name (for logs).
    pub name: String,
    any_origin: bool,
    exact: HashSet<String>,
    wildcards: Vec<OriginPattern>,
    methods: Vec<Method>,
    methods_value: HeaderValue,
    /// `None`: any requested header is allowed (reflected).
    headers: Option<HashSet<String>>,
    expose_value: Option<HeaderValue>,
    credentials: bool,
    max_age_value: HeaderValue,
}

const VARY_PREFLIGHT: &str = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

impl CorsPolicy {
    /// Compiles a validated policy.
    pub fn new(name: &str, config: &CorsConfig) -> Result<Self, String> {
        let mut exact = HashSet::new();
        let mut wildcards = Vec::new();
        let mut any_origin = false;
        for o in &config.allow_origins {
            match o.get()? {
                AllowedOrigin::Any => any_origin = true,
                AllowedOrigin::Pattern(OriginPattern::Exact(e)) => {
                    exact.insert(e.clone());
                }
                AllowedOrigin::Pattern(w) => wildcards.push(w.clone()),
            }
        }
        let methods: Vec<Method> = config.allow_methods.iter().map(|m| m.get().cloned()).collect::<Result<_, _>>()?;
        let list = |items: Vec<String>| HeaderValue::from_str(&items.join(", ")).map_err(|e| e.to_string());
        let headers = if config.allow_headers.iter().any(|h| h == "*") {
            None
        } else {
            Some(config.allow_headers.iter().map(|h| h.to_ascii_lowercase()).collect())
        };
        Ok(Self {
            name: name.to_owned(),
            any_origin,
            exact,
            wildcards,
            methods_value: list(methods.iter().map(|m| m.to_string()).collect())?,
            methods,
            headers,
            expose_value: if config.expose_headers.is_empty() {
                None
            } else {
                Some(list(config.expose_headers.clone())?)
            },
            credentials: config.allow_credentials,
            max_age_value: HeaderValue::from(config.max_age.0.as_secs()),
        })
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        if self.any_origin {
            return true;
        }
        let lower = origin.to_ascii_lowercase();
        self.exact.contains(&lower) || self.wildcards.iter().any(|w| w.matches(&lower))
    }

    /// Whether answers name the request's origin (and so vary by `Origin`): always, except for
    /// `allow_origins: ["*"]` without credentials, which answers `*`.
    fn reflects_origin(&self) -> bool {
        !self.any_origin || self.credentials
    }

    /// `Access-Control-Allow-Origin` for an allowed origin.
    fn allow_origin_value(&self, origin: &HeaderValue) -> HeaderValue {
        if self.reflects_origin() { origin.clone() } else { HeaderValue::from_static("*") }
    }

    /// If `req` is a CORS preflight, answers it: 204 with the CORS headers when the origin,
    /// method and headers are allowed, else 403 without them. `None` for any other request.
    pub fn preflight(&self, head: &RequestHead) -> Option<Result<Response, &'static str>> {
        let headers = &head.headers;
        if head.method != Method::OPTIONS {
            return None;
        }
        let origin = headers.get(header::ORIGIN)?;
        let requested_method = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
        let origin_str = origin.to_str().unwrap_or_default();
        if !self.origin_allowed(origin_str) {
            return Some(Err("CORS preflight rejected: origin not allowed"));
        }
        let method_ok = Method::from_bytes(requested_method.as_bytes()).is_ok_and(|m| self.methods.contains(&m));
        if !method_ok {
            return Some(Err("CORS preflight rejected: method not allowed"));
        }
        let requested_headers = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS);
        if let (Some(allowed), Some(requested)) = (&self.headers, requested_headers) {
            let all_ok = requested
                .to_str()
                .unwrap_or("\u{0}")
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .all(|h| allowed.contains(&h));
            if !all_ok {
                return Some(Err("CORS preflight rejected: header not allowed"));
            }
        }
        let mut resp = Response::new(StatusCode::NO_CONTENT);
        let out = &mut resp.headers;
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin_value(origin));
        out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, self.methods_value.clone());
        if let Some(requested) = requested_headers {
            // Either every requested header is in the list (checked above) or any is allowed:
            // answering with the request's own list is right in both cases.
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
        }
        if self.credentials {
            out.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
        out.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age_value.clone());
        out.insert(header::VARY, HeaderValue::from_static(VARY_PREFLIGHT));
        Some(Ok(resp))
    }

    /// Adds the CORS response headers for an allowed `Origin` (to backend and gateway answers
    /// alike, so scripts can read error bodies too). Requests without `Origin`, and origins
    /// not allowed, are left untouched.
    pub fn decorate(&self, request_headers: &HeaderMap, response_headers: &mut HeaderMap) {
        let Some(origin) = request_headers.get(header::ORIGIN) else { return };
        if !self.origin_allowed(origin.to_str().unwrap_or_default()) {
            return;
        }
        // The backend's own CORS headers are replaced: the policy is the gateway's.
        response_headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin_value(origin));
        if self.credentials {
            response_headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
        if let Some(expose) = &self.expose_value {
            response_headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
        if self.reflects_origin() {
            response_headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
}

/// A CORS preflight was answered complete by the policy (so its answer gets no more CORS
/// headers).
struct PreflightAnswered;

/// CORS in the pipeline: preflights answered in the `request` phase, the CORS headers added
/// to every other answer (the backend's and the gateway's, so scripts can read error bodies).
impl Filter for CorsPolicy {
    fn name(&self) -> &'static str {
        "cors"
    }

    fn request<'a>(&'a self, session: &'a mut Session) -> Phase<'a> {
        // Preflights carry no credentials, so they are answered before auth looks at them.
        let Some(answer) = self.preflight(&session.head) else { return Phase::CONTINUE };
        // Answered complete either way: a rejected preflight gets no CORS headers.
        session.state.insert(PreflightAnswered);
        Phase::Ready(answer.map(Flow::Respond).map_err(GatewayError::Forbidden))
    }

    fn response(&self, session: &mut Session, response: &mut Response) {
        if session.state.get::<PreflightAnswered>().is_none() {
            self.decorate(&session.head.headers, &mut response.headers);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_patterns_parse_and_match() {
        let w = OriginPattern::parse("https://*.Example.com").unwrap();
        assert!(w.matches("https://app.example.com"));
        assert!(w.matches("https://a.b.example.com"));
        assert!(!w.matches("https://example.com"));
        assert!(!w.matches("https://evil-example.com"));
        assert!(!w.matches("http://app.example.com"));
        assert!(!w.matches("https://app.example.com:8443"));
        let wp = OriginPattern::parse("https://*.example.com:8443").unwrap();
        assert!(wp.matches("https://app.example.com:8443"));
        assert!(!wp.matches("https://app.example.com"));
        assert_eq!(
            OriginPattern::parse("http://LOCALHOST:3000").unwrap(),
            OriginPattern::Exact("http://localhost:3000".into())
        );
        for bad in [
            "example.com",
            "https://app.example.com/path",
            "https://a.*.example.com",
            "https://*.com",
            "https://x:port",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
