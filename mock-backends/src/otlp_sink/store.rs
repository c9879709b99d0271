//! What the sink keeps: received spans grouped by trace, the oldest traces forgotten past a
//! bound so a long lab session runs in bounded memory.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value::Value},
};
use serde::Serialize;
use serde_json::Value as Json;

/// Traces kept before the oldest is dropped.
const MAX_TRACES: usize = 10_000;

/// One received span, flattened for tests and the Jaeger-shaped query API.
#[derive(Clone, Debug, Serialize)]
pub struct SinkSpan {
    /// Trace id, 32 lowercase hex digits.
    pub trace_id: String,
    /// Span id, 16 lowercase hex digits.
    pub span_id: String,
    /// Parent span id (empty for a root span).
    pub parent_span_id: String,
    /// Span name.
    pub name: String,
    /// `server`, `client`, `internal`, `producer`, `consumer` or `unspecified`.
    pub kind: &'static str,
    /// Start, in nanoseconds since the Unix epoch.
    pub start_unix_nano: u64,
    /// End, in nanoseconds since the Unix epoch.
    pub end_unix_nano: u64,
    /// Attributes as JSON values.
    pub attributes: Vec<(String, Json)>,
    /// Events: name and attributes.
    pub events: Vec<(String, Vec<(String, Json)>)>,
    /// `unset`, `ok` or `error`.
    pub status: &'static str,
    /// The status message.
    pub status_message: String,
    /// The resource's `service.name`.
    pub service_name: String,
    /// How it arrived: `grpc` or `http`.
    pub transport: &'static str,
}

impl SinkSpan {
    /// An attribute's value, if the span has it.
    pub fn attribute(&self, key: &str) -> Option<&Json> {
        self.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// Spans by trace id, in arrival order.
#[derive(Debug, Default)]
pub struct Store {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    traces: HashMap<String, Vec<SinkSpan>>,
    order: VecDeque<String>,
    exports: u64,
}

impl Store {
    /// Adds every span of one export request.
    pub fn add(&self, request: ExportTraceServiceRequest, transport: &'static str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.exports += 1;
        for rs in request.resource_spans {
            let service_name = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .map(|kv| json(kv.value.as_ref()))
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                let status = span.status.as_ref();
                let stored = SinkSpan {
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent_span_id: hex::encode(&span.parent_span_id),
                    name: span.name,
                    kind: match span.kind {
                        1 => "internal",
                        2 => "server",
                        3 => "client",
                        4 => "producer",
                        5 => "consumer",
                        _ => "unspecified",
                    },
                    start_unix_nano: span.start_time_unix_nano,
                    end_unix_nano: span.end_time_unix_nano,
                    attributes: attributes(&span.attributes),
                    events: span.events.iter().map(|e| (e.name.clone(), attributes(&e.attributes))).collect(),
                    status: match status.map(|s| s.code) {
                        Some(1) => "ok",
                        Some(2) => "error",
                        _ => "unset",
                    },
                    status_message: status.map(|s| s.message.clone()).unwrap_or_default(),
                    service_name: service_name.clone(),
                    transport,
                };
                let id = stored.trace_id.clone();
                if !inner.traces.contains_key(&id) {
                    inner.order.push_back(id.clone());
                    if inner.order.len() > MAX_TRACES
                        && let Some(old) = inner.order.pop_front()
                    {
                        inner.traces.remove(&old);
                    }
                }
                inner.traces.entry(id).or_default().push(stored);
            }
        }
    }

    /// The spans of one trace (empty if unknown).
    pub fn trace(&self, trace_id: &str) -> Vec<SinkSpan> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.traces.get(&trace_id.to_ascii_lowercase()).cloned().unwrap_or_default()
    }

    /// Export requests received so far.
    pub fn exports(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).exports
    }

    /// Distinct services seen.
    pub fn services(&self) -> Vec<String> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> =
            inner.traces.values().flatten().map(|s| s.service_name.clone()).filter(|n| !n.is_empty()).collect();
        names.sort();
        names.dedup();
        names
    }
}

fn attributes(kvs: &[KeyValue]) -> Vec<(String, Json)> {
    kvs.iter().map(|kv| (kv.key.clone(), json(kv.value.as_ref()))).collect()
}

fn json(value: Option<&AnyValue>) -> Json {
    match value.and_then(|v| v.value.as_ref()) {
        None => Json::Null,
        Some(Value::StringValue(s)) => Json::from(s.clone()),
        Some(Value::BoolValue(b)) => Json::from(*b),
        Some(Value::IntValue(i)) => Json::from(*i),
        Some(Value::DoubleValue(d)) => Json::from(*d),
        Some(Value::ArrayValue(a)) => Json::Array(a.values.iter().map(|v| json(Some(v))).collect()),
        Some(Value::KvlistValue(l)) => {
            Json::Object(l.values.iter().map(|kv| (kv.key.clone(), json(kv.value.as_ref()))).collect())
        }
        Some(Value::BytesValue(b)) => Json::from(hex::encode(b)),
        #[allow(unreachable_patterns)]
        Some(_) => Json::Null,
    }
}
