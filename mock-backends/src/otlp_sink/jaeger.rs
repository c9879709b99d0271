//! Jaeger's query-API JSON shape (`GET /api/traces/{traceID}`), so that the lab's trace
//! scenario reads the sink and a real Jaeger the same way.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};

use super::SinkSpan;

/// `{"data":[{traceID, spans, processes}], …}` for one trace.
pub fn trace(trace_id: &str, spans: &[SinkSpan]) -> Json {
    let mut processes: BTreeMap<String, String> = BTreeMap::new(); // service -> processID
    for s in spans {
        let next = format!("p{}", processes.len() + 1);
        processes.entry(s.service_name.clone()).or_insert(next);
    }
    let spans: Vec<Json> = spans
        .iter()
        .map(|s| {
            let mut tags: Vec<Json> = s.attributes.iter().map(|(k, v)| tag(k, v)).collect();
            tags.push(tag("span.kind", &Json::from(s.kind)));
            if s.status == "error" {
                tags.push(tag("error", &Json::from(true)));
                tags.push(tag("otel.status_code", &Json::from("ERROR")));
                if !s.status_message.is_empty() {
                    tags.push(tag("otel.status_description", &Json::from(s.status_message.clone())));
                }
            }
            let references = if s.parent_span_id.is_empty() || s.parent_span_id.bytes().all(|b| b == b'0') {
                vec![]
            } else {
                vec![json!({"refType": "CHILD_OF", "traceID": s.trace_id, "spanID": s.parent_span_id})]
            };
            json!({
                "traceID": s.trace_id,
                "spanID": s.span_id,
                "operationName": s.name,
                "references": references,
                "startTime": s.start_unix_nano / 1000,
                "duration": s.end_unix_nano.saturating_sub(s.start_unix_nano) / 1000,
                "tags": tags,
                "logs": s.events.iter().map(|(name, attrs)| {
                    let mut fields = vec![tag("event", &Json::from(name.clone()))];
                    fields.extend(attrs.iter().map(|(k, v)| tag(k, v)));
                    json!({"timestamp": s.start_unix_nano / 1000, "fields": fields})
                }).collect::<Vec<_>>(),
                "processID": processes[&s.service_name],
                "warnings": null,
            })
        })
        .collect();
    let processes: serde_json::Map<String, Json> =
        processes.into_iter().map(|(service, id)| (id, json!({"serviceName": service, "tags": []}))).collect();
    json!({
        "data": [{"traceID": trace_id.to_ascii_lowercase(), "spans": spans, "processes": processes, "warnings": null}],
        "total": 0, "limit": 0, "offset": 0, "errors": null,
    })
}

/// Jaeger's answer for an unknown trace.
pub fn not_found() -> Json {
    json!({"data": null, "total": 0, "limit": 0, "offset": 0, "errors": [{"code": 404, "msg": "trace not found"}]})
}

fn tag(key: &str, value: &Json) -> Json {
    let kind = match value {
        Json::Bool(_) => "bool",
        Json::Number(n) if n.is_i64() || n.is_u64() => "int64",
        Json::Number(_) => "float64",
        _ => "string",
    };
    let value = match value {
        Json::Array(_) | Json::Object(_) => Json::from(value.to_string()),
        other => other.clone(),
    };
    json!({"key": key, "type": kind, "value": value})
}
