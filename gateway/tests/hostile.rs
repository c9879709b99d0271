//! Hostile input over real sockets (issue 14): the path-normalisation auth bypass, forged claim
//! headers on public routes, `strip_prefix` escapes, host tricks, method oddities and encoded
//! separators. Each case checks what the client gets *and* what the backend received (or that
//! it received nothing).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

const SECRET: &str = "hostile-secret-0123456789abcdef0123456789";

fn token() -> String {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600;
    encode(
        &Header::new(Algorithm::HS256),
        &json!({ "sub": "alice", "exp": exp }),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A public route and a JWT route on the same backend (the issue's layout), a `strip_prefix`
/// route onto a base path, a host-specific JWT route and a route taking encoded slashes.
fn config() -> String {
    format!(
        r#"
auth:
  users: {{ algorithms: [HS256], secret: "{SECRET}", forward_claims: {{ sub: X-User-Id }} }}
routes:
  - {{ path: /pub2, backend: "{{b0}}" }}
  - {{ path: /api2, backend: "{{b0}}", auth: users }}
  - {{ path: /strip, backend: "{{b0}}/base", strip_prefix: true }}
  - {{ name: secure, path: /, host: secure.example.com, backend: "{{b0}}", auth: users }}
  - {{ path: /files, backend: "{{b0}}", allow_encoded_slashes: true }}
  - {{ path: /orders, backend: "{{b0}}", methods: [GET] }}
  - {{ name: catch-all, path: /, backend: "{{b0}}" }}
"#
    )
}

/// Sends `GET target` with extra header lines, closing the connection; returns the status and
/// the raw answer.
fn get(gw: &TestGateway, method: &str, target: &str, extra: &str) -> (u16, String) {
    let req = format!("{method} {target} HTTP/1.1\r\nHost: gw.test\r\n{extra}Connection: close\r\n\r\n");
    let resp = raw(gw.addr, req.as_bytes());
    let status = resp.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, resp)
}

#[tokio::test]
async fn dot_segments_cannot_route_past_auth() {
    let b = MockServer::start("b0");
    let gw = gateway(&config(), &[&b]);
    // Resolved before routing: these are requests for /api2/secret, and need its token.
    for target in ["/pub2/../api2/secret", "/pub2/%2e%2e/api2/secret", "/pub2/%2E%2e/api2/secret", "//api2/secret"] {
        let (status, resp) = get(&gw, "GET", target, "X-User-Id: admin\r\n");
        assert_eq!(status, 401, "{target}: {resp}");
        assert_eq!(b.hits(), 0, "{target} reached the backend");
    }
    // `;` parameters at the prefix boundary (Tomcat reads `/api2;x/secret` as `/api2/secret`).
    for target in ["/api2;x/secret", "/api2;/secret"] {
        let (status, resp) = get(&gw, "GET", target, "");
        assert_eq!(status, 401, "{target}: {resp}");
    }
    assert_eq!(b.hits(), 0);
    // With a token, the backend gets the normalised path and the verified claim only.
    let auth = format!("Authorization: Bearer {}\r\nX-User-Id: admin\r\n", token());
    let (status, resp) = get(&gw, "GET", "/pub2/../api2/secret", &auth);
    assert_eq!(status, 200, "{resp}");
    let echo = raw_json(&resp);
    assert_eq!(echo["path"], "/api2/secret");
    assert_eq!(echoed(&echo, "x-user-id"), ["alice"]);
}

#[tokio::test]
async fn paths_ambiguous_to_some_backend_are_refused_unforwarded() {
    let b = MockServer::start("b0");
    let gw = gateway(&config(), &[&b]);
    for target in [
        "/pub2/..%2fapi2/secret",
        "/pub2/..%2Fapi2/secret",
        "/pub2/..%5capi2/secret",
        "/pub2/..;/api2/secret",
        "/pub2/.;/x",
        "/pub2/%252e%252e/api2/secret",
        "/pub2/a%00b",
        "/pub2/a%zz",
        "/..",
        "/pub2/../../api2",
        "/pub2/a%2Fb",
        "/pub2/a%5Cb",
        "/pub2/..%20/api2/secret",
        "/pub2/.../api2",
        "/pub2/%ef%bc%8e%ef%bc%8e/api2/secret",
        "/strip;x/secret",
    ] {
        let (status, resp) = get(&gw, "GET", target, "");
        assert_eq!(status, 400, "{target}: {resp}");
        assert_eq!(raw_json(&resp)["error"], "bad_request", "{target}");
    }
    assert_eq!(b.hits(), 0, "a refused path reached the backend");
    let text = scrape(&gw).await;
    assert_eq!(metric(&text, "rustygate_client_errors_total", &[("reason", "ambiguous_dot_segment")]), 9.0, "{text}");
    assert_eq!(metric(&text, "rustygate_client_errors_total", &[("reason", "prefix_parameter")]), 1.0);
    assert_eq!(metric(&text, "rustygate_client_errors_total", &[("reason", "encoded_slash")]), 2.0);
    assert_eq!(metric(&text, "rustygate_client_errors_total", &[("reason", "above_root")]), 2.0);
}

#[tokio::test]
async fn the_backend_receives_the_normalised_path() {
    let b = MockServer::start("b0");
    let gw = gateway(&config(), &[&b]);
    for (target, forwarded) in [
        ("/pub2/./a//b/../c?x=%2e%2e&y", "/pub2/a/c"),
        ("/pub2/%7Euser/%41", "/pub2/~user/A"),
        ("/pub2/a%20b/%c3%a9", "/pub2/a%20b/%c3%a9"),
        ("/strip/a/../b", "/base/b"),
        ("/strip/x/..", "/base/"),
        ("/files/a%2Fb%2fc", "/files/a%2Fb%2fc"),
    ] {
        let (status, resp) = get(&gw, "GET", target, "");
        assert_eq!(status, 200, "{target}: {resp}");
        let echo = raw_json(&resp);
        assert_eq!(echo["path"], forwarded, "{target}");
        if target.contains('?') {
            assert_eq!(echo["query"], "x=%2e%2e&y", "the query is forwarded byte for byte");
        }
    }
}

#[tokio::test]
async fn strip_prefix_never_escapes_the_base_path() {
    let b = MockServer::start("b0");
    let gw = gateway(&config(), &[&b]);
    for target in ["/strip/../../etc/passwd", "/strip/..%2f..%2fetc/passwd", "/strip/%2e%2e/%2e%2e/etc/passwd"] {
        let (status, resp) = get(&gw, "GET", target, "");
        assert_eq!(status, 400, "{target}: {resp}");
    }
    // Climbing out of the prefix but not above the root: routed by what it resolves to.
    let (status, resp) = get(&gw, "GET", "/strip/../pub2/x", "");
    assert_eq!(status, 200, "{resp}");
    assert_eq!(raw_json(&resp)["path"], "/pub2/x");
    assert_eq!(b.hits(), 1);
}

#[tokio::test]
async fn claim_headers_are_stripped_on_every_route() {
    let b = MockServer::start("b0");
    let gw = gateway(&config(), &[&b]);
    let (status, resp) =
        get(&gw, "GET", "/pub2/x", "X-User-Id: admin\r\nX_User_Id: admin\r\nX_Other: 1\r\nX-Kept: yes\r\n");
    assert_eq!(status, 200, "{resp}");
    let echo = raw_json(&resp);
    for name in ["x-user-id", "x_user_id", "x_other"] {
        assert!(echoed(&echo, name).is_empty(), "{name} was forwarded on a public route: {echo}");
    }
    assert_eq!(echoed(&echo, "x-kept"), ["yes"]);

    // With underscores kept, only the claim header's alias goes.
    let gw = gateway(&format!("server: {{ underscores_in_headers: true }}\n{}", config()), &[&b]);
    let (_, resp) = get(&gw, "GET", "/pub2/x", "X_User_Id: admin\r\nX_Other: 1\r\n");
    let echo = raw_json(&resp);
    assert!(echoed(&echo, "x_user_id").is_empty(), "{echo}");
    assert_eq!(echoed(&echo, "x_other"), ["1"]);
}

#[tokio::test]
async fn hosts_are_normalised_before_matching() {
    let b = MockServer::start("b0");
    let gw = gateway(&config(), &[&b]);
    for host in ["secure.example.com.", "SECURE.example.com.:8080", "Secure.Example.Com"] {
        let req = format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let resp = raw(gw.addr, req.as_bytes());
        assert!(resp.starts_with("HTTP/1.1 401"), "{host} skipped the host route's auth: {resp}");
    }
    for host in
        ["a b", "a@b", "a/b", "secure.example.com..", "x:99999999", "secure.example.com,evil", "a;b", "a%2etest"]
    {
        let req = format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let resp = raw(gw.addr, req.as_bytes());
        assert!(resp.starts_with("HTTP/1.1 400"), "{host:?}: {resp}");
    }
    for req in [
        "GET ftp://gw.test/x HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
        "GET gw.test:80 HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
        "GET /x HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a.test\r\nHost: secure.example.com\r\nConnection: close\r\n\r\n",
    ] {
        let resp = raw(gw.addr, req.as_bytes());
        assert!(resp.starts_with("HTTP/1.1 400"), "{req:?}: {resp}");
    }
    assert_eq!(b.hits(), 0);
    // HTTP/1.0 needs no Host.
    let resp = raw(gw.addr, b"GET /pub2/x HTTP/1.0\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200"), "{resp}");
}

#[tokio::test]
async fn methods_are_case_sensitive_and_connect_is_refused() {
    let b = MockServer::start("b0");
    let gw = gateway(&config(), &[&b]);
    let (status, resp) = get(&gw, "get", "/orders/1", "");
    assert_eq!(status, 400, "{resp}");
    let (status, resp) = get(&gw, "Post", "/pub2/x", "");
    assert_eq!(status, 400, "{resp}");
    let resp = raw(gw.addr, b"CONNECT gw.test:443 HTTP/1.1\r\nHost: gw.test:443\r\nConnection: close\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 405"), "{resp}");
    let resp = raw(gw.addr, b"TRACE /pub2/x HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 405"), "{resp}");
    assert_eq!(b.hits(), 0);
    // Extension methods in upper case still go through.
    let (status, resp) = get(&gw, "PROPFIND", "/pub2/x", "");
    assert_eq!(status, 200, "{resp}");
    assert_eq!(raw_json(&resp)["method"], "PROPFIND");
}

#[tokio::test]
async fn route_paths_must_be_normal() {
    for path in ["/a/../b", "/a//b", "/a/./b", "a", "/a%2fb", "/a\\b"] {
        let yaml = format!("routes:\n  - {{ path: \"{path}\", backend: \"http://127.0.0.1:9\" }}\n");
        let err = rustygate::testing::TestGateway::start(&yaml).err().unwrap_or_else(|| panic!("{path} accepted"));
        assert!(err.to_string().contains("path"), "{path}: {err}");
    }
}

#[tokio::test]
async fn a_token_with_critical_extensions_is_refused() {
    let b = MockServer::start("b0");
    let gw = gateway(&config(), &[&b]);
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600;
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let claims = json!({ "sub": "alice", "exp": exp });
    let mut header = Header::new(Algorithm::HS256);
    header.crit = Some(vec!["x-unknown".into()]);
    let crit = encode(&header, &claims, &key).unwrap();
    let (status, resp) = get(&gw, "GET", "/api2/x", &format!("Authorization: Bearer {crit}\r\n"));
    assert_eq!(status, 401, "{resp}");
    assert_eq!(b.hits(), 0);
    let (status, resp) = get(&gw, "GET", "/api2/x", &format!("Authorization: Bearer {}\r\n", token()));
    assert_eq!(status, 200, "{resp}");
}

/// A backend on a raw socket that answers each of its first `connections` connections with
/// `answer` (whatever was asked), for answers no HTTP server library would send.
fn canned_backend(answer: &'static [u8], connections: usize) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Bounded: serves that many connections, then the thread ends (or ends with the process).
    std::thread::spawn(move || {
        for conn in listener.incoming().take(connections) {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.read(&mut [0u8; 4096]);
            let _ = conn.write_all(answer);
        }
    });
    addr
}

/// Reads what the gateway answers on a connection until it closes or `wait` passes.
fn exchange(gw: &TestGateway, bytes: &[u8], wait: std::time::Duration) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// `rustygate_connections`: client connections the gateway holds open.
async fn connections(gw: &TestGateway) -> f64 {
    metric(&scrape(gw).await, "rustygate_connections", &[])
}

#[tokio::test]
async fn a_head_answer_does_not_swallow_the_next_pipelined_request() {
    let b = MockServer::start("b0");
    let gw = gateway(&config(), &[&b]);
    let resp = exchange(
        &gw,
        b"HEAD /pub2/a HTTP/1.1\r\nHost: gw.test\r\n\r\nGET /pub2/b HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
        std::time::Duration::from_secs(10),
    );
    assert_eq!(resp.matches("HTTP/1.1 200").count(), 2, "{resp}");
    assert!(resp.contains("\"path\":\"/pub2/b\""), "{resp}");
}

#[tokio::test]
async fn nothing_pipelined_after_connection_close_is_served() {
    let b = MockServer::start("b0");
    let gw = gateway(&config(), &[&b]);
    let resp = exchange(
        &gw,
        b"GET /pub2/a HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\nGET /pub2/b HTTP/1.1\r\nHost: gw.test\r\n\r\n",
        std::time::Duration::from_secs(10),
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.to_ascii_lowercase().contains("connection: close"), "{resp}");
    assert!(!resp.contains("/pub2/b\""), "the pipelined request was served: {resp}");
    assert_eq!(b.hits(), 1);
}

#[tokio::test]
async fn malformed_chunk_sizes_get_a_400_and_reach_no_backend() {
    let b = MockServer::start("b0");
    let gw = gateway(&config(), &[&b]);
    for size in ["zz", "ffffffffffffffffff1", "-1", "0x10"] {
        let req = format!(
            "POST /pub2/x HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n{size}\r\nxyz\r\n0\r\n\r\n"
        );
        let resp = exchange(&gw, req.as_bytes(), std::time::Duration::from_secs(10));
        assert!(resp.starts_with("HTTP/1.1 400"), "chunk size {size:?}: {resp:?}");
    }
    assert_eq!(b.hits(), 0, "a broken body reached the backend");
    let text = scrape(&gw).await;
    assert_eq!(metric(&text, "rustygate_requests_in_flight", &[]), 0.0, "{text}");
    assert_eq!(metric(&text, "rustygate_requests_total", &[("route", "/pub2")]), 4.0, "{text}");
    assert_eq!(metric(&text, "rustygate_backend_failures_total", &[]), 0.0);
}

#[tokio::test]
async fn oversized_heads_are_refused() {
    let b = MockServer::start("b0");
    let gw = gateway(&config(), &[&b]);
    let big = "a".repeat(100 * 1024);
    let (status, resp) = get(&gw, "GET", "/pub2/x", &format!("X-Big: {big}\r\n"));
    assert_eq!(status, 431, "{resp:.300}");
    let many: String = (0..60).map(|i| format!("X-H{i}: {}\r\n", "v".repeat(700))).collect();
    let (status, _) = get(&gw, "GET", "/pub2/x", &many);
    assert_eq!(status, 431);
    let (status, _) = get(&gw, "GET", &format!("/pub2/{}", "p".repeat(9000)), "");
    assert_eq!(status, 414);
    assert_eq!(b.hits(), 0);
}

#[tokio::test]
async fn an_unasked_for_101_from_a_backend_is_a_502() {
    let addr =
        canned_backend(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x-proto\r\nConnection: upgrade\r\n\r\nRAW", 4);
    let gw = TestGateway::start(&format!("routes:\n  - {{ path: /, backend: \"http://{addr}\" }}\n")).unwrap();
    let resp = raw(gw.addr, b"GET /x HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
    assert!(!resp.contains("RAW"), "{resp}");
}

/// A backend's answer with more headers than the forwarding client parses (100), or a head
/// past its buffer (~400 KiB): a 502, and the gateway goes on serving.
#[tokio::test]
async fn oversized_backend_heads_are_a_502() {
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let huge = format!("X-Big: {}\r\n", "a".repeat(600 * 1024));
    for extra in [many, huge] {
        let answer: &'static [u8] = Box::leak(
            format!("HTTP/1.1 200 OK\r\n{extra}Content-Length: 2\r\nConnection: close\r\n\r\nok")
                .into_bytes()
                .into_boxed_slice(),
        );
        let addr = canned_backend(answer, 2);
        let gw = TestGateway::start(&format!("routes:\n  - {{ path: /, backend: \"http://{addr}\" }}\n")).unwrap();
        let resp = raw(gw.addr, b"GET /x HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n");
        assert!(resp.starts_with("HTTP/1.1 502"), "{}", &resp[..resp.len().min(200)]);
        let text = scrape(&gw).await;
        assert_eq!(metric(&text, "rustygate_backend_failures_total", &[("reason", "protocol_error")]), 1.0);
    }
}

/// Interim answers (103 Early Hints) are read and dropped by the forwarding client: the final
/// answer is relayed, and nothing is held against the backend. With `upstream_client: awc`,
/// which hands an interim answer over as the final one, a 502, but not held against the
/// backend either (no failure for passive health, no ejection).
#[tokio::test]
async fn interim_responses_are_not_held_against_a_backend() {
    let addr = canned_backend(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        16,
    );
    for (client, expected) in [("hyper", "HTTP/1.1 200"), ("awc", "HTTP/1.1 502")] {
        let gw = TestGateway::start(&format!(
            "server: {{ upstream_client: {client} }}\nroutes:\n  - {{ path: /, backend: \"http://{addr}\" }}\n"
        ))
        .unwrap();
        for _ in 0..5 {
            let resp = raw(gw.addr, b"GET /x HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n");
            assert!(resp.starts_with(expected), "{client}: {resp}");
            if expected.ends_with("200") {
                assert!(resp.ends_with("ok") && !resp.contains("Early Hints") && !resp.contains("a.css"), "{resp}");
            }
        }
        let text = scrape(&gw).await;
        assert_eq!(metric(&text, "rustygate_backend_ejections_total", &[]), 0.0, "{client}: {text}");
        assert_eq!(metric(&text, "rustygate_backend_up", &[]), 1.0, "{client}: {text}");
    }
}

/// Client-side failures (a reset or stalled upload) are not the backend's: no failure counted,
/// no ejection, a 408 for the stall.
#[tokio::test]
async fn uploads_the_client_breaks_never_eject_a_backend() {
    use std::io::Write;
    let b0 = MockServer::start("b0");
    let b1 = MockServer::start("b1");
    let gw = gateway(
        "server: { client_body_timeout: 1s }\n\
         upstreams:\n  u:\n    backends: [{ url: \"{b0}\" }, { url: \"{b1}\" }]\n    timeout: 20s\n\
         routes:\n  - { path: /up, upstream: u }\n",
        &[&b0, &b1],
    );
    // Ten uploads reset after 100 KiB of a declared 1 MiB, each once it is being streamed to a
    // backend.
    for i in 0..10 {
        let hits = b0.hits() + b1.hits();
        let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
        s.write_all(b"POST /up HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 1048576\r\n\r\n").unwrap();
        s.write_all(&[b'x'; 100 * 1024]).unwrap();
        wait_until(&format!("upload {i} to reach a backend"), Duration::from_secs(10), async || {
            b0.hits() + b1.hits() > hits
        })
        .await;
        drop(s);
    }
    // A stalled upload: past the read-ahead (streaming), then nothing.
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    s.write_all(b"POST /up HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 1048576\r\n\r\n").unwrap();
    s.write_all(&[b'x'; 100 * 1024]).unwrap();
    let mut head = [0u8; 12];
    let started = std::time::Instant::now();
    std::io::Read::read_exact(&mut s, &mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 408", "{}", String::from_utf8_lossy(&head));
    // client_body_timeout (1 s), not the backend's 20 s timeout, ends the streamed upload.
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    // A stall within the read-ahead: 408 before any backend is chosen.
    let hits = b0.hits() + b1.hits();
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    s.write_all(b"POST /up HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 100\r\n\r\nabc").unwrap();
    std::io::Read::read_exact(&mut s, &mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 408");
    assert_eq!(b0.hits() + b1.hits(), hits);

    // Every request has ended (so has its accounting).
    wait_until("no request in flight", Duration::from_secs(10), async || {
        metric(&scrape(&gw).await, "rustygate_requests_in_flight", &[]) == 0.0
    })
    .await;
    let text = scrape(&gw).await;
    assert_eq!(metric(&text, "rustygate_backend_failures_total", &[]), 0.0, "{text}");
    assert_eq!(metric(&text, "rustygate_backend_ejections_total", &[]), 0.0, "{text}");
    assert_eq!(metric(&text, "rustygate_backend_up", &[]), 2.0, "{text}");
    assert_eq!(metric(&text, "rustygate_requests_in_flight", &[]), 0.0, "{text}");
    assert!(metric(&text, "rustygate_client_errors_total", &[("reason", "body_timeout")]) >= 2.0, "{text}");
}

/// Issue 14, defect 5: a `jwks_url`'s userinfo and query values never show in `/admin/config`.
#[tokio::test]
async fn configured_url_credentials_are_redacted() {
    let gw = TestGateway::start(
        "admin: { token: admin-secret }\n\
         auth:\n  idp: { algorithms: [RS256], jwks_url: \"http://jwks-user:jwks-pass@127.0.0.1:9/keys?api_key=QUERYSECRET&v=2\" }\n\
         routes:\n  - { path: /api, backend: \"http://127.0.0.1:9\", auth: idp }\n",
    )
    .unwrap();
    let body = client()
        .get(gw.admin_url("/admin/config"))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for secret in ["jwks-user", "jwks-pass", "QUERYSECRET"] {
        assert!(!body.contains(secret), "{secret} in /admin/config: {body}");
    }
    assert!(body.contains("127.0.0.1:9/keys"), "{body}");
    assert_eq!(
        rustygate::config::redacted_url("https://u:p@idp.test/jwks?api_key=k&x=1"),
        "https://redacted:redacted@idp.test/jwks?api_key=redacted&x=redacted"
    );
}

/// Issue 14, defect 7: a backend that stalls mid-body (5 of 100 bytes) has the response cut after
/// `read_timeout`, and both connections are released.
#[tokio::test]
async fn a_stalled_response_body_is_cut_after_read_timeout() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else { return };
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello");
        // Bounded: wait (at most 20 s) for the gateway to close its side.
        conn.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
        let closed = matches!(conn.read(&mut buf), Ok(0));
        let _ = closed_tx.send(closed);
    });
    let gw = TestGateway::start(&format!(
        "upstreams:\n  slow:\n    backends: [{{ url: \"http://{addr}\" }}]\n    read_timeout: 500ms\nroutes:\n  - {{ path: /, upstream: slow }}\n"
    ))
    .unwrap();
    let started = std::time::Instant::now();
    let resp = exchange(&gw, b"GET /x HTTP/1.1\r\nHost: gw.test\r\n\r\n", std::time::Duration::from_secs(15));
    let took = started.elapsed();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("hello"), "the body must be cut after the bytes that came: {resp:?}");
    assert!(took < std::time::Duration::from_secs(10), "the client's connection was held {took:?}");
    assert!(closed_rx.recv_timeout(std::time::Duration::from_secs(20)).unwrap(), "the backend connection was kept");
    let in_flight = async || metric(&scrape(&gw).await, "rustygate_requests_in_flight", &[]);
    wait_until("the cut request to end", Duration::from_secs(5), async || in_flight().await == 0.0).await;
    assert_eq!(in_flight().await, 0.0);
}

/// `server.max_connections`: a connection beyond the limit gets a 503 that says why and is
/// closed; once others close, new ones are served again. `rustygate_connections` counts them.
#[tokio::test]
async fn connections_beyond_max_connections_are_refused_clearly() {
    let b = MockServer::start("b0");
    let gw = gateway(&format!("server: {{ max_connections: 3, workers: 1 }}\n{}", config()), &[&b]);
    let idle: Vec<_> = (0..3).map(|_| std::net::TcpStream::connect(gw.addr).unwrap()).collect();
    wait_until("three open connections", Duration::from_secs(5), async || connections(&gw).await == 3.0).await;
    assert_eq!(metric(&scrape(&gw).await, "rustygate_connections", &[]), 3.0);
    let (status, resp) = get(&gw, "GET", "/pub2/x", "");
    assert_eq!(status, 503, "{resp}");
    assert_eq!(raw_json(&resp)["error"], "too_many_connections");
    assert_eq!(b.hits(), 0);
    drop(idle);
    wait_until("the connections to close", Duration::from_secs(5), async || connections(&gw).await == 0.0).await;
    let (status, resp) = get(&gw, "GET", "/pub2/x", "");
    assert_eq!(status, 200, "{resp}");
    let text = scrape(&gw).await;
    assert_eq!(metric(&text, "rustygate_client_errors_total", &[("reason", "too_many_connections")]), 1.0);
}

/// A client that stops reading a large response cannot hold its connection, nor the backend's,
/// for longer than `server.send_timeout` (TCP_USER_TIMEOUT: the kernel gives up on a closed
/// window).
#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_after_send_timeout() {
    use std::io::Write;
    let b = MockServer::start("b0");
    let gw = gateway("server: { send_timeout: 2s }\nroutes:\n  - { path: /, backend: \"{b0}\" }\n", &[&b]);
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&gw.addr.into()).unwrap();
    let mut s: std::net::TcpStream = sock.into();
    s.write_all(b"GET /bytes/1073741824 HTTP/1.1\r\nHost: gw.test\r\n\r\n").unwrap();
    // Never read. The request is in flight until the gateway gives the connection up.
    let in_flight = async || metric(&scrape(&gw).await, "rustygate_requests_in_flight", &[]);
    wait_until("the request to be in flight", Duration::from_secs(5), async || in_flight().await == 1.0).await;
    assert_eq!(in_flight().await, 1.0);
    wait_until("the stalled client to lose its request", Duration::from_secs(40), async || in_flight().await == 0.0)
        .await;
    drop(s);
}

/// An `Upgrade` request declaring a body is ambiguous (actix reads the rest of the connection as
/// its body): a 400, nothing forwarded, no backend failure.
#[tokio::test]
async fn an_upgrade_request_with_a_body_is_refused() {
    let b = MockServer::start("b0");
    let gw = gateway(&config(), &[&b]);
    let resp = exchange(
        &gw,
        b"GET /pub2/ws HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 5\r\n\r\nhello",
        std::time::Duration::from_secs(10),
    );
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert_eq!(b.hits(), 0);
    assert_eq!(metric(&scrape(&gw).await, "rustygate_backend_failures_total", &[]), 0.0);
}

/// `server.max_connections_per_ip`: one peer cannot take more than its share.
#[tokio::test]
async fn one_peer_cannot_take_more_than_max_connections_per_ip() {
    let b = MockServer::start("b0");
    let gw = gateway(&format!("server: {{ max_connections_per_ip: 2 }}\n{}", config()), &[&b]);
    let idle: Vec<_> = (0..2).map(|_| std::net::TcpStream::connect(gw.addr).unwrap()).collect();
    wait_until("two open connections", Duration::from_secs(5), async || connections(&gw).await == 2.0).await;
    let (status, resp) = get(&gw, "GET", "/pub2/x", "");
    assert_eq!(status, 503, "{resp}");
    assert_eq!(raw_json(&resp)["error"], "too_many_connections");
    drop(idle);
    wait_until("the connections to close", Duration::from_secs(5), async || connections(&gw).await == 0.0).await;
    let (status, resp) = get(&gw, "GET", "/pub2/x", "");
    assert_eq!(status, 200, "{resp}");
}
