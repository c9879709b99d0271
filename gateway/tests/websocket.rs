//! WebSocket sessions through the gateway, with Python's `websockets` library as the client (a
//! client from outside the project, `scripts/ws_client.py`) and the mock backend's echo
//! (actix-ws) behind: echo at scale, limits (idle timeout, maximum duration, frame size), a
//! refused upgrade, policies on the handshake, reloads during sessions, hostile frames.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// Runs `ws_client.py MODE URL ARGS…` and returns its JSON report.
async fn ws(mode: &str, url: &str, args: &[&str]) -> Value {
    python_client("ws_client.py", &[&[mode, url], args].concat()).await
}

fn ws_url(gw: &TestGateway, path: &str) -> String {
    format!("ws://{}{path}", gw.addr)
}

/// A gateway with one WebSocket route `/ws` (plus `extra` keys) to `backend`.
fn ws_gateway(backend: &MockServer, extra: &str) -> TestGateway {
    gateway(
        &format!("routes:\n  - {{ name: ws, path: /ws, backend: \"{{b0}}\", websocket: true{extra} }}\n"),
        &[backend],
    )
}

#[tokio::test]
async fn a_thousand_sessions_echo_a_hundred_messages_each_without_loss_or_reordering() {
    let backend = MockServer::start("b0");
    let gw = ws_gateway(&backend, "");
    let report = ws("echo", &ws_url(&gw, "/ws/echo"), &["--sessions", "1000", "--messages", "100"]).await;
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["messages"], 100_000, "{report}");
    assert_eq!((report["lost"].as_u64(), report["reordered"].as_u64()), (Some(0), Some(0)), "{report}");
    assert_eq!(backend.hits(), 1000, "one handshake per session reached the backend");
    // Every session ended, counted as closed, and none is left open.
    wait_until("the sessions to be counted closed", Duration::from_secs(10), async || {
        let m = scrape(&gw).await;
        metric(&m, "rustygate_websocket_connections_total", &[("route", "ws"), ("result", "closed")]) == 1000.0
    })
    .await;
    let m = scrape(&gw).await;
    assert_eq!(metric(&m, "rustygate_websocket_connections", &[("route", "ws")]), 0.0, "{m}");
    assert_eq!(gw.gateway.websockets.open(), 0);
    assert_eq!(metric(&m, "rustygate_requests_total", &[("route", "ws"), ("status", "101")]), 1000.0, "{m}");
    // 100 frames each way per session (payloads of 13 bytes and more; headers of 6 bytes from
    // the client, masked, and 2 from the backend), plus the close handshake.
    let sent = metric(&m, "rustygate_websocket_bytes_total", &[("route", "ws"), ("direction", "client_to_backend")]);
    let back = metric(&m, "rustygate_websocket_bytes_total", &[("route", "ws"), ("direction", "backend_to_client")]);
    assert!(sent >= 1000.0 * 100.0 * 19.0 && back >= 1000.0 * 100.0 * 15.0, "{sent} {back}");
    assert_eq!(sent - back, 1000.0 * (100.0 * 4.0 + 4.0), "the same frames both ways, less the masks");
}

#[tokio::test]
async fn the_handshake_passes_the_route_policies_and_the_backend_sees_the_gateway_headers() {
    let backend = MockServer::start("b0");
    const SECRET: &str = "ws-test-secret-0123456789abcdef0123";
    let gw = gateway(
        &format!(
            "auth:\n  hs: {{ algorithms: [HS256], secret: \"{SECRET}\", forward_authorization: false, forward_claims: {{ sub: X-User-Id }} }}\n\
             routes:\n  - {{ name: ws, path: /ws, backend: \"{{b0}}\", websocket: true, auth: hs }}\n"
        ),
        &[&backend],
    );
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({ "sub": "alice", "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let url = ws_url(&gw, "/ws/echo?headers=1");
    // No key: the handshake is refused by the policy, nothing reaches the backend.
    let refused = ws("headers", &url, &[]).await;
    assert_eq!(refused["status"], 401, "{refused}");
    assert_eq!(backend.hits(), 0);
    let bearer = format!("Authorization:Bearer {token}");
    let ok = ws(
        "headers",
        &url,
        &["--header", &bearer, "--header", "X-Forwarded-For:6.6.6.6", "--header", "X-User-Id:mallory"],
    )
    .await;
    assert_eq!(ok["status"], 101, "{ok}");
    let seen: Vec<(String, String)> = serde_json::from_value(ok["headers"].clone()).unwrap();
    let get = |name: &str| seen.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
    assert_eq!(get("upgrade"), ["websocket"], "{seen:?}");
    assert_eq!(get("connection"), ["upgrade"], "{seen:?}");
    assert!(get("x-forwarded-for").concat().ends_with("127.0.0.1"), "the peer, last: {seen:?}");
    assert_eq!(get("x-forwarded-proto"), ["http"]);
    assert_eq!(get("sec-websocket-version"), ["13"]);
    assert_eq!(get("sec-websocket-key").len(), 1);
    assert_eq!(get("x-request-id").len(), 1);
    // The verified claim, never the client's forged copy; the token itself stays with the gateway.
    assert_eq!(get("x-user-id"), ["alice"], "{seen:?}");
    assert!(get("authorization").is_empty(), "{seen:?}");
    // The client's 101 carries the gateway's request id and the backend's accept key.
    let headers = &ok["response_headers"];
    assert!(headers["x-request-id"].is_string() && headers["sec-websocket-accept"].is_string(), "{headers}");
    assert_eq!(headers["x-backend"], "b0");
}

#[tokio::test]
async fn a_backend_that_refuses_the_upgrade_is_answered_as_it_answered() {
    let backend = MockServer::start("b0");
    let gw = ws_gateway(&backend, "");
    let refused = ws("headers", &ws_url(&gw, "/ws/echo?refuse=403"), &[]).await;
    assert_eq!(refused["status"], 403, "{refused}");
    assert!(refused["body"].as_str().unwrap().contains("\"status\":403"), "the backend's own body: {refused}");
    let m = scrape(&gw).await;
    assert_eq!(metric(&m, "rustygate_websocket_connections_total", &[("result", "refused")]), 1.0, "{m}");
    assert_eq!(metric(&m, "rustygate_websocket_connections", &[]), 0.0);
}

#[tokio::test]
async fn without_websocket_on_the_route_the_upgrade_is_not_forwarded() {
    let backend = MockServer::start("b0");
    let gw = gateway("routes:\n  - { name: plain, path: /, backend: \"{b0}\" }\n", &[&backend]);
    let refused = ws("headers", &ws_url(&gw, "/ws/echo"), &[]).await;
    // The backend got a plain GET (no Upgrade, no Connection: upgrade): actix-ws refuses it.
    assert_eq!(refused["status"], 400, "{refused}");
    let answer = raw(
        gw.addr,
        b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let echo = raw_json(&answer);
    assert!(echoed(&echo, "upgrade").is_empty() && echoed(&echo, "connection").is_empty(), "{echo}");
}

#[tokio::test]
async fn an_idle_session_is_closed_with_1001_after_the_idle_timeout() {
    let backend = MockServer::start("b0");
    let gw = ws_gateway(&backend, ", websocket_idle_timeout: 300ms");
    let report = ws("hold", &ws_url(&gw, "/ws/echo"), &["--sessions", "3", "--timeout", "10"]).await;
    assert_eq!(report["codes"], serde_json::json!([1001, 1001, 1001]), "{report}");
    let m = scrape(&gw).await;
    assert_eq!(metric(&m, "rustygate_websocket_connections_total", &[("result", "idle_timeout")]), 3.0, "{m}");
    assert_eq!(metric(&m, "rustygate_websocket_connections", &[]), 0.0);
}

#[tokio::test]
async fn a_session_is_closed_with_1001_at_its_maximum_duration_even_while_busy() {
    let backend = MockServer::start("b0");
    let gw = ws_gateway(&backend, ", websocket_max_duration: 1s");
    // Sessions that keep talking (an echo every message) are still closed at 1 s.
    let started = std::time::Instant::now();
    let report = ws("throughput", &ws_url(&gw, "/ws/echo"), &["--sessions", "2", "--seconds", "30"]).await;
    assert!(started.elapsed() < Duration::from_secs(20), "{report}");
    assert_eq!(report["closed_by_server"], serde_json::json!([1001, 1001]), "{report}");
    assert!(report["messages"].as_u64().unwrap() > 10, "the sessions were busy: {report}");
    let m = scrape(&gw).await;
    assert_eq!(metric(&m, "rustygate_websocket_connections_total", &[("result", "max_duration")]), 2.0, "{m}");
}

#[tokio::test]
async fn a_frame_over_the_limit_closes_the_session_with_1009_and_never_reaches_the_backend() {
    let backend = MockServer::start("b0");
    let gw = ws_gateway(&backend, ", websocket_max_frame_size: 1KiB");
    // A frame at the limit passes and comes back.
    let small = ws("send", &ws_url(&gw, "/ws/echo"), &["--size", "1024"]).await;
    assert_eq!(small["echoed"], 1024, "{small}");
    let report = ws("send", &ws_url(&gw, "/ws/echo"), &["--size", "1025"]).await;
    assert_eq!(report["code"], 1009, "{report}");
    let m = scrape(&gw).await;
    assert_eq!(metric(&m, "rustygate_websocket_connections_total", &[("result", "message_too_big")]), 1.0, "{m}");
    // The oversized frame was never relayed: what went to the backend is the small session's
    // 1024-byte frame (8 bytes of header and mask) and its close frame, nothing of the other.
    let sent = metric(&m, "rustygate_websocket_bytes_total", &[("direction", "client_to_backend")]);
    assert!((1032.0..1100.0).contains(&sent), "{sent} bytes relayed to the backend");
}

#[tokio::test]
async fn a_64_mib_message_passes_whole() {
    let backend = MockServer::start("b0");
    let gw = ws_gateway(&backend, "");
    let report = ws("big", &ws_url(&gw, "/ws/echo"), &["--size", &(64 << 20).to_string()]).await;
    assert_eq!((report["received"].as_u64(), report["same"].as_bool()), (Some(64 << 20), Some(true)), "{report}");
}

#[tokio::test]
async fn reloads_during_sessions_drop_none() {
    let backend = MockServer::start("b0");
    let gw = ws_gateway(&backend, "");
    let url = ws_url(&gw, "/ws/echo");
    let sessions =
        tokio::spawn(
            async move { ws("echo", &url, &["--sessions", "50", "--messages", "2000", "--size", "64"]).await },
        );
    // Reload (with a changed route table) while the sessions run.
    let mut reloads = 0;
    while !sessions.is_finished() && reloads < 20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut config = (*gw.gateway.runtime.load().config).clone();
        let extra = format!("routes:\n  - {{ name: r{reloads}, path: /r{reloads}, backend: \"{}\" }}\n", backend.url());
        config.routes.extend(rustygate::config::load::load_str(&extra, "reload.yaml").unwrap().routes);
        gw.gateway.reload(config).unwrap();
        reloads += 1;
    }
    let report = sessions.await.unwrap();
    assert!(reloads >= 2, "the sessions ended before two reloads: {report}");
    assert_eq!((report["errors"].as_u64(), report["lost"].as_u64()), (Some(0), Some(0)), "{report}");
    assert_eq!(report["messages"], 100_000, "{report}");
}

/// Hostile bytes after a good handshake: an unmasked client frame is a protocol error (1002),
/// answered with a close frame; the backend is told too and the gateway keeps serving.
#[tokio::test]
async fn an_unmasked_client_frame_is_a_protocol_error() {
    use std::io::{Read, Write};
    let backend = MockServer::start("b0");
    let gw = ws_gateway(&backend, "");
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.to_ascii_lowercase().contains("upgrade: websocket"), "{head}");
    // A text frame "hi" without a mask.
    s.write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    // A close frame (0x88), unmasked, code 1002, then the end of the connection.
    assert!(rest.len() >= 4 && rest[0] == 0x88 && rest[2..4] == [0x03, 0xea], "{rest:?}");
    let m = scrape(&gw).await;
    assert_eq!(metric(&m, "rustygate_websocket_connections_total", &[("result", "protocol_error")]), 1.0, "{m}");
    // The gateway still serves.
    let ok = ws("echo", &ws_url(&gw, "/ws/echo"), &["--messages", "3"]).await;
    assert_eq!(ok["messages"], 3, "{ok}");
}

/// A handshake that declares a body is ambiguous (actix would read the connection as its
/// body): refused before routing goes any further.
#[tokio::test]
async fn an_upgrade_with_a_body_is_refused() {
    let backend = MockServer::start("b0");
    let gw = ws_gateway(&backend, "");
    let answer = raw(
        gw.addr,
        b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(backend.hits(), 0);
}
