//! Forwarding over real sockets: routing, byte-exact paths and queries, header rules, request
//! ids, streaming bodies, and load balancing across backends.

mod common;

use std::time::Duration;

use common::*;
use sha2::{Digest, Sha256};

const ONE_ROUTE: &str = r#"
routes:
  - path: /api/test
    backend: "{b0}"
  - path: /mock
    backend: "{b0}"
    strip_prefix: true
"#;

#[tokio::test]
async fn routes_by_prefix_and_answers_the_banner() {
    let b = MockServer::start("b0");
    let gw = gateway(ONE_ROUTE, &[&b]);
    let c = client();

    let echo: serde_json::Value = c.get(gw.url("/api/test/echo")).send().await.unwrap().json().await.unwrap();
    assert_eq!(echo["backend"], "b0");
    assert_eq!(echo["path"], "/api/test/echo");

    let exact = c.get(gw.url("/api/test")).send().await.unwrap();
    assert_eq!(exact.status(), 200);
    let with_query = c.get(gw.url("/api/test?q=1")).send().await.unwrap();
    assert_eq!(with_query.status(), 200);

    let miss = c.get(gw.url("/api/testing")).send().await.unwrap();
    assert_eq!(miss.status(), 404);
    assert_eq!(miss.headers()["content-type"], "application/json");
    let body: serde_json::Value = miss.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    assert_eq!(body["status"], 404);
    assert!(!body["request_id"].as_str().unwrap().is_empty());

    let banner = c.get(gw.url("/")).send().await.unwrap();
    assert_eq!(banner.status(), 200);
    assert!(banner.headers().contains_key("x-request-id"), "every answer carries the request id");
    assert_eq!(banner.text().await.unwrap(), "RustyGate is running");
    assert_eq!(b.hits(), 2 + 1, "404s and the banner never reach the backend");
}

#[tokio::test]
async fn a_route_on_root_replaces_the_banner_and_host_and_methods_match() {
    let root = MockServer::start("root");
    let api = MockServer::start("api");
    let gw = gateway(
        r#"
routes:
  - path: /
    backend: "{b0}"
  - name: api-host
    path: /
    host: API.example.com
    backend: "{b1}"
  - name: orders-read
    path: /orders
    methods: [GET, head]
    backend: "{b1}"
    strip_prefix: true
"#,
        &[&root, &api],
    );
    let c = client();
    let r: serde_json::Value = c.get(gw.url("/")).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["backend"], "root");
    let r: serde_json::Value =
        c.get(gw.url("/x")).header("host", "api.EXAMPLE.com:8443").send().await.unwrap().json().await.unwrap();
    assert_eq!(r["backend"], "api");
    let r: serde_json::Value = c.get(gw.url("/orders/7")).send().await.unwrap().json().await.unwrap();
    assert_eq!((r["backend"].as_str(), r["path"].as_str()), (Some("api"), Some("/7")), "strip_prefix");
    // POST /orders falls through to the root route, which allows every method.
    let r: serde_json::Value = c.post(gw.url("/orders/7")).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["backend"], "root");
}

#[tokio::test]
async fn method_mismatch_is_405_with_allow() {
    let b = MockServer::start("b0");
    let gw = gateway("routes:\n  - { path: /orders, methods: [GET, POST], backend: \"{b0}\" }\n", &[&b]);
    let resp = client().delete(gw.url("/orders/1")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET, POST");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "method_not_allowed");
    assert_eq!(b.hits(), 0);
}

#[tokio::test]
async fn path_query_and_headers_are_forwarded_faithfully() {
    let b = MockServer::start("b0");
    let gw = gateway(ONE_ROUTE, &[&b]);
    let req = "GET /api/test/a%20b/%c3%a9/%7E?x=1&x=2&y=%20&z HTTP/1.1\r\n\
               Host: front.example:8080\r\n\
               X-Multi: one\r\n\
               X-Multi: two\r\n\
               Connection: close, X-Hop\r\n\
               X-Hop: secret\r\n\
               Keep-Alive: timeout=5\r\n\
               TE: trailers\r\n\
               X-Forwarded-For: 203.0.113.7\r\n\
               X-Request-Id: req-123.abc:def\r\n\
               \r\n";
    let resp = raw(gw.addr, req.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.to_ascii_lowercase().contains("x-request-id: req-123.abc:def\r\n"), "{resp}");
    assert!(resp.to_ascii_lowercase().contains("via: 1.1 rustygate\r\n"), "{resp}");
    let echo = raw_json(&resp);
    // Escapes are kept as sent, except unreserved characters, which normalisation decodes.
    assert_eq!(echo["path"], "/api/test/a%20b/%c3%a9/~");
    assert_eq!(echo["query"], "x=1&x=2&y=%20&z");
    assert_eq!(echoed(&echo, "x-multi"), ["one", "two"]);
    assert_eq!(echoed(&echo, "host"), ["front.example:8080"], "the client's Host is kept by default");
    assert_eq!(echoed(&echo, "x-forwarded-for"), ["203.0.113.7, 127.0.0.1"]);
    assert_eq!(echoed(&echo, "x-forwarded-proto"), ["http"]);
    assert_eq!(echoed(&echo, "x-forwarded-host"), ["front.example:8080"]);
    assert_eq!(echoed(&echo, "via"), ["1.1 rustygate"]);
    assert_eq!(echoed(&echo, "x-request-id"), ["req-123.abc:def"]);
    for hop in ["connection", "x-hop", "keep-alive", "te", "transfer-encoding"] {
        assert!(echoed(&echo, hop).is_empty(), "{hop} must not be forwarded: {echo}");
    }
    // Nothing the client did not send is added (awc's defaults are stripped).
    for added in ["content-length", "accept-encoding", "user-agent"] {
        assert!(echoed(&echo, added).is_empty(), "{added} was added: {echo}");
    }
}

#[tokio::test]
async fn request_ids_are_kept_when_valid_and_replaced_otherwise() {
    let b = MockServer::start("b0");
    let gw = gateway(ONE_ROUTE, &[&b]);
    let c = client();
    let resp = c.get(gw.url("/api/test")).header("x-request-id", "bad id with spaces").send().await.unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, "bad id with spaces");
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    let echo: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(echoed(&echo, "x-request-id"), [id]);

    let long = "a".repeat(129);
    let resp = c.get(gw.url("/api/test")).header("x-request-id", &long).send().await.unwrap();
    assert_ne!(resp.headers()["x-request-id"], long.as_str());
    let resp = c.get(gw.url("/nowhere")).header("x-request-id", "keep-me").send().await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "keep-me", "gateway errors carry the id too");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["request_id"], "keep-me");
}

#[tokio::test]
async fn preserve_host_false_sends_the_backend_authority() {
    let b = MockServer::start("b0");
    let gw = gateway(
        "upstreams:\n  u:\n    backends: [ { url: \"{b0}\" } ]\n    preserve_host: false\nroutes:\n  - { path: /, upstream: u }\n",
        &[&b],
    );
    let echo: serde_json::Value =
        client().get(gw.url("/x")).header("host", "front.example").send().await.unwrap().json().await.unwrap();
    assert_eq!(echoed(&echo, "host"), [b.addr().to_string()]);
    assert_eq!(echoed(&echo, "x-forwarded-host"), ["front.example"]);
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_removed() {
    // The mock's responses carry no hop-by-hop headers of their own; a raw backend does.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X-Private\r\nX-Private: 1\r\nKeep-Alive: timeout=3\r\nX-Kept: a\r\nX-Kept: b\r\n\r\nok",
            );
        }
    });
    let gw = TestGateway::start(&format!("routes:\n  - {{ path: /, backend: \"http://{addr}\" }}\n")).unwrap();
    let resp = raw(gw.addr, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let lower = resp.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200"), "{resp}");
    assert!(!lower.contains("x-private"), "{resp}");
    assert!(!lower.contains("keep-alive: timeout"), "{resp}");
    assert!(lower.contains("x-kept: a\r\n") && lower.contains("x-kept: b\r\n"), "{resp}");
    assert!(resp.ends_with("\r\n\r\nok"), "{resp}");
}

#[tokio::test]
async fn bodies_stream_both_ways_intact() {
    let b = MockServer::start("b0");
    let gw = gateway(ONE_ROUTE, &[&b]);
    let c = client();

    // Known length.
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let sha = hex::encode(Sha256::digest(&body));
    let echo: serde_json::Value =
        c.post(gw.url("/api/test/up")).body(body.clone()).send().await.unwrap().json().await.unwrap();
    assert_eq!(echo["body_length"], 3_000_000);
    assert_eq!(echo["body_sha256"], sha);
    assert_eq!(echoed(&echo, "content-length"), ["3000000"]);

    // Unknown length (chunked).
    let echo: serde_json::Value =
        c.put(gw.url("/api/test/up")).body(chunked(&body, 100_000)).send().await.unwrap().json().await.unwrap();
    assert_eq!(echo["body_sha256"], sha);
    assert_eq!(echoed(&echo, "transfer-encoding"), ["chunked"]);

    // Downloads, with and without a length.
    for (path, n) in [("/mock/bytes/5000000", 5_000_000u64), ("/mock/bytes/777777?chunked=1", 777_777)] {
        let resp = c.get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let bytes = resp.bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, n);
        assert_eq!(hex::encode(Sha256::digest(&bytes)), pattern_sha256(n));
    }
}

#[tokio::test]
async fn response_bytes_arrive_before_the_backend_finishes() {
    let b = MockServer::start("b0");
    let gw = gateway(ONE_ROUTE, &[&b]);
    let start = std::time::Instant::now();
    let mut resp = client().get(gw.url("/mock/drip/5?interval_ms=400")).send().await.unwrap();
    let first = resp.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b".");
    assert!(
        start.elapsed() < Duration::from_millis(1200),
        "first byte took {:?}: the body was buffered",
        start.elapsed()
    );
    let mut total = first.len();
    while let Some(c) = resp.chunk().await.unwrap() {
        total += c.len();
    }
    assert_eq!(total, 5);
}

#[tokio::test]
async fn head_204_and_304_have_no_body() {
    let b = MockServer::start("b0");
    let gw = gateway(ONE_ROUTE, &[&b]);
    let head = raw(gw.addr, b"HEAD /mock/bytes/1234 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-length: 1234\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "HEAD must not carry a body: {head:?}");
    for code in [204, 304] {
        let resp = raw(
            gw.addr,
            format!("GET /mock/status/{code} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert!(resp.starts_with(&format!("HTTP/1.1 {code}")), "{resp}");
        assert!(resp.ends_with("\r\n\r\n"), "{code} must not carry a body: {resp:?}");
    }
}

#[tokio::test]
async fn expect_100_continue_is_honoured() {
    let b = MockServer::start("b0");
    let gw = gateway(ONE_ROUTE, &[&b]);
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /api/test/e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n").unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    s.write_all(b"hello").unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let rest = String::from_utf8_lossy(&rest);
    let echo = raw_json(&rest);
    assert_eq!(echo["body_length"], 5);
    assert!(echoed(&echo, "expect").is_empty());
}

#[tokio::test]
async fn round_robin_spreads_exactly_and_honours_weights() {
    let bs: Vec<MockServer> = (0..3).map(|i| MockServer::start(&format!("b{i}"))).collect();
    let refs: Vec<&MockServer> = bs.iter().collect();
    let gw = gateway(
        r#"
routes:
  - path: /even
    backends: [ { url: "{b0}" }, { url: "{b1}" }, { url: "{b2}" } ]
    strategy: round_robin
  - path: /weighted
    backends: [ { url: "{b0}", weight: 1 }, { url: "{b1}", weight: 2 }, { url: "{b2}", weight: 3 } ]
"#,
        &refs,
    );
    let c = client();
    for _ in 0..300 {
        assert_eq!(c.get(gw.url("/even")).send().await.unwrap().status(), 200);
    }
    assert_eq!(bs.iter().map(|b| b.hits()).collect::<Vec<_>>(), [100, 100, 100]);
    for b in &bs {
        b.reset();
    }
    for _ in 0..300 {
        assert_eq!(c.get(gw.url("/weighted")).send().await.unwrap().status(), 200);
    }
    assert_eq!(bs.iter().map(|b| b.hits()).collect::<Vec<_>>(), [50, 100, 150]);
}

/// The reqwest client (kept for benchmarking the client choice) forwards the same way.
#[tokio::test]
async fn the_reqwest_client_forwards_faithfully_too() {
    let b = MockServer::start("b0");
    let gw = gateway(
        &format!(
            "server: {{ upstream_client: reqwest }}\n{}\n  - {{ name: slow, path: /slow, backend: \"{{b0}}\", strip_prefix: true, timeout: 300ms }}\n",
            ONE_ROUTE.trim_end()
        ),
        &[&b],
    );
    let resp = raw(
        gw.addr,
        b"GET /api/test/a%20b?x=1&x=2 HTTP/1.1\r\nHost: front:1\r\nX-Multi: one\r\nX-Multi: two\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let echo = raw_json(&resp);
    assert_eq!(echo["path"], "/api/test/a%20b");
    assert_eq!(echo["query"], "x=1&x=2");
    assert_eq!(echoed(&echo, "x-multi"), ["one", "two"]);
    assert_eq!(echoed(&echo, "host"), ["front:1"]);
    assert!(echoed(&echo, "x-hop").is_empty());

    let c = client();
    let body: Vec<u8> = (0..1_000_000u32).map(|i| (i % 241) as u8).collect();
    let sha = hex::encode(Sha256::digest(&body));
    let echo: serde_json::Value =
        c.post(gw.url("/api/test/up")).body(body.clone()).send().await.unwrap().json().await.unwrap();
    assert_eq!((echo["body_length"].as_u64(), echo["body_sha256"].as_str()), (Some(1_000_000), Some(sha.as_str())));
    let echo: serde_json::Value =
        c.put(gw.url("/api/test/up")).body(chunked(&body, 65536)).send().await.unwrap().json().await.unwrap();
    assert_eq!(echo["body_sha256"], sha);
    let bytes = c.get(gw.url("/mock/bytes/2000000")).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(hex::encode(Sha256::digest(&bytes)), pattern_sha256(2_000_000));
    let head = raw(gw.addr, b"HEAD /mock/bytes/99 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(head.to_ascii_lowercase().contains("content-length: 99\r\n") && head.ends_with("\r\n\r\n"), "{head}");
    assert_eq!(c.get(gw.url("/slow/delay/3000")).send().await.unwrap().status(), 504);
}
