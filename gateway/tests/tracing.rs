//! Distributed tracing over real sockets: an in-test OTLP receiver (the mock-backends sink) on
//! gRPC and on HTTP/protobuf gets the gateway's SERVER span under the caller's `traceparent`
//! and one CLIENT span per attempt; the backend sees the CLIENT span as its parent; a dead
//! collector costs no request.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mock_backends::otlp_sink::{OtlpSink, SinkSpan};
use serde_json::Value;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn traced(endpoint: &str, protocol: &str, rest: &str) -> String {
    format!(
        "tracing: {{ enabled: true, endpoint: \"{endpoint}\", protocol: {protocol}, scheduled_delay: 50ms, service_name: gw-test }}\n{rest}"
    )
}

fn by_kind<'a>(spans: &'a [SinkSpan], kind: &str) -> Vec<&'a SinkSpan> {
    spans.iter().filter(|s| s.kind == kind).collect()
}

/// The W3C parts of a `traceparent`: (trace id, parent span id, flags).
fn parts(traceparent: &str) -> (String, String, String) {
    let p: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(p.len(), 4, "traceparent {traceparent:?}");
    (p[1].to_owned(), p[2].to_owned(), p[3].to_owned())
}

/// A sink, one mock backend (`{b0}`) and a gateway exporting to the sink over gRPC.
fn traced_over_grpc(routes: &str) -> (OtlpSink, MockServer, TestGateway) {
    let sink = OtlpSink::start();
    let backend = MockServer::start("b");
    let gw = gateway(&traced(&format!("http://{}", sink.grpc_addr), "grpc", routes), &[&backend]);
    (sink, backend, gw)
}

#[tokio::test]
async fn grpc_export_nests_the_gateway_under_the_caller_and_the_backend_under_the_attempt() {
    let (sink, backend, gw) = traced_over_grpc("routes:\n  - { name: users, path: /api/users, backend: \"{b0}\" }\n");
    let resp = client()
        .get(gw.url("/api/users/42"))
        .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
        .header("tracestate", "vendor=abc")
        .header("user-agent", "trace-test/1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let traceresponse = resp.headers()["traceresponse"].to_str().unwrap().to_owned();
    let echo: Value = resp.json().await.unwrap();

    // The backend's parent is the gateway's CLIENT span, in the caller's trace.
    let sent = echoed(&echo, "traceparent");
    assert_eq!(sent.len(), 1, "one traceparent, the gateway's: {sent:?}");
    let (trace, backend_parent, flags) = parts(&sent[0]);
    assert_eq!((trace.as_str(), flags.as_str()), (TRACE, "01"));
    assert_ne!(backend_parent, CALLER_SPAN);
    assert_eq!(echoed(&echo, "tracestate"), vec!["vendor=abc".to_owned()], "tracestate carried on");

    let spans = sink.wait_for(TRACE, 2, Duration::from_secs(10));
    let (servers, clients) = (by_kind(&spans, "server"), by_kind(&spans, "client"));
    assert_eq!((servers.len(), clients.len()), (1, 1), "{spans:#?}");
    let (server, attempt) = (servers[0], clients[0]);
    assert_eq!(server.parent_span_id, CALLER_SPAN, "the caller's span is the SERVER span's parent");
    assert_eq!(attempt.parent_span_id, server.span_id);
    assert_eq!(attempt.span_id, backend_parent, "the backend's parent is the CLIENT span");
    assert_eq!(parts(&traceresponse), (TRACE.to_owned(), server.span_id.clone(), "01".to_owned()));
    assert_eq!(server.name, "GET users");
    assert_eq!(server.transport, "grpc");
    assert_eq!(server.service_name, "gw-test");
    for (key, value) in [
        ("http.request.method", Value::from("GET")),
        ("url.path", Value::from("/api/users/42")),
        ("url.scheme", Value::from("http")),
        ("http.route", Value::from("/api/users")),
        ("rustygate.route", Value::from("users")),
        ("rustygate.upstream", Value::from("users")),
        ("http.response.status_code", Value::from(200)),
        ("client.address", Value::from("127.0.0.1")),
        ("server.address", Value::from("127.0.0.1")),
        ("user_agent.original", Value::from("trace-test/1")),
    ] {
        assert_eq!(server.attribute(key), Some(&value), "SERVER {key}");
    }
    let port = i64::from(backend.addr().port());
    for (key, value) in [
        ("http.request.method", Value::from("GET")),
        ("server.address", Value::from("127.0.0.1")),
        ("server.port", Value::from(port)),
        ("url.full", Value::from(format!("{}/api/users/42", backend.url()))),
        ("http.response.status_code", Value::from(200)),
    ] {
        assert_eq!(attempt.attribute(key), Some(&value), "CLIENT {key}");
    }
    assert_eq!(attempt.attribute("http.request.resend_count"), None, "a first attempt is no resend");
    assert!(server.start_unix_nano <= attempt.start_unix_nano && attempt.end_unix_nano <= server.end_unix_nano);
}

#[tokio::test]
async fn http_export_shows_each_attempt_of_a_retried_request() {
    let sink = OtlpSink::start();
    let live = MockServer::start("live");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let yaml = traced(
        // No path: the gateway adds /v1/traces (DESIGN.md).
        &format!("http://{}", sink.http_addr),
        "http/protobuf",
        &format!(
            "upstreams:\n  u:\n    backends: [ {{ url: \"http://{closed}\" }}, {{ url: \"{{b0}}\" }} ]\nroutes:\n  - {{ name: r, path: /, upstream: u }}\n"
        ),
    );
    let gw = gateway(&yaml, &[&live]);
    let resp = client()
        .post(gw.url("/echo"))
        .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "retried on the live backend");

    let spans = sink.wait_for(TRACE, 3, Duration::from_secs(10));
    let (servers, mut clients) = (by_kind(&spans, "server"), by_kind(&spans, "client"));
    assert_eq!((servers.len(), clients.len()), (1, 2), "{spans:#?}");
    clients.sort_by_key(|s| s.start_unix_nano);
    let (first, second) = (clients[0], clients[1]);
    assert!(spans.iter().all(|s| s.transport == "http"));
    assert!(clients.iter().all(|c| c.parent_span_id == servers[0].span_id), "both attempts under the SERVER span");
    assert_eq!(first.attribute("error.type"), Some(&Value::from("connect_error")));
    assert_eq!(first.status, "error");
    assert_eq!(first.attribute("http.request.resend_count"), None);
    assert_eq!(second.attribute("http.request.resend_count"), Some(&Value::from(1)));
    assert_eq!(second.attribute("http.response.status_code"), Some(&Value::from(200)));
    assert_eq!(servers[0].status, "unset", "the request succeeded");
}

#[tokio::test]
async fn without_or_with_a_bad_traceparent_a_request_starts_a_new_trace() {
    let (sink, _backend, gw) = traced_over_grpc("routes:\n  - { name: r, path: /, backend: \"{b0}\" }\n");
    for bad in [None, Some("00-zzzz-not-a-traceparent"), Some(&*format!("00-{}-{CALLER_SPAN}-01", "0".repeat(32)))] {
        let mut req = client().get(gw.url("/echo"));
        if let Some(value) = bad {
            req = req.header("traceparent", value);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "{bad:?} is not fatal");
        let (trace, server_span, _) = parts(resp.headers()["traceresponse"].to_str().unwrap());
        assert_ne!(trace, "0".repeat(32));
        let echo: Value = resp.json().await.unwrap();
        let (sent_trace, _, _) = parts(&echoed(&echo, "traceparent")[0]);
        assert_eq!(sent_trace, trace, "the backend joins the new trace");
        let spans = sink.wait_for(&trace, 2, Duration::from_secs(10));
        let server = by_kind(&spans, "server")[0];
        assert_eq!(server.span_id, server_span);
        assert_eq!(server.parent_span_id, "", "{bad:?}: a root span");
    }
}

#[tokio::test]
async fn server_errors_and_policy_refusals_show_on_the_server_span() {
    let (sink, _backend, gw) = traced_over_grpc(
        "rate_limits:\n  one: { requests: 1, window: 1m }\nroutes:\n  - { name: limited, path: /limited, backend: \"{b0}\", rate_limit: one }\n  - { name: r, path: /, backend: \"{b0}\" }\n",
    );
    let trace_of = |resp: &reqwest::Response| parts(resp.headers()["traceresponse"].to_str().unwrap()).0;

    let resp = client().get(gw.url("/status/503")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let spans = sink.wait_for(&trace_of(&resp), 2, Duration::from_secs(10));
    let server = by_kind(&spans, "server")[0];
    assert_eq!(server.status, "error", "5xx: span status error");
    assert_eq!(server.attribute("error.type"), Some(&Value::from("503")));
    assert_eq!(by_kind(&spans, "client")[0].status, "error");

    assert_eq!(client().get(gw.url("/limited")).send().await.unwrap().status(), 200);
    let resp = client().get(gw.url("/limited")).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    let spans = sink.wait_for(&trace_of(&resp), 1, Duration::from_secs(10));
    assert_eq!(spans.len(), 1, "refused before any attempt: {spans:#?}");
    assert_eq!(spans[0].status, "unset", "a 429 is not a server error");
    let events: Vec<&str> = spans[0].events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(events, ["rate limited"]);
}

#[tokio::test]
async fn a_dead_collector_drops_and_counts_spans_but_never_fails_a_request() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let backend = MockServer::start("b");
    let gw = gateway(
        &traced(&format!("http://{closed}"), "grpc", "routes:\n  - { name: r, path: /, backend: \"{b0}\" }\n"),
        &[&backend],
    );
    let started = Instant::now();
    for _ in 0..50 {
        let resp = client().get(gw.url("/echo")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert!(started.elapsed() < Duration::from_secs(10), "requests never wait for the collector");
    // Each request made 2 spans; every one is dropped once its export fails.
    let deadline = Instant::now() + Duration::from_secs(15);
    let dropped = loop {
        let dropped = metric(&scrape(&gw).await, "rustygate_tracing_spans_dropped_total", &[]);
        if dropped >= 100.0 || Instant::now() > deadline {
            break dropped;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(dropped, 100.0, "2 spans x 50 requests dropped and counted");
}

#[tokio::test]
async fn with_tracing_off_the_callers_traceparent_passes_through_untouched() {
    let backend = MockServer::start("b");
    let gw = gateway("routes:\n  - { path: /, backend: \"{b0}\" }\n", &[&backend]);
    let tp = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let resp = client().get(gw.url("/echo")).header("traceparent", &tp).send().await.unwrap();
    assert!(resp.headers().get("traceresponse").is_none());
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echoed(&echo, "traceparent"), vec![tp]);
    assert_eq!(metric(&scrape(&gw).await, "rustygate_tracing_spans_dropped_total", &[]), 0.0);
}
