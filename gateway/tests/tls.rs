//! The HTTPS listener (`server.tls`), tried with clients from outside the project: curl over
//! HTTP/1.1 and HTTP/2, `openssl s_client` for SNI, ALPN and the versions refused. Certificates
//! are made for each test by the `openssl` command line (a CA and leaves signed by it, ECDSA
//! P-256), in a temporary directory: no key is committed.

mod common;

use std::{path::PathBuf, process::Command};

use common::*;

/// A throwaway CA and the leaves it signs, in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let pki = Self { dir: tempfile::tempdir().unwrap() };
        pki.new_key("req -x509 -keyout ca.key -out ca.pem -days 2", "/CN=rustygate test CA");
        pki
    }

    /// `openssl ARGS` (space-separated, no spaces inside one) with a new ECDSA P-256 key and
    /// the subject `subject`.
    fn new_key(&self, args: &str, subject: &str) -> String {
        let mut all: Vec<&str> = args.split(' ').collect();
        all.extend(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", subject]);
        self.openssl(&all)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn openssl(&self, args: &[&str]) -> String {
        let out = Command::new("openssl").args(args).current_dir(self.dir.path()).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `NAME.pem` and `NAME.key`: a leaf for `dns_names` (its CN is NAME), valid for `days`
    /// (negative: already expired).
    fn leaf(&self, name: &str, dns_names: &[&str], days: i32) -> (PathBuf, PathBuf) {
        let (key, csr, pem, ext) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
        let san = dns_names.iter().map(|n| format!("DNS:{n}")).collect::<Vec<_>>().join(",");
        std::fs::write(self.path(&ext), format!("subjectAltName={san}\n")).unwrap();
        self.new_key(&format!("req -keyout {key} -out {csr}"), &format!("/CN={name}"));
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            &days.to_string(),
            "-extfile",
            &ext,
        ]);
        (self.path(&pem), self.path(&key))
    }
}

fn tls_config(backend: &MockServer, pairs: &[(PathBuf, PathBuf)], extra: &str) -> String {
    let certs: String = pairs
        .iter()
        .map(|(c, k)| {
            format!("\n      - {{ cert_file: {:?}, key_file: {:?} }}", c.display().to_string(), k.display().to_string())
        })
        .collect();
    format!(
        "server:\n  tls:\n    listen: 127.0.0.1:0\n    certificates:{certs}\n{extra}routes:\n  - path: /\n    backend: \"{}\"\n",
        backend.url()
    )
}

/// `curl` against the HTTPS listener, `host` resolved to it; returns (stdout, stderr, success).
fn curl(gw: &TestGateway, pki: &Pki, host: &str, args: &[&str]) -> (String, String, bool) {
    let port = gw.tls_addr.expect("an HTTPS listener").port();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(pki.path("ca.pem"))
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .args(args)
        .arg(format!("https://{host}:{port}/echo?x=1"))
        .output()
        .expect("curl runs");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

/// `openssl s_client` to the HTTPS listener; returns everything it printed (the handshake's
/// summary, or why it failed).
fn s_client(gw: &TestGateway, args: &[&str]) -> String {
    let port = gw.tls_addr.expect("an HTTPS listener").port();
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs");
    // Closing stdin ends the session once the handshake is done.
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Whether `s_client`'s output shows a finished handshake (a certificate and a cipher).
fn handshake_done(out: &str) -> bool {
    out.contains("subject=") && out.contains("Cipher is ") && !out.contains("Cipher is (NONE)")
}

#[test]
fn curl_gets_answers_over_http1_and_http2_and_the_backend_learns_it_was_https() {
    let pki = Pki::new();
    let pair = pki.leaf("api", &["api.test"], 2);
    let backend = MockServer::start("b0");
    let gw = TestGateway::start(&tls_config(&backend, &[pair], "")).unwrap();

    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let (out, err, ok) = curl(&gw, &pki, "api.test", &[flag, "-w", "\n%{http_version} %{http_code}"]);
        assert!(ok, "curl {flag}: {err}");
        let (body, status) = out.rsplit_once('\n').unwrap();
        assert_eq!(status, format!("{version} 200"), "curl {flag}: {out}");
        let echo: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(echoed(&echo, "x-forwarded-proto"), ["https"], "{flag}: {body}");
        assert_eq!(echo["uri"], "/echo?x=1");
    }
    // The plain listener still answers plain HTTP, and says so upstream.
    let plain = raw(gw.addr, b"GET /echo HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n");
    assert_eq!(echoed(&raw_json(&plain), "x-forwarded-proto"), ["http"]);
    // A client that does not trust the CA refuses the certificate (curl's own check).
    let port = gw.tls_addr.unwrap().port();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--resolve", &format!("api.test:{port}:127.0.0.1")])
        .arg(format!("https://api.test:{port}/echo"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "an untrusted CA must fail the client's check");
}

#[test]
fn sni_chooses_the_certificate_exact_then_wildcard_then_the_default() {
    let pki = Pki::new();
    let first = pki.leaf("first", &["first.test"], 2);
    let api = pki.leaf("api", &["api.test"], 2);
    let wild = pki.leaf("wild", &["*.wild.test"], 2);
    let backend = MockServer::start("b0");
    let gw = TestGateway::start(&tls_config(&backend, &[first, api, wild], "")).unwrap();

    let subject = |args: &[&str]| {
        let out = s_client(&gw, args);
        out.lines()
            .find_map(|l| l.trim().strip_prefix("subject=").map(str::to_owned))
            .unwrap_or_else(|| panic!("no subject in: {out}"))
    };
    assert!(subject(&["-servername", "api.test"]).contains("CN = api"));
    assert!(subject(&["-servername", "API.Test"]).contains("CN = api"), "names are matched without case");
    assert!(subject(&["-servername", "x.wild.test"]).contains("CN = wild"));
    // A wildcard covers one label only.
    assert!(subject(&["-servername", "a.b.wild.test"]).contains("CN = first"));
    assert!(subject(&["-servername", "unknown.test"]).contains("CN = first"));
    assert!(subject(&["-noservername"]).contains("CN = first"));

    // ALPN: h2 first, HTTP/1.1 for clients that offer only it.
    assert!(s_client(&gw, &["-servername", "api.test", "-alpn", "h2,http/1.1"]).contains("ALPN protocol: h2"));
    assert!(s_client(&gw, &["-servername", "api.test", "-alpn", "http/1.1"]).contains("ALPN protocol: http/1.1"));
    // TLS 1.1 and older are refused; 1.2 and 1.3 are served.
    assert!(!handshake_done(&s_client(&gw, &["-tls1_1"])), "TLS 1.1 must be refused");
    assert!(s_client(&gw, &["-tls1_2"]).contains("New, TLSv1.2, Cipher is ECDHE"));
    assert!(s_client(&gw, &["-tls1_3"]).contains("New, TLSv1.3, Cipher is TLS"));
}

#[test]
fn min_version_1_3_refuses_tls_1_2() {
    let pki = Pki::new();
    let pair = pki.leaf("api", &["api.test"], 2);
    let backend = MockServer::start("b0");
    let config =
        tls_config(&backend, &[pair], "").replace("    certificates:", "    min_version: \"1.3\"\n    certificates:");
    let gw = TestGateway::start(&config).unwrap();
    let refused = s_client(&gw, &["-tls1_2"]);
    assert!(!handshake_done(&refused), "TLS 1.2 must be refused: {refused}");
    assert!(refused.contains("alert protocol version"), "{refused}");
    assert!(s_client(&gw, &["-tls1_3"]).contains("New, TLSv1.3, Cipher is TLS"));
}

/// Each bad certificate setting is a configuration error at the key that names the file,
/// never a panic or a listener without a certificate.
#[test]
fn bad_certificate_files_are_located_config_errors() {
    let pki = Pki::new();
    let good = pki.leaf("good", &["good.test"], 2);
    let other = pki.leaf("other", &["other.test"], 2);
    let expired = pki.leaf("expired", &["expired.test"], -1);
    let not_pem = pki.path("not.pem");
    std::fs::write(&not_pem, "this is not PEM\n").unwrap();
    let backend = MockServer::start("b0");
    let error = |pair: (PathBuf, PathBuf)| {
        let yaml = tls_config(&backend, &[pair], "");
        match TestGateway::start(&yaml) {
            Ok(_) => panic!("accepted: {yaml}"),
            Err(e) => e.to_string(),
        }
    };
    let at = |e: &str, key: &str, words: &str| {
        assert!(e.contains(key) && e.contains(words), "expected {words:?} at {key}, got:\n{e}");
    };
    at(&error((good.0.clone(), other.1.clone())), "server.tls.certificates[0].key_file", "does not match");
    at(&error((expired.0.clone(), expired.1.clone())), "server.tls.certificates[0].cert_file", "expired");
    at(&error((not_pem.clone(), good.1.clone())), "server.tls.certificates[0].cert_file", "no PEM CERTIFICATE");
    at(&error((good.0.clone(), not_pem.clone())), "server.tls.certificates[0].key_file", "not a PEM private key");
    at(&error((pki.path("missing.pem"), good.1.clone())), "server.tls.certificates[0].cert_file", "cannot read");
    let no_certs = tls_config(&backend, &[], "").replace("    certificates:\n", "    certificates: []\n");
    at(&TestGateway::start(&no_certs).err().expect("refused").to_string(), "server.tls.certificates", "at least one");
}

/// Hostile handshakes: garbage instead of a ClientHello, a plain HTTP request on the HTTPS
/// port, a client that connects and says nothing — each costs the gateway its connection only;
/// it keeps serving.
#[test]
fn garbage_on_the_https_port_is_dropped_and_service_goes_on() {
    use std::io::{Read, Write};
    let pki = Pki::new();
    let pair = pki.leaf("api", &["api.test"], 2);
    let backend = MockServer::start("b0");
    let gw = TestGateway::start(&tls_config(&backend, &[pair], "")).unwrap();
    let addr = gw.tls_addr.unwrap();
    for junk in [
        &b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0][..],
        &[0u8; 4096][..],
    ] {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let _ = s.write_all(junk);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert!(!String::from_utf8_lossy(&out).contains("200 OK"), "nothing is served to garbage");
    }
    let (_, err, ok) = curl(&gw, &pki, "api.test", &["--http2"]);
    assert!(ok, "still serving: {err}");
}

/// A client that trusts only the test CA, resolves `host` to the HTTPS listener and reports
/// the certificate each connection got. A new client makes a new connection: a new handshake.
fn tls_client(gw: &TestGateway, pki: &Pki, host: &str) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.path("ca.pem")).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .resolve(host, gw.tls_addr.unwrap())
        .tls_info(true)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The DER of the leaf a request's connection was served.
fn served_leaf(resp: &reqwest::Response) -> Vec<u8> {
    resp.extensions().get::<reqwest::tls::TlsInfo>().and_then(|i| i.peer_certificate()).expect("TLS info").to_vec()
}

/// The DER of a PEM certificate file's first certificate.
fn der_of(pem: &std::path::Path) -> Vec<u8> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::from_pem_file(pem).unwrap().to_vec()
}

/// Rename-over, as editors and `kubectl` secret updates replace files.
fn replace_file(from: &std::path::Path, to: &std::path::Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_swapped_under_load_without_a_failed_request_and_a_bad_pair_is_refused() {
    let pki = Pki::new();
    let v1 = pki.leaf("v1", &["api.test"], 2);
    let v2 = pki.leaf("v2", &["api.test"], 2);
    let other = pki.leaf("other", &["other.test"], 2);
    let (served_cert, served_key) = (pki.path("served.pem"), pki.path("served.key"));
    replace_file(&v1.0, &served_cert);
    replace_file(&v1.1, &served_key);
    let backend = MockServer::start("b0");
    // As TestGateway runs it (its listeners on port 0), so that the file reloads as unchanged.
    let yaml = tls_config(&backend, &[(served_cert.clone(), served_key.clone())], "admin: { listen: 127.0.0.1:0 }\n")
        .replace("server:\n", "server:\n  listen: 127.0.0.1:0\n  workers: 2\n");
    let config_path = pki.path("gateway.yaml");
    std::fs::write(&config_path, &yaml).unwrap();
    let gw = TestGateway::start(&yaml).unwrap();
    gw.gateway.config_path.set(config_path.clone()).unwrap();
    let _watcher = rustygate::config_watch::watch(&gw.gateway, &config_path).expect("watching");
    let metrics = reqwest::get(gw.admin_url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metric(&metrics, "rustygate_tls_certificate_expiry_seconds", &[("name", "api.test")]) > 0.0);

    // Load: one new connection after another, each checked, until the test says stop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (pki_ca, addr) = (pki.path("ca.pem"), gw.tls_addr.unwrap());
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let ca = reqwest::Certificate::from_pem(&std::fs::read(pki_ca).unwrap()).unwrap();
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let client = reqwest::Client::builder()
                    .tls_certs_only([ca.clone()])
                    .resolve("api.test", addr)
                    .timeout(std::time::Duration::from_secs(10))
                    .build()
                    .unwrap();
                match client.get(format!("https://api.test:{}/echo", addr.port())).send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    Ok(r) => failed.push(format!("HTTP {}", r.status())),
                    Err(e) => failed.push(format!("{e:?}")),
                }
            }
            (ok, failed)
        })
    };
    let leaf_now = async || {
        let resp = tls_client(&gw, &pki, "api.test")
            .get(format!("https://api.test:{}/echo", addr.port()))
            .send()
            .await
            .unwrap();
        served_leaf(&resp)
    };
    assert_eq!(leaf_now().await, der_of(&v1.0));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // The swap: key and certificate replaced by rename; the new one is served within 3 s.
    replace_file(&v2.1, &served_key);
    replace_file(&v2.0, &served_cert);
    let waited = wait_until("the new certificate served", std::time::Duration::from_secs(3), async || {
        leaf_now().await == der_of(&v2.0)
    })
    .await;

    // A key that does not match: refused, the served certificate stays.
    replace_file(&other.1, &served_key);
    let refused = wait_until("the bad pair refused", std::time::Duration::from_secs(5), async || {
        let m = reqwest::get(gw.admin_url("/metrics")).await.unwrap().text().await.unwrap();
        metric(&m, "rustygate_config_reloads_total", &[("result", "error")]) >= 1.0
    })
    .await;
    assert_eq!(leaf_now().await, der_of(&v2.0), "the served certificate stays after a bad swap");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok >= 20, "the load made {ok} requests");
    eprintln!("swap seen after {waited:?}, bad pair refused after {refused:?}, {ok} requests, 0 failed");
}
