//! The spans of a request: one SERVER span (`METHOD route`) from arrival to the end of the
//! response body, and one CLIENT span per upstream attempt, with the stable HTTP semantic
//! convention attributes. The caller's W3C `traceparent`/`tracestate` is the SERVER span's
//! parent; each attempt sends its own CLIENT span as the backend's parent. An invalid
//! `traceparent` is ignored: the request starts a new trace.

use std::{borrow::Cow, net::IpAddr};

use actix_web::{
    HttpRequest,
    http::{StatusCode, Version, header},
};
use opentelemetry::{
    Context, KeyValue,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::{Span as _, SpanContext, SpanKind, Status, TraceContextExt, Tracer as _},
};
use opentelemetry_sdk::trace::Span;

use super::Tracing;
use crate::{metrics::method_label, telemetry::correlation::TraceIds};

/// The `traceresponse` response header (W3C Trace Context Level 2).
pub const TRACERESPONSE: header::HeaderName = header::HeaderName::from_static("traceresponse");

/// A request's SERVER span.
#[derive(Debug)]
pub struct RequestTrace {
    span: Span,
    context: SpanContext,
}

/// One upstream attempt's CLIENT span.
#[derive(Debug)]
pub struct AttemptSpan {
    span: Span,
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

struct UpstreamHeaders<'a>(&'a mut header::HeaderMap);

impl Injector for UpstreamHeaders<'_> {
    fn set(&mut self, key: &str, value: String) {
        let Ok(name) = header::HeaderName::from_bytes(key.as_bytes()) else { return };
        match header::HeaderValue::try_from(value) {
            Ok(v) if !v.is_empty() => {
                self.0.insert(name, v);
            }
            _ => {
                self.0.remove(name);
            }
        }
    }
}

impl Tracing {
    /// Starts the SERVER span of `req`, child of the caller's `traceparent` if it has a valid one.
    pub fn start_request(&self, req: &HttpRequest, client_ip: IpAddr) -> RequestTrace {
        let parent = self.propagator.extract_with_context(&Context::new(), &RequestHeaders(req.headers()));
        let method = method_label(req.method());
        let mut span = self
            .tracer
            .span_builder(if method == "OTHER" { "HTTP" } else { method })
            .with_kind(SpanKind::Server)
            .start_with_context(&self.tracer, &parent);
        let context = span.span_context().clone();
        if span.is_recording() {
            let headers = req.headers();
            let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
            let host = text(header::HOST).or_else(|| req.uri().host()).unwrap_or_default();
            let (server_address, server_port) = split_host_port(host);
            span.set_attributes([
                KeyValue::new("http.request.method", if method == "OTHER" { "_OTHER" } else { method }),
                KeyValue::new("url.path", req.uri().path().to_owned()),
                KeyValue::new("url.scheme", "http"),
                KeyValue::new("client.address", client_ip.to_string()),
                KeyValue::new("server.address", server_address.to_owned()),
                KeyValue::new("network.protocol.version", protocol_version(req.version())),
            ]);
            if let Some(port) = server_port {
                span.set_attribute(KeyValue::new("server.port", i64::from(port)));
            }
            if let Some(ua) = text(header::USER_AGENT) {
                span.set_attribute(KeyValue::new("user_agent.original", ua.to_owned()));
            }
        }
        RequestTrace { span, context }
    }

    /// Starts the CLIENT span of one upstream attempt (`attempt` 0 is the first, 1 the first
    /// retry …) under the request's span.
    pub fn start_attempt(
        &self,
        request: &RequestTrace,
        method: &actix_web::http::Method,
        backend: &crate::upstream::Backend,
        path: &str,
        attempt: u32,
    ) -> AttemptSpan {
        let parent = Context::new().with_remote_span_context(request.context.clone());
        let method = method_label(method);
        let mut span = self
            .tracer
            .span_builder(if method == "OTHER" { "HTTP" } else { method })
            .with_kind(SpanKind::Client)
            .start_with_context(&self.tracer, &parent);
        if span.is_recording() {
            let (address, port) = split_host_port(backend.authority.as_str());
            span.set_attributes([
                KeyValue::new("http.request.method", if method == "OTHER" { "_OTHER" } else { method }),
                KeyValue::new("server.address", address.to_owned()),
                KeyValue::new("server.port", i64::from(port.unwrap_or(80))),
                // The query is left out: it can carry secrets (the access log's rule).
                KeyValue::new(
                    "url.full",
                    format!("{}://{}{}{path}", backend.scheme, backend.authority, backend.base_path),
                ),
                KeyValue::new("rustygate.backend", backend.label.to_string()),
            ]);
            if attempt > 0 {
                span.set_attribute(KeyValue::new("http.request.resend_count", i64::from(attempt)));
            }
        }
        AttemptSpan { span }
    }

    /// Writes the attempt's `traceparent`/`tracestate` into the upstream request's headers,
    /// replacing the caller's.
    pub fn inject(&self, attempt: &AttemptSpan, headers: &mut header::HeaderMap) {
        let cx = Context::new().with_remote_span_context(attempt.span.span_context().clone());
        self.propagator.inject_context(&cx, &mut UpstreamHeaders(headers));
    }
}

impl RequestTrace {
    /// The ids log lines of this request carry.
    pub fn ids(&self) -> TraceIds {
        TraceIds { trace_id: self.context.trace_id(), span_id: self.context.span_id() }
    }

    /// The `traceresponse` value: `00-<trace id>-<span id>-<flags>`.
    pub fn traceresponse(&self) -> header::HeaderValue {
        let value = format!(
            "00-{}-{}-{:02x}",
            self.context.trace_id(),
            self.context.span_id(),
            self.context.trace_flags().to_u8()
        );
        header::HeaderValue::from_str(&value).expect("hex digits and dashes")
    }

    /// Names the span after the matched route and records its attributes.
    pub fn enter_route(&mut self, method: &actix_web::http::Method, route: &crate::routing::Route) {
        if !self.span.is_recording() {
            return;
        }
        let method = method_label(method);
        self.span.update_name(Cow::Owned(format!(
            "{} {}",
            if method == "OTHER" { "HTTP" } else { method },
            route.name
        )));
        self.span.set_attributes([
            KeyValue::new("http.route", route.prefix.clone()),
            KeyValue::new("rustygate.route", route.name.to_string()),
            KeyValue::new("rustygate.upstream", route.upstream.name.to_string()),
        ]);
    }

    /// Records a policy decision (401, 429 …) as an event on the span.
    pub fn event(&mut self, name: &'static str, attributes: Vec<KeyValue>) {
        self.span.add_event(name, attributes);
    }

    /// Ends the span with the response status (5xx: error, with the gateway's message if it
    /// answered itself).
    pub fn end(mut self, status: StatusCode, error: Option<&str>) {
        if self.span.is_recording() {
            self.span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status.as_u16())));
            if status.is_server_error() {
                self.span.set_attribute(KeyValue::new("error.type", status.as_str().to_owned()));
                self.span.set_status(Status::error(error.unwrap_or_default().to_owned()));
            }
        }
        self.span.end();
    }
}

impl AttemptSpan {
    /// Ends the span with the attempt's outcome: the backend's status, or the transport error
    /// (`connect_error`, `timeout` …) as `error.type`.
    pub fn end(mut self, outcome: Result<StatusCode, (&'static str, String)>) {
        if self.span.is_recording() {
            match outcome {
                Ok(status) => {
                    self.span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status.as_u16())));
                    if status.is_server_error() {
                        self.span.set_attribute(KeyValue::new("error.type", status.as_str().to_owned()));
                        self.span.set_status(Status::error(""));
                    }
                }
                Err((kind, message)) => {
                    self.span.set_attribute(KeyValue::new("error.type", kind));
                    self.span.set_status(Status::error(message));
                }
            }
        }
        self.span.end();
    }
}

fn split_host_port(host: &str) -> (&str, Option<u16>) {
    // `[::1]:8080`, `example.com:8080`, `example.com`
    match host.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && (h.ends_with(']') || !h.contains(':')) => match p.parse() {
            Ok(port) => (h.trim_start_matches('[').trim_end_matches(']'), Some(port)),
            Err(_) => (host, None),
        },
        _ => (host.trim_start_matches('[').trim_end_matches(']'), None),
    }
}

fn protocol_version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_split_into_address_and_port() {
        assert_eq!(split_host_port("example.com:8080"), ("example.com", Some(8080)));
        assert_eq!(split_host_port("example.com"), ("example.com", None));
        assert_eq!(split_host_port("[::1]:9000"), ("::1", Some(9000)));
        assert_eq!(split_host_port("[::1]"), ("::1", None));
    }

    #[test]
    fn the_string_form_of_ids_is_w3c_hex() {
        let trace = opentelemetry::trace::TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        assert_eq!(trace.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
