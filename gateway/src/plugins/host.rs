//! The host side of ABI v1: the `rustygate` imports a plugin calls, working on the
//! [`Exchange`] moved into the instance's environment for the length of one call.
//!
//! Strings cross as `(pointer, length)` pairs in the guest's memory. A getter writes into the
//! guest's buffer and returns the value's full length (the guest calls again with a larger
//! buffer if that is more than it gave), or `-1` when the value is absent. A setter returns `0`,
//! or `-1` when refused. A bad pointer is treated like a refused call, never as a host error,
//! and what a guest can make the host copy is bounded per call.

use std::sync::Arc;

use crate::http_types::{
    StatusCode,
    header::{self, HeaderName, HeaderValue},
};
use bytes::Bytes;
use wasmer::{Function, FunctionEnv, FunctionEnvMut, Imports, Memory, MemoryView, Store, imports};

use super::exchange::{Exchange, Hook};
use crate::headers as h;

/// The functions ABI v1 provides, all in module `rustygate`; a module importing anything else
/// is refused when it is loaded.
pub const IMPORTS: [&str; 14] = [
    "rg_log",
    "rg_get_config",
    "rg_get_method",
    "rg_get_path",
    "rg_get_query",
    "rg_set_path",
    "rg_get_request_header",
    "rg_set_request_header",
    "rg_remove_request_header",
    "rg_get_response_status",
    "rg_get_response_header",
    "rg_set_response_header",
    "rg_remove_response_header",
    "rg_respond",
];

/// The import module's name.
pub const MODULE: &str = "rustygate";

/// One instance's environment.
pub struct HostEnv {
    /// The plugin's name (in its log lines).
    pub plugin: Arc<str>,
    /// The plugin's `config` as JSON.
    pub config: Option<Arc<[u8]>>,
    /// The guest's exported memory, set right after instantiation.
    pub memory: Option<Memory>,
    /// The exchange of the call running now; `None` between calls.
    pub exchange: Option<Exchange>,
    /// Bytes the guest may still make the host copy in this call ([`HOST_BYTES_PER_CALL`]).
    pub bytes_left: usize,
}

/// How many bytes one call may make the host copy out of guest memory (header names and
/// values, paths, log lines, a response body): what a guest can make the host hold is bounded
/// by this, not only by its own memory.
pub const HOST_BYTES_PER_CALL: usize = 4 << 20;

/// The most headers a request or response may have after a plugin adds one.
pub const MAX_HEADERS: usize = 200;

/// A log line is cut at this length.
const MAX_LOG_LINE: usize = 4096;

/// The import object for one instance.
pub fn imports(store: &mut Store, env: &FunctionEnv<HostEnv>) -> Imports {
    imports! {
        MODULE => {
            "rg_log" => Function::new_typed_with_env(store, env, rg_log),
            "rg_get_config" => Function::new_typed_with_env(store, env, rg_get_config),
            "rg_get_method" => Function::new_typed_with_env(store, env, rg_get_method),
            "rg_get_path" => Function::new_typed_with_env(store, env, rg_get_path),
            "rg_get_query" => Function::new_typed_with_env(store, env, rg_get_query),
            "rg_set_path" => Function::new_typed_with_env(store, env, rg_set_path),
            "rg_get_request_header" => Function::new_typed_with_env(store, env, rg_get_request_header),
            "rg_set_request_header" => Function::new_typed_with_env(store, env, rg_set_request_header),
            "rg_remove_request_header" => Function::new_typed_with_env(store, env, rg_remove_request_header),
            "rg_get_response_status" => Function::new_typed_with_env(store, env, rg_get_response_status),
            "rg_get_response_header" => Function::new_typed_with_env(store, env, rg_get_response_header),
            "rg_set_response_header" => Function::new_typed_with_env(store, env, rg_set_response_header),
            "rg_remove_response_header" => Function::new_typed_with_env(store, env, rg_remove_response_header),
            "rg_respond" => Function::new_typed_with_env(store, env, rg_respond),
        }
    }
}

const ABSENT: i32 = -1;
const REFUSED: i32 = -1;

/// The guest's memory during a host call, with the call's copy budget.
struct Guest<'a> {
    view: MemoryView<'a>,
    bytes_left: &'a mut usize,
}

impl Guest<'_> {
    /// `len` bytes of guest memory at `ptr`; `None` when out of bounds or over the call's
    /// budget (both checked before allocating).
    fn read(&mut self, ptr: i32, len: i32) -> Option<Vec<u8>> {
        let (ptr, len) = (u64::try_from(ptr).ok()?, usize::try_from(len).ok()?);
        if ptr.checked_add(len as u64)? > self.view.data_size() || len > *self.bytes_left {
            return None;
        }
        *self.bytes_left -= len;
        let mut buf = vec![0; len];
        self.view.read(ptr, &mut buf).ok()?;
        Some(buf)
    }

    /// Writes `value` into the guest's buffer if it fits; returns its full length (`-1` if
    /// absent or if the buffer is out of bounds).
    fn answer(&self, buf: i32, buf_len: i32, value: Option<&[u8]>) -> i32 {
        let Some(value) = value else { return ABSENT };
        let Ok(len) = i32::try_from(value.len()) else { return ABSENT };
        if len <= buf_len && (u64::try_from(buf).is_err() || self.view.write(buf as u64, value).is_err()) {
            return ABSENT;
        }
        len
    }

    fn header_name(&mut self, ptr: i32, len: i32) -> Option<HeaderName> {
        HeaderName::from_bytes(&self.read(ptr, len)?).ok()
    }

    /// A `(name, value)` pair; `None` if either is invalid or the name is reserved.
    fn header_pair(
        &mut self,
        (name, name_len, value, value_len): (i32, i32, i32, i32),
        reserved: impl Fn(&HeaderName) -> bool,
    ) -> Option<(HeaderName, HeaderValue)> {
        let name = self.header_name(name, name_len).filter(|n| !reserved(n))?;
        let value = HeaderValue::from_maybe_shared(Bytes::from(self.read(value, value_len)?)).ok()?;
        Some((name, value))
    }
}

/// The read-only parts of [`HostEnv`] a call needs.
struct HostEnvInfo<'a> {
    plugin: &'a str,
    config: Option<&'a [u8]>,
}

/// Runs `f` with the call's exchange, the guest memory and the plugin's environment;
/// `None` outside a call (or before the memory is known).
fn with_call<R>(
    env: &mut FunctionEnvMut<'_, HostEnv>,
    f: impl FnOnce(&mut Exchange, &mut Guest<'_>, &HostEnvInfo<'_>) -> R,
) -> Option<R> {
    let (data, store) = env.data_and_store_mut();
    let HostEnv { plugin, config, memory, exchange, bytes_left } = data;
    let mut guest = Guest { view: memory.as_ref()?.view(&store), bytes_left };
    let info = HostEnvInfo { plugin, config: config.as_deref() };
    Some(f(exchange.as_mut()?, &mut guest, &info))
}

/// A getter: `pick` chooses the value (borrowed: nothing is copied but into the guest).
fn get<F>(env: &mut FunctionEnvMut<'_, HostEnv>, buf: i32, buf_len: i32, pick: F) -> i32
where
    F: for<'a> FnOnce(&'a Exchange, &'a HostEnvInfo<'a>) -> Option<&'a [u8]>,
{
    with_call(env, |ex, guest, info| guest.answer(buf, buf_len, pick(ex, info))).unwrap_or(ABSENT)
}

fn rg_log(mut env: FunctionEnvMut<'_, HostEnv>, level: i32, ptr: i32, len: i32) {
    let level = match level {
        0 => tracing::Level::ERROR,
        1 => tracing::Level::WARN,
        2 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    // Nothing is read for a line the log level drops.
    let enabled = match level {
        tracing::Level::ERROR => tracing::enabled!(target: "rustygate::plugin", tracing::Level::ERROR),
        tracing::Level::WARN => tracing::enabled!(target: "rustygate::plugin", tracing::Level::WARN),
        tracing::Level::INFO => tracing::enabled!(target: "rustygate::plugin", tracing::Level::INFO),
        _ => tracing::enabled!(target: "rustygate::plugin", tracing::Level::DEBUG),
    };
    if !enabled {
        return;
    }
    with_call(&mut env, |_, guest, info| {
        let Some(bytes) = guest.read(ptr, len.min(MAX_LOG_LINE as i32)) else { return };
        let message = String::from_utf8_lossy(&bytes);
        let plugin = info.plugin;
        match level {
            tracing::Level::ERROR => tracing::error!(target: "rustygate::plugin", plugin, "{message}"),
            tracing::Level::WARN => tracing::warn!(target: "rustygate::plugin", plugin, "{message}"),
            tracing::Level::INFO => tracing::info!(target: "rustygate::plugin", plugin, "{message}"),
            _ => tracing::debug!(target: "rustygate::plugin", plugin, "{message}"),
        }
    });
}

fn rg_get_config(mut env: FunctionEnvMut<'_, HostEnv>, buf: i32, buf_len: i32) -> i32 {
    get(&mut env, buf, buf_len, |_, info| info.config)
}

fn rg_get_method(mut env: FunctionEnvMut<'_, HostEnv>, buf: i32, buf_len: i32) -> i32 {
    get(&mut env, buf, buf_len, |ex, _| Some(ex.method.as_str().as_bytes()))
}

fn rg_get_path(mut env: FunctionEnvMut<'_, HostEnv>, buf: i32, buf_len: i32) -> i32 {
    get(&mut env, buf, buf_len, |ex, _| Some(ex.path.as_bytes()))
}

fn rg_get_query(mut env: FunctionEnvMut<'_, HostEnv>, buf: i32, buf_len: i32) -> i32 {
    get(&mut env, buf, buf_len, |ex, _| ex.query.as_deref().map(str::as_bytes))
}

fn rg_set_path(mut env: FunctionEnvMut<'_, HostEnv>, ptr: i32, len: i32) -> i32 {
    with_call(&mut env, |ex, guest, _| {
        let Some(path) = guest.read(ptr, len).and_then(|b| String::from_utf8(b).ok()) else { return REFUSED };
        // A path only: no query, no fragment, a valid URI path, and in normal form (no dot
        // segment, `//` or encoded separator: what the backend gets is what was decided on).
        let normal = |p: &str| matches!(crate::normalize::path(p), Ok(n) if n.path == p && !n.encoded_slash);
        let valid = ex.hook == Hook::Request
            && path.starts_with('/')
            && !path.contains(['?', '#'])
            && path.parse::<crate::http_types::uri::PathAndQuery>().is_ok()
            && normal(&path);
        if !valid {
            return REFUSED;
        }
        ex.path = path;
        0
    })
    .unwrap_or(REFUSED)
}

/// `rg_get_request_header` / `rg_get_response_header`: the first value of a header.
fn get_header(
    env: &mut FunctionEnvMut<'_, HostEnv>,
    (name, name_len, buf, buf_len): (i32, i32, i32, i32),
    response: bool,
) -> i32 {
    with_call(env, |ex, guest, _| {
        let headers = if response { &ex.response_headers } else { &ex.request_headers };
        let value = guest.header_name(name, name_len).and_then(|n| headers.get(n));
        guest.answer(buf, buf_len, value.map(HeaderValue::as_bytes))
    })
    .unwrap_or(ABSENT)
}

fn rg_get_request_header(
    mut env: FunctionEnvMut<'_, HostEnv>,
    name: i32,
    name_len: i32,
    buf: i32,
    buf_len: i32,
) -> i32 {
    get_header(&mut env, (name, name_len, buf, buf_len), false)
}

/// Request headers a plugin may not set or remove: hop-by-hop ones, those the gateway sets
/// itself (`Host`, `Content-Length`, `X-Forwarded-*`, `X-Request-Id`...), and the route's JWT
/// claim headers (the gateway's word on who the caller is).
pub(super) fn request_header_reserved(ex: &Exchange, name: &HeaderName) -> bool {
    h::is_hop_by_hop(name)
        || h::REQUEST_SET_BY_GATEWAY.contains(name)
        || name == header::VIA
        || name == header::CONNECTION
        || ex.claim_headers.as_ref().is_some_and(|policy| policy.strip.contains(name))
        || ex.header_rules.reserves(name)
}

/// Response headers a plugin may not set or remove: hop-by-hop ones, `Content-Length` (the
/// body's own) and `X-Request-Id`.
fn response_header_reserved(name: &HeaderName) -> bool {
    h::is_hop_by_hop(name) || h::RESPONSE_SET_BY_GATEWAY.contains(name)
}

/// Sets a request header (`on_request` only) or a response header; `-1` if refused.
fn set_header(env: &mut FunctionEnvMut<'_, HostEnv>, pair: (i32, i32, i32, i32), response: bool) -> i32 {
    with_call(env, |ex, guest, _| {
        if !response && ex.hook != Hook::Request {
            return REFUSED;
        }
        let Some((name, value)) = guest
            .header_pair(pair, |n| if response { response_header_reserved(n) } else { request_header_reserved(ex, n) })
        else {
            return REFUSED;
        };
        let headers = if response { &mut ex.response_headers } else { &mut ex.request_headers };
        if !headers.contains_key(&name) && headers.len() >= MAX_HEADERS {
            return REFUSED;
        }
        headers.insert(name, value);
        0
    })
    .unwrap_or(REFUSED)
}

fn rg_set_request_header(
    mut env: FunctionEnvMut<'_, HostEnv>,
    name: i32,
    name_len: i32,
    value: i32,
    value_len: i32,
) -> i32 {
    set_header(&mut env, (name, name_len, value, value_len), false)
}

fn remove_header(env: &mut FunctionEnvMut<'_, HostEnv>, name: i32, name_len: i32, response: bool) {
    with_call(env, |ex, guest, _| {
        let Some(name) = guest.header_name(name, name_len) else { return };
        match (response, ex.hook) {
            (false, Hook::Request) if !request_header_reserved(ex, &name) => {
                ex.request_headers.remove(name);
            }
            (true, _) if !response_header_reserved(&name) => {
                ex.response_headers.remove(name);
            }
            _ => {}
        }
    });
}

fn rg_remove_request_header(mut env: FunctionEnvMut<'_, HostEnv>, name: i32, name_len: i32) {
    remove_header(&mut env, name, name_len, false);
}

fn rg_get_response_status(mut env: FunctionEnvMut<'_, HostEnv>) -> i32 {
    with_call(&mut env, |ex, _, _| ex.status.map_or(ABSENT, |s| i32::from(s.as_u16()))).unwrap_or(ABSENT)
}

fn rg_get_response_header(
    mut env: FunctionEnvMut<'_, HostEnv>,
    name: i32,
    name_len: i32,
    buf: i32,
    buf_len: i32,
) -> i32 {
    get_header(&mut env, (name, name_len, buf, buf_len), true)
}

fn rg_set_response_header(
    mut env: FunctionEnvMut<'_, HostEnv>,
    name: i32,
    name_len: i32,
    value: i32,
    value_len: i32,
) -> i32 {
    set_header(&mut env, (name, name_len, value, value_len), true)
}

fn rg_remove_response_header(mut env: FunctionEnvMut<'_, HostEnv>, name: i32, name_len: i32) {
    remove_header(&mut env, name, name_len, true);
}

fn rg_respond(mut env: FunctionEnvMut<'_, HostEnv>, status: i32, body: i32, body_len: i32) -> i32 {
    with_call(&mut env, |ex, guest, _| {
        let status =
            u16::try_from(status).ok().filter(|s| (200..=599).contains(s)).and_then(|s| StatusCode::from_u16(s).ok());
        match (status, guest.read(body, body_len)) {
            (Some(status), Some(body)) => {
                ex.respond = Some((status, Bytes::from(body)));
                0
            }
            _ => REFUSED,
        }
    })
    .unwrap_or(REFUSED)
}
