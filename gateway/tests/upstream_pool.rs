//! The forwarding client's connections to backends (`server.upstream_client: hyper`, the
//! default), seen from a raw backend that counts the connections it accepts and records the
//! request heads it reads: reuse, connections the backend closes, answers abandoned half-way,
//! bodiless answers, and the framing of what is forwarded.

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::*;

/// A keep-alive HTTP/1.1 backend on raw sockets: each request is answered by `/path`:
/// `/close` with `Connection: close` (then closes), `/empty` with a 204, `/huge` with the head
/// and the first 64 KiB of a 64 MiB body (then waits for the peer to go), `/drop-after` with
/// `ok` and then the connection closed without a word; anything else with `ok`.
struct RawBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl RawBackend {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (a, h, b) = (accepted.clone(), heads.clone(), bodies.clone());
        // The threads end with the test process; each connection's at its peer's close.
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                let (h, b) = (h.clone(), b.clone());
                std::thread::spawn(move || serve(conn, &h, &b));
            }
        });
        Self { addr, accepted, heads, bodies }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn serve(conn: TcpStream, heads: &Mutex<Vec<String>>, bodies: &Mutex<Vec<Vec<u8>>>) {
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let lower = head.to_ascii_lowercase();
        let length =
            lower.lines().find_map(|l| l.strip_prefix("content-length:")).map(|v| v.trim().parse::<usize>().unwrap());
        let mut body = Vec::new();
        if let Some(n) = length {
            body.resize(n, 0);
            reader.read_exact(&mut body).unwrap();
        } else if lower.contains("transfer-encoding: chunked") {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).unwrap();
                let n = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut chunk = vec![0u8; n + 2];
                reader.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
        let is_head = head.starts_with("HEAD ");
        heads.lock().unwrap().push(head);
        bodies.lock().unwrap().push(body);
        let answer: &[u8] = match path.as_str() {
            "/close" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
            "/empty" => b"HTTP/1.1 204 No Content\r\n\r\n",
            "/huge" => {
                let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 67108864\r\n\r\n");
                let _ = writer.write_all(&[b'x'; 65536]);
                // Until the gateway gives the connection up.
                let _ = reader.read(&mut [0u8; 1]);
                return;
            }
            // A HEAD answer says the length a GET would get, and sends no body.
            _ if is_head => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        };
        if writer.write_all(answer).is_err() || path == "/close" || path == "/drop-after" {
            return;
        }
    }
}

fn gateway_to(backend: &RawBackend, extra: &str) -> TestGateway {
    TestGateway::start(&format!("{extra}routes:\n  - {{ path: /, backend: \"http://{}\" }}\n", backend.addr))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// One client connection to the gateway (one worker), kept alive.
fn keep_alive_client() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap()
}

async fn get(client: &reqwest::Client, gw: &TestGateway, path: &str) -> (u16, String) {
    let resp = client.get(format!("http://{}{path}", gw.addr)).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn sequential_requests_share_one_backend_connection() {
    let backend = RawBackend::start();
    let gw = gateway_to(&backend, "");
    let client = keep_alive_client();
    for i in 0..20 {
        let path = if i % 4 == 3 { "/empty" } else { "/x" };
        let (status, body) = get(&client, &gw, path).await;
        assert_eq!(status, if path == "/empty" { 204 } else { 200 });
        assert_eq!(body, if path == "/empty" { "" } else { "ok" });
    }
    // HEAD answers have no body either: the connection goes back all the same.
    for _ in 0..5 {
        let resp = client.head(format!("http://{}/x", gw.addr)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(backend.heads().len(), 25);
    assert_eq!(backend.accepted(), 1, "one worker, one request at a time: one connection");
}

#[tokio::test]
async fn connections_the_backend_closes_are_not_reused() {
    let backend = RawBackend::start();
    let gw = gateway_to(&backend, "");
    let client = keep_alive_client();
    // Said (`Connection: close`) and unsaid (closed right after answering): every request is
    // answered, each on a new connection.
    for path in ["/close", "/drop-after"] {
        let before = backend.accepted();
        for _ in 0..10 {
            assert_eq!(get(&client, &gw, path).await, (200, "ok".to_owned()), "{path}");
            // Unsaid: the next request may be sent before the gateway saw the close; then it
            // was not written, and goes on a new connection.
        }
        assert_eq!(backend.accepted() - before, 10, "{path}");
    }
}

#[tokio::test]
async fn an_answer_abandoned_half_way_closes_its_connection() {
    let backend = RawBackend::start();
    let gw = gateway_to(&backend, "");
    // The client reads part of the huge answer and goes: the rest of it must never be read as
    // the answer to the next request.
    {
        let mut s = TcpStream::connect(gw.addr).unwrap();
        s.write_all(b"GET /huge HTTP/1.1\r\nHost: gw.test\r\n\r\n").unwrap();
        let mut first = [0u8; 4096];
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.read_exact(&mut first).unwrap();
        assert!(first.starts_with(b"HTTP/1.1 200"));
    }
    let client = keep_alive_client();
    for _ in 0..3 {
        assert_eq!(get(&client, &gw, "/x").await, (200, "ok".to_owned()));
    }
    assert!(backend.accepted() >= 2, "the half-read connection was reused");
}

#[tokio::test]
async fn the_framing_forwarded_matches_the_body() {
    let backend = RawBackend::start();
    let gw = gateway_to(&backend, "");
    let client = keep_alive_client();
    let url = format!("http://{}/f", gw.addr);
    // No body: neither header. A sized body: its length. A streamed body: chunked, even on a GET
    // (a small one is read whole first, and sent with its length).
    client.get(&url).send().await.unwrap();
    client.post(&url).body("abc").send().await.unwrap();
    client.post(&url).body(chunked(&[b'y'; 200_000], 7000)).send().await.unwrap();
    // (reqwest, being hyper, would send a GET's body of unknown length as none at all.)
    let mut get_with_body =
        b"GET /f HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..30 {
        get_with_body.extend_from_slice(b"1388\r\n");
        get_with_body.extend_from_slice(&[b'g'; 5000]);
        get_with_body.extend_from_slice(b"\r\n");
    }
    get_with_body.extend_from_slice(b"0\r\n\r\n");
    assert!(raw(gw.addr, &get_with_body).starts_with("HTTP/1.1 200"));
    // A declared empty body keeps its `Content-Length: 0` (reqwest would send no header).
    let empty_post = b"POST /f HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert!(raw(gw.addr, empty_post).starts_with("HTTP/1.1 200"));
    client.put(&url).body(chunked(b"small", 2)).send().await.unwrap();
    let heads: Vec<String> = backend.heads().iter().map(|h| h.to_ascii_lowercase()).collect();
    let bodies = backend.bodies.lock().unwrap().clone();
    assert_eq!(heads.len(), 6, "{heads:?}");
    assert!(!heads[0].contains("content-length") && !heads[0].contains("transfer-encoding"), "{}", heads[0]);
    assert!(heads[1].contains("content-length: 3\r\n") && bodies[1] == b"abc", "{}", heads[1]);
    assert!(heads[2].contains("transfer-encoding: chunked") && !heads[2].contains("content-length"), "{}", heads[2]);
    assert_eq!(bodies[2].len(), 200_000);
    assert!(heads[3].starts_with("get ") && heads[3].contains("transfer-encoding: chunked"), "{}", heads[3]);
    assert_eq!(bodies[3], vec![b'g'; 150_000]);
    assert!(heads[4].contains("content-length: 0\r\n"), "{}", heads[4]);
    assert!(heads[5].contains("content-length: 5\r\n") && !heads[5].contains("transfer-encoding"), "{}", heads[5]);
    assert_eq!(bodies[5], b"small");
    // Nothing the pipeline did not put there: no `Date`, no `Accept-Encoding`, no `User-Agent`
    // of the client's own.
    for head in &heads {
        assert!(!head.contains("\r\ndate:") && !head.contains("accept-encoding: identity"), "{head}");
        assert!(["get", "post", "put"].iter().any(|m| head.starts_with(&format!("{m} /f http/1.1\r\n"))), "{head}");
    }
}

#[tokio::test]
async fn concurrent_requests_open_connections_and_keep_them() {
    let backend = RawBackend::start();
    let gw = gateway_to(&backend, "");
    let client = reqwest::Client::new();
    // Three rounds of 16 at once. A worker never needs more than 16 connections (16 requests
    // at most at a time), so with its idle ones kept the gateway's two workers open at most
    // 32 in all; without a pool it would be 48.
    for round in 0..3 {
        let requests: Vec<_> = (0..16).map(|_| get(&client, &gw, "/x")).collect();
        for (status, body) in futures_util::future::join_all(requests).await {
            assert_eq!((status, body.as_str()), (200, "ok"), "round {round}");
        }
    }
    assert_eq!(backend.heads().len(), 48);
    assert!(backend.accepted() <= 32, "{} connections for 3 rounds of 16", backend.accepted());
}
