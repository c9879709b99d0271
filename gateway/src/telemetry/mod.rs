//! Telemetry: structured logging, OpenTelemetry tracing, and the correlation between them.

pub mod correlation;
pub mod json_line;
pub mod logging;
pub mod otel;
