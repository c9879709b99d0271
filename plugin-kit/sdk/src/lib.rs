//! Safe wrappers over the RustyGate plugin host ABI (version 1).
//!
//! A plugin is a `cdylib` built for `wasm32-unknown-unknown`. It exports `rg_abi_version` and one
//! or both of `on_request` / `on_response` (see [`plugin!`]), and talks to the gateway only through
//! the functions of the `rustygate` import module, wrapped here.
//!
//! ```ignore
//! use rustygate_plugin_sdk::{Action, request};
//!
//! fn on_request() -> Action {
//!     request::set_header("x-hello", "world");
//!     Action::Continue
//! }
//!
//! rustygate_plugin_sdk::plugin! { on_request: on_request }
//! ```
#![deny(missing_docs)]

/// The host ABI version this SDK speaks; exported by [`plugin!`] as `rg_abi_version`.
pub const ABI_VERSION: i32 = 1;

/// What the gateway does after a hook returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Carry on: forward the request upstream / send the response to the client.
    Continue,
    /// Stop: the plugin produced the response (see [`respond`]).
    Respond,
}

impl Action {
    /// The value a hook returns to the host: `0` for `Continue`, `1` for `Respond`.
    pub const fn as_i32(self) -> i32 {
        match self {
            Action::Continue => 0,
            Action::Respond => 1,
        }
    }
}

/// The raw imports. Pointers and lengths are `i32` in the wasm32 ABI (`usize` is 32 bits there).
#[cfg(target_arch = "wasm32")]
mod sys {
    #[link(wasm_import_module = "rustygate")]
    unsafe extern "C" {
        pub fn rg_log(level: i32, ptr: *const u8, len: usize);
        pub fn rg_get_config(buf: *mut u8, buf_len: usize) -> i32;
        pub fn rg_get_method(buf: *mut u8, buf_len: usize) -> i32;
        pub fn rg_get_path(buf: *mut u8, buf_len: usize) -> i32;
        pub fn rg_get_query(buf: *mut u8, buf_len: usize) -> i32;
        pub fn rg_set_path(ptr: *const u8, len: usize) -> i32;
        pub fn rg_get_request_header(name: *const u8, name_len: usize, buf: *mut u8, buf_len: usize) -> i32;
        pub fn rg_set_request_header(name: *const u8, name_len: usize, value: *const u8, value_len: usize) -> i32;
        pub fn rg_remove_request_header(name: *const u8, name_len: usize);
        pub fn rg_get_response_status() -> i32;
        pub fn rg_get_response_header(name: *const u8, name_len: usize, buf: *mut u8, buf_len: usize) -> i32;
        pub fn rg_set_response_header(name: *const u8, name_len: usize, value: *const u8, value_len: usize) -> i32;
        pub fn rg_remove_response_header(name: *const u8, name_len: usize);
        pub fn rg_respond(status: i32, body: *const u8, body_len: usize) -> i32;
    }
}

/// Host-target stand-ins with the same signatures, so the SDK checks, lints and documents on
/// the build machine; calling any of them panics.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::missing_safety_doc)]
mod sys {
    fn outside_gateway() -> ! {
        panic!("rustygate plugins run inside the gateway (build for wasm32-unknown-unknown)")
    }
    pub unsafe fn rg_log(_: i32, _: *const u8, _: usize) {
        outside_gateway()
    }
    pub unsafe fn rg_get_config(_: *mut u8, _: usize) -> i32 {
        outside_gateway()
    }
    pub unsafe fn rg_get_method(_: *mut u8, _: usize) -> i32 {
        outside_gateway()
    }
    pub unsafe fn rg_get_path(_: *mut u8, _: usize) -> i32 {
        outside_gateway()
    }
    pub unsafe fn rg_get_query(_: *mut u8, _: usize) -> i32 {
        outside_gateway()
    }
    pub unsafe fn rg_set_path(_: *const u8, _: usize) -> i32 {
        outside_gateway()
    }
    pub unsafe fn rg_get_request_header(_: *const u8, _: usize, _: *mut u8, _: usize) -> i32 {
        outside_gateway()
    }
    pub unsafe fn rg_set_request_header(_: *const u8, _: usize, _: *const u8, _: usize) -> i32 {
        outside_gateway()
    }
    pub unsafe fn rg_remove_request_header(_: *const u8, _: usize) {
        outside_gateway()
    }
    pub unsafe fn rg_get_response_status() -> i32 {
        outside_gateway()
    }
    pub unsafe fn rg_get_response_header(_: *const u8, _: usize, _: *mut u8, _: usize) -> i32 {
        outside_gateway()
    }
    pub unsafe fn rg_set_response_header(_: *const u8, _: usize, _: *const u8, _: usize) -> i32 {
        outside_gateway()
    }
    pub unsafe fn rg_remove_response_header(_: *const u8, _: usize) {
        outside_gateway()
    }
    pub unsafe fn rg_respond(_: i32, _: *const u8, _: usize) -> i32 {
        outside_gateway()
    }
}

/// Reads a value with the getter convention: the host copies at most `buf_len` bytes into the
/// buffer and returns the value's full length (`-1` if absent); a value longer than the first
/// buffer is fetched again into one of exactly its length.
fn read_value(get: impl Fn(*mut u8, usize) -> i32) -> Option<String> {
    let mut small = [0u8; 256];
    let len = usize::try_from(get(small.as_mut_ptr(), small.len())).ok()?;
    if len <= small.len() {
        return Some(String::from_utf8_lossy(&small[..len]).into_owned());
    }
    let mut big = vec![0u8; len];
    let len = usize::try_from(get(big.as_mut_ptr(), big.len())).ok()?;
    big.truncate(len); // the value cannot have grown during a hook; never read past the buffer anyway
    Some(String::from_utf8_lossy(&big).into_owned())
}

/// Writes to the gateway's log (the plugin's name is added by the host).
pub mod log {
    fn write(level: i32, msg: &str) {
        // SAFETY: the host only reads `msg.len()` bytes from `msg.as_ptr()`.
        unsafe { crate::sys::rg_log(level, msg.as_ptr(), msg.len()) }
    }
    /// Logs at level `error`.
    pub fn error(msg: &str) {
        write(0, msg)
    }
    /// Logs at level `warn`.
    pub fn warn(msg: &str) {
        write(1, msg)
    }
    /// Logs at level `info`.
    pub fn info(msg: &str) {
        write(2, msg)
    }
    /// Logs at level `debug`.
    pub fn debug(msg: &str) {
        write(3, msg)
    }
}

/// The plugin's configuration from the gateway config, as JSON text; `None` if it has none.
pub fn config_json() -> Option<String> {
    // SAFETY: the host writes at most `len` bytes to `buf`.
    read_value(|buf, len| unsafe { sys::rg_get_config(buf, len) })
}

/// The plugin's configuration deserialised into `T`; an absent (or empty) config reads as `{}`,
/// so a `#[serde(default)]` struct gets its defaults.
pub fn config<T: serde::de::DeserializeOwned>() -> Result<T, serde_json::Error> {
    let json = config_json().filter(|c| !c.trim().is_empty());
    serde_json::from_str(json.as_deref().unwrap_or("{}"))
}

/// The request as it will be (or was) sent upstream.
pub mod request {
    use crate::{read_value, sys};

    /// The request method, e.g. `GET`.
    pub fn method() -> String {
        // SAFETY: the host writes at most `len` bytes to `buf`.
        read_value(|buf, len| unsafe { sys::rg_get_method(buf, len) }).unwrap_or_default()
    }
    /// The request path, without the query string.
    pub fn path() -> String {
        // SAFETY: as above.
        read_value(|buf, len| unsafe { sys::rg_get_path(buf, len) }).unwrap_or_default()
    }
    /// The query string without the `?`; `None` if the request has none.
    pub fn query() -> Option<String> {
        // SAFETY: as above.
        read_value(|buf, len| unsafe { sys::rg_get_query(buf, len) })
    }
    /// Rewrites the path sent upstream; `false` if the host refused it (e.g. not a valid path).
    pub fn set_path(path: &str) -> bool {
        // SAFETY: the host only reads `path.len()` bytes.
        unsafe { sys::rg_set_path(path.as_ptr(), path.len()) == 0 }
    }
    /// A request header's value (names are case-insensitive); `None` if absent.
    pub fn header(name: &str) -> Option<String> {
        // SAFETY: the host reads `name` and writes at most `len` bytes to `buf`.
        read_value(|buf, len| unsafe { sys::rg_get_request_header(name.as_ptr(), name.len(), buf, len) })
    }
    /// Sets (replaces) a request header; `false` if the host refused the name or value.
    pub fn set_header(name: &str, value: &str) -> bool {
        // SAFETY: the host only reads the two slices.
        unsafe { sys::rg_set_request_header(name.as_ptr(), name.len(), value.as_ptr(), value.len()) == 0 }
    }
    /// Removes a request header (all its values).
    pub fn remove_header(name: &str) {
        // SAFETY: the host only reads `name`.
        unsafe { sys::rg_remove_request_header(name.as_ptr(), name.len()) }
    }
}

/// The response: the upstream's in `on_response`; in `on_request`, headers set here are added to
/// whatever response the client gets (including one from [`respond`]).
pub mod response {
    use crate::{read_value, sys};

    /// The response status; `None` before there is one (i.e. in `on_request`).
    pub fn status() -> Option<u16> {
        // SAFETY: takes no pointers.
        let status = unsafe { sys::rg_get_response_status() };
        if status <= 0 { None } else { u16::try_from(status).ok() }
    }
    /// A response header's value (names are case-insensitive); `None` if absent.
    pub fn header(name: &str) -> Option<String> {
        // SAFETY: the host reads `name` and writes at most `len` bytes to `buf`.
        read_value(|buf, len| unsafe { sys::rg_get_response_header(name.as_ptr(), name.len(), buf, len) })
    }
    /// Sets (replaces) a response header; `false` if the host refused the name or value.
    pub fn set_header(name: &str, value: &str) -> bool {
        // SAFETY: the host only reads the two slices.
        unsafe { sys::rg_set_response_header(name.as_ptr(), name.len(), value.as_ptr(), value.len()) == 0 }
    }
    /// Removes a response header (all its values).
    pub fn remove_header(name: &str) {
        // SAFETY: the host only reads `name`.
        unsafe { sys::rg_remove_response_header(name.as_ptr(), name.len()) }
    }
}

/// Answers the client directly with `status` and `body` instead of forwarding the request.
/// Return the result from the hook: `return respond(403, b"...")`.
pub fn respond(status: u16, body: &[u8]) -> Action {
    // SAFETY: the host only reads `body.len()` bytes from `body.as_ptr()`.
    unsafe { sys::rg_respond(i32::from(status), body.as_ptr(), body.len()) };
    Action::Respond
}

/// Exports the plugin's entry points: `rg_abi_version` and the hooks given, each a
/// `fn() -> Action`. Either hook may be omitted:
///
/// ```ignore
/// rustygate_plugin_sdk::plugin! { on_request: check, on_response: stamp }
/// rustygate_plugin_sdk::plugin! { on_request: check }
/// rustygate_plugin_sdk::plugin! { on_response: stamp }
/// ```
#[macro_export]
macro_rules! plugin {
    (on_request: $req:path, on_response: $resp:path $(,)?) => {
        $crate::plugin!(@abi);
        $crate::plugin!(@hook "on_request" $req);
        $crate::plugin!(@hook "on_response" $resp);
    };
    (on_response: $resp:path, on_request: $req:path $(,)?) => {
        $crate::plugin! { on_request: $req, on_response: $resp }
    };
    (on_request: $req:path $(,)?) => {
        $crate::plugin!(@abi);
        $crate::plugin!(@hook "on_request" $req);
    };
    (on_response: $resp:path $(,)?) => {
        $crate::plugin!(@abi);
        $crate::plugin!(@hook "on_response" $resp);
    };
    (@abi) => {
        const _: () = {
            #[unsafe(export_name = "rg_abi_version")]
            pub extern "C" fn rustygate_abi_version() -> i32 {
                $crate::ABI_VERSION
            }
        };
    };
    // The export is renamed inside an anonymous const so a handler may itself be called
    // `on_request` / `on_response` without clashing with the exported symbol.
    (@hook $export:literal $handler:path) => {
        const _: () = {
            #[unsafe(export_name = $export)]
            pub extern "C" fn rustygate_hook() -> i32 {
                let handler: fn() -> $crate::Action = $handler;
                handler().as_i32()
            }
        };
    };
}
