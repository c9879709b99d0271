//! Cleartext HTTP/2 with prior knowledge on the plain listener (`server.h2c`), with curl as the
//! client: the same routes and pipeline as HTTP/1.1 on the same port, many streams on one
//! connection, and nothing of it when the setting is off.

mod common;

use std::process::Command;

use common::*;

fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl").args(args).output().expect("curl is installed (.ci/run installs it)")
}

/// One request with curl `--http2-prior-knowledge`, and what `-w FORMAT` wrote.
fn curl_h2c(url: &str, format: &str) -> (bool, String) {
    let out = curl(&["-sS", "--max-time", "10", "--http2-prior-knowledge", "-o", "/dev/null", "-w", format, url]);
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn h2c_serves_http2_with_prior_knowledge_beside_http1() {
    let backend = MockServer::start("b0");
    let gw = gateway("server: { h2c: true }\nroutes:\n  - { path: /, backend: \"{b0}\" }\n", &[&backend]);
    let url = gw.url("/echo?q=1");
    let out = curl(&["-sS", "--max-time", "10", "--http2-prior-knowledge", "-w", "\n%{http_version}", &url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, version) = text.rsplit_once('\n').unwrap();
    assert_eq!(version, "2");
    let echo: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(echo["uri"], "/echo?q=1");
    // The backend is told the hop was HTTP/2.
    assert_eq!(echoed(&echo, "via"), ["2 rustygate"], "{echo}");
    // HTTP/1.1 on the same port, as before.
    let out =
        curl(&["-sS", "--max-time", "10", "--http1.1", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", &url]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1.1 200");
    let m = scrape(&gw).await;
    assert_eq!(metric(&m, "rustygate_requests_total", &[("status", "200")]), 2.0, "{m}");
}

/// One h2c connection (the `h2` crate's client, hyper's HTTP/2), 100 requests on it at once:
/// all answered. (curl 7.88 fails every second request on a reused h2c connection, NGINX's
/// too, so it cannot show this.)
#[tokio::test]
async fn a_hundred_streams_on_one_h2c_connection_are_all_answered() {
    let backend = MockServer::start("b0");
    let gw = gateway("server: { h2c: true }\nroutes:\n  - { path: /, backend: \"{b0}\" }\n", &[&backend]);
    let mut client = h2c_client(gw.addr).await;
    let mut answers = Vec::new();
    for i in 0..100 {
        let request = http::Request::get(format!("http://{}/echo?stream={i}", gw.addr)).body(()).unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        answers.push(response);
        client = client.ready().await.unwrap();
    }
    for (i, response) in answers.into_iter().enumerate() {
        let response = response.await.unwrap();
        assert_eq!(response.status(), 200, "stream {i}");
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            bytes.extend_from_slice(&chunk);
        }
        let echo: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(echo["uri"], format!("/echo?stream={i}"));
    }
    assert_eq!(backend.hits(), 100);
}

#[tokio::test]
async fn without_h2c_a_prior_knowledge_client_gets_no_http2() {
    let backend = MockServer::start("b0");
    let gw = gateway("routes:\n  - { path: /, backend: \"{b0}\" }\n", &[&backend]);
    let (ok, version) = curl_h2c(&gw.url("/echo"), "%{http_version}");
    assert!(!ok || version != "2", "HTTP/2 served without h2c");
    assert_eq!(backend.hits(), 0);
}

/// The rapid-reset pattern (CVE-2023-44487) on one h2c connection: streams opened and
/// cancelled in a loop. The HTTP/2 server cuts the connection (GOAWAY, `too_many_resets`) after
/// a few hundred, long before the bound, nothing is forwarded for the cancelled streams, and the
/// gateway goes on serving others, over HTTP/2 too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rapid_reset_flood_is_cut() {
    let backend = MockServer::start("b0");
    let gw = gateway("server: { h2c: true }\nroutes:\n  - { path: /, backend: \"{b0}\" }\n", &[&backend]);
    let addr = gw.addr;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (h2_client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let (mut sender, mut resets, mut cut) = (Some(h2_client), 0u32, None);
    let started = std::time::Instant::now();
    while resets < 100_000 && started.elapsed() < std::time::Duration::from_secs(20) {
        let mut ready = match sender.take().unwrap().ready().await {
            Ok(ready) => ready,
            Err(e) => {
                cut = Some(e.to_string());
                break;
            }
        };
        let request = http::Request::get(format!("http://{addr}/echo")).body(()).unwrap();
        match ready.send_request(request, false) {
            Ok((_, mut stream)) => stream.send_reset(h2::Reason::CANCEL),
            Err(e) => {
                cut = Some(e.to_string());
                break;
            }
        }
        sender = Some(ready);
        resets += 1;
        // Let the connection task put the frames on the wire.
        if resets % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    drop(sender);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), connection).await;
    let cut =
        cut.unwrap_or_else(|| panic!("{resets} streams reset in {:?}, the connection never cut", started.elapsed()));
    assert!(cut.contains("too_many_resets") || cut.contains("GOAWAY") || cut.contains("connection"), "{cut}");
    assert!(resets < 10_000, "cut only after {resets} resets");
    assert!(backend.hits() < 50, "{} requests forwarded for cancelled streams", backend.hits());
    // Others are served, over HTTP/1.1 and over a new HTTP/2 connection.
    assert_eq!(client().get(gw.url("/echo")).send().await.unwrap().status(), 200);
    assert_eq!(curl_h2c(&gw.url("/echo"), "%{http_code}"), (true, "200".to_owned()));
}

/// Oversized header blocks over HTTP/2: a 100 KiB header, and a thousand small ones, get the
/// same 431 as over HTTP/1.1 (the head limits are the pipeline's), nothing is forwarded, and
/// the connection goes on serving other streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_header_blocks_over_h2c_are_refused_like_over_http1() {
    let backend = MockServer::start("b0");
    let gw = gateway("server: { h2c: true }\nroutes:\n  - { path: /, backend: \"{b0}\" }\n", &[&backend]);
    let mut client = h2c_client(gw.addr).await;
    let big = http::Request::get(format!("http://{}/echo", gw.addr)).header("x-big", "a".repeat(100 * 1024));
    let mut many = http::Request::get(format!("http://{}/echo", gw.addr));
    for i in 0..1000 {
        many = many.header(format!("x-h{i}"), "0123456789abcdef0123456789abcdef");
    }
    for (what, request) in [("one 100 KiB header", big), ("1000 headers", many)] {
        let (response, _) = client.send_request(request.body(()).unwrap(), true).unwrap();
        let response = response.await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(response.status(), 431, "{what}");
        client = client.ready().await.unwrap();
    }
    assert_eq!(backend.hits(), 0, "nothing forwarded");
    let (response, _) =
        client.send_request(http::Request::get(format!("http://{}/echo", gw.addr)).body(()).unwrap(), true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200, "the same connection serves the next stream");
}
