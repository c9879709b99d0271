//! Helpers shared by the integration tests: gateway configs around mock backends, a raw HTTP/1.1
//! client for byte-exact checks, metric lookups, and polls with deadlines.
#![allow(dead_code, unused_imports)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

pub mod pki;

pub use mock_backends::{MockServer, pattern_sha256};
pub use rustygate::testing::TestGateway;

/// Starts a gateway from YAML in which `{b0}`, `{b1}`, … are replaced by the backends' URLs.
pub fn gateway(yaml: &str, backends: &[&MockServer]) -> TestGateway {
    let mut text = yaml.to_owned();
    for (i, b) in backends.iter().enumerate() {
        text = text.replace(&format!("{{b{i}}}"), &b.url());
    }
    TestGateway::start(&text).unwrap_or_else(|e| panic!("test config rejected:\n{e}"))
}

/// Sends raw bytes and reads the whole answer (the request should ask `Connection: close`).
pub fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The JSON body of a raw HTTP response.
pub fn raw_json(response: &str) -> serde_json::Value {
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {response}"))
}

/// Headers the echo saw, as (name, value) pairs in the echo's order.
pub fn echoed_headers(echo: &serde_json::Value) -> Vec<(String, String)> {
    echo["headers"]
        .as_array()
        .expect("headers array")
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_owned(), p[1].as_str().unwrap().to_owned()))
        .collect()
}

/// All values of one echoed header.
pub fn echoed(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echoed_headers(echo).into_iter().filter(|(k, _)| k == name).map(|(_, v)| v).collect()
}

/// The value of a sample in Prometheus text, matching a metric name and label pairs; 0 if absent.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A reqwest client without connection reuse surprises.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// GET an admin endpoint with the admin token, as JSON.
pub async fn admin_json(gw: &TestGateway, path: &str, token: &str) -> serde_json::Value {
    client().get(gw.admin_url(path)).bearer_auth(token).send().await.unwrap().json().await.unwrap()
}

/// Fetches the gateway's metrics text.
pub async fn scrape(gw: &TestGateway) -> String {
    client().get(gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap()
}

/// A request body of unknown length (sent chunked): `data` in pieces of `chunk` bytes.
pub fn chunked(data: &[u8], chunk: usize) -> reqwest::Body {
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = data.chunks(chunk).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(pieces))
}

/// How often [`wait_until`] and [`wait_until_blocking`] look again.
const POLL: Duration = Duration::from_millis(20);

/// Polls `probe` until it answers true and returns how long that took; panics naming `what`
/// once `deadline` (from the call) has passed without it.
pub async fn wait_until(what: &str, deadline: Duration, mut probe: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if probe().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// [`wait_until`] for tests without a runtime: the probe blocks, and so does the wait.
pub fn wait_until_blocking(what: &str, deadline: Duration, mut probe: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if probe() {
            return start.elapsed();
        }
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        std::thread::sleep(POLL);
    }
}

/// Runs one of the repository's Python clients (`scripts/NAME`, clients from outside the
/// project: websockets, grpcio) with `args` and returns the JSON object it prints.
pub async fn python_client(script: &str, args: &[&str]) -> serde_json::Value {
    let path = format!("{}/../scripts/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new("python3").arg(&path).args(args).output().await.expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} {args:?} failed (.ci/run installs its Python package):\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{script}: not JSON ({e}): {stdout}"))
}

/// An HTTP/2 client connection with prior knowledge (the `h2` crate's, explicit streams on one
/// connection), ready for a request; its connection task runs on the test's runtime.
pub async fn h2c_client(addr: SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client.ready().await.expect("HTTP/2 connection ready")
}
