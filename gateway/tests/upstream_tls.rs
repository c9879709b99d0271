//! `https://` backends: the gateway verifies their certificates (an upstream's CA bundle, or the
//! system's roots), and a certificate it cannot trust — unknown CA, expired, another host's — is
//! a 502 that says which, counted in `rustygate_upstream_tls_errors_total` and logged; health
//! checks go over TLS too. The backends are the mock backend serving HTTPS with certificates of
//! a throwaway CA.

mod common;

use std::{path::PathBuf, time::Duration};

use common::{pki::Pki, *};
use mock_backends::MockOptions;

/// A mock backend serving HTTPS with `pair`.
fn https_backend(name: &str, pair: (PathBuf, PathBuf)) -> MockServer {
    MockServer::start_with(MockOptions { name: name.into(), tls: Some(pair), ..Default::default() }).unwrap()
}

/// A gateway whose upstream `up` has `backend`, with `tls` (YAML flow) as its TLS settings.
fn gateway_to(backend: &MockServer, tls: &str, extra: &str) -> TestGateway {
    let yaml = format!(
        "upstreams:\n  up:\n    backends: [ {{ url: \"{}\" }} ]\n{tls}{extra}routes:\n  - {{ path: /, upstream: up }}\n",
        backend.url()
    );
    TestGateway::start(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn ca_of(pki: &Pki) -> String {
    format!("    tls: {{ ca_file: {:?} }}\n", pki.path("ca.pem").display().to_string())
}

#[tokio::test]
async fn an_https_backend_signed_by_the_upstreams_ca_is_served() {
    let pki = Pki::new();
    let backend = https_backend("b0", pki.signed("ca", "backend", "subjectAltName=IP:127.0.0.1\n", 2));
    assert!(backend.url().starts_with("https://"));
    let gw = gateway_to(&backend, &ca_of(&pki), "");
    for _ in 0..3 {
        let resp = client().get(gw.url("/echo?x=1")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let echo: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(echo["uri"], "/echo?x=1");
    }
    assert_eq!(backend.hits(), 3);
}

#[tokio::test]
async fn an_untrusted_backend_certificate_is_a_502_that_says_why() {
    let pki = Pki::new();
    pki.another_ca("strangers");
    let impostor = Pki::new();
    let cases = [
        // Signed by a CA the upstream does not trust.
        ("unknown_ca", pki.signed("strangers", "stranger", "subjectAltName=IP:127.0.0.1\n", 2), ca_of(&pki)),
        // Expired yesterday.
        ("certificate_expired", pki.signed("ca", "expired", "subjectAltName=IP:127.0.0.1\n", -1), ca_of(&pki)),
        // Valid, but for another host.
        ("wrong_host", pki.signed("ca", "elsewhere", "subjectAltName=DNS:elsewhere.test\n", 2), ca_of(&pki)),
        // An impostor CA with the trusted CA's very name: its signature does not verify.
        ("bad_certificate", impostor.signed("ca", "impostor", "subjectAltName=IP:127.0.0.1\n", 2), ca_of(&pki)),
        // No ca_file: the system's roots, which do not hold the test CA.
        ("unknown_ca", pki.signed("ca", "system", "subjectAltName=IP:127.0.0.1\n", 2), String::new()),
    ];
    for (reason, pair, tls) in cases {
        let backend = https_backend("b0", pair);
        let gw = gateway_to(&backend, &tls, "");
        let resp = client().get(gw.url("/echo")).send().await.unwrap();
        assert_eq!(resp.status(), 502, "{reason}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "bad_gateway", "{reason}: {body}");
        assert!(body["message"].as_str().unwrap().contains(reason), "{reason}: {body}");
        let m = scrape(&gw).await;
        assert_eq!(metric(&m, "rustygate_upstream_tls_errors_total", &[("upstream", "up"), ("reason", reason)]), 1.0);
        assert_eq!(
            metric(&m, "rustygate_backend_failures_total", &[("upstream", "up"), ("reason", "tls_error")]),
            1.0,
            "{reason}: a refused certificate is the backend's failure"
        );
        assert_eq!(backend.hits(), 0, "{reason}: nothing was sent to a backend that could not be trusted");
    }
}

#[tokio::test]
async fn health_checks_go_over_tls_with_the_upstreams_settings() {
    let pki = Pki::new();
    pki.another_ca("strangers");
    let good = https_backend("good", pki.signed("ca", "good", "subjectAltName=IP:127.0.0.1\n", 2));
    let bad = https_backend("bad", pki.signed("strangers", "bad", "subjectAltName=IP:127.0.0.1\n", 2));
    let yaml = format!(
        "upstreams:\n  up:\n    backends: [ {{ url: \"{}\" }}, {{ url: \"{}\" }} ]\n{}    health_check: {{ path: /health, interval: 200ms, timeout: 150ms, unhealthy_threshold: 1 }}\nroutes:\n  - {{ path: /, upstream: up }}\n",
        good.url(),
        bad.url(),
        ca_of(&pki)
    );
    let gw = TestGateway::start(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let up = |label: String| {
        let gw = &gw;
        async move { metric(&scrape(gw).await, "rustygate_backend_up", &[("upstream", "up"), ("backend", &label)]) }
    };
    wait_until("the untrusted backend out of rotation", Duration::from_secs(10), async || up(bad.url()).await == 0.0)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(up(good.url()).await, 1.0, "the trusted backend passes its checks over TLS");
    for _ in 0..4 {
        assert_eq!(client().get(gw.url("/echo")).send().await.unwrap().status(), 200);
    }
    assert_eq!(bad.hits(), 0);
}

#[test]
fn a_bad_upstream_ca_file_is_a_located_config_error() {
    let pki = Pki::new();
    let not_pem = pki.path("not.pem");
    std::fs::write(&not_pem, "nope\n").unwrap();
    let yaml = format!(
        "upstreams:\n  up:\n    backends: [ {{ url: \"https://127.0.0.1:1\" }} ]\n    tls: {{ ca_file: {:?} }}\nroutes:\n  - {{ path: /, upstream: up }}\n",
        not_pem.display().to_string()
    );
    let err = TestGateway::start(&yaml).err().expect("refused").to_string();
    assert!(err.contains("upstreams.up.tls.ca_file") && err.contains("no PEM"), "{err}");
}

#[tokio::test]
async fn a_backend_that_requires_a_client_certificate_gets_the_gateways() {
    let pki = Pki::new();
    let gateways = pki.another_ca("gateways");
    let gateway_cert = pki.client("gateways", "gateway", &["DNS:gateway.test"]);
    let backend = MockServer::start_with(MockOptions {
        name: "b0".into(),
        tls: Some(pki.signed("ca", "backend", "subjectAltName=IP:127.0.0.1\n", 2)),
        tls_client_ca: Some(gateways),
        ..Default::default()
    })
    .unwrap();
    // Without a client certificate the backend refuses the handshake: a 502, nothing sent.
    let gw = gateway_to(&backend, &ca_of(&pki), "");
    let resp = client().get(gw.url("/echo")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(metric(&scrape(&gw).await, "rustygate_backend_failures_total", &[("reason", "tls_error")]), 1.0);
    // With the gateway's certificate it is served.
    let tls = format!(
        "    tls: {{ ca_file: {:?}, cert_file: {:?}, key_file: {:?} }}\n",
        pki.path("ca.pem").display().to_string(),
        gateway_cert.0.display().to_string(),
        gateway_cert.1.display().to_string()
    );
    let gw = gateway_to(&backend, &tls, "");
    let resp = client().get(gw.url("/echo")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(backend.hits(), 1);
    // A certificate without its key is a located configuration error.
    let yaml = format!(
        "upstreams:\n  up:\n    backends: [ {{ url: \"{}\" }} ]\n    tls: {{ cert_file: {:?} }}\nroutes:\n  - {{ path: /, upstream: up }}\n",
        backend.url(),
        gateway_cert.0.display().to_string()
    );
    let err = TestGateway::start(&yaml).err().expect("refused").to_string();
    assert!(err.contains("upstreams.up.tls.key_file") && err.contains("needs its key_file"), "{err}");
}

/// The alternative forwarding clients (`server.upstream_client: awc` or `reqwest`) apply the
/// same upstream TLS settings: trusted through `ca_file`, refused without it.
#[tokio::test]
async fn the_alternative_clients_use_the_upstreams_tls_settings_too() {
    let pki = Pki::new();
    let backend = https_backend("b0", pki.signed("ca", "backend", "subjectAltName=IP:127.0.0.1\n", 2));
    for (i, name) in ["reqwest", "awc"].into_iter().enumerate() {
        let choice = format!("server: {{ upstream_client: {name} }}\n");
        let gw = gateway_to(&backend, &ca_of(&pki), &choice);
        assert_eq!(client().get(gw.url("/echo")).send().await.unwrap().status(), 200, "{name}");
        let gw = gateway_to(&backend, "", &choice);
        assert_eq!(
            client().get(gw.url("/echo")).send().await.unwrap().status(),
            502,
            "{name}: the system's roots do not hold the test CA"
        );
        assert_eq!(backend.hits(), i as u64 + 1, "{name}");
    }
}

/// `tls.server_name`: backends reached by an address their certificate does not hold are
/// verified for the configured name instead — by every forwarding client and by the health
/// checks — and a certificate for another name is still refused.
#[tokio::test]
async fn server_name_verifies_backends_for_the_configured_name() {
    let pki = Pki::new();
    let backend = https_backend("b0", pki.signed("ca", "internal", "subjectAltName=DNS:backend.internal\n", 2));
    let ca = pki.path("ca.pem").display().to_string();
    // Without it: the URL's host (127.0.0.1) is not in the certificate.
    let gw = gateway_to(&backend, &ca_of(&pki), "");
    assert_eq!(client().get(gw.url("/echo")).send().await.unwrap().status(), 502);
    let m = scrape(&gw).await;
    assert_eq!(metric(&m, "rustygate_upstream_tls_errors_total", &[("upstream", "up"), ("reason", "wrong_host")]), 1.0);
    let named = format!(
        "    tls: {{ ca_file: {ca:?}, server_name: backend.internal }}\n    health_check: {{ path: /health, interval: 300ms, timeout: 290ms, unhealthy_threshold: 1 }}\n"
    );
    for client_choice in ["hyper", "awc", "reqwest"] {
        let gw = gateway_to(&backend, &named, &format!("server: {{ upstream_client: {client_choice} }}\n"));
        for _ in 0..3 {
            assert_eq!(client().get(gw.url("/echo")).send().await.unwrap().status(), 200, "{client_choice}");
        }
        // Probes that failed verification would have taken the only backend out (503): let
        // three of them run.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let m = scrape(&gw).await;
        assert_eq!(metric(&m, "rustygate_backend_up", &[("upstream", "up")]), 1.0, "{client_choice}: health checks");
        assert_eq!(client().get(gw.url("/echo")).send().await.unwrap().status(), 200, "{client_choice}");
    }
    // A name the certificate does not hold is refused as before.
    let other = format!("    tls: {{ ca_file: {ca:?}, server_name: other.internal }}\n");
    let gw = gateway_to(&backend, &other, "");
    assert_eq!(client().get(gw.url("/echo")).send().await.unwrap().status(), 502);
    // Not a name at all: a located config error.
    let bad = format!("    tls: {{ ca_file: {ca:?}, server_name: \"not a name\" }}\n");
    let yaml = format!(
        "upstreams:\n  up:\n    backends: [ {{ url: \"{}\" }} ]\n{bad}routes:\n  - {{ path: /, upstream: up }}\n",
        backend.url()
    );
    let err = TestGateway::start(&yaml).err().expect("refused").to_string();
    assert!(err.contains("upstreams.up.tls.server_name"), "{err}");
}

/// An upstream's CA bundle replaced on disk, its configuration unchanged: the next reload (the
/// watcher's) rebuilds the upstream with it.
#[tokio::test]
async fn a_replaced_upstream_ca_bundle_is_used_after_a_reload() {
    let pki = Pki::new();
    let other_ca = pki.another_ca("other");
    let backend = https_backend("b0", pki.signed("other", "b", "subjectAltName=IP:127.0.0.1\n", 2));
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("upstream-ca.pem");
    // The wrong CA first: the backend's certificate is refused.
    std::fs::copy(pki.path("ca.pem"), &ca_file).unwrap();
    let yaml = format!(
        "server: {{ listen: 127.0.0.1:0, workers: 2 }}\nadmin: {{ listen: 127.0.0.1:0 }}\nupstreams:\n  up:\n    backends: [ {{ url: \"{}\" }} ]\n    tls: {{ ca_file: {:?} }}\nroutes:\n  - {{ path: /, upstream: up }}\n",
        backend.url(),
        ca_file.display().to_string()
    );
    let config_path = dir.path().join("gateway.yaml");
    std::fs::write(&config_path, &yaml).unwrap();
    let gw = TestGateway::start(&yaml).unwrap();
    gw.gateway.config_path.set(config_path.clone()).unwrap();
    let _watcher = rustygate::config_watch::watch(&gw.gateway, &config_path).expect("watching");
    assert_eq!(client().get(gw.url("/echo")).send().await.unwrap().status(), 502);
    // The right CA, by rename over the file.
    let staged = dir.path().join("staged.pem");
    std::fs::copy(&other_ca, &staged).unwrap();
    std::fs::rename(&staged, &ca_file).unwrap();
    wait_until("the new CA bundle", Duration::from_secs(10), async || {
        client().get(gw.url("/echo")).send().await.unwrap().status() == 200
    })
    .await;
    let m = scrape(&gw).await;
    assert_eq!(metric(&m, "rustygate_config_reloads_total", &[("result", "success")]), 1.0, "{m}");
}
