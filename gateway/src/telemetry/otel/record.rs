//! What a traced request leaves behind: a compact record of its SERVER span and of one CLIENT
//! span per upstream attempt, made on the worker without building attributes, and turned into
//! OpenTelemetry [`SpanData`] by the export task on the background thread.
//!
//! The split keeps the request path cheap: a worker only takes ids, timestamps and references
//! it already holds (the request's URI and headers are reference-counted, the route and the
//! backend are `Arc`s of the runtime snapshot). The strings and attribute vectors are built
//! where they are exported, and never when the collector is down and the record is dropped.

use std::{borrow::Cow, net::IpAddr, sync::Arc, time::SystemTime};

use crate::http_types::{HeaderValue, Method, StatusCode, Uri, Version};
use opentelemetry::{
    InstrumentationScope, KeyValue,
    trace::{Event, SpanContext, SpanId, SpanKind, Status},
};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use crate::{metrics::method_label, upstream::Backend};

/// What a span needs of the matched route (the routing table's routes implement it), read on
/// the export thread only.
pub trait TracedRoute: Send + Sync + std::fmt::Debug {
    /// The route's name (`rustygate.route`, the span name).
    fn name(&self) -> &Arc<str>;
    /// The route's path prefix (`http.route`).
    fn prefix(&self) -> &str;
    /// The upstream's name (`rustygate.upstream`).
    fn upstream_name(&self) -> &Arc<str>;
    /// The path sent upstream for a request path (prefix stripped or not).
    fn upstream_path<'a>(&self, path: &'a str) -> &'a str;
}

/// A sampled request, from arrival to the end of its response.
#[derive(Debug)]
pub struct RequestRecord {
    /// The SERVER span's context (ids, flags, `tracestate`).
    pub(super) context: SpanContext,
    /// The caller's span, or `SpanId::INVALID` for a new trace.
    pub(super) parent_span_id: SpanId,
    pub(super) start: SystemTime,
    pub(super) end: SystemTime,
    pub(super) method: Method,
    pub(super) uri: Uri,
    pub(super) version: Version,
    pub(super) host: Option<HeaderValue>,
    pub(super) user_agent: Option<HeaderValue>,
    pub(super) client_ip: IpAddr,
    /// What the client's connection negotiated, when it came over TLS.
    pub(super) tls: Option<Arc<crate::tls::ConnectionTls>>,
    /// Attributes the sampler asked for.
    pub(super) sampler_attributes: Vec<KeyValue>,
    pub(super) route: Option<Arc<dyn TracedRoute>>,
    pub(super) status: StatusCode,
    /// The gateway's message when it answered with an error itself.
    pub(super) error: Option<String>,
    pub(super) events: Vec<Event>,
    pub(super) attempts: Vec<AttemptRecord>,
}

/// One upstream attempt.
#[derive(Debug)]
pub struct AttemptRecord {
    pub(super) span_id: SpanId,
    pub(super) start: SystemTime,
    pub(super) end: SystemTime,
    pub(super) backend: Arc<Backend>,
    /// 0 for the first attempt, 1 for the first retry …
    pub(super) resend_count: u32,
    /// The backend's status, or the transport failure (`connect_error`, `timeout` …) and its
    /// message.
    pub(super) outcome: Result<StatusCode, (&'static str, String)>,
}

impl RequestRecord {
    /// Spans this record exports: the SERVER span and one per attempt.
    pub fn span_count(&self) -> usize {
        1 + self.attempts.len()
    }

    /// The record as OpenTelemetry spans, SERVER first.
    pub fn into_spans(self, scope: &InstrumentationScope, out: &mut Vec<SpanData>) {
        let method = method_label(&self.method);
        let span_method = if method == "OTHER" { "HTTP" } else { method };
        let semconv_method = if method == "OTHER" { "_OTHER" } else { method };
        let upstream_path = self.route.as_ref().map_or(self.uri.path(), |r| r.upstream_path(self.uri.path()));
        for attempt in &self.attempts {
            out.push(attempt.to_span(&self, span_method, semconv_method, upstream_path, scope));
        }

        let mut attributes = Vec::with_capacity(16 + self.sampler_attributes.len());
        let host = self.host.as_ref().and_then(|v| v.to_str().ok()).or_else(|| self.uri.host()).unwrap_or_default();
        let (server_address, server_port) = split_host_port(host);
        attributes.extend([
            KeyValue::new("http.request.method", semconv_method),
            KeyValue::new("url.path", self.uri.path().to_owned()),
            KeyValue::new("url.scheme", if self.tls.is_some() { "https" } else { "http" }),
            KeyValue::new("client.address", self.client_ip.to_string()),
            KeyValue::new("server.address", server_address.to_owned()),
            KeyValue::new("network.protocol.version", protocol_version(self.version)),
            KeyValue::new("http.response.status_code", i64::from(self.status.as_u16())),
        ]);
        if let Some(port) = server_port {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        if let Some(ua) = self.user_agent.as_ref().and_then(|v| v.to_str().ok()) {
            attributes.push(KeyValue::new("user_agent.original", ua.to_owned()));
        }
        // OTel's TLS attributes (semantic conventions, `tls.*`), for requests over TLS.
        if let Some(tls) = &self.tls {
            attributes.extend([
                KeyValue::new("tls.protocol.name", "tls"),
                KeyValue::new("tls.protocol.version", tls.version),
                KeyValue::new("tls.cipher", tls.cipher),
            ]);
            if let Some(sni) = &tls.sni {
                attributes.push(KeyValue::new("tls.client.server_name", sni.to_string()));
            }
            if let Some(client) = &tls.client {
                attributes.extend([
                    KeyValue::new("tls.client.subject", client.subject.clone()),
                    KeyValue::new("tls.client.hash.sha256", client.sha256.clone()),
                ]);
            }
        }
        let name = match &self.route {
            Some(route) => {
                attributes.extend([
                    KeyValue::new("http.route", route.prefix().to_owned()),
                    KeyValue::new("rustygate.route", route.name().clone()),
                    KeyValue::new("rustygate.upstream", route.upstream_name().clone()),
                ]);
                Cow::Owned(format!("{span_method} {}", route.name()))
            }
            None => Cow::Borrowed(span_method),
        };
        let status = if self.status.is_server_error() {
            attributes.push(KeyValue::new("error.type", self.status.as_str().to_owned()));
            Status::error(self.error.unwrap_or_default())
        } else {
            Status::Unset
        };
        attributes.extend(self.sampler_attributes);
        out.push(SpanData {
            span_context: self.context,
            parent_span_id: self.parent_span_id,
            parent_span_is_remote: self.parent_span_id != SpanId::INVALID,
            span_kind: SpanKind::Server,
            name,
            start_time: self.start,
            end_time: self.end,
            attributes,
            dropped_attributes_count: 0,
            events: {
                let mut events = SpanEvents::default();
                events.events = self.events;
                events
            },
            links: SpanLinks::default(),
            status,
            instrumentation_scope: scope.clone(),
        });
    }
}

impl AttemptRecord {
    fn to_span(
        &self,
        request: &RequestRecord,
        span_method: &'static str,
        semconv_method: &'static str,
        upstream_path: &str,
        scope: &InstrumentationScope,
    ) -> SpanData {
        let authority = &self.backend.authority;
        let mut attributes = Vec::with_capacity(8);
        attributes.extend([
            KeyValue::new("http.request.method", semconv_method),
            KeyValue::new("server.address", authority.host().trim_start_matches('[').trim_end_matches(']').to_owned()),
            KeyValue::new("server.port", i64::from(authority.port_u16().unwrap_or(80))),
            // The label is the backend's URL without the path; the query is left out: it can
            // carry secrets (the access log's rule).
            KeyValue::new("url.full", format!("{}{upstream_path}", self.backend.label)),
            KeyValue::new("rustygate.backend", self.backend.label.clone()),
        ]);
        if self.resend_count > 0 {
            attributes.push(KeyValue::new("http.request.resend_count", i64::from(self.resend_count)));
        }
        let status = match &self.outcome {
            Ok(code) => {
                attributes.push(KeyValue::new("http.response.status_code", i64::from(code.as_u16())));
                if code.is_server_error() {
                    attributes.push(KeyValue::new("error.type", code.as_str().to_owned()));
                    Status::error("")
                } else {
                    Status::Unset
                }
            }
            Err((kind, message)) => {
                attributes.push(KeyValue::new("error.type", *kind));
                Status::error(message.clone())
            }
        };
        let server = &request.context;
        SpanData {
            span_context: SpanContext::new(
                server.trace_id(),
                self.span_id,
                server.trace_flags(),
                false,
                server.trace_state().clone(),
            ),
            parent_span_id: server.span_id(),
            parent_span_is_remote: false,
            span_kind: SpanKind::Client,
            name: Cow::Borrowed(span_method),
            start_time: self.start,
            end_time: self.end,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: scope.clone(),
        }
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
}
