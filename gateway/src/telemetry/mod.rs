//! Telemetry: structured logging now; OpenTelemetry tracing plugs in here later.

pub mod logging;
