//! Per-request state carried through the pipeline, and [`Finish`]: the record of a request that
//! is written — metrics and one access log line — exactly once, when it is dropped.

use std::{cell::Cell, rc::Rc, sync::Arc, time::Instant};

use super::{
    message::{RequestHead, Response},
    session::{LogFields, Session},
};
use crate::{
    error::GatewayError,
    gateway::Gateway,
    http_types::{Method, StatusCode},
    metrics::method_label,
    routing::Route,
    runtime::Runtime,
    telemetry::{correlation::TraceIds, logging::ACCESS_TARGET, otel::RequestTrace},
    upstream::Backend,
};

/// The `route` label of requests no route matched.
pub const UNMATCHED: &str = "(unmatched)";

/// What the driver knows about one request: the filters' [`Session`] plus the bookkeeping
/// the record needs (snapshot, route, backend, attempts, bytes, the error answered).
pub struct RequestCtx {
    gateway: Arc<Gateway>,
    /// The runtime snapshot this request uses from start to end.
    pub runtime: Arc<Runtime>,
    start: Instant,
    method: Method,
    /// The access log's fields (`path` and what filters change of it).
    log: LogFields,
    /// What the filters see.
    pub session: Session,
    /// The ids log lines carry: the SERVER span's, or else the caller's trace id.
    pub trace_ids: Option<TraceIds>,
    route: Option<Arc<Route>>,
    /// How many filters of the route's chain ran their `request` phase.
    entered: usize,
    backend: Option<InFlight>,
    attempts: u32,
    bytes_in: Rc<Cell<u64>>,
    /// Why the gateway answered itself, if it did.
    pub error: Option<GatewayError>,
    /// The WebSocket session this request opened, if it did (how it ended goes in its log line).
    pub websocket: Option<Rc<crate::websocket::Record>>,
    /// The request is a gRPC call (`content-type: application/grpc`).
    pub grpc: bool,
    /// The `grpc_status` label of its answer's head, once there is one.
    pub grpc_status: Option<&'static str>,
    /// The trailers of its answer's body, where a gRPC call's status comes when the head had none.
    pub trailers: Option<super::message::Trailers>,
    /// The record (metrics, span, access line) has been written.
    recorded: bool,
}

/// Counts a request as in flight on a backend while it lives.
struct InFlight(Arc<Backend>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl RequestCtx {
    /// Starts the record of a request.
    pub fn new(gateway: Arc<Gateway>, runtime: Arc<Runtime>, session: Session, bytes_in: Rc<Cell<u64>>) -> Self {
        let uri = &session.head.uri;
        let target = match (runtime.access_log, runtime.log_query, uri.query()) {
            (false, ..) => String::new(), // only the access log reads it
            (true, true, Some(q)) => {
                let q = crate::filters::jwt::token::redact_query(q, &runtime.query_token_params);
                format!("{}?{q}", uri.path())
            }
            _ => uri.path().to_owned(),
        };
        let grpc = crate::grpc::is_call(&session.head.headers);
        Self {
            gateway,
            start: Instant::now(),
            method: session.head.method.clone(),
            log: LogFields { target },
            trace_ids: session.trace.as_ref().map(RequestTrace::ids).or_else(|| incoming_trace_ids(&session.head)),
            session,
            route: None,
            entered: 0,
            backend: None,
            attempts: 0,
            bytes_in,
            error: None,
            websocket: None,
            grpc,
            grpc_status: None,
            trailers: None,
            recorded: false,
            runtime,
        }
    }

    /// The request body's byte counter.
    pub fn bytes_in(&self) -> Rc<Cell<u64>> {
        self.bytes_in.clone()
    }

    /// The gateway's metrics.
    pub fn gateway_metrics(&self) -> &crate::metrics::Metrics {
        &self.gateway.metrics
    }

    /// The gateway (for its tracer).
    pub fn gateway(&self) -> Arc<Gateway> {
        self.gateway.clone()
    }

    /// Records the matched route (from here on the request counts as in flight on it).
    pub fn enter_route(&mut self, route: Arc<Route>) {
        route.metrics.in_flight.inc();
        if let Some(trace) = &mut self.session.trace {
            trace.enter_route(|| route.clone());
        }
        self.route = Some(route);
    }

    /// Notes that the route's `n`th filter ran its `request` phase (so it takes part in the
    /// later ones).
    pub fn enter_filter(&mut self, n: usize) {
        self.entered = n + 1;
    }

    /// The matched route, once there is one.
    pub fn route(&self) -> Option<Arc<Route>> {
        self.route.clone()
    }

    /// Records the backend chosen for an attempt.
    pub fn enter_backend(&mut self, backend: Arc<Backend>) {
        backend.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.attempts += 1;
        self.backend = Some(InFlight(backend));
    }

    /// Counts the outcome of the current attempt in the backend metrics.
    pub fn record_attempt(&self, result: &Result<Response, GatewayError>) {
        let (Some(route), Some(InFlight(backend))) = (&self.route, &self.backend) else {
            return;
        };
        let m = &self.gateway.metrics;
        let upstream = &*route.upstream.name;
        let (outcome, failure) = match result {
            Ok(resp) => {
                let s = resp.status;
                let class = match s.as_u16() {
                    100..=199 => "1xx",
                    200..=299 => "2xx",
                    300..=399 => "3xx",
                    400..=499 => "4xx",
                    _ => "5xx",
                };
                (class, s.is_server_error().then_some("status_5xx"))
            }
            Err(e) => {
                let reason = e.backend_reason().unwrap_or("error");
                if let GatewayError::UpstreamTls { reason: tls, detail } = e {
                    m.upstream_tls_errors_total.with_label_values(&[upstream, tls]).inc();
                    tracing::warn!(upstream, backend = &*backend.label, reason = *tls, error = %detail, "TLS to the backend failed");
                }
                backend.last_error.store(Some(Arc::new(e.to_string())));
                (reason, Some(reason))
            }
        };
        m.backend_requests_total.with_label_values(&[upstream, &backend.label, outcome]).inc();
        if let Some(reason) = failure {
            m.backend_failures_total.with_label_values(&[upstream, &backend.label, reason]).inc();
        }
    }

    /// Turns the context into the record written when the response ends.
    pub fn finish(self, status: StatusCode) -> Finish {
        Finish { ctx: self, status, bytes_out: 0, completed: false }
    }
}

/// The trace id of an incoming W3C `traceparent` (no span of the gateway's own): with tracing
/// off, log lines still correlate with the caller's trace.
fn incoming_trace_ids(head: &RequestHead) -> Option<TraceIds> {
    let tp = head.headers.get(crate::telemetry::otel::spans::TRACEPARENT)?.to_str().ok()?;
    let mut parts = tp.split('-');
    let (ver, id) = (parts.next()?, parts.next()?);
    if ver.len() != 2 || id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let trace_id = opentelemetry::trace::TraceId::from_hex(id).ok()?;
    (trace_id != opentelemetry::trace::TraceId::INVALID)
        .then_some(TraceIds { trace_id, span_id: opentelemetry::trace::SpanId::INVALID })
}

/// The end of a request: dropped when the response body has been sent, or when the client went
/// away mid-response. Dropping it writes the metrics and the access log line.
pub struct Finish {
    ctx: RequestCtx,
    status: StatusCode,
    /// Response body bytes sent so far.
    pub bytes_out: u64,
    /// Whether the response body was sent to the end.
    pub completed: bool,
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.ctx.record(self.status, self.bytes_out, self.completed);
    }
}

/// actix drops the handler before any response exists when the client's side fails (a broken
/// chunked body, a reset, a read error) or at a forced stop. The request is still finished,
/// exactly once: counted with 499 ("client closed request", as NGINX logs it) and logged.
impl Drop for RequestCtx {
    fn drop(&mut self) {
        if !self.recorded {
            self.error.get_or_insert(GatewayError::ClientGone);
            self.record(GatewayError::ClientGone.status(), 0, false);
        }
    }
}

impl RequestCtx {
    /// Writes the request's record: span end, metrics, access log line. Once.
    fn record(&mut self, status: StatusCode, bytes_out: u64, completed: bool) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        if let (Some(trace), Some(tracing)) = (self.session.trace.take(), &self.gateway.tracing) {
            tracing.end_request(trace, status, self.error.as_ref().map(|e| e.to_string()).as_deref());
        }
        // Filters may change what the access log shows (the JWT policy drops its token from the
        // logged query).
        if self.runtime.access_log
            && let Some(route) = self.route.clone()
        {
            for filter in &route.filters[..self.entered] {
                filter.logging(&self.session, &mut self.log);
            }
        }
        let ctx = &*self;
        let m = &ctx.gateway.metrics;
        let elapsed = ctx.start.elapsed();
        let route = ctx.route.as_ref().map_or(UNMATCHED, |r| &*r.name);
        let method = method_label(&ctx.method);
        m.requests_total.with_label_values(&[route, method, status.as_str()]).inc();
        let grpc_status = ctx.grpc.then(|| ctx.grpc_label());
        if let Some(grpc_status) = grpc_status {
            m.grpc_requests_total.with_label_values(&[route, grpc_status]).inc();
        }
        match &ctx.route {
            Some(r) => {
                r.metrics.duration(&ctx.method).observe(elapsed.as_secs_f64());
                r.metrics.in_flight.dec();
            }
            None => m.request_duration.with_label_values(&[route, method]).observe(elapsed.as_secs_f64()),
        }
        if !ctx.runtime.access_log {
            return;
        }
        let (upstream, backend) = match (&ctx.route, &ctx.backend) {
            (Some(r), Some(InFlight(b))) => (&*r.upstream.name, &*b.label),
            (Some(r), None) => (&*r.upstream.name, ""),
            _ => ("", ""),
        };
        tracing::info!(
            target: ACCESS_TARGET,
            request_id = ctx.session.request_id.to_str().unwrap_or_default(),
            trace_id = %TraceIdField(ctx.trace_ids.map(|t| t.trace_id)),
            span_id = %SpanIdField(ctx.trace_ids.map(|t| t.span_id)),
            client_ip = %ctx.session.client_ip,
            method = ctx.method.as_str(),
            path = ctx.log.target.as_str(),
            protocol = protocol_name(ctx.session.head.version),
            tls_version = ctx.session.tls.as_ref().map(|t| t.version),
            tls_cipher = ctx.session.tls.as_ref().map(|t| t.cipher),
            sni = ctx.session.tls.as_ref().and_then(|t| t.sni.as_deref()),
            route,
            upstream,
            backend,
            status = status.as_u16(),
            duration_ms = (elapsed.as_micros() as f64) / 1000.0,
            bytes_in = ctx.bytes_in.get(),
            bytes_out,
            attempts = ctx.attempts,
            completed,
            error = ctx.error.as_ref().map(ToString::to_string).as_deref(),
            grpc_status,
            websocket = ctx.websocket.as_ref().and_then(|w| w.outcome()).map(|o| o.label()),
            ws_client_close = ctx.websocket.as_ref().and_then(|w| w.client_close()),
            ws_backend_close = ctx.websocket.as_ref().and_then(|w| w.backend_close()),
            "access"
        );
    }
}

impl RequestCtx {
    /// The `grpc_status` label of a gRPC call: its answer's head's, else its trailers' (`none`
    /// when neither had one); `1` (CANCELLED) when the client left before any answer.
    fn grpc_label(&self) -> &'static str {
        match self.grpc_status {
            None => "1",
            Some("none") => self
                .trailers
                .as_ref()
                .and_then(|t| t.borrow().as_ref().map(crate::grpc::status_label))
                .unwrap_or("none"),
            Some(label) => label,
        }
    }
}

/// The access log's `protocol`: the request's HTTP version as ALPN names it.
fn protocol_name(version: crate::http_types::Version) -> &'static str {
    use crate::http_types::Version;
    match version {
        Version::HTTP_2 => "h2",
        Version::HTTP_3 => "h3",
        Version::HTTP_10 => "http/1.0",
        Version::HTTP_09 => "http/0.9",
        _ => "http/1.1",
    }
}

/// A trace id for the access line: hex, or empty when the request has none.
struct TraceIdField(Option<opentelemetry::trace::TraceId>);

impl std::fmt::Display for TraceIdField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(id) => write!(f, "{id}"),
            None => Ok(()),
        }
    }
}

/// A span id for the access line: hex, or empty when the gateway made no span.
struct SpanIdField(Option<opentelemetry::trace::SpanId>);

impl std::fmt::Display for SpanIdField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(id) if id != opentelemetry::trace::SpanId::INVALID => write!(f, "{id}"),
            _ => Ok(()),
        }
    }
}
