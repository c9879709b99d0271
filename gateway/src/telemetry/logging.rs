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
    let registry = tracing_subscriber::registry().with(filter);
    let result = match config.format {
        LogFormat::Json => {
            registry.with(fmt::layer().event_format(super::json_line::JsonLine).with_writer(writer)).try_init()
        }
        LogFormat::Pretty => registry.with(fmt::layer().with_writer(writer)).try_init(),
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
