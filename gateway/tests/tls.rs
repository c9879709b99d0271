//! The HTTPS listener (`server.tls`), tried with clients from outside the project: curl over
//! HTTP/1.1 and HTTP/2, `openssl s_client` for SNI, ALPN and the versions refused. Certificates
//! are made for each test by the `openssl` command line (a CA and leaves signed by it, ECDSA
//! P-256), in a temporary directory: no key is committed.

mod common;

use std::{path::PathBuf, process::Command};

use common::pki::Pki;

use common::*;

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

/// curl with a client certificate (or none) to `path` on the HTTPS listener: (HTTP status, body).
fn curl_mtls(
    gw: &TestGateway,
    pki: &Pki,
    cert: Option<&(PathBuf, PathBuf)>,
    path: &str,
    extra: &[&str],
) -> Result<(u16, String), String> {
    let port = gw.tls_addr.unwrap().port();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "--cacert"]).arg(pki.path("ca.pem"));
    cmd.args(["--resolve", &format!("api.test:{port}:127.0.0.1"), "-w", "\n%{http_code}"]);
    if let Some((c, k)) = cert {
        cmd.arg("--cert").arg(c).arg("--key").arg(k);
    }
    let out = cmd.args(extra).arg(format!("https://api.test:{port}{path}")).output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    Ok((code.parse().unwrap(), body.to_owned()))
}

fn sha256_of(pem: &std::path::Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der_of(pem)))
}

#[test]
fn a_listener_that_requires_client_certificates_refuses_the_handshake_without_one_and_forwards_the_identity() {
    let pki = Pki::new();
    let server = pki.leaf("api", &["api.test"], 2);
    let clients_ca = pki.another_ca("clients");
    let ops = pki.client("clients", "ops", &["URI:spiffe://test/ops", "DNS:ops.test"]);
    // Signed by the server CA, which the listener does not trust for clients.
    let stranger = pki.client("ca", "stranger", &[]);
    let backend = MockServer::start("b0");
    let extra = format!("    client_auth: {{ mode: require, ca_file: {:?} }}\n", clients_ca.display().to_string());
    let gw = TestGateway::start(&tls_config(&backend, &[server], "").replace("routes:", &format!("{extra}routes:")))
        .unwrap();

    let refused = curl_mtls(&gw, &pki, None, "/echo", &[]);
    assert!(refused.is_err(), "no client certificate: the handshake must fail, got {refused:?}");
    let refused = curl_mtls(&gw, &pki, Some(&stranger), "/echo", &[]);
    assert!(refused.is_err(), "a certificate of another CA: the handshake must fail, got {refused:?}");

    // The client's own copies of the identity headers are replaced by the gateway's.
    let forged = [
        "-H",
        "X-Client-Cert-Subject: CN=admin",
        "-H",
        "X-Client-Cert-SHA256: 00",
        "-H",
        "x-client-cert-san: DNS:admin",
    ];
    let (status, body) = curl_mtls(&gw, &pki, Some(&ops), "/echo", &forged).expect("served");
    assert_eq!(status, 200, "{body}");
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echoed(&echo, "x-client-cert-subject"), ["CN=ops"]);
    assert_eq!(echoed(&echo, "x-client-cert-san"), ["URI:spiffe://test/ops, DNS:ops.test"]);
    assert_eq!(echoed(&echo, "x-client-cert-sha256"), [sha256_of(&ops.0)]);

    // A name holding the list's separator cannot add an entry to the list the backend reads.
    let forger = pki.signed(
        "clients",
        "forger",
        "extendedKeyUsage=clientAuth\nsubjectAltName=@alt\n[alt]\nURI.1=spiffe://test/a, DNS:admin.test\n",
        2,
    );
    let (status, body) = curl_mtls(&gw, &pki, Some(&forger), "/echo", &[]).expect("served");
    assert_eq!(status, 200, "{body}");
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echoed(&echo, "x-client-cert-san"), ["URI:spiffe://test/a%2C DNS:admin.test"]);
}

#[test]
fn an_optional_listener_lets_routes_require_a_certificate_and_allow_lists_pick_who() {
    let pki = Pki::new();
    let server = pki.leaf("api", &["api.test"], 2);
    let clients_ca = pki.another_ca("clients");
    let ops = pki.client("clients", "ops", &["DNS:ops.test"]);
    let dev = pki.client("clients", "dev", &["DNS:dev.test"]);
    let backend = MockServer::start("b0");
    let yaml = format!(
        "server:\n  tls:\n    listen: 127.0.0.1:0\n    certificates: [{{ cert_file: {:?}, key_file: {:?} }}]\n    \
         client_auth: {{ mode: optional, ca_file: {:?} }}\nroutes:\n\
         - {{ path: /ops, backend: \"{b}\", client_cert: {{ required: true, allowed_subjects: [\"CN=ops\"] }} }}\n\
         - {{ path: /by-san, backend: \"{b}\", client_cert: {{ allowed_sans: [\"DNS:dev.test\"] }} }}\n\
         - {{ path: /any, backend: \"{b}\", client_cert: {{ required: true }} }}\n\
         - {{ path: /, backend: \"{b}\" }}\n",
        server.0.display().to_string(),
        server.1.display().to_string(),
        clients_ca.display().to_string(),
        b = backend.url()
    );
    let gw = TestGateway::start(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let code = |cert: Option<&(PathBuf, PathBuf)>, path: &str| curl_mtls(&gw, &pki, cert, path, &[]).expect("served").0;

    // Without a certificate: the open route is served (forged identity headers dropped), the
    // others answer 403 client_cert_required.
    let (status, body) = curl_mtls(&gw, &pki, None, "/echo", &["-H", "X-Client-Cert-Subject: CN=ops"]).unwrap();
    assert_eq!(status, 200);
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(echoed(&echo, "x-client-cert-subject").is_empty(), "a forged identity passed: {body}");
    let (status, body) = curl_mtls(&gw, &pki, None, "/ops/echo", &[]).unwrap();
    assert_eq!(status, 403);
    let err: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["error"], "client_cert_required", "{body}");
    assert_eq!(code(None, "/any/echo"), 403);
    assert_eq!(code(None, "/by-san/echo"), 403);

    // With one: the allow-lists decide.
    assert_eq!(code(Some(&ops), "/ops/echo"), 200);
    assert_eq!(code(Some(&dev), "/ops/echo"), 403, "CN=dev is not on /ops's list");
    assert_eq!(code(Some(&dev), "/by-san/echo"), 200);
    assert_eq!(code(Some(&ops), "/by-san/echo"), 403, "DNS:ops.test is not on /by-san's list");
    assert_eq!(code(Some(&dev), "/any/echo"), 200);

    // Over plain HTTP there is no certificate: the route refuses, it never trusts a header.
    let plain = raw(
        gw.addr,
        b"GET /any/echo HTTP/1.1\r\nHost: api.test\r\nX-Client-Cert-Subject: CN=ops\r\nConnection: close\r\n\r\n",
    );
    assert!(plain.starts_with("HTTP/1.1 403"), "{plain}");

    // Python's ssl module as the client (another TLS stack): the identity reaches the backend.
    let port = gw.tls_addr.unwrap().port();
    let script = format!(
        "import ssl, http.client, json\n\
         ctx = ssl.create_default_context(cafile={ca:?})\n\
         ctx.load_cert_chain({cert:?}, {key:?})\n\
         conn = http.client.HTTPSConnection('api.test', {port}, context=ctx)\n\
         conn.sock = ctx.wrap_socket(__import__('socket').create_connection(('127.0.0.1', {port})), server_hostname='api.test')\n\
         conn.request('GET', '/ops/echo')\n\
         r = conn.getresponse()\n\
         body = json.loads(r.read())\n\
         print(r.status, dict((k.lower(), v) for k, v in body['headers']).get('x-client-cert-subject'), conn.sock.version())\n",
        ca = pki.path("ca.pem").display().to_string(),
        cert = ops.0.display().to_string(),
        key = ops.1.display().to_string(),
    );
    let out = Command::new("python3").args(["-c", &script]).output().expect("python3 runs");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    assert!(printed.starts_with("200 CN=ops TLSv1."), "python saw: {printed}");
}

#[test]
fn client_certificate_settings_without_a_listener_that_asks_are_config_errors() {
    let pki = Pki::new();
    let server = pki.leaf("api", &["api.test"], 2);
    let backend = MockServer::start("b0");
    let base = tls_config(&backend, &[server], "");
    let err = |yaml: String| {
        TestGateway::start(&yaml).err().map(|e| e.to_string()).unwrap_or_else(|| panic!("accepted:\n{yaml}"))
    };
    let e = err(base.replace("    backend:", "    client_cert: { required: true }\n    backend:"));
    assert!(e.contains("routes[0].client_cert") && e.contains("no listener asks"), "{e}");
    let e = err(base.replace("routes:", "    client_auth: { mode: require }\nroutes:"));
    assert!(e.contains("server.tls.client_auth.ca_file") && e.contains("needed"), "{e}");
    let not_pem = pki.path("not.pem");
    std::fs::write(&not_pem, "nope\n").unwrap();
    let e = err(base.replace(
        "routes:",
        &format!("    client_auth: {{ mode: optional, ca_file: {:?} }}\nroutes:", not_pem.display().to_string()),
    ));
    assert!(e.contains("server.tls.client_auth.ca_file") && e.contains("no PEM"), "{e}");
}

#[test]
fn the_client_ca_is_swapped_when_its_file_changes() {
    let pki = Pki::new();
    let server = pki.leaf("api", &["api.test"], 2);
    let (old_ca, new_ca) = (pki.another_ca("old"), pki.another_ca("new"));
    let client_of_new = pki.client("new", "ops", &[]);
    let ca_file = pki.path("clients.pem");
    std::fs::copy(&old_ca, &ca_file).unwrap();
    let backend = MockServer::start("b0");
    let extra = format!("    client_auth: {{ mode: optional, ca_file: {:?} }}\n", ca_file.display().to_string());
    let yaml = tls_config(&backend, &[server], "").replace("routes:", &format!("{extra}routes:"));
    let gw = TestGateway::start(&yaml).unwrap();
    assert!(curl_mtls(&gw, &pki, Some(&client_of_new), "/echo", &[]).is_err(), "a CA not yet trusted");
    replace_file(&new_ca, &ca_file);
    // The same configuration, reloaded: only the CA file changed.
    let config = rustygate::config::load_str(&yaml, "<test>").unwrap();
    let mut running = (*gw.gateway.runtime.load().config).clone();
    running.server.tls.as_mut().unwrap().client_auth = config.server.tls.unwrap().client_auth;
    gw.gateway.reload(running).expect("reload");
    let (status, body) = curl_mtls(&gw, &pki, Some(&client_of_new), "/echo", &[]).expect("the new CA is trusted");
    assert_eq!(status, 200);
    assert!(body.contains("CN=ops"), "{body}");
}

#[test]
fn the_plain_listener_redirects_to_https_and_hsts_goes_only_over_https() {
    let pki = Pki::new();
    let pair = pki.leaf("api", &["api.test"], 2);
    let backend = MockServer::start("b0");
    let yaml = tls_config(&backend, &[pair], "")
        .replace("  tls:\n", "  redirect_https: true\n  tls:\n")
        .replace("    backend:", "    hsts: true\n    backend:");
    let gw = TestGateway::start(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let port = gw.tls_addr.unwrap().port();

    let answer = raw(gw.addr, b"GET /a/b?c=d&e HTTP/1.1\r\nHost: API.test:8080\r\nConnection: close\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    let location = format!("location: https://api.test:{port}/a/b?c=d&e\r\n");
    assert!(answer.to_ascii_lowercase().contains(&location), "expected {location:?} in {answer}");
    assert!(!answer.to_ascii_lowercase().contains("strict-transport-security"), "no HSTS over plain HTTP: {answer}");
    // ACME's HTTP-01 challenges are answered over plain HTTP (routed, not redirected).
    let acme =
        raw(gw.addr, b"GET /.well-known/acme-challenge/token HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n");
    assert!(!acme.starts_with("HTTP/1.1 308"), "{acme}");
    // Without a Host there is nowhere to send the client.
    let no_host = raw(gw.addr, b"GET / HTTP/1.0\r\n\r\n");
    assert!(no_host.starts_with("HTTP/1.0 400"), "{no_host}");

    // Over HTTPS: served, with HSTS.
    let (out, err, ok) = curl(&gw, &pki, "api.test", &["-i", "--http1.1"]);
    assert!(ok, "{err}");
    let lower = out.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200"), "{out}");
    assert!(lower.contains("strict-transport-security: max-age=31536000\r\n"), "{out}");
}

#[tokio::test]
async fn the_server_span_of_a_request_over_tls_carries_the_tls_attributes() {
    use mock_backends::otlp_sink::OtlpSink;
    let pki = Pki::new();
    let pair = pki.leaf("api", &["api.test"], 2);
    let backend = MockServer::start("b0");
    let sink = OtlpSink::start();
    let tracing = format!(
        "tracing: {{ enabled: true, endpoint: \"http://{}\", protocol: grpc, scheduled_delay: 50ms }}\n",
        sink.grpc_addr
    );
    let gw = TestGateway::start(&tls_config(&backend, &[pair], &tracing)).unwrap();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let (_, err, ok) =
        curl(&gw, &pki, "api.test", &["--http2", "-H", &format!("traceparent: 00-{trace}-00f067aa0ba902b7-01")]);
    assert!(ok, "{err}");
    let spans = sink.wait_for(trace, 2, std::time::Duration::from_secs(10));
    let server = spans.iter().find(|s| s.kind == "server").expect("a SERVER span");
    for (key, value) in [
        ("url.scheme", "https"),
        ("tls.protocol.name", "tls"),
        ("tls.protocol.version", "1.3"),
        ("tls.client.server_name", "api.test"),
        ("network.protocol.version", "2"),
    ] {
        assert_eq!(server.attribute(key), Some(&serde_json::Value::from(value)), "SERVER {key}: {server:#?}");
    }
    assert!(server.attribute("tls.cipher").is_some_and(|c| c.as_str().is_some_and(|c| c.starts_with("TLS13_"))));
}

#[tokio::test]
async fn admin_certificates_lists_what_is_served_without_key_material() {
    let pki = Pki::new();
    let first = pki.leaf("first", &["first.test"], 2);
    let wild = pki.leaf("wild", &["*.wild.test"], 2);
    let backend = MockServer::start("b0");
    let yaml = tls_config(&backend, &[first.clone(), wild], "admin: { token: t0ken }\n");
    let gw = TestGateway::start(&yaml).unwrap();
    let url = gw.admin_url("/admin/certificates");
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 401, "the admin token is needed");
    let resp = client().get(&url).bearer_auth("t0ken").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    let certs = body["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 2, "{body}");
    assert_eq!(certs[0]["names"], serde_json::json!(["first.test"]));
    assert_eq!(certs[0]["default"], true);
    assert_eq!(certs[1]["names"], serde_json::json!(["*.wild.test"]));
    assert_eq!(certs[1]["default"], false);
    assert_eq!(certs[0]["subject"], "CN=first");
    assert_eq!(certs[0]["issuer"], "CN=rustygate test CA");
    assert_eq!(certs[0]["sha256"], sha256_of(&first.0));
    let left = certs[0]["expires_in_seconds"].as_i64().unwrap();
    assert!(left > 86_400 && left <= 2 * 86_400, "{left}");
    assert_eq!(certs[0]["cert_file"], first.0.display().to_string());
    assert_eq!(body["client_auth"]["mode"], "none");
}

/// HTTP/2 over TLS through the same pipeline as HTTP/1.1: a large upload streams to the
/// backend intact, a large download comes back intact, and the access log says `h2`.
#[test]
fn large_bodies_stream_both_ways_over_http2() {
    let pki = Pki::new();
    let pair = pki.leaf("api", &["api.test"], 2);
    let backend = MockServer::start("b0");
    let yaml = tls_config(&backend, &[pair], "  max_body_size: 64MiB\n");
    let gw = TestGateway::start(&yaml).unwrap();
    // Up: 24 MiB, more than any buffer on the way, in one POST over h2.
    let upload = pki.path("upload.bin");
    let data = byte_pattern(24 << 20);
    std::fs::write(&upload, &data).unwrap();
    let port = gw.tls_addr.unwrap().port();
    let out = Command::new("curl")
        .args(["-sS", "--http2", "--max-time", "60", "--cacert"])
        .arg(pki.path("ca.pem"))
        .args(["--resolve", &format!("api.test:{port}:127.0.0.1"), "-w", "\n%{http_version}", "--data-binary"])
        .arg(format!("@{}", upload.display()))
        .arg(format!("https://api.test:{port}/echo"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, version) = text.rsplit_once('\n').unwrap();
    assert_eq!(version, "2");
    let echo: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(echo["body_length"], data.len() as u64);
    assert_eq!(echo["body_sha256"], pattern_sha256(data.len() as u64));
    // Down: 24 MiB from the backend's byte pattern.
    let down = pki.path("download.bin");
    let out = Command::new("curl")
        .args(["-sS", "--http2", "--max-time", "60", "--cacert"])
        .arg(pki.path("ca.pem"))
        .args(["--resolve", &format!("api.test:{port}:127.0.0.1"), "-o"])
        .arg(&down)
        .arg(format!("https://api.test:{port}/bytes/{}", 24 << 20))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(&down).unwrap() == byte_pattern(24 << 20), "the download arrived intact");
}

/// The mock backend's `/bytes/{n}` pattern: byte `i` is `i % 251`.
fn byte_pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// `rustygate_tls_handshakes_total{listener,version,result}` on the hyper front end, which
/// accepts TLS itself: curl's handshakes count as successes with their version; plain HTTP sent
/// to the HTTPS port, and a TLS 1.2 client on a TLS 1.3-only listener, as failures. Both front
/// ends serve the same answers (curl over HTTP/1.1 and HTTP/2, the backend told `https`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshakes_are_counted_by_version_and_result() {
    let pki = Pki::new();
    let pair = pki.leaf("api", &["api.test"], 2);
    let backend = MockServer::start("b0");
    let yaml = tls_config(&backend, &[pair], "    min_version: \"1.3\"\n")
        .replace("server:\n", "server:\n  frontend: hyper\n");
    let gw = TestGateway::start(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    for flag in ["--http1.1", "--http2"] {
        let (out, err, ok) = curl(&gw, &pki, "api.test", &[flag, "-w", "\n%{http_code}"]);
        assert!(ok && out.ends_with("\n200"), "curl {flag}: {err}{out}");
        assert_eq!(
            echoed(&serde_json::from_str(out.rsplit_once('\n').unwrap().0).unwrap(), "x-forwarded-proto"),
            ["https"]
        );
    }
    let tls_addr = gw.tls_addr.unwrap();
    let answer = raw(tls_addr, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(!answer.starts_with("HTTP/1.1 200"), "plain HTTP on the TLS port: {answer}");
    let old = s_client(&gw, &["-tls1_2", "-servername", "api.test"]);
    assert!(!handshake_done(&old), "TLS 1.2 on a 1.3-only listener: {old}");
    let m = scrape(&gw).await;
    let handshakes = |version: &str, result: &str| {
        metric(&m, "rustygate_tls_handshakes_total", &[("listener", "https"), ("version", version), ("result", result)])
    };
    assert_eq!(handshakes("1.3", "success"), 2.0, "{m}");
    assert_eq!(handshakes("unknown", "failed"), 2.0, "{m}");
}
