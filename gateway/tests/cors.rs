//! CORS over real sockets: preflights answered by the gateway (never by the backend), response
//! headers for allowed origins only, wildcard subdomains, credentials, and the config checks.

mod common;

use common::*;

const CONFIG: &str = r#"
cors:
  web:
    allow_origins: ["https://app.example.com", "https://*.example.org"]
    allow_methods: [GET, POST]
    allow_headers: [Content-Type, X-Api-Key]
    expose_headers: [X-Request-Id]
    allow_credentials: true
    max_age: 10m
  public:
    allow_origins: ["*"]
routes:
  - { name: api, path: /api, backend: "{b0}", cors: web }
  - { name: open, path: /open, backend: "{b0}", cors: public }
  - { name: plain, path: /plain, backend: "{b0}" }
"#;

fn preflight(
    gw: &TestGateway,
    path: &str,
    origin: &str,
    method: &str,
    headers: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut r = client()
        .request(reqwest::Method::OPTIONS, gw.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method);
    if let Some(h) = headers {
        r = r.header("access-control-request-headers", h);
    }
    r
}

#[tokio::test]
async fn allowed_preflights_are_answered_by_the_gateway() {
    let b = MockServer::start("b0");
    let gw = gateway(CONFIG, &[&b]);
    let resp = preflight(&gw, "/api/x", "https://app.example.com", "POST", Some("content-type, x-api-key"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-methods"], "GET, POST");
    assert_eq!(h["access-control-allow-headers"], "content-type, x-api-key");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-max-age"], "600");
    assert!(h["vary"].to_str().unwrap().contains("Origin"));
    assert!(h.contains_key("x-request-id"));

    let sub = preflight(&gw, "/api/x", "https://a.b.example.org", "GET", None).send().await.unwrap();
    assert_eq!(sub.status(), 204);
    assert_eq!(sub.headers()["access-control-allow-origin"], "https://a.b.example.org");
    assert_eq!(b.hits(), 0, "preflights never reach the backend");
}

#[tokio::test]
async fn disallowed_preflights_get_403_without_cors_headers() {
    let b = MockServer::start("b0");
    let gw = gateway(CONFIG, &[&b]);
    for (origin, method, headers) in [
        ("https://evil.example.com", "GET", None),
        ("https://example.org", "GET", None),
        ("https://app.example.com", "DELETE", None),
        ("https://app.example.com", "POST", Some("x-secret")),
    ] {
        let resp = preflight(&gw, "/api/x", origin, method, headers).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{origin} {method} {headers:?}");
        assert!(!resp.headers().contains_key("access-control-allow-origin"));
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "forbidden");
    }
    assert_eq!(b.hits(), 0);
}

#[tokio::test]
async fn responses_carry_cors_headers_for_allowed_origins_only() {
    let b = MockServer::start("b0");
    let gw = gateway(CONFIG, &[&b]);
    let c = client();
    let ok = c.get(gw.url("/api/x")).header("origin", "https://app.example.com").send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(ok.headers()["access-control-allow-credentials"], "true");
    assert_eq!(ok.headers()["access-control-expose-headers"], "X-Request-Id");
    assert!(ok.headers().get_all("vary").iter().any(|v| v == "Origin"));

    let denied = c.get(gw.url("/api/x")).header("origin", "https://evil.example.com").send().await.unwrap();
    assert_eq!(denied.status(), 200, "CORS is enforced by browsers; the request itself is served");
    assert!(!denied.headers().contains_key("access-control-allow-origin"));

    let no_origin = c.get(gw.url("/api/x")).send().await.unwrap();
    assert!(!no_origin.headers().contains_key("access-control-allow-origin"));
    assert!(!no_origin.headers().contains_key("vary"));

    // Gateway-made errors carry the headers too, so scripts can read them.
    let err = c.get(gw.url("/nowhere")).header("origin", "https://app.example.com").send().await.unwrap();
    assert_eq!(err.status(), 404, "no route, no policy");
    assert!(!err.headers().contains_key("access-control-allow-origin"));

    let any = c.get(gw.url("/open/x")).header("origin", "https://whoever.test").send().await.unwrap();
    assert_eq!(any.headers()["access-control-allow-origin"], "*");
    assert!(!any.headers().contains_key("access-control-allow-credentials"));

    let plain = c.get(gw.url("/plain/x")).header("origin", "https://app.example.com").send().await.unwrap();
    assert!(!plain.headers().contains_key("access-control-allow-origin"), "routes without a policy are untouched");
    // An OPTIONS that is not a preflight is forwarded like any request.
    let options = c.request(reqwest::Method::OPTIONS, gw.url("/api/x")).send().await.unwrap();
    assert_eq!(options.status(), 200);
    assert_eq!(b.hits(), 6);
}

#[test]
fn cors_config_errors_are_clear() {
    let err = TestGateway::start(
        r#"
cors:
  bad:
    allow_origins: ["*", "https://app.example.com/path", "https://a.*.example.com"]
    allow_credentials: true
    allow_methods: ["G3T"]
routes:
  - { path: /, backend: "http://127.0.0.1:1", cors: bda }
"#,
    )
    .err()
    .expect("rejected")
    .to_string();
    for expected in [
        "cors.bad.allow_origins[0]: \"*\" cannot be combined with allow_credentials: true",
        "cors.bad.allow_origins[1]: \"https://app.example.com/path\": an origin has no path",
        "cors.bad.allow_origins[2]: \"https://a.*.example.com\": invalid host",
        "cors.bad.allow_methods[0]: \"G3T\" is not an HTTP method",
        "routes[0].cors: unknown CORS policy \"bda\" (known: bad); did you mean \"bad\"?",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

/// The route's own refusals before its policies run (an encoded slash, a parameter after a
/// stripped prefix) still carry the CORS headers, so a script on an allowed origin can read why.
#[tokio::test]
async fn route_level_refusals_carry_cors_headers_too() {
    let b = MockServer::start("b0");
    let config = CONFIG.replace(
        "  - { name: plain, path: /plain, backend: \"{b0}\" }",
        "  - { name: plain, path: /plain, backend: \"{b0}\" }\n  - { name: stripped, path: /strip, backend: \"{b0}\", cors: web, strip_prefix: true }",
    );
    let gw = gateway(&config, &[&b]);
    for path in ["/api/a%2Fb", "/strip;x/y"] {
        let resp = client().get(gw.url(path)).header("origin", "https://app.example.com").send().await.unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        assert_eq!(resp.headers()["access-control-allow-origin"], "https://app.example.com", "{path}");
    }
    assert_eq!(b.hits(), 0);
}
