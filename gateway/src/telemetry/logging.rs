//! Log output: `tracing` events rendered as JSON lines ([`JsonLine`](super::json_line::JsonLine),
//! correlated with the current request's trace) or pretty text, on stdout through a
//! non-blocking, lossy writer. Under overload lines are dropped and counted
//! (`rustygate_log_lines_dropped_total`) instead of blocking a request.

use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogConfig, LogFormat};

/// The `tracing` target of access log lines.
pub const ACCESS_TARGET: &str = "rustygate::access";

/// Lines the writer could buffer before dropping; at ~400 bytes a line this bounds the buffer.
const BUFFERED_LINES: usize = 64 * 1024;

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

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

/// Lines dropped so far, if logging was initialised by [`init`].
pub fn dropped_lines() -> Option<u64> {
    DROPPED.get().map(|c| c.dropped_lines() as u64)
}
