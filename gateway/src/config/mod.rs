//! The configuration: its schema ([`schema`]: plain serde types mirroring the YAML file, with
//! their defaults), loading ([`load`]: YAML, `${VAR}` expansion, every problem collected with its
//! location), semantic checks ([`validate`]) and the parsers of its values ([`values`]).
//! Turning a config into runtime objects is `crate::runtime`'s.
//!
//! Keys of features this build lacks (`plugins` without the `wasm` feature) are accepted by the
//! parser only so that validation can reject them with a clear message: a policy that is
//! silently ignored would be a security hole.
//!
//! This module only declares and re-exports: its children depend on each other in one
//! direction (`units`, `values`, `issues`, `suggest` ← `schema` ← `validate` ← `load`).

mod issues;
pub mod load;
mod locate;
mod schema;
mod suggest;
pub mod units;
pub mod validate;
pub mod values;

pub use issues::{ConfigError, ConfigIssue};
pub use load::{load_file, load_str};
pub use schema::*;
pub use units::{ByteSize, HumanDuration};
pub use values::redacted_url;
