//! The plugin host ABI under fuzzing (`rustygate::fuzzing::plugin_abi`): one guest, compiled
//! once, reads the input from a request header and interprets it as up to 256 calls of host
//! imports with arbitrary arguments — pointers and lengths anywhere in (or past) its memory,
//! negative ones, huge ones — in `on_request` then `on_response`, over memory that holds the
//! input itself (so names and values are often real text). The host must never panic nor read
//! or write outside the guest's memory, and what the guest can change must stay within the
//! rules: reserved headers untouched, the path in normal form, at most `MAX_HEADERS` headers,
//! an answer's status in 200–599.

use std::{fmt::Write as _, sync::OnceLock};

use crate::http_types::{
    Method, StatusCode,
    header::{HeaderMap, HeaderName, HeaderValue},
};

use super::{
    engine,
    exchange::{Exchange, Hook},
    host,
};
use crate::headers::RequestHeaderRules;

/// Each import with its parameter count and whether it returns a value.
const IMPORTS: [(&str, usize, bool); 14] = [
    ("rg_log", 3, false),
    ("rg_get_config", 2, true),
    ("rg_get_method", 2, true),
    ("rg_get_path", 2, true),
    ("rg_get_query", 2, true),
    ("rg_set_path", 2, true),
    ("rg_get_request_header", 4, true),
    ("rg_set_request_header", 4, true),
    ("rg_remove_request_header", 2, false),
    ("rg_get_response_status", 0, true),
    ("rg_get_response_header", 4, true),
    ("rg_set_response_header", 4, true),
    ("rg_remove_response_header", 2, false),
    ("rg_respond", 3, true),
];

/// The header carrying the input, each byte as two letters `a`–`p` (header values must be text).
const INPUT_HEADER: &str = "x-fuzz";

/// The interpreting guest: copies `x-fuzz` to 65536, decodes it to 1024, then runs each
/// 17-byte record (an import index, four little-endian i32 arguments) and returns the last
/// record's first argument as the action (mostly an invalid one: the host must cope).
fn guest() -> String {
    let mut wat = String::from("(module\n");
    for (name, params, result) in IMPORTS {
        let _ = write!(wat, "  (import \"rustygate\" \"{name}\" (func ${name} (param{})", " i32".repeat(params));
        wat.push_str(if result { " (result i32)))\n" } else { "))\n" });
    }
    wat.push_str(
        r#"  (memory (export "memory") 2)
  (data (i32.const 16) "x-fuzz")
  (func (export "rg_abi_version") (result i32) i32.const 1)
  (func $run (result i32)
    (local $n i32) (local $i i32) (local $p i32) (local $end i32)
    (local $a i32) (local $b i32) (local $c i32) (local $d i32) (local $action i32)
    (local.set $n (call $rg_get_request_header (i32.const 16) (i32.const 6) (i32.const 65536) (i32.const 65536)))
    (if (i32.lt_s (local.get $n) (i32.const 2)) (then (return (i32.const 0))))
    (block $decoded (loop $decode
      (br_if $decoded (i32.ge_u (i32.add (local.get $i) (i32.const 1)) (local.get $n)))
      (i32.store8 (i32.add (i32.const 1024) (i32.shr_u (local.get $i) (i32.const 1)))
        (i32.or
          (i32.shl (i32.sub (i32.load8_u (i32.add (i32.const 65536) (local.get $i))) (i32.const 97)) (i32.const 4))
          (i32.and (i32.sub (i32.load8_u (i32.add (i32.const 65537) (local.get $i))) (i32.const 97)) (i32.const 15))))
      (local.set $i (i32.add (local.get $i) (i32.const 2)))
      (br $decode)))
    (local.set $p (i32.const 1024))
    (local.set $end (i32.add (i32.const 1024) (i32.shr_u (local.get $n) (i32.const 1))))
    (block $stop (loop $next
      (br_if $stop (i32.gt_u (i32.add (local.get $p) (i32.const 17)) (local.get $end)))
      (local.set $a (i32.load (i32.add (local.get $p) (i32.const 1))))
      (local.set $b (i32.load (i32.add (local.get $p) (i32.const 5))))
      (local.set $c (i32.load (i32.add (local.get $p) (i32.const 9))))
      (local.set $d (i32.load (i32.add (local.get $p) (i32.const 13))))
      (local.set $action (local.get $a))
      (block $after
"#,
    );
    // br_table over one nested block per import: case k's code follows block $bk's end.
    for k in (0..IMPORTS.len()).rev() {
        let _ = writeln!(wat, "      (block $b{k}");
    }
    let labels: Vec<String> = (0..IMPORTS.len()).map(|k| format!("$b{k}")).collect();
    let _ = writeln!(
        wat,
        "        (br_table {} (i32.rem_u (i32.load8_u (local.get $p)) (i32.const {}))))",
        labels.join(" "),
        IMPORTS.len()
    );
    let args = ["$a", "$b", "$c", "$d"];
    for (name, params, result) in IMPORTS.iter() {
        let call_args: Vec<String> = args[..*params].iter().map(|a| format!("(local.get {a})")).collect();
        let _ = write!(wat, "        (call ${name} {})", call_args.join(" "));
        if *result {
            wat.push_str(" (drop)");
        }
        // Closes the next case's block; the last case's closes `$after`.
        let _ = writeln!(wat, " (br $after))");
    }
    wat.push_str(
        r#"      (local.set $p (i32.add (local.get $p) (i32.const 17)))
      (br $next)))
    (local.get $action))
  (func (export "on_request") (result i32) (call $run))
  (func (export "on_response") (result i32) (call $run)))
"#,
    );
    wat
}

/// The guest, compiled once per process.
fn compiled() -> &'static engine::CompiledPlugin {
    static PLUGIN: OnceLock<engine::CompiledPlugin> = OnceLock::new();
    PLUGIN.get_or_init(|| {
        let wasm = wasmer::wat2wasm(guest().as_bytes()).expect("the guest is valid WAT").into_owned();
        let config: std::sync::Arc<[u8]> = std::sync::Arc::from(&br#"{"api_key":"k","n":1}"#[..]);
        engine::compile("fuzz", &wasm, 1 << 20, Some(config)).expect("the guest compiles")
    })
}

/// The fuzz target's body (see the module documentation).
pub fn plugin_abi(data: &[u8]) {
    run(data);
}

/// Runs both hooks of the guest on `data`, checking the rules after each; the exchange after.
fn run(data: &[u8]) -> Exchange {
    let mut instance = compiled().instantiate().expect("the guest instantiates");
    let mut hex = Vec::with_capacity(data.len().min(4096) * 2);
    for b in data.iter().take(4096) {
        hex.extend_from_slice(&[b'a' + (b >> 4), b'a' + (b & 15)]);
    }
    let mut headers = HeaderMap::new();
    headers.insert(HeaderName::from_static("accept"), HeaderValue::from_static("*/*"));
    headers.insert(HeaderName::from_static("x-api-key"), HeaderValue::from_static("k"));
    headers.insert(HeaderName::from_static(INPUT_HEADER), HeaderValue::from_bytes(&hex).expect("letters only"));
    let rules = std::sync::Arc::new(RequestHeaderRules {
        claim_headers: vec![HeaderName::from_static("x-user-id")],
        keep_underscores: false,
    });
    let mut ex = Exchange::for_request(Method::GET, "/api/x".into(), Some("a=1".into()), headers, None, rules);
    let _ = instance.call(Hook::Request, 1_000_000, &mut ex);
    check(&ex);
    ex.status = Some(StatusCode::OK);
    ex.response_headers.insert(HeaderName::from_static("content-type"), HeaderValue::from_static("text/plain"));
    let _ = instance.call(Hook::Response, 1_000_000, &mut ex);
    check(&ex);
    ex
}

/// What a guest may never leave behind, whatever it called.
fn check(ex: &Exchange) {
    for name in ex.request_headers.keys() {
        assert!(!host::request_header_reserved(ex, name), "a reserved request header was set: {name}");
    }
    assert!(ex.request_headers.len() <= host::MAX_HEADERS && ex.response_headers.len() <= host::MAX_HEADERS + 1);
    let normal = crate::normalize::path(&ex.path).expect("the path stays acceptable");
    assert_eq!(normal.path, ex.path.as_str(), "the path left in normal form");
    if let Some((status, _)) = &ex.respond {
        assert!((200..=599).contains(&status.as_u16()), "answer status {status}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(import: &str, args: [i32; 4]) -> Vec<u8> {
        let index = IMPORTS.iter().position(|(name, ..)| *name == import).expect("an import");
        let mut r = vec![index as u8];
        for a in args {
            r.extend_from_slice(&a.to_le_bytes());
        }
        r
    }

    /// The interpreter really calls the host: a response header set from text in the input,
    /// a refused reserved header, and a path rewrite refused for not being normal.
    #[test]
    fn the_guest_makes_the_calls_the_input_describes() {
        // Three records (51 bytes, decoded at 1024), then text at 1075.
        let text = 1024 + 3 * 17;
        let mut input = record("rg_set_response_header", [text, 4, text + 4, 2]);
        input.extend(record("rg_set_request_header", [text + 6, 4, text + 4, 2]));
        input.extend(record("rg_set_path", [text + 10, 11, 0, 0]));
        input.extend_from_slice(b"x-okv1host/a/../admin");
        let ex = run(&input);
        assert_eq!(ex.response_headers.get("x-ok").map(|v| v.as_bytes()), Some(&b"v1"[..]));
        assert!(ex.request_headers.get("host").is_none());
        assert_eq!(ex.path, "/api/x");
    }
}
