//! Adds a header to every request (sent upstream) and to its response.
//!
//! Config (all optional): `{ "header": "X-RustyGate-Plugin", "value": "executed" }`. The default
//! value can be changed at build time with `ADD_HEADER_VALUE=...` (used for the hot-swap demo).

use rustygate_plugin_sdk::{Action, log, request, response};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(default)]
struct Config {
    header: String,
    value: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            header: "X-RustyGate-Plugin".to_owned(),
            value: option_env!("ADD_HEADER_VALUE").unwrap_or("executed").to_owned(),
        }
    }
}

fn add_header() -> Action {
    let config = rustygate_plugin_sdk::config::<Config>().unwrap_or_else(|err| {
        log::error(&format!("invalid config, using the defaults: {err}"));
        Config::default()
    });
    let upstream = request::set_header(&config.header, &config.value);
    let downstream = response::set_header(&config.header, &config.value);
    log::debug(&format!("{}: {} (request: {upstream}, response: {downstream})", config.header, config.value));
    Action::Continue
}

rustygate_plugin_sdk::plugin! { on_request: add_header }
