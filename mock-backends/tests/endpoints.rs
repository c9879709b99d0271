//! End-to-end tests of the mock backend over real sockets: each test starts its own
//! [`MockServer`] on a free port and talks to it with reqwest (or raw TCP where the exact
//! bytes on the wire matter).

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::{Duration, Instant},
};

use mock_backends::{MockOptions, MockServer, pattern_sha256};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

fn client() -> Client {
    Client::builder().no_proxy().timeout(Duration::from_secs(20)).build().unwrap()
}

async fn body_json(res: reqwest::Response) -> Value {
    serde_json::from_slice(&res.bytes().await.unwrap()).unwrap()
}

async fn get_json(client: &Client, url: String) -> (StatusCode, Value) {
    let res = client.get(url).send().await.unwrap();
    let status = res.status();
    (status, body_json(res).await)
}

/// Writes a raw HTTP/1.1 request and reads until the server closes the connection.
fn raw_exchange(server: &MockServer, request: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

#[tokio::test]
async fn echo_reports_the_request_as_received() {
    let server = MockServer::start("echo-a");
    let res = client()
        .post(format!("{}/a%2Fb?x=1&x=2", server.url()))
        .header("x-multi", "first")
        .header("x-single", "one")
        .header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        .header("x-multi", "second")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-backend"], "echo-a");
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: Value = body_json(res).await;
    assert_eq!(body["backend"], "echo-a");
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/a%2Fb");
    assert_eq!(body["query"], "x=1&x=2");
    assert_eq!(body["uri"], "/a%2Fb?x=1&x=2");
    assert_eq!(body["http_version"], "HTTP/1.1");
    assert_eq!(body["body_length"], 5);
    assert_eq!(body["body_sha256"], hex::encode(Sha256::digest(b"hello")));
    assert_eq!(body["traceparent"], "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    let headers = body["headers"].as_array().unwrap();
    let multi: Vec<&Value> = headers.iter().filter(|h| h[0] == "x-multi").collect();
    assert_eq!(multi, [&json!(["x-multi", "first"]), &json!(["x-multi", "second"])]);
    assert!(headers.contains(&json!(["x-single", "one"])));
    let names: Vec<&str> = headers.iter().map(|h| h[0].as_str().unwrap()).collect();
    assert!(names.is_sorted(), "headers are listed sorted by name: {names:?}");

    let (_, plain) = get_json(&client(), format!("{}/plain", server.url())).await;
    assert_eq!(plain["query"], "");
    assert_eq!(plain["traceparent"], Value::Null);
    assert_eq!(plain["body_length"], 0);
    assert_eq!(server.hits(), 2);
}

#[test]
fn echo_keeps_the_raw_request_target_from_a_plain_thread() {
    let server = MockServer::start("echo-raw");
    let answer = raw_exchange(
        &server,
        "GET /x/%7e/a%2Fb/..%2f?q=%20&q=2 HTTP/1.1\r\nHost: t\r\nX-Dup: 1\r\nX-Dup: 2\r\n\
         Connection: close\r\n\r\n",
    );
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["path"], "/x/%7e/a%2Fb/..%2f");
    assert_eq!(body["query"], "q=%20&q=2");
    assert_eq!(body["uri"], "/x/%7e/a%2Fb/..%2f?q=%20&q=2");
    let dups: Vec<&Value> = body["headers"].as_array().unwrap().iter().filter(|h| h[0] == "x-dup").collect();
    assert_eq!(dups, [&json!(["x-dup", "1"]), &json!(["x-dup", "2"])]);
    server.stop();
}

#[tokio::test]
async fn echo_streams_large_uploads() {
    let server = MockServer::start("upload");
    const CHUNKS: usize = 64;
    let chunk = vec![7u8; 64 * 1024];
    let mut expected = Sha256::new();
    for _ in 0..CHUNKS {
        expected.update(&chunk);
    }
    let chunks = (0..CHUNKS).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
    let res = client()
        .put(format!("{}/upload", server.url()))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    let body: Value = body_json(res).await;
    assert_eq!(body["body_length"], (CHUNKS * 64 * 1024) as u64);
    assert_eq!(body["body_sha256"], hex::encode(expected.finalize()));
}

#[tokio::test]
async fn status_endpoint() {
    let server = MockServer::start("status");
    let c = client();
    let res = c.delete(format!("{}/status/418", server.url())).send().await.unwrap();
    assert_eq!(res.status(), 418);
    assert_eq!(res.headers()["x-backend"], "status");
    assert_eq!(body_json(res).await, json!({"status": 418, "backend": "status"}));
    let res = c.get(format!("{}/status/204", server.url())).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert!(res.bytes().await.unwrap().is_empty());
    for bad in ["100", "600", "abc"] {
        let (status, body) = get_json(&c, format!("{}/status/{bad}", server.url())).await;
        assert_eq!(status, 400, "/status/{bad}");
        assert_eq!(body["status"], 400);
    }
}

#[tokio::test]
async fn bytes_match_the_pattern_with_and_without_content_length() {
    let server = MockServer::start("bytes");
    let c = client();
    let n: u64 = 3 * 64 * 1024 + 1234;
    let res = c.get(format!("{}/bytes/{n}", server.url())).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-length"], n.to_string().as_str());
    assert_eq!(res.headers()["x-backend"], "bytes");
    let body = res.bytes().await.unwrap();
    assert_eq!(body.len() as u64, n);
    assert_eq!(body[251], 0);
    assert_eq!(body[300], 49);
    assert_eq!(hex::encode(Sha256::digest(&body)), pattern_sha256(n));

    let res = c.get(format!("{}/bytes/{n}?chunked=1", server.url())).send().await.unwrap();
    assert!(res.headers().get("content-length").is_none());
    assert_eq!(res.headers()["transfer-encoding"], "chunked");
    let body = res.bytes().await.unwrap();
    assert_eq!(hex::encode(Sha256::digest(&body)), pattern_sha256(n));

    let res = c.get(format!("{}/bytes/0", server.url())).send().await.unwrap();
    assert_eq!(res.headers()["content-length"], "0");
    let (status, _) = get_json(&c, format!("{}/bytes/{}", server.url(), 9u64 << 30)).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn drip_streams_one_byte_at_a_time() {
    let server = MockServer::start("drip");
    let started = Instant::now();
    let mut res = client().get(format!("{}/drip/3?interval_ms=150", server.url())).send().await.unwrap();
    assert!(res.headers().get("content-length").is_none());
    let first = res.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b".");
    assert!(started.elapsed() < Duration::from_millis(250));
    let mut rest = Vec::new();
    while let Some(chunk) = res.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"..");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn delay_and_latency_hold_requests_but_not_control() {
    let server = MockServer::start_with(MockOptions {
        name: "slow".into(),
        latency: Duration::from_millis(200),
        ..Default::default()
    })
    .unwrap();
    let c = client();
    let started = Instant::now();
    let (status, body) = get_json(&c, format!("{}/delay/100", server.url())).await;
    assert_eq!(status, 200);
    assert_eq!(body["path"], "/delay/100");
    assert!(started.elapsed() >= Duration::from_millis(300));

    let started = Instant::now();
    get_json(&c, format!("{}/health", server.url())).await;
    get_json(&c, format!("{}/control/stats", server.url())).await;
    assert!(started.elapsed() < Duration::from_millis(200));
}

#[tokio::test]
async fn fail_control_counts_down_exactly() {
    let server = MockServer::start("flaky");
    let c = client();
    let res = c
        .post(format!("{}/control/fail", server.url()))
        .body(json!({"count": 2, "status": 503}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for _ in 0..2 {
        let res = c.post(format!("{}/anything", server.url())).body(vec![1u8; 100_000]).send().await.unwrap();
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()["x-backend"], "flaky");
        assert_eq!(body_json(res).await, json!({"status": 503, "backend": "flaky", "injected": true}));
    }
    let (status, _) = get_json(&c, format!("{}/anything", server.url())).await;
    assert_eq!(status, 200);

    server.fail_next(5, 502);
    let (status, _) = get_json(&c, format!("{}/bytes/10", server.url())).await;
    assert_eq!(status, 502);
    let res =
        c.post(format!("{}/control/fail", server.url())).body(json!({"reset": true}).to_string()).send().await.unwrap();
    assert_eq!(body_json(res).await["fail_remaining"], 0);
    let (status, _) = get_json(&c, format!("{}/status/201", server.url())).await;
    assert_eq!(status, 201);

    let res = c
        .post(format!("{}/control/fail", server.url()))
        .body(json!({"count": 1, "status": 150}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(server.hits(), 5);
}

#[tokio::test]
async fn fail_status_zero_closes_the_connection_without_answer() {
    let server = MockServer::start("reset");
    server.fail_next(1, 0);
    let err = client().get(format!("{}/x", server.url())).send().await.unwrap_err();
    assert!(!err.is_timeout(), "{err:?}");
    let (status, _) = get_json(&client(), format!("{}/x", server.url())).await;
    assert_eq!(status, 200);

    server.fail_next(1, 0);
    let answer = raw_exchange(&server, "GET /raw HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
}

#[tokio::test]
async fn error_rate_one_fails_everything_but_control() {
    let server =
        MockServer::start_with(MockOptions { name: "broken".into(), error_rate: 1.0, ..Default::default() }).unwrap();
    let c = client();
    let (status, body) = get_json(&c, format!("{}/x", server.url())).await;
    assert_eq!(status, 500);
    assert_eq!(body["injected"], true);
    let (status, _) = get_json(&c, format!("{}/health", server.url())).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn health_flips() {
    let server = MockServer::start("healthy");
    let c = client();
    let (status, body) = get_json(&c, format!("{}/health", server.url())).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"status": "ok", "backend": "healthy"}));

    let res = c.post(format!("{}/control/health", server.url())).body(r#"{"healthy": false}"#).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let (status, body) = get_json(&c, format!("{}/health", server.url())).await;
    assert_eq!(status, 503);
    assert_eq!(body, json!({"status": "unhealthy", "backend": "healthy"}));

    server.set_healthy(true);
    let (status, _) = get_json(&c, format!("{}/health", server.url())).await;
    assert_eq!(status, 200);

    let res = c.post(format!("{}/control/health", server.url())).body("{}").send().await.unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn stats_count_hits_but_not_control_or_health() {
    let server = MockServer::start("counted");
    let c = client();
    for path in ["/a", "/status/500", "/bytes/3", "/health", "/control/stats"] {
        c.get(format!("{}{path}", server.url())).send().await.unwrap().bytes().await.unwrap();
    }
    let (_, stats) = get_json(&c, format!("{}/control/stats", server.url())).await;
    assert_eq!(stats["backend"], "counted");
    assert_eq!(stats["hits"], 3);
    assert_eq!(stats["healthy"], true);
    assert_eq!(server.hits(), 3);

    server.set_healthy(false);
    server.fail_next(3, 503);
    let res = c.post(format!("{}/control/reset", server.url())).send().await.unwrap();
    let stats: Value = body_json(res).await;
    assert_eq!(stats["hits"], 0);
    assert_eq!(stats["healthy"], true);
    assert_eq!(stats["fail_remaining"], 0);

    let (status, _) = get_json(&c, format!("{}/control/nope", server.url())).await;
    assert_eq!(status, 404);
    let (status, _) = get_json(&c, format!("{}/control/reset", server.url())).await;
    assert_eq!(status, 405);
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn speaks_h2c_with_prior_knowledge() {
    let server = MockServer::start("h2");
    let c = Client::builder().no_proxy().http2_prior_knowledge().build().unwrap();
    let (status, body) = get_json(&c, format!("{}/h2?a=b", server.url())).await;
    assert_eq!(status, 200);
    assert_eq!(body["http_version"], "HTTP/2.0");
    assert_eq!(body["path"], "/h2");
    assert_eq!(body["query"], "a=b");
}

#[test]
fn stop_closes_the_listener() {
    let server = MockServer::start("stopped");
    let addr = server.addr();
    let answer = raw_exchange(&server, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    let started = Instant::now();
    server.stop();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(TcpStream::connect(addr).is_err());

    let dropped = MockServer::start("dropped");
    let addr = dropped.addr();
    drop(dropped);
    let deadline = Instant::now() + Duration::from_secs(3);
    while TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "listener still open after drop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn mock_server_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<MockServer>();
}

#[test]
fn invalid_names_are_rejected() {
    let err = MockServer::start_with(MockOptions { name: "bad\nname".into(), ..Default::default() }).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn latency_control_slows_requests_until_reset() {
    let server = MockServer::start("slowable");
    let c = client();
    let res =
        c.post(format!("{}/control/latency", server.url())).body(json!({"ms": 300}).to_string()).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let stats: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert_eq!(stats["latency_ms"], 300);
    let started = Instant::now();
    get_json(&c, format!("{}/echo", server.url())).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    let started = Instant::now();
    get_json(&c, format!("{}/health", server.url())).await;
    assert!(started.elapsed() < Duration::from_millis(200), "control and health are never slowed");
    let bad = c.post(format!("{}/control/latency", server.url())).body("{\"ms\": -1}").send().await.unwrap();
    assert_eq!(bad.status(), 400);
    c.post(format!("{}/control/reset", server.url())).send().await.unwrap();
    let started = Instant::now();
    get_json(&c, format!("{}/echo", server.url())).await;
    assert!(started.elapsed() < Duration::from_millis(200), "reset restores the configured latency");
}
