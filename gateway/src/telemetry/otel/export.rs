//! The span queue: each finished request's record (its SERVER span and its attempts' CLIENT
//! spans) goes into a bounded queue that a task on the background runtime drains, turning the
//! records into OpenTelemetry spans and exporting them in batches. A request never waits for
//! the collector: when the queue is full, or an export fails, spans are dropped and counted
//! (`rustygate_tracing_spans_dropped_total`). While the collector is unreachable the task stops
//! exporting (and so stops paying for encoding) and tries again after a pause that grows from
//! 1 s to 5 s; the queue fills up meanwhile and what does not fit is dropped.
//!
//! Queueing a record costs the request a non-blocking channel push and a counter: the export
//! task is not woken per request (a cross-thread wake-up would cost more than the spans), only
//! when a batch's worth is waiting or when `scheduled_delay` has passed. Records dropped while
//! the collector fails are never turned into spans.
//!
//! The SDK's own batch processor is not used because it only logs the spans it drops (a gateway
//! user needs them as a metric), and it needs finished SDK spans, which cost the request path
//! more than a record.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
        mpsc as std_mpsc,
    },
    time::Duration,
};

use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::{
    error::{OTelSdkError, OTelSdkResult},
    trace::{SpanData, SpanExporter},
};
use prometheus::IntCounter;
use tokio::{
    sync::{Notify, mpsc},
    time::Instant,
};

use super::record::RequestRecord;

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
    /// Requests held before new ones are dropped (each holds one span, plus one per attempt).
    pub max_queue_size: usize,
    /// Spans per export call.
    pub max_export_batch_size: usize,
    /// Longest wait before a partial batch is sent.
    pub scheduled_delay: Duration,
    /// Time allowed for one export call.
    pub export_timeout: Duration,
}

/// What the request side and the export task share.
#[derive(Debug)]
struct Shared {
    /// Records in the channel (approximate: updated after each push and each drain).
    queued: AtomicUsize,
    /// Raised when `queued` reaches a batch's worth (a record per span, at least).
    batch_ready: Notify,
    batch_size: usize,
    dropped: IntCounter,
}

/// The request side of the queue: finished requests' records for the export task.
#[derive(Debug)]
pub struct SpanQueue {
    spans: std_mpsc::SyncSender<Box<RequestRecord>>,
    control: mpsc::UnboundedSender<Control>,
    shared: Arc<Shared>,
}

impl SpanQueue {
    /// Starts the export task on `runtime` and returns the queue feeding it.
    pub fn start<E: SpanExporter + 'static>(
        exporter: E,
        limits: QueueLimits,
        dropped: IntCounter,
        runtime: &tokio::runtime::Handle,
    ) -> Self {
        let (spans, rx) = std_mpsc::sync_channel(limits.max_queue_size);
        let (control, control_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queued: AtomicUsize::new(0),
            batch_ready: Notify::new(),
            batch_size: limits.max_export_batch_size,
            dropped,
        });
        let task = ExportTask {
            exporter,
            scope: InstrumentationScope::builder("rustygate").with_version(env!("CARGO_PKG_VERSION")).build(),
            limits,
            shared: shared.clone(),
            failing_since: None,
            retry_at: None,
            queue: rx,
            batch: Vec::with_capacity(limits.max_export_batch_size),
        };
        runtime.spawn(task.run(control_rx));
        Self { spans, control, shared }
    }

    fn ask(&self, make: impl FnOnce(std_mpsc::SyncSender<()>) -> Control, timeout: Duration) -> OTelSdkResult {
        let (ack, done) = std_mpsc::sync_channel(1);
        self.control.send(make(ack)).map_err(|_| OTelSdkError::AlreadyShutdown)?;
        done.recv_timeout(timeout).map_err(|_| OTelSdkError::Timeout(timeout))
    }

    /// Queues a finished request's record, or drops and counts its spans when the queue is full.
    pub fn push(&self, record: Box<RequestRecord>) {
        let spans = record.span_count() as u64;
        match self.spans.try_send(record) {
            Ok(()) => {
                if self.shared.queued.fetch_add(1, Ordering::Relaxed) + 1 == self.shared.batch_size {
                    self.shared.batch_ready.notify_one();
                }
            }
            Err(_) => self.shared.dropped.inc_by(spans),
        }
    }

    /// Exports everything queued now, waiting at most `timeout`.
    pub fn flush(&self, timeout: Duration) -> OTelSdkResult {
        self.ask(Control::Flush, timeout)
    }

    /// Exports everything queued and stops the exporter, waiting at most `timeout`.
    pub fn shutdown(&self, timeout: Duration) -> OTelSdkResult {
        self.ask(Control::Shutdown, timeout)
    }
}

struct ExportTask<E> {
    exporter: E,
    limits: QueueLimits,
    shared: Arc<Shared>,
    /// Set while exports fail: when the first failure happened.
    failing_since: Option<Instant>,
    /// While failing: no export before this instant (and the pause that led to it).
    retry_at: Option<(Instant, Duration)>,
    /// The receiving end of the queue.
    queue: std_mpsc::Receiver<Box<RequestRecord>>,
    /// The scope every span is reported under.
    scope: InstrumentationScope,
    /// Spans taken from the queue, not yet exported.
    batch: Vec<SpanData>,
}

impl<E: SpanExporter> ExportTask<E> {
    async fn run(mut self, mut control: mpsc::UnboundedReceiver<Control>) {
        let shared = self.shared.clone();
        let mut next_tick = Instant::now() + self.limits.scheduled_delay;
        loop {
            // While the collector fails, sleep through the pause whatever arrives. (A pause that
            // has passed stays recorded until the next export, which tries, so that a new
            // failure pauses longer.)
            let paused_until = self.retry_at.map(|(at, _)| at).filter(|at| *at > Instant::now());
            let wake_at = paused_until.unwrap_or(next_tick);
            let partial_too = tokio::select! {
                biased;
                ctl = control.recv() => {
                    let (ack, stop) = match ctl {
                        Some(Control::Flush(ack)) => (Some(ack), false),
                        Some(Control::Shutdown(ack)) => (Some(ack), true),
                        None => (None, true), // every processor handle is gone
                    };
                    // A flush is the last chance for these spans: try even if the collector
                    // failed a moment ago.
                    self.retry_at = None;
                    self.drain(true).await;
                    if stop {
                        let _ = self.exporter.shutdown();
                    }
                    if let Some(ack) = ack {
                        let _ = ack.send(());
                    }
                    if stop {
                        return;
                    }
                    continue;
                }
                _ = shared.batch_ready.notified(), if paused_until.is_none() => false,
                _ = tokio::time::sleep_until(wake_at) => {
                    next_tick = Instant::now() + self.limits.scheduled_delay;
                    true
                }
            };
            self.drain(partial_too).await;
        }
    }

    /// Exports what the queue holds in full batches, and the rest too if `partial_too`. While
    /// the collector is failing, records are dropped (and counted) without being converted.
    async fn drain(&mut self, partial_too: bool) {
        let max = self.limits.max_export_batch_size;
        loop {
            let mut taken = 0;
            while self.batch.len() < max {
                let Ok(record) = self.queue.try_recv() else { break };
                taken += 1;
                if self.paused() {
                    self.shared.dropped.inc_by(record.span_count() as u64);
                } else {
                    record.into_spans(&self.scope, &mut self.batch);
                }
            }
            self.shared.queued.fetch_sub(taken, Ordering::Relaxed);
            if self.batch.len() >= max || (partial_too && !self.batch.is_empty()) {
                self.export().await;
            } else {
                return;
            }
        }
    }

    /// Whether exports are paused after a failure.
    fn paused(&self) -> bool {
        self.retry_at.is_some_and(|(at, _)| Instant::now() < at)
    }

    /// Sends the batch (leaving it empty), or drops it while the collector is failing.
    async fn export(&mut self) {
        let spans = std::mem::replace(&mut self.batch, Vec::with_capacity(self.limits.max_export_batch_size));
        let n = spans.len() as u64;
        if self.paused() {
            self.shared.dropped.inc_by(n);
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
                self.shared.dropped.inc_by(n);
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
