//! WASM plugins over real sockets (`--features wasm`): the example plugins built from
//! `plugin-kit/` by `make plugins` (or, where the wasm32 target cannot be installed, WAT
//! fixtures that behave the same), and WAT modules that loop, trap, misbehave or use the rest of
//! the ABI. Covers: headers added on one route only, a 403 answered without the backend, a
//! hot swap under load with zero failed requests, a corrupt or removed file, budgets and the
//! failure policies, `on_response`, the memory cap, bad modules refused at load, `/admin/plugins`,
//! and a configuration reload that keeps an unchanged plugin's compiled version.
#![cfg(feature = "wasm")]

mod common;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

const TOKEN: &str = "plugin-test-token";
const API_KEY: &str = "let-me-in";

/// The example plugins' files built by `make plugins`, or WAT stand-ins when they are absent.
fn example(name: &str) -> Vec<u8> {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins").join(format!("{name}.wasm"));
    match std::fs::read(&built) {
        Ok(bytes) => bytes,
        Err(_) => {
            eprintln!("{} not built (make plugins): using its WAT fixture", built.display());
            match name {
                "add-header" => add_header_wat("executed"),
                "require-api-key" => require_api_key_wat(),
                "variants/add-header-v2" => add_header_wat("v2"),
                other => panic!("no fixture for {other}"),
            }
        }
    }
}

/// The add-header example in WAT: sets `X-RustyGate-Plugin: <value>` upstream and on the response.
fn add_header_wat(value: &str) -> Vec<u8> {
    wat(&format!(
        r#"(module
          (import "rustygate" "rg_set_request_header" (func $req (param i32 i32 i32 i32) (result i32)))
          (import "rustygate" "rg_set_response_header" (func $resp (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 0) "X-RustyGate-Plugin")
          (data (i32.const 32) "{value}")
          (func (export "rg_abi_version") (result i32) i32.const 1)
          (func (export "on_request") (result i32)
            (drop (call $req (i32.const 0) (i32.const 18) (i32.const 32) (i32.const {len})))
            (drop (call $resp (i32.const 0) (i32.const 18) (i32.const 32) (i32.const {len})))
            i32.const 0))"#,
        len = value.len()
    ))
}

/// The require-api-key example in WAT, with its one key fixed to [`API_KEY`].
fn require_api_key_wat() -> Vec<u8> {
    wat(&format!(
        r#"(module
          (import "rustygate" "rg_get_request_header" (func $get (param i32 i32 i32 i32) (result i32)))
          (import "rustygate" "rg_remove_request_header" (func $remove (param i32 i32)))
          (import "rustygate" "rg_set_response_header" (func $resp (param i32 i32 i32 i32) (result i32)))
          (import "rustygate" "rg_respond" (func $respond (param i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 0) "x-api-key")
          (data (i32.const 128) "{API_KEY}")
          (data (i32.const 192) "content-type")
          (data (i32.const 208) "application/json")
          (data (i32.const 256) "{{\"error\":\"forbidden\"}}")
          (func (export "rg_abi_version") (result i32) i32.const 1)
          (func (export "on_request") (result i32) (local $i i32)
            (if (i32.eq (call $get (i32.const 0) (i32.const 9) (i32.const 64) (i32.const 64)) (i32.const {key_len}))
              (then
                (block $differs
                  (loop $next
                    (br_if $differs (i32.ne (i32.load8_u (i32.add (i32.const 64) (local.get $i)))
                                            (i32.load8_u (i32.add (i32.const 128) (local.get $i)))))
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (br_if $next (i32.lt_u (local.get $i) (i32.const {key_len}))))
                  (call $remove (i32.const 0) (i32.const 9))
                  (return (i32.const 0)))))
            (drop (call $resp (i32.const 192) (i32.const 12) (i32.const 208) (i32.const 16)))
            (drop (call $respond (i32.const 403) (i32.const 256) (i32.const 21)))
            i32.const 1))"#,
        key_len = API_KEY.len()
    ))
}

fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).unwrap_or_else(|e| panic!("fixture does not parse: {e}"))
}

/// A module exporting `on_request` with `body`, and the ABI's other exports.
fn guest(imports: &str, body: &str) -> Vec<u8> {
    wat(&format!(
        r#"(module {imports}
          (memory (export "memory") 1)
          (func (export "rg_abi_version") (result i32) i32.const 1)
          (func (export "on_request") (result i32) {body}))"#
    ))
}

fn looping() -> Vec<u8> {
    guest("", "(loop $forever (br $forever)) i32.const 0")
}

/// A gateway whose `plugins.dir` is a temporary directory holding `files`.
struct PluginLab {
    gw: TestGateway,
    dir: tempfile::TempDir,
    config_path: PathBuf,
}

impl PluginLab {
    /// `yaml` is the rest of the configuration (routes, `plugins.settings`); `{dir}` and
    /// `{b0}` are replaced by the plugin directory and the backend's URL.
    fn start(files: &[(&str, Vec<u8>)], yaml: &str, backend: &MockServer) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            std::fs::write(dir.path().join(format!("{name}.wasm")), bytes).unwrap();
        }
        let config_path = dir.path().join("rustygate.yaml");
        let lab_yaml = lab_config(dir.path(), yaml, backend);
        std::fs::write(&config_path, &lab_yaml).unwrap();
        let config = rustygate::config::load_file(&config_path).unwrap_or_else(|e| panic!("config rejected:\n{e}"));
        let gw = TestGateway::start_config(config).unwrap_or_else(|e| panic!("gateway refused:\n{e}"));
        gw.gateway.config_path.set(config_path.clone()).unwrap();
        Self { gw, dir, config_path }
    }

    /// Replaces a plugin file the way a deploy does: write aside, rename over.
    fn replace(&self, name: &str, bytes: &[u8]) {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, self.dir.path().join(format!("{name}.wasm"))).unwrap();
    }

    async fn admin_plugins(&self) -> Value {
        client().get(self.gw.admin_url("/admin/plugins")).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap()
    }

    async fn calls(&self, plugin: &str, hook: &str, outcome: &str) -> f64 {
        metric(
            &scrape(&self.gw).await,
            "rustygate_plugin_calls_total",
            &[("plugin", plugin), ("hook", hook), ("outcome", outcome)],
        )
    }
}

fn lab_config(dir: &Path, yaml: &str, backend: &MockServer) -> String {
    let body = yaml.replace("{dir}", &dir.display().to_string()).replace("{b0}", &backend.url());
    format!(
        "server: {{ listen: \"127.0.0.1:0\", workers: 2, watch_config: false }}\n\
         admin: {{ listen: \"127.0.0.1:0\", token: {TOKEN} }}\nlog: {{ access_log: false }}\n{body}"
    )
}

/// Polls `f` every 50 ms until it is true or `within` passes; returns the time it took.
async fn eventually<F, Fut>(within: Duration, mut f: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < within {
        if f().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn header_of(url: &str, name: &str) -> Option<String> {
    let resp = client().get(url).send().await.ok()?;
    resp.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
}

const TWO_ROUTES: &str = "plugins: { dir: \"{dir}\" }\nroutes:\n  \
    - { path: /with, backend: \"{b0}\", plugins: [add-header] }\n  \
    - { path: /without, backend: \"{b0}\" }\n";

#[tokio::test]
async fn add_header_runs_on_its_route_only() {
    let b = MockServer::start("b0");
    let lab = PluginLab::start(&[("add-header", example("add-header"))], TWO_ROUTES, &b);
    let c = client();

    let resp = c.get(lab.gw.url("/with/echo")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-rustygate-plugin"], "executed", "set on the response");
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echoed(&echo, "x-rustygate-plugin"), ["executed"], "and on the upstream request");

    let resp = c.get(lab.gw.url("/without/echo")).send().await.unwrap();
    assert!(resp.headers().get("x-rustygate-plugin").is_none());
    let echo: Value = resp.json().await.unwrap();
    assert!(echoed(&echo, "x-rustygate-plugin").is_empty());

    assert_eq!(lab.calls("add-header", "on_request", "continue").await, 1.0);
    let text = scrape(&lab.gw).await;
    let calls = metric(&text, "rustygate_plugin_duration_seconds_count", &[("plugin", "add-header")]);
    assert_eq!(calls, 1.0, "one timed call");

    let status = lab.admin_plugins().await;
    let p = &status["plugins"][0];
    assert_eq!(p["name"], "add-header");
    assert_eq!(p["state"], "loaded");
    assert_eq!(p["routes"], serde_json::json!(["/with"]));
    assert_eq!(p["hooks"], serde_json::json!(["on_request"]));
    assert_eq!(p["sha256"].as_str().unwrap().len(), 64);
    let denied = c.get(lab.gw.admin_url("/admin/plugins")).send().await.unwrap();
    assert_eq!(denied.status(), 401, "the admin token guards /admin/plugins");
}

#[tokio::test]
async fn add_header_takes_its_header_and_value_from_config() {
    let b = MockServer::start("b0");
    let yaml = "plugins:\n  dir: \"{dir}\"\n  settings:\n    add-header: { config: { header: X-Team, value: payments } }\n\
                routes:\n  - { path: /, backend: \"{b0}\", plugins: [add-header] }\n";
    if std::fs::metadata(Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/add-header.wasm")).is_err() {
        eprintln!("skipped: the WAT stand-in has no config (make plugins builds the real one)");
        return;
    }
    let lab = PluginLab::start(&[("add-header", example("add-header"))], yaml, &b);
    let resp = client().get(lab.gw.url("/x")).send().await.unwrap();
    assert_eq!(resp.headers()["x-team"], "payments");
    let config: Value =
        client().get(lab.gw.admin_url("/admin/config")).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    let shown = &config["config"]["plugins"]["settings"]["add-header"]["config"];
    assert_eq!(shown["value"], "[redacted]", "plugin configs may hold keys: /admin/config shows names only");
}

#[tokio::test]
async fn require_api_key_answers_403_without_calling_the_backend() {
    let b = MockServer::start("b0");
    let yaml = format!(
        "plugins:\n  dir: \"{{dir}}\"\n  settings:\n    require-api-key: {{ config: {{ keys: [{API_KEY}] }} }}\n\
         routes:\n  - {{ path: /api, backend: \"{{b0}}\", plugins: [require-api-key, add-header] }}\n"
    );
    let files = [("require-api-key", example("require-api-key")), ("add-header", example("add-header"))];
    let lab = PluginLab::start(&files, &yaml, &b);
    let c = client();

    let before = b.hits();
    for key in [None, Some("wrong-key")] {
        let mut req = c.get(lab.gw.url("/api/orders"));
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 403, "key {key:?}");
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert!(resp.headers().contains_key("x-request-id"), "the gateway's headers are still added");
        assert!(resp.headers().get("x-rustygate-plugin").is_none(), "plugins after the answer do not run");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "forbidden");
    }
    assert_eq!(b.hits(), before, "the backend never saw a refused request");
    assert_eq!(lab.calls("require-api-key", "on_request", "respond").await, 2.0);
    assert_eq!(lab.calls("add-header", "on_request", "continue").await, 0.0);

    let resp = c.get(lab.gw.url("/api/orders")).header("x-api-key", API_KEY).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    assert!(echoed(&echo, "x-api-key").is_empty(), "the key is removed before the backend");
    assert_eq!(echoed(&echo, "x-rustygate-plugin"), ["executed"], "the next plugin ran");
    assert_eq!(b.hits(), before + 1);
}

#[tokio::test]
async fn a_replaced_file_takes_over_under_load_and_a_corrupt_one_is_refused() {
    let b = MockServer::start("b0");
    let lab = PluginLab::start(&[("add-header", example("add-header"))], TWO_ROUTES, &b);
    let url = lab.gw.url("/with/load");
    assert_eq!(header_of(&url, "x-rustygate-plugin").await.as_deref(), Some("executed"));

    // 10 clients for the whole swap; every answer must be a 200 from one version or the other.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut clients = Vec::new();
    for _ in 0..10 {
        let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), url.clone());
        clients.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                match c.get(&url).send().await {
                    Ok(r) if r.status() == 200 && r.headers().contains_key("x-rustygate-plugin") => {
                        ok.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    // The load is on before the swap (every client has had an answer, on average) ...
    wait_until("the clients' first answers", Duration::from_secs(10), async || ok.load(Ordering::Relaxed) >= 10).await;
    lab.replace("add-header", &example("variants/add-header-v2"));
    let took = eventually(Duration::from_secs(5), || async {
        header_of(&url, "x-rustygate-plugin").await.as_deref() == Some("v2")
    })
    .await;
    // ... and goes on after it.
    let at_swap = ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed);
    wait_until("answers after the swap", Duration::from_secs(10), async || {
        ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) >= at_swap + 20
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let took = took.expect("the new version serves within 5 s");
    eprintln!("swap seen after {took:?}; {} requests ok", ok.load(Ordering::Relaxed));
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no failed request during the swap");
    assert!(ok.load(Ordering::Relaxed) > 20, "the clients were busy");
    let status = lab.admin_plugins().await;
    assert_eq!(status["plugins"][0]["loads"], 2);

    // A corrupt file: refused, logged, and v2 keeps serving.
    lab.replace("add-header", b"\0asm\x01\0\0\0 this is not a module");
    let refused = eventually(Duration::from_secs(5), || async {
        lab.admin_plugins().await["plugins"][0]["last_error"].is_string()
    })
    .await;
    assert!(refused.is_some(), "the refusal shows on /admin/plugins");
    let status = lab.admin_plugins().await;
    assert!(status["plugins"][0]["last_error"].as_str().unwrap().contains("does not compile"), "{status}");
    assert_eq!(status["plugins"][0]["state"], "loaded");
    for _ in 0..5 {
        assert_eq!(header_of(&url, "x-rustygate-plugin").await.as_deref(), Some("v2"));
    }
}

#[tokio::test]
async fn a_looping_plugin_is_stopped_by_its_budget() {
    let b = MockServer::start("b0");
    let yaml = "plugins:\n  dir: \"{dir}\"\n  settings:\n    spin-open: { failure: open }\n\
                routes:\n  - { path: /closed, backend: \"{b0}\", plugins: [spin] }\n  \
                - { path: /open, backend: \"{b0}\", plugins: [spin-open] }\n  \
                - { path: /plain, backend: \"{b0}\" }\n";
    let lab = PluginLab::start(&[("spin", looping()), ("spin-open", looping())], yaml, &b);
    let c = client();

    let started = Instant::now();
    let resp = c.get(lab.gw.url("/closed")).send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(resp.status(), 500);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "plugin_failed");
    assert!(body["message"].as_str().unwrap().contains("budget_exhausted"), "{body}");
    assert!(took < Duration::from_secs(1), "stopped in {took:?}");

    let started = Instant::now();
    let resp = c.get(lab.gw.url("/open")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "failure: open lets the request through");
    assert!(started.elapsed() < Duration::from_secs(1));

    assert_eq!(c.get(lab.gw.url("/plain")).send().await.unwrap().status(), 200, "others keep serving");
    assert_eq!(lab.calls("spin", "on_request", "budget_exhausted").await, 1.0);
    assert_eq!(lab.calls("spin-open", "on_request", "budget_exhausted").await, 1.0);
    // The stopped instance was dropped; the next call gets a fresh one and is stopped again.
    assert_eq!(c.get(lab.gw.url("/closed")).send().await.unwrap().status(), 500);
    assert_eq!(lab.calls("spin", "on_request", "budget_exhausted").await, 2.0);
}

#[tokio::test]
async fn traps_and_bad_actions_follow_the_failure_policy() {
    let b = MockServer::start("b0");
    let yaml = "plugins:\n  dir: \"{dir}\"\n  settings:\n    bad-action: { failure: open }\n\
                routes:\n  - { path: /trap, backend: \"{b0}\", plugins: [trap] }\n  \
                - { path: /bad, backend: \"{b0}\", plugins: [bad-action] }\n  \
                - { path: /silent, backend: \"{b0}\", plugins: [respond-without-answer] }\n";
    let files = [
        ("trap", guest("", "unreachable")),
        ("bad-action", guest("", "i32.const 7")),
        ("respond-without-answer", guest("", "i32.const 1")),
    ];
    let lab = PluginLab::start(&files, yaml, &b);
    let c = client();
    let resp = c.get(lab.gw.url("/trap")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "plugin_failed");
    assert_eq!(c.get(lab.gw.url("/bad")).send().await.unwrap().status(), 200);
    assert_eq!(c.get(lab.gw.url("/silent")).send().await.unwrap().status(), 500);
    assert_eq!(lab.calls("trap", "on_request", "trap").await, 1.0);
    assert_eq!(lab.calls("bad-action", "on_request", "invalid_action").await, 1.0);
    assert_eq!(lab.calls("respond-without-answer", "on_request", "invalid_action").await, 1.0);
}

#[tokio::test]
async fn on_response_reads_the_status_and_edits_or_replaces_the_response() {
    let b = MockServer::start("b0");
    // Copies the backend's status into a header; replaces a 5xx with its own 503.
    let on_response = wat(r#"(module
      (import "rustygate" "rg_get_response_status" (func $status (result i32)))
      (import "rustygate" "rg_set_response_header" (func $set (param i32 i32 i32 i32) (result i32)))
      (import "rustygate" "rg_remove_response_header" (func $remove (param i32 i32)))
      (import "rustygate" "rg_respond" (func $respond (param i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "x-backend-status")
      (data (i32.const 32) "content-type")
      (data (i32.const 64) "sorry")
      (func (export "rg_abi_version") (result i32) i32.const 1)
      (func (export "on_response") (result i32) (local $s i32)
        (local.set $s (call $status))
        ;; three ASCII digits at 48..51
        (i32.store8 (i32.const 48) (i32.add (i32.const 48) (i32.div_u (local.get $s) (i32.const 100))))
        (i32.store8 (i32.const 49) (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $s) (i32.const 10)) (i32.const 10))))
        (i32.store8 (i32.const 50) (i32.add (i32.const 48) (i32.rem_u (local.get $s) (i32.const 10))))
        (drop (call $set (i32.const 0) (i32.const 16) (i32.const 48) (i32.const 3)))
        (if (i32.ge_u (local.get $s) (i32.const 500))
          (then
            (call $remove (i32.const 32) (i32.const 12))
            (drop (call $respond (i32.const 503) (i32.const 64) (i32.const 5)))
            (return (i32.const 1))))
        i32.const 0))"#);
    let yaml = "plugins: { dir: \"{dir}\" }\nroutes:\n  - { path: /, backend: \"{b0}\", plugins: [status-copy] }\n";
    let lab = PluginLab::start(&[("status-copy", on_response)], yaml, &b);
    let c = client();
    let resp = c.get(lab.gw.url("/status/201")).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["x-backend-status"], "201");
    let resp = c.get(lab.gw.url("/status/502")).send().await.unwrap();
    assert_eq!(resp.status(), 503, "the plugin replaced the backend's answer");
    assert_eq!(resp.headers()["x-backend-status"], "502");
    assert!(resp.headers().get("content-type").is_none());
    assert_eq!(resp.text().await.unwrap(), "sorry");
    assert_eq!(lab.calls("status-copy", "on_response", "continue").await, 1.0);
    assert_eq!(lab.calls("status-copy", "on_response", "respond").await, 1.0);
    assert_eq!(lab.calls("status-copy", "on_request", "continue").await, 0.0, "no on_request export");
}

#[tokio::test]
async fn request_getters_and_path_rewrite_reach_the_backend() {
    let b = MockServer::start("b0");
    // Reads method, path and query; sends the request to /rewritten and records what it read
    // in a header (method|path|query) for the backend to echo.
    let rewrite = wat(r#"(module
      (import "rustygate" "rg_get_method" (func $method (param i32 i32) (result i32)))
      (import "rustygate" "rg_get_path" (func $path (param i32 i32) (result i32)))
      (import "rustygate" "rg_get_query" (func $query (param i32 i32) (result i32)))
      (import "rustygate" "rg_set_path" (func $set_path (param i32 i32) (result i32)))
      (import "rustygate" "rg_set_request_header" (func $set (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "x-seen")
      (data (i32.const 16) "/rewritten")
      (data (i32.const 32) "no-slash")
      (data (i32.const 48) "host")
      (data (i32.const 56) "evil")
      (data (i32.const 64) "/a/../admin")
      (data (i32.const 80) "x_user")
      (func (export "rg_abi_version") (result i32) i32.const 1)
      (func (export "on_request") (result i32) (local $n i32)
        ;; method at 100, '|' , path, '|', query
        (local.set $n (call $method (i32.const 100) (i32.const 16)))
        (i32.store8 (i32.add (i32.const 100) (local.get $n)) (i32.const 124))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (local.set $n (i32.add (local.get $n) (call $path (i32.add (i32.const 100) (local.get $n)) (i32.const 64))))
        (i32.store8 (i32.add (i32.const 100) (local.get $n)) (i32.const 124))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (local.set $n (i32.add (local.get $n) (call $query (i32.add (i32.const 100) (local.get $n)) (i32.const 64))))
        (drop (call $set (i32.const 0) (i32.const 6) (i32.const 100) (local.get $n)))
        ;; refused: a path without '/', one not in normal form, and the Host header
        (if (i32.ne (call $set_path (i32.const 32) (i32.const 8)) (i32.const -1)) (then unreachable))
        (if (i32.ne (call $set_path (i32.const 64) (i32.const 11)) (i32.const -1)) (then unreachable))
        (if (i32.ne (call $set (i32.const 48) (i32.const 4) (i32.const 56) (i32.const 4)) (i32.const -1)) (then unreachable))
        ;; refused: an underscored name (dropped from client requests, so not settable either)
        (if (i32.ne (call $set (i32.const 80) (i32.const 6) (i32.const 56) (i32.const 4)) (i32.const -1)) (then unreachable))
        (drop (call $set_path (i32.const 16) (i32.const 10)))
        i32.const 0))"#);
    let yaml = "plugins: { dir: \"{dir}\" }\nroutes:\n  - { path: /api, backend: \"{b0}\", strip_prefix: true, plugins: [rewrite] }\n";
    let lab = PluginLab::start(&[("rewrite", rewrite)], yaml, &b);
    let echo: Value = client().post(lab.gw.url("/api/orders?id=7")).send().await.unwrap().json().await.unwrap();
    assert_eq!(echo["path"], "/rewritten");
    assert_eq!(echo["query"], "id=7", "the query is kept");
    assert_eq!(echoed(&echo, "x-seen"), ["POST|/orders|id=7"], "the path after strip_prefix");
    assert_ne!(echoed(&echo, "host"), ["evil"]);
}

#[tokio::test]
async fn memory_is_capped_per_instance() {
    let b = MockServer::start("b0");
    // Tries to grow by 32 pages (2 MiB): with max_memory 1MiB the grow fails (-1) and the
    // plugin says so with a 507; a module that starts bigger than the cap is refused.
    let grower = guest(
        r#"(import "rustygate" "rg_respond" (func $respond (param i32 i32 i32) (result i32)))"#,
        "(if (i32.eq (memory.grow (i32.const 32)) (i32.const -1)) \
           (then (drop (call $respond (i32.const 507) (i32.const 0) (i32.const 0))) (return (i32.const 1)))) \
         i32.const 0",
    );
    let yaml = "plugins:\n  dir: \"{dir}\"\n  settings:\n    grower: { max_memory: 1MiB }\n    roomy: { max_memory: 4MiB }\n\
                routes:\n  - { path: /small, backend: \"{b0}\", plugins: [grower] }\n  \
                - { path: /roomy, backend: \"{b0}\", plugins: [roomy] }\n";
    let lab = PluginLab::start(&[("grower", grower.clone()), ("roomy", grower)], yaml, &b);
    let c = client();
    assert_eq!(c.get(lab.gw.url("/small")).send().await.unwrap().status(), 507, "the grow past 1 MiB failed");
    assert_eq!(c.get(lab.gw.url("/roomy")).send().await.unwrap().status(), 200, "within 4 MiB it works");

    let big = wat(r#"(module (memory (export "memory") 64)
        (func (export "rg_abi_version") (result i32) i32.const 1)
        (func (export "on_request") (result i32) i32.const 0))"#);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.wasm"), big).unwrap();
    let yaml = "plugins:\n  dir: \"{dir}\"\n  settings:\n    big: { max_memory: 1MiB }\n\
                routes:\n  - { path: /, backend: \"{b0}\", plugins: [big] }\n";
    let err = rustygate::config::load_str(&lab_config(dir.path(), yaml, &b), "<test>")
        .map(|config| rustygate::gateway::Gateway::new(config).err().map(|e| e.to_string()))
        .unwrap()
        .expect("refused");
    assert!(err.contains("plugin \"big\"") && err.contains("max_memory"), "{err}");
}

#[tokio::test]
async fn bad_modules_and_names_are_refused_with_clear_errors() {
    let b = MockServer::start("b0");
    let dir = tempfile::tempdir().unwrap();
    let wasi = wat(r#"(module
        (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "rg_abi_version") (result i32) i32.const 1)
        (func (export "on_request") (result i32) i32.const 0))"#);
    let v2 = wat(r#"(module (memory (export "memory") 1)
        (func (export "rg_abi_version") (result i32) i32.const 2)
        (func (export "on_request") (result i32) i32.const 0))"#);
    let no_hooks =
        wat(r#"(module (memory (export "memory") 1) (func (export "rg_abi_version") (result i32) i32.const 1))"#);
    let cases: [(&str, &[u8], &str); 5] = [
        ("corrupt", b"definitely not wasm", "not a WebAssembly binary"),
        ("wasi", &wasi, "imports wasi_snapshot_preview1.fd_write"),
        ("future", &v2, "returned 2"),
        ("hookless", &no_hooks, "neither `on_request` nor `on_response`"),
        ("absent", b"", "does not exist"),
    ];
    for (name, bytes, expected) in cases {
        if !bytes.is_empty() {
            std::fs::write(dir.path().join(format!("{name}.wasm")), bytes).unwrap();
        }
        let yaml = format!(
            "plugins: {{ dir: \"{{dir}}\" }}\nroutes:\n  - {{ path: /, backend: \"{{b0}}\", plugins: [{name}] }}\n"
        );
        let config = rustygate::config::load_str(&lab_config(dir.path(), &yaml, &b), "<test>").unwrap();
        let err = rustygate::gateway::Gateway::new(config).err().map(|e| e.to_string()).expect("refused");
        assert!(err.contains(expected), "{name}: {err}");
    }
    // Validation: names, duplicates, settings.
    let yaml = "plugins:\n  dir: \"{dir}\"\n  settings:\n    x: { fuel: 0, max_memory: 1KiB, config: [1] }\n\
                routes:\n  - { path: /, backend: \"{b0}\", plugins: [\"../etc/passwd\", a, a] }\n";
    let err = rustygate::config::load_str(&lab_config(dir.path(), yaml, &b), "<test>").unwrap_err().to_string();
    for expected in [
        "routes[0].plugins[0]",
        "is not a plugin name",
        "plugins[2]",
        "listed twice",
        "plugins.settings.x.fuel",
        "plugins.settings.x.max_memory",
        "plugins.settings.x.config",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[tokio::test]
async fn a_removed_file_is_reported_and_follows_the_failure_policy() {
    let b = MockServer::start("b0");
    let yaml = "plugins:\n  dir: \"{dir}\"\n  settings:\n    gone-open: { failure: open }\n\
                routes:\n  - { path: /closed, backend: \"{b0}\", plugins: [gone] }\n  \
                - { path: /open, backend: \"{b0}\", plugins: [gone-open] }\n";
    let lab = PluginLab::start(&[("gone", add_header_wat("x")), ("gone-open", add_header_wat("x"))], yaml, &b);
    std::fs::remove_file(lab.dir.path().join("gone.wasm")).unwrap();
    std::fs::remove_file(lab.dir.path().join("gone-open.wasm")).unwrap();
    let seen = eventually(Duration::from_secs(5), || async {
        lab.admin_plugins().await["plugins"].as_array().unwrap().iter().all(|p| p["state"] == "missing")
    })
    .await;
    assert!(seen.is_some(), "removal shows on /admin/plugins: {}", lab.admin_plugins().await);
    let c = client();
    let resp = c.get(lab.gw.url("/closed")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    assert!(resp.json::<Value>().await.unwrap()["message"].as_str().unwrap().contains("missing"));
    assert_eq!(c.get(lab.gw.url("/open")).send().await.unwrap().status(), 200);
    assert_eq!(lab.calls("gone", "on_request", "missing").await, 1.0);

    // Put back: serving again without a restart.
    lab.replace("gone", &add_header_wat("back"));
    let back = eventually(Duration::from_secs(5), || async {
        header_of(&lab.gw.url("/closed"), "x-rustygate-plugin").await.as_deref() == Some("back")
    })
    .await;
    assert!(back.is_some(), "a file put back is loaded");
}

#[tokio::test]
async fn a_reload_keeps_unchanged_plugins_and_recompiles_changed_settings() {
    let b = MockServer::start("b0");
    let base = "plugins:\n  dir: \"{dir}\"\n  settings:\n    other: { max_memory: 2MiB }\n\
                routes:\n  - { path: /a, backend: \"{b0}\", plugins: [add-header] }\n  \
                - { path: /b, backend: \"{b0}\", plugins: [other] }\n";
    let lab = PluginLab::start(&[("add-header", add_header_wat("one")), ("other", add_header_wat("two"))], base, &b);
    let before = lab.admin_plugins().await;
    // A new route and another memory cap for `other`: add-header is untouched.
    let edited = base.replace("max_memory: 2MiB", "max_memory: 3MiB")
        + "  - { path: /c, backend: \"{b0}\", plugins: [add-header] }\n";
    std::fs::write(&lab.config_path, lab_config(lab.dir.path(), &edited, &b)).unwrap();
    lab.gw.gateway.reload_file().expect("reload applies");
    let after = lab.admin_plugins().await;
    let find =
        |v: &Value, name: &str| v["plugins"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned().unwrap();
    let (a0, a1) = (find(&before, "add-header"), find(&after, "add-header"));
    assert_eq!(a0["loaded_at"], a1["loaded_at"], "same compiled version");
    assert_eq!(a1["loads"], 1);
    assert_eq!(a1["routes"], serde_json::json!(["/a", "/c"]));
    assert_eq!(header_of(&lab.gw.url("/c"), "x-rustygate-plugin").await.as_deref(), Some("one"));
    assert_eq!(find(&after, "other")["loads"], 1, "a new slot for the new cap");
}

#[tokio::test]
async fn the_wat_stand_ins_behave_like_the_examples() {
    // What the tests use where the wasm32 target cannot be installed: kept honest here.
    let b = MockServer::start("b0");
    let yaml = "plugins: { dir: \"{dir}\" }\nroutes:\n  - { path: /, backend: \"{b0}\", plugins: [require-api-key, add-header] }\n";
    let lab = PluginLab::start(
        &[("require-api-key", require_api_key_wat()), ("add-header", add_header_wat("executed"))],
        yaml,
        &b,
    );
    let c = client();
    let before = b.hits();
    let refused = c.get(lab.gw.url("/x")).header("x-api-key", "let-me-out").send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.headers()["content-type"], "application/json");
    assert_eq!(b.hits(), before);
    let resp = c.get(lab.gw.url("/x")).header("x-api-key", API_KEY).send().await.unwrap();
    assert_eq!(resp.headers()["x-rustygate-plugin"], "executed");
    let echo: Value = resp.json().await.unwrap();
    assert!(echoed(&echo, "x-api-key").is_empty());
    assert_eq!(echoed(&echo, "x-rustygate-plugin"), ["executed"]);
}

#[tokio::test]
async fn hostile_pointers_and_lengths_are_refused_not_trusted() {
    // Every call below must return -1 (refused): out-of-bounds buffers, a 2 GiB length, a
    // negative pointer, an invalid header name. Any other answer traps (→ 500).
    let b = MockServer::start("b0");
    let hostile = guest(
        r#"(import "rustygate" "rg_respond" (func $respond (param i32 i32 i32) (result i32)))
           (import "rustygate" "rg_set_request_header" (func $set (param i32 i32 i32 i32) (result i32)))
           (import "rustygate" "rg_get_path" (func $path (param i32 i32) (result i32)))
           (data (i32.const 0) "bad name")"#,
        "(if (i32.ne (call $respond (i32.const 200) (i32.const 0) (i32.const 0x7fffffff)) (i32.const -1)) (then unreachable))
         (if (i32.ne (call $respond (i32.const 200) (i32.const 65530) (i32.const 100)) (i32.const -1)) (then unreachable))
         (if (i32.ne (call $respond (i32.const 99) (i32.const 0) (i32.const 1)) (i32.const -1)) (then unreachable))
         (if (i32.ne (call $set (i32.const -8) (i32.const 4) (i32.const 0) (i32.const 1)) (i32.const -1)) (then unreachable))
         (if (i32.ne (call $set (i32.const 0) (i32.const 8) (i32.const 0) (i32.const 1)) (i32.const -1)) (then unreachable))
         (if (i32.ne (call $path (i32.const 65535) (i32.const 100)) (i32.const -1)) (then unreachable))
         i32.const 0",
    );
    let yaml = "plugins: { dir: \"{dir}\" }\nroutes:\n  - { path: /, backend: \"{b0}\", plugins: [hostile] }\n";
    let lab = PluginLab::start(&[("hostile", hostile)], yaml, &b);
    let resp = client().get(lab.gw.url("/x")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(lab.calls("hostile", "on_request", "continue").await, 1.0);
}

#[tokio::test]
async fn budgets_and_caps_hold_against_bulk_operations_tables_and_threads() {
    let b = MockServer::start("b0");
    // memory.fill of the whole memory in a loop: each fill counts as 1,000 points, so the
    // default budget stops it after 1,000 fills.
    let filler = guest(
        "",
        "(loop $again (memory.fill (i32.const 0) (i32.const 7) (i32.mul (memory.size) (i32.const 65536))) (br $again)) i32.const 0",
    );
    // One table.grow by 100 million elements must be refused (-1), not allocated.
    let table_grower = wat(r#"(module (table 0 funcref) (memory (export "memory") 1)
        (func (export "rg_abi_version") (result i32) i32.const 1)
        (func (export "on_request") (result i32)
          (if (i32.ne (table.grow (ref.null func) (i32.const 100000000)) (i32.const -1)) (then unreachable))
          i32.const 0))"#);
    // A start function runs (with the default budget) at instantiation.
    let starter = wat(r#"(module (memory (export "memory") 1) (global $g (mut i32) (i32.const 0))
        (func $init (global.set $g (i32.const 1))) (start $init)
        (func (export "rg_abi_version") (result i32) i32.const 1)
        (func (export "on_request") (result i32) (if (i32.ne (global.get $g) (i32.const 1)) (then unreachable)) i32.const 0))"#);
    let yaml = "plugins:\n  dir: \"{dir}\"\n  settings:\n    filler: { max_memory: 1MiB }\n\
                routes:\n  - { path: /fill, backend: \"{b0}\", plugins: [filler] }\n  \
                - { path: /table, backend: \"{b0}\", plugins: [table-grower] }\n  \
                - { path: /start, backend: \"{b0}\", plugins: [starter] }\n";
    let lab = PluginLab::start(&[("filler", filler), ("table-grower", table_grower), ("starter", starter)], yaml, &b);
    let c = client();
    let started = Instant::now();
    assert_eq!(c.get(lab.gw.url("/fill")).send().await.unwrap().status(), 500);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "bulk fills stopped in {took:?}");
    assert_eq!(lab.calls("filler", "on_request", "budget_exhausted").await, 1.0);
    assert_eq!(c.get(lab.gw.url("/table")).send().await.unwrap().status(), 200, "the table grow was refused");
    assert_eq!(c.get(lab.gw.url("/start")).send().await.unwrap().status(), 200, "the start function ran");

    // Shared memory (threads) is not enabled: `memory.atomic.wait` could park a worker.
    let shared = wat(r#"(module (memory (export "memory") 1 1 shared)
        (func (export "rg_abi_version") (result i32) i32.const 1)
        (func (export "on_request") (result i32) i32.const 0))"#);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("shared.wasm"), shared).unwrap();
    let yaml = "plugins: { dir: \"{dir}\" }\nroutes:\n  - { path: /, backend: \"{b0}\", plugins: [shared] }\n";
    let config = rustygate::config::load_str(&lab_config(dir.path(), yaml, &b), "<test>").unwrap();
    let err = rustygate::gateway::Gateway::new(config).err().map(|e| e.to_string()).expect("refused");
    assert!(err.contains("does not compile"), "{err}");
}

#[tokio::test]
async fn plugins_see_verified_claims_and_cannot_forge_them() {
    use jsonwebtoken::{EncodingKey, Header, encode};
    const SECRET: &str = "plugin-test-secret-0123456789abcdef";
    let b = MockServer::start("b0");
    // Copies X-User-Id into the response as x-seen-user; setting X-User-Id must be refused.
    let peek = wat(r#"(module
      (import "rustygate" "rg_get_request_header" (func $get (param i32 i32 i32 i32) (result i32)))
      (import "rustygate" "rg_set_request_header" (func $set (param i32 i32 i32 i32) (result i32)))
      (import "rustygate" "rg_set_response_header" (func $resp (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "x-user-id")
      (data (i32.const 16) "x-seen-user")
      (data (i32.const 32) "mallory")
      (func (export "rg_abi_version") (result i32) i32.const 1)
      (func (export "on_request") (result i32) (local $n i32)
        (local.set $n (call $get (i32.const 0) (i32.const 9) (i32.const 100) (i32.const 64)))
        (if (i32.gt_s (local.get $n) (i32.const 0))
          (then (drop (call $resp (i32.const 16) (i32.const 11) (i32.const 100) (local.get $n)))))
        (if (i32.ne (call $set (i32.const 0) (i32.const 9) (i32.const 32) (i32.const 7)) (i32.const -1)) (then unreachable))
        i32.const 0))"#);
    let yaml = format!(
        "auth:\n  jwt: {{ algorithms: [HS256], secret: \"{SECRET}\", forward_claims: {{ sub: X-User-Id }} }}\n\
         plugins: {{ dir: \"{{dir}}\" }}\n\
         routes:\n  - {{ path: /, backend: \"{{b0}}\", auth: jwt, plugins: [peek] }}\n"
    );
    let lab = PluginLab::start(&[("peek", peek)], &yaml, &b);
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 300;
    let token = encode(
        &Header::default(),
        &serde_json::json!({ "sub": "alice", "exp": exp }),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let resp = client().get(lab.gw.url("/x")).bearer_auth(token).header("x-user-id", "mallory").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-seen-user"], "alice", "the plugin sees the verified claim, not the client's");
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echoed(&echo, "x-user-id"), ["alice"]);
}

#[tokio::test]
async fn with_watch_off_a_reload_picks_up_files_and_refuses_a_missing_one() {
    let b = MockServer::start("b0");
    let yaml = "plugins: { dir: \"{dir}\", watch: false }\nroutes:\n  - { path: /a, backend: \"{b0}\", plugins: [add-header] }\n";
    let lab = PluginLab::start(&[("add-header", add_header_wat("one"))], yaml, &b);
    let url = lab.gw.url("/a");
    // A control with the watcher on, its file replaced just after: once it serves the new
    // version, a watcher would have had its time.
    let watched = PluginLab::start(&[("add-header", add_header_wat("one"))], &yaml.replace(", watch: false", ""), &b);
    let watched_url = watched.gw.url("/a");
    lab.replace("add-header", &add_header_wat("two"));
    watched.replace("add-header", &add_header_wat("two"));
    wait_until("the watched control to load the new file", Duration::from_secs(5), async || {
        header_of(&watched_url, "x-rustygate-plugin").await.as_deref() == Some("two")
    })
    .await;
    assert_eq!(header_of(&url, "x-rustygate-plugin").await.as_deref(), Some("one"), "not watched");
    lab.gw.gateway.reload_file().expect("an unchanged configuration reloads");
    assert_eq!(header_of(&url, "x-rustygate-plugin").await.as_deref(), Some("two"), "the reload read the file");

    // A reload that changes the configuration while a plugin's file is gone is refused, and
    // the version in use keeps serving.
    std::fs::remove_file(lab.dir.path().join("add-header.wasm")).unwrap();
    let edited = yaml.replace("path: /a,", "path: /a, timeout: 9s,");
    std::fs::write(&lab.config_path, lab_config(lab.dir.path(), &edited, &b)).unwrap();
    let err = lab.gw.gateway.reload_file().expect_err("refused").to_string();
    assert!(err.contains("add-header.wasm does not exist"), "{err}");
    assert_eq!(header_of(&url, "x-rustygate-plugin").await.as_deref(), Some("two"));
}

#[tokio::test]
async fn plugin_answers_and_failures_show_on_the_request_span() {
    use mock_backends::otlp_sink::OtlpSink;
    let sink = OtlpSink::start();
    let b = MockServer::start("b0");
    let yaml = format!(
        "tracing: {{ enabled: true, endpoint: \"http://{}\", protocol: grpc, scheduled_delay: 50ms }}\n\
         plugins: {{ dir: \"{{dir}}\" }}\nroutes:\n  - {{ path: /keyed, backend: \"{{b0}}\", plugins: [require-api-key] }}\n  \
         - {{ path: /spin, backend: \"{{b0}}\", plugins: [spin] }}\n",
        sink.grpc_addr
    );
    let lab = PluginLab::start(&[("require-api-key", require_api_key_wat()), ("spin", looping())], &yaml, &b);
    let trace_of = |resp: &reqwest::Response| {
        resp.headers()["traceresponse"].to_str().unwrap().split('-').nth(1).unwrap().to_owned()
    };
    let events = |trace: &str| -> Vec<(String, Vec<(String, Value)>)> {
        let spans = sink.wait_for(trace, 1, Duration::from_secs(10));
        spans.into_iter().find(|s| s.kind == "server").expect("a SERVER span").events
    };
    let refused = client().get(lab.gw.url("/keyed")).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    let names: Vec<String> = events(&trace_of(&refused)).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["plugin responded"]);

    let failed = client().get(lab.gw.url("/spin")).send().await.unwrap();
    assert_eq!(failed.status(), 500);
    let evs = events(&trace_of(&failed));
    let (name, attributes) = &evs[0];
    assert_eq!(name, "plugin failed");
    assert!(attributes.contains(&("rustygate.plugin".into(), Value::from("spin"))), "{attributes:?}");
    assert!(attributes.contains(&("rustygate.plugin.outcome".into(), Value::from("budget_exhausted"))));
}
