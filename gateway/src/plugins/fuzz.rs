//! The plugin host ABI under fuzzing (`rustygate::fuzzing::plugin_abi`): the input becomes a
//! guest whose hooks call the host imports with arbitrary arguments — pointers and lengths
//! anywhere in (or past) its memory, negative ones, huge ones — over a data segment holding
//! the input itself, so names and values are often real text. The host must never panic nor
//! read or write outside the guest's memory, and what the guest can change must stay within
//! the rules: reserved headers untouched, the path in normal form, at most `MAX_HEADERS`
//! headers, an answer's status in 200–599.

use std::fmt::Write as _;

use actix_web::http::{
    Method, StatusCode,
    header::{HeaderMap, HeaderName, HeaderValue},
};

use super::{Exchange, Hook, engine, host};
use crate::proxy::headers::RequestHeaderRules;

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

/// One record of the input: an import (first byte) and four arguments (little-endian i32s).
const RECORD: usize = 17;

/// The guest of an input: both hooks make its calls, in order, then return the last record's
/// first argument as the action (mostly an invalid one: the host must cope).
fn guest(data: &[u8]) -> String {
    let mut wat = String::from("(module\n");
    for (name, params, result) in IMPORTS {
        let _ = write!(wat, "  (import \"rustygate\" \"{name}\" (func ${name} (param{})", " i32".repeat(params));
        wat.push_str(if result { " (result i32)))\n" } else { "))\n" });
    }
    wat.push_str("  (memory (export \"memory\") 1)\n  (data (i32.const 0) \"");
    for b in data.iter().take(4096) {
        let _ = write!(wat, "\\{b:02x}");
    }
    wat.push_str("\")\n  (func (export \"rg_abi_version\") (result i32) i32.const 1)\n");
    let mut calls = String::new();
    let mut action = 0i32;
    for record in data.chunks_exact(RECORD).take(64) {
        let (name, params, result) = IMPORTS[usize::from(record[0]) % IMPORTS.len()];
        let args: Vec<i32> =
            record[1..].chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        action = args[0];
        for arg in &args[..params] {
            let _ = write!(calls, "(i32.const {arg}) ");
        }
        let _ = write!(calls, "(call ${name}) ");
        if result {
            calls.push_str("(drop) ");
        }
        calls.push('\n');
    }
    for hook in ["on_request", "on_response"] {
        let _ = writeln!(wat, "  (func (export \"{hook}\") (result i32)\n{calls} (i32.const {action}))");
    }
    wat.push(')');
    wat
}

/// The fuzz target's body (see the module documentation).
pub fn plugin_abi(data: &[u8]) {
    let config: std::sync::Arc<[u8]> = std::sync::Arc::from(&br#"{"api_key":"k","n":1}"#[..]);
    let wasm = wasmer::wat2wasm(guest(data).as_bytes()).expect("the guest is valid WAT").into_owned();
    let plugin = engine::compile("fuzz", &wasm, 1 << 20, Some(config)).expect("the guest compiles");
    let mut instance = plugin.instantiate().expect("the guest instantiates");
    let mut headers = HeaderMap::new();
    headers.insert(HeaderName::from_static("accept"), HeaderValue::from_static("*/*"));
    headers.insert(HeaderName::from_static("x-api-key"), HeaderValue::from_static("k"));
    let rules = std::sync::Arc::new(RequestHeaderRules {
        claim_headers: vec![HeaderName::from_static("x-user-id")],
        keep_underscores: false,
    });
    let mut ex = Exchange::for_request(Method::GET, "/api/x".into(), Some("a=1".into()), headers, None, rules);
    let _ = instance.call(Hook::Request, 100_000, &mut ex);
    check(&ex);
    ex.status = Some(StatusCode::OK);
    ex.response_headers.insert(HeaderName::from_static("content-type"), HeaderValue::from_static("text/plain"));
    let _ = instance.call(Hook::Response, 100_000, &mut ex);
    check(&ex);
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
