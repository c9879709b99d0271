//! JWT auth over real sockets: valid tokens reach the backend with their claim headers (forged
//! copies stripped); every kind of bad token is a 401 that never reaches the backend and is
//! counted once by reason; every algorithm family with PEM keys; JWKS rotation from a file and
//! from a URL (refetch on unknown `kid`, rate-limited, last good set kept on failure); tokens in
//! cookies and query parameters.

mod common;

use std::{
    io::{Read, Write},
    net::TcpListener,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, jwk::Jwk};
use serde_json::{Value, json};

const SECRET: &str = "test-secret-0123456789abcdef0123456789";
const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn key_file(name: &str) -> String {
    format!("{KEYS}/{name}")
}

fn claims(extra: Value) -> Value {
    let mut c = json!({ "sub": "alice", "iss": "https://issuer.test", "aud": "api", "exp": now() + 600 });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn hs256(claims: &Value, secret: &[u8]) -> String {
    encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn signed(alg: Algorithm, private_pem: &str, kid: Option<&str>, claims: &Value) -> String {
    let pem = std::fs::read(key_file(private_pem)).unwrap();
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .unwrap();
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, &key).unwrap()
}

/// A JWKS document with the public halves of `(private key file, kid)` RSA pairs.
fn jwks(keys: &[(&str, &str)]) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(file, kid)| {
            let pem = std::fs::read(key_file(file)).unwrap();
            let enc = EncodingKey::from_rsa_pem(&pem).unwrap();
            let mut jwk = Jwk::from_encoding_key(&enc, Algorithm::RS256).unwrap();
            jwk.common.key_id = Some(kid.to_string());
            serde_json::to_value(jwk).unwrap()
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

fn config() -> String {
    format!(
        r#"
auth:
  hs:
    algorithms: [HS256]
    secret: "{SECRET}"
    issuer: https://issuer.test
    audience: [api, other]
    leeway: 5s
    forward_claims: {{ sub: X-User-Id, role: X-User-Role }}
    forward_authorization: false
    cookie: session
    query_param: access_token
  rs:
    algorithms: [RS256]
    public_key_file: "{KEYS}/rsa.pub"
  ps:
    algorithms: [PS256]
    public_key_file: "{KEYS}/rsa.pub"
  es:
    algorithms: [ES256]
    public_key_file: "{KEYS}/ec.pub"
  ed:
    algorithms: [EdDSA]
    public_key_file: "{KEYS}/ed.pub"
routes:
  - {{ name: hs, path: /hs, backend: "{{b0}}", auth: hs }}
  - {{ name: rs, path: /rs, backend: "{{b0}}", auth: rs }}
  - {{ name: ps, path: /ps, backend: "{{b0}}", auth: ps }}
  - {{ name: es, path: /es, backend: "{{b0}}", auth: es }}
  - {{ name: ed, path: /ed, backend: "{{b0}}", auth: ed }}
  - {{ name: open, path: /open, backend: "{{b0}}" }}
"#
    )
}

async fn get(gw: &TestGateway, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut r = client().get(gw.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn a_valid_token_reaches_the_backend_with_its_claims_and_no_forgeries() {
    let b = MockServer::start("b0");
    let gw = gateway(&config(), &[&b]);
    let token = hs256(&claims(json!({ "role": "admin", "name": "José" })), SECRET.as_bytes());
    let resp = client()
        .get(gw.url("/hs/me?x=1"))
        .bearer_auth(&token)
        .header("x-user-id", "mallory")
        .header("X-User-Role", "root")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echoed(&echo, "x-user-id"), ["alice"], "the client's copy is replaced, not appended to");
    assert_eq!(echoed(&echo, "x-user-role"), ["admin"]);
    assert!(echoed(&echo, "authorization").is_empty(), "forward_authorization: false strips the token");

    // A route without auth is untouched, and a policy that forwards Authorization keeps it.
    let open = get(&gw, "/open", Some("anything")).await.json::<Value>().await.unwrap();
    assert_eq!(echoed(&open, "authorization"), ["Bearer anything"]);
    let rs = signed(Algorithm::RS256, "rsa.key", None, &claims(json!({})));
    let echo = get(&gw, "/rs", Some(&rs)).await.json::<Value>().await.unwrap();
    assert_eq!(echoed(&echo, "authorization"), [format!("Bearer {rs}")]);
}

#[tokio::test]
async fn every_bad_token_is_refused_before_the_backend_and_counted_once() {
    let b = MockServer::start("b0");
    let gw = gateway(&config(), &[&b]);
    let rsa_public = std::fs::read(key_file("rsa.pub")).unwrap();
    let none = {
        use base64::Engine;
        let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&claims(json!({}))))
    };
    // (route, Authorization value or None, expected reason)
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("/hs", None, "missing"),
        ("/hs", Some("Basic YWxpY2U6cHc=".into()), "malformed"),
        ("/hs", Some("Bearer not-a-jwt".into()), "malformed"),
        ("/hs", Some(format!("Bearer {}", hs256(&claims(json!({"exp": now() - 60})), SECRET.as_bytes()))), "expired"),
        (
            "/hs",
            Some(format!("Bearer {}", hs256(&claims(json!({"nbf": now() + 300})), SECRET.as_bytes()))),
            "not_yet_valid",
        ),
        (
            "/hs",
            Some(format!("Bearer {}", hs256(&claims(json!({})), b"another-secret-0123456789abcdef0123"))),
            "bad_signature",
        ),
        (
            "/hs",
            Some(format!("Bearer {}", hs256(&claims(json!({"iss": "https://evil.test"})), SECRET.as_bytes()))),
            "wrong_issuer",
        ),
        (
            "/hs",
            Some(format!("Bearer {}", hs256(&claims(json!({"aud": "payments"})), SECRET.as_bytes()))),
            "wrong_audience",
        ),
        ("/hs", Some(format!("Bearer {}", hs256(&claims(json!({"exp": null})), SECRET.as_bytes()))), "missing_claim"),
        // `null` is not a value: with an issuer configured, `iss` is required.
        (
            "/hs",
            Some(format!(
                "Bearer {}",
                hs256(&json!({"sub": "a", "aud": "api", "exp": now() + 60, "iss": null}), SECRET.as_bytes())
            )),
            "missing_claim",
        ),
        ("/hs", Some(format!("Bearer {}", hs256(&claims(json!({"exp": "soon"})), SECRET.as_bytes()))), "invalid_claim"),
        ("/hs", Some(format!("Bearer {}", hs256(&claims(json!({"aud": 5})), SECRET.as_bytes()))), "invalid_claim"),
        (
            "/hs",
            Some(format!("Bearer {}", hs256(&claims(json!({"aud": {"x": 1}})), SECRET.as_bytes()))),
            "invalid_claim",
        ),
        ("/hs", Some(format!("Bearer {}", hs256(&claims(json!({"iss": 7})), SECRET.as_bytes()))), "invalid_claim"),
        (
            "/hs",
            Some(format!("Bearer {}", hs256(&claims(json!({"aud": ["payments"]})), SECRET.as_bytes()))),
            "wrong_audience",
        ),
        ("/hs", Some(format!("Bearer {none}")), "algorithm_not_allowed"),
        // HS/RS confusion: an HS256 token whose "secret" is the RS256 public key.
        ("/rs", Some(format!("Bearer {}", hs256(&claims(json!({})), &rsa_public))), "algorithm_not_allowed"),
        // An RS256 token on an HS256 route.
        (
            "/hs",
            Some(format!("Bearer {}", signed(Algorithm::RS256, "rsa.key", None, &claims(json!({}))))),
            "algorithm_not_allowed",
        ),
    ];
    let before = scrape(&gw).await;
    let hits_before = b.hits();
    for (path, auth, reason) in &cases {
        let mut r = client().get(gw.url(path));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        let resp = r.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{reason}");
        let challenge = resp.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.starts_with("Bearer realm=\"rustygate\""), "{reason}: {challenge}");
        if *reason != "missing" {
            assert!(challenge.contains("error_description=\""), "{reason}: {challenge}");
        }
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["status"], 401);
        assert_eq!(body["error"], "unauthorized");
        assert!(body["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    }
    assert_eq!(b.hits(), hits_before, "no rejected request reached the backend");
    let after = scrape(&gw).await;
    let total = |text: &str| metric(text, "rustygate_auth_rejected_total", &[]);
    assert_eq!(total(&after) - total(&before), cases.len() as f64, "one count per rejection");
    for (path, _, reason) in &cases {
        let route = &path[1..];
        let expected = cases.iter().filter(|(p, _, r)| p == path && r == reason).count() as f64;
        let labels = [("route", route), ("reason", *reason)];
        assert_eq!(metric(&after, "rustygate_auth_rejected_total", &labels), expected, "{route} {reason}");
    }
    // Series exist at zero before any rejection of that kind.
    assert!(after.contains(r#"rustygate_auth_rejected_total{reason="unknown_key",route="hs"} 0"#));
}

#[tokio::test]
async fn every_algorithm_family_verifies_with_its_pem_key() {
    let b = MockServer::start("b0");
    let gw = gateway(&config(), &[&b]);
    let c = claims(json!({}));
    for (path, alg, key) in [
        ("/rs", Algorithm::RS256, "rsa.key"),
        ("/ps", Algorithm::PS256, "rsa.key"),
        ("/es", Algorithm::ES256, "ec.key"),
        ("/ed", Algorithm::EdDSA, "ed.key"),
    ] {
        let resp = get(&gw, path, Some(&signed(alg, key, None, &c))).await;
        assert_eq!(resp.status(), 200, "{path}");
        // The same family signed by another key is refused.
        if key == "rsa.key" {
            let forged = signed(alg, "rsa2.key", None, &c);
            assert_eq!(get(&gw, path, Some(&forged)).await.status(), 401, "{path} with another key");
        }
    }
    // A `kid` in the header does not matter to a static key.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("some-kid".into());
    let with_kid = encode(&header, &c, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
    assert_eq!(get(&gw, "/hs", Some(&with_kid)).await.status(), 200);
    assert_eq!(get(&gw, "/rs", Some(&signed(Algorithm::RS256, "rsa.key", Some("k1"), &c))).await.status(), 200);
    // An audience list is accepted when one of its members is.
    let listed = hs256(&claims(json!({"aud": ["payments", "api"]})), SECRET.as_bytes());
    assert_eq!(get(&gw, "/hs", Some(&listed)).await.status(), 200);
    // RS256 and PS256 share the key but not the pin.
    let ps = signed(Algorithm::PS256, "rsa.key", None, &c);
    assert_eq!(get(&gw, "/rs", Some(&ps)).await.status(), 401);
}

#[tokio::test]
async fn tokens_are_found_in_the_cookie_and_the_query_which_is_cleaned() {
    let b = MockServer::start("b0");
    let gw = gateway(&config(), &[&b]);
    let token = hs256(&claims(json!({})), SECRET.as_bytes());
    let resp =
        client().get(gw.url("/hs/c")).header("cookie", format!("theme=dark; session={token}")).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    let resp = client().get(gw.url(&format!("/hs/q?a=1&access_token={token}&b=%2Fx"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echo["query"], "a=1&b=%2Fx", "the token is cut out, the rest byte for byte");
    let resp = client().get(gw.url(&format!("/hs/q?access_token={token}"))).send().await.unwrap();
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echo["uri"], "/hs/q", "no dangling `?`");
    assert_eq!(echoed(&echo, "x-user-id"), ["alice"]);

    // A token parameter is never forwarded, even when the header carried the token used.
    let resp = client().get(gw.url("/hs/q?access_token=leak&b=2")).bearer_auth(&token).send().await.unwrap();
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echo["query"], "b=2");

    // The header wins over the cookie: a bad header is not rescued by a good cookie.
    let resp = client()
        .get(gw.url("/hs"))
        .bearer_auth("bad")
        .header("cookie", format!("session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

/// A tiny HTTP server answering every request with the current `body` (status 200, or 500
/// while `fail` is set), counting requests.
struct JwksServer {
    url: String,
    body: Arc<Mutex<(u16, String)>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    fn start(body: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new((200, body)));
        let hits = Arc::new(AtomicUsize::new(0));
        let (s, h) = (state.clone(), hits.clone());
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let mut buf = [0u8; 4096];
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = conn.read(&mut buf);
                h.fetch_add(1, Ordering::SeqCst);
                let (status, body) = s.lock().unwrap().clone();
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { url, body: state, hits }
    }

    fn set(&self, status: u16, body: String) {
        *self.body.lock().unwrap() = (status, body);
    }
}

/// A route `/api` behind an RS256 JWKS policy whose key source settings are `source`.
fn jwks_config(source: &str) -> String {
    format!(
        "auth:\n  idp: {{ algorithms: [RS256], {source} }}\nroutes:\n  - {{ name: api, path: /api, backend: \"{{b0}}\", auth: idp }}\n"
    )
}

#[tokio::test]
async fn a_jwks_url_is_refetched_on_an_unknown_kid_at_most_once_per_interval() {
    let b = MockServer::start("b0");
    let keys = JwksServer::start(jwks(&[("rsa.key", "k1")]));
    let gw =
        gateway(&jwks_config(&format!("jwks_url: \"{}\", jwks_refresh: 1h, jwks_min_refetch: 2s", keys.url)), &[&b]);
    let c = claims(json!({}));
    let k1 = signed(Algorithm::RS256, "rsa.key", Some("k1"), &c);
    // The first fetch happens at start; a request before it completes waits for it.
    assert_eq!(get(&gw, "/api", Some(&k1)).await.status(), 200);
    assert_eq!(keys.hits.load(Ordering::SeqCst), 1, "one fetch serves both the start and the request");

    // Rotation: the identity provider publishes k2 and signs with it.
    keys.set(200, jwks(&[("rsa.key", "k1"), ("rsa2.key", "k2")]));
    let k2 = signed(Algorithm::RS256, "rsa2.key", Some("k2"), &c);
    // Within jwks_min_refetch of the first fetch (at start, at most 2 s ago) the unknown kid is
    // refused without a fetch; past it, the next request with it triggers the refetch. A
    // refetch later than 3 s from here would be an interval of more than 2 s.
    wait_until(
        "an unknown kid to trigger a refetch once jwks_min_refetch passed",
        Duration::from_secs(3),
        async || {
            if get(&gw, "/api", Some(&k2)).await.status() == 200 {
                return true;
            }
            assert_eq!(keys.hits.load(Ordering::SeqCst), 1, "a refetch within jwks_min_refetch");
            false
        },
    )
    .await;
    assert_eq!(get(&gw, "/api", Some(&k2)).await.status(), 200, "an unknown kid triggers a refetch");
    assert_eq!(keys.hits.load(Ordering::SeqCst), 2);

    // A flood of unknown kids within the interval makes no further fetch.
    let k9 = signed(Algorithm::RS256, "rsa2.key", Some("k9"), &c);
    for _ in 0..20 {
        let resp = get(&gw, "/api", Some(&k9)).await;
        assert_eq!(resp.status(), 401);
        assert!(resp.headers()["www-authenticate"].to_str().unwrap().contains("unknown key"));
    }
    assert_eq!(keys.hits.load(Ordering::SeqCst), 2, "refetches are rate-limited");

    // A failing JWKS endpoint keeps the last good key set.
    keys.set(500, "oops".into());
    // The unknown kid is tried again once jwks_min_refetch has passed since the refetch above.
    wait_until("the unknown kid to be tried again after jwks_min_refetch", Duration::from_secs(3), async || {
        assert_eq!(get(&gw, "/api", Some(&k9)).await.status(), 401);
        let hits = keys.hits.load(Ordering::SeqCst);
        assert!(hits <= 3, "more than one refetch: {hits}");
        hits == 3
    })
    .await;
    assert_eq!(get(&gw, "/api", Some(&k9)).await.status(), 401);
    assert_eq!(keys.hits.load(Ordering::SeqCst), 3, "the unknown kid tried once more after the interval");
    assert_eq!(get(&gw, "/api", Some(&k1)).await.status(), 200, "k1 still verifies");
    assert_eq!(get(&gw, "/api", Some(&k2)).await.status(), 200, "k2 still verifies");
    let text = scrape(&gw).await;
    assert_eq!(metric(&text, "rustygate_jwks_fetches_total", &[("policy", "idp"), ("result", "success")]), 2.0);
    assert_eq!(metric(&text, "rustygate_jwks_fetches_total", &[("policy", "idp"), ("result", "error")]), 1.0);
}

#[tokio::test]
async fn a_jwks_file_rotation_is_picked_up_without_a_restart() {
    let b = MockServer::start("b0");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks(&[("rsa.key", "k1")])).unwrap();
    let source = format!("jwks_file: \"{}\", jwks_refresh: 300ms, jwks_min_refetch: 0s", file.display());
    let gw = gateway(&jwks_config(&source), &[&b]);
    let c = claims(json!({}));
    let k1 = signed(Algorithm::RS256, "rsa.key", Some("k1"), &c);
    let k2 = signed(Algorithm::RS256, "rsa2.key", Some("k2"), &c);
    assert_eq!(get(&gw, "/api", Some(&k1)).await.status(), 200);
    assert_eq!(get(&gw, "/api", Some(&k2)).await.status(), 401);

    // Add k2 (an unknown kid rereads the file at once) ...
    std::fs::write(&file, jwks(&[("rsa.key", "k1"), ("rsa2.key", "k2")])).unwrap();
    assert_eq!(get(&gw, "/api", Some(&k2)).await.status(), 200);
    // ... then retire k1: the schedule drops it, though no request asked.
    std::fs::write(&file, jwks(&[("rsa2.key", "k2")])).unwrap();
    wait_until("k1 to be retired", Duration::from_secs(5), async || get(&gw, "/api", Some(&k1)).await.status() == 401)
        .await;
    // A broken file keeps the last good set: once the schedule has read it (a failed fetch is
    // counted), k2 still verifies.
    let failed = async || metric(&scrape(&gw).await, "rustygate_jwks_fetches_total", &[("result", "error")]);
    assert_eq!(failed().await, 0.0);
    std::fs::write(&file, "{ not json").unwrap();
    wait_until("the schedule to read the broken file", Duration::from_secs(5), async || failed().await >= 1.0).await;
    assert_eq!(get(&gw, "/api", Some(&k2)).await.status(), 200);
}

#[tokio::test]
async fn defaults_put_every_route_behind_auth_unless_it_opts_out() {
    let b = MockServer::start("b0");
    let yaml = format!(
        "auth:\n  j: {{ algorithms: [HS256], secret: \"{SECRET}\" }}\ndefaults: {{ auth: j }}\nroutes:\n  - {{ name: api, path: /api, backend: \"{{b0}}\" }}\n  - {{ name: health, path: /health, backend: \"{{b0}}\", auth: none }}\n"
    );
    let gw = gateway(&yaml, &[&b]);
    assert_eq!(get(&gw, "/api", None).await.status(), 401, "the default applies");
    let token = hs256(&claims(json!({})), SECRET.as_bytes());
    assert_eq!(get(&gw, "/api", Some(&token)).await.status(), 200);
    assert_eq!(get(&gw, "/health", None).await.status(), 200, "auth: none opts out");
    let text = scrape(&gw).await;
    assert_eq!(metric(&text, "rustygate_auth_rejected_total", &[("route", "api"), ("reason", "missing")]), 1.0);
    assert!(
        !text.contains(r#"route="health""#)
            || !text.contains(r#"rustygate_auth_rejected_total{reason="missing",route="health"}"#)
    );
}

#[tokio::test]
async fn a_cached_token_still_expires_on_time() {
    let b = MockServer::start("b0");
    let yaml = format!(
        "auth:\n  short: {{ algorithms: [HS256], secret: \"{SECRET}\", leeway: 0s }}\nroutes:\n  - {{ name: api, path: /api, backend: \"{{b0}}\", auth: short }}\n"
    );
    let gw = gateway(&yaml, &[&b]);
    let exp = now() + 2;
    let token = hs256(&json!({ "sub": "a", "exp": exp }), SECRET.as_bytes());
    for _ in 0..3 {
        assert_eq!(get(&gw, "/api", Some(&token)).await.status(), 200, "verified once, then from the cache");
    }
    // Kept: time passing `exp` is the scenario. `exp` is in whole seconds and holds through its
    // own second (leeway 0), so the token is expired once the next second has begun.
    let expired = UNIX_EPOCH + Duration::from_secs(exp as u64 + 1) + Duration::from_millis(100);
    tokio::time::sleep(expired.duration_since(SystemTime::now()).unwrap_or_default()).await;
    let resp = get(&gw, "/api", Some(&token)).await;
    assert_eq!(resp.status(), 401, "the cache honours exp");
    assert!(resp.headers()["www-authenticate"].to_str().unwrap().contains("expired"));
}

#[test]
fn bad_key_files_are_config_errors_not_crashes() {
    let missing = format!(
        "auth: {{ a: {{ algorithms: [RS256], public_key_file: \"{KEYS}/nope.pub\" }} }}\nroutes: [ {{ path: /, backend: \"http://127.0.0.1:1\", auth: a }} ]"
    );
    let e = TestGateway::start(&missing).err().expect("rejected").to_string();
    assert!(e.contains("auth.a: cannot read public_key_file"), "{e}");
    let wrong = format!(
        "auth: {{ a: {{ algorithms: [ES256], public_key_file: \"{KEYS}/README.md\" }} }}\nroutes: [ {{ path: /, backend: \"http://127.0.0.1:1\", auth: a }} ]"
    );
    let e = TestGateway::start(&wrong).err().expect("rejected").to_string();
    assert!(e.contains("is not a PEM public key for ES256"), "{e}");
}
