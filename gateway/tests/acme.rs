//! Automatic certificates (`server.tls.acme`) against Pebble, Let's Encrypt's ACME test server
//! (Debian package `pebble`), started here on loopback: the self-signed stand-in first, then
//! issuance by TLS-ALPN-01 and by HTTP-01, a real client trusting the result through Pebble's
//! root, a restart that serves the stored certificate without a new order, renewal at two
//! thirds of a short lifetime, and the directory going away (the certificate keeps serving,
//! the failure is counted).

mod common;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::{pki::Pki, *};

/// A free loopback port (bound then released: the next user binds it at once). The one place
/// the tests hand a port over instead of reading what was bound: Pebble validates against the
/// ports written in its configuration and the gateway needs Pebble's directory at start, so one
/// of the two must be chosen before either starts.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Pebble on loopback, validating challenges against `http_port` (HTTP-01) and `tls_port`
/// (TLS-ALPN-01) of `localhost`; stopped (by its PID) when dropped.
struct Pebble {
    child: Child,
    pki: Pki,
    port: u16,
    management: u16,
}

impl Pebble {
    fn start(http_port: u16, tls_port: u16, validity_secs: u64) -> Self {
        let pki = Pki::new();
        let (cert, key) = pki.signed("ca", "pebble", "subjectAltName=DNS:localhost,IP:127.0.0.1\n", 2);
        let (port, management) = (free_port(), free_port());
        let config = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert, "privateKey": key,
            "httpPort": http_port, "tlsPort": tls_port,
            "ocspResponderURL": "", "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity_secs,
        }});
        let config_path = pki.path("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let child = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            // No random pause before validating, no nonce rejected on purpose, no reuse of a
            // valid authorization: every order is validated, deterministically.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble is installed (apt-get install pebble; .ci/run installs it)");
        let pebble = Self { child, pki, port, management };
        wait_until_blocking("pebble to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        pebble
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// The CA of Pebble's own HTTPS (not of what it issues).
    fn https_ca(&self) -> PathBuf {
        self.pki.path("ca.pem")
    }

    /// The root of the certificates Pebble issues (new at every Pebble start).
    async fn issuing_root(&self) -> String {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(self.https_ca()).unwrap()).unwrap();
        let client = reqwest::Client::builder().tls_certs_only([ca]).build().unwrap();
        let url = format!("https://127.0.0.1:{}/roots/0", self.management);
        client.get(url).send().await.unwrap().text().await.unwrap()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gateway_yaml(
    backend: &MockServer,
    http_port: u16,
    tls_port: u16,
    pebble: &Pebble,
    state_dir: &Path,
    challenge: &str,
) -> String {
    format!(
        "admin: {{ listen: \"127.0.0.1:0\", token: t0ken }}\nserver:\n  listen: \"127.0.0.1:{http_port}\"\n  workers: 2\n  redirect_https: true\n  tls:\n    listen: \"127.0.0.1:{tls_port}\"\n    acme:\n      directory: \"{}\"\n      email: ops@example.com\n      domains: [localhost]\n      state_dir: {:?}\n      challenge: {challenge}\n      directory_ca_file: {:?}\nroutes:\n  - {{ path: /, backend: \"{}\" }}\n",
        pebble.directory(),
        state_dir.display().to_string(),
        pebble.https_ca().display().to_string(),
        backend.url()
    )
}

/// Starts a gateway on the ports `yaml` names (the CA validates against them).
fn start(yaml: &str) -> TestGateway {
    let config = rustygate::config::load_str(yaml, "<acme test>").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    TestGateway::start_config(config).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// What `/admin/certificates` says of the ACME certificate.
async fn acme_certificate(gw: &TestGateway) -> serde_json::Value {
    let body = admin_json(gw, "/admin/certificates", "t0ken").await;
    body["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cert_file"].as_str().is_some_and(|f| f.contains("certificate.pem")))
        .cloned()
        .expect("the ACME certificate is listed")
}

async fn orders(gw: &TestGateway, result: &str) -> f64 {
    metric(&scrape(gw).await, "rustygate_acme_orders_total", &[("result", result)])
}

/// A client that trusts only `root_pem`, as a user trusting the CA would, reaching
/// `localhost` on the gateway's HTTPS port.
fn trusting(root_pem: &str, tls_port: u16) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(root_pem.as_bytes()).unwrap()])
        .resolve("localhost", ([127, 0, 0, 1], tls_port).into())
        .build()
        .unwrap()
}

#[tokio::test]
async fn tls_alpn_01_issues_and_a_restart_reuses_the_stored_certificate() {
    let backend = MockServer::start("b0");
    let (http_port, tls_port) = (free_port(), free_port());
    let pebble = Pebble::start(http_port, tls_port, 3600);
    let state = tempfile::tempdir().unwrap();
    let yaml = gateway_yaml(&backend, http_port, tls_port, &pebble, state.path(), "tls-alpn-01");
    let gw = start(&yaml);
    // Issued within seconds (Pebble validates at once); until then the stand-in is served.
    wait_until("the ACME certificate", Duration::from_secs(30), async || {
        acme_certificate(&gw).await["source"] == "acme"
    })
    .await;
    let served = acme_certificate(&gw).await;
    assert!(served["issuer"].as_str().unwrap().contains("Pebble"), "{served}");
    assert_eq!(served["names"], serde_json::json!(["localhost"]));
    assert_eq!(orders(&gw, "issued").await, 1.0);
    assert_eq!(orders(&gw, "failed").await, 0.0);
    // A client trusting only Pebble's root gets through, by name.
    let root = pebble.issuing_root().await;
    let url = format!("https://localhost:{tls_port}/echo");
    let resp = trusting(&root, tls_port).get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(backend.hits(), 1);
    // The key is the owner's only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state.path().join("certificate.key.pem")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let serial = served["serial"].clone();
    drop(gw);
    // A restart serves the stored certificate at once, and orders nothing.
    let gw = start(&yaml);
    // The renewal task installs it as it starts; poll briefly for that.
    wait_until("the stored certificate", Duration::from_secs(5), async || {
        acme_certificate(&gw).await["serial"] == serial
    })
    .await;
    assert_eq!(trusting(&root, tls_port).get(&url).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(orders(&gw, "issued").await, 0.0, "no new order after a restart");
}

#[tokio::test]
async fn http_01_issues_renews_and_survives_the_directory_going_away() {
    let backend = MockServer::start("b0");
    let (http_port, tls_port) = (free_port(), free_port());
    // 24 s certificates: renewed 16 s after issuance.
    let mut pebble = Pebble::start(http_port, tls_port, 24);
    let state = tempfile::tempdir().unwrap();
    let yaml = gateway_yaml(&backend, http_port, tls_port, &pebble, state.path(), "http-01");
    let gw = start(&yaml);
    // Before any order answers, the stand-in: self-signed, for the domain.
    let first = acme_certificate(&gw).await;
    if first["source"] == "self-signed" {
        assert_eq!(first["issuer"], first["subject"], "{first}");
    }
    wait_until("the first ACME certificate", Duration::from_secs(30), async || {
        acme_certificate(&gw).await["source"] == "acme"
    })
    .await;
    let issued = acme_certificate(&gw).await;
    // The challenge path was answered over plain HTTP although the listener redirects the rest.
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let plain = no_redirects.get(gw.url("/anything")).send().await.unwrap();
    assert_eq!(plain.status(), 308);
    // Renewed at two thirds of its 24 s.
    wait_until("the renewal", Duration::from_secs(40), async || {
        acme_certificate(&gw).await["serial"] != issued["serial"]
    })
    .await;
    assert_eq!(orders(&gw, "issued").await, 2.0);
    let renewed = acme_certificate(&gw).await;
    // The directory goes away: the next renewal fails, is counted, and the certificate stays.
    let root = pebble.issuing_root().await;
    let _ = pebble.child.kill();
    let _ = pebble.child.wait();
    wait_until("the failed renewal", Duration::from_secs(40), async || orders(&gw, "failed").await >= 1.0).await;
    let now = acme_certificate(&gw).await;
    assert_eq!(now["serial"], renewed["serial"], "the served certificate stays");
    assert_eq!(now["source"], "acme");
    let url = format!("https://localhost:{tls_port}/echo");
    assert_eq!(trusting(&root, tls_port).get(&url).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn bad_acme_settings_are_located_errors() {
    let cases = [
        ("directory: \"http://127.0.0.1:1/dir\"", "server.tls.acme.directory"),
        ("directory: \"https://no-such-host.invalid/dir\"", "server.tls.acme.directory"),
        ("domains: [\"*.example.com\"]", "server.tls.acme.domains[0]"),
        ("domains: [\"10.0.0.1\"]", "server.tls.acme.domains[0]"),
        ("email: \"not an email\"", "server.tls.acme.email"),
        ("directory_ca_file: /nonexistent/ca.pem", "server.tls.acme.directory_ca_file"),
    ];
    for (change, path) in cases {
        let key = change.split(':').next().unwrap();
        let mut acme =
            vec!["directory: \"https://127.0.0.1:14000/dir\"".to_owned(), "domains: [example.com]".to_owned()];
        acme.retain(|l| !l.starts_with(key));
        acme.push(change.to_owned());
        let yaml = format!(
            "server:\n  tls:\n    listen: \"127.0.0.1:0\"\n    acme: {{ {} }}\nroutes:\n  - {{ path: /, backend: \"http://127.0.0.1:1\" }}\n",
            acme.join(", ")
        );
        let err = TestGateway::start(&yaml).err().unwrap_or_else(|| panic!("accepted: {yaml}")).to_string();
        assert!(err.contains(path), "{change}: {err}");
    }
    // A listener that requires client certificates cannot answer TLS-ALPN-01.
    let yaml = "server:\n  tls:\n    listen: \"127.0.0.1:0\"\n    client_auth: { mode: require, ca_file: /nonexistent }\n    acme: { directory: \"https://127.0.0.1:14000/dir\", domains: [example.com] }\nroutes:\n  - { path: /, backend: \"http://127.0.0.1:1\" }\n";
    let err = TestGateway::start(yaml).err().expect("refused").to_string();
    assert!(err.contains("server.tls.acme.challenge"), "{err}");
}

/// The new input, `/.well-known/acme-challenge/TOKEN` on the plain listener: while no order is
/// pending, or for a token no order gave, the gateway answers nothing of its own — the request
/// is routed like any other (a backend doing its own ACME still can), and no key
/// authorization, served certificate or state-directory content comes back.
#[tokio::test]
async fn unknown_challenge_tokens_are_ordinary_requests() {
    let backend = MockServer::start("b0");
    let (http_port, tls_port) = (free_port(), free_port());
    let state = tempfile::tempdir().unwrap();
    // A directory nobody listens on: orders fail, so no challenge is ever pending.
    let yaml = format!(
        "admin: {{ listen: \"127.0.0.1:0\", token: t0ken }}\nserver:\n  listen: \"127.0.0.1:{http_port}\"\n  tls:\n    listen: \"127.0.0.1:{tls_port}\"\n    acme: {{ directory: \"https://127.0.0.1:9/dir\", domains: [localhost], state_dir: {:?}, challenge: http-01 }}\nroutes:\n  - {{ path: /, backend: \"{}\" }}\n",
        state.path().display().to_string(),
        backend.url()
    );
    let gw = start(&yaml);
    for token in ["abc", "..%2f..%2facme", "", "account.key.der"] {
        let url = gw.url(&format!("/.well-known/acme-challenge/{token}"));
        let resp = client().get(&url).send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        // Forwarded (the mock's 404 or echo) or refused by the normalisation policy: never an
        // answer of the gateway's own with a key authorization.
        assert!(matches!(status, 200 | 400 | 404), "{token}: {status} {body}");
        assert!(!body.contains("PRIVATE KEY") && !body.contains("BEGIN CERTIFICATE"), "{token}: {body}");
    }
    wait_until("the failed order", Duration::from_secs(20), async || orders(&gw, "failed").await >= 1.0).await;
    // The stand-in stays served.
    assert_eq!(acme_certificate(&gw).await["source"], "self-signed");
    assert!(backend.hits() >= 1, "the challenge paths were routed to the backend");
}
