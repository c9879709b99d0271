//! Backend health, both kinds: active checks probe each backend on a timer ([`active`]);
//! passive health ejects a backend whose real attempts fail in a row ([`passive`]). A backend
//! is in rotation when the checks say healthy and it is not ejected.

pub mod active;
pub mod passive;

pub use active::spawn;
