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
    let gw =
        gateway("server: { h2c: true }\nroutes:\n  - { name: slow, path: /slow.Svc, backend: \"{b0}\" }\n", &[&slow]);
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.unwrap();
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
