//! `rustygate health`: a dependency-free probe of the admin `/healthz`, so a container image
//! built `FROM scratch` can carry a `HEALTHCHECK` without curl.

use std::{
    io::{Read, Write},
    net::{TcpStream, ToSocketAddrs},
    time::Duration,
};

/// The probe's default target: the admin listener's default address.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8081/healthz";

/// GETs `url` (plain `http://host:port/path`) and returns the status code, or why it failed.
pub fn probe(url: &str, timeout: Duration) -> Result<u16, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url:?}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    // One write: a server that answers after the first read and closes must not meet the rest
    // of the request (a broken pipe instead of its status).
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: rustygate-health\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_reads_the_status_and_reports_failures() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
        });
        assert_eq!(probe(&format!("http://{addr}/healthz"), Duration::from_secs(2)), Ok(503));
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(probe(&format!("http://{closed}/healthz"), Duration::from_secs(2)).is_err());
        assert!(probe("https://x/healthz", Duration::from_secs(1)).unwrap_err().contains("only http://"));
    }
}
