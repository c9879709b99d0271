//! RustyGate: an observable HTTP reverse proxy / API gateway on actix-web.
//!
//! The life of a configuration: [`config`] parses and validates YAML into plain types,
//! [`runtime`] compiles them into an immutable snapshot (route table, upstream pools), and
//! [`server`] serves requests through [`pipeline`], which reads the current snapshot once per
//! request. See `docs/architecture.md` for the picture.

// No unsafe code, except where a dependency's trait has unsafe methods to implement (the
// plugin memory cap: wasmer's `Tunables`) and where `http` marks skipping a validation unsafe
// (a header value handed from `http` 0.2 to 1.x or back, valid under both: `http_compat`);
// each such place says so.
#![deny(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod acme;
pub mod admin;
pub mod background;
pub mod config;
pub mod config_watch;
pub mod error;
pub mod filters;
pub mod frontend;
pub mod fuzzing;
pub mod gateway;
pub mod grpc;
pub mod headers;
pub mod healthcheck;
pub mod http_compat;
pub mod http_types;
pub mod metrics;
pub mod normalize;
pub mod pipeline;
pub mod plugins;
pub mod proxy;
pub mod reload;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod testing;
pub mod tls;
pub mod token;
pub mod upstream;
pub mod websocket;

/// `docs/architecture.md`, whose worked example of a filter is compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../docs/architecture.md")]
pub struct ArchitectureDoc;
