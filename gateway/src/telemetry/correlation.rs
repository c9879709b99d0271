//! Log correlation: while a request's future runs, the worker thread knows the request's trace
//! and span ids, and every JSON log line emitted meanwhile carries them (`trace_id`, `span_id`).
//!
//! A thread-local set around each poll is enough because an actix worker is a single-threaded
//! event loop: a request only runs while it is being polled. This costs two stores per poll,
//! where a `tracing` span per request would cost an allocation and its field formatting.

use std::{
    cell::Cell,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use opentelemetry::trace::{SpanId, TraceId};

/// The ids a log line is correlated with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceIds {
    /// The trace.
    pub trace_id: TraceId,
    /// The gateway's span (`SpanId::INVALID` when the gateway made none: the ids then come
    /// from the caller's `traceparent` and only the trace id is logged).
    pub span_id: SpanId,
}

thread_local! {
    static CURRENT: Cell<Option<TraceIds>> = const { Cell::new(None) };
}

/// The ids of the request running on this thread, if any.
pub fn current() -> Option<TraceIds> {
    CURRENT.with(Cell::get)
}

pin_project_lite::pin_project! {
    /// A future that runs with `ids` as this thread's current trace ids.
    pub struct Correlated<F> {
        ids: Option<TraceIds>,
        #[pin]
        inner: F,
    }
}

/// Runs `inner` with `ids` current for its log lines.
pub fn correlate<F: Future>(ids: Option<TraceIds>, inner: F) -> Correlated<F> {
    Correlated { ids, inner }
}

impl<F: Future> Future for Correlated<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let previous = CURRENT.with(|c| c.replace(*this.ids));
        // Restored even if the inner poll panics, so a later request's lines are not mislabelled.
        struct Restore(Option<TraceIds>);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(self.0));
            }
        }
        let _restore = Restore(previous);
        this.inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_current_only_while_the_future_runs() {
        let ids = TraceIds { trace_id: TraceId::from_bytes([1; 16]), span_id: SpanId::from_bytes([2; 8]) };
        assert_eq!(current(), None);
        let seen = futures_util::FutureExt::now_or_never(correlate(Some(ids), async { current() }));
        assert_eq!(seen, Some(Some(ids)));
        assert_eq!(current(), None);
    }
}
