//! gRPC calls through the gateway (`content-type: application/grpc`): every answer the gateway
//! makes itself is a gRPC status (HTTP 200, `grpc-status` in a Trailers-Only answer), read by
//! grpcio (a client from outside the project, `scripts/grpc_client.py`) over h2c; the call's
//! `grpc-timeout` is its deadline.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const SECRET: &str = "grpc-test-secret-0123456789abcdef0123";

/// One unary call with grpcio; its JSON report.
async fn call(gw: &TestGateway, method: &str, args: &[&str]) -> Value {
    let target = gw.addr.to_string();
    python_client("grpc_client.py", &[&["call", &target, method], args].concat()).await
}

fn grpc_gateway(backend: &MockServer) -> TestGateway {
    gateway(
        &format!(
            "server: {{ h2c: true }}\n\
             auth:\n  hs: {{ algorithms: [HS256], secret: \"{SECRET}\" }}\n\
             rate_limits:\n  one: {{ requests: 1, window: 1m, key: client_ip }}\n\
             routes:\n\
             \x20 - {{ name: down, path: /down.Svc, backend: \"http://127.0.0.1:1\", strip_prefix: true }}\n\
             \x20 - {{ name: secured, path: /secured.Svc, backend: \"{{b0}}\", auth: hs }}\n\
             \x20 - {{ name: limited, path: /limited.Svc, backend: \"{{b0}}\", rate_limit: one }}\n"
        ),
        &[backend],
    )
}

#[tokio::test]
async fn gateway_made_errors_are_grpc_statuses() {
    let backend = MockServer::start("b0");
    let gw = grpc_gateway(&backend);
    let cases = [
        ("/nowhere.Svc/Call", "UNIMPLEMENTED", "(unmatched)", "12"),
        ("/down.Svc/Call", "UNAVAILABLE", "down", "14"),
        ("/secured.Svc/Call", "UNAUTHENTICATED", "secured", "16"),
    ];
    for (method, code, route, status) in cases {
        let r = call(&gw, method, &[]).await;
        assert_eq!((r["ok"].as_bool(), r["code"].as_str()), (Some(false), Some(code)), "{method}: {r}");
        assert!(!r["details"].as_str().unwrap_or_default().is_empty(), "a message: {r}");
        let m = scrape(&gw).await;
        assert_eq!(
            metric(&m, "rustygate_grpc_requests_total", &[("route", route), ("grpc_status", status)]),
            1.0,
            "{method}: {m}"
        );
    }
    // A forged token is refused the same way.
    let r = call(&gw, "/secured.Svc/Call", &["--metadata", "authorization=Bearer not.a.token"]).await;
    assert_eq!(r["code"], "UNAUTHENTICATED", "{r}");
    // The rate limit: the first call goes through to the backend (which is not a gRPC server:
    // grpcio reports what it made of the HTTP answer), the second is RESOURCE_EXHAUSTED.
    let _ = call(&gw, "/limited.Svc/Call", &[]).await;
    let r = call(&gw, "/limited.Svc/Call", &[]).await;
    assert_eq!(r["code"], "RESOURCE_EXHAUSTED", "{r}");
    assert_eq!(backend.hits(), 1, "only the first limited call reached the backend");
}

/// `grpc-timeout` is the call's deadline: a backend slower than it gets the call cut at the
/// deadline (not the route's 30 s), answered 4 DEADLINE_EXCEEDED. Sent with the `h2` crate's
/// client, whose own wait is longer, so the gateway's deadline is what is seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_timeout_is_the_calls_deadline() {
    let slow = MockServer::start_with(mock_backends::MockOptions {
        name: "slow".into(),
        latency: Duration::from_secs(5),
        ..Default::default()
    })
    .unwrap();
    let gw = gateway(
        "server: { h2c: true }\nroutes:\n  - { name: slow, path: /slow.Svc, backend: \"{b0}\", timeout: 1s }\n",
        &[&slow],
    );
    let mut client = h2c_client(gw.addr).await;
    let request = http::Request::post(format!("http://{}/slow.Svc/Call", gw.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "300m")
        .body(())
        .unwrap();
    let started = Instant::now();
    let (response, _) = client.send_request(request, true).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(4), response).await.expect("answered").unwrap();
    let took = started.elapsed();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/grpc");
    assert_eq!(response.headers()["grpc-status"], "4", "{:?}", response.headers());
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "answered after {took:?}");
    let m = scrape(&gw).await;
    assert_eq!(metric(&m, "rustygate_grpc_requests_total", &[("route", "slow"), ("grpc_status", "4")]), 1.0, "{m}");

    // Hostile deadlines: the largest `grpc-timeout` (99999999 hours) is no deadline (the route's
    // 1 s timeout cuts the call), a malformed one is ignored; neither breaks the gateway.
    for value in ["99999999H", "1.5S", "-1S"] {
        let mut client = h2c_client(gw.addr).await;
        let request = http::Request::post(format!("http://{}/slow.Svc/Call", gw.addr))
            .header("content-type", "application/grpc")
            .header("grpc-timeout", value)
            .body(())
            .unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(4), response).await.expect("answered").unwrap();
        assert_eq!(response.headers()["grpc-status"], "4", "grpc-timeout {value}: {:?}", response.headers());
    }
}

/// Not gRPC (gRPC-Web, or no gRPC content type): errors stay JSON.
#[tokio::test]
async fn other_requests_keep_json_errors() {
    let backend = MockServer::start("b0");
    let gw = grpc_gateway(&backend);
    for content_type in ["application/grpc-web+proto", "application/json"] {
        let resp = client().post(gw.url("/nowhere")).header("content-type", content_type).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{content_type}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "not_found", "{content_type}");
    }
}

/// The reference gRPC server (grpcio, `scripts/grpc_client.py serve`), killed when dropped.
struct EchoServer {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl EchoServer {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/grpc_client.py");
        let child = std::process::Command::new("python3")
            .args([script, "serve", "--port-file"])
            .arg(&port_file)
            .spawn()
            .expect("python3 runs");
        let mut server = Self { child, port: 0, _dir: dir };
        wait_until_blocking("the gRPC echo server's port", Duration::from_secs(20), || {
            std::fs::read_to_string(&port_file).ok().and_then(|p| p.trim().parse().ok()).is_some_and(|p| {
                server.port = p;
                true
            })
        });
        server
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway on the hyper front end (it sends trailers) with h2c, to the echo server over h2c.
fn grpc_through_hyper(server: &EchoServer) -> TestGateway {
    let yaml = format!(
        "server: {{ h2c: true, frontend: hyper }}\n\
         upstreams:\n  echo:\n    protocol: h2c\n    backends: [ {{ url: \"http://127.0.0.1:{}\" }} ]\n\
         routes:\n  - {{ name: echo, path: /rustygate.test.Echo, upstream: echo }}\n",
        server.port
    );
    TestGateway::start(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// The four call kinds end to end (grpcio client → gateway → grpcio server), with the server's
/// trailers (`grpc-status`, its own trailing metadata) relayed, and a server error status.
#[tokio::test]
async fn the_four_call_kinds_pass_with_their_trailers() {
    let server = EchoServer::start();
    let gw = grpc_through_hyper(&server);
    let r = python_client("grpc_client.py", &["kinds", &gw.addr.to_string()]).await;
    let expect = [
        ("unary", serde_json::json!("hello")),
        ("server_streaming", serde_json::json!(["part 0", "part 1", "part 2", "part 3", "part 4"])),
        ("client_streaming", serde_json::json!("a+b+c")),
        ("bidi_streaming", serde_json::json!(["m0", "m1", "m2", "m3", "m4"])),
    ];
    for (kind, value) in expect {
        let got = &r[kind];
        assert_eq!((got["ok"].as_bool(), &got["value"]), (Some(true), &value), "{kind}: {r}");
        assert_eq!(got["code"], "OK", "{kind}: {r}");
        assert_eq!(got["trailing"]["x-echo-trailer"], "yes", "{kind}: the server's trailers relayed: {r}");
    }
    assert_eq!(
        (r["fail"]["code"].as_str(), r["fail"]["details"].as_str()),
        (Some("NOT_FOUND"), Some("no such thing")),
        "{r}"
    );
    assert_eq!(r["fail"]["trailing"]["x-echo-trailer"], "yes", "{r}");
    // Counted by the status the trailers carried.
    let m = scrape(&gw).await;
    assert_eq!(metric(&m, "rustygate_grpc_requests_total", &[("route", "echo"), ("grpc_status", "0")]), 4.0, "{m}");
    assert_eq!(metric(&m, "rustygate_grpc_requests_total", &[("route", "echo"), ("grpc_status", "5")]), 1.0, "{m}");
}

/// The backend killed while a call streams: the client gets an error status, never a hang.
#[tokio::test]
async fn a_backend_killed_mid_stream_ends_the_call_with_an_error() {
    let mut server = EchoServer::start();
    let gw = grpc_through_hyper(&server);
    let target = gw.addr.to_string();
    let call =
        tokio::spawn(async move { python_client("grpc_client.py", &["forever", &target, "--timeout", "30"]).await });
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.child.kill().unwrap();
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(15), call).await.expect("the call ended").unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "the call hung {:?}", started.elapsed());
    assert!(r["messages"].as_u64().unwrap() >= 2, "{r}");
    assert_ne!(r["ok"], true, "a killed backend is not a clean end: {r}");
    assert!(["UNAVAILABLE", "INTERNAL", "UNKNOWN", "CANCELLED"].contains(&r["code"].as_str().unwrap()), "{r}");
}

/// Active health checks with the gRPC health-checking protocol (`health_check.protocol: grpc`):
/// the reference server answers SERVING and the backend stays up with no failure; asked about a
/// service it says NOT_SERVING for, the backend is taken out of rotation (and the calls get 14
/// UNAVAILABLE from the gateway). An HTTP `GET /health` to the same gRPC server fails.
#[tokio::test]
async fn grpc_health_checks_follow_the_servers_serving_status() {
    let server = EchoServer::start();
    let gateway_with = |health: &str| {
        let yaml = format!(
            "server: {{ h2c: true, frontend: hyper }}\n\
             upstreams:\n  echo:\n    protocol: h2c\n    backends: [ {{ url: \"http://127.0.0.1:{}\" }} ]\n    \
             health_check: {{ interval: 200ms, timeout: 150ms, unhealthy_threshold: 1, healthy_threshold: 1, jitter: 0s{health} }}\n\
             routes:\n  - {{ name: echo, path: /rustygate.test.Echo, upstream: echo }}\n",
            server.port
        );
        TestGateway::start(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    };
    let up = |m: &str| metric(m, "rustygate_backend_up", &[("upstream", "echo")]);
    let failures = |m: &str| metric(m, "rustygate_backend_failures_total", &[("upstream", "echo")]);

    let serving = gateway_with(", protocol: grpc");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let m = scrape(&serving).await;
    assert_eq!((up(&m), failures(&m)), (1.0, 0.0), "{m}");

    let not_serving = gateway_with(", protocol: grpc, grpc_service: going-down");
    wait_until("NOT_SERVING to take the backend out", Duration::from_secs(10), async || {
        up(&scrape(&not_serving).await) == 0.0
    })
    .await;
    let r = call(&not_serving, "/rustygate.test.Echo/Unary", &[]).await;
    assert_eq!(r["code"], "UNAVAILABLE", "{r}");

    let http = gateway_with("");
    wait_until("a GET /health to a gRPC server to fail", Duration::from_secs(10), async || {
        up(&scrape(&http).await) == 0.0
    })
    .await;
}
