//! OpenTelemetry tracing: the tracer and its OTLP export pipeline, built once at start from the
//! `tracing:` section and the `OTEL_*` environment ([`settings`]).
//!
//! The pipeline records one SERVER span per request and one CLIENT span per upstream attempt
//! ([`spans`]) as a compact record ([`record`]), sampled with the SDK's sampler. Finished
//! records go through a bounded queue to an export task on the background runtime
//! ([`export`]), which turns them into OpenTelemetry spans and hands them to the OTLP exporter;
//! the request path never waits for the collector, and never builds attribute strings.

mod export;
pub mod record;
pub mod settings;
pub mod spans;
mod tracer;

pub use self::{
    record::TracedRoute,
    settings::{SamplerChoice, Settings},
    spans::{AttemptSpan, RequestTrace},
    tracer::Tracing,
};
