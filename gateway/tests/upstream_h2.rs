//! HTTP/2 to backends (`upstreams.*.protocol`): `h2c` (prior knowledge) and `h2` (TLS, ALPN) to
//! the mock backend (actix's HTTP/2 server), multiplexing on one connection per worker up to
//! `max_concurrent_streams`, health checks in the same protocol, and a backend that does not
//! speak HTTP/2.

mod common;

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::{pki::Pki, *};
use mock_backends::MockOptions;

/// A TCP forwarder in front of `to` that counts the connections it accepts.
async fn counting_forwarder(to: std::net::SocketAddr) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, count)
}

fn h2c_gateway(url: &str, extra: &str) -> TestGateway {
    let yaml = format!(
        "server: {{ workers: 1 }}\nupstreams:\n  up:\n    protocol: h2c\n    backends: [ {{ url: \"{url}\" }} ]\n{extra}routes:\n  - {{ path: /, upstream: up }}\n"
    );
    TestGateway::start(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

#[tokio::test]
async fn an_h2c_upstream_is_spoken_to_in_http2() {
    let backend = MockServer::start("b0");
    let gw = h2c_gateway(&backend.url(), "");
    let resp = client().post(gw.url("/echo?x=1")).body("hello").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let echo: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(echo["http_version"], "HTTP/2.0", "{echo}");
    // (actix's HTTP/2 server reports the target in absolute form: :scheme, :authority, :path.)
    assert_eq!((echo["path"].as_str(), echo["query"].as_str()), (Some("/echo"), Some("x=1")), "{echo}");
    assert!(echo["uri"].as_str().unwrap().ends_with("/echo?x=1"), "{echo}");
    assert_eq!(echo["body_length"], 5);
    assert_eq!(echoed(&echo, "x-forwarded-for"), ["127.0.0.1"], "{echo}");
    // No connection-specific header crosses into HTTP/2.
    assert!(echoed(&echo, "connection").is_empty() && echoed(&echo, "transfer-encoding").is_empty(), "{echo}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_connection_up_to_max_concurrent_streams() {
    let backend = MockServer::start("b0");
    let target: std::net::SocketAddr = backend.url().trim_start_matches("http://").parse().unwrap();
    for (limit, expected) in [(100usize, 1..=1usize), (10, 10..=11)] {
        let (addr, connections) = counting_forwarder(target).await;
        let gw = h2c_gateway(&format!("http://{addr}"), &format!("    max_concurrent_streams: {limit}\n"));
        let client = client();
        let requests = (0..100).map(|i| {
            let client = client.clone();
            // Held 1 s each, so that all 100 are in flight together even on a loaded box.
            let url = gw.url(&format!("/delay/1000?i={i}"));
            async move { client.get(url).send().await.map(|r| r.status().as_u16()) }
        });
        let statuses = futures_util::future::join_all(requests).await;
        assert!(statuses.iter().all(|s| matches!(s, Ok(200))), "{statuses:?}");
        let n = connections.load(Ordering::SeqCst);
        assert!(expected.contains(&n), "limit {limit}: {n} connections for 100 concurrent requests");
    }
}

#[tokio::test]
async fn an_h2_upstream_negotiates_http2_over_tls() {
    let pki = Pki::new();
    let pair: (PathBuf, PathBuf) = pki.signed("ca", "backend", "subjectAltName=IP:127.0.0.1\n", 2);
    let backend =
        MockServer::start_with(MockOptions { name: "b-tls".into(), tls: Some(pair), ..Default::default() }).unwrap();
    let yaml = format!(
        "upstreams:\n  up:\n    protocol: h2\n    backends: [ {{ url: \"{}\" }} ]\n    tls: {{ ca_file: {:?} }}\n\
         routes:\n  - {{ path: /, upstream: up }}\n",
        backend.url(),
        pki.path("ca.pem").display().to_string()
    );
    let gw = TestGateway::start(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    for _ in 0..3 {
        let echo: serde_json::Value = client().get(gw.url("/echo")).send().await.unwrap().json().await.unwrap();
        assert_eq!(echo["http_version"], "HTTP/2.0", "{echo}");
    }
    assert_eq!(backend.hits(), 3);
}

/// In front of `to`: connections that open with the HTTP/2 preface are forwarded and counted;
/// any other is answered 400 in HTTP/1.1, closed and counted apart.
async fn http2_only(to: std::net::SocketAddr) -> (std::net::SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (h2, other) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (h2_seen, other_seen) = (h2.clone(), other.clone());
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let (h2, other) = (h2_seen.clone(), other_seen.clone());
            tokio::spawn(async move {
                let mut first = vec![0u8; PREFACE.len()];
                if inbound.read_exact(&mut first).await.is_err() || first != PREFACE {
                    other.fetch_add(1, Ordering::SeqCst);
                    let _ = inbound
                        .write_all(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    return;
                }
                h2.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await
                    && outbound.write_all(&first).await.is_ok()
                {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, h2, other)
}

/// Active health checks go in the upstream's protocol: to a backend that only takes HTTP/2,
/// every probe opens with the HTTP/2 preface (none in HTTP/1.1) and the backend stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_speak_the_upstreams_protocol() {
    let backend = MockServer::start("b0");
    let target: std::net::SocketAddr = backend.url().trim_start_matches("http://").parse().unwrap();
    let (addr, h2, other) = http2_only(target).await;
    let gw = h2c_gateway(
        &format!("http://{addr}"),
        "    health_check: { path: /health, interval: 200ms, timeout: 150ms, healthy_threshold: 1, unhealthy_threshold: 1 }\n",
    );
    // No request is sent: what reaches the backend is the health checks'.
    wait_until("two health-check connections", Duration::from_secs(10), async || h2.load(Ordering::SeqCst) >= 1).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(other.load(Ordering::SeqCst), 0, "a probe was not HTTP/2");
    let m = scrape(&gw).await;
    assert_eq!(metric(&m, "rustygate_backend_up", &[("upstream", "up")]), 1.0, "{m}");
    let failures = metric(&m, "rustygate_backend_failures_total", &[("upstream", "up")]);
    assert_eq!(failures, 0.0, "{m}");
}

/// A backend that answers HTTP/1.1 to the HTTP/2 preface: a 502 that says the backend failed,
/// not a hang, and the gateway keeps serving.
#[tokio::test]
async fn a_backend_that_does_not_speak_http2_is_a_502() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
        }
    });
    let gw = h2c_gateway(&format!("http://{addr}"), "    retries: 0\n");
    let resp = client().get(gw.url("/echo")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let m = scrape(&gw).await;
    assert!(metric(&m, "rustygate_backend_failures_total", &[("upstream", "up")]) >= 1.0, "{m}");
}

#[test]
fn protocol_settings_are_checked() {
    let refused = |yaml: &str| TestGateway::start(yaml).err().map(|e| e.to_string()).unwrap_or_default();
    let e = refused(
        "upstreams:\n  up:\n    protocol: h2\n    backends: [ { url: \"http://127.0.0.1:1\" } ]\nroutes:\n  - { path: /, upstream: up }\n",
    );
    assert!(e.contains("needs https:// backends"), "{e}");
    let e = refused(
        "upstreams:\n  up:\n    protocol: h2c\n    backends: [ { url: \"https://127.0.0.1:1\" } ]\nroutes:\n  - { path: /, upstream: up }\n",
    );
    assert!(e.contains("needs http:// backends"), "{e}");
    let e = refused(
        "upstreams:\n  up:\n    protocol: h2c\n    backends: [ { url: \"http://127.0.0.1:1\" } ]\nroutes:\n  - { path: /, upstream: up, websocket: true }\n",
    );
    assert!(e.contains("WebSocket sessions are HTTP/1.1 upgrades"), "{e}");
    let e = refused(
        "upstreams:\n  up:\n    protocol: h2c\n    max_concurrent_streams: 0\n    backends: [ { url: \"http://127.0.0.1:1\" } ]\nroutes:\n  - { path: /, upstream: up }\n",
    );
    assert!(e.contains("max_concurrent_streams"), "{e}");
    let e = refused(
        "upstreams:\n  up:\n    backends: [ { url: \"http://127.0.0.1:1\" } ]\n    health_check: { protocol: grpc }\nroutes:\n  - { path: /, upstream: up }\n",
    );
    assert!(e.contains("grpc health checks need an HTTP/2 upstream"), "{e}");
}
