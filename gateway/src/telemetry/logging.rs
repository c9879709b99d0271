//! Log output: `tracing` events rendered as JSON lines ([`JsonLine`](super::json_line::JsonLine),
//! correlated with the current request's trace) or pretty text, on stdout through a
//! non-blocking, lossy writer. Under overload lines are dropped and counted
//! (`rustygate_log_lines_dropped_total`) instead of blocking a request.

use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::{EnvFilter, Registry, fmt, prelude::*, reload};

use crate::config::{LogConfig, LogFormat};

/// The `tracing` target of access log lines.
pub const ACCESS_TARGET: &str = "rustygate::access";

/// Lines the writer could buffer before dropping; at ~400 bytes a line this bounds the buffer.
const BUFFERED_LINES: usize = 64 * 1024;

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Swaps the level filter when a configuration reload changes `log.level`.
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `log.level`. Keep the
/// returned guard alive for the life of the process: dropping it flushes and stops the writer.
pub fn init(config: &LogConfig) -> WorkerGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("rustygate-log")
        .finish(std::io::stdout());
    let _ = DROPPED.set(writer.error_counter());
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(&config.level));
    let (filter, handle) = reload::Layer::new(filter);
    let _ = FILTER.set(handle);
    let registry = tracing_subscriber::registry().with(filter).with(ClientParseErrors);
    let result = match config.format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .event_format(super::json_line::JsonLine)
                    .with_writer(writer)
                    .with_filter(NotClientParseError),
            )
            .try_init(),
        LogFormat::Pretty => {
            registry.with(fmt::layer().with_writer(writer).with_filter(NotClientParseError)).try_init()
        }
    };
    if let Err(e) = result {
        eprintln!("rustygate: logging was already initialised: {e}");
    }
    guard
}

/// Applies a reloaded `log.level`. `RUST_LOG`, when set, keeps overriding it (nothing changes,
/// and the result says so); `Err` if logging was not initialised by [`init`] or the level does
/// not parse (validation has checked it already).
pub fn set_level(level: &str) -> Result<bool, String> {
    if std::env::var_os("RUST_LOG").is_some() {
        return Ok(false);
    }
    let handle = FILTER.get().ok_or("logging is not initialised")?;
    let filter = EnvFilter::try_new(level).map_err(|e| format!("log.level {level:?}: {e}"))?;
    handle.reload(filter).map_err(|e| e.to_string())?;
    Ok(true)
}

/// Lines dropped so far, if logging was initialised by [`init`].
pub fn dropped_lines() -> Option<u64> {
    DROPPED.get().map(|c| c.dropped_lines() as u64)
}

/// Malformed requests actix refused before the gateway saw them (bad request line, too many
/// headers), counted for `rustygate_client_errors_total{reason="malformed_head"}`.
static CLIENT_PARSE_ERRORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Malformed requests actix refused so far (see [`CLIENT_PARSE_ERRORS`]).
pub fn client_parse_errors() -> u64 {
    CLIENT_PARSE_ERRORS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether an event is actix's ERROR line about a request it could not parse: the client's
/// fault, so a flood of them must not become a flood of ERROR lines.
fn is_client_parse_error(event: &tracing::Event<'_>) -> bool {
    let meta = event.metadata();
    if !meta.target().starts_with("actix_http::h1") || *meta.level() > tracing::Level::WARN {
        return false;
    }
    let mut message = Message(String::new());
    event.record(&mut message);
    message.0.contains("parse error")
}

/// The `message` field of an event.
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            use std::fmt::Write;
            let _ = write!(self.0, "{value:?}");
        }
    }
}

/// Counts actix's client parse errors and logs each again at DEBUG under the gateway's target.
struct ClientParseErrors;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ClientParseErrors {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if is_client_parse_error(event) {
            CLIENT_PARSE_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(target: "rustygate::client", "malformed request refused by the HTTP parser");
        }
    }
}

/// Keeps actix's client parse errors out of the log output (they are counted and logged at
/// DEBUG by [`ClientParseErrors`]).
struct NotClientParseError;

impl<S> tracing_subscriber::layer::Filter<S> for NotClientParseError {
    fn enabled(&self, _: &tracing::Metadata<'_>, _: &tracing_subscriber::layer::Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, _: &tracing_subscriber::layer::Context<'_, S>) -> bool {
        !is_client_parse_error(event)
    }
}
