//! Rate limiting over real sockets: the request after the quota is a 429 with `Retry-After` and
//! both sets of rate-limit headers, counted once; other client IPs (a client bound to
//! 127.0.0.2) keep their own quota; `X-Forwarded-For` moves the key only behind a trusted
//! proxy; shared and per-route buckets, `defaults:` and opting out; keys on JWT claims.

mod common;

use std::net::IpAddr;

use common::*;
use serde_json::{Value, json};

fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(ip.parse::<IpAddr>().unwrap()).build().unwrap()
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

#[tokio::test]
async fn request_101_is_refused_and_other_clients_are_not() {
    let b = MockServer::start("b0");
    let gw = gateway(
        r#"
rate_limits:
  per-ip: { requests: 100, window: 1h }
routes:
  - { name: api, path: /api, backend: "{b0}", rate_limit: per-ip }
"#,
        &[&b],
    );
    let c = client_from("127.0.0.1");
    for i in 0..100u32 {
        let resp = c.get(gw.url("/api")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "request {}", i + 1);
        assert_eq!(header(&resp, "ratelimit-limit"), "100");
        assert_eq!(header(&resp, "ratelimit-remaining"), (99 - i).to_string());
        assert_eq!(header(&resp, "ratelimit-policy"), "\"per-ip\";q=100;w=3600");
        assert_eq!(
            header(&resp, "ratelimit"),
            format!("\"per-ip\";r={};t={}", 99 - i, header(&resp, "ratelimit-reset"))
        );
    }
    let before = metric(&scrape(&gw).await, "rustygate_rate_limited_total", &[("route", "api")]);
    assert_eq!(before, 0.0);
    for n in 1..=3 {
        let resp = c.get(gw.url("/api")).send().await.unwrap();
        assert_eq!(resp.status(), 429);
        // One request comes back every 36 s.
        let retry: u64 = header(&resp, "retry-after").parse().unwrap();
        assert!((1..=36).contains(&retry), "Retry-After {retry}");
        assert_eq!(header(&resp, "ratelimit-remaining"), "0");
        let reset: u64 = header(&resp, "ratelimit-reset").parse().unwrap();
        assert!((3564..=3600).contains(&reset), "RateLimit-Reset {reset}");
        assert!(header(&resp, "ratelimit").starts_with("\"per-ip\";r=0;t="));
        assert_eq!(header(&resp, "content-type"), "application/json");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "too_many_requests");
        let text = scrape(&gw).await;
        assert_eq!(metric(&text, "rustygate_rate_limited_total", &[("route", "api")]), n as f64);
    }
    assert_eq!(b.hits(), 100, "refused requests never reach the backend");

    let other = client_from("127.0.0.2").get(gw.url("/api")).send().await.unwrap();
    assert_eq!(other.status(), 200, "another client IP has its own quota");
    assert_eq!(header(&other, "ratelimit-remaining"), "99");
}

#[tokio::test]
async fn forwarded_for_moves_the_key_only_behind_a_trusted_proxy() {
    let b = MockServer::start("b0");
    let gw = gateway(
        r#"
server: { trusted_proxies: ["127.0.0.3"] }
rate_limits:
  tight: { requests: 2, window: 1h }
routes:
  - { name: api, path: /api, backend: "{b0}", rate_limit: tight }
"#,
        &[&b],
    );
    let send = async |from: &str, xff: &str| {
        client_from(from).get(gw.url("/api")).header("x-forwarded-for", xff).send().await.unwrap().status().as_u16()
    };
    // An untrusted peer cannot pick its key by spoofing the header.
    assert_eq!(send("127.0.0.1", "10.0.0.1").await, 200);
    assert_eq!(send("127.0.0.1", "10.0.0.2").await, 200);
    assert_eq!(send("127.0.0.1", "10.0.0.3").await, 429, "all three were 127.0.0.1");
    // A trusted proxy's header names the client: the right-most untrusted address.
    assert_eq!(send("127.0.0.3", "10.0.0.1").await, 200);
    assert_eq!(send("127.0.0.3", "10.0.0.1").await, 200);
    assert_eq!(send("127.0.0.3", "10.0.0.1").await, 429);
    assert_eq!(send("127.0.0.3", "10.0.0.2").await, 200, "another client behind the proxy");
    assert_eq!(send("127.0.0.3", "6.6.6.6, 10.0.0.2, 127.0.0.3").await, 200);
    assert_eq!(send("127.0.0.3", "10.0.0.2").await, 429, "the same client, however the chain is written");
}

#[tokio::test]
async fn buckets_are_shared_per_policy_or_per_route_and_defaults_apply() {
    let b = MockServer::start("b0");
    let gw = gateway(
        r#"
rate_limits:
  shared: { requests: 2, window: 1h }
  own: { requests: 1, window: 1h, scope: route, draft_headers: false }
defaults: { rate_limit: shared }
routes:
  - { name: a, path: /a, backend: "{b0}" }
  - { name: b, path: /b, backend: "{b0}" }
  - { name: c, path: /c, backend: "{b0}", rate_limit: own }
  - { name: d, path: /d, backend: "{b0}", rate_limit: own }
  - { name: free, path: /free, backend: "{b0}", rate_limit: none }
"#,
        &[&b],
    );
    let c = client();
    let status = async |path: &str| c.get(gw.url(path)).send().await.unwrap().status().as_u16();
    assert_eq!(status("/a").await, 200);
    assert_eq!(status("/b").await, 200);
    assert_eq!(status("/a").await, 429, "a and b share the default policy's quota");
    assert_eq!(status("/b").await, 429);
    assert_eq!(status("/c").await, 200);
    assert_eq!(status("/c").await, 429);
    assert_eq!(status("/d").await, 200, "scope: route gives d its own bucket");
    let resp = c.get(gw.url("/d")).send().await.unwrap();
    assert_eq!(header(&resp, "ratelimit-limit"), "1");
    assert!(resp.headers().get("ratelimit-policy").is_none(), "draft headers switched off");
    for _ in 0..5 {
        let resp = c.get(gw.url("/free")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "rate_limit: none opts out of the default");
        assert!(resp.headers().get("ratelimit-limit").is_none());
    }
    let text = scrape(&gw).await;
    assert_eq!(metric(&text, "rustygate_rate_limited_total", &[("route", "a")]), 1.0);
    assert_eq!(metric(&text, "rustygate_rate_limited_total", &[("route", "d")]), 1.0);
    assert!(!text.contains(r#"rustygate_rate_limited_total{route="free"}"#));
}

#[tokio::test]
async fn claim_keys_give_each_subject_its_own_bucket_after_auth() {
    let b = MockServer::start("b0");
    let secret = "claims-secret-0123456789abcdef012345";
    let gw = gateway(
        &format!(
            r#"
auth:
  users: {{ algorithms: [HS256], secret: "{secret}" }}
rate_limits:
  per-user: {{ requests: 1, window: 1h, key: "claim:sub" }}
routes:
  - {{ name: api, path: /api, backend: "{{b0}}", auth: users, rate_limit: per-user }}
"#
        ),
        &[&b],
    );
    let token = |sub: &str| {
        let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &json!({ "sub": sub, "exp": exp }),
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let c = client();
    let status = async |t: Option<String>| {
        let mut r = c.get(gw.url("/api"));
        if let Some(t) = t {
            r = r.bearer_auth(t);
        }
        r.send().await.unwrap().status().as_u16()
    };
    assert_eq!(status(Some(token("alice"))).await, 200);
    assert_eq!(status(Some(token("alice"))).await, 429);
    assert_eq!(status(Some(token("bob"))).await, 200, "same IP, another subject");
    // Auth runs first: an unauthenticated request is a 401 and takes nothing from any bucket.
    let resp = c.get(gw.url("/api")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("ratelimit-limit").is_none());
    assert_eq!(status(Some(token("carol"))).await, 200);
}
