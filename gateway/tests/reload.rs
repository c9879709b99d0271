//! Configuration reload over real sockets: `POST /admin/reload` re-reads the file (token
//! required); an identical file changes nothing; a file replaced by rename adds a route; invalid
//! YAML, an unknown upstream and a start-up-only change are refused while the old routes keep
//! serving; rate-limit buckets and upstream pools of unchanged definitions survive reloads; the
//! directory watch picks up a rename-over edit; and clients see no failed request while the
//! configuration is swapped 20 times under load.

mod common;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use common::*;
use serde_json::Value;

const TOKEN: &str = "reload-test-token";

/// A gateway started from a config file (listeners on ephemeral ports), so reloads re-read it.
struct FileGateway {
    gw: TestGateway,
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl FileGateway {
    fn start(routes_yaml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rustygate.yaml");
        write_by_rename(&path, &config_text(routes_yaml));
        let config = rustygate::config::load_file(&path).expect("valid test config");
        let gw = TestGateway::start_config(config).expect("gateway starts");
        gw.gateway.config_path.set(path.clone()).unwrap();
        Self { gw, _dir: dir, path }
    }

    /// Replaces the file the way editors and Kubernetes do: write a temporary file, rename it over.
    fn edit(&self, routes_yaml: &str) {
        write_by_rename(&self.path, &config_text(routes_yaml));
    }

    async fn reload(&self, token: Option<&str>) -> (u16, Value) {
        let mut req = client().post(self.gw.admin_url("/admin/reload"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn reloads(&self, result: &str) -> f64 {
        metric(&scrape(&self.gw).await, "rustygate_config_reloads_total", &[("result", result)])
    }
}

/// The test's fixed part (ephemeral listeners, admin token) around `routes_yaml`.
fn config_text(routes_yaml: &str) -> String {
    format!(
        "server: {{ listen: \"127.0.0.1:0\", workers: 2 }}\nadmin: {{ listen: \"127.0.0.1:0\", token: {TOKEN} }}\n\
         log: {{ access_log: false }}\n{routes_yaml}"
    )
}

fn write_by_rename(path: &Path, text: &str) {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn status(url: &str) -> u16 {
    client().get(url).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn admin_reload_needs_the_token_and_an_identical_file_changes_nothing() {
    let backend = MockServer::start("b");
    let fg = FileGateway::start(&format!("routes:\n  - {{ name: a, path: /a, backend: \"{}\" }}\n", backend.url()));
    for token in [None, Some("wrong-token")] {
        let (code, _) = fg.reload(token).await;
        assert_eq!(code, 401, "token {token:?}");
    }
    let (code, body) = fg.reload(Some(TOKEN)).await;
    assert_eq!(
        (code, &body["status"], &body["generation"], &body["changed"]),
        (200, &"ok".into(), &1.into(), &false.into())
    );
    assert_eq!(fg.reloads("unchanged").await, 1.0);
    assert_eq!(fg.reloads("success").await, 0.0);
    assert_eq!(metric(&scrape(&fg.gw).await, "rustygate_config_generation", &[]), 1.0);

    // Rename-over edit adding a route.
    fg.edit(&format!(
        "routes:\n  - {{ name: a, path: /a, backend: \"{0}\" }}\n  - {{ name: b, path: /b, backend: \"{0}\" }}\n",
        backend.url()
    ));
    assert_eq!(status(&fg.gw.url("/b/echo")).await, 404, "not before the reload");
    let (code, body) = fg.reload(Some(TOKEN)).await;
    assert_eq!((code, &body["generation"], &body["changed"]), (200, &2.into(), &true.into()), "{body}");
    assert_eq!(status(&fg.gw.url("/b/echo")).await, 200);
    assert_eq!(status(&fg.gw.url("/a/echo")).await, 200);
    let text = scrape(&fg.gw).await;
    assert_eq!(metric(&text, "rustygate_config_generation", &[]), 2.0);
    assert_eq!(metric(&text, "rustygate_config_reloads_total", &[("result", "success")]), 1.0);
    let last = metric(&text, "rustygate_config_last_reload_success_timestamp_seconds", &[]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - last).abs() < 60.0, "last success {last}, now {now}");
}

#[tokio::test]
async fn invalid_configs_are_refused_and_the_old_one_keeps_serving() {
    let backend = MockServer::start("b");
    let good = format!("routes:\n  - {{ name: a, path: /a, backend: \"{}\" }}\n", backend.url());
    let fg = FileGateway::start(&good);

    // Broken YAML: the error has a location.
    fg.edit("routes:\n  - { name: a, path: /a, backend: \"http://127.0.0.1:1\"\n");
    let (code, body) = fg.reload(Some(TOKEN)).await;
    assert_eq!((code, &body["status"]), (422, &"error".into()), "{body}");
    assert!(body["errors"][0]["line"].as_u64().is_some(), "a located error: {body}");
    assert_eq!(status(&fg.gw.url("/a/echo")).await, 200, "the old config serves");

    // Valid YAML, unknown upstream.
    fg.edit("routes:\n  - { name: a, path: /a, upstream: nowhere }\n");
    let (code, body) = fg.reload(Some(TOKEN)).await;
    assert_eq!(code, 422, "{body}");
    let errors = body["errors"].to_string();
    assert!(errors.contains("nowhere") && errors.contains("routes[0].upstream"), "{errors}");
    assert_eq!(status(&fg.gw.url("/a/echo")).await, 200);

    // A start-up-only setting.
    write_by_rename(&fg.path, &config_text(&good).replace("workers: 2", "workers: 3"));
    let (code, body) = fg.reload(Some(TOKEN)).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["errors"][0]["path"], "server.workers", "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("restart"), "{body}");

    assert_eq!(fg.reloads("error").await, 3.0);
    assert_eq!(fg.reloads("success").await, 0.0);
    assert_eq!(metric(&scrape(&fg.gw).await, "rustygate_config_generation", &[]), 1.0);
    assert_eq!(status(&fg.gw.url("/a/echo")).await, 200);
}

#[tokio::test]
async fn rate_limit_buckets_of_an_unchanged_route_survive_reloads() {
    let backend = MockServer::start("b");
    let routes = |extra: &str| {
        format!(
            "rate_limits:\n  tight: {{ requests: 3, window: 1m }}\nroutes:\n  - {{ name: limited, path: /limited, backend: \"{0}\", rate_limit: tight }}\n{extra}",
            backend.url()
        )
    };
    let fg = FileGateway::start(&routes(""));
    let url = fg.gw.url("/limited/echo");
    for i in 0..3 {
        assert_eq!(status(&url).await, 200, "request {i}");
    }
    assert_eq!(status(&url).await, 429);
    for extra in [format!("  - {{ name: other, path: /other, backend: \"{}\" }}\n", backend.url()), String::new()] {
        fg.edit(&routes(&extra));
        let (code, body) = fg.reload(Some(TOKEN)).await;
        assert_eq!((code, &body["changed"]), (200, &true.into()), "{body}");
        assert_eq!(status(&url).await, 429, "the bucket was kept across the reload");
    }
    // An upstream whose definition did not change is the same pool (its health state with it).
    let pool = |fg: &FileGateway| {
        fg.gw.gateway.runtime.load().upstreams.iter().find(|u| &*u.name == "limited").cloned().unwrap()
    };
    let before = pool(&fg);
    fg.edit(&routes(&format!("  - {{ name: third, path: /third, backend: \"{}\" }}\n", backend.url())));
    assert_eq!(fg.reload(Some(TOKEN)).await.0, 200);
    assert!(Arc::ptr_eq(&before, &pool(&fg)), "the unchanged inline upstream was carried over");
    // A changed policy starts with fresh buckets.
    fg.edit(&routes("").replace("requests: 3", "requests: 4"));
    assert_eq!(fg.reload(Some(TOKEN)).await.0, 200);
    assert_eq!(status(&url).await, 200, "a new definition, new buckets");
}

#[tokio::test]
async fn reloads_under_load_fail_no_request() {
    let (b0, b1) = (MockServer::start("b0"), MockServer::start("b1"));
    // Both configurations keep route `limited` and its policy as they are.
    let limited = "rate_limits:\n  tight: { requests: 2, window: 1m }\n";
    let one = format!(
        "{limited}upstreams:\n  u: {{ backends: [ {{ url: \"{0}\" }}, {{ url: \"{1}\" }} ] }}\nroutes:\n  - {{ name: limited, path: /limited, backend: \"{0}\", rate_limit: tight }}\n  - {{ name: main, path: /, upstream: u }}\n",
        b0.url(),
        b1.url()
    );
    let two = format!(
        "{limited}upstreams:\n  u: {{ backends: [ {{ url: \"{0}\", weight: 3 }}, {{ url: \"{1}\" }} ] }}\nroutes:\n  - {{ name: limited, path: /limited, backend: \"{0}\", rate_limit: tight }}\n  - {{ name: main, path: /, upstream: u }}\n  - {{ name: extra, path: /extra, upstream: u }}\n",
        b0.url(),
        b1.url()
    );
    let fg = Arc::new(FileGateway::start(&one));
    let limited_url = fg.gw.url("/limited/echo");
    assert_eq!(status(&limited_url).await, 200);
    assert_eq!(status(&limited_url).await, 200);
    assert_eq!(status(&limited_url).await, 429);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let (url, stop, ok, failed) = (fg.gw.url("/echo"), stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let c = client();
                while !stop.load(Ordering::Relaxed) {
                    match c.get(&url).send().await {
                        Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    // Before each reload and after the last one, the clients get answers from the snapshot in
    // use (two per client on average): every swap happens under load, and load goes on after.
    let answered = || ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed);
    let load_goes_on = async |when: &str| {
        let before = answered();
        wait_until(&format!("answers {when}"), Duration::from_secs(10), async || answered() >= before + 40).await;
    };
    for i in 0..20 {
        load_goes_on(&format!("before reload {i}")).await;
        fg.edit(if i % 2 == 0 { &two } else { &one });
        let (code, body) = fg.reload(Some(TOKEN)).await;
        assert_eq!((code, &body["changed"]), (200, &true.into()), "reload {i}: {body}");
    }
    load_goes_on("after the last reload").await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("reloads under load: {ok} requests answered 200, {failed} failed, 20 reloads");
    assert_eq!(failed, 0, "{failed} failed of {}", ok + failed);
    assert!(ok > 200, "the clients kept sending: {ok}");
    assert_eq!(metric(&scrape(&fg.gw).await, "rustygate_config_generation", &[]), 21.0);
    assert_eq!(status(&limited_url).await, 429, "20 reloads did not reset the unchanged route's bucket");
}

#[tokio::test]
async fn a_file_replaced_by_rename_is_reloaded_by_the_watcher() {
    let backend = MockServer::start("b");
    let fg = FileGateway::start(&format!("routes:\n  - {{ name: a, path: /a, backend: \"{}\" }}\n", backend.url()));
    let _watcher = rustygate::config_watch::watch(&fg.gw.gateway, &fg.path).expect("watching");
    fg.edit(&format!(
        "routes:\n  - {{ name: a, path: /a, backend: \"{0}\" }}\n  - {{ name: b, path: /b, backend: \"{0}\" }}\n",
        backend.url()
    ));
    let took = wait_until("the new route to answer after the rename", Duration::from_secs(3), async || {
        status(&fg.gw.url("/b/echo")).await == 200
    })
    .await;
    eprintln!("watch: the new route answered {took:?} after the rename");

    // An invalid edit is refused by the watcher's reload too; the routes keep serving.
    fg.edit("routes: [ { name: a, path: /a, upstream: nowhere } ]\n");
    wait_until("the invalid edit to be seen", Duration::from_secs(3), async || fg.reloads("error").await >= 1.0).await;
    assert_eq!(status(&fg.gw.url("/b/echo")).await, 200);
    assert_eq!(metric(&scrape(&fg.gw).await, "rustygate_config_generation", &[]), 2.0);
}

/// Issue 14, defect 6: a replaced `public_key_file` is a changed policy: `POST /admin/reload`
/// applies it (the old key is no longer trusted), and the watcher picks it up by itself.
#[tokio::test]
async fn a_replaced_key_file_is_applied_by_reload_and_by_the_watcher() {
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");
    let sign = |private: &str| {
        let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
        let pem = std::fs::read(format!("{keys}/{private}")).unwrap();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &serde_json::json!({ "sub": "alice", "exp": exp }),
            &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
        )
        .unwrap()
    };
    let (old_token, new_token) = (sign("rsa.key"), sign("rsa2.key"));
    let b = MockServer::start("b0");
    let key_dir = tempfile::tempdir().unwrap();
    let key = key_dir.path().join("signing.pub");
    let put_key = |name: &str| {
        let tmp = key.with_extension("tmp");
        std::fs::copy(format!("{keys}/{name}"), &tmp).unwrap();
        std::fs::rename(&tmp, &key).unwrap();
    };
    put_key("rsa.pub");
    let routes = format!(
        "auth:\n  k: {{ algorithms: [RS256], public_key_file: \"{}\", token_cache: 0 }}\nroutes:\n  - {{ path: /api, backend: \"{}\", auth: k }}\n",
        key.display(),
        b.url()
    );
    let fg = FileGateway::start(&routes);
    let get = |token: String| {
        let url = fg.gw.url("/api/x");
        async move { client().get(url).bearer_auth(token).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(old_token.clone()).await, 200);
    assert_eq!(get(new_token.clone()).await, 401);

    put_key("rsa2.pub");
    let (code, body) = fg.reload(Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["changed"], true, "a replaced key is a change: {body}");
    assert_eq!(get(old_token.clone()).await, 401, "the revoked key is still trusted");
    assert_eq!(get(new_token.clone()).await, 200);

    // The watcher follows the key file's directory too (`watch` returns once the directories
    // are watched, so the replacement is seen).
    let _watcher = rustygate::config_watch::watch(&fg.gw.gateway, &fg.path).unwrap();
    put_key("rsa.pub");
    wait_until("the watcher to apply the replaced key", Duration::from_secs(10), async || {
        get(old_token.clone()).await == 200
    })
    .await;
    assert_eq!(get(new_token).await, 401);
}

/// A reload that removes an upstream retires its pool: the pool's health probes stop at once,
/// even while a request still running on the old snapshot (here: a reference held to it) keeps
/// the pool alive.
#[tokio::test]
async fn a_removed_upstreams_health_probes_stop_within_one_interval() {
    let (probed, kept) = (MockServer::start("probed"), MockServer::start("kept"));
    let yaml = |with_probed: bool| {
        let probed_upstream = if with_probed {
            format!(
                "  probed:\n    backends: [ {{ url: \"{}\" }} ]\n    health_check: {{ path: /echo, interval: 100ms, timeout: 100ms }}\n",
                probed.url()
            )
        } else {
            String::new()
        };
        // `kept`, unchanged by the reload, probes at the same interval: the test's clock.
        format!(
            "upstreams:\n{probed_upstream}  kept:\n    backends: [ {{ url: \"{}\" }} ]\n    health_check: {{ path: /echo, interval: 100ms, timeout: 100ms }}\nroutes:\n  - {{ path: /, upstream: kept }}\n",
            kept.url()
        )
    };
    let gw = TestGateway::start(&yaml(true)).unwrap();
    // Probing: the count grows.
    wait_until("health probes", Duration::from_secs(10), async || probed.hits() >= 3).await;
    let old_snapshot = gw.gateway.runtime.load_full();
    let config = rustygate::config::load_str(&yaml(false), "<test>").unwrap();
    let mut config = config;
    config.server.listen = gw.gateway.runtime.load().config.server.listen.clone();
    config.admin.listen = gw.gateway.runtime.load().config.admin.listen.clone();
    config.server.workers = gw.gateway.runtime.load().config.server.workers;
    assert!(gw.gateway.reload(config).unwrap().changed());
    let (at_reload, kept_at_reload) = (probed.hits(), kept.hits());
    // Five intervals later (five more probes of `kept`): at most the one probe that may have
    // been on the wire.
    wait_until("five more probes of the kept upstream", Duration::from_secs(10), async || {
        kept.hits() >= kept_at_reload + 5
    })
    .await;
    let later = probed.hits();
    assert!(later <= at_reload + 1, "probes went on after the reload: {at_reload} -> {later}");
    assert_eq!(old_snapshot.upstreams.iter().find(|p| &*p.name == "probed").map(|p| p.tasks.len()), Some(0));
    drop(old_snapshot);
}
