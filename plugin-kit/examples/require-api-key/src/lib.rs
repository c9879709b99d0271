//! Rejects requests without a known API key with `403`, and strips the key from the requests it
//! lets through so it never reaches the backend.
//!
//! Config: `{ "header": "x-api-key", "keys": ["..."] }` (no keys: every request is rejected).

use rustygate_plugin_sdk::{Action, log, request, respond, response};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(default)]
struct Config {
    header: String,
    keys: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config { header: "x-api-key".to_owned(), keys: Vec::new() }
    }
}

const FORBIDDEN: &[u8] = br#"{"error":"forbidden","message":"a valid API key is required"}"#;

/// Compares without an early exit on the first differing byte (the length is not secret).
fn same_key(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn forbidden(reason: &str) -> Action {
    log::info(reason);
    response::set_header("content-type", "application/json");
    respond(403, FORBIDDEN)
}

fn require_api_key() -> Action {
    let config = match rustygate_plugin_sdk::config::<Config>() {
        Ok(config) => config,
        Err(err) => {
            // Fail closed: a broken config must not open the route.
            log::error(&format!("invalid config: {err}"));
            Config::default()
        }
    };
    let Some(key) = request::header(&config.header) else {
        return forbidden("api key missing");
    };
    if !config.keys.iter().any(|known| same_key(known, &key)) {
        return forbidden("api key rejected");
    }
    request::remove_header(&config.header);
    Action::Continue
}

rustygate_plugin_sdk::plugin! { on_request: require_api_key }
