//! Prometheus metrics (names and labels are DESIGN.md's contract). One [`Metrics`] per gateway
//! instance with its own registry, so several gateways in one process (tests) never share counts.
//! Label values are bounded: route and upstream names come from config, methods outside the
//! standard set are folded into `OTHER`, and raw paths are never used.

use std::sync::OnceLock;

use crate::http_types::Method;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Latency buckets in seconds: dense where a proxy's own latency lives (sub-millisecond to
/// tens of milliseconds), sparse up to the default 30 s timeout.
const DURATION_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The gateway's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `rustygate_requests_total{route,method,status}`
    pub requests_total: IntCounterVec,
    /// `rustygate_request_duration_seconds{route,method}`
    pub request_duration: HistogramVec,
    /// `rustygate_requests_in_flight{route}`
    pub requests_in_flight: IntGaugeVec,
    /// `rustygate_backend_requests_total{upstream,backend,outcome}`
    pub backend_requests_total: IntCounterVec,
    /// `rustygate_backend_failures_total{upstream,backend,reason}`
    pub backend_failures_total: IntCounterVec,
    /// `rustygate_config_generation`
    pub config_generation: IntGauge,
    /// `rustygate_config_reloads_total{result}`: `success`, `error`, `unchanged`
    pub config_reloads: IntCounterVec,
    /// `rustygate_config_last_reload_success_timestamp_seconds` (set at start too)
    pub config_last_reload_success: prometheus::Gauge,
    /// `rustygate_log_lines_dropped_total`
    pub log_lines_dropped: IntCounter,
    /// `rustygate_tracing_spans_dropped_total`
    pub tracing_spans_dropped: IntCounter,
    /// `rustygate_rate_limited_total{route}`
    pub rate_limited_total: IntCounterVec,
    /// `rustygate_auth_rejected_total{route,reason}`
    pub auth_rejected_total: IntCounterVec,
    /// `rustygate_rate_limit_keys{policy}`
    pub rate_limit_keys: IntGaugeVec,
    /// `rustygate_backend_up{upstream,backend}`
    pub backend_up: IntGaugeVec,
    /// `rustygate_backend_ejections_total{upstream,backend}`
    pub backend_ejections_total: IntCounterVec,
    /// `rustygate_retries_total{upstream}`
    pub retries_total: IntCounterVec,
    /// `rustygate_retry_budget_exhausted_total{upstream}`
    pub retry_budget_exhausted_total: IntCounterVec,
    /// `rustygate_jwks_fetches_total{policy,result}`
    pub jwks_fetches: JwksMetrics,
    /// `rustygate_plugin_calls_total{plugin,hook,outcome}`
    pub plugin_calls_total: IntCounterVec,
    /// `rustygate_plugin_duration_seconds{plugin,hook}`
    pub plugin_duration: HistogramVec,
    /// `rustygate_client_errors_total{reason}`: requests refused as malformed or hostile before
    /// routing or while their body was read (the client's fault, logged at DEBUG only).
    pub client_errors_total: IntCounterVec,
    /// `rustygate_connections`: client connections open on the proxy listener (set at scrape).
    pub connections: IntGauge,
    /// `rustygate_upstream_tls_errors_total{upstream,reason}`: TLS connections to `https://`
    /// backends that failed, by why.
    pub upstream_tls_errors_total: IntCounterVec,
    /// `rustygate_tls_certificate_expiry_seconds{name}`: the Unix time at which each served
    /// certificate expires (`notAfter`), by its first DNS name (or subject).
    pub tls_certificate_expiry: prometheus::GaugeVec,
    /// `rustygate_acme_orders_total{result}`: ACME orders, `issued` or `failed`.
    pub acme_orders_total: IntCounterVec,
    /// `rustygate_tls_handshakes_total{listener,version,result}`: TLS handshakes on the HTTPS
    /// listener (counted by the hyper front end, which accepts TLS itself).
    pub tls_handshakes_total: IntCounterVec,
    /// `rustygate_grpc_requests_total{route,grpc_status}`: gRPC calls by the status their
    /// answer's head carried (`none` when it comes in trailers).
    pub grpc_requests_total: IntCounterVec,
    /// `rustygate_websocket_connections{route}`: WebSocket sessions open.
    pub websocket_connections: IntGaugeVec,
    /// `rustygate_websocket_connections_total{route,result}`: WebSocket sessions ended (and
    /// handshakes the backend refused), by how.
    pub websocket_connections_total: IntCounterVec,
    /// `rustygate_websocket_bytes_total{route,direction}`: bytes relayed on WebSocket sessions,
    /// `client_to_backend` or `backend_to_client` (frames as they are on the wire).
    pub websocket_bytes_total: IntCounterVec,
}

/// Buckets of `rustygate_plugin_duration_seconds`: a plugin call takes microseconds; the
/// default budget stops a guest near a millisecond.
const PLUGIN_DURATION_BUCKETS: [f64; 13] =
    [1e-6, 2e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 1e-1];

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let requests_total = counter(
            "rustygate_requests_total",
            "Requests handled, by route, method and status.",
            &["route", "method", "status"],
        );
        let backend_requests_total = counter(
            "rustygate_backend_requests_total",
            "Attempts sent to backends, by outcome (status class or transport error).",
            &["upstream", "backend", "outcome"],
        );
        let backend_failures_total = counter(
            "rustygate_backend_failures_total",
            "Backend attempts that failed: connect_error, connect_timeout, timeout, protocol_error or status_5xx.",
            &["upstream", "backend", "reason"],
        );
        let rate_limited_total =
            counter("rustygate_rate_limited_total", "Requests refused with 429 by a rate limit, by route.", &["route"]);
        let auth_rejected_total = counter(
            "rustygate_auth_rejected_total",
            "Requests refused with 401 by a JWT policy, by route and reason.",
            &["route", "reason"],
        );
        let backend_ejections_total = counter(
            "rustygate_backend_ejections_total",
            "Backends ejected by passive health (failing attempts in a row).",
            &["upstream", "backend"],
        );
        let retries_total = counter("rustygate_retries_total", "Retries: attempts after the first.", &["upstream"]);
        let retry_budget_exhausted_total = counter(
            "rustygate_retry_budget_exhausted_total",
            "Retries not made because the upstream's retry budget was spent.",
            &["upstream"],
        );
        let jwks_fetches = JwksMetrics(counter(
            "rustygate_jwks_fetches_total",
            "JWKS loads (scheduled and on unknown kid), by policy and result.",
            &["policy", "result"],
        ));
        let plugin_calls_total = counter(
            "rustygate_plugin_calls_total",
            "WASM plugin calls by plugin, hook and outcome: continue, respond, trap, budget_exhausted, \
             invalid_action or missing.",
            &["plugin", "hook", "outcome"],
        );
        let client_errors_total = counter(
            "rustygate_client_errors_total",
            "Requests refused as malformed or hostile (400/405/408/431), by reason; the client's fault.",
            &["reason"],
        );
        let plugin_duration = HistogramVec::new(
            HistogramOpts::new("rustygate_plugin_duration_seconds", "Time spent in one WASM plugin call.")
                .buckets(PLUGIN_DURATION_BUCKETS.to_vec()),
            &["plugin", "hook"],
        )
        .expect("valid metric");
        registry.register(Box::new(plugin_duration.clone())).expect("unique metric");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "rustygate_request_duration_seconds",
                "Time from request arrival to the end of the response.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["route", "method"],
        )
        .expect("valid metric");
        registry.register(Box::new(request_duration.clone())).expect("unique metric");
        let requests_in_flight =
            IntGaugeVec::new(Opts::new("rustygate_requests_in_flight", "Requests being handled."), &["route"])
                .expect("valid metric");
        registry.register(Box::new(requests_in_flight.clone())).expect("unique metric");
        let rate_limit_keys = IntGaugeVec::new(
            Opts::new(
                "rustygate_rate_limit_keys",
                "Keys (buckets) a rate-limit policy held at its last eviction, before stale ones were dropped.",
            ),
            &["policy"],
        )
        .expect("valid metric");
        registry.register(Box::new(rate_limit_keys.clone())).expect("unique metric");
        let backend_up = IntGaugeVec::new(
            Opts::new(
                "rustygate_backend_up",
                "1 if the backend is in rotation (passes its health checks and is not ejected), else 0.",
            ),
            &["upstream", "backend"],
        )
        .expect("valid metric");
        registry.register(Box::new(backend_up.clone())).expect("unique metric");
        let config_generation = IntGauge::new("rustygate_config_generation", "Generation of the configuration in use.")
            .expect("valid metric");
        registry.register(Box::new(config_generation.clone())).expect("unique metric");
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "rustygate_config_reloads_total",
                "Configuration reloads by result: success, error (rejected; the old one keeps serving) or unchanged.",
            ),
            &["result"],
        )
        .expect("valid metric");
        registry.register(Box::new(config_reloads.clone())).expect("unique metric");
        for result in ["success", "error", "unchanged"] {
            config_reloads.with_label_values(&[result]);
        }
        let config_last_reload_success = prometheus::Gauge::new(
            "rustygate_config_last_reload_success_timestamp_seconds",
            "Unix time of the last configuration applied (the start counts).",
        )
        .expect("valid metric");
        registry.register(Box::new(config_last_reload_success.clone())).expect("unique metric");
        let log_lines_dropped = IntCounter::new(
            "rustygate_log_lines_dropped_total",
            "Log lines dropped because the log writer could not keep up.",
        )
        .expect("valid metric");
        registry.register(Box::new(log_lines_dropped.clone())).expect("unique metric");
        let tracing_spans_dropped = IntCounter::new(
            "rustygate_tracing_spans_dropped_total",
            "Finished spans not exported: the export queue was full or the collector failed.",
        )
        .expect("valid metric");
        registry.register(Box::new(tracing_spans_dropped.clone())).expect("unique metric");
        let connections = IntGauge::new(
            "rustygate_connections",
            "Client connections open on the proxy listener (beyond server.max_connections, requests get 503).",
        )
        .expect("valid metric");
        registry.register(Box::new(connections.clone())).expect("unique metric");
        let upstream_tls_errors_total = counter(
            "rustygate_upstream_tls_errors_total",
            "TLS connections to https:// backends that failed, by upstream and reason \
             (certificate_expired, unknown_ca, wrong_host, bad_certificate, alert_received, handshake_failed).",
            &["upstream", "reason"],
        );
        let acme_orders_total = counter(
            "rustygate_acme_orders_total",
            "ACME certificate orders (server.tls.acme), by result: issued or failed.",
            &["result"],
        );
        let tls_handshakes_total = counter(
            "rustygate_tls_handshakes_total",
            "TLS handshakes by listener, negotiated version (1.2, 1.3; unknown when it failed) and result \
             (success, failed). Counted by the hyper front end (server.frontend: hyper).",
            &["listener", "version", "result"],
        );
        let grpc_requests_total = counter(
            "rustygate_grpc_requests_total",
            "gRPC calls (content-type application/grpc) by route and the grpc-status of the answer's head \
             (gateway-made errors, backends' Trailers-Only answers); none when the status comes in trailers.",
            &["route", "grpc_status"],
        );
        let websocket_connections = IntGaugeVec::new(
            Opts::new("rustygate_websocket_connections", "WebSocket sessions open, by route."),
            &["route"],
        )
        .expect("valid metric");
        registry.register(Box::new(websocket_connections.clone())).expect("unique metric");
        let websocket_connections_total = counter(
            "rustygate_websocket_connections_total",
            "WebSocket sessions by route and how they ended (closed, idle_timeout, max_duration, cut, \
             message_too_big, protocol_error, client_error, backend_error), and handshakes the backend refused (refused).",
            &["route", "result"],
        );
        let websocket_bytes_total = counter(
            "rustygate_websocket_bytes_total",
            "Bytes relayed on WebSocket sessions, by route and direction (client_to_backend, backend_to_client).",
            &["route", "direction"],
        );
        let tls_certificate_expiry = prometheus::GaugeVec::new(
            Opts::new(
                "rustygate_tls_certificate_expiry_seconds",
                "Unix time at which a served certificate expires (notAfter), by its first DNS name or subject.",
            ),
            &["name"],
        )
        .expect("valid metric");
        registry.register(Box::new(tls_certificate_expiry.clone())).expect("unique metric");
        let build_info = IntGaugeVec::new(
            Opts::new("rustygate_build_info", "Build information; the value is always 1."),
            &["version"],
        )
        .expect("valid metric");
        registry.register(Box::new(build_info.clone())).expect("unique metric");
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        Self {
            registry,
            requests_total,
            request_duration,
            requests_in_flight,
            backend_requests_total,
            backend_failures_total,
            config_generation,
            config_reloads,
            config_last_reload_success,
            log_lines_dropped,
            tracing_spans_dropped,
            rate_limited_total,
            auth_rejected_total,
            rate_limit_keys,
            backend_up,
            backend_ejections_total,
            retries_total,
            retry_budget_exhausted_total,
            jwks_fetches,
            plugin_calls_total,
            plugin_duration,
            client_errors_total,
            connections,
            upstream_tls_errors_total,
            acme_orders_total,
            tls_handshakes_total,
            grpc_requests_total,
            websocket_connections,
            websocket_connections_total,
            websocket_bytes_total,
            tls_certificate_expiry,
        }
    }

    /// Renders the Prometheus text exposition.
    pub fn render(&self) -> String {
        if let Some(dropped) = crate::telemetry::logging::dropped_lines() {
            let seen = self.log_lines_dropped.get();
            if dropped > seen {
                self.log_lines_dropped.inc_by(dropped - seen);
            }
        }
        let refused = crate::telemetry::logging::client_parse_errors();
        let counter = self.client_errors_total.with_label_values(&["malformed_head"]);
        let seen = counter.get();
        if refused > seen {
            counter.inc_by(refused - seen);
        }
        let mut buf = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding cannot fail");
        String::from_utf8(buf).expect("exposition is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The `method` label values: the standard methods, and `OTHER` for anything else.
const METHOD_LABELS: [&str; 10] =
    ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE", "OTHER"];

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::DELETE => 3,
        Method::HEAD => 4,
        Method::OPTIONS => 5,
        Method::PATCH => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => 9,
    }
}

/// The `method` label: standard methods as themselves, anything else `OTHER`.
pub fn method_label(method: &Method) -> &'static str {
    METHOD_LABELS[method_index(method)]
}

/// `rustygate_jwks_fetches_total{policy,result}`.
#[derive(Clone, Debug)]
pub struct JwksMetrics(pub IntCounterVec);

/// A route's metric series, resolved once per route (duration series once per method seen),
/// so the request path does no label lookups for them.
#[derive(Debug)]
pub struct RouteMetrics {
    /// `rustygate_requests_in_flight{route}`
    pub in_flight: IntGauge,
    route: String,
    vec: HistogramVec,
    durations: [OnceLock<Histogram>; METHOD_LABELS.len()],
}

impl RouteMetrics {
    /// `rustygate_request_duration_seconds{route,method}` for this route; the series is created
    /// the first time the method is seen, so unused methods export nothing.
    pub fn duration(&self, method: &Method) -> &Histogram {
        let i = method_index(method);
        self.durations[i].get_or_init(|| self.vec.with_label_values(&[self.route.as_str(), METHOD_LABELS[i]]))
    }
}

impl Metrics {
    /// Requests being handled on every route (the sum of `rustygate_requests_in_flight`): what
    /// a graceful shutdown waits for. Requests no route matched are answered at once and are
    /// not counted.
    pub fn requests_in_flight_total(&self) -> i64 {
        use prometheus::core::Collector;
        self.requests_in_flight
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .map(|m| m.get_gauge().get_value() as i64)
            .sum()
    }

    /// Resolves the series of the route named `route` (its policies resolve their own, at zero,
    /// when the route's chain is compiled).
    pub fn for_route(&self, route: &str) -> RouteMetrics {
        RouteMetrics {
            in_flight: self.requests_in_flight.with_label_values(&[route]),
            route: route.to_owned(),
            vec: self.request_duration.clone(),
            durations: Default::default(),
        }
    }
}
