//! The request path's side of tracing: a SERVER span per request and a CLIENT span per upstream
//! attempt, as ids and timestamps in a [`RequestRecord`] that the export task turns into
//! OpenTelemetry spans ([`super::record`]). The caller's W3C `traceparent`/`tracestate` is the
//! SERVER span's parent; each attempt sends its own CLIENT span as the backend's parent. An
//! invalid `traceparent` is ignored: the request starts a new trace.

use std::{net::IpAddr, sync::Arc, time::SystemTime};

use crate::http_types::{StatusCode, header};
use opentelemetry::{
    Context, KeyValue,
    propagation::{Extractor, TextMapPropagator},
    trace::{Event, SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceState},
};
use opentelemetry_sdk::trace::{IdGenerator, SamplingDecision, ShouldSample};

use super::{
    record::{AttemptRecord, RequestRecord, TracedRoute},
    tracer::Tracing,
};
use crate::{pipeline::message::RequestHead, telemetry::correlation::TraceIds, upstream::Backend};

/// The `traceresponse` response header (W3C Trace Context Level 2).
pub const TRACERESPONSE: header::HeaderName = header::HeaderName::from_static("traceresponse");
/// The W3C `traceparent` header.
pub const TRACEPARENT: header::HeaderName = header::HeaderName::from_static("traceparent");
const TRACESTATE: header::HeaderName = header::HeaderName::from_static("tracestate");

/// A request's SERVER span: its context, and while sampled, the record being filled.
#[derive(Debug)]
pub struct RequestTrace {
    context: SpanContext,
    record: Option<Box<RequestRecord>>,
}

/// One upstream attempt's CLIENT span, until it ends.
#[derive(Debug)]
pub struct AttemptSpan {
    context: SpanContext,
    start: SystemTime,
    backend: Arc<Backend>,
    resend_count: u32,
}

struct RequestHeaders<'a>(&'a header::HeaderMap);

impl Extractor for RequestHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(header::HeaderName::as_str).collect()
    }
}

impl Tracing {
    /// Starts the SERVER span of `req`, child of the caller's `traceparent` if it has a valid one.
    pub fn start_request(
        &self,
        req: &RequestHead,
        client_ip: IpAddr,
        tls: Option<&Arc<crate::tls::ConnectionTls>>,
    ) -> RequestTrace {
        let start = SystemTime::now();
        let parent_cx = self.propagator.extract_with_context(&Context::new(), &RequestHeaders(&req.headers));
        let parent = parent_cx.span().span_context().clone();
        let trace_id = if parent.is_valid() { parent.trace_id() } else { self.ids.new_trace_id() };
        let method = crate::metrics::method_label(&req.method);
        // The span name the sampler sees is the method: the route is not known yet.
        let sampling = self.sampler.should_sample(Some(&parent_cx), trace_id, method, &SpanKind::Server, &[], &[]);
        let sampled = sampling.decision == SamplingDecision::RecordAndSample;
        let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
        let context = SpanContext::new(trace_id, self.ids.new_span_id(), flags, false, sampling.trace_state);
        let record = sampled.then(|| {
            let headers = &req.headers;
            Box::new(RequestRecord {
                context: context.clone(),
                parent_span_id: if parent.is_valid() { parent.span_id() } else { SpanId::INVALID },
                start,
                end: start,
                method: req.method.clone(),
                uri: req.uri.clone(),
                version: req.version,
                host: headers.get(header::HOST).cloned(),
                user_agent: headers.get(header::USER_AGENT).cloned(),
                client_ip,
                tls: tls.cloned(),
                sampler_attributes: sampling.attributes,
                route: None,
                status: StatusCode::OK,
                error: None,
                events: Vec::new(),
                attempts: Vec::new(),
            })
        });
        RequestTrace { context, record }
    }

    /// Starts the CLIENT span of one upstream attempt (`resend_count` 0 is the first, 1 the
    /// first retry …) under the request's span; it follows the request's sampling decision.
    pub fn start_attempt(&self, request: &RequestTrace, backend: &Arc<Backend>, resend_count: u32) -> AttemptSpan {
        let server = &request.context;
        AttemptSpan {
            context: SpanContext::new(
                server.trace_id(),
                self.ids.new_span_id(),
                server.trace_flags(),
                false,
                server.trace_state().clone(),
            ),
            start: SystemTime::now(),
            backend: backend.clone(),
            resend_count,
        }
    }

    /// Writes the attempt's `traceparent`/`tracestate` into the upstream request's headers,
    /// replacing the caller's.
    pub fn inject(&self, attempt: &AttemptSpan, headers: &mut header::HeaderMap) {
        // What `TraceContextPropagator::inject_context` writes, without its `format!`s.
        let context = &attempt.context;
        headers.insert(TRACEPARENT, w3c_value(context));
        if *context.trace_state() == TraceState::NONE {
            headers.remove(TRACESTATE);
        } else if let Ok(value) = header::HeaderValue::try_from(context.trace_state().header()) {
            headers.insert(TRACESTATE, value);
        }
    }

    /// Ends the request's span with the response status (5xx: error, with the gateway's
    /// message if it answered itself) and queues it for export.
    pub fn end_request(&self, trace: RequestTrace, status: StatusCode, error: Option<&str>) {
        if let Some(mut record) = trace.record {
            record.end = SystemTime::now();
            record.status = status;
            if status.is_server_error() {
                record.error = error.map(str::to_owned);
            }
            self.queue.push(record);
        }
    }
}

impl RequestTrace {
    /// The ids log lines of this request carry.
    pub fn ids(&self) -> TraceIds {
        TraceIds { trace_id: self.context.trace_id(), span_id: self.context.span_id() }
    }

    /// The `traceresponse` value: `00-<trace id>-<span id>-<flags>`.
    pub fn traceresponse(&self) -> header::HeaderValue {
        w3c_value(&self.context)
    }

    /// Names the span after the matched route (`GET users`) and records its attributes.
    pub fn enter_route<R: TracedRoute + 'static>(&mut self, route: impl FnOnce() -> Arc<R>) {
        if let Some(record) = &mut self.record {
            record.route = Some(route());
        }
    }

    /// Records a policy decision (401, 429 …) as an event on the span.
    pub fn event(&mut self, name: &'static str, attributes: impl FnOnce() -> Vec<KeyValue>) {
        if let Some(record) = &mut self.record {
            record.events.push(Event::new(name, SystemTime::now(), attributes(), 0));
        }
    }

    /// Ends an attempt's span with its outcome: the backend's status, or the transport error
    /// (`connect_error`, `timeout` …) as `error.type`.
    pub fn end_attempt(&mut self, attempt: AttemptSpan, outcome: Result<StatusCode, (&'static str, String)>) {
        if let Some(record) = &mut self.record {
            record.attempts.push(AttemptRecord {
                span_id: attempt.context.span_id(),
                start: attempt.start,
                end: SystemTime::now(),
                backend: attempt.backend,
                resend_count: attempt.resend_count,
                outcome,
            });
        }
    }
}

/// `00-<trace id>-<span id>-<flags>`, the W3C `traceparent` form (and `traceresponse`'s).
fn w3c_value(context: &SpanContext) -> header::HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; 55];
    let mut at = 0;
    let mut put = |bytes: &[u8], out: &mut [u8; 55]| {
        for b in bytes {
            out[at] = HEX[usize::from(b >> 4)];
            out[at + 1] = HEX[usize::from(b & 0xf)];
            at += 2;
        }
        at += 1; // the dash
    };
    put(&[0], &mut out);
    put(&context.trace_id().to_bytes(), &mut out);
    put(&context.span_id().to_bytes(), &mut out);
    put(&[context.trace_flags().to_u8() & TraceFlags::SAMPLED.to_u8()], &mut out);
    header::HeaderValue::from_bytes(&out).expect("hex digits and dashes")
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceId;
    use opentelemetry_sdk::propagation::TraceContextPropagator;

    use super::*;

    #[test]
    fn w3c_values_match_the_propagator() {
        let context = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        );
        assert_eq!(w3c_value(&context), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let unsampled =
            SpanContext::new(context.trace_id(), context.span_id(), TraceFlags::default(), false, TraceState::NONE);
        let mut headers = std::collections::HashMap::new();
        TraceContextPropagator::new()
            .inject_context(&Context::new().with_remote_span_context(unsampled.clone()), &mut headers);
        assert_eq!(w3c_value(&unsampled), headers["traceparent"].as_str());
    }
}
