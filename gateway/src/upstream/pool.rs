//! Upstream pools and their backends, compiled from configuration.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use crate::http_types::{
    HeaderName, HeaderValue,
    uri::{Authority, Scheme},
};
use arc_swap::ArcSwapOption;
use prometheus::{IntCounter, IntGauge};

use super::{health::passive::PassiveHealth, retry::RetryPolicy, ring};
use crate::background::TaskSet;
use crate::config::{BackendConfig, HealthCheckConfig, OutlierConfig, Strategy, UpstreamConfig, UpstreamProtocol};

/// One backend server.
#[derive(Debug)]
pub struct Backend {
    /// The URL as configured (any password removed): the `backend` metrics label.
    pub label: Arc<str>,
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host:port` to connect to.
    pub authority: Authority,
    /// Base path prepended to forwarded paths, without trailing slash (often empty).
    pub base_path: String,
    /// `scheme://authority` and the base path: what every forwarded request's URL starts
    /// with (the upstream path and query follow).
    pub url_prefix: String,
    /// Where the forwarding client connects, and its pool of idle connections' key.
    pub dial: Dial,
    /// The backend's own authority as a `Host` value (used when `preserve_host: false`).
    pub host_header: HeaderValue,
    /// Relative share of requests.
    pub weight: u32,
    /// Requests currently being forwarded to this backend.
    pub in_flight: AtomicU64,
    /// The last transport error seen, for `/admin/upstreams`.
    pub last_error: ArcSwapOption<String>,
    /// The active health checks' verdict (true without health checks).
    healthy: AtomicBool,
    /// `rustygate_backend_up{upstream,backend}`.
    up: Option<IntGauge>,
    /// Passive health: failures in a row, ejection.
    passive: PassiveHealth,
    /// `rustygate_backend_ejections_total{upstream,backend}`.
    ejections_total: Option<IntCounter>,
}

/// Where a backend is reached: resolved from its URL once, when the pool is built.
#[derive(Debug)]
pub struct Dial {
    /// Host name or IP address, without an IPv6 address's brackets.
    pub host: String,
    /// Port (the scheme's default when the URL names none).
    pub port: u16,
    /// The name its certificate must hold (`https://` backends only).
    pub server_name: Option<rustls::pki_types::ServerName<'static>>,
    /// `scheme://host:port`: connections to the same place are shared by every backend, route
    /// and snapshot that reaches it (with the same TLS settings).
    pub origin: Arc<str>,
}

/// Every `reason` of `rustygate_backend_failures_total`.
const FAILURE_REASONS: [&str; 6] =
    ["connect_error", "connect_timeout", "timeout", "protocol_error", "tls_error", "status_5xx"];

/// A pool of backends with its balancing state and timeouts.
#[derive(Debug)]
pub struct UpstreamPool {
    /// Upstream name (the route name for inline backends): the `upstream` metrics label.
    pub name: Arc<str>,
    /// Load-balancing strategy.
    pub strategy: Strategy,
    /// The backends.
    pub backends: Vec<Arc<Backend>>,
    /// Round-robin schedule: indexes into `backends`, each appearing `weight` times.
    pub(super) schedule: Vec<usize>,
    pub(super) cursor: AtomicUsize,
    /// The consistent-hash ring of `ip_hash` / `header_hash`.
    pub(super) ring: ring::Ring,
    /// The header `header_hash` hashes.
    pub(super) hash_header: Option<HeaderName>,
    /// Active health checks, if configured.
    pub health_check: Option<HealthCheckConfig>,
    /// Retry settings and budget.
    pub retry: RetryPolicy,
    /// Deadline of a whole request (retries included), if set.
    pub request_timeout: Option<Duration>,
    outlier: OutlierConfig,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Default per-attempt timeout for the response head.
    pub timeout: Duration,
    /// The longest wait for the next bytes of a response body.
    pub read_timeout: Duration,
    /// Send the client's `Host` (true) or the backend's authority (false).
    pub preserve_host: bool,
    /// TLS to its `https://` backends (none when all are `http://`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The protocol spoken to the backends.
    pub protocol: UpstreamProtocol,
    /// HTTP/2: requests in flight per connection before another is opened.
    pub max_concurrent_streams: usize,
    /// The bytes of the files `tls` was made from (CA bundle, client certificate and key): a
    /// reload rebuilds the pool when they change, even if its configuration did not.
    tls_files: Vec<(std::path::PathBuf, Vec<u8>)>,
    /// The pool's background tasks (its health checks).
    pub tasks: TaskSet,
}

impl UpstreamPool {
    /// Builds a pool from its (validated) configuration; `up` is the `rustygate_backend_up`
    /// family each backend's gauge is taken from (set to 1: in rotation until a check fails).
    pub fn new(name: &str, config: &UpstreamConfig, metrics: Option<&crate::metrics::Metrics>) -> Result<Self, String> {
        let mut backends = config.backends.iter().map(Backend::new).collect::<Result<Vec<_>, _>>()?;
        for b in &mut backends {
            if let Some(m) = metrics {
                let gauge = m.backend_up.with_label_values(&[name, &b.label]);
                gauge.set(1);
                b.up = Some(gauge);
                b.ejections_total = Some(m.backend_ejections_total.with_label_values(&[name, &b.label]));
                // Series at 0 from the start, so rates and alerts see the first failure.
                for reason in FAILURE_REASONS {
                    m.backend_failures_total.with_label_values(&[name, &b.label, reason]);
                }
            }
        }
        if let Some(m) = metrics {
            m.retries_total.with_label_values(&[name]);
            m.retry_budget_exhausted_total.with_label_values(&[name]);
        }
        let tls = if backends.iter().any(|b| b.scheme == Scheme::HTTPS) {
            let tls = config.tls.as_ref();
            let ca_file = tls.and_then(|t| t.ca_file.as_deref());
            let client_cert = tls.and_then(|t| t.cert_file.as_deref().zip(t.key_file.as_deref()));
            let server_name = tls.and_then(|t| t.server_name.as_deref());
            if let Some(name) = server_name {
                // The name sent (SNI) by the forwarding client, and checked by every client.
                let name = crate::tls::upstream::server_name(name)?;
                for b in backends.iter_mut().filter(|b| b.scheme == Scheme::HTTPS) {
                    b.dial.server_name = Some(name.clone());
                }
            }
            Some(crate::tls::upstream::client_config(
                ca_file,
                client_cert,
                server_name,
                config.protocol == UpstreamProtocol::H2,
            )?)
        } else {
            None
        };
        let tls_files = match (&tls, config.tls.as_ref()) {
            (Some(_), Some(t)) => [&t.ca_file, &t.cert_file, &t.key_file]
                .into_iter()
                .flatten()
                .filter_map(|path| std::fs::read(path).ok().map(|bytes| (path.clone(), bytes)))
                .collect(),
            _ => Vec::new(),
        };
        let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
        let ring = match config.strategy {
            Strategy::IpHash | Strategy::HeaderHash => ring::Ring::new(backends.iter().map(|b| (&*b.label, b.weight))),
            _ => ring::Ring::default(),
        };
        Ok(Self {
            name: name.into(),
            strategy: config.strategy,
            schedule: smooth_weighted_schedule(&weights),
            backends: backends.into_iter().map(Arc::new).collect(),
            cursor: AtomicUsize::new(0),
            ring,
            hash_header: config.hash_header.as_deref().and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
            health_check: config.health_check.clone(),
            retry: RetryPolicy::new(config)?,
            request_timeout: config.request_timeout.map(|t| t.0),
            outlier: config.outlier_detection.clone(),
            connect_timeout: config.connect_timeout.0,
            timeout: config.timeout.0,
            read_timeout: config.read_timeout.0,
            preserve_host: config.preserve_host,
            tls,
            protocol: config.protocol,
            max_concurrent_streams: config.max_concurrent_streams as usize,
            tls_files,
            tasks: TaskSet::default(),
        })
    }

    /// Whether the TLS files the pool was built from still hold the same bytes.
    pub fn tls_files_unchanged(&self) -> bool {
        self.tls_files.iter().all(|(path, bytes)| std::fs::read(path).is_ok_and(|now| now == *bytes))
    }

    /// Passive health: records an attempt's outcome on `backend` (see [`PassiveHealth::record`]).
    pub fn record_outcome(&self, backend: &Backend, failed: bool) {
        let ejected_in_pool = || self.backends.iter().filter(|b| b.is_ejected()).count();
        let Some(ejected) = backend.passive.record(failed, &self.outlier, self.backends.len(), ejected_in_pool) else {
            return;
        };
        if let Some(c) = &backend.ejections_total {
            c.inc();
        }
        backend.refresh_up_gauge();
        tracing::warn!(
            upstream = &*self.name,
            backend = &*backend.label,
            failures = ejected.failures,
            ejected_for_ms = ejected.length.as_millis() as u64,
            "backend ejected after failing in a row"
        );
    }

    /// A one-backend pool for tests and fuzzing.
    #[doc(hidden)]
    pub fn for_tests(name: &str) -> Self {
        let cfg = UpstreamConfig {
            backends: vec![BackendConfig { url: "http://127.0.0.1:1".into(), weight: 1 }],
            ..Default::default()
        };
        Self::new(name, &cfg, None).expect("valid test pool")
    }
}

impl Backend {
    fn new(config: &BackendConfig) -> Result<Self, String> {
        let url = config.url.get().map_err(str::to_owned)?;
        let host = url.host_str().unwrap_or_default();
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        let base_path = url.path().trim_end_matches('/').to_owned();
        let (scheme, scheme_name) =
            if url.scheme() == "https" { (Scheme::HTTPS, "https") } else { (Scheme::HTTP, "http") };
        // Userinfo is never part of the label: labels end up in metrics and logs.
        let label = format!("{scheme_name}://{authority}{base_path}");
        let dial_host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => host.to_owned(),
        };
        let server_name = match scheme_name {
            "https" => Some(
                rustls::pki_types::ServerName::try_from(dial_host.clone())
                    .map_err(|e| format!("{:?}: not a name a certificate can hold: {e}", config.url))?,
            ),
            _ => None,
        };
        let port = url.port_or_known_default().unwrap_or(if server_name.is_some() { 443 } else { 80 });
        let dial = Dial { origin: format!("{scheme_name}://{host}:{port}").into(), host: dial_host, port, server_name };
        Ok(Self {
            dial,
            url_prefix: label.clone(),
            label: label.into(),
            scheme,
            authority: authority.parse().map_err(|e| format!("{:?}: {e}", config.url))?,
            base_path,
            host_header: HeaderValue::from_str(&authority).map_err(|e| format!("{:?}: {e}", config.url))?,
            weight: config.weight,
            in_flight: AtomicU64::new(0),
            last_error: ArcSwapOption::empty(),
            healthy: AtomicBool::new(true),
            up: None,
            passive: PassiveHealth::default(),
            ejections_total: None,
        })
    }

    /// Whether the backend may be chosen: healthy and not ejected.
    pub fn in_rotation(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.is_ejected()
    }

    /// Whether passive health has ejected the backend for now.
    pub fn is_ejected(&self) -> bool {
        self.passive.is_ejected()
    }

    /// The active health checks' verdict.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Records an active health verdict; returns whether it changed. A backend that comes back
    /// healthy is also un-ejected (it was restarted or repaired: its old failures are moot).
    pub fn set_healthy(&self, healthy: bool) -> bool {
        let changed = self.healthy.swap(healthy, Ordering::Relaxed) != healthy;
        if changed && healthy {
            self.lift_ejection();
        }
        self.refresh_up_gauge();
        changed
    }

    /// Ends a passive ejection; returns whether there was one.
    pub fn lift_ejection(&self) -> bool {
        let was = self.passive.lift();
        self.refresh_up_gauge();
        was
    }

    /// Sets `rustygate_backend_up` from the rotation state (health and ejection).
    pub fn refresh_up_gauge(&self) {
        if let Some(g) = &self.up {
            g.set(i64::from(self.in_rotation()));
        }
    }
}

/// NGINX's smooth weighted round robin, unrolled into one full cycle: every backend appears
/// `weight` times, spread as evenly as the weights allow (1:2:3 → c b a c b c …).
pub fn smooth_weighted_schedule(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(weights) {
            *c += i64::from(*w);
        }
        let (best, _) =
            current.iter().enumerate().max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i))).expect("non-empty");
        current[best] -= total;
        schedule.push(best);
    }
    schedule
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_respects_weights_and_interleaves() {
        let s = smooth_weighted_schedule(&[1, 2, 3]);
        assert_eq!(s.len(), 6);
        for (i, w) in [1, 2, 3].iter().enumerate() {
            assert_eq!(s.iter().filter(|x| **x == i).count(), *w);
        }
        // Smooth: the heaviest backend never gets three in a row.
        assert!(!s.windows(3).any(|w| w.iter().all(|x| *x == 2)));
        assert_eq!(smooth_weighted_schedule(&[1, 1, 1]), vec![0, 1, 2]);
    }
}
