//! The configuration schema: plain serde types mirroring the YAML file (DESIGN.md), with their
//! defaults, and the small helpers that read them (policy names a route ends up with).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};
use serde_yaml_ng::Value;

use std::net::SocketAddr;

use crate::http_types::Method;

use super::{
    units::{self, ByteSize, HumanDuration},
    values::{AllowedOrigin, KeySpec, Parsed, RetryOn, normalize_host, redacted_url},
};

/// The embedded default configuration (`config/default.yaml`), used when no file is given and
/// the default path does not exist.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("../../../config/default.yaml");

/// The whole configuration file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The proxy listener and connection handling.
    pub server: ServerConfig,
    /// The admin listener (metrics, health, admin API).
    pub admin: AdminConfig,
    /// Logging.
    pub log: LogConfig,
    /// Named upstreams (backend pools) that routes refer to with `upstream:`.
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Routes, matched by host and longest path prefix.
    pub routes: Vec<RouteConfig>,
    /// Distributed tracing (OpenTelemetry OTLP export).
    pub tracing: TracingConfig,
    /// Named JWT policies that routes refer to with `auth:`.
    pub auth: BTreeMap<String, JwtConfig>,
    /// Named rate-limit policies that routes refer to with `rate_limit:`.
    pub rate_limits: BTreeMap<String, RateLimitConfig>,
    /// Named CORS policies that routes refer to with `cors:`.
    pub cors: BTreeMap<String, CorsConfig>,
    /// WASM plugins: where they are and their per-plugin settings (needs the `wasm` feature).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugins: Option<PluginsConfig>,
    /// Policies applied to every route that does not name its own.
    pub defaults: DefaultsConfig,
}

/// `defaults:` — policy names applied to every route that does not set the same key. A route
/// opts out of a default with the value `none`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DefaultsConfig {
    /// Default JWT policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// Default rate-limit policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
    /// Default CORS policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<String>,
    /// Plugins run on every route that does not set its own `plugins:` (`[]` opts out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugins: Option<Vec<String>>,
}

/// `plugins:` — WASM plugins (docs/plugins.md). A plugin is `<dir>/<name>.wasm`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// The directory holding `<name>.wasm` files (relative paths: to the working directory).
    pub dir: String,
    /// Compile and swap in a new or changed file while running.
    pub watch: bool,
    /// Per-plugin settings, by plugin name; a plugin without an entry gets the defaults.
    pub settings: BTreeMap<String, PluginSettings>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self { dir: "./plugins".into(), watch: true, settings: BTreeMap::new() }
    }
}

/// `plugins.settings.<name>:` — one plugin's sandbox, failure policy and configuration.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginSettings {
    /// What a failing call (trap, exhausted budget, bad action, missing file) does to the request.
    pub failure: PluginFailure,
    /// The plugin's own configuration, handed to it as JSON (`rg_get_config`). It may hold
    /// secrets (API keys): `/admin/config` shows its keys only.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "redact_plugin_config")]
    pub config: Option<Value>,
    /// The most linear memory one instance may have.
    pub max_memory: ByteSize,
    /// The execution budget of one call, in metering points (one per WebAssembly operator).
    pub fuel: u64,
}

/// The default execution budget per plugin call: about 1 ms of guest work on this class of
/// machine (a loop of a million operators measured 0.6 ms).
pub const DEFAULT_PLUGIN_FUEL: u64 = 1_000_000;

impl Default for PluginSettings {
    fn default() -> Self {
        Self { failure: PluginFailure::Closed, config: None, max_memory: ByteSize::mib(16), fuel: DEFAULT_PLUGIN_FUEL }
    }
}

/// A plugin's failure policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginFailure {
    /// The request fails with 500 (`plugin_failed`).
    #[default]
    Closed,
    /// The plugin is skipped and the request goes on.
    Open,
}

/// The policy name a route uses to opt out of a `defaults:` policy.
pub const NO_POLICY: &str = "none";

/// `server:` — the proxy listener.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the proxy listener, `IP:PORT`.
    pub listen: Parsed<SocketAddr>,
    /// Worker threads; 0 means one per CPU core.
    pub workers: u32,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_size: ByteSize,
    /// How long a shutdown waits for in-flight requests.
    pub shutdown_timeout: HumanDuration,
    /// How long a client may take to send the request head; slower ones get 408.
    pub client_header_timeout: HumanDuration,
    /// Idle keep-alive connections are closed after this long.
    pub keep_alive: HumanDuration,
    /// CIDRs (or single addresses) of proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Parsed<ipnet::IpNet>>,
    /// The forwarding client: `awc` (default) or `reqwest` (kept for benchmarking the choice).
    pub upstream_client: UpstreamClient,
    /// The HTTP server in front of the pipeline on the plain listener: `actix` (default) or
    /// `hyper` (experimental: docs/architecture.md, "Front ends").
    pub frontend: Frontend,
    /// Reload when the configuration file changes (its directory is watched).
    pub watch_config: bool,
    /// The longest wait for the next bytes of a request body (NGINX's `client_body_timeout`):
    /// a stalled upload is answered 408, never counted against a backend.
    pub client_body_timeout: HumanDuration,
    /// The longest time a response may wait for a client that stopped reading (NGINX's
    /// `send_timeout`): the kernel closes a connection whose sent data stays unacknowledged,
    /// or whose window stays closed, that long (TCP_USER_TIMEOUT), and with it the backend's.
    pub send_timeout: HumanDuration,
    /// The largest request line or single header line (NGINX's `large_client_header_buffers`
    /// size): a longer target is answered 414, a longer header 431.
    pub max_header_size: ByteSize,
    /// The largest request head, request line and headers together: 431 beyond (actix's own
    /// ceiling is 128 KiB and 96 headers).
    pub max_request_head_size: ByteSize,
    /// The most client connections open at once on the proxy listener: a connection beyond is
    /// answered 503 `too_many_connections` and closed (counted in
    /// `rustygate_client_errors_total{reason="too_many_connections"}`).
    pub max_connections: u32,
    /// The most connections open at once from one peer address (0: no per-address limit); a
    /// connection beyond is refused like one beyond `max_connections`. The socket peer counts,
    /// not `X-Forwarded-For`: leave it at 0 behind a load balancer.
    pub max_connections_per_ip: u32,
    /// Forward client headers whose name contains `_` (dropped by default, as NGINX does;
    /// underscored aliases of JWT claim headers are dropped even when this is on).
    pub underscores_in_headers: bool,
    /// The HTTPS listener (docs/security.md, "TLS"), beside the plain one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsListenerConfig>,
    /// The plain listener answers every request with a 308 to the same URL on the HTTPS
    /// listener (ACME HTTP-01 challenge paths excepted). Needs `tls`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub redirect_https: bool,
    /// The plain listener also takes HTTP/2 in cleartext with prior knowledge (`h2c`, as gRPC
    /// clients inside a cluster speak it), beside HTTP/1.1 on the same port.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub h2c: bool,
}

/// `server.tls` — an HTTPS listener: HTTP/2 and HTTP/1.1 by ALPN, on the same routes as the
/// plain listener.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListenerConfig {
    /// Address of the HTTPS listener, `IP:PORT`.
    pub listen: Parsed<SocketAddr>,
    /// The oldest TLS version accepted: `"1.2"` (default) or `"1.3"`.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// Certificate chains and their keys (PEM files). Each is chosen for the names of its
    /// certificate (SAN DNS names, `*.example.com` wildcards included) by the client's SNI; the
    /// first is served to clients that send no name or one no certificate has. May be empty
    /// with `acme`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateFiles>,
    /// Automatic certificates for some hosts (ACME, RFC 8555); they are chosen for their
    /// domains before the files' certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeConfig>,
    /// Client certificates (mTLS): not asked for by default.
    #[serde(default, skip_serializing_if = "ClientAuthConfig::is_none")]
    pub client_auth: ClientAuthConfig,
}

/// `server.tls.acme` — one certificate for `domains`, obtained and renewed from an ACME
/// directory (docs/security.md, "ACME").
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// The directory URL (`https://`), e.g. Let's Encrypt's
    /// `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory: String,
    /// Contact address given to the CA (expiry notices), optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The host names the certificate is for (no wildcards: they need DNS-01).
    pub domains: Vec<String>,
    /// Where the account key and the certificate are kept across restarts.
    #[serde(default = "default_acme_state_dir")]
    pub state_dir: std::path::PathBuf,
    /// How control of the domains is proven: `tls-alpn-01` (default; on the HTTPS listener,
    /// which must be reachable on port 443) or `http-01` (on `server.listen`, port 80).
    #[serde(default)]
    pub challenge: AcmeChallenge,
    /// The CA certificates (PEM) to trust for the directory's HTTPS, instead of the system's
    /// roots (a private or test CA such as Pebble).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_ca_file: Option<std::path::PathBuf>,
}

fn default_acme_state_dir() -> std::path::PathBuf {
    "./acme".into()
}

/// The ACME challenge answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum AcmeChallenge {
    /// A validation certificate on the HTTPS listener (ALPN `acme-tls/1`).
    #[default]
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    /// A token over plain HTTP on the plain listener.
    #[serde(rename = "http-01")]
    Http01,
}

/// `server.tls.client_auth` — whether the listener asks clients for a certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthConfig {
    /// `none` (default), `optional` (asked for; routes with `client_cert.required` refuse a
    /// request without one) or `require` (the handshake fails without a valid one).
    #[serde(default)]
    pub mode: ClientAuthMode,
    /// The CA certificates (PEM) a client certificate must chain to; needed unless `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
}

impl ClientAuthConfig {
    fn is_none(&self) -> bool {
        self.mode == ClientAuthMode::None && self.ca_file.is_none()
    }
}

/// Whether client certificates are asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMode {
    /// Not asked for.
    #[default]
    None,
    /// Asked for, not required by the handshake.
    Optional,
    /// Required by the handshake.
    Require,
}

/// `upstreams.NAME.tls` — how the gateway checks its `https://` backends. Verification is
/// always on: a backend certificate that does not chain to these roots, has expired, or does
/// not name the backend's host fails the attempt (502).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTlsConfig {
    /// The CA certificates (PEM) the backends' certificates must chain to, instead of the
    /// system's trusted roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
    /// The name the backends' certificates must hold, and the SNI the gateway sends, instead of
    /// the host of each backend's URL (e.g. backends reached by IP address or a service name
    /// that their certificates do not list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// The gateway's client certificate (PEM chain) for backends that ask for one (mTLS to
    /// backends), with `key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<std::path::PathBuf>,
    /// The private key of `cert_file` (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<std::path::PathBuf>,
}

/// `routes[N].client_cert` — what the route asks of the client's certificate (mTLS).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteClientCertConfig {
    /// A request without a verified client certificate is refused: 403 `client_cert_required`.
    pub required: bool,
    /// If not empty, only certificates whose subject is one of these (as the gateway writes it
    /// in `X-Client-Cert-Subject`, e.g. `CN=ops`) or that have one of `allowed_sans` pass.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_subjects: Vec<String>,
    /// Subject alternative names that pass, as written in `X-Client-Cert-SAN`
    /// (`DNS:ops.example.com`, `URI:spiffe://example.org/ops`, `email:ops@example.com`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_sans: Vec<String>,
}

/// One served certificate: a PEM chain (leaf first) and its private key (PKCS#8, PKCS#1 or
/// SEC1 PEM). Relative paths are relative to the gateway's working directory.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFiles {
    /// The certificate chain, leaf first.
    pub cert_file: std::path::PathBuf,
    /// The leaf's private key.
    pub key_file: std::path::PathBuf,
}

/// The oldest TLS version a listener accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    Tls13,
}

/// The HTTP server that parses requests on the plain listener.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Frontend {
    /// actix-web (actix-http): every feature.
    #[default]
    Actix,
    /// hyper's server (HTTP/1.1, h2c with `server.h2c`, the HTTPS listener), experimental
    /// (docs/architecture.md, "Front ends").
    Hyper,
}

/// The HTTP client that forwards requests to backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamClient {
    /// hyper's HTTP/1.1 connections, pooled by each worker (recommended).
    #[default]
    Hyper,
    /// awc on each worker's own event loop.
    Awc,
    /// reqwest (hyper), one client per worker.
    Reqwest,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            workers: 0,
            max_body_size: ByteSize::mib(10),
            shutdown_timeout: HumanDuration::secs(30),
            client_header_timeout: HumanDuration::secs(10),
            keep_alive: HumanDuration::secs(75),
            trusted_proxies: Vec::new(),
            upstream_client: UpstreamClient::Hyper,
            frontend: Frontend::Actix,
            watch_config: true,
            client_body_timeout: HumanDuration::secs(60),
            send_timeout: HumanDuration::secs(60),
            max_header_size: ByteSize::kib(8),
            max_request_head_size: ByteSize::kib(32),
            max_connections: 10_000,
            max_connections_per_ip: 0,
            underscores_in_headers: false,
            tls: None,
            redirect_https: false,
            h2c: false,
        }
    }
}

/// `admin:` — the admin listener, never on the proxy port.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin listener, `IP:PORT`.
    pub listen: Parsed<SocketAddr>,
    /// Bearer token for `/admin/*`; empty disables those endpoints (403).
    #[serde(serialize_with = "redact")]
    pub token: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { listen: "0.0.0.0:8081".into(), token: String::new() }
    }
}

/// `log:` — logging.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Level filter (`error`, `warn`, `info`, `debug`, `trace` or a tracing directive);
    /// `RUST_LOG` overrides it.
    pub level: String,
    /// Output format.
    pub format: LogFormat,
    /// Whether to write one access line per request.
    pub access_log: bool,
    /// Whether the access log's `path` includes the query string (queries can carry secrets).
    pub include_query: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), format: LogFormat::Json, access_log: true, include_query: false }
    }
}

/// `tracing:` — OpenTelemetry spans exported over OTLP. The standard `OTEL_*` environment
/// variables override these keys (see `crate::telemetry::otel::settings`).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// Whether spans are made and exported at all.
    pub enabled: bool,
    /// The collector: `http://host:4317` for gRPC; for HTTP an endpoint without a path gets
    /// `/v1/traces`. Default: `http://localhost:4317` (gRPC) or `http://localhost:4318` (HTTP).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "redact_opt_url")]
    pub endpoint: Option<String>,
    /// OTLP transport.
    pub protocol: OtlpProtocol,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Share of new traces recorded (0 to 1); a caller's sampling decision is always followed.
    pub sampling_ratio: f64,
    /// Extra resource attributes (`deployment.environment.name: prod`, …).
    pub resource_attributes: BTreeMap<String, String>,
    /// Headers sent with every export (collector credentials: shown redacted).
    #[serde(serialize_with = "redact_map")]
    pub headers: BTreeMap<String, String>,
    /// Finished requests whose spans wait for export; beyond this, new ones are dropped and
    /// counted.
    pub max_queue_size: u32,
    /// Spans per export call.
    pub max_export_batch_size: u32,
    /// Longest wait before a partial batch is exported.
    pub scheduled_delay: HumanDuration,
    /// Time allowed for one export call.
    pub export_timeout: HumanDuration,
    /// Whether responses carry a W3C `traceresponse` header naming the request's trace.
    pub traceresponse: bool,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: None,
            protocol: OtlpProtocol::Grpc,
            service_name: "rustygate".into(),
            sampling_ratio: 1.0,
            resource_attributes: BTreeMap::new(),
            headers: BTreeMap::new(),
            max_queue_size: 2048,
            max_export_batch_size: 512,
            scheduled_delay: HumanDuration::secs(1),
            export_timeout: HumanDuration::secs(10),
            traceresponse: true,
        }
    }
}

impl TracingConfig {
    /// The endpoint in use: the configured one, or the protocol's default.
    pub fn effective_endpoint(&self) -> String {
        match (&self.endpoint, self.protocol) {
            (Some(e), _) => e.clone(),
            (None, OtlpProtocol::Grpc) => "http://localhost:4317".into(),
            (None, OtlpProtocol::HttpProtobuf) => "http://localhost:4318".into(),
        }
    }
}

/// OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum OtlpProtocol {
    /// OTLP over gRPC (default port 4317).
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (default port 4318).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One JSON object per line (the default).
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Load-balancing strategy of an upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Weighted round robin (smooth: weights are interleaved, not bursty).
    #[default]
    RoundRobin,
    /// Fewer in-flight requests (relative to weight) wins, between two backends drawn at random.
    LeastConnections,
    /// Consistent hashing on the client IP: a client keeps its backend.
    IpHash,
    /// Consistent hashing on a request header (`hash_header`); the client IP without it.
    HeaderHash,
}

/// One backend of an upstream.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// `http://host:port` with an optional base path.
    #[serde(serialize_with = "redact_url")]
    pub url: Parsed<url::Url>,
    /// Relative share of requests (1..=1000).
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// `upstreams.NAME:` — a pool of backends.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Load-balancing strategy.
    pub strategy: Strategy,
    /// The backends.
    pub backends: Vec<BackendConfig>,
    /// Time allowed to open a TCP connection to a backend.
    pub connect_timeout: HumanDuration,
    /// Time allowed per attempt for the backend's response head to arrive (504 after).
    pub timeout: HumanDuration,
    /// The longest wait for the next bytes of a response body once its head arrived (NGINX's
    /// `proxy_read_timeout`): a backend that stalls mid-body has the response cut, so it cannot
    /// hold the client's connection and its own indefinitely.
    pub read_timeout: HumanDuration,
    /// Send the client's `Host` to the backend (true) or the backend's own authority (false).
    pub preserve_host: bool,
    /// The header `header_hash` hashes on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_header: Option<String>,
    /// Active health checks of every backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckConfig>,
    /// Deadline for the whole request, retries and backoff included (none: attempts × timeout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<HumanDuration>,
    /// Extra attempts after a failed one, each on another backend.
    pub retries: u32,
    /// What may be retried: `connect_error`, `timeout`, `reset`, `5xx` or single statuses
    /// (YAML integers or strings: `[connect_error, 502]`).
    pub retry_on: Vec<Parsed<RetryOn>>,
    /// Retry non-idempotent methods (POST, PATCH) after the request was sent too.
    pub retry_non_idempotent: bool,
    /// Request bodies up to this size are buffered so that they can be sent again.
    pub retry_buffer: ByteSize,
    /// Retries allowed: `ratio` of the requests plus `min_retries`, over 10 s.
    pub retry_budget: RetryBudgetConfig,
    /// Passive health: backends failing in a row are ejected for a while.
    pub outlier_detection: OutlierConfig,
    /// TLS to this upstream's `https://` backends: the CA bundle their certificates must chain
    /// to (default: the system's trusted roots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTlsConfig>,
    /// The protocol spoken to the backends: `http1`, `h2` (HTTP/2 over TLS, by ALPN) or `h2c`
    /// (cleartext HTTP/2 with prior knowledge).
    pub protocol: UpstreamProtocol,
    /// HTTP/2 (`h2`, `h2c`): requests in flight per connection before another is opened.
    pub max_concurrent_streams: u32,
}

/// `upstreams.NAME.protocol`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (`server.upstream_client`'s pooled connections).
    #[default]
    Http1,
    /// HTTP/2 over TLS (`https://` backends; the backend must select `h2` by ALPN).
    H2,
    /// Cleartext HTTP/2 with prior knowledge (`http://` backends).
    H2c,
}

impl UpstreamProtocol {
    /// Whether the backends are spoken to in HTTP/2.
    pub fn is_http2(self) -> bool {
        self != Self::Http1
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::RoundRobin,
            backends: Vec::new(),
            connect_timeout: HumanDuration::secs(2),
            timeout: HumanDuration::secs(30),
            read_timeout: HumanDuration::secs(60),
            preserve_host: true,
            hash_header: None,
            health_check: None,
            request_timeout: None,
            retries: 2,
            retry_on: ["connect_error", "timeout", "502", "503", "504"].map(Parsed::from).to_vec(),
            retry_non_idempotent: false,
            retry_buffer: ByteSize::kib(64),
            retry_budget: RetryBudgetConfig::default(),
            outlier_detection: OutlierConfig::default(),
            tls: None,
            protocol: UpstreamProtocol::Http1,
            max_concurrent_streams: 100,
        }
    }
}

/// `upstreams.NAME.retry_budget:` — retries may not exceed `ratio` of the requests plus
/// `min_retries`, counted over the last 10 seconds, so an outage cannot multiply the load.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudgetConfig {
    /// Retries per request allowed on top of the floor (0.2: one retry per five requests).
    pub ratio: f64,
    /// Retries always allowed per 10 s, however few the requests.
    pub min_retries: u32,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self { ratio: 0.2, min_retries: 10 }
    }
}

/// `upstreams.NAME.outlier_detection:` — passive health: `consecutive_failures` failed attempts
/// in a row (connect errors, timeouts, 5xx) eject a backend for `base_ejection`, doubled on each
/// repeat up to `max_ejection`; never more than `max_ejected_percent` of the backends at once.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierConfig {
    /// Failures in a row that eject a backend (0 turns ejection off).
    pub consecutive_failures: u32,
    /// The first ejection's length.
    pub base_ejection: HumanDuration,
    /// The longest ejection.
    pub max_ejection: HumanDuration,
    /// The most backends of the upstream ejected at once, in percent.
    pub max_ejected_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection: HumanDuration::secs(10),
            max_ejection: HumanDuration::secs(300),
            max_ejected_percent: 50,
        }
    }
}

/// `upstreams.NAME.health_check:` — active health checks: every `interval` (± `jitter`) each
/// backend gets `GET path`; `unhealthy_threshold` failures in a row take it out of rotation,
/// `healthy_threshold` successes in a row bring it back.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// Path probed on each backend (after its base path).
    pub path: String,
    /// Time between probes of a backend.
    pub interval: HumanDuration,
    /// Time allowed for a probe's answer.
    pub timeout: HumanDuration,
    /// Statuses counted as healthy: `200-399` (a range) or `200` (one).
    pub expected_status: String,
    /// Consecutive failures that mark a backend down.
    pub unhealthy_threshold: u32,
    /// Consecutive successes that mark it up again.
    pub healthy_threshold: u32,
    /// Random spread added to each interval, so that gateways do not probe in lockstep
    /// (default: a tenth of `interval`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter: Option<HumanDuration>,
    /// `http` (a `GET` of `path`) or `grpc` (the gRPC health-checking protocol's
    /// `grpc.health.v1.Health/Check`, for HTTP/2 upstreams).
    pub protocol: HealthCheckProtocol,
    /// `grpc`: the service name asked about (`""`: the server as a whole).
    pub grpc_service: String,
}

/// `upstreams.NAME.health_check.protocol`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckProtocol {
    /// `GET path`, healthy on `expected_status`.
    #[default]
    Http,
    /// `grpc.health.v1.Health/Check`, healthy when the answer says SERVING.
    Grpc,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            path: "/health".into(),
            interval: HumanDuration::secs(5),
            timeout: HumanDuration::secs(2),
            expected_status: "200-399".into(),
            unhealthy_threshold: 2,
            healthy_threshold: 1,
            jitter: None,
            protocol: HealthCheckProtocol::Http,
            grpc_service: String::new(),
        }
    }
}

impl HealthCheckConfig {
    /// The healthy status range, parsed from `expected_status`.
    pub fn status_range(&self) -> Result<std::ops::RangeInclusive<u16>, String> {
        let raw = self.expected_status.trim();
        let (lo, hi) = raw.split_once('-').unwrap_or((raw, raw));
        match (lo.trim().parse::<u16>(), hi.trim().parse::<u16>()) {
            (Ok(lo), Ok(hi)) if (100..=599).contains(&lo) && (lo..=599).contains(&hi) => Ok(lo..=hi),
            _ => Err(format!("{raw:?} is not a status or a range of statuses like 200-399")),
        }
    }
}

/// `routes[N]:` — one route.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// Name used as the metrics label; defaults to the path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Path prefix, matched on segment boundaries; the longest prefix wins.
    pub path: String,
    /// Allowed methods; others get 405. Empty means any method.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<Parsed<Method>>,
    /// Host to match (case- and port-insensitive). Absent means any host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Name of an upstream from `upstreams:`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// A single backend URL (inline upstream).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "redact_opt_backend_url")]
    pub backend: Option<Parsed<url::Url>>,
    /// Several backends (inline upstream).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<BackendConfig>>,
    /// Strategy of the inline `backends:`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// Remove the matched prefix before forwarding.
    pub strip_prefix: bool,
    /// Per-attempt timeout overriding the upstream's `timeout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Whole-request deadline overriding the upstream's `request_timeout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<HumanDuration>,
    /// Name of a JWT policy from `auth:` (`none`: no auth even if `defaults:` has one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// Name of a rate-limit policy from `rate_limits:` (`none`: opt out of the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
    /// Name of a CORS policy from `cors:` (`none`: opt out of the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<String>,
    /// Plugins run on this route, in order (names from `plugins.dir`); `[]` opts out of
    /// `defaults.plugins`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugins: Option<Vec<String>>,
    /// Accept (and forward, still encoded) `%2F` and `%5C` in paths on this route, for a
    /// backend whose resource names hold slashes. Off by default: a backend that decodes them
    /// would see other path segments than the gateway routed on (docs/security.md).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_encoded_slashes: bool,
    /// Answers over HTTPS carry `Strict-Transport-Security: max-age=31536000` (never over plain
    /// HTTP, where browsers ignore it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hsts: bool,
    /// Client-certificate requirements of this route (mTLS on the HTTPS listener).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<RouteClientCertConfig>,
    /// Relay WebSocket handshakes (`Upgrade: websocket`) on this route; without it they are
    /// forwarded without the upgrade.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub websocket: bool,
    /// A WebSocket session with no byte either way for this long is closed (1001).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub websocket_idle_timeout: Option<HumanDuration>,
    /// A WebSocket session open this long is closed (1001). Absent: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub websocket_max_duration: Option<HumanDuration>,
    /// A WebSocket frame whose payload is longer closes the session (1009).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub websocket_max_frame_size: Option<ByteSize>,
    /// The name derived when `name:` is absent (set by the loader).
    #[serde(skip)]
    pub default_name: String,
}

/// `websocket_idle_timeout` when absent: Envoy's stream idle timeout.
pub const DEFAULT_WEBSOCKET_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
/// `websocket_max_frame_size` when absent: the largest message tungstenite and most servers
/// accept by default. The relay streams frames, so the limit protects backends, not the gateway.
pub const DEFAULT_WEBSOCKET_MAX_FRAME: u64 = 64 * 1024 * 1024;

impl RouteConfig {
    /// The route's name: `name:` if given, else one derived from what identifies it (its
    /// path, prefixed by its host and followed by its methods when it has them), so routes on
    /// one path for other hosts or methods need no `name:`.
    pub fn display_name(&self) -> &str {
        match (&self.name, self.default_name.is_empty()) {
            (Some(name), _) => name,
            (None, false) => &self.default_name,
            (None, true) => &self.path,
        }
    }

    /// Sets the derived name `display_name` falls back to: `host` + `path` + ` METHODS`.
    pub fn derive_default_name(&mut self) {
        let mut name = String::new();
        if let Some(host) = &self.host {
            name.push_str(&normalize_host(host).unwrap_or_else(|| host.clone()));
        }
        name.push_str(&self.path);
        if !self.methods.is_empty() {
            let mut methods: Vec<String> = self.methods.iter().map(|m| m.raw().to_ascii_uppercase()).collect();
            methods.sort();
            methods.dedup();
            name.push(' ');
            name.push_str(&methods.join(","));
        }
        self.default_name = name;
    }
}

/// The policy a route ends up with: its own setting, else the default; `none` means no policy.
pub fn effective_policy<'a>(own: Option<&'a str>, default: Option<&'a str>) -> Option<&'a str> {
    own.or(default).filter(|name| *name != NO_POLICY)
}

impl Config {
    /// The JWT, rate-limit and CORS policy names route `route` uses, defaults applied.
    pub fn route_policies<'a>(&'a self, route: &'a RouteConfig) -> [Option<&'a str>; 3] {
        let d = &self.defaults;
        [
            effective_policy(route.auth.as_deref(), d.auth.as_deref()),
            effective_policy(route.rate_limit.as_deref(), d.rate_limit.as_deref()),
            effective_policy(route.cors.as_deref(), d.cors.as_deref()),
        ]
    }

    /// The plugins route `route` runs, in order: its own list, else `defaults.plugins`.
    pub fn route_plugins<'a>(&'a self, route: &'a RouteConfig) -> &'a [String] {
        route.plugins.as_deref().or(self.defaults.plugins.as_deref()).unwrap_or_default()
    }
}

/// `auth.NAME:` — a JWT policy. Exactly one key source: `secret` (HS*), `public_key_file`
/// (RS*, PS*, ES*, EdDSA; PEM), `jwks_file` or `jwks_url`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// Accepted `alg` values; every other one (and `none`) is rejected. All from one family.
    pub algorithms: Vec<String>,
    /// Shared secret of HS256/384/512.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "redact_opt")]
    pub secret: Option<String>,
    /// PEM public key (SPKI) of RS*, PS*, ES* or EdDSA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key_file: Option<String>,
    /// A JWKS document on disk, re-read on the refresh schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<String>,
    /// A JWKS URL (`http(s)://`), fetched on the refresh schedule and on an unknown `kid`.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "redact_opt_url")]
    pub jwks_url: Option<String>,
    /// How often the JWKS is re-read.
    pub jwks_refresh: HumanDuration,
    /// The least time between two fetches triggered by unknown `kid`s.
    pub jwks_min_refetch: HumanDuration,
    /// Accepted `iss` values (string or list); when set, `iss` is required.
    #[serde(deserialize_with = "units::one_or_many")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub issuer: Vec<String>,
    /// Accepted `aud` values (string or list); when set, `aud` is required.
    #[serde(deserialize_with = "units::one_or_many")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audience: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: HumanDuration,
    /// Claims that must be present (default: `exp`).
    pub required_claims: Vec<String>,
    /// Claims sent to the backend as headers, `claim: Header-Name`. The client's own copies of
    /// these headers are always removed.
    pub forward_claims: BTreeMap<String, String>,
    /// Whether the backend receives the client's `Authorization` header.
    pub forward_authorization: bool,
    /// Also look for the token in this cookie (after `Authorization`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// Also look for the token in this query parameter (after the cookie); it is removed before
    /// forwarding and never logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_param: Option<String>,
    /// How many verified tokens to remember (0: verify every request in full).
    pub token_cache: u32,
    /// A digest of the key file's content (`public_key_file` / `jwks_file`) when it was read
    /// with the configuration, so that a reload sees a replaced key as a changed policy (a
    /// revoked key must not stay trusted until a restart). Set by the loader.
    #[serde(skip)]
    pub key_digest: Option<u64>,
}

impl JwtConfig {
    /// The file the policy's key material comes from, if any.
    pub fn key_file(&self) -> Option<&str> {
        self.public_key_file.as_deref().or(self.jwks_file.as_deref())
    }

    /// Reads the key file (if any) and records its digest in `key_digest`.
    pub fn read_key_digest(&mut self) {
        self.key_digest = self.key_file().and_then(|f| std::fs::read(f).ok()).map(|bytes| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            h.finish()
        });
    }
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            algorithms: Vec::new(),
            secret: None,
            public_key_file: None,
            jwks_file: None,
            jwks_url: None,
            jwks_refresh: HumanDuration::secs(300),
            jwks_min_refetch: HumanDuration::secs(5),
            issuer: Vec::new(),
            audience: Vec::new(),
            leeway: HumanDuration::secs(30),
            required_claims: vec!["exp".into()],
            forward_claims: BTreeMap::new(),
            forward_authorization: true,
            cookie: None,
            query_param: None,
            token_cache: 10_000,
            key_digest: None,
        }
    }
}

/// `rate_limits.NAME:` — a GCRA rate limit: `requests` per `window`, bursts up to `burst`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Requests allowed per window.
    pub requests: u32,
    /// The window.
    pub window: HumanDuration,
    /// Largest burst; defaults to `requests`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// What a bucket is keyed by: `client_ip`, `header:NAME` or `claim:NAME`.
    pub key: Parsed<KeySpec>,
    /// `shared`: one quota for every route naming the policy; `route`: one per route.
    pub scope: RateLimitScope,
    /// Send the IETF draft's `RateLimit-Policy` and `RateLimit` fields.
    pub draft_headers: bool,
    /// Send `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`.
    pub legacy_headers: bool,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests: 100,
            window: HumanDuration::secs(60),
            burst: None,
            key: "client_ip".into(),
            scope: RateLimitScope::Shared,
            draft_headers: true,
            legacy_headers: true,
        }
    }
}

/// Whether routes naming one rate-limit policy share its buckets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitScope {
    /// One quota across every route naming the policy.
    #[default]
    Shared,
    /// Each route has its own buckets.
    Route,
}

/// `cors.NAME:` — a CORS policy. Preflights are answered by the gateway; responses to allowed
/// origins get the CORS headers; requests without `Origin` are untouched.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Allowed origins: exact (`https://app.example.com`), wildcard subdomains
    /// (`https://*.example.com`), or `*` (any; not with credentials).
    pub allow_origins: Vec<Parsed<AllowedOrigin>>,
    /// Methods a preflight may ask for.
    pub allow_methods: Vec<Parsed<Method>>,
    /// Request headers a preflight may ask for; `*` allows whatever is asked.
    pub allow_headers: Vec<String>,
    /// Response headers scripts may read (`Access-Control-Expose-Headers`).
    pub expose_headers: Vec<String>,
    /// Allow cookies and `Authorization` (`Access-Control-Allow-Credentials: true`).
    pub allow_credentials: bool,
    /// How long browsers may cache a preflight answer.
    pub max_age: HumanDuration,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allow_origins: Vec::new(),
            allow_methods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].map(Parsed::from).to_vec(),
            allow_headers: vec!["*".into()],
            expose_headers: Vec::new(),
            allow_credentials: false,
            max_age: HumanDuration::secs(600),
        }
    }
}

/// Serializes a secret as `[redacted]` (or empty when unset) for `/admin/config`.
fn redact<S: Serializer>(secret: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if secret.is_empty() { "" } else { "[redacted]" })
}

/// Serializes a URL through [`redacted_url`].
fn redact_url<S: Serializer>(url: &Parsed<url::Url>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redacted_url(url.raw()))
}

fn redact_map<S: Serializer>(map: &BTreeMap<String, String>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(map.iter().map(|(k, v)| (k, if v.is_empty() { "" } else { "[redacted]" })))
}

fn redact_plugin_config<S: Serializer>(config: &Option<Value>, s: S) -> Result<S::Ok, S::Error> {
    match config {
        Some(Value::Mapping(map)) => s.collect_map(map.keys().map(|k| (k, "[redacted]"))),
        Some(_) => s.serialize_str("[redacted]"),
        None => s.serialize_none(),
    }
}

fn redact_opt<S: Serializer>(secret: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(v) => redact(v, s),
        None => s.serialize_none(),
    }
}

fn redact_opt_backend_url<S: Serializer>(url: &Option<Parsed<url::Url>>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(u) => redact_url(u, s),
        None => s.serialize_none(),
    }
}

fn redact_opt_url<S: Serializer>(raw: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match raw {
        Some(r) => s.serialize_str(&redacted_url(r)),
        None => s.serialize_none(),
    }
}
