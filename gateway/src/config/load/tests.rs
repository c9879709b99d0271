//! Golden tests of configuration loading: what loads, and the exact messages of what does not.

use std::collections::HashMap;

use super::*;
use crate::config::{ByteSize, HumanDuration, Strategy};

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name| map.get(name).cloned()
}

fn load(yaml: &str) -> Result<Config, ConfigError> {
    load_with_env(yaml, "test.yaml", &env(&[]))
}

fn errors(yaml: &str) -> Vec<String> {
    let err = load(yaml).expect_err("config should be rejected");
    err.to_string().lines().map(str::to_owned).collect()
}

#[test]
fn the_seed_snippets_load_verbatim() {
    let cfg = load(
        r#"
routes:
  - path: "/api/test"
    backend: "http://localhost:8001"
  - path: "/api/users"
    backends:
      - url: "http://users1:8001"
      - url: "http://users2:8001"
    strategy: "round_robin"
"#,
    )
    .unwrap();
    assert_eq!(cfg.routes.len(), 2);
    assert_eq!(cfg.routes[0].backend.as_ref().map(|u| u.raw()), Some("http://localhost:8001"));
    assert_eq!(cfg.routes[1].backends.as_ref().unwrap().len(), 2);
    assert_eq!(cfg.routes[1].strategy, Some(Strategy::RoundRobin));
    assert_eq!(cfg.server.listen, "0.0.0.0:8080");
    assert_eq!(cfg.admin.listen, "0.0.0.0:8081");
}

#[test]
fn the_embedded_default_config_loads() {
    let cfg = load(crate::config::DEFAULT_CONFIG_YAML).unwrap();
    assert_eq!(cfg.routes[0].path, "/api/test");
}

#[test]
fn durations_sizes_and_env_expand() {
    let yaml = r#"
server:
  listen: "${HOST:-127.0.0.1}:${PORT}"
  workers: "${WORKERS:-3}"
  max_body_size: 512KiB
  shutdown_timeout: 250ms
  keep_alive: 1m
admin:
  listen: "127.0.0.1:9091"
  token: "${TOKEN:-}"
upstreams:
  users:
    backends: [ { url: "http://u1:8001", weight: 2 } ]
    timeout: 5s
routes:
  - path: /price
    upstream: users
    strip_prefix: "true"
  - path: /dollar
    backend: "http://cost$$:80"
"#;
    let cfg = load_with_env(yaml, "t", &env(&[("PORT", "9090")])).unwrap();
    assert_eq!(cfg.server.listen, "127.0.0.1:9090");
    assert_eq!(cfg.server.workers, 3);
    assert_eq!(cfg.server.max_body_size, ByteSize::kib(512));
    assert_eq!(cfg.server.shutdown_timeout, HumanDuration::millis(250));
    assert_eq!(cfg.server.keep_alive, HumanDuration::secs(60));
    assert_eq!(cfg.admin.token, "");
    assert_eq!(cfg.upstreams["users"].backends[0].weight, 2);
    assert!(cfg.routes[0].strip_prefix);
}

#[test]
fn an_unset_variable_is_an_error_naming_it() {
    let e = errors("server:\n  listen: \"0.0.0.0:${PORT}\"\n");
    assert_eq!(
        e[0],
        "error: test.yaml:2:3: server.listen: environment variable PORT is not set (use `${PORT:-default}` for a fallback)"
    );
}

#[test]
fn unknown_keys_are_named_with_a_suggestion_and_location() {
    let e = errors(
        r#"
routes:
  - path: /api
    bakend: "http://localhost:8001"
servr:
  listen: "0.0.0.0:80"
"#,
    );
    assert_eq!(
        e,
        [
            "error: test.yaml:4:5: routes[0].bakend: unknown key `bakend`; did you mean `backend`?",
            "error: test.yaml:5:1: servr: unknown key `servr`; did you mean `server`?",
            "2 errors; configuration not applied",
        ]
    );
}

#[test]
fn semantic_errors_are_all_reported_at_once() {
    let e = errors(
        r#"
upstreams:
  users:
    backends: []
  orders:
    backends:
      - url: "ftp://orders:21"
      - url: "http://orders2:80"
        weight: 0
routes:
  - path: /api/users
    upstream: user
  - path: api/orders
    upstream: orders
  - path: /api/users/
    backend: "http://a:1"
  - path: /nothing
"#,
    );
    assert_eq!(
        e,
        [
            "error: test.yaml:4:5: upstreams.users.backends: needs at least one backend",
            "error: test.yaml:7:9: upstreams.orders.backends[0].url: \"ftp://orders:21\": unsupported scheme \"ftp\"; expected http:// or https://",
            "error: test.yaml:9:9: upstreams.orders.backends[1].weight: must be between 1 and 1000, found 0",
            "error: test.yaml:12:5: routes[0].upstream: unknown upstream \"user\" (known: orders, users); did you mean \"users\"?",
            "error: test.yaml:13:5: routes[1].path: \"api/orders\" must start with `/`",
            "error: test.yaml:15:5: routes[2].path: duplicate route: another route already matches \"/api/users/\" with the same host and methods",
            "error: test.yaml:17:5: routes[3]: a route needs one of `upstream`, `backend` or `backends`",
            "7 errors; configuration not applied",
        ]
    );
}

#[test]
fn type_errors_are_located_and_collected() {
    let e = errors(
        r#"
server:
  workers: many
  keep_alive: 30
log:
  format: jsn
"#,
    );
    assert_eq!(
        e,
        [
            "error: test.yaml:3:3: server.workers: expected a non-negative whole number, found \"many\"",
            "error: test.yaml:4:3: server.keep_alive: invalid duration 30: a unit is required, like 30s or 30ms",
            "error: test.yaml:6:3: log.format: unknown variant `jsn`, expected `json` or `pretty`; did you mean `json`?",
            "3 errors; configuration not applied",
        ]
    );
}

#[test]
fn invalid_yaml_points_at_the_syntax_error() {
    let e = errors("routes:\n  - path: /a\n    backend: [unclosed\n");
    assert!(e[0].starts_with("error: test.yaml:4:1: invalid YAML: "), "{e:?}");
    assert_eq!(
        errors("- just\n- a list\n")[0],
        "error: test.yaml: the configuration must be a mapping of keys (server:, routes:, …)"
    );
}

const PLUGINS_EVERYWHERE: &str = r#"
plugins: { dir: ./plugins }
defaults: { plugins: [x] }
upstreams:
  u:
    backends: [ { url: "http://a:1" } ]
    retry_on: [sometimes]
routes:
  - path: /a
    upstream: u
    plugins: [add-header, "bad name"]
"#;

#[cfg(not(feature = "wasm"))]
#[test]
fn plugins_in_a_build_without_the_wasm_feature_are_rejected_not_ignored() {
    const NO_WASM: &str = "this binary was built without WASM plugin support (cargo feature `wasm`); \
                           use a build with it (`make build`, the lab image) or remove the key";
    assert_eq!(
        errors(PLUGINS_EVERYWHERE),
        [
            format!("error: test.yaml:2:1: plugins: {NO_WASM}"),
            format!("error: test.yaml:3:13: defaults.plugins: {NO_WASM}"),
            "error: test.yaml:7:16: upstreams.u.retry_on[0]: unknown retry condition \"sometimes\": use connect_error, timeout, reset, 5xx or a status like 503".into(),
            format!("error: test.yaml:11:5: routes[0].plugins: {NO_WASM}"),
            "4 errors; configuration not applied".into(),
        ]
    );
}

#[cfg(feature = "wasm")]
#[test]
fn plugin_names_are_checked_where_they_are_written() {
    assert_eq!(
        errors(PLUGINS_EVERYWHERE),
        [
            "error: test.yaml:7:16: upstreams.u.retry_on[0]: unknown retry condition \"sometimes\": use connect_error, timeout, reset, 5xx or a status like 503",
            "error: test.yaml:11:27: routes[0].plugins[1]: \"bad name\" is not a plugin name (letters, digits, '-' and '_': the file name without .wasm)",
            "2 errors; configuration not applied",
        ]
    );
}

#[test]
fn upstream_checks() {
    let e = errors(
        r#"
upstreams:
  sticky: { strategy: header_hash, backends: [ { url: "http://a:1" } ] }
  stray: { hash_header: X-User, backends: [ { url: "http://a:1" } ] }
  checked:
    backends: [ { url: "http://a:1" } ]
    health_check: { path: health, interval: 1s, timeout: 2s, unhealthy_threshold: 0, expected_status: "2xx", jitter: 5s }
routes:
  - { path: /a, backends: [ { url: "http://a:1" } ], strategy: header_hash }
"#,
    );
    assert_eq!(
        e,
        [
            "error: test.yaml:3:3: upstreams.sticky.hash_header: strategy header_hash needs `hash_header: NAME`",
            "error: test.yaml:4:12: upstreams.stray.hash_header: `hash_header` applies to strategy header_hash",
            "error: test.yaml:7:21: upstreams.checked.health_check.path: \"health\" must be a path starting with `/`",
            "error: test.yaml:7:49: upstreams.checked.health_check.timeout: must not exceed the interval (1s)",
            "error: test.yaml:7:62: upstreams.checked.health_check.unhealthy_threshold: must be at least 1",
            "error: test.yaml:7:86: upstreams.checked.health_check.expected_status: \"2xx\" is not a status or a range of statuses like 200-399",
            "error: test.yaml:7:110: upstreams.checked.health_check.jitter: must not exceed the interval (1s)",
            "error: test.yaml:9:54: routes[0].strategy: header_hash needs `hash_header`: define a named upstream for it",
            "8 errors; configuration not applied",
        ]
    );
}

#[test]
fn policy_checks() {
    let e = errors(
        r#"
auth:
  weak: { algorithms: [HS256], secret: short }
  mixed: { algorithms: [HS256, RS256], secret: "0123456789abcdef0123456789abcdef" }
  confused: { algorithms: [HS256], public_key_file: key.pem }
  unsigned: { algorithms: [none], jwks_url: "ftp://keys" }
  two: { algorithms: [RS256], public_key_file: a.pem, jwks_file: b.json, forward_claims: { sub: Host } }
rate_limits:
  bad: { requests: 0, window: 0s, key: ip }
  none: { requests: 1 }
  by-sub: { key: "claim:sub" }
defaults: { rate_limit: per-ip }
routes:
  - { path: /a, backend: "http://a:1", auth: wek }
  - { path: /b, backend: "http://a:1", auth: none, rate_limit: none, cors: none }
  - { path: /c, backend: "http://a:1", rate_limit: by-sub }
"#,
    );
    assert_eq!(
        e,
        [
            "error: test.yaml:3:32: auth.weak.secret: an HMAC secret must be at least 32 bytes (RFC 7518 §3.2), found 5; generate one with `openssl rand -base64 48`",
            "error: test.yaml:4:12: auth.mixed.algorithms: all algorithms of a policy must use the same kind of key (HS*, RS*/PS*, ES* or EdDSA)",
            "error: test.yaml:5:15: auth.confused.algorithms: HS* algorithms need a `secret`; a public key or JWKS policy accepts only RS*, PS*, ES* or EdDSA",
            "error: test.yaml:6:15: auth.unsigned.algorithms: `none` (unsigned tokens) is never accepted",
            "error: test.yaml:6:35: auth.unsigned.jwks_url: is not an http:// or https:// URL",
            "error: test.yaml:7:3: auth.two: give only one key source, found public_key_file, jwks_file",
            "error: test.yaml:7:92: auth.two.forward_claims.sub: \"Host\" is managed by the gateway; forward the claim as another header",
            "error: test.yaml:9:10: rate_limits.bad.requests: must be at least 1",
            "error: test.yaml:9:23: rate_limits.bad.window: must be greater than 0",
            "error: test.yaml:9:35: rate_limits.bad.key: unknown key \"ip\": use client_ip, header:NAME or claim:NAME",
            "error: test.yaml:10:3: rate_limits.none: \"none\" is reserved (a route uses it to opt out of a default)",
            "error: test.yaml:12:13: defaults.rate_limit: unknown rate-limit policy \"per-ip\" (known: bad, by-sub, none)",
            "error: test.yaml:14:40: routes[0].auth: unknown JWT policy \"wek\" (known: confused, mixed, two, unsigned, weak); did you mean \"weak\"?",
            "error: test.yaml:16:40: routes[2].rate_limit: rate-limit policy \"by-sub\" keys on a JWT claim (claim:sub), but this route has no `auth` policy",
            "14 errors; configuration not applied",
        ]
    );
}

#[test]
fn listener_and_route_checks() {
    let e = errors(
        r#"
server: { listen: "0.0.0.0:8080", trusted_proxies: ["10.0.0.0/8", "not-a-cidr"] }
admin: { listen: "127.0.0.1:8080" }
routes:
  - { name: a, path: /a, backend: "ftp://secure:443" }
  - { name: a, path: /b, backend: "http://user:pw@b:1", methods: [GET, "P0ST"] }
"#,
    );
    assert_eq!(
        e,
        [
            "error: test.yaml:2:67: server.trusted_proxies[1]: \"not-a-cidr\" is not an IP address or CIDR (like 10.0.0.0/8)",
            "error: test.yaml:3:10: admin.listen: the admin listener must not share the proxy's address 0.0.0.0:8080",
            "error: test.yaml:5:26: routes[0].backend: \"ftp://secure:443\": unsupported scheme \"ftp\"; expected http:// or https://",
            "error: test.yaml:6:7: routes[1].name: duplicate route name \"a\" (names label metrics and must be unique; set `name:`)",
            "error: test.yaml:6:26: routes[1].backend: \"b\": credentials in backend URLs are not supported",
            "error: test.yaml:6:72: routes[1].methods[1]: \"P0ST\" is not an HTTP method",
            "6 errors; configuration not applied",
        ]
    );
}

#[test]
fn tracing_checks() {
    let e = errors(
        r#"
tracing:
  enabled: true
  endpoint: "ftp://collector:21"
  sampling_ratio: 1.5
  service_name: ""
  max_queue_size: 10
  max_export_batch_size: 20
  scheduled_delay: 0s
  headers: { "bad header": x }
routes:
  - { path: /a, backend: "http://a:1" }
"#,
    );
    assert_eq!(
        e,
        [
            "error: test.yaml:4:3: tracing.endpoint: \"ftp://collector:21\" must be an http:// or https:// URL with a host",
            "error: test.yaml:5:3: tracing.sampling_ratio: must be between 0 and 1, found 1.5",
            "error: test.yaml:6:3: tracing.service_name: must not be empty",
            "error: test.yaml:8:3: tracing.max_export_batch_size: must be between 1 and max_queue_size (10), found 20",
            "error: test.yaml:9:3: tracing.scheduled_delay: must be greater than 0",
            "error: test.yaml:10:14: tracing.headers.bad header: \"bad header\" is not a valid header name",
            "6 errors; configuration not applied",
        ]
    );
    assert_eq!(
        errors("tracing: { sample_ratio: 0.5, protocol: http }\n"),
        [
            "error: test.yaml:1:12: tracing.sample_ratio: unknown key `sample_ratio`; did you mean `sampling_ratio`?",
            "error: test.yaml:1:31: tracing.protocol: unknown variant `http`, expected `grpc` or `http/protobuf`",
            "2 errors; configuration not applied",
        ]
    );
    let ok =
        load("tracing: { enabled: \"${ON:-true}\", sampling_ratio: \"${RATIO:-0.25}\", protocol: http/protobuf }\n")
            .unwrap();
    assert_eq!((ok.tracing.enabled, ok.tracing.sampling_ratio), (true, 0.25));
}

/// Issue 14, defect 8: DESIGN.md's own `retry_on` form, with YAML integers, loads.
#[test]
fn retry_on_takes_integers_and_strings() {
    let cfg = load(
        "upstreams:\n  u:\n    backends: [{ url: \"http://127.0.0.1:1\" }]\n    retry_on: [connect_error, timeout, 502, \"503\", 504]\nroutes:\n  - { path: /, upstream: u }\n",
    )
    .unwrap();
    assert_eq!(cfg.upstreams["u"].retry_on, ["connect_error", "timeout", "502", "503", "504"]);
    assert!(errors("upstreams:\n  u:\n    backends: [{ url: \"http://127.0.0.1:1\" }]\n    retry_on: [999]\nroutes:\n  - { path: /, upstream: u }\n")
        .iter()
        .any(|l| l.contains("retry_on[0]")));
}

/// Routes on one path for other hosts or methods need no `name:`; only equal explicit names clash.
#[test]
fn default_route_names_are_derived_from_host_path_and_methods() {
    let cfg = load(
        r#"
routes:
  - { path: /api, host: a.example.com, backend: "http://127.0.0.1:1" }
  - { path: /api, host: B.example.com., backend: "http://127.0.0.1:1" }
  - { path: /api, methods: [post, GET], backend: "http://127.0.0.1:1" }
  - { path: /api, methods: [DELETE], backend: "http://127.0.0.1:1" }
  - { path: /other, backend: "http://127.0.0.1:1" }
"#,
    )
    .unwrap();
    let names: Vec<&str> = cfg.routes.iter().map(|r| r.display_name()).collect();
    assert_eq!(names, ["a.example.com/api", "b.example.com/api", "/api GET,POST", "/api DELETE", "/other"]);
    let errs = errors(
        "routes:\n  - { name: x, path: /a, backend: \"http://127.0.0.1:1\" }\n  - { name: x, path: /b, backend: \"http://127.0.0.1:1\" }\n",
    );
    assert!(errs.iter().any(|l| l.contains("duplicate route name \"x\"")), "{errs:?}");
}

/// Error messages never echo a value that may hold a secret.
#[test]
fn env_errors_do_not_echo_the_value() {
    for yaml in ["admin: { token: \"s3cr3t-${OOPS\" }\n", "admin: { token: \"s3cr3t-${not valid}\" }\n"] {
        let errs = errors(yaml).join("\n");
        assert!(!errs.contains("s3cr3t"), "{errs}");
        assert!(errs.contains("admin.token"), "{errs}");
    }
}

/// A YAML tag would otherwise be dropped silently.
#[test]
fn yaml_tags_are_refused() {
    let errs = errors("admin: { token: !Custom abc }\n").join("\n");
    assert!(errs.contains("admin.token") && errs.contains("!Custom"), "{errs}");
}

/// Hostile documents cost linear time and bounded memory.
#[test]
fn deep_or_huge_documents_are_refused_quickly() {
    let deep = format!("routes: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let started = std::time::Instant::now();
    let errs = errors(&deep).join("\n");
    assert!(errs.contains("nests deeper than 64"), "{errs}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());

    let err = load_file(std::path::Path::new("/dev/zero")).unwrap_err().to_string();
    assert!(err.contains("larger than 16 MiB"), "{err}");
}

/// Checking a large route table is linear: 20k routes, mixing hosts, methods and any-method
/// routes (the any-method overlap check used to scan every route seen).
#[test]
fn many_routes_check_in_linear_time() {
    let mut yaml = String::from("routes:\n");
    for i in 0..20_000 {
        yaml.push_str(&format!("  - {{ path: /r{i}, methods: [GET], backend: \"http://127.0.0.1:1\" }}\n"));
        yaml.push_str(&format!("  - {{ path: /s{i}, host: h{i}.test, backend: \"http://127.0.0.1:1\" }}\n"));
    }
    let started = std::time::Instant::now();
    let cfg = load(&yaml).unwrap();
    assert_eq!(cfg.routes.len(), 40_000);
    // Debug build; the quadratic check took tens of seconds at this size.
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
}

/// Type errors and URL errors never echo a value that may be a secret.
#[test]
fn config_errors_do_not_echo_secrets() {
    let yaml = "auth:\n  a: { algorithms: [HS256], secret: \"0123456789abcdef0123456789abcdef\", forward_claims: \"${JWT_SECRET}\" }\n\
                routes:\n  - { path: /a, backends: [\"http://svc:s3cr3t-two@127.0.0.1:1\"] }\n\
                  - { path: /b, backend: \"https://admin:hunter2@127.0.0.1:1\" }\n\
                  - { path: /c, backend: \"ftp://svc:s3cr3t@host\" }\n";
    let err = load_with_env(yaml, "test.yaml", &env(&[("JWT_SECRET", "topsecret-value")])).unwrap_err().to_string();
    for secret in ["topsecret-value", "s3cr3t", "hunter2", "admin:", "svc:"] {
        assert!(!err.contains(secret), "{secret} in: {err}");
    }
}

/// The limits added against hostile clients cannot be configured into refusing everything.
#[test]
fn hostile_input_limits_must_be_usable() {
    let errs = errors(
        "server: { max_connections: 0, max_header_size: 0, client_body_timeout: 0s }\n\
         upstreams:\n  u: { backends: [{ url: \"http://127.0.0.1:1\" }], read_timeout: 0s }\n\
         routes:\n  - { path: /, upstream: u }\n",
    )
    .join("\n");
    for key in
        ["server.max_connections", "server.max_header_size", "server.client_body_timeout", "upstreams.u.read_timeout"]
    {
        assert!(errs.contains(key), "{key} not refused: {errs}");
    }
}

/// Issue 15: a scalar is re-typed once from its text (no per-key lenient parsing): a number or
/// boolean from the environment fills a numeric or boolean key, the same text in a key that
/// wants text stays text, and a plugin's own configuration is left as written.
#[test]
fn scalars_are_retyped_once_and_text_keys_keep_their_text() {
    let yaml = "server: { workers: \"${N}\", underscores_in_headers: \"${B}\" }\n\
                admin: { token: \"${N}\" }\n\
                routes:\n  - { name: \"${N}\", path: /, backend: \"http://127.0.0.1:1\", methods: [\"${M}\"] }\n";
    let cfg = load_with_env(yaml, "t", &env(&[("N", "12345"), ("B", "true"), ("M", "get")])).unwrap();
    assert_eq!(cfg.server.workers, 12345);
    assert!(cfg.server.underscores_in_headers);
    assert_eq!(cfg.admin.token, "12345", "a token of digits is still text");
    assert_eq!(cfg.routes[0].display_name(), "12345");
    assert_eq!(cfg.routes[0].methods, ["get"]);
    // What the runtime takes was parsed when the file was read.
    assert_eq!(cfg.routes[0].methods[0].get().unwrap(), crate::http_types::Method::GET);
    let plugins = "plugins:\n  dir: /tmp\n  settings:\n    p: { config: { limit: \"5\", on: \"true\" } }\nroutes: [ { path: /, backend: \"http://127.0.0.1:1\" } ]\n";
    // (A build without plugins refuses the section; the retyping happens before, either way.)
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(plugins).unwrap();
    let mut retyped = Vec::new();
    super::retype_scalars(&mut doc, &mut Vec::new(), &mut retyped);
    let config = &doc["plugins"]["settings"]["p"]["config"];
    assert_eq!(config["limit"], serde_yaml_ng::Value::String("5".into()), "the plugin's JSON as written");
    assert_eq!(config["on"], serde_yaml_ng::Value::String("true".into()));
    assert!(retyped.is_empty());
}

/// A long list whose items all hold digits where text is wanted (route names) takes the text
/// back for every item in one round: loading stays linear in the list, not quadratic.
#[test]
fn text_given_back_to_every_item_of_a_list_at_once() {
    let mut yaml = String::from("routes:\n");
    for i in 0..3000 {
        yaml.push_str(&format!(
            "  - {{ name: \"{}\", path: /r{i}, backend: \"http://127.0.0.1:1\", strip_prefix: \"true\" }}\n",
            100_000 + i
        ));
    }
    let started = std::time::Instant::now();
    let cfg = load(&yaml).unwrap();
    assert_eq!(cfg.routes[2999].display_name(), "102999");
    assert!(cfg.routes[2999].strip_prefix, "a boolean key keeps its re-typed value");
    // One round per distinct key, not per item: well under what 3,000 full passes would take.
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "took {:?}", started.elapsed());
}
