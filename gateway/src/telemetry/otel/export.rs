//! The span queue: finished spans go into a bounded queue that a task on the background runtime
//! drains in batches to the OTLP exporter. A request never waits for the collector: when the
//! queue is full, or an export fails, spans are dropped and counted
//! (`rustygate_tracing_spans_dropped_total`). While the collector is unreachable the task stops
//! exporting (and so stops paying for encoding) and tries again after a pause that grows from
//! 1 s to 5 s, dropping what arrives meanwhile.
//!
//! The SDK's own batch processor is not used because it only logs the spans it drops; a
//! gateway user needs them as a metric.

use std::{
    sync::mpsc as std_mpsc,
    time::{Duration, Instant},
};

use opentelemetry::Context;
use opentelemetry_sdk::{
    error::{OTelSdkError, OTelSdkResult},
    trace::{Span, SpanData, SpanExporter, SpanProcessor},
};
use prometheus::IntCounter;
use tokio::sync::mpsc;

/// Pause before trying a failing collector again: doubles from the first to the last.
const RETRY_PAUSE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(5));

enum Control {
    /// Export everything queued, then answer.
    Flush(std_mpsc::SyncSender<()>),
    /// Flush, shut the exporter down, answer and stop.
    Shutdown(std_mpsc::SyncSender<()>),
}

/// Queue sizes and timings.
#[derive(Clone, Copy, Debug)]
pub struct QueueLimits {
    /// Spans held before new ones are dropped.
    pub max_queue_size: usize,
    /// Spans per export call.
    pub max_export_batch_size: usize,
    /// Longest wait before a partial batch is sent.
    pub scheduled_delay: Duration,
    /// Time allowed for one export call.
    pub export_timeout: Duration,
}

/// A [`SpanProcessor`] that queues finished spans for the export task.
#[derive(Debug)]
pub struct QueueProcessor {
    spans: mpsc::Sender<SpanData>,
    control: mpsc::UnboundedSender<Control>,
    dropped: IntCounter,
}

impl QueueProcessor {
    /// Starts the export task on `runtime` and returns the processor feeding it.
    pub fn start<E: SpanExporter + 'static>(
        exporter: E,
        limits: QueueLimits,
        dropped: IntCounter,
        runtime: &tokio::runtime::Handle,
    ) -> Self {
        let (spans, rx) = mpsc::channel(limits.max_queue_size);
        let (control, control_rx) = mpsc::unbounded_channel();
        let task = ExportTask { exporter, limits, dropped: dropped.clone(), failing_since: None, retry_at: None };
        runtime.spawn(task.run(rx, control_rx));
        Self { spans, control, dropped }
    }

    fn ask(&self, make: impl FnOnce(std_mpsc::SyncSender<()>) -> Control, timeout: Duration) -> OTelSdkResult {
        let (ack, done) = std_mpsc::sync_channel(1);
        self.control.send(make(ack)).map_err(|_| OTelSdkError::AlreadyShutdown)?;
        done.recv_timeout(timeout).map_err(|_| OTelSdkError::Timeout(timeout))
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.spans.try_send(span).is_err() {
            self.dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.ask(Control::Flush, Duration::from_secs(30))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.ask(Control::Shutdown, timeout)
    }
}

struct ExportTask<E> {
    exporter: E,
    limits: QueueLimits,
    dropped: IntCounter,
    /// Set while exports fail: when the first failure happened.
    failing_since: Option<Instant>,
    /// While failing: no export before this instant.
    retry_at: Option<(Instant, Duration)>,
}

impl<E: SpanExporter> ExportTask<E> {
    async fn run(mut self, mut spans: mpsc::Receiver<SpanData>, mut control: mpsc::UnboundedReceiver<Control>) {
        let max = self.limits.max_export_batch_size;
        let mut batch: Vec<SpanData> = Vec::with_capacity(max);
        let mut tick = tokio::time::interval(self.limits.scheduled_delay);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let room = max - batch.len();
            let send_now = tokio::select! {
                biased;
                ctl = control.recv() => {
                    let (ack, stop) = match ctl {
                        Some(Control::Flush(ack)) => (Some(ack), false),
                        Some(Control::Shutdown(ack)) => (Some(ack), true),
                        None => (None, true),
                    };
                    // A flush is the last chance for these spans: try even if the collector
                    // failed a moment ago.
                    self.retry_at = None;
                    while let Ok(span) = spans.try_recv() {
                        batch.push(span);
                        if batch.len() >= max {
                            self.export(&mut batch).await;
                        }
                    }
                    self.export(&mut batch).await;
                    if stop {
                        let _ = self.exporter.shutdown();
                    }
                    if let Some(ack) = ack {
                        let _ = ack.send(());
                    }
                    if stop {
                        return;
                    }
                    false
                }
                n = spans.recv_many(&mut batch, room) => {
                    if n == 0 {
                        self.export(&mut batch).await; // every processor handle is gone
                        return;
                    }
                    batch.len() >= max
                }
                _ = tick.tick() => !batch.is_empty(),
            };
            if send_now {
                self.export(&mut batch).await;
            }
        }
    }

    /// Sends `batch` (leaving it empty), or drops it while the collector is failing.
    async fn export(&mut self, batch: &mut Vec<SpanData>) {
        if batch.is_empty() {
            return;
        }
        let spans = std::mem::replace(batch, Vec::with_capacity(self.limits.max_export_batch_size));
        let n = spans.len() as u64;
        if let Some((at, _)) = self.retry_at
            && Instant::now() < at
        {
            self.dropped.inc_by(n);
            return;
        }
        let result = match tokio::time::timeout(self.limits.export_timeout, self.exporter.export(spans)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.limits.export_timeout)),
        };
        match result {
            Ok(()) => {
                if let Some(since) = self.failing_since.take() {
                    tracing::info!(failed_for_s = since.elapsed().as_secs(), "span export works again");
                }
                self.retry_at = None;
            }
            Err(error) => {
                self.dropped.inc_by(n);
                let pause = match self.retry_at {
                    None => RETRY_PAUSE.0,
                    Some((_, last)) => (last * 2).min(RETRY_PAUSE.1),
                };
                self.retry_at = Some((Instant::now() + pause, pause));
                if self.failing_since.is_none() {
                    self.failing_since = Some(Instant::now());
                    tracing::warn!(%error, "span export failed; spans are dropped until the collector answers");
                }
            }
        }
    }
}
